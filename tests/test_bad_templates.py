"""Templates that cannot be copied are found by the plan, excluded with a reason, and
reported (counts, examples, exit code); nothing vanishes silently and nothing else is
lost. Against a real Neo4j."""

import pytest

from pipelines.operation.validate import validate_operation
from tests.support import fingerprint, operation_record, run_scale_up, scalar

TENANT = "bad-templates"


@pytest.fixture
def tenant(neo4j_graph, neo4j_driver):
    """12 good templates linked in pairs and to a shared region; two that share an id;
    one without id; one whose id is a number; one linked to a duplicate."""
    neo4j_driver.execute_query(
        "CREATE (region:Region {id: 'westeurope'}) WITH region "
        "UNWIND range(1, 12) AS i "
        "CREATE (r:Resource {id: 'good-' + i, name: 'good' + i, tenant_id: $t, type: 'T'})"
        "-[:LOCATED_IN]->(region)", t=TENANT)
    neo4j_driver.execute_query(
        "UNWIND range(1, 11, 2) AS i MATCH (a:Resource {id: 'good-' + i}), "
        "(b:Resource {id: 'good-' + (i + 1)}) CREATE (a)-[:DEPENDS_ON]->(b)")
    neo4j_driver.execute_query(
        "CREATE (:Resource {id: 'twin', name: 'first twin', tenant_id: $t, type: 'T'}), "
        "       (:Resource {id: 'twin', name: 'second twin', tenant_id: $t, type: 'T'}), "
        "       (:Resource {name: 'no id', tenant_id: $t, type: 'T'}), "
        "       (:Resource {id: 42, name: 'numeric id', tenant_id: $t, type: 'T'})", t=TENANT)
    neo4j_driver.execute_query(
        "MATCH (a:Resource {id: 'good-1'}), (b:Resource {id: 'twin', name: 'first twin'}) "
        "CREATE (a)-[:USES]->(b)")
    return fingerprint(neo4j_driver)


def test_bad_templates_are_excluded_reported_and_the_rest_is_copied(tenant, neo4j_driver,
                                                                     tmp_path, capsys):
    code, report = run_scale_up(tmp_path, "--tenant-id", TENANT, "--scale-factor", "3",
                                "--operation-id", "op-bad")
    err = capsys.readouterr().err
    assert code == 1 and report["status"] == "failed"  # not everything could be copied
    problems = {p["reason"]: p for p in report["not_copied"]["templates"]}
    assert problems["no string id"]["count"] == 2  # the one without and the numeric one
    assert problems["an id that several resources of the selection share"]["count"] == 2
    assert problems["an id that several resources of the selection share"]["examples"] == ["twin (x2)"]
    relationships = {p["reason"]: p for p in report["not_copied"]["relationships"]}
    assert relationships["the other end is a resource of the selection that is not copied"]["count"] == 1
    assert report["dead_letters"] == 5
    assert report["templates"] == 12 and report["expected"]["nodes"] == 24
    assert any("2 templates not copied: no string id" in e for e in report["errors"])
    assert "not copied" in err
    # The 12 good templates were copied exactly, their relationships too (not good-1→twin).
    assert scalar(neo4j_driver, "MATCH (n:Resource {scale_operation_id: 'op-bad'}) RETURN count(n)") == 24
    assert scalar(neo4j_driver, "MATCH (n:Resource {scale_operation_id: 'op-bad'}) "
                                "WHERE NOT n.template_source_id STARTS WITH 'good-' RETURN count(n)") == 0
    assert scalar(neo4j_driver, "MATCH ()-[r]->() WHERE r.scale_operation_id = 'op-bad' "
                                "RETURN count(r)") == 2 * (12 + 6)
    assert scalar(neo4j_driver, "MATCH (:Resource {scale_operation_id: 'op-bad'})--(t:Resource) "
                                "WHERE t.id = 'twin' RETURN count(*)") == 0
    assert operation_record(neo4j_driver, "op-bad")["status"] == "failed"
    assert validate_operation(neo4j_driver, "neo4j", "op-bad").ok
    assert fingerprint(neo4j_driver) == tenant


def test_the_dry_run_reports_them_too(tenant, neo4j_driver, tmp_path):
    code, plan = run_scale_up(tmp_path, "--tenant-id", TENANT, "--scale-factor", "3", "--dry-run")
    assert code == 0 and plan["status"] == "planned"
    assert plan["dead_letters"] == 5 and len(plan["errors"]) == 3
    assert fingerprint(neo4j_driver) == tenant


def test_a_tenant_of_bad_templates_only_is_bad_input(neo4j_graph, neo4j_driver, tmp_path, capsys):
    neo4j_driver.execute_query("CREATE (:Resource {name: 'a', tenant_id: 'only-bad', type: 'T'}), "
                               "(:Resource {id: ['x'], tenant_id: 'only-bad', type: 'T'})")
    code, report = run_scale_up(tmp_path, "--tenant-id", "only-bad", "--scale-factor", "2")
    assert code == 2 and report is None
    assert "none of the 2 selected resources can be copied: 2 with no string id" in capsys.readouterr().err
