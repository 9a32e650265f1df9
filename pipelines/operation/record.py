"""The record each scale-up leaves in the graph, ``(:ScaleOperation {id})``, and the
command that reads it.

    python -m pipelines.operations [list] [--tenant-id T] [--limit N] [--json]
    python -m pipelines.operations show ID [--json]

The record makes an operation traceable after the fact (who asked for what, when, how
it ended, what it wrote, whether it was rolled back) and it pins the operation's
``generation_timestamp``, so that a re-run of the same operation id writes
byte-identical nodes.

``list`` shows the newest operations first (by ``started_at``), ``show`` one operation;
both print a table, or with ``--json`` one JSON line (the last line on stdout).

Exit codes: 0 ok, 1 failure (Neo4j unreachable, refused credentials, a database
error), 2 bad input (an unknown operation: the message lists the recent ones; a tenant
without operations: the message lists the tenants that have some).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import neo4j
import neo4j.exceptions

from pipelines.cli import UsageError, add_connection_arguments, format_table, run_command

OPERATION_LABEL = "ScaleOperation"
RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"
ROLLED_BACK = "rolled_back"
DEFAULT_LIST_LIMIT = 50
RECENT_IN_MESSAGES = 10


def utc_now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def start_operation(
    driver: neo4j.Driver, database: str, operation_id: str, tenant_id: str,
    parameters: Dict[str, Any], plan_fingerprint: str,
) -> str:
    """Record the operation as running; return its generation timestamp.

    A new operation gets ``now`` and keeps ``plan_fingerprint`` (what its batches were
    planned on); an existing one (a re-run) keeps its first ones.
    """
    now = utc_now_iso()
    record = driver.execute_query(
        "MERGE (o:ScaleOperation {id: $id}) "
        "ON CREATE SET o.generation_timestamp = $now, o.created_at = $now, "
        "              o.plan_fingerprint = $plan_fingerprint "
        "SET o.tenant_id = $tenant_id, o.status = $status, o.started_at = $now, "
        "    o.finished_at = null, o.report = null, o.error = null, "
        "    o.parameters = $parameters, o.runs = coalesce(o.runs, 0) + 1 "
        "RETURN o.generation_timestamp AS generation_timestamp",
        id=operation_id, now=now, tenant_id=tenant_id, status=RUNNING,
        parameters=json.dumps(parameters, sort_keys=True), plan_fingerprint=plan_fingerprint,
        database_=database,
    ).records[0]
    return record["generation_timestamp"]


def finish_operation(
    driver: neo4j.Driver, database: str, operation_id: str, status: str,
    report: Optional[Dict[str, Any]] = None, error: Optional[str] = None,
) -> None:
    """Record how the operation ended, with its report (as JSON) or error.

    An operation rolled back while it ran stays rolled back: the rollback is the
    user's last word on it.
    """
    driver.execute_query(
        "MATCH (o:ScaleOperation {id: $id}) WHERE o.status <> $rolled_back "
        "SET o.status = $status, o.finished_at = $now, o.error = $error, o.report = $report",
        id=operation_id, status=status, now=utc_now_iso(), error=error, rolled_back=ROLLED_BACK,
        report=json.dumps(report, sort_keys=True) if report is not None else None,
        database_=database,
    )


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


def _operation_dict(props: Dict[str, Any], with_report: bool = False) -> Dict[str, Any]:
    """The record as a plain dict, with the figures of its stored run report."""
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
    and the rollback (``rolled_back_at``, ``nodes_deleted``,
    ``relationships_deleted``; None unless rolled back).
    """
    records = driver.execute_query(
        "MATCH (o:ScaleOperation) WHERE $tenant_id IS NULL OR o.tenant_id = $tenant_id "
        "RETURN properties(o) AS o ORDER BY coalesce(o.started_at, '') DESC, o.id LIMIT $limit",
        tenant_id=tenant_id, limit=limit, database_=database,
        routing_=neo4j.RoutingControl.READ,
    ).records
    return [_operation_dict(record["o"]) for record in records]


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
        "MATCH (o:ScaleOperation {id: $id}) RETURN properties(o) AS o",
        id=operation_id, database_=database, routing_=neo4j.RoutingControl.READ,
    ).records
    if not records:
        raise unknown_operation(driver, database, operation_id)
    return _operation_dict(records[0]["o"], with_report=True)


def _tenants_with_operations(driver: neo4j.Driver, database: str) -> str:
    records = driver.execute_query(
        "MATCH (o:ScaleOperation) RETURN o.tenant_id AS tenant, count(*) AS n "
        "ORDER BY n DESC, tenant LIMIT 20",
        database_=database, routing_=neo4j.RoutingControl.READ,
    ).records
    return ", ".join(f"{r['tenant']} ({r['n']})" for r in records) or "none"


_LIST_COLUMNS = ("id", "tenant", "status", "started (UTC)", "runs", "nodes", "relationships",
                 "seconds", "nodes/s")


def _print_list(operations: List[Dict[str, Any]]) -> None:
    print(format_table(_LIST_COLUMNS, [
        (o["id"], o["tenant_id"], o["status"], (o["started_at"] or "")[:19], o["runs"],
         o["nodes_written"], o["relationships_written"], o["duration_s"], o["nodes_per_s"])
        for o in operations]))


def _print_operation(operation: Dict[str, Any]) -> None:
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
    rows = [("operation", o["id"]), ("tenant", o["tenant_id"]), ("status", o["status"]),
            ("parameters", parameters), ("created", o["created_at"]),
            ("started", o["started_at"]), ("finished", o["finished_at"]), ("runs", o["runs"]),
            ("written", written), ("rolled back", rolled_back), ("error", o["error"])]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name.ljust(width)}  {'-' if value is None else value}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
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
                        help="print the result as one JSON line instead of a table")
    add_connection_arguments(parser)
    args = parser.parse_args(argv)
    if args.command == "show" and not args.operation_id:
        parser.error("show needs the operation id: show ID (list the ids with 'list')")
    if args.command == "show" and args.tenant_id is not None:
        parser.error("--tenant-id goes with list, not with show")
    if args.command == "list" and args.operation_id:
        parser.error(f"list takes no operation id; to see one operation: show {args.operation_id}")
    if args.limit < 1:
        parser.error(f"--limit must be at least 1, got {args.limit}")

    def command(driver: neo4j.Driver, database: str) -> int:
        if args.command == "show":
            operation = get_operation(driver, database, args.operation_id)
            if args.json:
                print(json.dumps(operation, sort_keys=True))
            else:
                _print_operation(operation)
            return 0
        operations = list_operations(driver, database, args.tenant_id, args.limit)
        if args.tenant_id is not None and not operations:
            raise UsageError(
                f"no scale operations for tenant {args.tenant_id!r}; tenants with operations: "
                f"{_tenants_with_operations(driver, database)}")
        if args.json:
            print(json.dumps({"operations": operations}, sort_keys=True))
        else:
            _print_list(operations)
        return 0

    return run_command(args, command)


if __name__ == "__main__":
    sys.exit(main())
