"""The run report's arithmetic, without Neo4j."""

import dataclasses

from pipelines.options import parse_arguments
from pipelines.plan import Problem
from pipelines.report import dry_run_report, run_report
from tests.support import made_up_plan


def report(counters, in_database, plan=None):
    config, _, _ = parse_arguments(["--tenant-id", "t", "--scale-factor", "2",
                                    "--operation-id", "op"])
    return run_report(config, plan or made_up_plan(), "FnApiRunner",
                      {"counters": counters, "distributions": {}}, in_database, [],
                      duration=2.0, plan_seconds=0.5, pipeline_seconds=1.0,
                      memory={"start_mb": 1, "end_mb": 2, "peak_mb": 3})


IN_DATABASE = {"nodes": {"vm": 10}, "relationships": {"USES": 4}}


def test_counts_and_throughput_come_from_the_metrics():
    r = report({"nodes_written": 10, "relationships_written": 4}, IN_DATABASE)
    assert r["errors"] == [] and r["written_source"] == "beam"
    assert r["throughput"] == {"nodes_per_s": 10.0, "relationships_per_s": 4.0}


def test_a_resumed_run_that_wrote_only_the_rest_is_complete():
    r = report({"nodes_written": 3, "relationships_written": 1, "batches_already_written": 1},
               IN_DATABASE)
    assert r["errors"] == [] and r["written"] == {"nodes": 3, "relationships": 1}
    assert r["batches"]["already_written"] == 1


def test_a_database_that_disagrees_with_the_plan_and_dead_letters_are_errors():
    r = report({"nodes_written": 9, "relationships_written": 4, "dead_letters": 1},
               {"nodes": {"vm": 9}, "relationships": {"USES": 4}})
    assert "9 nodes in the database, expected 10" in r["errors"]
    assert any("could not be written" in error for error in r["errors"])
    assert r["dead_letters"] == 1


def test_a_runner_without_metrics_falls_back_to_the_database():
    r = report({}, IN_DATABASE)
    assert r["written"] == {"nodes": 10, "relationships": 4}
    assert r["written_source"] == "database" and r["errors"] == []
    assert report({}, {"nodes": {"vm": 3}, "relationships": {}})["errors"]


def test_templates_the_plan_excluded_are_dead_letters_with_their_reason():
    plan = dataclasses.replace(made_up_plan(), template_problems=(
        Problem("no string id", 2, ("4:x:1 (vm)", "4:x:2 (vm)")),))
    r = report({"nodes_written": 10, "relationships_written": 4}, IN_DATABASE, plan)
    assert r["dead_letters"] == 2
    assert r["not_copied"]["templates"] == [{"reason": "no string id", "count": 2,
                                             "examples": ["4:x:1 (vm)", "4:x:2 (vm)"]}]
    assert any("2 templates not copied: no string id" in error for error in r["errors"])


def test_the_dry_run_counts_transactions_per_part_and_replica():
    config, _, _ = parse_arguments(["--tenant-id", "t", "--scale-factor", "2"])
    r = dry_run_report(config, made_up_plan(base_copies=3, parts=4))
    assert r["status"] == "planned" and r["write_transactions"] == 12 and r["parts"] == 4
