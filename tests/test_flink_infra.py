"""``pipelines.infra.flink``: the local Flink cluster, the job server jar, ``flink_options``.

The unmarked tests run with the default suite and need no Flink, no download and (except
where they say so) no Java: the cluster record, the flags, how ``flink_options`` keeps the
user's flags, stopping processes by pid (harmless ``sleep`` children), the errors of
``cluster start``, and fetch-once with a fake ``mvn`` and a fake pip.

The ``flink``-marked tests at the end build the real jar and assemble the real Flink
(once, cached), start a real cluster through the CLI, run a small Beam pipeline (not the
scale-up) on it and on ``[local]``, and stop it:

    ./run_tests.sh -m flink tests/test_flink_infra.py
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import psutil
import pytest

from pipelines.infra import flink
from pipelines.infra.processes import port_is_free

ROOT = Path(__file__).resolve().parents[1]
JAR = "/opt/jars/job-server.jar"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TENANT_SCALER_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(flink.JAR_ENV, raising=False)
    monkeypatch.setattr(flink, "fetch_count", 0)
    return tmp_path / "cache"


@pytest.fixture
def sleeper():
    """Starts harmless processes, each in its own session as ``cluster start`` starts its
    servers; kills the process group of every one still running at the end of the test."""
    started = []

    def start(*command: str) -> subprocess.Popen:
        process = subprocess.Popen(list(command) or ["sleep", "600"], start_new_session=True,
                                   stdin=subprocess.DEVNULL)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:  # a reaped leader's pid may belong to someone else now
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _record(process: subprocess.Popen, log: str = "/dev/null") -> flink.ProcessRecord:
    for _ in range(50):  # psutil needs the exec to have happened to read a stable start time
        try:
            return flink.ProcessRecord(process.pid, psutil.Process(process.pid).create_time(), log)
        except psutil.Error:
            time.sleep(0.01)
    raise AssertionError(f"process {process.pid} vanished")


def _cluster(home: Path, processes: dict, ready: bool = True) -> flink.Cluster:
    ports = {"rest": 18081, "rpc": 16123, "worker_pool": 15000, "blob": 16124,
             "taskmanager_rpc": 16125, "taskmanager_data": 16126}
    return flink.Cluster(home=str(home), ports=ports, slots=2, processes=processes,
                         flags=flink.cluster_flags(18081, 15000, Path(JAR), 2),
                         worker_environment={"NEO4J_URI": "bolt://db:7687"}, detached=True,
                         ready=ready)


# --------------------------------------------------------------------------- record and flags


def test_the_record_round_trips_and_a_missing_or_broken_one_reads_as_none(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    cluster = _cluster(home, {"jobmanager": flink.ProcessRecord(12, 3.5, str(home / "jm.out"))})
    flink._write_state(cluster)
    assert flink.read_state(home) == cluster
    assert json.loads(flink.state_file(home).read_text())["processes"]["jobmanager"]["pid"] == 12
    assert flink.read_state(tmp_path / "nowhere") is None
    flink.state_file(home).write_text("{not json")
    assert flink.read_state(home) is None


def test_cluster_flags_are_beam_options_for_flink_on_the_cluster():
    from apache_beam.options.pipeline_options import (FlinkRunnerOptions, PipelineOptions,
                                                      PortableOptions, StandardOptions)
    flags = flink.cluster_flags(18081, 15000, Path(JAR), 3)
    assert flags == ["--runner=FlinkRunner", "--flink_master=127.0.0.1:18081",
                     "--environment_type=EXTERNAL",
                     "--environment_config=127.0.0.1:15000", f"--flink_job_server_jar={JAR}",
                     "--parallelism=3"]
    options = PipelineOptions(flags)
    assert options.view_as(StandardOptions).runner == "FlinkRunner"
    runner = options.view_as(FlinkRunnerOptions)
    assert (runner.flink_master, runner.flink_version, runner.flink_job_server_jar,
            runner.parallelism) == ("127.0.0.1:18081", flink.FLINK_LINE, JAR, 3)
    portable = options.view_as(PortableOptions)
    assert (portable.environment_type, portable.environment_config) == ("EXTERNAL", "127.0.0.1:15000")
    # Every flag is one Beam knows (an unknown one would be dropped with a warning).
    assert set(options.get_all_options(retain_unknown_options=True)) == set(options.get_all_options())


def test_versions_are_the_installed_beams():
    import apache_beam
    from apache_beam.options.pipeline_options import FlinkRunnerOptions
    assert apache_beam.__version__ == flink.BEAM_VERSION
    assert flink.FLINK_LINE in FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS
    assert flink.FLINK_VERSION.startswith(flink.FLINK_LINE + ".")


# --------------------------------------------------------------------------- flink_options


@pytest.fixture
def provided_jar(tmp_path, monkeypatch):
    jar = tmp_path / "job-server.jar"
    jar.write_text("jar")
    monkeypatch.setenv(flink.JAR_ENV, str(jar))
    return jar.resolve()


def test_flink_options_complete_a_local_flink_run(provided_jar):
    from apache_beam.options.pipeline_options import JobServerOptions, PipelineOptions
    given = ["--runner=FlinkRunner", "--flink_master=[local]", "--parallelism=2"]
    completed = flink.flink_options(given)
    assert completed[:3] == given
    assert completed[3:5] == [f"--flink_job_server_jar={provided_jar}", "--flink_version=1.19"]
    properties = PipelineOptions(completed).view_as(JobServerOptions).job_server_jvm_properties
    assert properties == list(flink.FLINK_JAVA_OPTIONS)
    assert "--add-opens=java.base/java.util=ALL-UNNAMED" in properties


@pytest.mark.parametrize("runner", ["FlinkRunner", "flink", "FLINKRUNNER",
                                    "apache_beam.runners.portability.flink_runner.FlinkRunner"])
def test_flink_options_know_every_spelling_of_the_flink_runner(provided_jar, runner):
    assert f"--flink_job_server_jar={provided_jar}" in flink.flink_options([f"--runner={runner}"])


def test_a_users_flags_win(provided_jar):
    own_jar = ["--runner=FlinkRunner", "--flink_job_server_jar=/my/job-server.jar",
               "--parallelism=7"]
    assert flink.flink_options(own_jar) == own_jar
    spaced = ["--runner", "FlinkRunner", "--flink_version", "1.19", "--parallelism", "3",
              "--job_server_jvm_properties=--add-opens=java.base/java.util=ALL-UNNAMED",
              "--job_server_jvm_properties=-Xmx2g"]
    completed = flink.flink_options(spaced)
    assert completed[:len(spaced)] == spaced
    added = completed[len(spaced):]
    assert not any(flag.startswith("--flink_version") for flag in added)
    assert "--job_server_jvm_properties=--add-opens=java.base/java.util=ALL-UNNAMED" not in added
    assert len(added) == 1 + len(flink.FLINK_JAVA_OPTIONS) - 1
    with pytest.raises(flink.FlinkError, match="Flink 1.19"):
        flink.flink_options(["--runner=FlinkRunner", "--flink_version=1.18"])


def test_a_run_without_parallelism_gets_the_one_flink_would_choose(provided_jar, monkeypatch):
    import http.server
    import threading

    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert flink.flink_options(["--runner=FlinkRunner", "--flink_master=[local]"])[-1] == \
        "--parallelism=6"
    assert flink.flink_options(["--runner=FlinkRunner"])[-1] == "--parallelism=6"

    class Overview(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"slots-total": 3 if self.path == "/overview" else 0}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Overview)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        master = f"127.0.0.1:{server.server_address[1]}"
        completed = flink.flink_options(["--runner=FlinkRunner", f"--flink_master={master}",
                                         "--flink_job_server_jar=/my/job-server.jar"])
        assert completed[-1] == "--parallelism=3" and len(completed) == 4
    finally:
        server.shutdown()
    with pytest.raises(flink.FlinkError, match="give --parallelism"):
        flink.flink_options(["--runner=FlinkRunner", f"--flink_master={master}",
                             "--flink_job_server_jar=/my/job-server.jar"])


@pytest.mark.parametrize("args", [[], ["--runner=DirectRunner"], ["--runner=PortableRunner",
                                                                  "--job_endpoint=embed"]])
def test_other_runners_come_back_unchanged(cache, args):
    assert flink.flink_options(args) == args and flink.fetch_count == 0


# --------------------------------------------------------------------------- stopping


def test_stop_ends_every_recorded_process_group_and_is_idempotent(tmp_path, sleeper):
    home = tmp_path / "home"
    home.mkdir()
    lone = sleeper()
    parent = sleeper("sh", "-c", "sleep 600 & sleep 600 & wait")  # a group with children
    flink._write_state(_cluster(home, {"jobmanager": _record(lone),
                                       "worker_pool": _record(parent)}))
    time.sleep(0.2)
    children = psutil.Process(parent.pid).children()
    assert len(children) == 2
    stopped = flink.stop_cluster(home)
    assert stopped is not None and set(stopped.processes) == {"jobmanager", "worker_pool"}
    assert lone.wait(5) == -signal.SIGTERM and parent.wait(5) == -signal.SIGTERM
    assert not any(child.is_running() and child.status() != psutil.STATUS_ZOMBIE
                   for child in children)
    assert not flink.state_file(home).exists()
    assert flink.stop_cluster(home) is None


def test_stop_kills_what_ignores_sigterm(tmp_path, sleeper):
    home = tmp_path / "home"
    home.mkdir()
    stubborn = sleeper("sh", "-c", "trap '' TERM; sleep 600")
    flink._write_state(_cluster(home, {"taskmanager": _record(stubborn)}))
    time.sleep(0.2)  # let the shell set its trap
    began = time.monotonic()
    flink.stop_cluster(home, timeout=1.0)
    assert stubborn.wait(5) == -signal.SIGKILL and time.monotonic() - began < 5


def test_a_pid_now_used_by_another_process_is_left_alone(tmp_path, sleeper):
    home = tmp_path / "home"
    home.mkdir()
    other = sleeper()
    record = _record(other)
    reused = flink.ProcessRecord(record.pid, record.created - 3600, record.log)
    flink._write_state(_cluster(home, {"jobmanager": reused}))
    assert not flink.process_alive(reused)
    flink.stop_cluster(home, timeout=1.0)
    assert other.poll() is None and not flink.state_file(home).exists()


# --------------------------------------------------------------------------- running or not


def test_flags_need_a_running_cluster(tmp_path, capsys, sleeper):
    home = tmp_path / "home"
    assert flink.main(["flags", "--home", str(home)]) == 2
    assert "cluster start" in capsys.readouterr().err
    home.mkdir()
    gone = sleeper()
    record = _record(gone)
    gone.kill()
    gone.wait()
    flink._write_state(_cluster(home, {"jobmanager": record}))
    assert flink.main(["flags", "--home", str(home)]) == 2
    err = capsys.readouterr().err
    assert "jobmanager" in err and "gone" in err and "cluster start" in err
    assert flink.main(["cluster", "status", "--home", str(home)]) == 1


def test_flags_print_the_recorded_line_of_a_running_cluster(tmp_path, capsys, sleeper):
    home = tmp_path / "home"
    home.mkdir()
    alive = sleeper()
    cluster = _cluster(home, {"jobmanager": _record(alive)})
    flink._write_state(cluster)
    assert flink.main(["flags", "--home", str(home)]) == 0
    assert capsys.readouterr().out == " ".join(cluster.flags) + "\n"
    flink._write_state(_cluster(home, {"jobmanager": _record(alive)}, ready=False))
    assert flink.main(["flags", "--home", str(home)]) == 2
    assert "still starting" in capsys.readouterr().err


def test_start_refuses_a_home_whose_cluster_runs(tmp_path, sleeper):
    home = tmp_path / "home"
    home.mkdir()
    alive = sleeper()
    flink._write_state(_cluster(home, {"jobmanager": _record(alive)}))
    with pytest.raises(flink.FlinkError, match="already running.*cluster stop"):
        flink.start_cluster(home)  # needs Java 17 on PATH, as the suite does anyway
    assert alive.poll() is None


# --------------------------------------------------------------------------- start's errors


def test_a_taken_port_is_named(tmp_path, capsys):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert not port_is_free(port)
        code = flink.main(["cluster", "start", "--home", str(tmp_path / "home"),
                           "--rest-port", str(port)])
    err = capsys.readouterr().err
    assert code == 2 and f"port {port} on 127.0.0.1 is taken" in err and "--rest-port" in err
    assert err.count("\n") == 1  # one message


def test_the_same_port_twice_and_bad_sizes_are_refused(tmp_path, capsys):
    home = str(tmp_path / "home")
    assert flink.main(["cluster", "start", "--home", home, "--rest-port", "18999",
                       "--worker-pool-port", "18999"]) == 2
    assert "asked for twice" in capsys.readouterr().err
    assert flink.main(["cluster", "start", "--home", home, "--taskmanager-memory", "1.5GB"]) == 2
    assert "1536m" in capsys.readouterr().err


def _fake_tool(directory: Path, name: str, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / name
    # bash by its path: a test may leave PATH with nothing but the fakes
    script.write_text(f"#!{shutil.which('bash')}\n" + body, encoding="utf-8")
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("version, says", [(None, "Java is not on PATH"),
                                           ("11.0.22", "is Java 11; Flink 1.19.0 needs Java 17")])
def test_missing_or_old_java_says_what_to_install(tmp_path, monkeypatch, capsys, version, says):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if version:
        _fake_tool(bin_dir, "java", f'echo \'openjdk version "{version}" 2024-01-16\' >&2\n')
    monkeypatch.setenv("PATH", str(bin_dir))
    assert flink.main(["cluster", "start", "--home", str(tmp_path / "home")]) == 2
    err = capsys.readouterr().err
    assert says in err and "openjdk-17" in err


# --------------------------------------------------------------------------- the workers' environment


def test_workers_get_the_project_the_neo4j_settings_and_no_visible_password(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("NEO4J_USER", "NEO4J_DATABASE"):  # the test session may export them
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NEO4J_URI", "bolt://db:7687")
    monkeypatch.setenv("NEO4J_PASSWORD_FILE", "secrets/password")
    monkeypatch.setenv("NEO4J_PASSWORD", "s3cret-value")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = flink._worker_environment()
    assert env["PYTHONPATH"].split(os.pathsep) == [str(ROOT), "/elsewhere"]
    assert env["NEO4J_PASSWORD_FILE"] == str(tmp_path / "secrets" / "password")
    assert env["NEO4J_PASSWORD"] == "s3cret-value"  # the DoFns read it from there
    seen = flink.describe_worker_environment(env)
    assert seen == {"NEO4J_URI": "bolt://db:7687",
                    "NEO4J_PASSWORD_FILE": str(tmp_path / "secrets" / "password"),
                    "NEO4J_PASSWORD": "(set, not shown)"}


def test_the_python_shim_runs_this_interpreter(tmp_path):
    bin_dir = flink._write_python_shim(tmp_path / "home with space")
    out = subprocess.run([str(bin_dir / "python"), "-c", "import sys; print(sys.prefix)"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == sys.prefix


def test_the_conf_binds_everything_to_localhost(tmp_path):
    import yaml
    distribution = tmp_path / "flink"
    (distribution / "conf").mkdir(parents=True)
    (distribution / "conf" / "log4j-console.properties").write_text("rootLogger.level = INFO\n")
    home = tmp_path / "home"
    ports = {"rest": 1, "rpc": 2, "worker_pool": 3, "blob": 4, "taskmanager_rpc": 5,
             "taskmanager_data": 6}
    flink._write_conf(home, flink._flink_config(home, ports, 2, "1024m", "1536m"), distribution)
    conf = yaml.safe_load((home / "conf" / "config.yaml").read_text())
    assert conf["rest"] == {"address": "127.0.0.1", "bind-address": "127.0.0.1", "port": 1}
    assert conf["jobmanager"]["rpc"] == {"address": "127.0.0.1", "port": 2}
    assert conf["taskmanager"]["numberOfTaskSlots"] == 2
    assert conf["taskmanager"]["memory"]["process"]["size"] == "1536m"
    assert conf["taskmanager"]["host"] == conf["taskmanager"]["bind-host"] == "127.0.0.1"
    assert conf["io"]["tmp"]["dirs"] == str(home / "tmp")
    assert conf["env"]["java"]["opts"]["all"].split()[:-1] == list(flink.FLINK_JAVA_OPTIONS)
    assert (home / "conf" / "log4j-console.properties").is_file()


# --------------------------------------------------------------------------- fetch once (fakes)


@pytest.fixture
def fake_mvn(tmp_path, monkeypatch):
    """An ``mvn`` that "builds" the shaded jar into ``target/`` next to the pom it is given
    (and logs each call), or fails like Maven does when ``FAKE_MVN_FAIL`` is set."""
    _fake_tool(tmp_path / "bin", "mvn",
               'while [[ $# -gt 0 ]]; do [[ $1 == -f ]] && pom=$2; shift; done\n'
               'dir=$(dirname "$pom"); echo call >> "$dir/../mvn-calls"\n'
               'if [[ -n ${FAKE_MVN_FAIL:-} ]]; then echo "[ERROR] Failed to execute goal: '
               'Could not resolve dependencies"; exit 1; fi\n'
               'mkdir -p "$dir/target"; echo shaded > "$dir/target/beam-flink-job-server-2.62.0.jar"\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("FAKE_MVN_FAIL", raising=False)
    return tmp_path / "bin" / "mvn"


def test_the_jar_is_built_once_and_then_reused(cache, fake_mvn):
    first = flink.ensure_job_server_jar()
    second = flink.ensure_job_server_jar()
    assert first == second == flink.job_server_jar_path() and first.read_text() == "shaded\n"
    assert first.parent.parent == cache and flink.fetch_count == 1
    assert (cache / "mvn-calls").read_text().count("call") == 1
    assert not (first.parent / "target").exists()
    pom = (first.parent / "pom.xml").read_text()
    assert "<artifactId>beam-runners-flink-1.19</artifactId>" in pom and "<version>2.62.0</version>" in pom
    assert "ServicesResourceTransformer" in pom and flink.JOB_SERVER_MAIN in pom
    assert all(f"<exclude>META-INF/*.{kind}</exclude>" in pom for kind in ("SF", "DSA", "RSA"))


def test_a_build_without_its_marker_is_redone(cache, fake_mvn):
    jar = flink.job_server_jar_path()
    jar.parent.mkdir(parents=True)
    jar.write_text("half a jar")  # an interrupted build: no marker
    assert flink.ensure_job_server_jar() == jar and jar.read_text() == "shaded\n"
    assert flink.fetch_count == 1


def test_a_failed_build_says_what_maven_said_and_leaves_no_marker(cache, fake_mvn, monkeypatch):
    monkeypatch.setenv("FAKE_MVN_FAIL", "1")
    with pytest.raises(flink.FlinkError, match="(?s)exit 1.*Could not resolve dependencies"):
        flink.ensure_job_server_jar()
    assert not flink.job_server_jar_present()


def test_a_provided_jar_is_used_as_it_is(cache, tmp_path, monkeypatch):
    jar = tmp_path / "my-job-server.jar"
    jar.write_text("jar")
    monkeypatch.setenv(flink.JAR_ENV, str(jar))
    assert flink.ensure_job_server_jar() == jar.resolve() and flink.fetch_count == 0
    monkeypatch.setenv(flink.JAR_ENV, str(tmp_path / "missing.jar"))
    with pytest.raises(flink.FlinkError, match="not a file"):
        flink.ensure_job_server_jar()


def _fake_downloads(folder: Path) -> None:
    """Tiny stand-ins for the two PyPI files, laid out as the real ones are."""
    folder.mkdir()
    root = f"apache-flink-libraries-{flink.FLINK_VERSION}"
    with tarfile.open(folder / f"{root}.tar.gz", "w:gz") as archive:
        for name in (f"deps/lib/flink-dist-{flink.FLINK_VERSION}.jar", "deps/bin/bash-java-utils.jar",
                     "deps/opt/flink-python.jar", "deps/plugins/README.txt",
                     "deps/licenses/LICENSE.kryo", "setup.py"):
            data = name.encode()
            member = tarfile.TarInfo(f"{root}/{name}")
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    with zipfile.ZipFile(folder / f"apache_flink-{flink.FLINK_VERSION}-cp311-cp311-manylinux1_x86_64.whl",
                         "w") as wheel:
        for name in ("pyflink/bin/jobmanager.sh", "pyflink/conf/config.yaml", "pyflink/__init__.py"):
            wheel.writestr(name, name)


def test_flink_is_downloaded_once_and_only_its_distribution_kept(cache, fake_mvn, tmp_path,
                                                                 monkeypatch):
    _fake_downloads(tmp_path / "pypi")
    python = _fake_tool(tmp_path / "fake-python", "python",
                        'while [[ $# -gt 0 ]]; do case $1 in --dest) dest=$2;; -r) req=$2;; esac; '
                        'shift; done\n'
                        f'cat "$req" >> {tmp_path}/pip-calls; cp {tmp_path}/pypi/* "$dest"/\n')
    monkeypatch.setattr(sys, "executable", str(python))
    home = flink.ensure_flink_home()
    assert flink.ensure_flink_home() == home == cache / f"flink-{flink.FLINK_VERSION}"
    assert flink.fetch_count == 1 and flink.flink_home_present()
    requirements = (tmp_path / "pip-calls").read_text()
    assert all(f"{name} --hash=sha256:{digest}" in requirements
               for name, digest in flink.FLINK_DOWNLOADS.items())
    kept = sorted(str(path.relative_to(home)) for path in home.rglob("*") if path.is_file())
    assert kept == [".fetch-complete", ".lock", "bin/bash-java-utils.jar", "bin/jobmanager.sh",
                    "conf/config.yaml", f"lib/flink-dist-{flink.FLINK_VERSION}.jar",
                    "opt/flink-python.jar", "plugins/README.txt"]
    assert os.access(home / "bin" / "jobmanager.sh", os.X_OK)


# --------------------------------------------------------------------------- the real thing

#: A small Beam pipeline, not the scale-up: Create -> key -> GroupIntoBatches -> a DoFn
#: with a counter that records where it ran. Run as ``python job.py PREFIX BEAM_FLAGS...``
#: (flags completed by ``flink_options``, as the launcher does); prints one JSON line.
JOB = '''
import glob, json, os, sys
import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from pipelines.infra.flink import flink_options


class RecordWhereItRan(beam.DoFn):
    def __init__(self):
        self.elements = Metrics.counter("flink_infra_test", "elements")

    def process(self, keyed_batch):
        import os  # pickled without this script's globals
        _, batch = keyed_batch
        self.elements.inc(len(batch))
        yield " ".join([str(os.getpid()), str(os.getppid()), str(len(batch)),
                        os.environ.get("NEO4J_URI", "-"), os.environ.get("NEO4J_PASSWORD_FILE", "-")])


prefix, beam_args = sys.argv[1], sys.argv[2:]
pipeline = beam.Pipeline(options=PipelineOptions(flink_options(beam_args)))
_ = (pipeline
     | beam.Create(list(range(%(elements)d)))
     | beam.Map(lambda number: (number %% 4, number))
     | beam.GroupIntoBatches(10)
     | beam.ParDo(RecordWhereItRan())
     | beam.io.WriteToText(prefix))
result = pipeline.run()
result.wait_until_finish()
counters = result.metrics().query(MetricsFilter().with_name("elements"))["counters"]
rows = [line.split() for path in glob.glob(prefix + "*") for line in open(path) if line.strip()]
print(json.dumps({"launcher_pid": os.getpid(), "rows": rows,
                  "counters": [[c.committed, c.attempted] for c in counters]}))
'''
ELEMENTS = 100
PASSWORD = "s3cret-not-for-logs"


def _cli(*args: str, cwd: Path, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.flink", *args], cwd=cwd, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


def _run_job(tmp_path: Path, name: str, flags: list, env: dict) -> dict:
    script = tmp_path / "job.py"
    script.write_text(JOB % {"elements": ELEMENTS}, encoding="utf-8")
    began = time.monotonic()
    result = subprocess.run([sys.executable, str(script), str(tmp_path / name / "out"), *flags],
                            cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-6000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    summary["seconds"] = round(time.monotonic() - began, 1)
    print(f"{name}: {summary['seconds']} s")
    return summary


@pytest.fixture(scope="module")
def started(tmp_path_factory):
    """One cluster for the module, started through the CLI the way a user does, with Neo4j
    settings the workers must see (no Neo4j is needed: the DoFn only reports them)."""
    tmp_path = tmp_path_factory.mktemp("flink-cluster")
    (tmp_path / "password").write_text(PASSWORD + "\n")
    env = {name: value for name, value in os.environ.items() if not name.startswith("NEO4J_")}
    env.update(NEO4J_URI="bolt://cluster-side:7687", NEO4J_USER="flink-test",
               NEO4J_PASSWORD_FILE="password", NEO4J_PASSWORD=PASSWORD,
               PYTHONPATH=str(ROOT))
    home = tmp_path / "home"
    began = time.monotonic()
    result = _cli("cluster", "start", "--home", str(home), cwd=tmp_path, env=env)
    seconds = time.monotonic() - began
    try:
        assert result.returncode == 0, result.stderr[-6000:]
        print(f"cluster start: {seconds:.1f} s (including any first build and download)")
        yield {"tmp_path": tmp_path, "home": home, "env": env, "start": result,
               "cluster": flink.read_state(home)}
    finally:
        _cli("cluster", "stop", "--home", str(home), cwd=tmp_path, env=env)


@pytest.mark.flink
def test_cluster_start_prints_the_flags_last_and_records_the_cluster(started):
    result, cluster, home = started["start"], started["cluster"], started["home"]
    assert cluster is not None and cluster.ready and set(cluster.processes) == {
        "jobmanager", "taskmanager", "worker_pool"}
    flags = result.stdout.strip().splitlines()[-1]
    assert flags == " ".join(cluster.flags)
    assert flags.split()[:4] == [
        "--runner=FlinkRunner", f"--flink_master=127.0.0.1:{cluster.ports['rest']}",
        "--environment_type=EXTERNAL",
        f"--environment_config=127.0.0.1:{cluster.ports['worker_pool']}"]
    again = _cli("flags", "--home", str(home), cwd=started["tmp_path"], env=started["env"])
    assert again.returncode == 0 and again.stdout.strip() == flags
    status = _cli("cluster", "status", "--home", str(home), cwd=started["tmp_path"], env=started["env"])
    assert status.returncode == 0 and "2 of 2 slots registered" in status.stdout
    for path in cluster.logs.values():
        assert Path(path).is_file() and Path(path).parent == home / "logs"
    # Where the logs are, what the workers see of Neo4j: never the password.
    assert str(home / "logs" / "worker-pool.log") in result.stderr
    assert "NEO4J_URI=bolt://cluster-side:7687" in result.stderr
    assert f"NEO4J_PASSWORD_FILE={started['tmp_path'] / 'password'}" in result.stderr
    assert "NEO4J_PASSWORD=(set, not shown)" in result.stderr
    assert PASSWORD not in result.stdout + result.stderr + flink.state_file(home).read_text()
    # The Flink JVMs do not get the password; the worker pool (and so the DoFns) does.
    jvm = psutil.Process(cluster.processes["jobmanager"].pid).environ()
    pool = psutil.Process(cluster.processes["worker_pool"].pid).environ()
    assert "NEO4J_PASSWORD" not in jvm and pool["NEO4J_PASSWORD"] == PASSWORD


@pytest.mark.flink
def test_flink_java_options_are_the_distributions(started):
    import yaml
    conf = yaml.safe_load((flink.flink_home() / "conf" / "config.yaml").read_text())
    assert tuple(conf["env"]["java"]["opts"]["all"].split()) == flink.FLINK_JAVA_OPTIONS


@pytest.mark.flink
def test_a_pipeline_runs_on_the_cluster_in_the_worker_pools_children(started):
    cluster = started["cluster"]
    launcher_env = dict(started["env"], NEO4J_URI="bolt://launcher-side:7687")
    summary = _run_job(started["tmp_path"], "cluster", cluster.flags, launcher_env)
    assert [attempted for _, attempted in summary["counters"]] == [ELEMENTS]
    assert all(committed in (None, ELEMENTS) for committed, _ in summary["counters"])
    rows = summary["rows"]
    assert sum(int(row[2]) for row in rows) == ELEMENTS
    pool = cluster.processes["worker_pool"].pid
    for pid, parent, _, uri, password_file in rows:
        assert int(pid) not in (os.getpid(), summary["launcher_pid"], pool)
        assert int(parent) == pool  # an SDK worker the pool started
        assert uri == "bolt://cluster-side:7687"  # the cluster's environment, not the launcher's
        assert password_file == str(started["tmp_path"] / "password")


@pytest.mark.flink
def test_a_pipeline_runs_on_embedded_flink_through_flink_options(started):
    summary = _run_job(started["tmp_path"], "local",
                       ["--runner=FlinkRunner", "--flink_master=[local]", "--parallelism=2"],
                       dict(started["env"], NEO4J_URI="bolt://launcher-side:7687"))
    assert [attempted for _, attempted in summary["counters"]] == [ELEMENTS]
    # Beam's FlinkRunner defaults [local] to LOOPBACK: the DoFns run in the launcher.
    assert {int(row[0]) for row in summary["rows"]} == {summary["launcher_pid"]}
    assert {row[3] for row in summary["rows"]} == {"bolt://launcher-side:7687"}


@pytest.mark.flink
def test_cluster_stop_ends_every_process_and_is_idempotent(started):
    cluster, home = started["cluster"], started["home"]
    result = _cli("cluster", "stop", "--home", str(home), cwd=started["tmp_path"], env=started["env"])
    assert result.returncode == 0, result.stderr
    for name, record in cluster.processes.items():
        assert not flink.process_alive(record), name
        assert not flink._group_members(record.pid), name
    assert not flink.state_file(home).exists()
    again = _cli("cluster", "stop", "--home", str(home), cwd=started["tmp_path"], env=started["env"])
    assert again.returncode == 0 and "nothing to stop" in again.stderr
    flags = _cli("flags", "--home", str(home), cwd=started["tmp_path"], env=started["env"])
    assert flags.returncode == 2 and "cluster start" in flags.stderr
