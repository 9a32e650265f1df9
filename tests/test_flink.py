"""The scale-up on Beam's portable FlinkRunner, checked in Neo4j like the local run.

One small demo tenant (150 resources) is scaled x3 three times, each under its own
operation id:

* ``portable``: ``--runner=PortableRunner --job_endpoint=embed --environment_type=LOOPBACK``,
  Beam's own in-process job service: the same portable path as Flink (pipeline proto,
  pickled DoFns, LOOPBACK SDK workers, metrics over the Job API) without the Java job
  server. It runs first, so it also pays Neo4j's first Cypher planning for the others.
* ``local``: the default runner (FnApiRunner), for the wall-time comparison;
* ``flink``: ``pipelines.flink.flink_args()``, a local embedded Flink. Skipped, with the
  reason, when the job server jar cannot be had (``pipelines.flink`` says what to do;
  ``$TENANT_SCALER_REQUIRE_FLINK`` makes that a failure).

Those tests are marked ``flink`` (not in the default run). Every run must write exactly
the planned counts (report ``written``, i.e. Beam metrics, equal to Cypher counts), pass
``validate_operation`` (one-to-one relationships, no duplicates), and report metrics the
runner really delivered (committed or, where the runner only has those, attempted). Wall
times and where the Flink run's time went go to ``benchmark-results/flink-vs-local.json``
(git-ignored) and are printed. The unmarked tests at the end check ``pipelines.flink``
itself (fetch-once logic with a fake ``mvn``, the flags) and run with the default suite.

    NEO4J_HEAP=1g NEO4J_PAGECACHE=512m ./run_tests.sh -q -m flink tests/test_flink.py
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from pathlib import Path

import pytest
from apache_beam.metrics.metric import MetricsFilter

from pipelines import flink, scale_up
from pipelines.demo.load import load_demo_tenant
from pipelines.operation.validate import validate_operation
from transforms.demo import DemoTenantSpec
from transforms.model import METRICS_NAMESPACE

TENANT = "flink-tenant"
RESOURCES = 150
FACTOR = 3.0
PARALLELISM = 2
#: Set (e.g. in a CI that has the jar) to fail instead of skipping when Flink cannot run.
REQUIRE_FLINK_ENV = "TENANT_SCALER_REQUIRE_FLINK"
OPERATIONS = {"portable": "portable-op", "local": "local-op", "flink": "flink-op"}
RESULTS = Path(__file__).resolve().parent.parent / "benchmark-results" / "flink-vs-local.json"
PORTABLE_EMBEDDED = ["--runner=PortableRunner", "--job_endpoint=embed",
                     "--environment_type=LOOPBACK"]
#: Log messages that mark the phases of a portable run (Beam's and the job server's).
MILESTONES = {
    "job_server_process_started": "Really starting service",
    "job_service_up": "JobService started on",
    "job_running": "Job state changed to RUNNING",
    "job_done": "Job state changed to DONE",
}


class _Timeline(logging.Handler):
    """Remembers when Beam logged each milestone (seconds after ``start``).

    Attached to the ``apache_beam`` logger, not the root one: ``scale_up.main`` resets
    the root handlers (``basicConfig(force=True)``)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.start = time.monotonic()
        self.seen: dict[str, float] = {}
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        elapsed = round(time.monotonic() - self.start, 2)
        for name, marker in MILESTONES.items():
            if marker in message and name not in self.seen:
                self.seen[name] = elapsed
        if len(self.lines) < 400:
            self.lines.append(f"{elapsed:7.2f} {record.name}: {message[:300]}")


def _raw_metrics(result) -> dict:
    """Each counter's committed and attempted value, per step, as the runner reported them."""
    query = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    return {f"{c.key.step}/{c.key.metric.name}": [c.committed, c.attempted]
            for c in query["counters"]}


def _run(name: str, beam_args: list[str], report_dir: Path) -> dict:
    """One scale-up through ``scale_up.main``; its report, wall time, raw metrics, timeline."""
    report_path = report_dir / f"{name}.json"
    raw: dict = {}
    # scale_up reads its metrics through pipelines.beam_job.metric_totals (imported by name).
    hook = "metric_totals" if hasattr(scale_up, "metric_totals") else "_metric_totals"
    original = getattr(scale_up, hook)

    def capturing_metric_totals(result):
        raw.update(_raw_metrics(result))
        return original(result)

    timeline = _Timeline()
    beam_logger = logging.getLogger("apache_beam")
    beam_logger.addHandler(timeline)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(scale_up, hook, capturing_metric_totals)
            started = time.monotonic()
            code = scale_up.run(["--tenant-id", TENANT, "--scale-factor", str(FACTOR),
                                  "--operation-id", OPERATIONS[name], "--report", str(report_path),
                                  *beam_args])
            wall = time.monotonic() - started
    finally:
        beam_logger.removeHandler(timeline)
    report = json.loads(report_path.read_text()) if report_path.exists() else None
    return {"code": code, "report": report, "wall_s": round(wall, 2), "raw_metrics": raw,
            "milestones": timeline.seen, "log": timeline.lines}


@pytest.fixture(scope="module")
def runs(neo4j_connection, clear_neo4j, tmp_path_factory):
    clear_neo4j()
    began = time.monotonic()
    loaded = load_demo_tenant(neo4j_connection, DemoTenantSpec(TENANT, resources=RESOURCES, seed=7))
    load_s = time.monotonic() - began
    report_dir = tmp_path_factory.mktemp("flink-reports")
    results = {"portable": _run("portable", PORTABLE_EMBEDDED, report_dir),
               "local": _run("local", [], report_dir)}
    jar_began = time.monotonic()
    try:
        jar = flink.flink_job_server_jar()
        jar_s = time.monotonic() - jar_began
        results["flink"] = _run("flink", flink.flink_args(parallelism=PARALLELISM, jar=jar),
                                report_dir)
        results["flink"]["jar"] = {"path": str(jar), "mb": round(jar.stat().st_size / 1e6, 1),
                                   "fetched_this_run": flink.fetch_count > 0,
                                   "seconds_to_get": round(jar_s, 1)}
    except flink.FlinkJobServerUnavailable as error:
        results["flink"] = {"skipped": str(error).splitlines()[0]}
    _record(results, loaded, load_s)
    return results


def _record(results: dict, loaded: dict, load_s: float) -> None:
    summary = {
        "tenant": {"resources": RESOURCES, "nodes": loaded.get("nodes_written"),
                   "relationships": loaded.get("relationships_written"),
                   "load_s": round(load_s, 1)},
        "scale_factor": FACTOR,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "order": list(results),
        "runs": {},
    }
    for name, run in results.items():
        if "skipped" in run:
            summary["runs"][name] = {"skipped": run["skipped"]}
            continue
        report = run["report"] or {}
        summary["runs"][name] = {
            "runner": report.get("runner"), "operation_id": OPERATIONS[name], "exit": run["code"],
            "wall_s": run["wall_s"], "pipeline_s": report.get("pipeline_s"),
            "neo4j_write_time_s": (report.get("neo4j") or {}).get("write_time_s"),
            "written": report.get("written"), "milestones_s": run["milestones"],
            # How the runner delivered the counters: committed values, or attempted only.
            "counters": {"reported": len(run["raw_metrics"]),
                         "without_committed": sum(1 for committed, _ in run["raw_metrics"].values()
                                                  if committed is None),
                         "without_attempted": sum(1 for _, attempted in run["raw_metrics"].values()
                                                  if attempted is None)},
            **({"jar": run["jar"]} if "jar" in run else {}),
        }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _completed(runs, name):
    run = runs[name]
    if "skipped" in run:
        if os.environ.get(REQUIRE_FLINK_ENV):
            pytest.fail(f"${REQUIRE_FLINK_ENV} is set but the Flink job server is unavailable: "
                        f"{run['skipped']}")
        pytest.skip(f"Flink job server unavailable: {run['skipped']} "
                    f"(set ${flink.JAR_ENV} to a job server jar to run it)")
    assert run["code"] == 0 and run["report"] is not None, "\n".join(run["log"][-60:])
    return run


def _count(driver, query, **params):
    return driver.execute_query(query, **params).records[0][0]


@pytest.mark.flink
@pytest.mark.parametrize("name", list(OPERATIONS))
def test_writes_exactly_the_planned_counts(runs, neo4j_driver, name):
    report = _completed(runs, name)["report"]
    operation_id = OPERATIONS[name]
    nodes = _count(neo4j_driver, "MATCH (n:Resource {scale_operation_id: $op}) RETURN count(n)",
                   op=operation_id)
    relationships = _count(neo4j_driver, "MATCH ()-[r]->() WHERE r.scale_operation_id = $op "
                                         "RETURN count(r)", op=operation_id)
    templates = _count(neo4j_driver, "MATCH (t:Resource {tenant_id: $tenant}) WHERE NOT t:Original "
                                     "AND t.synthetic IS NULL RETURN count(t)", tenant=TENANT)
    assert report["status"] == "succeeded" and report["errors"] == [], report["errors"]
    assert nodes == round(templates * (FACTOR - 1)) == report["expected"]["nodes"]
    assert relationships == report["expected"]["relationships"] and relationships > nodes
    assert sum(report["in_database"]["nodes"].values()) == nodes
    assert sum(report["in_database"]["relationships"].values()) == relationships
    assert report["dead_letters"] == 0


@pytest.mark.flink
@pytest.mark.parametrize("name", list(OPERATIONS))
def test_every_invariant_holds(runs, neo4j_driver, neo4j_connection, name):
    report = _completed(runs, name)["report"]
    result = validate_operation(neo4j_driver, neo4j_connection.database, OPERATIONS[name])
    assert result.nodes_checked == report["expected"]["nodes"]
    assert result.ok, result.to_dict()


@pytest.mark.flink
@pytest.mark.parametrize("name", list(OPERATIONS))
def test_metrics_the_runner_reported_equal_the_database(runs, neo4j_driver, name):
    """``written`` comes from Beam metrics: whatever the runner delivered must add up to what
    is in the database, and every counter must have a value the report can use."""
    run = _completed(runs, name)
    operation_id = OPERATIONS[name]
    nodes = _count(neo4j_driver, "MATCH (n:Resource {scale_operation_id: $op}) RETURN count(n)",
                   op=operation_id)
    relationships = _count(neo4j_driver, "MATCH ()-[r]->() WHERE r.scale_operation_id = $op "
                                         "RETURN count(r)", op=operation_id)
    assert run["report"]["written"] == {"nodes": nodes, "relationships": relationships}
    raw = run["raw_metrics"]
    assert any(key.endswith("/nodes_written") for key in raw), raw
    for key, (committed, attempted) in raw.items():
        assert committed is not None or attempted is not None, key
        if committed is not None and attempted is not None:
            assert committed == attempted, (key, committed, attempted)
    for metric, expected in (("nodes_written", nodes), ("relationships_written", relationships)):
        values = [committed if committed is not None else attempted
                  for key, (committed, attempted) in raw.items() if key.endswith("/" + metric)]
        assert sum(values) == expected, (metric, raw)


@pytest.mark.flink
def test_flink_really_ran_on_flink(runs):
    run = _completed(runs, "flink")
    assert run["report"]["runner"] == "FlinkRunner"
    # The job server was started and the job went through Flink's states.
    assert {"job_server_process_started", "job_running", "job_done"} <= set(run["milestones"]), (
        "\n".join(run["log"][-80:]))


@pytest.mark.flink
def test_wall_times_are_recorded(runs, capsys):
    summary = json.loads(RESULTS.read_text())
    lines = [f"scale-up x{FACTOR:g} of a {RESOURCES}-resource tenant "
             f"(results: {RESULTS.relative_to(RESULTS.parent.parent)})"]
    for name, run in summary["runs"].items():
        if "skipped" in run:
            lines.append(f"  {name:9s} skipped: {run['skipped']}")
        else:
            lines.append(f"  {name:9s} wall {run['wall_s']:7.2f} s, pipeline {run['pipeline_s']} s, "
                         f"Neo4j write time {run['neo4j_write_time_s']} s, "
                         f"milestones {run['milestones_s']}")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert summary["runs"]["local"]["wall_s"] > 0


# --------------------------------------------------------------------------- fast, unmarked:
# pipelines.flink itself (no Maven download, no Flink), run with the default suite.


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TENANT_SCALER_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(flink.JAR_ENV, raising=False)
    monkeypatch.delenv(flink.VERSION_ENV, raising=False)
    return tmp_path / "cache"


def _fake_mvn(directory: Path, behaviour: str) -> None:
    """An ``mvn`` that "fetches" by writing a jar into -DoutputDirectory, or fails like
    Maven does for an artifact the repository does not serve."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "mvn"
    if behaviour == "fetch":
        body = ('for a in "$@"; do case $a in -Dartifact=*) art=${a#-Dartifact=};; '
                '-DoutputDirectory=*) out=${a#-DoutputDirectory=};; esac; done\n'
                'IFS=: read -r g n v <<< "$art"\n'
                'echo jar > "$out/$n-$v.jar"; echo "$@" >> "$out/../mvn-calls"\n')
    else:
        body = 'echo "[ERROR] Could not find artifact $3 in central"; exit 1\n'
    script.write_text("#!/usr/bin/env bash\n" + body, encoding="utf-8")
    script.chmod(0o755)


def test_fetches_once_with_maven_then_reuses_the_cached_jar(cache, tmp_path, monkeypatch):
    _fake_mvn(tmp_path / "bin", "fetch")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(flink, "fetch_count", 0)
    first = flink.flink_job_server_jar()
    second = flink.flink_job_server_jar()
    assert first == second == flink.jar_path() and first.is_file()
    assert first.parent.parent == cache and first.name == (
        f"beam-runners-flink-{flink.FLINK_VERSION}-job-server-{flink.BEAM_VERSION}.jar")
    assert flink.fetch_count == 1
    assert len((cache / "mvn-calls").read_text().splitlines()) == 1


def test_a_fetch_without_its_marker_is_redone(cache, tmp_path, monkeypatch):
    _fake_mvn(tmp_path / "bin", "fetch")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    jar = flink.jar_path()
    jar.parent.mkdir(parents=True)
    jar.write_text("half a jar")  # an interrupted fetch: no marker
    monkeypatch.setattr(flink, "fetch_count", 0)
    assert flink.flink_job_server_jar() == jar and jar.read_text().strip() == "jar"
    assert flink.fetch_count == 1


def test_an_unserved_artifact_says_what_to_do(cache, tmp_path, monkeypatch):
    _fake_mvn(tmp_path / "bin", "missing")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(flink.FlinkJobServerUnavailable) as error:
        flink.flink_job_server_jar("2.0")
    message = str(error.value)
    assert "does not serve org.apache.beam:beam-runners-flink-2.0-job-server:" in message
    assert flink.JAR_ENV in message and not flink.jar_present("2.0")


def test_a_provided_jar_is_used_as_it_is(cache, tmp_path, monkeypatch):
    jar = tmp_path / "my-job-server.jar"
    jar.write_text("jar")
    monkeypatch.setenv(flink.JAR_ENV, str(jar))
    monkeypatch.setattr(flink, "fetch_count", 0)
    assert flink.flink_job_server_jar() == jar.resolve() and flink.fetch_count == 0
    monkeypatch.setenv(flink.JAR_ENV, str(tmp_path / "missing.jar"))
    with pytest.raises(flink.FlinkJobServerUnavailable, match="not a file"):
        flink.flink_job_server_jar()


def test_unsupported_flink_version_is_refused(cache):
    with pytest.raises(flink.FlinkJobServerUnavailable, match="1.19, 1.20, 2.0, 2.1, 2.2"):
        flink.artifact("1.15")


def test_flink_args_are_beam_options_for_a_local_flink(tmp_path):
    from apache_beam.options.pipeline_options import (FlinkRunnerOptions, JobServerOptions,
                                                      PipelineOptions, PortableOptions,
                                                      StandardOptions)
    jar = tmp_path / "job-server.jar"
    options = PipelineOptions(flink.flink_args(parallelism=3, jar=jar))
    assert options.view_as(StandardOptions).runner == "FlinkRunner"
    flink_options = options.view_as(FlinkRunnerOptions)
    assert (flink_options.flink_master, flink_options.flink_version, flink_options.parallelism,
            flink_options.flink_job_server_jar) == ("[local]", flink.FLINK_VERSION, 3, str(jar))
    assert options.view_as(PortableOptions).environment_type == "LOOPBACK"
    properties = options.view_as(JobServerOptions).job_server_jvm_properties
    assert properties == list(flink.JOB_SERVER_JVM_PROPERTIES)
    assert "-Xmx1g" in properties and "--add-opens=java.base/java.util=ALL-UNNAMED" in properties
    # Every flag is one Beam knows (an unknown one would be dropped with a warning).
    known = options.get_all_options()
    assert set(options.get_all_options(retain_unknown_options=True)) - set(known) == set()
    with pytest.raises(ValueError):
        flink.flink_args(parallelism=0, jar=jar)


def test_versions_are_the_installed_beams():
    import apache_beam
    from apache_beam.options.pipeline_options import FlinkRunnerOptions
    assert flink.BEAM_VERSION == apache_beam.__version__
    assert flink.SUPPORTED_FLINK_VERSIONS == tuple(FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS)
    assert flink.FLINK_VERSION in flink.SUPPORTED_FLINK_VERSIONS


def test_cli_prints_the_flags_on_one_line(cache, tmp_path, monkeypatch, capsys):
    jar = tmp_path / "job-server.jar"
    jar.write_text("jar")
    monkeypatch.setenv(flink.JAR_ENV, str(jar))
    assert flink.main(["args", "-p", "4"]) == 0
    printed = capsys.readouterr().out.strip()
    assert "\n" not in printed and "--parallelism=4" in printed
    assert f"--flink_job_server_jar={jar.resolve()}" in printed.split()
    assert flink.main(["fetch"]) == 0
    assert capsys.readouterr().out.strip() == str(jar.resolve())
    monkeypatch.setenv(flink.JAR_ENV, str(tmp_path / "missing.jar"))
    assert flink.main(["fetch"]) == 2
