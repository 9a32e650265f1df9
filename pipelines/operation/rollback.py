"""Roll back scale-ups: delete exactly what an operation (or all of a tenant's) created.

    python -m pipelines.rollback --operation-id ID [--batch-size N] [--json]
    python -m pipelines.rollback --tenant-id T --all-synthetic --yes [--batch-size N] [--json]

What goes: the operation's synthetic nodes (``synthetic = true`` and its
``scale_operation_id``, found through the composite index), each with ``DETACH
DELETE``, which also removes every relationship that touches them, those to shared
nodes and real resources included. Every relationship a scale-up writes has at least
one of its copies as an end, so that is all it wrote. What stays: everything else,
byte for byte: real resources, originals, shared nodes, other operations, other
tenants, and any relationship between nodes the operation did not create, whatever
its properties (one that carries the operation's id is no proof that the operation
wrote it; ``pipelines.validate`` reports such relationships as
``no_orphan_relationships``). The operation's ledger of written batches
(``ScaleBatch`` nodes) goes with them. The operation's record stays, marked
``rolled_back`` with the counts deleted and the time (a rolled-back operation cannot
be resumed).

The tenant-wide form deletes every synthetic resource of the tenant (whatever
operation wrote it, or none) and marks those operations rolled back. It deletes
only with ``--yes``; without it, it prints what it would delete (counts) and exits 2.

How: one auto-commit query per operation, ``CALL { ... } IN TRANSACTIONS OF
--batch-size ROWS``, so each transaction deletes a bounded number of nodes and the
server's memory stays bounded at millions of nodes. Inner transactions commit as the
query goes: an interrupted rollback leaves a consistent, partly deleted operation,
and running the rollback again finishes it. Progress (nodes deleted so far) is
logged to stderr every ``--progress-interval`` seconds.

Exit codes: 0 done, 1 failure, 2 bad input (unknown operation: the message lists the
recent ones; unknown tenant: the tenants; the tenant-wide form without ``--yes``).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import neo4j
import neo4j.exceptions

from pipelines.cli import (
    PROGRESS_INTERVAL_RANGE_S,
    CommandParser,
    ProgressReporter,
    UsageError,
    add_connection_arguments,
    check_not_blank,
    check_number,
    configure_logging,
    run_command,
)
from pipelines.operation import record
from pipelines.operation.stats import unknown_tenant
from transforms.cypher import BATCH_LABEL

_LOG = logging.getLogger("rollback")

DEFAULT_BATCH_SIZE = 10_000
MAX_BATCH_SIZE = 1_000_000
PROGRESS_INTERVAL_S = 5.0

# The tenant filter sits inside the subquery: outside, it would read a property of
# nodes the query deletes, and the planner would then buffer every matching node
# (Eager) before the first delete; inside, at most one batch is buffered.
_DELETE_OPERATION_NODES = """
MATCH (n:Resource) WHERE n.synthetic = true AND n.scale_operation_id = $operation_id
CALL {
  WITH n
  WITH n WHERE $tenant_id IS NULL OR n.tenant_id = $tenant_id
  DETACH DELETE n
} IN TRANSACTIONS OF $batch_size ROWS
"""
_DELETE_LEDGERS = f"""
MATCH (batch:{BATCH_LABEL}) WHERE batch.operation_id IN $operation_ids
CALL {{
  WITH batch
  DELETE batch
}} IN TRANSACTIONS OF $batch_size ROWS
"""
_DELETE_TENANT_NODES_WITHOUT_OPERATION = """
MATCH (n:Resource) WHERE n.tenant_id = $tenant_id
CALL {
  WITH n
  WITH n WHERE n.synthetic = true AND n.scale_operation_id IS NULL
  DETACH DELETE n
} IN TRANSACTIONS OF $batch_size ROWS
"""
_COUNT_OPERATION_NODES = """
MATCH (n:Resource) WHERE n.synthetic = true AND n.scale_operation_id = $operation_id
  AND ($tenant_id IS NULL OR n.tenant_id = $tenant_id)
RETURN count(n) AS n
"""
_TENANT_SYNTHETIC_BY_OPERATION = """
MATCH (n:Resource) WHERE n.tenant_id = $tenant_id AND n.synthetic = true
RETURN n.scale_operation_id AS operation_id, count(*) AS nodes ORDER BY operation_id
"""
# Each relationship once: from its start node when that is one of the tenant's
# synthetic nodes, else from its end node.
_TENANT_SYNTHETIC_RELATIONSHIPS = """
MATCH (n:Resource)-[r]-(m) WHERE n.tenant_id = $tenant_id AND n.synthetic = true
  AND (startNode(r) = n
       OR NOT (m:Resource AND m.synthetic = true AND m.tenant_id = $tenant_id))
RETURN count(r) AS relationships
"""
_TENANT_EXISTS = """
RETURN EXISTS { MATCH (n:Resource) WHERE n.tenant_id = $tenant_id }
    OR EXISTS { MATCH (o:ScaleOperation) WHERE o.tenant_id = $tenant_id } AS known
"""


def check_batch_size(batch_size: int) -> None:
    """Rows (nodes) per inner transaction: from 1 to ``MAX_BATCH_SIZE``."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) \
            or not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise UsageError(f"batch_size must be an integer from 1 to {MAX_BATCH_SIZE:,}, "
                         f"got {batch_size!r}")


def _delete(driver: neo4j.Driver, database: str, query: str,
            params: Dict[str, Any]) -> Tuple[int, int]:
    """Run one ``IN TRANSACTIONS`` delete (auto-commit); return (nodes, relationships)."""
    with driver.session(database=database) as session:
        counters = session.run(query, params).consume().counters
    return counters.nodes_deleted, counters.relationships_deleted


def _delete_operation_nodes(driver: neo4j.Driver, database: str, operation_id: str,
                            tenant_id: Optional[str], batch_size: int,
                            progress_interval: float) -> Tuple[int, int]:
    """Delete the operation's synthetic nodes (of ``tenant_id`` if given) and every
    relationship touching them; log progress while it runs."""
    params = {"operation_id": operation_id, "tenant_id": tenant_id}
    total = driver.execute_query(_COUNT_OPERATION_NODES, params, database_=database,
                                 routing_=neo4j.RoutingControl.READ).records[0]["n"]
    if total == 0:
        return 0, 0
    _LOG.info("operation %s: deleting %d synthetic nodes in transactions of %d",
              operation_id, total, batch_size)

    def measure():
        left = driver.execute_query(_COUNT_OPERATION_NODES, params, database_=database,
                                    routing_=neo4j.RoutingControl.READ).records[0]["n"]
        return [("nodes deleted", total - left, total)]

    # The delete is one query whose inner transactions commit as it goes; counting what
    # is left (an index count, from another session) shows how far it is without
    # streaming a row per node back to the client.
    progress = ProgressReporter(f"operation {operation_id}", measure, progress_interval)
    progress.start()
    try:
        return _delete(driver, database, _DELETE_OPERATION_NODES,
                       {**params, "batch_size": batch_size})
    finally:
        progress.stop()


def _finish(driver: neo4j.Driver, database: str, deleted: Dict[str, Tuple[int, int]],
            batch_size: int) -> Dict[str, str]:
    """Delete the ledgers of the operations in ``deleted`` (id → nodes, relationships
    deleted: their ``ScaleBatch`` nodes, the scale-up's bookkeeping of written batches,
    meaningless once the batches are gone) and mark them rolled back; return each
    record's ``rolled_back_at``."""
    if deleted:
        _delete(driver, database, _DELETE_LEDGERS,
                {"operation_ids": sorted(deleted), "batch_size": batch_size})
    return record.mark_rolled_back(driver, database, deleted)


def rollback_operation(driver: neo4j.Driver, database: str, operation_id: str,
                       batch_size: int = DEFAULT_BATCH_SIZE,
                       progress_interval: float = PROGRESS_INTERVAL_S) -> Dict[str, Any]:
    """Delete everything ``operation_id`` created and mark its record rolled back.

    Returns ``{"operation_id", "tenant_id", "nodes_deleted", "relationships_deleted",
    "rolled_back_at", "seconds"}``. Idempotent: a second call deletes nothing and keeps
    the record of the first. Raises ``UsageError`` for a bad ``batch_size`` and
    ``record.UnknownOperationError`` when the operation has neither a record nor
    nodes.
    """
    check_batch_size(batch_size)
    started = time.monotonic()
    records = driver.execute_query(
        "MATCH (o:ScaleOperation {id: $id}) RETURN o.tenant_id AS tenant_id, o.status AS status",
        id=operation_id, database_=database, routing_=neo4j.RoutingControl.READ).records
    if records and records[0]["status"] == record.RUNNING:
        _LOG.warning("operation %s is marked running: if its scale-up is still writing, stop "
                     "it, then roll back again", operation_id)
    nodes, relationships = _delete_operation_nodes(driver, database, operation_id, None,
                                                   batch_size, progress_interval)
    if not records and nodes == 0:
        raise record.unknown_operation(driver, database, operation_id)
    rolled_back_at = _finish(driver, database, {operation_id: (nodes, relationships)}, batch_size)
    seconds = time.monotonic() - started
    _LOG.info("operation %s rolled back: %d nodes and %d relationships deleted in %.1f s",
              operation_id, nodes, relationships, seconds)
    return {
        "operation_id": operation_id,
        "tenant_id": records[0]["tenant_id"] if records else None,
        "nodes_deleted": nodes,
        "relationships_deleted": relationships,
        "rolled_back_at": rolled_back_at.get(operation_id),
        "seconds": round(seconds, 3),
    }


def _tenant_synthetic_by_operation(session: neo4j.Session, tenant_id: str) -> List[Dict[str, Any]]:
    """``[{"operation_id", "nodes"}]`` of the tenant's synthetic nodes (operation None:
    nodes without an operation id); ``UnknownTenantError`` for a tenant without
    resources and record."""
    if not session.run(_TENANT_EXISTS, tenant_id=tenant_id).single()["known"]:
        raise unknown_tenant(session, tenant_id)
    return session.run(_TENANT_SYNTHETIC_BY_OPERATION, tenant_id=tenant_id).data()


def tenant_synthetic_counts(driver: neo4j.Driver, database: str, tenant_id: str) -> Dict[str, Any]:
    """What ``rollback_tenant`` would delete: ``{"tenant_id", "nodes",
    "relationships", "operations": [{"operation_id", "nodes"}]}`` (operation None:
    synthetic nodes without an operation id). Raises ``UnknownTenantError`` when
    the tenant has neither resources nor record."""
    with driver.session(database=database, default_access_mode=neo4j.READ_ACCESS) as session:
        by_operation = _tenant_synthetic_by_operation(session, tenant_id)
        relationships = session.run(_TENANT_SYNTHETIC_RELATIONSHIPS,
                                    tenant_id=tenant_id).single()["relationships"]
    return {"tenant_id": tenant_id, "nodes": sum(row["nodes"] for row in by_operation),
            "relationships": relationships, "operations": by_operation}


def rollback_tenant(driver: neo4j.Driver, database: str, tenant_id: str,
                    batch_size: int = DEFAULT_BATCH_SIZE,
                    progress_interval: float = PROGRESS_INTERVAL_S) -> Dict[str, Any]:
    """Delete every synthetic resource of ``tenant_id``; mark those operations rolled back.

    Operation by operation (so each record gets its own counts), then any synthetic
    node of the tenant without an operation id. Returns ``{"tenant_id",
    "nodes_deleted", "relationships_deleted", "seconds", "operations": [{"operation_id",
    "nodes_deleted", "relationships_deleted", "rolled_back_at"}]}``.
    Raises ``UnknownTenantError`` for a tenant without resources and record.
    """
    check_batch_size(batch_size)
    started = time.monotonic()
    with driver.session(database=database, default_access_mode=neo4j.READ_ACCESS) as session:
        planned = _tenant_synthetic_by_operation(session, tenant_id)
    deleted: Dict[str, Tuple[int, int]] = {}
    for row in planned:
        if row["operation_id"] is not None:
            deleted[row["operation_id"]] = _delete_operation_nodes(
                driver, database, row["operation_id"], tenant_id, batch_size, progress_interval)
    unattributed = (0, 0)
    if any(row["operation_id"] is None for row in planned):
        unattributed = _delete(driver, database, _DELETE_TENANT_NODES_WITHOUT_OPERATION,
                               {"tenant_id": tenant_id, "batch_size": batch_size})
        _LOG.info("tenant %s: %d synthetic nodes without an operation id deleted",
                  tenant_id, unattributed[0])
    rolled_back_at = _finish(driver, database, deleted, batch_size)
    nodes = unattributed[0] + sum(n for n, _ in deleted.values())
    relationships = unattributed[1] + sum(r for _, r in deleted.values())
    seconds = time.monotonic() - started
    _LOG.info("tenant %s: %d synthetic nodes and %d relationships deleted in %.1f s",
              tenant_id, nodes, relationships, seconds)
    return {
        "tenant_id": tenant_id,
        "nodes_deleted": nodes,
        "relationships_deleted": relationships,
        "seconds": round(seconds, 3),
        "operations": [{"operation_id": operation_id, "nodes_deleted": n,
                        "relationships_deleted": r, "rolled_back_at": rolled_back_at.get(operation_id)}
                       for operation_id, (n, r) in deleted.items()],
    }


def _describe(counts: Dict[str, Any]) -> str:
    per_operation = ", ".join(f"{row['operation_id'] or '(no operation id)'}: {row['nodes']:,}"
                              for row in counts["operations"])
    return (f"{counts['nodes']:,} synthetic nodes ({per_operation or 'none'}) and the "
            f"{counts['relationships']:,} relationships that touch them")


def main(argv: Optional[Sequence[str]] = None) -> int:
    configure_logging()
    parser = CommandParser(
        prog="python -m pipelines.rollback",
        description="Delete exactly what a scale operation created (or every synthetic "
                    "resource of a tenant), leaving everything else untouched.")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--operation-id", dest="operation_id", metavar="ID",
                        help="roll back this operation (list them: python -m pipelines.operations)")
    target.add_argument("--tenant-id", dest="tenant_id", metavar="T",
                        help="roll back every synthetic resource of this tenant (needs "
                             "--all-synthetic, and --yes to really delete)")
    parser.add_argument("--all-synthetic", dest="all_synthetic", action="store_true",
                        help="with --tenant-id: says that all its synthetic resources go")
    parser.add_argument("--yes", action="store_true",
                        help="with --tenant-id: delete; without it, print what would be "
                             "deleted and exit 2")
    parser.add_argument("--batch-size", dest="batch_size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"nodes per delete transaction (default {DEFAULT_BATCH_SIZE:,}); "
                             "each also deletes their relationships")
    parser.add_argument("--progress-interval", dest="progress_interval", type=float,
                        default=PROGRESS_INTERVAL_S,
                        help="seconds between progress lines on stderr (0.01-3600, default 5)")
    parser.add_argument("--json", action="store_true",
                        help="print the result as one JSON line (the last line on stdout)")
    add_connection_arguments(parser)
    args = parser.parse_args(argv)
    if args.tenant_id is not None and not args.all_synthetic:
        parser.error(f"--tenant-id deletes every synthetic resource of the tenant: say so "
                     f"with --all-synthetic, or roll back one operation with --operation-id "
                     f"(list them: python -m pipelines.operations --tenant-id {args.tenant_id})")
    if args.operation_id is not None and args.all_synthetic:
        parser.error("--all-synthetic goes with --tenant-id, not with --operation-id")
    if not 1 <= args.batch_size <= MAX_BATCH_SIZE:
        parser.error(f"--batch-size must be from 1 to {MAX_BATCH_SIZE:,}, got {args.batch_size}")
    try:
        check_not_blank("--operation-id", args.operation_id)
        check_not_blank("--tenant-id", args.tenant_id)
        check_number("--progress-interval", args.progress_interval, *PROGRESS_INTERVAL_RANGE_S)
    except UsageError as error:
        parser.error(str(error))

    def command(driver: neo4j.Driver, database: str) -> int:
        if args.operation_id is not None:
            result = rollback_operation(driver, database, args.operation_id, args.batch_size,
                                        args.progress_interval)
            summary = f"rolled back operation {args.operation_id}"
        else:
            if not args.yes:
                counts = tenant_synthetic_counts(driver, database, args.tenant_id)
                if args.json:
                    print(json.dumps({"deleted": False, "would_delete": counts}, sort_keys=True))
                raise UsageError(f"this would delete every synthetic resource of tenant "
                                 f"{args.tenant_id}: {_describe(counts)}. Nothing was deleted; "
                                 "add --yes to delete them")
            result = rollback_tenant(driver, database, args.tenant_id, args.batch_size,
                                     args.progress_interval)
            summary = f"rolled back every synthetic resource of tenant {args.tenant_id}"
        if args.json:
            print(json.dumps(result, sort_keys=True))
        else:
            print(f"{summary}: {result['nodes_deleted']:,} nodes and "
                  f"{result['relationships_deleted']:,} relationships deleted in "
                  f"{result['seconds']} s")
        return 0

    return run_command(args, command)


if __name__ == "__main__":
    sys.exit(main())
