"""Scale up a tenant: plan (its batches too), then read → replicate → write, then report.

    python -m pipelines.scale_up --tenant-id T --scale-factor 8 [--json] [--report report.json]

Exit codes: 0 success, 2 bad input (the message says what to fix), 1 failure, 130/143
stopped by SIGINT/SIGTERM (the last stderr line is the command that resumes it).
stdout ends with a summary table, or with ``--json`` holds only the run report as one
JSON line (also written to ``--report``); progress and warnings go to stderr.
"""

from __future__ import annotations

import functools
import logging
import shlex
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

import apache_beam as beam
import psutil

from pipelines.beam_job import (
    log_dead_letter,
    metric_totals,
    parallel_writers,
    pipeline_options,
    runner_name,
    workers_share_this_process,
)
from pipelines.cli import (
    ProgressReporter,
    UsageError,
    configure_logging,
    connect,
    exit_code_of,
    parsed,
    print_result,
    stop_signal,
)
from pipelines.infra.flink import flink_options
from pipelines.infra.processes import InfraError
from pipelines.operation import lifecycle, record
from pipelines.options import MAX_NEW_NODES, ScaleUpConfig, parse_arguments
from pipelines.plan import PlanError, ScalePlan, plan_scale_up
from pipelines.report import PLANNED, dry_run_report, peak_rss_mb, plan_problems, render_summary, run_report
from transforms.connection import Neo4jConnection
from transforms.model import TemplateSelection
from transforms.read import ReadTemplates
from transforms.replicate import ReplicateParts, ReplicationSettings, UnitRowsOf
from transforms.schema import ensure_schema
from transforms.write import WRITE_PROGRESS, CopyUnits, WriteToNeo4j

_LOG = logging.getLogger("scale_up")

#: How this command is started, for the command line that resumes an operation.
PROGRAM = ("python", "-m", "pipelines.scale_up")


def run(argv: Optional[Sequence[str]] = None, program: Sequence[str] = PROGRAM) -> int:
    """The command: parse → plan → build and run the pipeline → report; the exit code.

    ``program``: how the user started it, whose ``argv`` are these flags (``run_local``
    passes its own), so that the resume command it prints is the one they ran.
    """
    configure_logging()
    argv = list(sys.argv[1:] if argv is None else argv)

    def parse():
        config, connection, beam_args = parse_arguments(argv)
        configure_logging(config.verbose, config.log_file)
        return config, connection, beam_args

    arguments = parsed(parse)
    if arguments is None:
        return 2
    config, connection, beam_args = arguments
    resume = resume_command(program, argv, config.operation_id)

    def scale_up_and_report() -> int:
        report = scale_up(config, connection, beam_args, resume)
        if report.get("retries"):
            _LOG.info("%d transient errors (deadlocks) retried", report["retries"])
        print_result(report, config.json, functools.partial(render_summary, resume_command=resume),
                     config.report_path)
        return 0 if report["status"] in (record.SUCCEEDED, PLANNED) else 1

    return exit_code_of(connection, scale_up_and_report, bad_input=(PlanError, InfraError))


def resume_command(program: Sequence[str], argv: Sequence[str], operation_id: str) -> str:
    """The command line that runs ``argv`` again as operation ``operation_id``: what
    resumes it after a failure or a signal."""
    kept: List[str] = []
    skip_value = False
    for arg in argv:
        if skip_value:
            skip_value = False
        elif arg == "--operation-id":
            skip_value = True
        elif not arg.startswith("--operation-id="):
            kept.append(arg)
    return shlex.join([*program, *kept, "--operation-id", operation_id])


def scale_up(config: ScaleUpConfig, connection: Neo4jConnection,
             beam_args: Sequence[str], resume: Optional[str] = None) -> Dict[str, Any]:
    """One scale-up; its report (also kept on the operation's record).

    Raises ``PlanError`` for requests that cannot run as asked (nothing is written then),
    ``record.LeaseHeldError`` while another run of the operation is live, and re-raises
    whatever failed or interrupted the run after recording it on the operation
    (``resume``: the command line that resumes it, default ``resume_command``'s).
    """
    started, rss_start_mb = time.monotonic(), psutil.Process().memory_info().rss / 2**20
    resume = resume or resume_command(PROGRAM, (), config.operation_id)
    with connect(connection) as driver:
        database = connection.database
        plan = plan_scale_up(driver, database,
                             TemplateSelection(config.tenant_id, config.resource_types),
                             config.scale_factor, config.target_count, MAX_NEW_NODES,
                             config.batch_size)
        plan_seconds = time.monotonic() - started
        for problem in plan_problems(plan):
            _LOG.warning("%s", problem)
        if config.dry_run:
            return dry_run_report(config, plan)
        options = pipeline_options(flink_options(beam_args))
        runner = runner_name(options)  # portable runners clear the option when they submit
        writes_per_worker = _writes_per_worker(config.max_concurrent_writes, parallel_writers(options))
        lifecycle.check_resumable(driver, database, config, plan.fingerprint)
        created_indexes = ensure_schema(driver, database)
        with lifecycle.running(driver, database, config, resume, plan.fingerprint) as operation_run:
            _LOG.info("operation %s: %d templates in %d components → %d new nodes, %d new "
                      "relationships; %d parts of at most %d rows, at most %d concurrent writes "
                      "(%d per worker)", config.operation_id, plan.template_count,
                      plan.components.count, plan.new_node_count, plan.new_relationship_count,
                      len(plan.parts), plan.batch_size, config.max_concurrent_writes,
                      writes_per_worker)
            settings = ReplicationSettings(config.operation_id, operation_run.generation_timestamp,
                                           plan.base_copies)
            pipeline_started = time.monotonic()
            result = run_pipeline(options, connection, driver, plan, settings,
                                  writes_per_worker, config)
            pipeline_seconds = time.monotonic() - pipeline_started
            report = run_report(
                config, plan, runner, metric_totals(result),
                record.written_by_type(driver, database, config.operation_id), created_indexes,
                duration=time.monotonic() - started, plan_seconds=plan_seconds,
                pipeline_seconds=pipeline_seconds,
                memory={"start_mb": round(rss_start_mb, 1),
                        "end_mb": round(psutil.Process().memory_info().rss / 2**20, 1),
                        "peak_mb": round(peak_rss_mb(), 1)})
            operation_run.finish(report)
        return report


def build_pipeline(pipeline: beam.Pipeline, connection: Neo4jConnection, plan: ScalePlan,
                   settings: ReplicationSettings, max_concurrent_writes: int) -> None:
    """read parts → replicate into copy units → write each in one transaction; then the
    links between slices of large components, once every copy is written."""
    parts = pipeline | "ReadTemplates" >> ReadTemplates(connection, plan.selection, plan.parts)
    units = parts | "Replicate" >> ReplicateParts(settings)
    handler = CopyUnits(UnitRowsOf(settings.operation_id), settings.operation_id)
    copies = units.copies | "WriteCopies" >> WriteToNeo4j(
        connection, handler, max_concurrent_writes=max_concurrent_writes)
    copies_written = copies.written | "CopiesWritten" >> beam.combiners.Count.Globally()
    links = units.links | "WriteLinks" >> WriteToNeo4j(
        connection, handler, max_concurrent_writes=max_concurrent_writes,
        after=beam.pvalue.AsSingleton(copies_written))
    (
        (copies.dead_letter, links.dead_letter)
        | "DeadLetters" >> beam.Flatten()
        | "LogDeadLetters" >> beam.Map(log_dead_letter)
    )


def _writes_per_worker(max_concurrent_writes: int, workers: int) -> int:
    """The share of ``--max-concurrent-writes`` of each of ``workers`` parallel writers,
    so that all of them together never have more transactions in flight."""
    if max_concurrent_writes < workers:
        raise UsageError(
            f"--max-concurrent-writes {max_concurrent_writes} cannot be shared by the "
            f"{workers} parallel writers of this run (its parallelism): give at least "
            f"{workers}, or a lower --parallelism")
    return max_concurrent_writes // workers


def run_pipeline(options, connection: Neo4jConnection, driver, plan: ScalePlan,
                 settings: ReplicationSettings, writes_per_worker: int,
                 config: ScaleUpConfig) -> beam.runners.runner.PipelineResult:
    """Build and run the pipeline, logging progress while it runs: counted by the sink
    when its workers run in this process, else counted in the database."""
    WRITE_PROGRESS.reset()
    in_this_process = workers_share_this_process(options)

    def measure():
        if in_this_process:
            nodes, relationships = WRITE_PROGRESS.snapshot()
        else:
            written = record.written_by_type(driver, connection.database, config.operation_id)
            nodes, relationships = (sum(written["nodes"].values()),
                                    sum(written["relationships"].values()))
        return [("nodes", nodes, plan.new_node_count),
                ("relationships", relationships, plan.new_relationship_count)]

    # Copy units write nodes with their relationships; once every node is written, what
    # remains are the links between slices of large components.
    progress = ProgressReporter("progress", measure, config.progress_interval,
                                phases=("copies", "links"))
    progress.start()
    try:
        pipeline = beam.Pipeline(options=options)
        build_pipeline(pipeline, connection, plan, settings, writes_per_worker)
        result = pipeline.run()
        try:
            result.wait_until_finish()
        except BaseException:
            if stop_signal() is not None:
                _cancel(result)
            raise
        return result
    finally:
        progress.stop()


def _cancel(result: beam.runners.runner.PipelineResult) -> None:
    """Cancel a submitted job (a portable runner's: the local runner has finished or
    failed by the time ``pipeline.run()`` returns), so that a signal stops its writes."""
    try:
        result.cancel()
        _LOG.info("cancelled the job")
    except Exception as error:  # noqa: BLE001 - the signal's own exit matters more
        _LOG.warning("could not cancel the job (%s): stop it on its cluster",
                     " ".join(str(error).split()))


if __name__ == "__main__":
    sys.exit(run())
