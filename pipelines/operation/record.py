"""The record each scale-up leaves in the graph, ``(:ScaleOperation {id})``, and the
command that reads it.

    python -m pipelines.operations [list] [--tenant-id T] [--limit N] [--json]
    python -m pipelines.operations show ID [--json]

The record makes an operation traceable after the fact (who asked for what, when, how
it ended, what it wrote, whether it was rolled back) and it pins the operation's
``generation_timestamp``, so that a re-run of the same operation id writes
byte-identical nodes.

``list`` shows the newest operations first (by ``started_at``), ``show`` one operation;
both print a table, or with ``--json`` one JSON line (the only line on stdout).

**The lease.** A run holds a lease on its operation's record while it runs: taken in
one write transaction when it starts (``take_lease``), renewed by a heartbeat
(``renew_lease``, every ``HEARTBEAT_INTERVAL_S``), released when it ends, however it
ends (``release_lease``). While the lease is live a second run of the operation is
refused (``LeaseHeldError``, naming the holder's pid and host). A holder whose
heartbeat is older than ``STALE_AFTER_S``, or a process on this host that no longer
exists, is gone: its lease is taken over, and ``list``/``show`` call its ``running``
record stale. Times of the heartbeat are the server's, so clocks of the hosts that run
the scale-ups do not matter.

Exit codes: 0 ok, 1 failure (Neo4j unreachable, refused credentials, a database
error), 2 bad input (an unknown operation: the message lists the recent ones; a tenant
without operations: the message lists the tenants that have some).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import socket
import sys
import uuid
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import neo4j
import neo4j.exceptions
import psutil

from pipelines.cli import (
    CommandParser,
    UsageError,
    add_connection_arguments,
    format_pairs,
    format_table,
    print_result,
    run_command,
)

_LOG = logging.getLogger("scale_up")

OPERATION_LABEL = "ScaleOperation"
RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"
ROLLED_BACK, INTERRUPTED = "rolled_back", "interrupted"
DEFAULT_LIST_LIMIT = 50
MAX_LIST_LIMIT = 1_000_000
RECENT_IN_MESSAGES = 10
#: Seconds between two heartbeats of a live run, and the age of its last heartbeat
#: after which its holder counts as gone.
HEARTBEAT_INTERVAL_S = 10.0
STALE_AFTER_S = 60
#: How ``list`` and ``show`` call a ``running`` record whose holder is gone.
STALE = "stale (process gone?)"


def utc_now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


#: Age in whole seconds of the record's last heartbeat (of its start, for records of
#: runs without one), by the server's clock; None if it has neither.
_HEARTBEAT_AGE = ("duration.inSeconds(datetime(coalesce(o.heartbeat_at, o.started_at)), "
                  "datetime()).seconds")
_SERVER_NOW = "toString(datetime())"


class LeaseHeldError(UsageError):
    """Another live run holds the operation's lease; the message names it."""


@dataclasses.dataclass(frozen=True)
class Lease:
    """This run's hold on its operation's record (see the module docstring)."""

    operation_id: str
    token: str
    generation_timestamp: str


def holder_is_gone(host: Optional[str], pid: Optional[int],
                   heartbeat_age_s: Optional[int]) -> bool:
    """Whether the run that last held a lease is gone: no heartbeat for
    ``STALE_AFTER_S`` (or never), or a process of this host that no longer exists."""
    if heartbeat_age_s is None or heartbeat_age_s > STALE_AFTER_S:
        return True
    return host == socket.gethostname() and pid is not None and not psutil.pid_exists(pid)


def _holder_text(host: Optional[str], pid: Optional[int], heartbeat_age_s: Optional[int]) -> str:
    age = "never" if heartbeat_age_s is None else f"{heartbeat_age_s} s ago"
    return f"pid {pid} on host {host}, last heartbeat {age}"


def check_lease(tx: neo4j.ManagedTransaction, operation_id: str) -> Optional[str]:
    """Raise ``LeaseHeldError`` while a live run holds the operation's lease; return the
    description of a holder that is gone (None if nobody holds it or no record exists)."""
    held = tx.run("MATCH (o:ScaleOperation {id: $id}) RETURN o.lease_token AS token, "
                  f"o.lease_host AS host, o.lease_pid AS pid, {_HEARTBEAT_AGE} AS age",
                  id=operation_id).single()
    if held is None or held["token"] is None:
        return None
    holder = _holder_text(held["host"], held["pid"], held["age"])
    if not holder_is_gone(held["host"], held["pid"], held["age"]):
        raise LeaseHeldError(f"operation {operation_id} is running in another process ({holder}): "
                             "wait for it to end, or stop it; nothing was written")
    return holder


def take_lease(driver: neo4j.Driver, database: str, operation_id: str, tenant_id: str,
               parameters: Dict[str, Any], resume_command: str, plan_fingerprint: str) -> Lease:
    """Record the operation as running under a new lease of this process; return it.

    One write transaction: the record is created if new (its generation timestamp is
    the first run's, kept by re-runs) and locked before its lease is read, so of two
    runs that start together exactly one gets the lease. Raises ``LeaseHeldError``
    (and writes nothing) while another live run holds it; takes over the lease of a
    gone holder (with a warning naming it). ``resume_command`` is kept on the record
    for ``list``/``show`` to print; a new record keeps ``plan_fingerprint``, what its
    batches were planned on (``lifecycle.check_resumable``).
    """
    token, host, pid = uuid.uuid4().hex, socket.gethostname(), os.getpid()

    def take(tx: neo4j.ManagedTransaction) -> str:
        now = utc_now_iso()
        tx.run("MERGE (o:ScaleOperation {id: $id}) "
               "ON CREATE SET o.generation_timestamp = $now, o.created_at = $now, "
               "              o.plan_fingerprint = $plan_fingerprint "
               "SET o.lease_lock = true REMOVE o.lease_lock",  # the node's write lock, first
               id=operation_id, now=now, plan_fingerprint=plan_fingerprint).consume()
        gone = check_lease(tx, operation_id)
        if gone is not None:
            _LOG.warning("operation %s: taking over from a run that is gone (%s)",
                         operation_id, gone)
        return tx.run(
            "MATCH (o:ScaleOperation {id: $id}) "
            "SET o.tenant_id = $tenant_id, o.status = $status, o.started_at = $now, "
            "    o.finished_at = null, o.report = null, o.error = null, "
            "    o.parameters = $request, o.runs = coalesce(o.runs, 0) + 1, "
            "    o.resume_command = $resume_command, o.lease_token = $token, "
            f"    o.lease_host = $host, o.lease_pid = $pid, o.heartbeat_at = {_SERVER_NOW} "
            "RETURN o.generation_timestamp AS generation_timestamp",
            id=operation_id, now=now, tenant_id=tenant_id, status=RUNNING,
            request=json.dumps(parameters, sort_keys=True), resume_command=resume_command,
            token=token, host=host, pid=pid,
        ).single(strict=True)["generation_timestamp"]

    with driver.session(database=database) as session:
        generation_timestamp = session.execute_write(take)
    return Lease(operation_id, token, generation_timestamp)


def renew_lease(driver: neo4j.Driver, database: str, lease: Lease) -> bool:
    """The heartbeat: False if the lease is no longer this run's (taken over)."""
    records = driver.execute_query(
        f"MATCH (o:ScaleOperation {{id: $id}}) WHERE o.lease_token = $token "
        f"SET o.heartbeat_at = {_SERVER_NOW} RETURN count(o) AS renewed",
        id=lease.operation_id, token=lease.token, database_=database).records
    return bool(records and records[0]["renewed"])


def release_lease(driver: neo4j.Driver, database: str, lease: Lease) -> None:
    """End the lease if it is still this run's (the holder's pid and host stay, as the
    trace of the last run)."""
    driver.execute_query(
        "MATCH (o:ScaleOperation {id: $id}) WHERE o.lease_token = $token "
        "REMOVE o.lease_token",
        id=lease.operation_id, token=lease.token, database_=database)


def finish_operation(
    driver: neo4j.Driver, database: str, lease: Lease, status: str,
    report: Optional[Dict[str, Any]] = None, error: Optional[str] = None,
) -> bool:
    """Record how the run of ``lease`` ended, with its report (as JSON) or error;
    False if nothing was recorded because another run took the lease over.

    An operation rolled back while it ran stays rolled back: the rollback is the
    user's last word on it.
    """
    records = driver.execute_query(
        "MATCH (o:ScaleOperation {id: $id}) WHERE o.lease_token = $token "
        "SET o.status = CASE o.status WHEN $rolled_back THEN o.status ELSE $status END, "
        "    o.finished_at = $now, o.error = $error, o.report = $report "
        "RETURN count(o) AS recorded",
        id=lease.operation_id, token=lease.token, status=status, now=utc_now_iso(),
        error=error, rolled_back=ROLLED_BACK,
        report=json.dumps(report, sort_keys=True) if report is not None else None,
        database_=database,
    ).records
    return bool(records and records[0]["recorded"])


_COUNT_NODES_BY_TYPE = (
    "MATCH (n:Resource {scale_operation_id: $op}) RETURN n.type AS type, count(*) AS n"
)
# Every relationship an operation wrote touches one of its nodes: count each once, from
# its start node, or from its end node when the start is not the operation's. No
# DISTINCT, so the server streams the count instead of holding millions of rows.
_COUNT_RELATIONSHIPS_BY_TYPE = """
MATCH (n:Resource {scale_operation_id: $op})
CALL {
  WITH n
  MATCH (n)-[r]->() WHERE r.scale_operation_id = $op
  RETURN type(r) AS type
  UNION ALL
  WITH n
  MATCH (m)-[r]->(n) WHERE r.scale_operation_id = $op AND coalesce(m.scale_operation_id, '') <> $op
  RETURN type(r) AS type
}
RETURN type, count(*) AS n
"""


def written_by_type(driver: neo4j.Driver, database: str, operation_id: str) -> Dict[str, Dict[str, int]]:
    """What an operation wrote, read back from the database:
    ``{"nodes": {resource type: n}, "relationships": {relationship type: n}}``."""
    counts = {}
    for what, query in (("nodes", _COUNT_NODES_BY_TYPE),
                        ("relationships", _COUNT_RELATIONSHIPS_BY_TYPE)):
        records = driver.execute_query(query, op=operation_id, database_=database,
                                       routing_=neo4j.RoutingControl.READ).records
        counts[what] = {record["type"]: record["n"] for record in records}
    return counts


def mark_rolled_back(driver: neo4j.Driver, database: str,
                     deleted: Mapping[str, Tuple[int, int]]) -> Dict[str, str]:
    """Mark each operation of ``deleted`` (id → nodes, relationships deleted) rolled back.

    The record stays (it is the trace that the operation existed and was undone) and
    gets ``rolled_back_at`` and the counts. A repeated rollback that deleted nothing
    keeps the first rollback's counts and time. Returns each existing record's
    ``rolled_back_at``.
    """
    records = driver.execute_query(
        "UNWIND $rows AS row "
        "MATCH (o:ScaleOperation {id: row.id}) "
        "CALL { "
        "  WITH o, row "
        "  WITH o, row WHERE coalesce(o.status, '') <> $status "
        "                 OR row.nodes + row.relationships > 0 "
        "  SET o.status = $status, o.rolled_back_at = $now, "
        "      o.rolled_back_nodes = row.nodes, o.rolled_back_relationships = row.relationships "
        "} "
        "RETURN o.id AS id, o.rolled_back_at AS rolled_back_at",
        rows=[{"id": operation_id, "nodes": nodes, "relationships": relationships}
              for operation_id, (nodes, relationships) in deleted.items()],
        status=ROLLED_BACK, now=utc_now_iso(), database_=database,
    ).records
    return {record["id"]: record["rolled_back_at"] for record in records}


class UnknownOperationError(UsageError):
    """No operation with that id; the message lists the recent ones."""


def _parsed(text: Optional[str]) -> Any:
    """A JSON property of the record, or None if it is missing or not JSON."""
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _operation_dict(props: Dict[str, Any], heartbeat_age_s: Optional[int],
                    with_report: bool = False) -> Dict[str, Any]:
    """The record as a plain dict, with the figures of its stored run report and
    whether it is a ``running`` record whose run is gone (``stale``)."""
    report = _parsed(props.get("report")) or {}
    written = report.get("written") or {}
    throughput = report.get("throughput") or {}
    operation = {
        "id": props["id"],
        "tenant_id": props.get("tenant_id"),
        "status": props.get("status"),
        "parameters": _parsed(props.get("parameters")),
        "created_at": props.get("created_at"),
        "started_at": props.get("started_at"),
        "finished_at": props.get("finished_at"),
        "runs": props.get("runs"),
        "error": props.get("error"),
        "nodes_written": written.get("nodes"),
        "relationships_written": written.get("relationships"),
        "duration_s": report.get("duration_s"),
        "nodes_per_s": throughput.get("nodes_per_s"),
        "relationships_per_s": throughput.get("relationships_per_s"),
        "rolled_back_at": props.get("rolled_back_at"),
        "nodes_deleted": props.get("rolled_back_nodes"),
        "relationships_deleted": props.get("rolled_back_relationships"),
        "heartbeat_at": props.get("heartbeat_at"),
        "holder": (f"pid {props['lease_pid']} on host {props['lease_host']}"
                   if props.get("lease_pid") is not None else None),
        "stale": props.get("status") == RUNNING and holder_is_gone(
            props.get("lease_host"), props.get("lease_pid"), heartbeat_age_s),
        "resume_command": props.get("resume_command"),
    }
    if with_report:
        operation["report"] = report or None
    return operation


def list_operations(driver: neo4j.Driver, database: str, tenant_id: Optional[str] = None,
                    limit: int = DEFAULT_LIST_LIMIT) -> List[Dict[str, Any]]:
    """The newest ``limit`` operations (of ``tenant_id`` if given), newest first.

    Each is a plain dict: ``id``, ``tenant_id``, ``status``, ``parameters`` (parsed),
    ``created_at``, ``started_at``, ``finished_at``, ``runs``, ``error``, the figures of
    the stored run report (``nodes_written``, ``relationships_written``,
    ``duration_s``, ``nodes_per_s``, ``relationships_per_s``; None without a report),
    the rollback (``rolled_back_at``, ``nodes_deleted``, ``relationships_deleted``;
    None unless rolled back), and the run: ``heartbeat_at`` (the server's time),
    ``holder`` (``pid P on host H`` of the last run), ``stale`` (True for a
    ``running`` record whose run is gone) and ``resume_command``.
    """
    records = driver.execute_query(
        "MATCH (o:ScaleOperation) WHERE $tenant_id IS NULL OR o.tenant_id = $tenant_id "
        f"RETURN properties(o) AS o, {_HEARTBEAT_AGE} AS age "
        "ORDER BY coalesce(o.started_at, '') DESC, o.id LIMIT $limit",
        tenant_id=tenant_id, limit=limit, database_=database,
        routing_=neo4j.RoutingControl.READ,
    ).records
    return [_operation_dict(record["o"], record["age"]) for record in records]


def unknown_operation(driver: neo4j.Driver, database: str,
                      operation_id: str) -> UnknownOperationError:
    """The error for an operation id that does not exist, naming the recent ones."""
    recent = list_operations(driver, database, limit=RECENT_IN_MESSAGES)
    listed = ", ".join(f"{o['id']} ({o['tenant_id']}, {o['status']}, {o['started_at']})"
                       for o in recent) or "none"
    return UnknownOperationError(
        f"no scale operation {operation_id!r}; recent operations: {listed}. "
        "Run 'python -m pipelines.operations' to list them all")


def get_operation(driver: neo4j.Driver, database: str, operation_id: str) -> Dict[str, Any]:
    """One operation as ``list_operations`` gives it, plus its full run ``report``.

    Raises ``UnknownOperationError`` (whose message lists the recent operations).
    """
    records = driver.execute_query(
        f"MATCH (o:ScaleOperation {{id: $id}}) RETURN properties(o) AS o, {_HEARTBEAT_AGE} AS age",
        id=operation_id, database_=database, routing_=neo4j.RoutingControl.READ,
    ).records
    if not records:
        raise unknown_operation(driver, database, operation_id)
    return _operation_dict(records[0]["o"], records[0]["age"], with_report=True)


def _tenants_with_operations(driver: neo4j.Driver, database: str) -> str:
    records = driver.execute_query(
        "MATCH (o:ScaleOperation) RETURN o.tenant_id AS tenant, count(*) AS n "
        "ORDER BY n DESC, tenant LIMIT 20",
        database_=database, routing_=neo4j.RoutingControl.READ,
    ).records
    return ", ".join(f"{r['tenant']} ({r['n']})" for r in records) or "none"


_LIST_COLUMNS = ("id", "tenant", "status", "started (UTC)", "runs", "nodes", "relationships",
                 "seconds", "nodes/s")


def shown_status(operation: Dict[str, Any]) -> str:
    """The status as people read it: a ``running`` record whose run is gone is stale."""
    return STALE if operation["stale"] else operation["status"]


def next_step(operation: Dict[str, Any]) -> Optional[str]:
    """What a user can do next with the operation, or None (running, rolled back)."""
    operation_id = operation["id"]
    rollback = f"python -m pipelines.rollback --operation-id {operation_id}"
    if operation["stale"] or operation["status"] in (FAILED, INTERRUPTED):
        resume = operation["resume_command"] or (
            f"the same scale-up with --operation-id {operation_id}")
        return f"resume it: {resume}; or roll it back: {rollback}"
    if operation["status"] == SUCCEEDED:
        return (f"check it: python -m pipelines.validate --operation-id {operation_id}; "
                f"undo it: {rollback}")
    return None


def render_list(result: Dict[str, Any]) -> str:
    """The operations as a table, and what to do with the stale ones."""
    operations = result["operations"]
    lines = [format_table(_LIST_COLUMNS, [
        (o["id"], o["tenant_id"], shown_status(o), (o["started_at"] or "")[:19], o["runs"],
         o["nodes_written"], o["relationships_written"], o["duration_s"], o["nodes_per_s"])
        for o in operations])]
    stale = [o for o in operations if o["stale"]]
    if stale:
        lines.append("")
        lines.extend(f"{o['id']} is {STALE}: {next_step(o)}" for o in stale)
    return "\n".join(lines)


def render_operation(operation: Dict[str, Any]) -> str:
    """One operation as ``name  value`` lines."""
    o = operation
    parameters = ", ".join(f"{k}={v}" for k, v in sorted((o["parameters"] or {}).items())
                           if v is not None)
    written = "-"
    if o["nodes_written"] is not None:
        written = (f"{o['nodes_written']:,} nodes, {o['relationships_written']:,} relationships "
                   f"in {o['duration_s']} s ({o['nodes_per_s']:,} nodes/s, "
                   f"{o['relationships_per_s']:,} relationships/s)")
    rolled_back = "-"
    if o["rolled_back_at"] is not None:
        rolled_back = (f"{o['rolled_back_at']}: {o['nodes_deleted']:,} nodes and "
                       f"{o['relationships_deleted']:,} relationships deleted")
    last_run = None
    if o["holder"] is not None:
        last_run = f"{o['holder']}, last heartbeat {o['heartbeat_at']}"
    rows = [("operation", o["id"]), ("tenant", o["tenant_id"]), ("status", shown_status(o)),
            ("parameters", parameters), ("created", o["created_at"]),
            ("started", o["started_at"]), ("finished", o["finished_at"]), ("runs", o["runs"]),
            ("last run", last_run), ("written", written), ("rolled back", rolled_back),
            ("error", o["error"]), ("next", next_step(o))]
    return format_pairs(rows)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = CommandParser(
        prog="python -m pipelines.operations",
        description="List the scale operations recorded in the graph, or show one.")
    parser.add_argument("command", nargs="?", choices=("list", "show"), default="list",
                        help="list (default): the newest operations first; show: one operation")
    parser.add_argument("operation_id", nargs="?", metavar="ID",
                        help="with show: the operation to show")
    parser.add_argument("--tenant-id", dest="tenant_id", default=None, metavar="T",
                        help="with list: only this tenant's operations")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIST_LIMIT,
                        help=f"with list: at most this many (default {DEFAULT_LIST_LIMIT})")
    parser.add_argument("--json", action="store_true",
                        help="print the result as one JSON line (the only stdout line) "
                             "instead of a table")
    add_connection_arguments(parser)
    args = parser.parse_args(argv)
    if args.command == "show" and not args.operation_id:
        parser.error("show needs the operation id: show ID (list the ids with 'list')")
    if args.command == "show" and args.tenant_id is not None:
        parser.error("--tenant-id goes with list, not with show")
    if args.command == "list" and args.operation_id:
        parser.error(f"list takes no operation id; to see one operation: show {args.operation_id}")
    if not 1 <= args.limit <= MAX_LIST_LIMIT:
        parser.error(f"--limit must be from 1 to {MAX_LIST_LIMIT:,}, got {args.limit}")

    def command(driver: neo4j.Driver, database: str) -> int:
        if args.command == "show":
            print_result(get_operation(driver, database, args.operation_id), args.json,
                         render_operation)
            return 0
        operations = list_operations(driver, database, args.tenant_id, args.limit)
        if args.tenant_id is not None and not operations:
            raise UsageError(
                f"no scale operations for tenant {args.tenant_id!r}; tenants with operations: "
                f"{_tenants_with_operations(driver, database)}")
        print_result({"operations": operations}, args.json, render_list)
        return 0

    return run_command(args, command)


if __name__ == "__main__":
    sys.exit(main())
