"""Connection faults, each against a real Neo4j: the command fails fast or carries on,
and a resume completes the operation exactly.

* The server cannot be reached (a closed port), refuses the password, or accepts TCP
  but never answers: the command fails within seconds, exit 1, with a message that
  says so, and writes nothing.
* Connections cut in the middle of a run (``tests.tcp_proxy.TcpProxy`` between the
  subprocess and the server): a short cut is carried by the driver's retries; a cut
  that outlasts them fails the run (exit 1, clear message, the operation recorded as
  failed). Either way a re-run of the same operation id ends with exact counts and no
  duplicates, and nothing else in the graph changed.
* The process killed (SIGKILL) in the middle of a run: the re-run completes it exactly.

Runs are subprocesses (``python -m pipelines.scale_up``) where the process is the
thing under test (exit code, stderr, signals, its own connection), and in-process
(``scale_up.run``) for the re-runs, which the tests only need the result of.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import List

import pytest

from pipelines.demo.load import load_demo_tenant
from tests.support import (
    CliRun,
    assert_exact,
    bolt_port,
    closed_port,
    expected_at_integer_factor,
    fingerprint,
    operation_counts,
    operation_fingerprint,
    operation_record,
    run_scale_up,
    scalar,
    wait_for_writes,
)
from tests.tcp_proxy import TcpProxy
from transforms.demo import DemoTenantSpec

# The tenant the mid-run faults scale: big enough that a run writes for several seconds
# (900 copies, ~3,500 relationships, batches of 200), small enough for 2 shared cores.
TENANT = "fault-tenant"
RESOURCES = 300
FACTOR = 4
BATCH_SIZE = 200
#: "Within a few seconds": Python + Beam imports take ~2 s of that on 2 cores.
QUICK_FAILURE_S = 15


# --------------------------------------------------------------------------- helpers


def scale_args(operation_id: str, *extra: str, tenant: str = TENANT) -> List[str]:
    return ["--tenant-id", tenant, "--scale-factor", str(FACTOR), "--operation-id", operation_id,
            "--batch-size", str(BATCH_SIZE), "--progress-interval", "1", "--json", *extra]


def resume(tmp_path: Path, operation_id: str) -> tuple:
    """Re-run the operation in this process, on the direct connection; (exit code, report)."""
    started = time.monotonic()
    code, report = run_scale_up(tmp_path, *scale_args(operation_id))
    print(f"resume of {operation_id}: exit {code} after {time.monotonic() - started:.1f} s")
    return code, report


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tenant(neo4j_connection, neo4j_driver, clear_neo4j):
    """The fault tenant in an otherwise empty database; what a scale-up of it must write."""
    clear_neo4j()
    load_demo_tenant(neo4j_connection, DemoTenantSpec(TENANT, resources=RESOURCES, seed=21))
    return {
        "connection": neo4j_connection,
        "port": bolt_port(neo4j_connection.uri),
        "expected": expected_at_integer_factor(neo4j_driver, TENANT, FACTOR),
    }


@pytest.fixture
def unchanged(tenant, neo4j_driver):
    """Asserts, after the test, that nothing outside the scale operations changed."""
    before = fingerprint(neo4j_driver)
    yield
    assert fingerprint(neo4j_driver) == before


# --------------------------------------------------------------------------- no server


def test_unreachable_server_fails_fast_and_writes_nothing(tenant, neo4j_driver, unchanged, tmp_path):
    operations = scalar(neo4j_driver, "MATCH (o:ScaleOperation) RETURN count(o)")
    uri = f"bolt://127.0.0.1:{closed_port()}"
    run = CliRun(tmp_path, [*scale_args("fault-unreachable"), "--neo4j-uri", uri])
    assert run.wait() == 1, run.stderr_tail()
    print(f"unreachable: exit 1 after {run.elapsed:.1f} s")
    assert run.elapsed < QUICK_FAILURE_S
    assert run.error_lines() and run.error_lines()[-1].startswith(f"error: cannot reach Neo4j at {uri}")
    assert "Traceback" not in run.stderr and run.report() is None
    assert scalar(neo4j_driver, "MATCH (o:ScaleOperation) RETURN count(o)") == operations


def test_wrong_password_fails_fast_and_writes_nothing(tenant, neo4j_driver, unchanged, tmp_path):
    operations = scalar(neo4j_driver, "MATCH (o:ScaleOperation) RETURN count(o)")
    password = "not-the-password-" + os.urandom(6).hex()
    env = dict(os.environ, NEO4J_PASSWORD=password, NEO4J_URI=tenant["connection"].uri)
    run = CliRun(tmp_path, scale_args("fault-password"), env=env)
    assert run.wait() == 1, run.stderr_tail()
    print(f"wrong password: exit 1 after {run.elapsed:.1f} s")
    assert run.elapsed < QUICK_FAILURE_S
    assert run.error_lines() == [
        f"error: Neo4j at {tenant['connection'].uri} refused the credentials of user 'neo4j'; "
        "check NEO4J_USER and NEO4J_PASSWORD"]
    assert password not in run.stderr + run.stdout
    assert "Traceback" not in run.stderr and run.report() is None
    assert scalar(neo4j_driver, "MATCH (o:ScaleOperation) RETURN count(o)") == operations


def test_server_that_never_answers_fails_fast_and_writes_nothing(tenant, neo4j_driver, unchanged,
                                                                 tmp_path):
    operations = scalar(neo4j_driver, "MATCH (o:ScaleOperation) RETURN count(o)")
    with socket.socket() as silent:  # listens (the kernel completes connects), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        uri = f"bolt://127.0.0.1:{silent.getsockname()[1]}"
        run = CliRun(tmp_path, [*scale_args("fault-silent"), "--neo4j-uri", uri])
        try:
            code = run.process.wait(timeout=QUICK_FAILURE_S)
        except subprocess.TimeoutExpired:
            run.kill()
            code = None
    assert scalar(neo4j_driver, "MATCH (o:ScaleOperation) RETURN count(o)") == operations
    assert code == 1, f"no answer within {QUICK_FAILURE_S} s:\n{run.stderr_tail()}"
    assert run.error_lines()[-1].startswith(f"error: cannot reach Neo4j at {uri}")


# --------------------------------------------------------------------------- mid-run faults


def test_short_connection_cut_is_carried_by_the_retries(tenant, neo4j_driver, unchanged, tmp_path):
    operation_id = "fault-short-cut"
    expected = tenant["expected"]
    with TcpProxy(tenant["port"]) as proxy:
        env = dict(os.environ, NEO4J_URI=proxy.uri)
        run = CliRun(tmp_path, scale_args(operation_id), env=env)
        wait_for_writes(neo4j_driver, run, operation_id)
        at_cut = operation_counts(neo4j_driver, operation_id)
        connections_before = proxy.accepted
        cut = proxy.cut(refuse_for=3.0)
        code = run.wait()
        reconnections = proxy.accepted - connections_before
    report = run.report()
    print(f"short cut: {at_cut} written at the cut, {cut} connections cut, "
          f"{reconnections} new ones after it; exit {code} after {run.elapsed:.1f} s, "
          f"report retries {report and report['retries']}")
    assert cut > 0 and at_cut != expected  # the cut hit live connections, mid-run
    assert code == 0, run.stderr_tail()
    assert reconnections > 0
    assert_exact(neo4j_driver, operation_id, expected, report)
    written = operation_fingerprint(neo4j_driver, operation_id)

    code, report = resume(tmp_path, operation_id)
    assert code == 0
    assert_exact(neo4j_driver, operation_id, expected, report)
    assert operation_fingerprint(neo4j_driver, operation_id) == written
    assert operation_record(neo4j_driver, operation_id)["runs"] == 2


@pytest.fixture(scope="module")
def long_cut(tenant, neo4j_driver, tmp_path_factory):
    """A run whose connections are cut and refused until it gives up (its transaction
    retries are exhausted: 30 s or more), after which the server is reachable again for
    the run's failure path. Nothing is asserted here; the tests below read the result."""
    operation_id = "fault-long-cut"
    before = fingerprint(neo4j_driver)
    with TcpProxy(tenant["port"]) as proxy:
        env = dict(os.environ, NEO4J_URI=proxy.uri)
        # -v: Beam's own log line says when the sink gave up.
        run = CliRun(tmp_path_factory.mktemp("long-cut"), scale_args(operation_id, "-v"), env=env)
        wait_for_writes(neo4j_driver, run, operation_id)
        at_cut = operation_counts(neo4j_driver, operation_id)
        cut_at = time.monotonic()
        cut = proxy.cut()
        # Beam logs the sink's exception when it gives up; then the outage ends.
        gave_up = run.wait_for_stderr(r" ERROR apache_beam", timeout=150)
        proxy.restore()
        code = run.wait()
        ended = time.monotonic() - cut_at
    print(f"long cut: {at_cut} written at the cut, {cut} connections cut; gave up "
          f"{gave_up and round(gave_up, 1)} s after it, exit {code} {ended:.1f} s after it")
    return {"operation_id": operation_id, "run": run, "code": code, "cut": cut,
            "at_cut": at_cut, "gave_up": gave_up, "uri": proxy.uri, "before": before,
            "record": operation_record(neo4j_driver, operation_id),
            "after": operation_counts(neo4j_driver, operation_id)}


def test_cut_longer_than_the_retries_fails_the_run_and_records_it(long_cut, tenant):
    run = long_cut["run"]
    assert long_cut["cut"] > 0 and long_cut["at_cut"] != tenant["expected"]
    assert long_cut["gave_up"] is not None, run.stderr_tail()
    assert long_cut["gave_up"] >= 25  # the driver's retries did carry it that long
    assert long_cut["code"] == 1, run.stderr_tail()
    assert run.report() is None
    assert run.error_lines() and run.error_lines()[-1].startswith(
        f"error: cannot reach Neo4j at {long_cut['uri']}"), run.stderr_tail()
    record = long_cut["record"]
    assert record["status"] == "failed", record
    assert record["error"].startswith("ServiceUnavailable")
    assert long_cut["after"] != tenant["expected"]  # the run did stop short


def test_cut_longer_than_the_retries_says_which_operation_to_resume(long_cut):
    last = long_cut["run"].error_lines()[-1]
    assert long_cut["operation_id"] in last and "--operation-id" in last, last


def test_resume_after_the_long_cut_is_exact(long_cut, tenant, neo4j_driver, tmp_path):
    code, report = resume(tmp_path, long_cut["operation_id"])
    assert code == 0
    assert_exact(neo4j_driver, long_cut["operation_id"], tenant["expected"], report)
    assert operation_record(neo4j_driver, long_cut["operation_id"])["runs"] == 2
    assert fingerprint(neo4j_driver) == long_cut["before"]


def test_killed_run_is_completed_by_a_resume(tenant, neo4j_driver, unchanged, tmp_path):
    operation_id = "fault-killed"
    expected = tenant["expected"]
    run = CliRun(tmp_path, scale_args(operation_id))
    wait_for_writes(neo4j_driver, run, operation_id)
    run.kill()
    assert run.process.returncode == -signal.SIGKILL
    at_kill = operation_counts(neo4j_driver, operation_id)
    print(f"killed after {time.monotonic() - run.started:.1f} s with {at_kill} written")
    assert 0 < at_kill["nodes"] and at_kill != expected

    code, report = resume(tmp_path, operation_id)
    assert code == 0
    assert_exact(neo4j_driver, operation_id, expected, report)
    assert operation_record(neo4j_driver, operation_id)["runs"] == 2
