"""The scale-up on Flink, checked in Neo4j: on a real local cluster (JobManager, TaskManager
with 2 slots, EXTERNAL SDK workers started by the worker pool), on an embedded Flink
(``--flink_master=[local]``) and, for comparison, on the default local runner.

A small generated tenant is scaled x3 with a second tenant beside it, once per runner
and each under its own operation id, with ``--max-concurrent-writes 2`` and small
batches, so that both Flink workers write at once. Every run must write exactly the
planned counts, pass ``validate_operation`` (one-to-one relationships, no duplicates),
report Beam metrics equal to the database, leave everything else unchanged, and never
have more than 2 write transactions in flight in total (sampled with SHOW
TRANSACTIONS). A re-run of the cluster's operation converges to the same graph. A run
whose SDK worker is killed fails visibly and a re-run completes it.

Marked ``flink`` (``.ci/run`` runs them): the first run builds the job server jar with
Maven (~150 MB of artifacts) and downloads Flink from PyPI (~235 MB), then caches both.
Wall times go to ``benchmark-results/flink-vs-local.json`` (git-ignored) and are printed.

    ./run_tests.sh -q -m flink tests/test_flink.py
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from pipelines.demo.load import load_demo_tenant
from pipelines.infra import flink
from pipelines.operation.validate import validate_operation
from tests.support import (
    ROOT,
    CliRun,
    fingerprint,
    operation_counts,
    operation_fingerprint,
    run_scale_up,
    scalar,
)
from transforms.cypher import BATCH_LABEL
from transforms.demo import DemoTenantSpec

pytestmark = pytest.mark.flink

TENANT = "flink-tenant"
OTHER_TENANT = "flink-neighbour"
RESOURCES = 300
FACTOR = 3.0
PARALLELISM = 2
#: The total bound on write transactions in flight: one per Flink worker.
MAX_CONCURRENT_WRITES = 2
BATCH_SIZE = 25
RESULTS = ROOT / "benchmark-results" / "flink-vs-local.json"
#: Beam flags per run (the cluster's come from its ``flags``); the order they run in.
EMBEDDED = ["--runner=FlinkRunner", "--flink_master=[local]", f"--parallelism={PARALLELISM}"]
ORDER = ("local-runner", "embedded", "cluster")


def _flink_cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.flink", *args], cwd=ROOT,
                          env=dict(os.environ), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cluster(neo4j_connection, tmp_path_factory):
    """A local cluster started the way a user does; its SDK workers inherit the test
    Neo4j's NEO4J_* settings (the conftest exports them) and read its password file."""
    home = tmp_path_factory.mktemp("flink-home")
    began = time.monotonic()
    started = _flink_cli("cluster", "start", "--home", str(home))
    seconds = time.monotonic() - began
    try:
        assert started.returncode == 0, started.stderr[-6000:]
        state = flink.read_state(home)
        flags = started.stdout.strip().splitlines()[-1].split()
        assert flags == state.flags
        yield {"home": home, "state": state, "flags": flags, "start_s": round(seconds, 1),
               "start_log": started.stderr}
    finally:
        _flink_cli("cluster", "stop", "--home", str(home), timeout=120)


@pytest.fixture(scope="module")
def tenants(neo4j_connection, neo4j_driver, clear_neo4j):
    clear_neo4j()
    for tenant, seed in ((TENANT, 7), (OTHER_TENANT, 8)):
        load_demo_tenant(neo4j_connection, DemoTenantSpec(tenant, resources=RESOURCES, seed=seed))
    return {"before": fingerprint(neo4j_driver)}


class InFlightWrites(threading.Thread):
    """Samples, as fast as the server answers, how many of the sink's write transactions
    (each merges its ledger node first) are running; keeps the largest number and how
    often any was."""

    def __init__(self, driver) -> None:
        super().__init__(daemon=True)
        self._driver = driver
        self._done = threading.Event()
        self.most = 0
        self.samples = 0
        self.busy_samples = 0

    def run(self) -> None:
        while not self._done.is_set():
            running = scalar(self._driver,
                             "SHOW TRANSACTIONS YIELD currentQuery, status "
                             "WHERE currentQuery CONTAINS $ledger RETURN count(*)",
                             ledger=f"MERGE (batch:{BATCH_LABEL} {{key: $key}})")
            self.samples += 1
            self.busy_samples += running > 0
            self.most = max(self.most, running)

    def stop(self) -> None:
        self._done.set()
        self.join()


def _scale_up(tmp_path: Path, operation_id: str, beam_args, neo4j_driver) -> dict:
    sampler = InFlightWrites(neo4j_driver)
    sampler.start()
    began = time.monotonic()
    try:
        code, report = run_scale_up(
            tmp_path, "--tenant-id", TENANT, "--scale-factor", str(FACTOR),
            "--operation-id", operation_id, "--batch-size", str(BATCH_SIZE),
            "--max-concurrent-writes", str(MAX_CONCURRENT_WRITES), *beam_args)
    finally:
        wall = time.monotonic() - began
        sampler.stop()
    return {"code": code, "report": report, "wall_s": round(wall, 2),
            "in_flight": {"most": sampler.most, "samples": sampler.samples,
                          "busy_samples": sampler.busy_samples}}


@pytest.fixture(scope="module")
def runs(cluster, tenants, neo4j_driver, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("flink-reports")
    arguments = {"local-runner": [], "embedded": EMBEDDED, "cluster": cluster["flags"]}
    results = {name: _scale_up(tmp_path, f"op-{name}", arguments[name], neo4j_driver)
               for name in ORDER}
    first = operation_fingerprint(neo4j_driver, "op-cluster")
    results["cluster-rerun"] = _scale_up(tmp_path, "op-cluster", cluster["flags"], neo4j_driver)
    results["cluster-rerun"]["converged"] = operation_fingerprint(neo4j_driver, "op-cluster") == first
    _record(results, cluster)
    return results


def _record(results: dict, cluster: dict) -> None:
    summary = {
        "tenant": {"resources": RESOURCES, "scale_factor": FACTOR, "neighbour": OTHER_TENANT},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "cluster_start_s": cluster["start_s"],
        "order": [*ORDER, "cluster-rerun"],
        "runs": {name: {"exit": run["code"], "wall_s": run["wall_s"],
                        "pipeline_s": (run["report"] or {}).get("pipeline_s"),
                        "written": (run["report"] or {}).get("written"),
                        "in_flight": run["in_flight"]}
                 for name, run in results.items()},
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _succeeded(runs, name) -> dict:
    run = runs[name]
    assert run["code"] == 0 and run["report"] is not None, run
    assert run["report"]["status"] == "succeeded" and run["report"]["errors"] == []
    return run["report"]


@pytest.mark.parametrize("name", ORDER)
def test_writes_exactly_the_planned_counts(runs, neo4j_driver, name):
    report = _succeeded(runs, name)
    counts = operation_counts(neo4j_driver, f"op-{name}")
    templates = scalar(neo4j_driver, "MATCH (t:Resource {tenant_id: $tenant}) WHERE NOT t:Original "
                                     "AND t.synthetic IS NULL RETURN count(t)", tenant=TENANT)
    assert counts["nodes"] == round(templates * (FACTOR - 1)) == report["expected"]["nodes"]
    assert counts["relationships"] == report["expected"]["relationships"] > counts["nodes"]
    assert report["dead_letters"] == 0
    expected_runner = "FnApiRunner" if name == "local-runner" else "FlinkRunner"
    assert report["runner"] == expected_runner


@pytest.mark.parametrize("name", ORDER)
def test_every_invariant_holds(runs, neo4j_driver, neo4j_connection, name):
    report = _succeeded(runs, name)
    result = validate_operation(neo4j_driver, neo4j_connection.database, f"op-{name}")
    assert result.nodes_checked == report["expected"]["nodes"]
    assert result.ok, result.to_dict()


@pytest.mark.parametrize("name", ORDER)
def test_the_reports_metrics_equal_the_database(runs, neo4j_driver, name):
    report = _succeeded(runs, name)
    counts = operation_counts(neo4j_driver, f"op-{name}")
    assert report["written"] == counts
    assert {what: sum(by_type.values()) for what, by_type in report["in_database"].items()} == counts


def test_nothing_else_changed(runs, tenants, neo4j_driver):
    assert fingerprint(neo4j_driver) == tenants["before"]
    assert scalar(neo4j_driver, "MATCH (n:Resource {tenant_id: $t}) WHERE n.synthetic = true "
                                "RETURN count(n)", t=OTHER_TENANT) == 0


@pytest.mark.parametrize("name", ORDER)
def test_writes_in_flight_never_exceed_the_bound(runs, name):
    in_flight = runs[name]["in_flight"]
    # The sampler saw the writes (so a count above the bound could not have hidden).
    assert in_flight["busy_samples"] > 0, in_flight
    assert 1 <= in_flight["most"] <= MAX_CONCURRENT_WRITES, in_flight


def test_a_rerun_converges(runs, neo4j_driver):
    report = _succeeded(runs, "cluster-rerun")
    assert runs["cluster-rerun"]["converged"]
    assert operation_counts(neo4j_driver, "op-cluster") == {
        "nodes": report["expected"]["nodes"], "relationships": report["expected"]["relationships"]}


def _sdk_workers(cluster) -> list:
    """The SDK worker processes the cluster's worker pool started (its children)."""
    pool = psutil.Process(cluster["state"].processes["worker_pool"].pid)
    return pool.children(recursive=True)


def test_a_killed_worker_fails_the_run_and_a_rerun_completes_it(runs, cluster, neo4j_driver,
                                                                 neo4j_connection, tmp_path):
    operation = "op-killed"
    # A longer run (x12, batches of 10) so that the kill lands while it writes.
    args = ["--tenant-id", TENANT, "--scale-factor", "12", "--operation-id", operation,
            "--batch-size", "10", "--max-concurrent-writes", str(MAX_CONCURRENT_WRITES),
            "--progress-interval", "1", *cluster["flags"]]
    run = CliRun(tmp_path, args, env=dict(os.environ), name="killed")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and run.process.poll() is None:
        if operation_counts(neo4j_driver, operation)["nodes"] > 0 and _sdk_workers(cluster):
            break
        time.sleep(0.2)
    assert run.process.poll() is None, f"the run ended before it wrote: {run.stderr_tail()}"
    killed = _sdk_workers(cluster)
    for worker in killed:
        worker.kill()
    code = run.wait()
    assert killed and code == 1, run.stderr_tail()
    last_error = run.error_lines()[-1]
    assert operation in last_error, last_error  # says which operation to resume
    partial = operation_counts(neo4j_driver, operation)

    code, report = run_scale_up(tmp_path, *args)
    assert code == 0 and report["status"] == "succeeded", report
    counts = operation_counts(neo4j_driver, operation)
    assert counts == {"nodes": report["expected"]["nodes"],
                      "relationships": report["expected"]["relationships"]}
    assert counts["nodes"] > partial["nodes"] or counts["relationships"] > partial["relationships"]
    assert validate_operation(neo4j_driver, neo4j_connection.database, operation).ok


def test_wall_times_are_recorded(runs, cluster, capsys):
    summary = json.loads(RESULTS.read_text())
    lines = [f"scale-up x{FACTOR:g} of a {RESOURCES}-resource tenant; cluster start "
             f"{cluster['start_s']} s (results: {RESULTS.relative_to(ROOT)})"]
    for name in summary["order"]:
        run = summary["runs"][name]
        lines.append(f"  {name:13s} wall {run['wall_s']:7.2f} s, pipeline {run['pipeline_s']} s, "
                     f"most writes in flight {run['in_flight']['most']}")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert all(summary["runs"][name]["wall_s"] > 0 for name in summary["order"])
