"""SIGINT and SIGTERM, as a user's Ctrl-C and a scheduler's stop, against a real Neo4j.

A scale-up (a subprocess) is signalled while it writes copy units (nodes with their
relationships) and while it writes the links between slices of large components (every
node written, relationships still missing); it must end within seconds with 130 / 143,
its record ``interrupted`` with the time and no lease, and a last stderr line that names
the command resuming it.
Running that command (with bigger batches, to save time) completes the operation
exactly. ``--rollback-on-failure``
undoes an interrupted run; a second signal ends the process at once. In this process,
signals at random moments of streamed reads show that a signal is never raised inside the
Neo4j driver (which would leave its connection half-read).

Phases are made to last seconds with one writer and batches of 5 rows (smaller than
one template's copy with its relationships: every component with a relationship is
sliced, so its relationships are links), and are told apart by counting the
operation's writes in the database.
"""

from __future__ import annotations

import os
import random
import shlex
import signal
import subprocess
import sys
import threading
import time
from typing import List

import neo4j
import pytest

from pipelines import cli
from pipelines.demo.load import load_demo_tenant
from tests.support import (
    ROOT,
    CliRun,
    assert_exact,
    expected_at_integer_factor,
    fingerprint,
    operation_counts,
    operation_record,
    run_scale_up,
    scalar,
    wait_for_writes,
)
from transforms.connection import run_transaction
from transforms.demo import DemoTenantSpec

TENANT = "signal-tenant"
RESOURCES = 120
FACTOR = 4
#: One writer and batches of 5 rows: the copy phase lasts seconds, so does the link phase.
SLOW = ["--max-concurrent-writes", "1", "--batch-size", "5", "--progress-interval", "0.5"]
#: Appended to the resume command to save test time: the last flag wins, and concurrency
#: is not part of what an operation is (a resume may change it; not the batch size,
#: which cut its parts).
FASTER = ["--max-concurrent-writes", "4"]
#: "Within seconds" of the signal, on 2 shared cores.
STOP_WITHIN_S = 10
RESUME_PREFIX = "resume it with: "


@pytest.fixture(scope="module")
def tenant(neo4j_connection, neo4j_driver, clear_neo4j):
    """The tenant in an otherwise empty database and what a scale-up of it writes;
    afterwards, nothing outside the scale operations may have changed."""
    clear_neo4j()
    load_demo_tenant(neo4j_connection, DemoTenantSpec(TENANT, resources=RESOURCES, seed=5))
    before = fingerprint(neo4j_driver)
    yield {"expected": expected_at_integer_factor(neo4j_driver, TENANT, FACTOR)}
    assert fingerprint(neo4j_driver) == before


def resume_argv(run: CliRun) -> List[str]:
    """The scale-up flags of the command the run's last stderr line says resumes it."""
    last = run.stderr.strip().splitlines()[-1]
    assert RESUME_PREFIX in last, last
    command = shlex.split(last.split(RESUME_PREFIX, 1)[1])
    assert command[:3] == ["python", "-m", "pipelines.scale_up"], command
    return command[3:]


def interrupt(driver: neo4j.Driver, tmp_path, operation_id: str, signum: int, phase: str,
              expected, *extra: str) -> CliRun:
    """Start a slow scale-up, send ``signum`` in ``phase``, wait for its end; check that
    it stopped within seconds with 128 + signum and said why as one last line."""
    run = CliRun(tmp_path, ["--tenant-id", TENANT, "--scale-factor", str(FACTOR),
                            "--operation-id", operation_id, *SLOW, *extra])
    at_signal = wait_for_writes(driver, run, operation_id, phase, expected)
    run.signal(signum)
    sent = time.monotonic()
    code = run.wait()
    stopped_after = time.monotonic() - sent
    print(f"{signal.Signals(signum).name} in the {phase} phase at {at_signal}: exit {code} "
          f"{stopped_after:.1f} s later")
    assert code == 128 + signum, run.stderr_tail()
    assert stopped_after < STOP_WITHIN_S, run.stderr_tail()
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: interrupted by {signal.Signals(signum).name}; "), last
    for noise in ("Traceback", "KeyboardInterrupt", "RuntimeError", "apache_beam"):
        assert noise not in run.stderr, run.stderr_tail()
    assert run.stdout == ""
    return run


@pytest.mark.parametrize("signum, phase", [
    (signal.SIGTERM, "copies"), (signal.SIGINT, "links"),
    (signal.SIGTERM, "links")])  # SIGINT in the copy phase: the rollback test
def test_a_signal_stops_the_run_and_its_command_resumes_it_exactly(
        tenant, neo4j_driver, tmp_path, signum, phase):
    operation_id = f"signal-{signal.Signals(signum).name.lower()}-{phase}"
    expected = tenant["expected"]
    run = interrupt(neo4j_driver, tmp_path, operation_id, signum, phase, expected)

    record = operation_record(neo4j_driver, operation_id)
    assert record["status"] == "interrupted"
    assert record["error"] == f"interrupted by {signal.Signals(signum).name}"
    assert record["finished_at"] > record["started_at"]
    assert "lease_token" not in record  # released
    stopped = operation_counts(neo4j_driver, operation_id)
    if phase == "copies":
        assert 0 < stopped["nodes"] < expected["nodes"]
    else:
        assert stopped["nodes"] == expected["nodes"]
        assert 0 < stopped["relationships"] < expected["relationships"]

    argv = resume_argv(run)
    assert argv[argv.index("--operation-id") + 1] == operation_id
    code, report = run_scale_up(tmp_path, *argv, *FASTER)
    assert code == 0
    assert_exact(neo4j_driver, operation_id, expected, report)
    assert operation_record(neo4j_driver, operation_id)["runs"] == 2


def test_rollback_on_failure_undoes_an_interrupted_run(tenant, neo4j_driver, tmp_path):
    operation_id = "signal-rollback"
    run = interrupt(neo4j_driver, tmp_path, operation_id, signal.SIGINT, "copies",
                    tenant["expected"], "--rollback-on-failure")
    assert f"operation {operation_id} was rolled back" in run.stderr.strip().splitlines()[-1]
    assert operation_counts(neo4j_driver, operation_id) == {"nodes": 0, "relationships": 0}
    assert operation_record(neo4j_driver, operation_id)["status"] == "rolled_back"


_TWICE = """
import os, signal, time
from pipelines import cli

with cli.stopping_on_signals():
    with cli.said_if_stopped_at_once("resume it with: the command"):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)
        except cli.Interrupted:
            print("stopping", flush=True)
            os.kill(os.getpid(), signal.SIGINT)  # while it cleans up
            time.sleep(10)
print("not stopped at once", flush=True)
"""


def test_a_second_signal_stops_at_once():
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", _TWICE], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 128 + signal.SIGINT, result.stderr
    assert time.monotonic() - started < 8
    assert result.stdout == "stopping\n"
    assert result.stderr.strip().splitlines()[-1] == (
        "error: SIGINT again: stopped at once; resume it with: the command")


def _stream(tx) -> int:
    """A transaction function that spends most of its time in the driver, reading."""
    total = 0
    for record in tx.run("UNWIND range(1, 3000) AS i RETURN i, 'row-' + toString(i) AS text"):
        total += len(record["text"])
    return total


def test_a_signal_inside_the_driver_is_raised_after_it_and_the_connection_stays_sound(
        neo4j_connection):
    """Signals at random moments of streamed reads (in this process, as the local runner
    reads in its main thread): each stops the reads within a second, and the one pooled
    connection still answers the next query correctly. Raised inside the driver, the
    signal left that connection half-read: the next query failed, or waited for the
    server's two-minute receive timeout."""
    chance = random.Random(7)
    with neo4j_connection.open_driver(max_connection_pool_size=1) as driver:
        for attempt in range(40):
            sent: List[float] = []

            def send() -> None:
                sent.append(time.monotonic())
                os.kill(os.getpid(), signal.SIGINT)

            timer = threading.Timer(chance.uniform(0.0, 0.05), send)
            with pytest.raises(cli.Interrupted):
                with cli.stopping_on_signals():
                    timer.start()
                    while True:
                        run_transaction(driver, neo4j_connection.database, _stream,
                                        neo4j.READ_ACCESS, "a read")
            assert time.monotonic() - sent[0] < 1.0, attempt
            assert scalar(driver, "RETURN $n * 2 AS n", n=attempt) == attempt * 2, attempt
