"""The run report: what a scale-up planned, wrote and measured, for people and schedulers.

Counts come from the Beam metrics the runner reported (``pipelines.beam_job``) and are
checked against the plan and against what the database holds (``in_database``); a run
whose counts disagree with its plan has ``errors`` and is not a success.
"""

from __future__ import annotations

import resource
from typing import Any, Dict, List

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
