"""How one scale-up run moves its operation's record: resume check, lease, running,
failed or interrupted (and rolled back if asked), finished.

A run is one attempt at an operation; an operation can take several runs (a resume
after a crash, a kill, a signal, a failed run). ``check_resumable`` refuses a run that
asks an existing operation for something else; ``running`` takes the operation's
lease (refusing the run while another live run holds it), keeps it alive with a
heartbeat, and, if the body fails or a signal stops it, records that, rolls back what
was written when asked, and tells the user what to do next; ``Run.finish`` records how
a completed run ended. The lease is released at the end whatever the outcome.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
from typing import Any, Dict, Iterator, Optional

import neo4j

from pipelines import cli
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
    and for an operation that was rolled back. A run of an operation that another live
    run holds is refused first (``record.LeaseHeldError``), whatever it asks for."""
    with driver.session(database=database, default_access_mode=neo4j.READ_ACCESS) as session:
        session.execute_read(record.check_lease, config.operation_id)
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


class _Heartbeat(threading.Thread):
    """Renews the lease every ``record.HEARTBEAT_INTERVAL_S`` until stopped. A database
    that does not answer gets one warning per outage (the lease outlives a minute of
    it); a lease another run took over (this run looked gone to it) gets an error."""

    def __init__(self, driver: neo4j.Driver, database: str, lease: record.Lease) -> None:
        super().__init__(name=f"heartbeat {lease.operation_id}", daemon=True)
        self._driver, self._database, self._lease = driver, database, lease
        self._stopped = threading.Event()

    def run(self) -> None:
        failing = False
        while not self._stopped.wait(record.HEARTBEAT_INTERVAL_S):
            try:
                renewed = record.renew_lease(self._driver, self._database, self._lease)
            except Exception as error:  # noqa: BLE001 - the run itself decides about the database
                if not failing:
                    _LOG.warning("operation %s: could not renew its lease (%s); trying again",
                                 self._lease.operation_id, " ".join(str(error).split()))
                failing = True
                continue
            failing = False
            if not renewed:
                _LOG.error("operation %s: another run took over its lease; this run's outcome "
                           "will not be recorded", self._lease.operation_id)
                return

    def stop(self) -> None:
        """Stop renewing; does not wait for a renewal the database is slow to answer
        (it can no longer change anything once the lease is released)."""
        self._stopped.set()
        self.join(timeout=1.0)


class Run:
    """The run of an operation inside ``running``: its generation timestamp, and
    ``finish`` for a run that completed."""

    def __init__(self, driver: neo4j.Driver, database: str, config: ScaleUpConfig,
                 lease: record.Lease) -> None:
        self._driver, self._database, self._config, self._lease = driver, database, config, lease
        self.generation_timestamp = lease.generation_timestamp
        self.finished = False

    def finish(self, report: Dict[str, Any]) -> None:
        """Record a completed run: ``succeeded``, or ``failed`` when its report has
        errors (then rolled back if asked). Sets the report's ``status`` (and
        ``rolled_back``)."""
        report["status"] = record.SUCCEEDED if not report["errors"] else record.FAILED
        recorded = record.finish_operation(self._driver, self._database, self._lease,
                                           report["status"], report=report)
        self.finished = True
        if not recorded:  # what is written is the other run's too: never rolled back here
            report["errors"].append("another run took over this operation's lease: its record "
                                    "does not have this run's outcome")
            report["status"] = record.FAILED
        elif report["status"] == record.FAILED and self._config.rollback_on_failure:
            report["rolled_back"] = _roll_back(self._driver, self._database,
                                               self._config.operation_id)
            report["status"] = record.ROLLED_BACK


@contextlib.contextmanager
def running(driver: neo4j.Driver, database: str, config: ScaleUpConfig,
            resume_command: str, plan_fingerprint: str) -> Iterator[Run]:
    """Hold the operation's lease (``record.take_lease``: ``LeaseHeldError`` while
    another live run holds it) with a heartbeat, for the block; yield the ``Run``.

    If the block raises before ``Run.finish``, the record becomes ``interrupted`` (a
    signal stopped the run: ``cli.stop_signal``) or ``failed`` (never hiding the run's
    own error if the database is gone too), what the run wrote is rolled back when
    ``config.rollback_on_failure`` asks for it, and the error carries the next step for
    the user (``cli.NEXT_STEP``: ``resume_command``) before it is re-raised.
    """
    lease = record.take_lease(driver, database, config.operation_id, config.tenant_id,
                              config.parameters(), resume_command, plan_fingerprint)
    resume = f"resume it with: {resume_command}"
    heartbeat = _Heartbeat(driver, database, lease)
    heartbeat.start()
    run = Run(driver, database, config, lease)
    try:
        with cli.said_if_stopped_at_once(
                f"operation {config.operation_id} stays 'running' until its lease expires "
                f"(a minute); {resume}"):
            yield run
    except BaseException as error:
        if run.finished:
            raise
        signum = cli.stop_signal()
        status = record.INTERRUPTED if signum is not None else record.FAILED
        cause = (f"interrupted by {signal.Signals(signum).name}" if signum is not None
                 else cli.one_line(f"{type(error).__name__}: {error}", cli.MAX_ERROR_CHARS))
        recorded = _record_end(driver, database, lease, status, cause)
        next_step = (f"operation {config.operation_id} is {recorded or 'incomplete'} (undo it: "
                     f"python -m pipelines.rollback --operation-id {config.operation_id}); "
                     f"{resume}")
        if config.rollback_on_failure and recorded:
            try:
                deleted = _roll_back(driver, database, config.operation_id)
                next_step = (f"operation {config.operation_id} was rolled back "
                             f"({deleted['nodes_deleted']:,} nodes and "
                             f"{deleted['relationships_deleted']:,} relationships deleted)")
            except Exception as rollback_error:  # noqa: BLE001 - keep the run's own error
                _LOG.error("could not roll back %s: %s", config.operation_id, rollback_error)
        with contextlib.suppress(AttributeError):  # some built-in errors take no attributes
            setattr(error, cli.NEXT_STEP, next_step)
        raise
    finally:
        heartbeat.stop()
        try:
            record.release_lease(driver, database, lease)
        except Exception as error:  # noqa: BLE001 - it expires by itself within a minute
            _LOG.warning("operation %s: could not release its lease (%s); it expires within "
                         "%d s", config.operation_id, " ".join(str(error).split()),
                         record.STALE_AFTER_S)


def _record_end(driver: neo4j.Driver, database: str, lease: record.Lease, status: str,
                cause: str) -> Optional[str]:
    """Record a run that did not complete; the status recorded, or None if it could not
    be (the run's own error matters more than the record's: it is logged, not raised)."""
    try:
        if record.finish_operation(driver, database, lease, status, error=cause):
            return f"recorded as {status}"
        _LOG.error("operation %s: another run took over its lease; not recorded as %s",
                   lease.operation_id, status)
    except Exception as record_error:  # noqa: BLE001 - the run's own error matters more
        _LOG.error("could not record operation %s as %s (%s); its record still says "
                   "'running' until its lease expires", lease.operation_id, status,
                   " ".join(str(record_error).split()))
    return None


def _roll_back(driver: neo4j.Driver, database: str, operation_id: str) -> Dict[str, Any]:
    """``--rollback-on-failure``: delete what the failed or interrupted run wrote."""
    _LOG.warning("operation %s did not complete: rolling back what it wrote", operation_id)
    deleted = rollback_operation(driver, database, operation_id)
    _LOG.warning("rolled back %s: %d nodes and %d relationships deleted", operation_id,
                 deleted["nodes_deleted"], deleted["relationships_deleted"])
    return deleted
