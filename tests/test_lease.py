"""The lease on an operation's record, against a real Neo4j: one live run per operation,
a gone run's lease taken over, stale records called so, the heartbeat renewing it.

Gone runs are planted as records (another host, an old heartbeat; or a process of this
host that has ended), which is exactly what a killed run leaves behind.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List

import neo4j
import pytest

from pipelines.demo.load import load_demo_tenant
from pipelines.operation import lifecycle, record
from tests.support import (
    CliRun,
    assert_exact,
    expected_at_integer_factor,
    operation_record,
    run_main,
    run_scale_up,
    wait_for_writes,
)
from transforms.demo import DemoTenantSpec
from transforms.schema import ensure_schema

TENANT = "lease-tenant"
FACTOR = 4
HOST = socket.gethostname()
PARAMETERS = {"tenant_id": TENANT, "scale_factor": float(FACTOR), "target_count": None,
              "resource_types": None}


@pytest.fixture(scope="module")
def tenant(neo4j_connection, neo4j_driver, clear_neo4j):
    clear_neo4j()
    load_demo_tenant(neo4j_connection, DemoTenantSpec(TENANT, resources=80, seed=8))
    return {"expected": expected_at_integer_factor(neo4j_driver, TENANT, FACTOR)}


def scale_args(operation_id: str, *extra: str) -> List[str]:
    return ["--tenant-id", TENANT, "--scale-factor", str(FACTOR), "--operation-id", operation_id,
            *extra]


def ended_pid() -> int:
    """The pid of a process of this host that has ended."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    return int(child.stdout)


def plant(driver: neo4j.Driver, operation_id: str, host: str, pid: int,
          heartbeat_age_s: int) -> Dict[str, Any]:
    """A ``running`` record whose lease a run of ``host``/``pid`` took and last renewed
    ``heartbeat_age_s`` seconds ago (by the server's clock); its properties."""
    return driver.execute_query(
        "CREATE (o:ScaleOperation {id: $id, tenant_id: $tenant, status: 'running', runs: 1, "
        "  parameters: $parameters, generation_timestamp: $now, created_at: $now, "
        "  started_at: $now, lease_token: 'planted', lease_host: $host, lease_pid: $pid, "
        "  heartbeat_at: toString(datetime() - duration({seconds: $age})), "
        "  resume_command: $resume}) RETURN properties(o) AS o",
        id=operation_id, tenant=TENANT, parameters=json.dumps(PARAMETERS), now=record.utc_now_iso(),
        host=host, pid=pid, age=heartbeat_age_s,
        resume=f"python -m pipelines.scale_up {' '.join(scale_args(operation_id))}",
    ).records[0]["o"]


def take(driver: neo4j.Driver, operation_id: str) -> record.Lease:
    return record.take_lease(driver, "neo4j", operation_id, TENANT, PARAMETERS, "the command",
                             "the plan")


def test_a_second_run_is_refused_while_the_first_is_live(tenant, neo4j_driver, tmp_path, capsys):
    operation_id = "lease-live"
    first = CliRun(tmp_path, scale_args(operation_id, "--max-concurrent-writes", "1",
                                        "--batch-size", "2"), name="first")
    try:
        wait_for_writes(neo4j_driver, first, operation_id)
        held = operation_record(neo4j_driver, operation_id)
        code, out, _ = run_main(record.main, ["--json"], capsys)
        listed = json.loads(out)["operations"][0]
        assert code == 0 and listed["id"] == operation_id and listed["status"] == "running"
        assert listed["stale"] is False and listed["holder"] == f"pid {first.process.pid} on host {HOST}"

        second = CliRun(tmp_path, scale_args(operation_id), name="second")
        assert second.wait() == 2, second.stderr_tail()
        assert first.process.poll() is None, "the first run ended before the second was refused"
        [line] = second.stderr.strip().splitlines()
        assert re.fullmatch(
            rf"error: operation {operation_id} is running in another process \(pid "
            rf"{first.process.pid} on host {re.escape(HOST)}, last heartbeat \d+ s ago\): "
            "wait for it to end, or stop it; nothing was written", line), line
        after = operation_record(neo4j_driver, operation_id)
        assert {k: v for k, v in after.items() if k != "heartbeat_at"} == \
               {k: v for k, v in held.items() if k != "heartbeat_at"}
    finally:
        first.signal(signal.SIGTERM)
        assert first.wait() == 128 + signal.SIGTERM, first.stderr_tail()
    assert operation_record(neo4j_driver, operation_id)["status"] == "interrupted"


def test_a_stale_run_is_listed_as_such_and_taken_over(tenant, neo4j_driver, tmp_path, capsys):
    operation_id = "lease-stale"
    plant(neo4j_driver, operation_id, "elsewhere", 4242, heartbeat_age_s=120)
    rollback = f"python -m pipelines.rollback --operation-id {operation_id}"
    resume = f"python -m pipelines.scale_up {' '.join(scale_args(operation_id))}"

    code, out, err = run_main(record.main, [], capsys)
    assert code == 0 and err == ""
    row = next(line for line in out.splitlines() if line.startswith(operation_id + " "))
    assert record.STALE in row
    assert f"{operation_id} is {record.STALE}: resume it: {resume}; or roll it back: {rollback}" \
        in out.splitlines()
    code, out, _ = run_main(record.main, ["show", operation_id], capsys)
    shown = dict(line.split(None, 1) for line in out.splitlines() if not line.startswith("last"))
    assert shown["status"] == record.STALE
    assert shown["next"] == f"resume it: {resume}; or roll it back: {rollback}"
    code, out, _ = run_main(record.main, ["show", operation_id, "--json"], capsys)
    assert json.loads(out)["stale"] is True and json.loads(out)["status"] == "running"

    code, report = run_scale_up(tmp_path, *scale_args(operation_id))
    assert code == 0
    assert ("taking over from a run that is gone (pid 4242 on host elsewhere, last heartbeat "
            "12") in capsys.readouterr().err
    assert_exact(neo4j_driver, operation_id, tenant["expected"], report)
    taken = operation_record(neo4j_driver, operation_id)
    assert taken["runs"] == 2 and taken["lease_pid"] == os.getpid() and "lease_token" not in taken


@pytest.mark.parametrize("host, pid, heartbeat_age_s, refused", [
    (HOST, os.getpid(), 0, True),
    ("elsewhere", 4242, 30, True),
    ("elsewhere", 4242, 90, False),
    (HOST, None, 0, False),  # None: a process of this host that has ended
], ids=["alive-here", "heartbeat-elsewhere", "old-heartbeat-elsewhere", "ended-here"])
def test_a_lease_is_taken_only_from_a_holder_that_is_gone(neo4j_graph, neo4j_driver, host, pid,
                                                          heartbeat_age_s, refused):
    ensure_schema(neo4j_driver, neo4j_graph.database)
    planted = plant(neo4j_driver, "lease-rule", host, pid or ended_pid(), heartbeat_age_s)
    if refused:
        with pytest.raises(record.LeaseHeldError, match=f"pid {planted['lease_pid']} on host {host}"):
            take(neo4j_driver, "lease-rule")
        assert operation_record(neo4j_driver, "lease-rule") == planted  # nothing written
    else:
        lease = take(neo4j_driver, "lease-rule")
        taken = operation_record(neo4j_driver, "lease-rule")
        assert taken["lease_token"] == lease.token and taken["runs"] == 2
        assert lease.generation_timestamp == planted["generation_timestamp"]


def test_of_two_runs_starting_together_exactly_one_gets_the_lease(neo4j_graph, neo4j_driver):
    ensure_schema(neo4j_driver, neo4j_graph.database)
    for attempt in range(3):
        operation_id = f"lease-race-{attempt}"
        drivers = [neo4j_graph.open_driver() for _ in range(2)]
        start = threading.Barrier(2)
        outcomes: List[Any] = []

        def race(driver: neo4j.Driver) -> None:
            start.wait()
            try:
                outcomes.append(take(driver, operation_id))
            except record.LeaseHeldError as refused:
                outcomes.append(refused)

        threads = [threading.Thread(target=race, args=(driver,)) for driver in drivers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        for driver in drivers:
            driver.close()
        leases = [o for o in outcomes if isinstance(o, record.Lease)]
        assert len(outcomes) == 2 and len(leases) == 1, outcomes
        records = neo4j_driver.execute_query("MATCH (o:ScaleOperation {id: $id}) RETURN o",
                                             id=operation_id).records
        assert len(records) == 1 and records[0]["o"]["lease_token"] == leases[0].token


def test_the_heartbeat_renews_the_lease_until_another_run_takes_it(neo4j_graph, neo4j_driver,
                                                                  monkeypatch, caplog):
    monkeypatch.setattr(record, "HEARTBEAT_INTERVAL_S", 0.2)
    ensure_schema(neo4j_driver, neo4j_graph.database)
    lease = take(neo4j_driver, "lease-heartbeat")
    first = operation_record(neo4j_driver, "lease-heartbeat")["heartbeat_at"]
    heartbeat = lifecycle._Heartbeat(neo4j_driver, neo4j_graph.database, lease)
    with caplog.at_level(logging.ERROR, logger="scale_up"):
        heartbeat.start()
        time.sleep(1.0)
        assert operation_record(neo4j_driver, "lease-heartbeat")["heartbeat_at"] > first
        neo4j_driver.execute_query("MATCH (o:ScaleOperation {id: 'lease-heartbeat'}) "
                                   "SET o.lease_token = 'another run'")
        heartbeat.join(timeout=5)
    assert not heartbeat.is_alive()
    assert any("another run took over its lease" in r.getMessage() for r in caplog.records)
    record.release_lease(neo4j_driver, neo4j_graph.database, lease)  # not ours any more
    assert operation_record(neo4j_driver, "lease-heartbeat")["lease_token"] == "another run"
