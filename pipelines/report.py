"""The run report: what a scale-up planned, wrote and measured, for people and schedulers.

Counts come from the Beam metrics the runner reported (``pipelines.beam_job``) and are
checked against the plan and against what the database holds (``in_database``); a run
whose counts disagree with its plan has ``errors`` and is not a success.

Schedulers read the report as JSON (``--json``, ``--report``); people read
``render_summary``'s table of it, which shows the keys it knows and, whatever else the
report carries, its ``dead_letters`` and every one of its ``errors``.
"""

from __future__ import annotations

import resource
from typing import Any, Dict, List, Optional

from pipelines.cli import duration_text, format_pairs, format_table
from pipelines.options import ScaleUpConfig
from pipelines.plan import TemplatePlan
from transforms.model import Metric

#: The status of a dry run's report: planned, nothing written.
PLANNED = "planned"


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def dry_run_report(config: ScaleUpConfig, plan: TemplatePlan, batch_size: int) -> Dict[str, Any]:
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


def run_report(config: ScaleUpConfig, plan: TemplatePlan, runner: str, metrics: Dict[str, Any],
            in_database: Dict[str, Dict[str, int]], created_indexes: List[str],
            batch_size: int, duration: float,
            pipeline_seconds: float, memory: Dict[str, float]) -> Dict[str, Any]:
    counters, distributions = metrics["counters"], metrics["distributions"]
    # A runner that reports no metrics at all (a detached Flink job) must not make a
    # correct run look failed: the counts then come from the database.
    metrics_source = "beam" if counters else "database"
    if counters:
        nodes_written = counters.get(Metric.NODES_WRITTEN, 0)
        relationships_written = counters.get(Metric.RELATIONSHIPS_WRITTEN, 0)
    else:
        nodes_written = sum(in_database["nodes"].values())
        relationships_written = sum(in_database["relationships"].values())
    latency = distributions.get(Metric.WRITE_LATENCY_MS, {})
    errors = []
    if counters.get(Metric.DEAD_LETTERS):
        errors.append(f"{counters[Metric.DEAD_LETTERS]} records could not be written (see the log)")
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
            "count": counters.get(Metric.BATCHES_WRITTEN, 0),
            "batch_size": batch_size,
            "size": distributions.get(Metric.BATCH_SIZE),
            "max_concurrent_writes": config.max_concurrent_writes,
            "observed_concurrency_max": distributions.get(Metric.WRITE_CONCURRENCY, {}).get("max"),
        },
        "neo4j": {
            "write_transactions": latency.get("count", 0),
            "write_time_s": round(latency.get("sum", 0) / 1000.0, 3),
            "indexes_created": created_indexes,
        },
        "retries": counters.get(Metric.WRITE_RETRIES, 0),
        "dead_letters": counters.get(Metric.DEAD_LETTERS, 0),
        "errors": errors,
    }


def _count_text(value: Any) -> str:
    """A count as people read it, whatever its shape: 12 → ``12``; {"node": 3} →
    ``node 3``; a list → its length."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(f"{key} {_count_text(count)}" for key, count in value.items()) or "0"
    if isinstance(value, (list, tuple)):
        return f"{len(value):,}"
    return str(value)


def _next_steps(report: Dict[str, Any], resume_command: Optional[str]) -> str:
    operation_id = report.get("operation_id")
    rollback = f"python -m pipelines.rollback --operation-id {operation_id}"
    status = report.get("status")
    if status == PLANNED:
        return "run it: the same command without --dry-run"
    if status == "succeeded":
        return (f"check it: python -m pipelines.validate --operation-id {operation_id}\n"
                f"undo it:  {rollback}")
    if status == "rolled_back":
        return "nothing of it is left; start a new operation (leave out --operation-id)"
    resume = resume_command or f"the same command with --operation-id {operation_id}"
    return f"resume it: {resume}\nundo it:   {rollback}"


def render_summary(report: Dict[str, Any], resume_command: Optional[str] = None) -> str:
    """The report as a short table for people: operation, status, nodes and
    relationships by phase, time, rates, memory, retries, dead letters, errors and what
    to do next (``resume_command``: the command line that resumes the operation)."""
    parameters = report.get("parameters") or {}
    size = (f"scale factor {parameters['scale_factor']:g}" if parameters.get("scale_factor")
            else f"target count {parameters.get('target_count')}")
    head = [("operation", f"{report.get('operation_id')} (tenant {report.get('tenant_id')}, "
                          f"{size})"),
            ("status", report.get("status"))]
    expected = report.get("expected") or {}
    if report.get("status") == PLANNED:
        rows = [*head,
                ("templates", _count_text(report.get("templates"))),
                ("would write", f"{_count_text(expected.get('nodes'))} nodes, "
                                f"{_count_text(expected.get('relationships'))} relationships"),
                ("batches", f"at least {_count_text(report.get('batches_at_least'))} of up to "
                            f"{_count_text(report.get('batch_size'))} rows, "
                            f"{report.get('max_concurrent_writes')} concurrent writes"),
                ("next", _next_steps(report, None))]
        return format_pairs(rows)
    written = report.get("written") or {}
    in_database = report.get("in_database") or {}
    throughput = report.get("throughput") or {}
    phases = format_table(
        ("phase", "expected", "written", "in database", "per second"),
        [(phase, expected.get(phase), written.get(phase),
          sum((in_database.get(phase) or {}).values()), throughput.get(f"{phase}_per_s"))
         for phase in ("nodes", "relationships")])
    memory = report.get("memory") or {}
    rows = [("wall time", f"{duration_text(report.get('duration_s') or 0)} (pipeline "
                          f"{duration_text(report.get('pipeline_s') or 0)}, runner "
                          f"{report.get('runner')})"),
            ("peak memory", f"{memory.get('peak_mb', 0):,.0f} MB"),
            ("retries", f"{_count_text(report.get('retries', 0))} transient errors (deadlocks) "
                        "retried"),
            ("dead letters", _count_text(report.get("dead_letters", 0)))]
    if report.get("rolled_back"):
        deleted = report["rolled_back"]
        rows.append(("rolled back", f"{_count_text(deleted.get('nodes_deleted'))} nodes and "
                                    f"{_count_text(deleted.get('relationships_deleted'))} "
                                    "relationships deleted"))
    if report.get("errors"):
        rows.append(("errors", "\n".join(str(error) for error in report["errors"])))
    rows.append(("next", _next_steps(report, resume_command)))
    lines = format_pairs([*head, *rows]).split("\n")  # one alignment for both blocks
    return "\n".join([*lines[:len(head)], "", phases, "", *lines[len(head):]])
