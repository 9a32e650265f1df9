"""The record each scale-up leaves in the graph: ``(:ScaleOperation {id})``.

It makes an operation traceable after the fact (who asked for what, when, how it
ended, what it wrote) and it pins the operation's ``generation_timestamp``, so that a
re-run of the same operation id writes byte-identical nodes.
"""

from __future__ import annotations

import datetime
import json
from typing import Any, Dict, Optional

import neo4j

OPERATION_LABEL = "ScaleOperation"
RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"
ROLLED_BACK = "rolled_back"


def utc_now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def start_operation(
    driver: neo4j.Driver, database: str, operation_id: str, tenant_id: str,
    parameters: Dict[str, Any],
) -> str:
    """Record the operation as running; return its generation timestamp.

    A new operation gets ``now``; an existing one (a re-run) keeps its first one.
    """
    now = utc_now_iso()
    record = driver.execute_query(
        "MERGE (o:ScaleOperation {id: $id}) "
        "ON CREATE SET o.generation_timestamp = $now, o.created_at = $now "
        "SET o.tenant_id = $tenant_id, o.status = $status, o.started_at = $now, "
        "    o.finished_at = null, o.parameters = $parameters, o.runs = coalesce(o.runs, 0) + 1 "
        "RETURN o.generation_timestamp AS generation_timestamp",
        id=operation_id, now=now, tenant_id=tenant_id, status=RUNNING,
        parameters=json.dumps(parameters, sort_keys=True),
        database_=database,
    ).records[0]
    return record["generation_timestamp"]


def finish_operation(
    driver: neo4j.Driver, database: str, operation_id: str, status: str,
    report: Optional[Dict[str, Any]] = None, error: Optional[str] = None,
) -> None:
    """Record how the operation ended, with its report (as JSON) or error."""
    driver.execute_query(
        "MATCH (o:ScaleOperation {id: $id}) "
        "SET o.status = $status, o.finished_at = $now, o.error = $error, o.report = $report",
        id=operation_id, status=status, now=utc_now_iso(), error=error,
        report=json.dumps(report, sort_keys=True) if report is not None else None,
        database_=database,
    )
