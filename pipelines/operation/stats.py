"""How much of the graph is real and how much synthetic: ``:Resource`` counts.

    python -m pipelines.stats [--tenant-id T] [--json]

Every ``:Resource`` is one of three kinds:

* ``real``: an abstracted resource that no scale-up wrote (a template);
* ``synthetic``: ``synthetic = true``, written by a scale-up;
* ``original``: ``:Original``, the scanned resource (never a template, never copied),
  counted apart so that it does not inflate the real count.

The command counts them by tenant (with the scale reached, (real + synthetic) / real),
by type, and the synthetic ones by operation, with the operation's recorded status (an
operation that shows up here as ``rolled_back`` had nodes written after its rollback,
by a scale-up still running then: roll it back again).

Cost: with ``--tenant-id`` the counts start from the ``tenant_id`` index; without it,
from the ``:Resource`` label (resources without a ``tenant_id`` count too). The
synthetic-by-operation counts come from the ``(synthetic, scale_operation_id)`` index.
Each is one read query; nothing is held in memory beyond the grouped counts.

Exit codes: 0 ok, 1 failure, 2 bad input (a tenant without resources: the message
lists the tenants).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

import neo4j

from pipelines.cli import (
    CommandParser,
    UsageError,
    add_connection_arguments,
    check_not_blank,
    format_table,
    run_command,
)

KINDS = ("real", "synthetic", "original")
NO_TENANT = "(none)"

_KIND = ("CASE WHEN r:Original THEN 'original' WHEN r.synthetic = true THEN 'synthetic' "
         "ELSE 'real' END AS kind")
_BY_TENANT_AND_TYPE = ("MATCH (r:Resource) RETURN r.tenant_id AS tenant, r.type AS type, "
                       f"{_KIND}, count(*) AS n")
_ONE_TENANT_BY_TYPE = ("MATCH (r:Resource) WHERE r.tenant_id = $tenant_id "
                       f"RETURN r.tenant_id AS tenant, r.type AS type, {_KIND}, count(*) AS n")
_SYNTHETIC_BY_OPERATION = """
MATCH (r:Resource) WHERE r.synthetic = true AND r.scale_operation_id IS NOT NULL
  AND ($tenant_id IS NULL OR r.tenant_id = $tenant_id)
WITH r.scale_operation_id AS operation_id, r.tenant_id AS tenant, count(*) AS n
OPTIONAL MATCH (o:ScaleOperation {id: operation_id})
RETURN operation_id, tenant, n, o.status AS status
ORDER BY operation_id, tenant
"""
_TENANTS = ("MATCH (r:Resource) WHERE r.tenant_id IS NOT NULL "
            "RETURN r.tenant_id AS tenant, count(*) AS n ORDER BY n DESC, tenant LIMIT 20")


class UnknownTenantError(UsageError):
    """No ``:Resource`` has that ``tenant_id``; the message lists the tenants."""


def unknown_tenant(session: neo4j.Session, tenant_id: str) -> UnknownTenantError:
    """The error for a tenant without resources, naming the tenants there are."""
    listed = ", ".join(f"{r['tenant']} ({r['n']:,} resources)" for r in session.run(_TENANTS))
    return UnknownTenantError(
        f"no resources with tenant_id {tenant_id!r}; tenants in this database: "
        f"{listed or 'none'}")


def _zero() -> Dict[str, int]:
    return dict.fromkeys(KINDS, 0)


def _scale(counts: Dict[str, int]) -> Optional[float]:
    """(real + synthetic) / real: the factor this tenant is scaled to; None without real."""
    if not counts["real"]:
        return None
    return round((counts["real"] + counts["synthetic"]) / counts["real"], 3)


def resource_stats(driver: neo4j.Driver, database: str,
                   tenant_id: Optional[str] = None) -> Dict[str, Any]:
    """Counts of real, synthetic and original ``:Resource`` nodes (of ``tenant_id``).

    Returns ``{"tenant_id", "total": {real, synthetic, original, resources},
    "by_tenant": [{tenant_id, real, synthetic, original, scale}], "by_type": [{type,
    real, synthetic, original}], "by_operation": [{operation_id, tenant_id, status,
    synthetic}], "synthetic_without_operation", "seconds"}``; lists sorted by name
    (``tenant_id`` None: resources without one). Raises ``UnknownTenantError`` when
    ``tenant_id`` has no resources.
    """
    started = time.monotonic()
    with driver.session(database=database, default_access_mode=neo4j.READ_ACCESS) as session:
        if tenant_id is None:
            rows = session.run(_BY_TENANT_AND_TYPE).data()
        else:
            rows = session.run(_ONE_TENANT_BY_TYPE, tenant_id=tenant_id).data()
            if not rows:
                raise unknown_tenant(session, tenant_id)
        operations = session.run(_SYNTHETIC_BY_OPERATION, tenant_id=tenant_id).data()
    total, by_tenant, by_type = _zero(), {}, {}
    for row in rows:
        for counts in (total, by_tenant.setdefault(row["tenant"], _zero()),
                       by_type.setdefault(row["type"], _zero())):
            counts[row["kind"]] += row["n"]
    attributed = sum(row["n"] for row in operations)
    return {
        "tenant_id": tenant_id,
        "total": {**total, "resources": sum(total.values())},
        "by_tenant": [{"tenant_id": tenant, **counts, "scale": _scale(counts)}
                      for tenant, counts in sorted(by_tenant.items(), key=lambda i: str(i[0]))],
        "by_type": [{"type": name, **counts}
                    for name, counts in sorted(by_type.items(), key=lambda i: str(i[0]))],
        "by_operation": [{"operation_id": row["operation_id"], "tenant_id": row["tenant"],
                          "status": row["status"], "synthetic": row["n"]} for row in operations],
        "synthetic_without_operation": total["synthetic"] - attributed,
        "seconds": round(time.monotonic() - started, 3),
    }


def _print_stats(stats: Dict[str, Any]) -> None:
    total = stats["total"]
    scope = f"tenant {stats['tenant_id']}" if stats["tenant_id"] is not None else "all tenants"
    print(f"{scope}: {total['resources']:,} resources: {total['real']:,} real, "
          f"{total['synthetic']:,} synthetic, {total['original']:,} original")
    print()
    print(format_table(("tenant", *KINDS, "scale"), [
        (row["tenant_id"] or NO_TENANT, *(row[kind] for kind in KINDS), row["scale"])
        for row in stats["by_tenant"]]))
    print()
    print(format_table(("type", *KINDS), [
        (row["type"] or NO_TENANT, *(row[kind] for kind in KINDS)) for row in stats["by_type"]]))
    print()
    operations: List[tuple] = [(row["operation_id"], row["tenant_id"] or NO_TENANT,
                                row["status"] or "(no record)", row["synthetic"])
                               for row in stats["by_operation"]]
    if stats["synthetic_without_operation"]:
        operations.append(("(none)", "", "", stats["synthetic_without_operation"]))
    print(format_table(("operation", "tenant", "status", "synthetic"), operations))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = CommandParser(
        prog="python -m pipelines.stats",
        description="Count real, synthetic and original resources by tenant, by type and "
                    "(synthetic) by scale operation.")
    parser.add_argument("--tenant-id", dest="tenant_id", default=None, metavar="T",
                        help="only this tenant (default: all)")
    parser.add_argument("--json", action="store_true",
                        help="print the counts as one JSON line instead of tables")
    add_connection_arguments(parser)
    args = parser.parse_args(argv)
    try:
        check_not_blank("--tenant-id", args.tenant_id)
    except UsageError as error:
        parser.error(str(error))

    def command(driver: neo4j.Driver, database: str) -> int:
        stats = resource_stats(driver, database, args.tenant_id)
        if args.json:
            print(json.dumps(stats, sort_keys=True))
        else:
            _print_stats(stats)
        return 0

    return run_command(args, command)


if __name__ == "__main__":
    sys.exit(main())
