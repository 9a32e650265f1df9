"""The run report's arithmetic, without Neo4j."""

from pipelines.options import parse_arguments
from pipelines.plan import TemplatePlan
from pipelines.report import run_report
from transforms.model import CopyRule, TemplateSelection


def plan():
    return TemplatePlan(
        selection=TemplateSelection("t"), copy_rule=CopyRule(1, None), template_count=10,
        new_node_count=10, templates_by_type={"vm": 10}, new_nodes_by_type={"vm": 10},
        template_relationships_by_type={"USES": 4}, new_relationships_by_type={"USES": 4},
        chunks=(("a", 10),))


def report(counters, in_database):
    config, _, _ = parse_arguments(["--tenant-id", "t", "--scale-factor", "2",
                                    "--operation-id", "op"])
    return run_report(config, plan(), "FnApiRunner",
                      {"counters": counters, "distributions": {}}, in_database, [], 100,
                      duration=2.0, pipeline_seconds=1.0,
                      memory={"start_mb": 1, "end_mb": 2, "peak_mb": 3})


IN_DATABASE = {"nodes": {"vm": 10}, "relationships": {"USES": 4}}


def test_counts_and_throughput_come_from_the_metrics():
    r = report({"nodes_written": 10, "relationships_written": 4}, IN_DATABASE)
    assert r["errors"] == [] and r["written_source"] == "beam"
    assert r["throughput"] == {"nodes_per_s": 10.0, "relationships_per_s": 4.0}


def test_metrics_that_disagree_with_the_plan_are_errors():
    r = report({"nodes_written": 9, "relationships_written": 4, "dead_letters": 1}, IN_DATABASE)
    assert "wrote 9 nodes, expected 10" in r["errors"]
    assert any("could not be written" in error for error in r["errors"])


def test_a_runner_without_metrics_falls_back_to_the_database():
    r = report({}, IN_DATABASE)
    assert r["written"] == {"nodes": 10, "relationships": 4}
    assert r["written_source"] == "database" and r["errors"] == []
    assert report({}, {"nodes": {"vm": 3}, "relationships": {}})["errors"]
