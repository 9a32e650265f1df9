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
from pipelines.plan import ScalePlan
from transforms.model import Metric

#: The status of a dry run's report: planned, nothing written.
PLANNED = "planned"


def peak_rss_mb() -> float:
    """This process's own peak resident memory so far, in MB.

    Linux's ``VmHWM``: ``ru_maxrss`` would be wrong here, since it carries over the
    peak of the parent when a large process starts the scale-up (fork, then exec).
    Elsewhere ``ru_maxrss`` is the best there is.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _plan_report(config: ScaleUpConfig, plan: ScalePlan) -> Dict[str, Any]:
    """What a report says of the plan, dry run or not."""
    return {
        "operation_id": config.operation_id,
        "tenant_id": config.tenant_id,
        "parameters": config.parameters(),
        "templates": plan.template_count,
        "templates_by_type": plan.templates_by_type,
        "copies_per_template": {"base": plan.base_copies,
                                "templates_with_one_more": plan.templates_with_extra_copy},
        "components": plan.components.to_dict(),
        "expected": {"nodes": plan.new_node_count, "relationships": plan.new_relationship_count},
        "new_nodes_by_type": plan.new_nodes_by_type,
        "new_relationships_by_type": plan.new_relationships_by_type,
        "not_copied": {"templates": [p.to_dict() for p in plan.template_problems],
                       "relationships": [p.to_dict() for p in plan.relationship_problems]},
    }


def dry_run_report(config: ScaleUpConfig, plan: ScalePlan) -> Dict[str, Any]:
    """What the run would do; nothing has been written."""
    return {
        **_plan_report(config, plan),
        "status": PLANNED,
        "dry_run": True,
        "parts": len(plan.parts),
        "batch_size": plan.batch_size,
        "write_transactions": plan.base_copies * len(plan.parts)
                              + sum(1 for part in plan.parts if any(part.extra)),
        "max_concurrent_writes": config.max_concurrent_writes,
        "dead_letters": plan.dead_letters,
        "errors": plan_problems(plan),
    }


def plan_problems(plan: ScalePlan) -> List[str]:
    """One line for each kind of record the plan could not copy, with examples."""
    return [f"{p.count} {what} not copied: {p.reason} (e.g. {', '.join(p.examples)})"
            for what, problems in (("templates", plan.template_problems),
                                   ("template relationships", plan.relationship_problems))
            for p in problems]


def run_report(config: ScaleUpConfig, plan: ScalePlan, runner: str, metrics: Dict[str, Any],
               in_database: Dict[str, Dict[str, int]], created_indexes: List[str],
               duration: float, plan_seconds: float, pipeline_seconds: float,
               memory: Dict[str, float]) -> Dict[str, Any]:
    counters, distributions = metrics["counters"], metrics["distributions"]
    # A runner that reports no metrics at all (a detached Flink job) must not make a
    # correct run look failed: the counts then come from the database.
    metrics_source = "beam" if counters else "database"
    in_database_nodes = sum(in_database["nodes"].values())
    in_database_relationships = sum(in_database["relationships"].values())
    if counters:
        nodes_written = counters.get(Metric.NODES_WRITTEN, 0)
        relationships_written = counters.get(Metric.RELATIONSHIPS_WRITTEN, 0)
    else:
        nodes_written, relationships_written = in_database_nodes, in_database_relationships
    latency = distributions.get(Metric.WRITE_LATENCY_MS, {})
    write_dead_letters = counters.get(Metric.DEAD_LETTERS, 0)
    errors = plan_problems(plan)
    if write_dead_letters:
        errors.append(f"{write_dead_letters} records could not be written (see the log)")
    # What is in the database decides: a resumed run writes only what its earlier runs
    # did not (the rest was already written, batch by batch).
    if in_database_nodes != plan.new_node_count:
        errors.append(f"{in_database_nodes} nodes in the database, expected {plan.new_node_count}")
    if in_database_relationships != plan.new_relationship_count:
        errors.append(f"{in_database_relationships} relationships in the database, expected "
                      f"{plan.new_relationship_count}")
    return {
        **_plan_report(config, plan),
        "status": None,
        "runner": runner,
        "written": {"nodes": nodes_written, "relationships": relationships_written},
        "written_source": metrics_source,
        "in_database": in_database,
        "duration_s": round(duration, 3),
        "plan_s": round(plan_seconds, 3),
        "pipeline_s": round(pipeline_seconds, 3),
        "throughput": {
            "nodes_per_s": round(nodes_written / pipeline_seconds, 1),
            "relationships_per_s": round(relationships_written / pipeline_seconds, 1),
        },
        "memory": memory,
        "batches": {
            "count": counters.get(Metric.BATCHES_WRITTEN, 0),
            "already_written": counters.get(Metric.BATCHES_ALREADY_WRITTEN, 0),
            "parts": len(plan.parts),
            "batch_size": plan.batch_size,
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
        "dead_letters": plan.dead_letters + write_dead_letters,
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


def _components_text(report: Dict[str, Any]) -> str:
    components = report.get("components") or {}
    text = (f"{_count_text(components.get('count'))} (largest "
            f"{_count_text(components.get('largest'))} templates)")
    if components.get("in_partial_replica"):
        text += (f"; the partial replica copies {_count_text(components['in_partial_replica'])}"
                 f", {components.get('split', 0)} of them split, "
                 f"{_count_text(components.get('relationships_left_out', 0))} relationships left out")
    return text


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
                ("components", _components_text(report)),
                ("batches", f"{_count_text(report.get('write_transactions'))} transactions of up "
                            f"to {_count_text(report.get('batch_size'))} rows "
                            f"({_count_text(report.get('parts'))} parts), "
                            f"{report.get('max_concurrent_writes')} concurrent writes"),
                ("dead letters", _count_text(report.get("dead_letters", 0)))]
        if report.get("errors"):
            rows.append(("errors", "\n".join(str(error) for error in report["errors"])))
        rows.append(("next", _next_steps(report, None)))
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
    batches = report.get("batches") or {}
    rows = [("components", _components_text(report)),
            ("batches", f"{_count_text(batches.get('count', 0))} written, "
                        f"{_count_text(batches.get('already_written', 0))} already written "
                        "by an earlier run"),
            ("wall time", f"{duration_text(report.get('duration_s') or 0)} (pipeline "
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
