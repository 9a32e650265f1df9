"""How one scale-up run moves its operation's record: resume check, running, failed
(and rolled back if asked), finished.

A run is one attempt at an operation; an operation can take several runs (a resume
after a crash, a kill, a failed run). ``check_resumable`` refuses a run that asks an
existing operation for something else; ``running`` records the run and, if the body
fails, records the failure, rolls back what was written when asked, and tells the user
what to do next; ``finish`` records how a completed run ended.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any, Dict, Iterator

import neo4j

from pipelines.cli import NEXT_STEP
from pipelines.operation import record
from pipelines.operation.rollback import rollback_operation
from pipelines.options import ScaleUpConfig
from pipelines.plan import PlanError

_LOG = logging.getLogger("scale_up")

#: Parameters that decide what an operation creates; a re-run must not change them.
_DEFINING_PARAMETERS = ("tenant_id", "scale_factor", "target_count", "resource_types")


def check_resumable(driver: neo4j.Driver, database: str, config: ScaleUpConfig,
                    plan_fingerprint: str) -> None:
    """A re-run of an existing operation must ask for the same thing it first asked for,
    on the same templates (its batches were planned on them); ``PlanError`` otherwise,
    and for an operation that was rolled back."""
    records = driver.execute_query(
        "MATCH (o:ScaleOperation {id: $id}) RETURN o.status AS status, o.parameters AS parameters, "
        "o.plan_fingerprint AS plan_fingerprint",
        id=config.operation_id, database_=database).records
    if not records:
        return
    status, recorded = records[0]["status"], json.loads(records[0]["parameters"] or "{}")
    if status == record.ROLLED_BACK:
        raise PlanError(f"operation {config.operation_id} was rolled back; start a new operation "
                        "(leave out --operation-id)")
    asked = config.parameters()
    differing = [name for name in _DEFINING_PARAMETERS if recorded.get(name) != asked[name]]
    if differing:
        was = ", ".join(f"{name}={recorded.get(name)!r}" for name in differing)
        raise PlanError(f"operation {config.operation_id} was started with {was}; resume it with "
                        "the same --tenant-id, --scale-factor/--target-count and --resource-types, "
                        "or start a new operation")
    if records[0]["plan_fingerprint"] not in (None, plan_fingerprint):
        raise PlanError(f"operation {config.operation_id} cannot be completed as it was planned: "
                        "its templates or its --batch-size changed since it started. Resume it "
                        "with the --batch-size it started with, or roll it back with "
                        f"python -m pipelines.rollback --operation-id {config.operation_id} "
                        "and start a new operation")


@contextlib.contextmanager
def running(driver: neo4j.Driver, database: str, config: ScaleUpConfig,
            plan_fingerprint: str) -> Iterator[str]:
    """Record the run as running and yield the operation's generation timestamp.

    If the body raises, the record becomes ``failed`` (never hiding the run's own error
    if the database is gone too), what the run wrote is rolled back when
    ``config.rollback_on_failure`` asks for it, and the error carries the next step for
    the user (``cli.NEXT_STEP``) before it is re-raised.
    """
    generation_timestamp = record.start_operation(
        driver, database, config.operation_id, config.tenant_id, config.parameters(),
        plan_fingerprint)
    try:
        yield generation_timestamp
    except BaseException as error:
        _record_failure(driver, database, config.operation_id, error)
        next_step = (f"operation {config.operation_id} is incomplete: run the same command "
                     f"with --operation-id {config.operation_id} to complete it, or "
                     f"python -m pipelines.rollback --operation-id {config.operation_id} "
                     "to undo it")
        if config.rollback_on_failure:
            try:
                _roll_back(driver, database, config.operation_id)
                next_step = f"operation {config.operation_id} was rolled back"
            except Exception as rollback_error:  # noqa: BLE001 - keep the run's own error
                _LOG.error("could not roll back %s: %s", config.operation_id, rollback_error)
        with contextlib.suppress(AttributeError):  # some built-in errors take no attributes
            setattr(error, NEXT_STEP, next_step)
        raise


def finish(driver: neo4j.Driver, database: str, config: ScaleUpConfig,
           report: Dict[str, Any]) -> None:
    """Record a completed run: ``succeeded``, or ``failed`` when its report has errors
    (then rolled back if asked). Sets the report's ``status`` (and ``rolled_back``)."""
    report["status"] = record.SUCCEEDED if not report["errors"] else record.FAILED
    record.finish_operation(driver, database, config.operation_id, report["status"],
                            report=report)
    if report["status"] == record.FAILED and config.rollback_on_failure:
        report["rolled_back"] = _roll_back(driver, database, config.operation_id)
        report["status"] = record.ROLLED_BACK


def _record_failure(driver: neo4j.Driver, database: str, operation_id: str,
                    error: BaseException) -> None:
    """Mark the operation failed; never hide ``error`` if the database is gone too."""
    try:
        record.finish_operation(driver, database, operation_id, record.FAILED,
                                error=f"{type(error).__name__}: {error}")
    except Exception as record_error:  # noqa: BLE001 - the run's own error matters more
        _LOG.error("could not record the failure of operation %s (%s); its record still says "
                   "'running': re-run it with --operation-id %s to complete it",
                   operation_id, record_error, operation_id)


def _roll_back(driver: neo4j.Driver, database: str, operation_id: str) -> Dict[str, Any]:
    """``--rollback-on-failure``: delete what the failed run wrote."""
    _LOG.warning("operation %s failed: rolling back what it wrote", operation_id)
    deleted = rollback_operation(driver, database, operation_id)
    _LOG.warning("rolled back %s: %d nodes and %d relationships deleted", operation_id,
                 deleted["nodes_deleted"], deleted["relationships_deleted"])
    return deleted
