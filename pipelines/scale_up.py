"""Scale up a tenant: read its templates, replicate them, batch, write, report.

    python -m pipelines.scale_up --tenant-id T --scale-factor 8 [--report report.json]

Exit codes: 0 success, 2 bad input (the message says what to fix), 1 failure. The last
line on stdout is the run report as JSON (also written to ``--report``); progress and
logs go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import resource
import sys
import threading
import time
import uuid
from typing import Any, Dict, List, Optional, Sequence, Tuple

import apache_beam as beam
import neo4j
import neo4j.exceptions
import psutil
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import operations, rollback
from pipelines.cli import (
    NEXT_STEP,
    UsageError,
    add_connection_arguments,
    configure_logging,
    connection_from,
    exit_code_of,
    parsed,
)
from pipelines.runner import log_dead_letter, metric_totals, pipeline_options, runner_name
from transforms.batch_size import adaptive_batch_size
from transforms.connection import Neo4jConnection
from transforms.neo4j_write import WriteGraph
from transforms.progress import WRITE_PROGRESS
from transforms.replicate import (
    CopySetRows,
    ReplicateNodes,
    ReplicateRelationships,
    ReplicationSettings,
)
from transforms.schema import ensure_indexes
from transforms.templates import (
    PlanError,
    ReadTemplates,
    TemplatePlan,
    TemplateSelection,
    plan_templates,
)

_LOG = logging.getLogger("scale_up")

MAX_NEW_NODES = 100_000_000
MAX_BATCH_SIZE = 100_000
MAX_CONCURRENT_WRITES = 64
PROGRESS_INTERVAL_S = 5.0
#: The status of a dry run's report: planned, nothing written.
PLANNED = "planned"


class ScaleUpOptions(PipelineOptions):
    """The scale-up's own flags; every other flag is Beam's (``--runner`` ...)."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        # Nothing is ``required=True`` here: Beam parses every PipelineOptions subclass
        # when it reads its own flags, so required flags are checked in parse_arguments.
        parser.add_argument("--tenant-id", dest="tenant_id",
                            help="tenant_id of the resources to copy (templates); required")
        size = parser.add_mutually_exclusive_group()
        size.add_argument("--scale-factor", dest="scale_factor", type=float,
                          help="final/initial size of the template set, > 1; 8 turns 5k into "
                               "40k; non-integer factors are fine")
        size.add_argument("--target-count", dest="target_count", type=int,
                          help="final size of the template set instead of a factor")
        parser.add_argument("--resource-types", dest="resource_types", nargs="+", default=None,
                            metavar="TYPE",
                            help="copy only these resource types (space- or comma-separated), "
                                 "e.g. Microsoft.Compute/virtualMachines")
        parser.add_argument("--operation-id", dest="operation_id", default=None,
                            help="id of this operation (default: a new one); re-running an "
                                 "operation id completes it without duplicates")
        parser.add_argument("--max-concurrent-writes", dest="max_concurrent_writes", type=int,
                            default=5,
                            help="write transactions in flight at once per worker (1-64, "
                                 "default 5)")
        parser.add_argument("--batch-size", dest="batch_size", type=int, default=None,
                            help="rows per write transaction (default: adaptive, from the "
                                 "expected count)")
        parser.add_argument("--dry-run", dest="dry_run", action="store_true",
                            help="print the plan (templates, new nodes and relationships by "
                                 "type, batches, parallelism) and write nothing at all")
        parser.add_argument("--rollback-on-failure", dest="rollback_on_failure",
                            action="store_true",
                            help="if the run fails, delete what it wrote (and mark the "
                                 "operation rolled back) instead of leaving it to be resumed")
        parser.add_argument("--report", dest="report", default=None,
                            help="also write the JSON run report to this file")
        add_connection_arguments(parser)
        parser.add_argument("--progress-interval", dest="progress_interval", type=float,
                            default=PROGRESS_INTERVAL_S,
                            help="seconds between progress lines on stderr (default 5)")


@dataclasses.dataclass(frozen=True)
class ScaleUpConfig:
    """Validated, plain values: what ``run`` needs besides the connection."""

    tenant_id: str
    scale_factor: Optional[float]
    target_count: Optional[int]
    resource_types: Optional[Tuple[str, ...]]
    operation_id: str
    max_concurrent_writes: int
    batch_size: Optional[int]
    report_path: Optional[str]
    progress_interval: float
    dry_run: bool = False
    rollback_on_failure: bool = False

    def parameters(self) -> Dict[str, Any]:
        """What the operation record keeps of the request."""
        return {
            "tenant_id": self.tenant_id,
            "scale_factor": self.scale_factor,
            "target_count": self.target_count,
            "resource_types": list(self.resource_types) if self.resource_types else None,
            "max_concurrent_writes": self.max_concurrent_writes,
            "batch_size": self.batch_size,
        }


def parse_arguments(argv: Optional[Sequence[str]]) -> Tuple[ScaleUpConfig, Neo4jConnection, List[str]]:
    """Our flags → ``ScaleUpConfig`` and the connection; the rest are Beam's flags.

    Raises ``UsageError`` for values argparse accepts but that make no sense.
    """
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.scale_up",
        description="Scale up an Azure tenant graph in Neo4j with synthetic copies of its "
                    "resources. Any Apache Beam pipeline flag (e.g. --runner) is passed on.",
    )
    ScaleUpOptions._add_argparse_args(parser)
    args, beam_args = parser.parse_known_args(argv)
    if not args.tenant_id or not args.tenant_id.strip():
        raise UsageError("--tenant-id is required (the tenant_id of the resources to copy)")
    if args.scale_factor is None and args.target_count is None:
        raise UsageError("give --scale-factor F (> 1) or --target-count N")
    if args.scale_factor is not None and not (math.isfinite(args.scale_factor) and args.scale_factor > 1):
        raise UsageError(f"--scale-factor must be a finite number > 1, got {args.scale_factor}")
    if args.target_count is not None and args.target_count < 2:
        raise UsageError(f"--target-count must be larger than the template count, got {args.target_count}")
    if not 1 <= args.max_concurrent_writes <= MAX_CONCURRENT_WRITES:
        raise UsageError(f"--max-concurrent-writes must be from 1 to {MAX_CONCURRENT_WRITES}, "
                         f"got {args.max_concurrent_writes}")
    if args.batch_size is not None and not 1 <= args.batch_size <= MAX_BATCH_SIZE:
        raise UsageError(f"--batch-size must be from 1 to {MAX_BATCH_SIZE}, got {args.batch_size}")
    if args.progress_interval <= 0:
        raise UsageError(f"--progress-interval must be positive, got {args.progress_interval}")
    operation_id = args.operation_id or f"scale-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    if not operation_id.isprintable() or len(operation_id) > 200:
        raise UsageError("--operation-id must be printable and at most 200 characters")
    resource_types = None
    if args.resource_types:
        resource_types = tuple(sorted({t.strip() for arg in args.resource_types
                                       for t in arg.split(",") if t.strip()}))
    config = ScaleUpConfig(
        tenant_id=args.tenant_id,
        scale_factor=args.scale_factor,
        target_count=args.target_count,
        resource_types=resource_types or None,
        operation_id=operation_id,
        max_concurrent_writes=args.max_concurrent_writes,
        batch_size=args.batch_size,
        report_path=args.report,
        progress_interval=args.progress_interval,
        dry_run=args.dry_run,
        rollback_on_failure=args.rollback_on_failure,
    )
    return config, connection_from(args), beam_args


def build_pipeline(
    pipeline: beam.Pipeline,
    connection: Neo4jConnection,
    plan: TemplatePlan,
    settings: ReplicationSettings,
    batch_size: int,
    max_concurrent_writes: int,
) -> None:
    """read → replicate → batch → write nodes, then relationships once all nodes are in."""
    read = pipeline | "ReadTemplates" >> ReadTemplates(connection, plan.selection, plan.chunks)
    nodes = read.templates | "ReplicateNodes" >> ReplicateNodes(settings)
    relationships = read.relationships | "ReplicateRelationships" >> ReplicateRelationships(settings)
    groups = plan.template_count + sum(plan.template_relationships_by_type.values())
    rows_per_group = (plan.new_node_count + plan.new_relationship_count) / groups
    write_dead_letters = (nodes.rows, relationships.rows) | "Write" >> WriteGraph(
        connection, batch_size, rows_per_group=rows_per_group,
        max_concurrent_writes=max_concurrent_writes,
        rows_of_group=CopySetRows(settings.operation_id))
    (
        (nodes.dead_letter, relationships.dead_letter, write_dead_letters)
        | "DeadLetters" >> beam.Flatten()
        | "LogDeadLetters" >> beam.Map(log_dead_letter)
    )


class _ProgressReporter(threading.Thread):
    """Logs done/total, rate and ETA every ``interval`` seconds while the pipeline runs."""

    def __init__(self, total_nodes: int, total_relationships: int, interval: float) -> None:
        super().__init__(name="progress", daemon=True)
        self._totals = (total_nodes, total_relationships)
        self._interval = interval
        self._stopped = threading.Event()
        self._start_time = time.monotonic()

    def run(self) -> None:
        while not self._stopped.wait(self._interval):
            nodes, relationships = WRITE_PROGRESS.snapshot()
            done, total = nodes + relationships, sum(self._totals)
            elapsed = time.monotonic() - self._start_time
            rate = done / elapsed if elapsed > 0 else 0.0
            eta = f"{(total - done) / rate:.0f} s" if rate > 0 else "unknown"
            _LOG.info("progress: nodes %d/%d, relationships %d/%d (%.0f%%), %.0f rows/s, ETA %s",
                      nodes, self._totals[0], relationships, self._totals[1],
                      100.0 * done / max(total, 1), rate, eta)

    def stop(self) -> None:
        self._stopped.set()


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run(config: ScaleUpConfig, connection: Neo4jConnection, beam_args: Sequence[str]) -> Dict[str, Any]:
    """Run one scale-up and return its report (also recorded on the operation node).

    Raises ``PlanError`` for requests that cannot run as asked (nothing is written
    then), and re-raises whatever failed the run after recording it on the operation.
    """
    started = time.monotonic()
    process = psutil.Process()
    rss_start_mb = process.memory_info().rss / 2**20
    driver = connection.open_driver()
    try:
        driver.verify_connectivity()
        plan = plan_templates(
            driver, connection.database, TemplateSelection(config.tenant_id, config.resource_types),
            config.scale_factor, config.target_count, MAX_NEW_NODES,
        )
        batch_size = config.batch_size or adaptive_batch_size(
            plan.new_node_count + plan.new_relationship_count, "write")
        if config.dry_run:
            return _dry_run_report(config, plan, batch_size)
        _check_resumable(driver, connection.database, config)
        created_indexes = ensure_indexes(driver, connection.database)
        _LOG.info("operation %s: %d templates → %d new nodes, %d new relationships; "
                  "batches of %d rows, %d concurrent writes",
                  config.operation_id, plan.template_count, plan.new_node_count,
                  plan.new_relationship_count, batch_size, config.max_concurrent_writes)
        generation_timestamp = operations.start_operation(
            driver, connection.database, config.operation_id, config.tenant_id, config.parameters())
        settings = ReplicationSettings(config.operation_id, generation_timestamp, plan.copy_rule,
                                       shards=config.max_concurrent_writes)
        options = pipeline_options(beam_args)
        pipeline_started = time.monotonic()
        try:
            result = _run_pipeline(options, connection, plan, settings, batch_size, config)
        except BaseException as error:
            _record_failure(driver, connection.database, config.operation_id, error)
            next_step = (f"operation {config.operation_id} is incomplete: run the same command "
                         f"with --operation-id {config.operation_id} to complete it, or "
                         f"python -m pipelines.rollback --operation-id {config.operation_id} "
                         "to undo it")
            if config.rollback_on_failure:
                try:
                    _roll_back(driver, connection.database, config.operation_id)
                    next_step = f"operation {config.operation_id} was rolled back"
                except Exception as rollback_error:  # noqa: BLE001 - keep the run's own error
                    _LOG.error("could not roll back %s: %s", config.operation_id, rollback_error)
            with contextlib.suppress(AttributeError):  # some built-in errors take no attributes
                setattr(error, NEXT_STEP, next_step)
            raise
        pipeline_seconds = time.monotonic() - pipeline_started
        report = _report(config, plan, runner_name(options), metric_totals(result),
                         operations.written_by_type(driver, connection.database, config.operation_id),
                         created_indexes, batch_size,
                         duration=time.monotonic() - started, pipeline_seconds=pipeline_seconds,
                         memory={"start_mb": round(rss_start_mb, 1),
                                 "end_mb": round(process.memory_info().rss / 2**20, 1),
                                 "peak_mb": round(_peak_rss_mb(), 1)})
        report["status"] = operations.SUCCEEDED if not report["errors"] else operations.FAILED
        operations.finish_operation(driver, connection.database, config.operation_id,
                                    report["status"], report=report)
        if report["status"] == operations.FAILED and config.rollback_on_failure:
            report["rolled_back"] = _roll_back(driver, connection.database, config.operation_id)
            report["status"] = operations.ROLLED_BACK
        return report
    finally:
        driver.close()


def _run_pipeline(options: PipelineOptions, connection: Neo4jConnection, plan: TemplatePlan,
                  settings: ReplicationSettings, batch_size: int,
                  config: ScaleUpConfig) -> beam.runners.runner.PipelineResult:
    """Build and run the pipeline, logging progress while it runs."""
    WRITE_PROGRESS.reset()
    progress = _ProgressReporter(plan.new_node_count, plan.new_relationship_count,
                                 config.progress_interval)
    progress.start()
    try:
        pipeline = beam.Pipeline(options=options)
        build_pipeline(pipeline, connection, plan, settings, batch_size,
                       config.max_concurrent_writes)
        result = pipeline.run()
        result.wait_until_finish()
        return result
    finally:
        progress.stop()


def _record_failure(driver: neo4j.Driver, database: str, operation_id: str,
                    error: BaseException) -> None:
    """Mark the operation failed; never hide ``error`` if the database is gone too."""
    try:
        operations.finish_operation(driver, database, operation_id, operations.FAILED,
                                    error=f"{type(error).__name__}: {error}")
    except Exception as record_error:  # noqa: BLE001 - the run's own error matters more
        _LOG.error("could not record the failure of operation %s (%s); its record still says "
                   "'running': re-run it with --operation-id %s to complete it",
                   operation_id, record_error, operation_id)


def _roll_back(driver: neo4j.Driver, database: str, operation_id: str) -> Dict[str, Any]:
    """``--rollback-on-failure``: delete what the failed run wrote."""
    _LOG.warning("operation %s failed: rolling back what it wrote", operation_id)
    deleted = rollback.rollback_operation(driver, database, operation_id)
    _LOG.warning("rolled back %s: %d nodes and %d relationships deleted", operation_id,
                 deleted["nodes_deleted"], deleted["relationships_deleted"])
    return deleted


#: Parameters that decide what an operation creates; a re-run must not change them.
_DEFINING_PARAMETERS = ("tenant_id", "scale_factor", "target_count", "resource_types")


def _check_resumable(driver: neo4j.Driver, database: str, config: ScaleUpConfig) -> None:
    """A re-run of an existing operation must ask for the same thing it first asked for."""
    records = driver.execute_query(
        "MATCH (o:ScaleOperation {id: $id}) RETURN o.status AS status, o.parameters AS parameters",
        id=config.operation_id, database_=database).records
    if not records:
        return
    status, recorded = records[0]["status"], json.loads(records[0]["parameters"] or "{}")
    if status == operations.ROLLED_BACK:
        raise PlanError(f"operation {config.operation_id} was rolled back; start a new operation "
                        "(leave out --operation-id)")
    asked = config.parameters()
    differing = [name for name in _DEFINING_PARAMETERS if recorded.get(name) != asked[name]]
    if differing:
        was = ", ".join(f"{name}={recorded.get(name)!r}" for name in differing)
        raise PlanError(f"operation {config.operation_id} was started with {was}; resume it with "
                        "the same --tenant-id, --scale-factor/--target-count and --resource-types, "
                        "or start a new operation")


def _dry_run_report(config: ScaleUpConfig, plan: TemplatePlan, batch_size: int) -> Dict[str, Any]:
    """What the run would do; nothing has been written."""
    return {
        "operation_id": config.operation_id,
        "tenant_id": config.tenant_id,
        "status": PLANNED,
        "dry_run": True,
        "parameters": config.parameters(),
        "templates": plan.template_count,
        "templates_by_type": plan.templates_by_type,
        "copies_per_template": {"base": plan.copy_rule.base_copies,
                                "one_more_below_id": plan.copy_rule.extra_copy_below_id},
        "expected": {"nodes": plan.new_node_count, "relationships": plan.new_relationship_count},
        "new_nodes_by_type": plan.new_nodes_by_type,
        "new_relationships_by_type": plan.new_relationships_by_type,
        "read_chunks": len(plan.chunks),
        "batch_size": batch_size,
        "batches_at_least": -(-plan.new_node_count // batch_size)
                            - (-plan.new_relationship_count // batch_size),
        "max_concurrent_writes": config.max_concurrent_writes,
        "errors": [],
    }


def _report(config: ScaleUpConfig, plan: TemplatePlan, runner: str, metrics: Dict[str, Any],
            in_database: Dict[str, Dict[str, int]], created_indexes: List[str],
            batch_size: int, duration: float,
            pipeline_seconds: float, memory: Dict[str, float]) -> Dict[str, Any]:
    counters, distributions = metrics["counters"], metrics["distributions"]
    # A runner that reports no metrics at all (a detached Flink job) must not make a
    # correct run look failed: the counts then come from the database.
    metrics_source = "beam" if counters else "database"
    if counters:
        nodes_written = counters.get("nodes_written", 0)
        relationships_written = counters.get("relationships_written", 0)
    else:
        nodes_written = sum(in_database["nodes"].values())
        relationships_written = sum(in_database["relationships"].values())
    latency = distributions.get("write_latency_ms", {})
    errors = []
    if counters.get("dead_letters"):
        errors.append(f"{counters['dead_letters']} records could not be written (see the log)")
    if nodes_written != plan.new_node_count:
        errors.append(f"wrote {nodes_written} nodes, expected {plan.new_node_count}")
    if relationships_written != plan.new_relationship_count:
        errors.append(f"wrote {relationships_written} relationships, expected "
                      f"{plan.new_relationship_count}")
    return {
        "operation_id": config.operation_id,
        "tenant_id": config.tenant_id,
        "status": None,
        "runner": runner,
        "parameters": config.parameters(),
        "templates": plan.template_count,
        "templates_by_type": plan.templates_by_type,
        "expected": {"nodes": plan.new_node_count, "relationships": plan.new_relationship_count},
        "written": {"nodes": nodes_written, "relationships": relationships_written},
        "written_source": metrics_source,
        "in_database": in_database,
        "duration_s": round(duration, 3),
        "pipeline_s": round(pipeline_seconds, 3),
        "throughput": {
            "nodes_per_s": round(nodes_written / pipeline_seconds, 1),
            "relationships_per_s": round(relationships_written / pipeline_seconds, 1),
        },
        "memory": memory,
        "batches": {
            "count": counters.get("batches_written", 0),
            "batch_size": batch_size,
            "size": distributions.get("batch_size"),
            "max_concurrent_writes": config.max_concurrent_writes,
            "observed_concurrency_max": distributions.get("write_concurrency", {}).get("max"),
        },
        "neo4j": {
            "write_transactions": latency.get("count", 0),
            "write_time_s": round(latency.get("sum", 0) / 1000.0, 3),
            "indexes_created": created_indexes,
        },
        "retries": counters.get("write_retries", 0),
        "dead_letters": counters.get("dead_letters", 0),
        "errors": errors,
    }


def execute(config: ScaleUpConfig, connection: Neo4jConnection, beam_args: Sequence[str]) -> int:
    """Run and report like the command line does; return the exit code."""

    def run_and_print() -> int:
        report = run(config, connection, beam_args)
        text = json.dumps(report, sort_keys=True)
        if config.report_path:
            with open(config.report_path, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
        print(text)
        return 0 if report["status"] in (operations.SUCCEEDED, PLANNED) else 1

    return exit_code_of(connection, run_and_print, bad_input=(PlanError,))


def main(argv: Optional[Sequence[str]] = None) -> int:
    configure_logging()
    arguments = parsed(lambda: parse_arguments(argv))
    if arguments is None:
        return 2
    return execute(*arguments)


if __name__ == "__main__":
    sys.exit(main())
