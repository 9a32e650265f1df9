"""A local Apache Flink 1.19 cluster and Beam's Flink job server, built from Maven Central
and PyPI artifacts: no Docker, no download site other than the package registries.

Why it is put together this way (the evidence is in docs/RUNNING_AT_SCALE.md):

* Beam's Python ``FlinkRunner`` hands the pipeline to a Java *job server* that turns it
  into a Flink job. Maven Central serves no prebuilt job server jar, but it serves the
  runner it is made of, ``org.apache.beam:beam-runners-flink-1.19``, and 2.62.0 is the
  newest Beam whose runner and dependencies it serves in full. The SDK and the job
  server must speak one version of the portable protocol, hence apache-beam 2.62.0.
  ``FlinkRunner`` starts the job server itself with ``java -jar``, so it must be one
  jar: we build it with ``maven-shade-plugin`` from a generated pom.
* A Flink distribution is not on Maven Central as a tarball, but PyPI's
  ``apache-flink-libraries`` (its ``lib/``, ``opt/``, ``plugins/``) and ``apache-flink``
  (the start scripts and default ``conf/``) together hold one. They are only downloaded
  and unpacked, never installed (``apache-flink`` pins an old apache-beam).

Contract:

* ``ensure_job_server_jar()`` builds the job server jar once into
  ``cache_root()/beam-flink-1.19-job-server-2.62.0/`` (``$TENANT_SCALER_FLINK_JOB_SERVER_JAR``
  names a jar to use instead); ``ensure_flink_home()`` assembles Flink 1.19.0 once into
  ``cache_root()/flink-1.19.0/``. Both work under ``maven.fetch_once``'s lock and count
  only once their completion marker is written, so a half-finished one is redone.
* ``start_cluster(home)`` starts a JobManager, a TaskManager and a Beam SDK worker pool
  on 127.0.0.1, each in its own session and process group, returns once the TaskManager
  has registered its slots and the pool accepts connections, and records them in
  ``home/cluster.json``; on any failure it stops what it started and raises
  ``FlinkError`` with the tail of the relevant log. ``detached=True`` (the CLI's
  default) leaves them running after this process exits; otherwise they die with it.
* ``stop_cluster(home)`` stops every process recorded there (SIGTERM to each process
  group, SIGKILL after a timeout) and removes the record; it is idempotent.
* ``cluster.flags`` (and ``python -m pipelines.flink flags``) are the Beam flags that run
  a pipeline on that cluster; ``flink_options(beam_args)`` completes the flags of a
  ``FlinkRunner`` run that names no job server jar (e.g. ``--flink_master=[local]``).
* The SDK workers inherit the environment of ``cluster start``: that is how the DoFns
  get ``NEO4J_URI``/``NEO4J_USER``/``NEO4J_DATABASE`` and ``NEO4J_PASSWORD`` or
  ``NEO4J_PASSWORD_FILE``; the Flink JVMs do not get ``NEO4J_PASSWORD``.

CLI: ``python -m pipelines.flink {cluster {start,stop,status},flags,fetch,worker-pool} --help``
(this module's ``main``).
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import importlib.metadata
import json
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from types import FrameType
from typing import Dict, List, Optional, Sequence

import psutil

import pipelines
from pipelines.infra.maven import cache_root, dependency_xml, fetch_once
from pipelines.infra.processes import (
    DIE_WITH_PARENT,
    LOG_TAIL_LINES,
    InfraError,
    check_java,
    free_port,
    port_is_free,
    say,
    signal_group,
    tail,
)

#: The Flink line of the job server and the cluster; Beam's ``--flink_version``.
FLINK_LINE = "1.19"
FLINK_VERSION = "1.19.0"
#: The job server's Beam version; the installed SDK must be the same.
BEAM_VERSION = "2.62.0"
RUNNER_ARTIFACT = f"org.apache.beam:beam-runners-flink-{FLINK_LINE}:{BEAM_VERSION}"
#: Routes the job server's logging (SLF4J) to java.util.logging on stderr, which Beam's
#: FlinkRunner copies into the Python log; without a binding SLF4J drops every line.
SLF4J_BINDING = "org.slf4j:slf4j-jdk14:1.7.30"
SHADE_PLUGIN = "org.apache.maven.plugins:maven-shade-plugin:3.5.1"
JAR_PLUGIN = "org.apache.maven.plugins:maven-jar-plugin:3.4.1"
JOB_SERVER_MAIN = "org.apache.beam.runners.flink.FlinkJobServerDriver"
JAR_ENV = "TENANT_SCALER_FLINK_JOB_SERVER_JAR"
#: The PyPI files the Flink distribution is assembled from, pinned to their hashes. The
#: wheel is the cp311 manylinux one whatever Python runs this: only its scripts and
#: conf are used, and they are the same in every wheel.
FLINK_DOWNLOADS = {
    f"apache-flink-libraries=={FLINK_VERSION}":
        "bb3115c1c63702f95c3f89d5d952e9d98e26fd35b980a265d139790a6ea2c2a2",
    f"apache-flink=={FLINK_VERSION}":
        "fb607231f5c80ff232ab67925a1df7f8784c99e153c283f464cf59e0ef5873b5",
}
FLINK_WHEEL_PLATFORM = ("--platform", "manylinux1_x86_64", "--python-version", "3.11",
                        "--implementation", "cp", "--abi", "cp311")
#: Flink 1.19 runs on Java 11 and 17; this machine has 17 and so does the job server.
MIN_JAVA = 17
#: What Flink 1.19.0's own conf/config.yaml gives every Flink JVM (``env.java.opts.all``)
#: so that Flink, and Kryo inside it, may reflect into the JDK's modules on Java 17.
FLINK_JAVA_OPTIONS = (
    "--add-exports=java.base/sun.net.util=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports=jdk.compiler/com.sun.tools.javac.api=ALL-UNNAMED",
    "--add-exports=jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED",
    "--add-exports=jdk.compiler/com.sun.tools.javac.parser=ALL-UNNAMED",
    "--add-exports=jdk.compiler/com.sun.tools.javac.tree=ALL-UNNAMED",
    "--add-exports=jdk.compiler/com.sun.tools.javac.util=ALL-UNNAMED",
    "--add-exports=java.security.jgss/sun.security.krb5=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.net=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens=java.base/java.text=ALL-UNNAMED",
    "--add-opens=java.base/java.time=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent.locks=ALL-UNNAMED",
)
DEFAULT_HOME = Path(".flink")
DEFAULT_SLOTS = 2
#: Whole-process sizes (heap, metaspace, network, managed memory, JVM overhead): Flink's
#: defaults are 1600m and 1728m; the machine also runs Neo4j and the Python workers.
DEFAULT_JOBMANAGER_MEMORY = "1024m"
DEFAULT_TASKMANAGER_MEMORY = "1536m"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
#: The variables the DoFns read their Neo4j connection from (README, "Using your own Neo4j").
NEO4J_ENV = ("NEO4J_URI", "NEO4J_USER", "NEO4J_DATABASE", "NEO4J_PASSWORD_FILE")

_BUILD_MARKER = ".build-complete"
_FETCH_MARKER = ".fetch-complete"
_STATE_FILE = "cluster.json"
#: Log lines that mean a server could not bind its port.
_BIND_FAILURES = ("Address already in use", "BindException", "Failed to bind")

#: How many times this process ran Maven or pip for Flink (tests check a start fetched none).
fetch_count = 0

log = logging.getLogger(__name__)


class FlinkError(InfraError):
    """The local Flink cannot be fetched, started, reached or used; the message says what to do."""


# --------------------------------------------------------------------------- the job server jar


def job_server_dir() -> Path:
    return cache_root() / f"beam-flink-{FLINK_LINE}-job-server-{BEAM_VERSION}"


def job_server_jar_path() -> Path:
    """Where the built jar lives (complete only with the build marker beside it)."""
    return job_server_dir() / f"beam-flink-{FLINK_LINE}-job-server-{BEAM_VERSION}.jar"


def job_server_jar_present() -> bool:
    return (job_server_dir() / _BUILD_MARKER).is_file() and job_server_jar_path().is_file()


def _job_server_pom() -> str:
    """A jar project with no code of its own whose shaded jar is the job server.

    The default lifecycle's resources, compiler and surefire steps are unbound (nothing to
    do, and nothing to download for them); ``maven-jar-plugin`` makes the empty main jar
    that ``maven-shade-plugin`` then replaces with every runtime dependency merged in.
    """
    _, shade_artifact, shade_version = SHADE_PLUGIN.split(":")
    _, jar_artifact, jar_version = JAR_PLUGIN.split(":")
    unbound = "".join(
        f"""
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>{artifact}</artifactId>
        <version>{version}</version>
        <executions>{"".join(f'<execution><id>{execution}</id><phase>none</phase></execution>'
                             for execution in executions)}</executions>
      </plugin>"""
        for artifact, version, executions in (
            ("maven-resources-plugin", "3.3.1", ("default-resources", "default-testResources")),
            ("maven-compiler-plugin", "3.13.0", ("default-compile", "default-testCompile")),
            ("maven-surefire-plugin", "3.2.5", ("default-test",))))
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by pipelines/infra/flink.py: builds Beam's Flink job server as one jar. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.tenant-scaler</groupId>
  <artifactId>beam-flink-job-server</artifactId>
  <version>{BEAM_VERSION}</version>
  <packaging>jar</packaging>
  <dependencies>
{dependency_xml(RUNNER_ARTIFACT)}
{dependency_xml(SLF4J_BINDING)}
  </dependencies>
  <build>
    <plugins>{unbound}
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>{jar_artifact}</artifactId>
        <version>{jar_version}</version>
      </plugin>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>{shade_artifact}</artifactId>
        <version>{shade_version}</version>
        <executions>
          <execution>
            <phase>package</phase>
            <goals><goal>shade</goal></goals>
            <configuration>
              <createDependencyReducedPom>false</createDependencyReducedPom>
              <filters>
                <filter>
                  <!-- Signatures of the signed dependencies do not match a merged jar. -->
                  <artifact>*:*</artifact>
                  <excludes>
                    <exclude>META-INF/*.SF</exclude>
                    <exclude>META-INF/*.DSA</exclude>
                    <exclude>META-INF/*.RSA</exclude>
                  </excludes>
                </filter>
              </filters>
              <transformers>
                <!-- gRPC, Flink and Beam find their implementations through META-INF/services. -->
                <transformer implementation="org.apache.maven.plugins.shade.resource.ServicesResourceTransformer"/>
                <transformer implementation="org.apache.maven.plugins.shade.resource.ManifestResourceTransformer">
                  <mainClass>{JOB_SERVER_MAIN}</mainClass>
                </transformer>
              </transformers>
            </configuration>
          </execution>
        </executions>
      </plugin>
    </plugins>
  </build>
</project>
"""


def ensure_job_server_jar() -> Path:
    """The Beam Flink job server jar, built once with Maven; ``$TENANT_SCALER_FLINK_JOB_SERVER_JAR`` wins.

    Raises ``FlinkError`` when the installed apache-beam is not ``BEAM_VERSION`` (no other
    job server can be built from Maven Central) or the build fails.
    """
    provided = os.environ.get(JAR_ENV)
    if provided:
        path = Path(provided).expanduser()
        if not path.is_file():
            raise FlinkError(f"${JAR_ENV} names {path}, which is not a file")
        return path.resolve()
    installed = importlib.metadata.version("apache-beam")
    if installed != BEAM_VERSION:
        raise FlinkError(
            f"apache-beam {installed} is installed, but the only Flink job server that can be "
            f"built from Maven Central is Beam {BEAM_VERSION}'s ({RUNNER_ARTIFACT}), and the SDK "
            f"and the job server must be the same version: install apache-beam=={BEAM_VERSION}, "
            f"or set ${JAR_ENV} to a job server jar of Beam {installed}")
    work, target = job_server_dir(), job_server_jar_path()

    def build(mvn: str) -> None:
        global fetch_count
        say("building the Beam %s Flink %s job server jar from Maven Central (once, ~150 MB, "
            "under a minute) into %s …", BEAM_VERSION, FLINK_LINE, work)
        began = time.monotonic()
        (work / _BUILD_MARKER).unlink(missing_ok=True)
        target.unlink(missing_ok=True)
        shutil.rmtree(work / "target", ignore_errors=True)
        (work / "pom.xml").write_text(_job_server_pom(), encoding="utf-8")
        command = [mvn, "-B", "-q", "-f", str(work / "pom.xml"), "package"]
        fetch_count += 1
        result = subprocess.run(command, cwd=work, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        shaded = work / "target" / f"beam-flink-job-server-{BEAM_VERSION}.jar"
        if result.returncode != 0 or not shaded.is_file():
            output = "\n".join(result.stdout.splitlines()[-LOG_TAIL_LINES:])
            raise FlinkError(
                f"building the Flink job server jar failed (exit {result.returncode}) running "
                f"{' '.join(command)} in {work}\nCan Maven reach Maven Central? Last output:\n{output}")
        shaded.replace(target)
        shutil.rmtree(work / "target", ignore_errors=True)
        (work / _BUILD_MARKER).write_text(f"{RUNNER_ARTIFACT}\n{SLF4J_BINDING}\n", encoding="utf-8")
        say("built %s (%.0f MB) in %.1f s", target.name, target.stat().st_size / 1e6,
            time.monotonic() - began)

    fetch_once(work, job_server_jar_present, build, lambda: FlinkError(
        f"Maven ('mvn') is not on PATH; it is needed once to build the Flink job server jar from "
        f"{RUNNER_ARTIFACT} (Debian/Ubuntu: apt-get install maven), or set ${JAR_ENV} to a "
        "job server jar you have"), FlinkError)
    return target


# --------------------------------------------------------------------------- the Flink distribution


def flink_home() -> Path:
    """The assembled distribution (complete only if ``flink_home_present``)."""
    return cache_root() / f"flink-{FLINK_VERSION}"


def flink_home_present() -> bool:
    home = flink_home()
    return (home / _FETCH_MARKER).is_file() and (home / "lib" / f"flink-dist-{FLINK_VERSION}.jar").is_file()


def ensure_flink_home() -> Path:
    """Flink 1.19.0's ``bin/ lib/ opt/ plugins/ conf/``, downloaded from PyPI and unpacked once.

    ``apache-flink-libraries`` (an sdist) carries ``deps/{lib,opt,plugins}`` and
    ``deps/bin/bash-java-utils.jar``; the ``apache-flink`` wheel carries
    ``pyflink/{bin,conf}``. The downloads are deleted once unpacked. Runs under
    ``maven.fetch_once``'s lock, which also insists on Maven: ``cluster start`` needs it
    for the job server jar anyway.
    """
    home = flink_home()

    def fetch(_mvn: str) -> None:
        global fetch_count
        say("downloading Flink %s from PyPI (once, ~235 MB) into %s …", FLINK_VERSION, home)
        began = time.monotonic()
        (home / _FETCH_MARKER).unlink(missing_ok=True)
        for part in ("bin", "lib", "opt", "plugins", "conf", "downloads"):
            shutil.rmtree(home / part, ignore_errors=True)
        downloads = home / "downloads"
        downloads.mkdir()
        requirements = downloads / "requirements.txt"
        requirements.write_text("".join(f"{name} --hash=sha256:{digest}\n"
                                        for name, digest in FLINK_DOWNLOADS.items()), encoding="utf-8")
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes",
                   "--disable-pip-version-check", "--no-input", "--dest", str(downloads),
                   *FLINK_WHEEL_PLATFORM, "-r", str(requirements)]
        fetch_count += 1
        result = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        sdists = list(downloads.glob(f"apache-flink-libraries-{FLINK_VERSION}.tar.gz"))
        wheels = list(downloads.glob(f"apache_flink-{FLINK_VERSION}-*.whl"))
        if result.returncode != 0 or not sdists or not wheels:
            output = "\n".join(result.stdout.splitlines()[-LOG_TAIL_LINES:])
            raise FlinkError(f"downloading Flink {FLINK_VERSION} from PyPI failed (exit "
                             f"{result.returncode}) running {' '.join(command)}\n"
                             f"Can pip reach PyPI? Last output:\n{output}")
        _unpack_libraries(sdists[0], home)
        _unpack_scripts(wheels[0], home)
        shutil.rmtree(downloads)
        size_mb = sum(path.stat().st_size for path in home.rglob("*") if path.is_file()) / 1e6
        (home / _FETCH_MARKER).write_text("".join(f"{name}\n" for name in FLINK_DOWNLOADS),
                                          encoding="utf-8")
        say("assembled Flink %s (%.0f MB) in %.1f s", FLINK_VERSION, size_mb, time.monotonic() - began)

    fetch_once(home, flink_home_present, fetch, lambda: FlinkError(
        "Maven ('mvn') is not on PATH; the first 'cluster start' needs it to build the Flink job "
        "server jar (Debian/Ubuntu: apt-get install maven)"), FlinkError)
    return home


def _unpack_libraries(sdist: Path, home: Path) -> None:
    """``deps/lib``, ``deps/opt``, ``deps/plugins`` and ``deps/bin`` of the sdist into ``home``."""
    prefix = f"apache-flink-libraries-{FLINK_VERSION}/deps/"
    with tarfile.open(sdist) as archive:
        members = []
        for member in archive.getmembers():
            if member.name.startswith(prefix) and member.name[len(prefix):].split("/")[0] in (
                    "lib", "opt", "plugins", "bin"):
                member.name = member.name[len(prefix):]
                members.append(member)
        archive.extractall(home, members=members, filter="data")


def _unpack_scripts(wheel: Path, home: Path) -> None:
    """``pyflink/bin`` and ``pyflink/conf`` of the wheel into ``home/bin`` and ``home/conf``."""
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            part, _, rest = name.removeprefix("pyflink/").partition("/")
            if not name.startswith("pyflink/") or part not in ("bin", "conf") or not rest:
                continue
            target = home / part / rest
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(name))
            if part == "bin":
                target.chmod(0o755)


# --------------------------------------------------------------------------- the cluster


@dataclasses.dataclass
class ProcessRecord:
    """One server of the cluster: the leader of its own process group."""

    pid: int
    #: ``psutil``'s start time: tells this process from a later one that reuses its pid.
    created: float
    log: str


@dataclasses.dataclass
class Cluster:
    """What ``home/cluster.json`` records about a cluster."""

    home: str
    ports: Dict[str, int]
    slots: int
    processes: Dict[str, ProcessRecord]
    flags: List[str]
    #: What the SDK workers were given (names to values; the password never).
    worker_environment: Dict[str, str]
    detached: bool
    ready: bool = False
    started_at: float = dataclasses.field(default_factory=time.time)

    @property
    def logs(self) -> Dict[str, str]:
        """Each server's log files: its console output, and for Flink's two its full log.

        Named by ``flink-console.sh`` (``flink-<ident>-<service>-<n>-<host>.log``).
        """
        logs = {}
        for name, record in self.processes.items():
            logs[name] = record.log
            service = {"jobmanager": "standalonesession", "taskmanager": "taskexecutor"}.get(name)
            if service:
                for path in sorted(Path(record.log).parent.glob(f"flink-*-{service}-*.log")):
                    logs[f"{name} (full)"] = str(path)
        return logs

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Cluster":
        data = json.loads(text)
        data["processes"] = {name: ProcessRecord(**record) for name, record in data["processes"].items()}
        return cls(**data)


def state_file(home: Path) -> Path:
    return Path(home) / _STATE_FILE


def read_state(home: Path) -> Optional[Cluster]:
    """The cluster recorded in ``home``, or None (no record, or one this code cannot read)."""
    try:
        return Cluster.from_json(state_file(home).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _write_state(cluster: Cluster) -> None:
    path = state_file(Path(cluster.home))
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(cluster.to_json(), encoding="utf-8")
    temporary.replace(path)


def process_alive(record: ProcessRecord) -> bool:
    """True if the recorded process still runs (the same one: not a reuse of its pid)."""
    try:
        process = psutil.Process(record.pid)
        return (abs(process.create_time() - record.created) < 1.0
                and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def dead_processes(cluster: Cluster) -> List[str]:
    return [name for name, record in cluster.processes.items() if not process_alive(record)]


def running_cluster(home: Path) -> Cluster:
    """The cluster that runs in ``home``, ready and with every process alive; else ``FlinkError``."""
    cluster = read_state(home)
    start = f"python -m pipelines.flink cluster start --home {shlex.quote(str(home))}"
    if cluster is None:
        raise FlinkError(f"no Flink cluster is running in {home}: start one with '{start}'")
    dead = dead_processes(cluster)
    if dead:
        raise FlinkError(
            f"the Flink cluster recorded in {home} is not running: its {', '.join(dead)} "
            f"process(es) are gone (logs in {Path(home) / 'logs'}). Start a new one with '{start}'")
    if not cluster.ready:
        raise FlinkError(f"the Flink cluster in {home} is still starting (or its start was "
                         f"interrupted): wait, or stop it and run '{start}' again")
    return cluster


def cluster_flags(cluster_rest_port: int, worker_pool_port: int, jar: Path, slots: int) -> List[str]:
    """The Beam flags that run a pipeline on a cluster and worker pool on 127.0.0.1.

    EXTERNAL: Flink's TaskManager asks the worker pool to start SDK workers, which run the
    DoFns. The job server needs no JVM options here: it only translates and submits.
    """
    return [
        "--runner=FlinkRunner",
        f"--flink_master=127.0.0.1:{cluster_rest_port}",
        "--environment_type=EXTERNAL",
        f"--environment_config=127.0.0.1:{worker_pool_port}",
        f"--flink_job_server_jar={jar}",
        f"--parallelism={slots}",
    ]


class _Lock:
    """An exclusive ``flock`` on ``home/.lock``: one start or stop per home at a time."""

    def __init__(self, home: Path) -> None:
        self._path = Path(home) / ".lock"
        self._handle = None

    def __enter__(self) -> "_Lock":
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self._path, "w")
        fcntl.flock(self._handle, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._handle is not None
        self._handle.close()


def _memory(size: str) -> str:
    if not re.fullmatch(r"[1-9][0-9]*[mg]", size):
        raise FlinkError(f"memory size {size!r} is not a number followed by m or g (e.g. 1536m)")
    return size


def _check_ports(requested: Dict[str, Optional[int]]) -> Dict[str, int]:
    """The ports asked for (None: any), each a distinct TCP port nothing listens on now."""
    ports: Dict[str, int] = {}
    for name, port in requested.items():
        if port is None:
            continue
        flag = f"--{name.replace('_', '-')}-port"
        if not 0 < port < 65536:
            raise FlinkError(f"{flag} {port} is not a TCP port (1-65535)")
        if port in ports.values():
            raise FlinkError(f"port {port} is asked for twice; give each server its own port")
        if not port_is_free(port):
            raise FlinkError(f"port {port} on 127.0.0.1 is taken (asked for with {flag}); stop "
                             f"what listens there, or choose another port or none (a free one)")
        ports[name] = port
    return ports


def _choose_ports(requested: Dict[str, Optional[int]]) -> Dict[str, int]:
    """Every port of the cluster: the requested ones, checked free; the others, free ones."""
    ports = _check_ports(requested)
    for name in requested:
        while name not in ports:
            candidate = free_port()
            if candidate not in ports.values():
                ports[name] = candidate
    return ports


def _flink_config(home: Path, ports: Dict[str, int], slots: int, jobmanager_memory: str,
                  taskmanager_memory: str) -> Dict[str, object]:
    """Flink's settings for one local cluster (flattened keys; see ``_write_conf``)."""
    return {
        # Flink's Java 17 options, and only warnings on the console (home/logs/*.out): the
        # full log is Flink's own file beside it, which the web UI shows too.
        "env.java.opts.all": " ".join((*FLINK_JAVA_OPTIONS, "-Dconsole.log.level=WARN")),
        "jobmanager.bind-host": "127.0.0.1",
        "jobmanager.rpc.address": "127.0.0.1",
        "jobmanager.rpc.port": ports["rpc"],
        "jobmanager.memory.process.size": jobmanager_memory,
        "jobmanager.execution.failover-strategy": "region",
        "taskmanager.bind-host": "127.0.0.1",
        "taskmanager.host": "127.0.0.1",
        "taskmanager.rpc.port": ports["taskmanager_rpc"],
        "taskmanager.data.port": ports["taskmanager_data"],
        "taskmanager.numberOfTaskSlots": slots,
        "taskmanager.memory.process.size": taskmanager_memory,
        "blob.server.port": ports["blob"],
        "rest.address": "127.0.0.1",
        "rest.bind-address": "127.0.0.1",
        "rest.port": ports["rest"],
        "parallelism.default": slots,
        "io.tmp.dirs": str(home / "tmp"),
        # Milliseconds before a TaskManager that started before the JobManager listened
        # tries again; Flink's 10 s default made every start take 10 s longer.
        "cluster.registration.error-delay": 1000,
    }


def _write_conf(home: Path, settings: Dict[str, object], flink: Path) -> None:
    """``home/conf``: ``config.yaml`` (nested, as Flink 1.19's YAML parser reads it) and
    the distribution's logging configuration."""
    import yaml  # PyYAML comes with apache-beam; only needed here

    nested: Dict[str, object] = {}
    for key, value in settings.items():
        *parents, leaf = key.split(".")
        level = nested
        for parent in parents:
            level = level.setdefault(parent, {})  # type: ignore[assignment]
        level[leaf] = value  # type: ignore[index]
    conf = home / "conf"
    conf.mkdir(parents=True, exist_ok=True)
    text = "# Written by pipelines/infra/flink.py on every cluster start; edits are overwritten.\n"
    (conf / "config.yaml").write_text(text + yaml.safe_dump(nested, sort_keys=True), encoding="utf-8")
    shutil.copyfile(flink / "conf" / "log4j-console.properties", conf / "log4j-console.properties")


def _project_root() -> Path:
    """The folder that holds the ``pipelines`` and ``transforms`` packages."""
    return Path(pipelines.__file__).resolve().parent.parent


def _worker_environment() -> Dict[str, str]:
    """The worker pool's environment: ours, with the project importable and this Python first.

    Beam's pool starts every SDK worker as plain ``python`` from PATH, so ``home/bin/python``
    (written by ``_write_python_shim``) must come first; a relative
    ``NEO4J_PASSWORD_FILE`` is made absolute, as the pool runs in the cluster home.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(_project_root()), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))])
    if env.get("NEO4J_PASSWORD_FILE"):
        env["NEO4J_PASSWORD_FILE"] = str(Path(env["NEO4J_PASSWORD_FILE"]).expanduser().resolve())
    return env


def _write_python_shim(home: Path) -> Path:
    """``home/bin/python``: runs this very interpreter (and so its venv)."""
    shim = home / "bin" / "python"
    shim.parent.mkdir(parents=True, exist_ok=True)
    shim.write_text("#!/bin/sh\n# Written by pipelines/infra/flink.py: the Python that started "
                    "the cluster, for the SDK workers.\n"
                    f"exec {shlex.quote(sys.executable)} \"$@\"\n", encoding="utf-8")
    shim.chmod(0o755)
    return shim.parent


def describe_worker_environment(env: Dict[str, str]) -> Dict[str, str]:
    """What the SDK workers will see of the Neo4j settings, the password replaced by a note."""
    seen = {name: env[name] for name in NEO4J_ENV if env.get(name)}
    if env.get("NEO4J_PASSWORD"):
        seen["NEO4J_PASSWORD"] = "(set, not shown)"
    return seen


def _spawn(command: List[str], home: Path, log_path: Path, env: Dict[str, str],
           detached: bool) -> ProcessRecord:
    """Start one server in its own session, output to ``log_path``.

    Detached, it outlives us; attached, Linux SIGTERMs it when we die (PDEATHSIG).
    """
    with open(log_path, "ab") as output:
        process = subprocess.Popen(
            command, cwd=home, env=env, stdin=subprocess.DEVNULL, stdout=output,
            stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=None if detached else DIE_WITH_PARENT)
    try:
        created = psutil.Process(process.pid).create_time()
    except psutil.Error:  # gone already: ready-waiting reports it with its log
        created = 0.0
    return ProcessRecord(pid=process.pid, created=created, log=str(log_path))


def start_cluster(home: Path = DEFAULT_HOME, *, rest_port: Optional[int] = None,
                  rpc_port: Optional[int] = None, worker_pool_port: Optional[int] = None,
                  slots: int = DEFAULT_SLOTS, jobmanager_memory: str = DEFAULT_JOBMANAGER_MEMORY,
                  taskmanager_memory: str = DEFAULT_TASKMANAGER_MEMORY, detached: bool = True,
                  timeout: float = START_TIMEOUT_S) -> Cluster:
    """Start a cluster in ``home`` and return it once it is ready (see the module docstring).

    Raises ``FlinkError`` if one already runs there, a port is taken, Java is missing or
    older than 17, or the cluster does not come up in ``timeout`` s (having stopped it).
    """
    home = Path(home).resolve()
    if slots < 1:
        raise FlinkError(f"--slots must be at least 1, got {slots}")
    jobmanager_memory, taskmanager_memory = _memory(jobmanager_memory), _memory(taskmanager_memory)
    requested = {"rest": rest_port, "rpc": rpc_port, "worker_pool": worker_pool_port,
                 "blob": None, "taskmanager_rpc": None, "taskmanager_data": None}
    _check_ports(requested)  # now, not only after a first build of a minute
    java = check_java(MIN_JAVA, f"Flink {FLINK_VERSION}", FlinkError)
    with _Lock(home):
        previous = read_state(home)
        if previous is not None:
            if not dead_processes(previous):
                raise FlinkError(f"a Flink cluster is already running in {home}; stop it first "
                                 f"with 'python -m pipelines.flink cluster stop --home {shlex.quote(str(home))}'")
            say("the Flink cluster recorded in %s is gone; clearing what is left of it", home)
            _stop(previous)
        jar = ensure_job_server_jar()
        flink = ensure_flink_home()
        ports = _choose_ports(requested)
        began = time.monotonic()
        logs = home / "logs"
        for folder in (logs, home / "pids", home / "tmp"):
            folder.mkdir(parents=True, exist_ok=True)
        _write_conf(home, _flink_config(home, ports, slots, jobmanager_memory, taskmanager_memory),
                    flink)
        jvm_env = {name: value for name, value in os.environ.items() if name != "NEO4J_PASSWORD"}
        jvm_env.update(FLINK_CONF_DIR=str(home / "conf"), FLINK_LOG_DIR=str(logs),
                       FLINK_PID_DIR=str(home / "pids"), FLINK_IDENT_STRING="tenant-scaler",
                       JAVA_HOME=str(Path(os.path.realpath(java)).parent.parent))
        worker_env = _worker_environment()
        worker_env["PATH"] = os.pathsep.join([str(_write_python_shim(home)), worker_env.get("PATH", "")])
        cluster = Cluster(home=str(home), ports=ports, slots=slots, processes={},
                          flags=cluster_flags(ports["rest"], ports["worker_pool"], jar, slots),
                          worker_environment=describe_worker_environment(worker_env),
                          detached=detached)
        say("starting Flink %s on 127.0.0.1 (REST port %d, %d slots) and a Beam worker pool "
            "(port %d) in %s …", FLINK_VERSION, ports["rest"], slots, ports["worker_pool"], home)
        try:
            for name, command, env in (
                    ("jobmanager", [str(flink / "bin" / "jobmanager.sh"), "start-foreground"], jvm_env),
                    ("taskmanager", [str(flink / "bin" / "taskmanager.sh"), "start-foreground"], jvm_env),
                    ("worker_pool", [sys.executable, "-m", "pipelines.infra.flink", "worker-pool",
                                     "--port", str(ports["worker_pool"])], worker_env)):
                log_name = "worker-pool.log" if name == "worker_pool" else f"{name}.out"
                cluster.processes[name] = _spawn(command, home, logs / log_name, env, detached)
                _write_state(cluster)  # at once, so 'cluster stop' finds what a crash left
            _wait_until_ready(cluster, began + timeout)
            cluster.ready = True
            _write_state(cluster)
        except BaseException:
            _stop(cluster)
            raise
    say("Flink cluster ready in %.1f s: web UI and REST at http://127.0.0.1:%d", time.monotonic() - began,
        ports["rest"])
    return cluster


def _wait_until_ready(cluster: Cluster, deadline: float) -> None:
    """Poll until the TaskManager's slots are registered and the worker pool answers.

    Fails fast, with the log tail of the process concerned, if one of them exits.
    """
    rest, pool = cluster.ports["rest"], cluster.ports["worker_pool"]
    while True:
        for name in dead_processes(cluster):
            record = cluster.processes[name]
            text = _log_tails(cluster, name)
            if any(sign in text for sign in _BIND_FAILURES):
                raise FlinkError(f"a port was taken while the {name.replace('_', ' ')} started "
                                 f"(ports: {_ports_text(cluster.ports)}); start again to choose "
                                 f"free ones, or pass others.\n{text}")
            raise FlinkError(f"the {name.replace('_', ' ')} (pid {record.pid}) exited before the "
                             f"cluster was ready.\n{text}")
        slots = _registered_slots(rest)
        if slots >= cluster.slots and _accepts_connections(pool):
            return
        if time.monotonic() > deadline:
            laggard = "taskmanager" if slots < cluster.slots else "worker_pool"
            raise FlinkError(
                f"the Flink cluster did not come up in time ({slots} of {cluster.slots} slots "
                f"registered at http://127.0.0.1:{rest}; worker pool on port {pool} "
                f"{'answers' if _accepts_connections(pool) else 'does not answer'}).\n"
                f"{_log_tails(cluster, laggard)}\n{_log_tails(cluster, 'jobmanager')}")
        time.sleep(0.5)


def _registered_slots(rest_port: int) -> int:
    """Slots the JobManager's REST endpoint reports (0 while it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/overview", timeout=2) as response:
            return int(json.load(response).get("slots-total", 0))
    except (OSError, ValueError, urllib.error.URLError):
        return 0


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _ports_text(ports: Dict[str, int]) -> str:
    return ", ".join(f"{name.replace('_', ' ')} {port}" for name, port in sorted(ports.items()))


def _log_tails(cluster: Cluster, name: str) -> str:
    parts = []
    for label, path in cluster.logs.items():
        if label.split(" ")[0] == name:
            text = tail(Path(path))
            if text.strip():
                parts.append(f"--- last lines of {path} ---\n{text.rstrip()}")
    return "\n".join(parts) or f"(no log lines for the {name.replace('_', ' ')} in {Path(cluster.home) / 'logs'})"


def _group_members(pgid: int) -> List[psutil.Process]:
    """The live (not zombie) processes of process group ``pgid``."""
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process)
        except (OSError, psutil.Error):
            pass
    return members


def _ours(record: ProcessRecord) -> bool:
    """Whether signalling the group of ``record`` reaches only what the cluster started.

    Yes while the leader is the recorded process; also once it is gone, while its group
    still has members (Linux hands out no pid that is a live group's id, so no other
    process can have taken it); no if another process now has its pid.
    """
    return process_alive(record) or not psutil.pid_exists(record.pid)


def _stop(cluster: Cluster, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM every process group of ``cluster``, SIGKILL what is left after ``timeout``
    s, then remove its record and Flink's temporary files."""
    groups = [record.pid for record in cluster.processes.values() if _ours(record)]
    for pgid in groups:
        signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(_group_members(pgid) for pgid in groups) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [pgid for pgid in groups if _group_members(pgid)]
    if left:
        log.warning("Flink processes %s did not stop within %.0f s; killing them", left, timeout)
        for pgid in left:
            signal_group(pgid, signal.SIGKILL)
        while any(_group_members(pgid) for pgid in left):
            time.sleep(0.1)
    home = Path(cluster.home)
    state_file(home).unlink(missing_ok=True)
    shutil.rmtree(home / "tmp", ignore_errors=True)


def stop_cluster(home: Path = DEFAULT_HOME, timeout: float = STOP_TIMEOUT_S) -> Optional[Cluster]:
    """Stop the cluster recorded in ``home``; the cluster that was stopped, None if there was none."""
    home = Path(home).resolve()
    if not state_file(home).exists():
        return None
    with _Lock(home):
        cluster = read_state(home)
        if cluster is None:
            return None
        say("stopping the Flink cluster in %s (pids %s) …", home,
            ", ".join(str(record.pid) for record in cluster.processes.values()))
        _stop(cluster, timeout)
    say("stopped")
    return cluster


# --------------------------------------------------------------------------- Beam flags


def _is_flink(runner: Optional[str]) -> bool:
    """Whether Beam resolves ``--runner`` to its FlinkRunner (it also takes "flink", any case,
    and the class's dotted path)."""
    if not runner:
        return False
    name = runner.rsplit(".", 1)[-1].lower()
    return name in ("flink", "flinkrunner")


def _given(beam_args: Sequence[str], flag: str) -> bool:
    return any(arg == flag or arg.startswith(flag + "=") for arg in beam_args)


def flink_options(beam_args: Sequence[str]) -> List[str]:
    """``beam_args`` completed so that a ``FlinkRunner`` run needs no download by Beam and
    says how many parallel workers it has.

    For a FlinkRunner run without ``--flink_job_server_jar`` (e.g.
    ``--flink_master=[local]``): appends the cached job server jar (built if needed), the
    jar's ``--flink_version`` and Flink's Java 17 module options for the job server JVM,
    which with ``[local]`` runs Flink itself. Without the jar flag, Beam would try to
    download a job server jar that Maven Central does not serve. For any FlinkRunner run
    without ``--parallelism``: appends the parallelism Flink would choose (the cores here
    for an embedded Flink, the cluster's slots for a cluster), which the scale-up needs to
    share ``--max-concurrent-writes`` out. Flags the user gave are kept as they are and
    win; other runs come back unchanged.

    Raises ``FlinkError`` for a ``--flink_version`` other than the jar's, and for a
    cluster that cannot say how many slots it has.
    """
    from apache_beam.options.pipeline_options import (FlinkRunnerOptions, JobServerOptions,
                                                      PipelineOptions, StandardOptions)

    args = list(beam_args)
    options = PipelineOptions(args)
    flink = options.view_as(FlinkRunnerOptions)
    if not _is_flink(options.view_as(StandardOptions).runner):
        return args
    added = []
    if not flink.flink_job_server_jar:
        if _given(args, "--flink_version") and flink.flink_version != FLINK_LINE:
            raise FlinkError(f"--flink_version={flink.flink_version}: the job server this project "
                             f"builds is for Flink {FLINK_LINE}; pass --flink_job_server_jar for "
                             f"Flink {flink.flink_version}, or drop --flink_version")
        added.append(f"--flink_job_server_jar={ensure_job_server_jar()}")
        if not _given(args, "--flink_version"):
            added.append(f"--flink_version={FLINK_LINE}")
        given_properties = options.view_as(JobServerOptions).job_server_jvm_properties or []
        added += [f"--job_server_jvm_properties={option}" for option in FLINK_JAVA_OPTIONS
                  if option not in given_properties]
    if not _given(args, "--parallelism"):
        added.append(f"--parallelism={_default_parallelism(flink.flink_master)}")
    return args + added


#: The ``--flink_master`` values that mean "an embedded Flink in the job server".
_EMBEDDED_MASTERS = ("[local]", "[auto]", "", None)


def _default_parallelism(master: Optional[str]) -> int:
    """What Flink runs a job with that names no parallelism: one per core for an
    embedded Flink, every slot of a cluster (asked from its REST endpoint)."""
    if master in _EMBEDDED_MASTERS:
        return os.cpu_count() or 1
    url = f"http://{master}/overview" if "://" not in master else f"{master.rstrip('/')}/overview"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            slots = int(json.load(response).get("slots-total", 0))
    except (OSError, ValueError, urllib.error.URLError) as error:
        raise FlinkError(f"cannot ask the Flink cluster at {master} how many task slots it has "
                         f"({error}); give --parallelism") from error
    if slots < 1:
        raise FlinkError(f"the Flink cluster at {master} has no task slots registered; start "
                         "its TaskManagers, or give --parallelism")
    return slots


# --------------------------------------------------------------------------- the worker pool


def serve_worker_pool(port: int) -> None:
    """Run Beam's external worker pool on 127.0.0.1:``port`` until killed.

    The servicer is ``worker_pool_main``'s (one SDK worker process per request from
    Flink); only the address differs: ``worker_pool_main`` listens on every interface,
    and whoever reaches a pool can have it run an SDK worker against a control endpoint
    of their own, i.e. run their code here.
    """
    import grpc
    from apache_beam.portability.api import beam_fn_api_pb2_grpc
    from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer
    from apache_beam.utils import thread_pool_executor

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = grpc.server(thread_pool_executor.shared_unbounded_instance(),
                         options=[("grpc.http2.max_pings_without_data", 0),
                                  ("grpc.http2.max_ping_strikes", 0)])
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(
        BeamFnExternalWorkerPoolServicer(use_process=True), server)
    try:
        server.add_insecure_port(f"127.0.0.1:{port}")
    except RuntimeError as failure:
        raise FlinkError(f"the worker pool cannot listen on 127.0.0.1:{port} (taken?): {failure}") from failure
    server.start()
    log.info("Beam worker pool listening on 127.0.0.1:%d (Python %s, cwd %s)", port,
             sys.executable, os.getcwd())
    while True:
        time.sleep(3600)


# --------------------------------------------------------------------------- CLI


def _print_started(cluster: Cluster) -> None:
    """Where the logs are, what the workers see of Neo4j, then the flags (last stdout line)."""
    say("logs:")
    for label, path in cluster.logs.items():
        say("  %-18s %s", label, path)
    seen = cluster.worker_environment
    say("the SDK workers see %s", ", ".join(f"{name}={value}" for name, value in seen.items())
        or "no NEO4J_* variable")
    if "NEO4J_PASSWORD" not in seen and "NEO4J_PASSWORD_FILE" not in seen:
        say("warning: neither NEO4J_PASSWORD nor NEO4J_PASSWORD_FILE is set, so the DoFns will "
            "connect to Neo4j without a password; set one and restart the cluster if yours needs it")
    print(" ".join(cluster.flags), flush=True)


def _wait_in_foreground(cluster: Cluster) -> int:
    """Until Ctrl-C or SIGTERM (0), or until a process of the cluster exits (1)."""
    while True:
        dead = dead_processes(cluster)
        if dead:
            print(f"error: the Flink cluster's {', '.join(dead)} exited; stopping the rest.\n"
                  f"{_log_tails(cluster, dead[0])}", file=sys.stderr)
            return 1
        time.sleep(1.0)


def _raise_system_exit(signum: int, frame: Optional[FrameType]) -> None:
    raise SystemExit(128 + signum)


def _status(home: Path) -> int:
    cluster = read_state(home)
    if cluster is None:
        print(f"no Flink cluster in {home}")
        return 1
    dead = dead_processes(cluster)
    for name, record in cluster.processes.items():
        print(f"{name:12s} pid {record.pid:<8d} {'gone' if name in dead else 'running'}  log {record.log}")
    slots = _registered_slots(cluster.ports["rest"])
    print(f"REST         http://127.0.0.1:{cluster.ports['rest']} ({slots} of {cluster.slots} slots registered)")
    print(f"ports        {_ports_text(cluster.ports)}")
    print(f"workers see  {cluster.worker_environment}")
    print(f"flags        {' '.join(cluster.flags)}")
    return 0 if not dead and cluster.ready and slots >= cluster.slots else 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.flink",
        description=f"A local Flink {FLINK_VERSION} cluster with a Beam worker pool, and Beam's "
                    f"Flink job server (cached under {cache_root()}).")
    commands = parser.add_subparsers(dest="command", required=True)
    cluster_parser = commands.add_parser("cluster", help="start, stop or inspect a local cluster")
    actions = cluster_parser.add_subparsers(dest="action", required=True)
    start = actions.add_parser(
        "start", help="start a JobManager, a TaskManager and a Beam worker pool on 127.0.0.1 "
                      "(in the background unless --foreground); the last stdout line is the "
                      "Beam flags to use")
    start.add_argument("--foreground", action="store_true",
                       help="keep the cluster attached to this command until Ctrl-C or SIGTERM")
    start.add_argument("--rest-port", type=int, default=None,
                       help="JobManager REST/web UI port (default: a free one)")
    start.add_argument("--rpc-port", type=int, default=None,
                       help="JobManager RPC port (default: a free one)")
    start.add_argument("--worker-pool-port", type=int, default=None,
                       help="Beam worker pool port (default: a free one)")
    start.add_argument("--slots", type=int, default=DEFAULT_SLOTS,
                       help=f"TaskManager slots, and the flags' --parallelism (default {DEFAULT_SLOTS})")
    start.add_argument("--jobmanager-memory", default=DEFAULT_JOBMANAGER_MEMORY,
                       help=f"JobManager process size (default {DEFAULT_JOBMANAGER_MEMORY})")
    start.add_argument("--taskmanager-memory", default=DEFAULT_TASKMANAGER_MEMORY,
                       help=f"TaskManager process size (default {DEFAULT_TASKMANAGER_MEMORY})")
    actions.add_parser("stop", help="stop the cluster and remove its record (idempotent)")
    actions.add_parser("status", help="the cluster's processes, slots and flags "
                                      "(exit 0 if it runs, 1 if not)")
    flags = commands.add_parser("flags", help="print the Beam flags of the running cluster, one "
                                              "line, for $(...)")
    for command in (*actions.choices.values(), flags):
        command.add_argument("--home", type=Path, default=DEFAULT_HOME,
                             help="the cluster's folder: conf, logs, record (default: .flink)")
    commands.add_parser("fetch", help="only build the job server jar and assemble Flink (once); "
                                      "print their paths")
    pool = commands.add_parser("worker-pool", help="run a Beam worker pool on 127.0.0.1 in the "
                                                   "foreground (what 'cluster start' runs)")
    pool.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)

    try:
        if args.command == "fetch":
            print(ensure_job_server_jar())
            print(ensure_flink_home())
            return 0
        if args.command == "worker-pool":
            serve_worker_pool(args.port)
            return 0
        if args.command == "flags":
            print(" ".join(running_cluster(args.home).flags))
            return 0
        if args.action == "stop":
            if stop_cluster(args.home) is None:
                say("no Flink cluster is recorded in %s; nothing to stop", args.home)
            return 0
        if args.action == "status":
            return _status(args.home)
        previous = signal.signal(signal.SIGTERM, _raise_system_exit)
        try:
            cluster = start_cluster(
                args.home, rest_port=args.rest_port, rpc_port=args.rpc_port,
                worker_pool_port=args.worker_pool_port, slots=args.slots,
                jobmanager_memory=args.jobmanager_memory,
                taskmanager_memory=args.taskmanager_memory, detached=not args.foreground)
            _print_started(cluster)
            if not args.foreground:
                say("running in the background; stop it with 'python -m pipelines.flink cluster "
                    "stop --home %s'", shlex.quote(str(args.home)))
                return 0
            say("Ctrl-C stops the cluster")
            try:
                return _wait_in_foreground(cluster)
            finally:
                stop_cluster(args.home)
        finally:
            signal.signal(signal.SIGTERM, previous)
    except FlinkError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
