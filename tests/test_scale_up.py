"""The scale-up end to end against a real Neo4j: a generated tenant with a second one
beside it, scaled by 2, 3.5 and 8, every result checked in the database."""

import pytest

from pipelines.operation.validate import validate_operation
from tests.support import (
    component_rule,
    fingerprint,
    operation_fingerprint,
    run_scale_up,
    scalar,
    scale_beside_another,
)
from transforms.demo import DemoTenantSpec
from transforms.replicate import synthetic_id

def column(driver, query, **params):
    return [record[0] for record in driver.execute_query(query, **params).records]


TENANT, OTHER_TENANT = "tenant-under-test", "tenant-beside-it"
FACTORS = {"x2": 2.0, "x3.5": 3.5, "x8": 8.0}
VM = "Microsoft.Compute/virtualMachines"


def expected_copies(driver, tenant, factor, types=None):
    """Copies per template, from the rule computed independently (``component_rule``)."""
    return component_rule(driver, tenant, factor, types)["copies"]


@pytest.fixture(scope="module")
def scaled(neo4j_connection, neo4j_driver, clear_neo4j, tmp_path_factory):
    """Two demo tenants, scaled three times; what was there before, and each report."""
    return scale_beside_another(neo4j_connection, neo4j_driver, clear_neo4j,
                                tmp_path_factory.mktemp("reports"),
                                DemoTenantSpec(TENANT, resources=240, seed=11),
                                DemoTenantSpec(OTHER_TENANT, resources=80, seed=12), FACTORS,
                                "--batch-size", "97", "--max-concurrent-writes", "4")


@pytest.mark.parametrize("name", FACTORS)
def test_exact_node_counts_by_type(scaled, neo4j_driver, name):
    copies = expected_copies(neo4j_driver, TENANT, FACTORS[name])
    expected = {}
    for (_, resource_type), n in copies.items():
        expected[resource_type] = expected.get(resource_type, 0) + n
    actual = dict(neo4j_driver.execute_query(
        "MATCH (n:Resource {scale_operation_id: $op}) RETURN n.type, count(*)",
        op=f"op-{name}").records)
    assert actual == {t: n for t, n in expected.items() if n}
    assert sum(actual.values()) == round(len(copies) * (FACTORS[name] - 1))


@pytest.mark.parametrize("name", FACTORS)
def test_every_invariant_holds_over_all_synthetic_nodes(scaled, neo4j_driver, name):
    result = validate_operation(neo4j_driver, "neo4j", f"op-{name}", page_size=500)
    assert result.nodes_checked == scaled["reports"][name]["expected"]["nodes"]
    assert result.ok, result.to_dict()


@pytest.mark.parametrize("name", FACTORS)
def test_ids_are_the_deterministic_ones_and_unique(scaled, neo4j_driver, name):
    operation_id = f"op-{name}"
    expected = {synthetic_id(operation_id, template_id, replica)
                for (template_id, _), n in expected_copies(neo4j_driver, TENANT, FACTORS[name]).items()
                for replica in range(n)}
    ids = column(neo4j_driver, "MATCH (n:Resource {scale_operation_id: $op}) RETURN n.id",
                 op=operation_id)
    assert len(ids) == len(set(ids)) and set(ids) == expected


@pytest.mark.parametrize("name", FACTORS)
def test_metrics_and_report_equal_the_database(scaled, neo4j_driver, name):
    report = scaled["reports"][name]
    nodes = scalar(neo4j_driver, "MATCH (n:Resource {scale_operation_id: $op}) RETURN count(n)",
                   op=f"op-{name}")
    relationships = scalar(neo4j_driver, "MATCH ()-[r]->() WHERE r.scale_operation_id = $op "
                           "RETURN count(r)", op=f"op-{name}")
    assert report["status"] == "succeeded" and report["errors"] == []
    assert report["written"] == {"nodes": nodes, "relationships": relationships}
    assert sum(report["in_database"]["nodes"].values()) == nodes
    assert sum(report["in_database"]["relationships"].values()) == relationships
    assert relationships > nodes  # the demo tenant is linked: relationships were copied
    assert report["batches"]["count"] >= -(-(nodes + relationships) // 97)
    assert report["batches"]["size"]["max"] <= 97
    assert report["dead_letters"] == 0


def test_writes_were_really_concurrent_and_bounded(scaled):
    batches = scaled["reports"]["x8"]["batches"]
    assert 1 < batches["observed_concurrency_max"] <= 4


def test_nothing_that_existed_before_changed(scaled, neo4j_driver):
    assert fingerprint(neo4j_driver) == scaled["before"]


def test_rerunning_an_operation_changes_nothing(scaled, neo4j_driver):
    before = operation_fingerprint(neo4j_driver, "op-x3.5")
    first = scaled["reports"]["x3.5"]
    code, report = run_scale_up(scaled["tmp_path"], "--tenant-id", TENANT, "--scale-factor", "3.5",
                                "--operation-id", "op-x3.5", "--batch-size", "97")
    assert code == 0 and report["status"] == "succeeded"
    assert report["written"] == {"nodes": 0, "relationships": 0}
    assert report["batches"]["already_written"] == first["batches"]["count"]
    assert operation_fingerprint(neo4j_driver, "op-x3.5") == before
    assert fingerprint(neo4j_driver) == scaled["before"]


def test_resuming_with_another_batch_size_is_refused(scaled, neo4j_driver, capsys):
    before = operation_fingerprint(neo4j_driver, "op-x3.5")
    code, report = run_scale_up(scaled["tmp_path"], "--tenant-id", TENANT, "--scale-factor", "3.5",
                                "--operation-id", "op-x3.5", "--batch-size", "50")
    assert code == 2 and report is None
    assert "--batch-size changed since it started" in capsys.readouterr().err
    assert operation_fingerprint(neo4j_driver, "op-x3.5") == before


def test_type_filter_replicates_only_those_types(scaled, neo4j_driver):
    code, report = run_scale_up(scaled["tmp_path"], "--tenant-id", TENANT, "--scale-factor", "3",
                                "--resource-types", VM, "--operation-id", "op-vms")
    assert code == 0
    types = dict(neo4j_driver.execute_query(
        "MATCH (n:Resource {scale_operation_id: 'op-vms'}) RETURN n.type, count(*)").records)
    vms = len(expected_copies(neo4j_driver, TENANT, 3.0, [VM]))
    assert types == {VM: 2 * vms} and vms > 0
    assert validate_operation(neo4j_driver, "neo4j", "op-vms").ok


def test_unknown_tenant_is_bad_input_and_lists_the_tenants(scaled, neo4j_driver, capsys):
    before = fingerprint(neo4j_driver)
    code, report = run_scale_up(scaled["tmp_path"], "--tenant-id", "no-such-tenant", "--scale-factor", "2")
    assert code == 2 and report is None
    err = capsys.readouterr().err
    assert "no-such-tenant" in err and TENANT in err and OTHER_TENANT in err
    assert fingerprint(neo4j_driver) == before


@pytest.mark.parametrize("args, message", [
    (["--scale-factor", "1"], "--scale-factor must be a finite number > 1"),
    (["--scale-factor", "nan"], "--scale-factor must be a finite number > 1"),
    (["--scale-factor", "inf"], "--scale-factor must be a finite number > 1"),
    (["--scale-factor", "1e12"], "would create"),
    (["--scale-factor", "2", "--batch-size", "0"], "--batch-size"),
    (["--scale-factor", "2", "--max-concurrent-writes", "0"], "--max-concurrent-writes"),
    (["--scale-factor", "2", "--resource-types", "No.Such/type"], "type filter"),
])
def test_bad_arguments_exit_2_before_writing(scaled, neo4j_driver, capsys, args, message):
    before = fingerprint(neo4j_driver)
    operations = scalar(neo4j_driver, "MATCH (o:ScaleOperation) RETURN count(o)")
    code, report = run_scale_up(scaled["tmp_path"], "--tenant-id", TENANT, *args)
    assert code == 2 and report is None
    assert message in capsys.readouterr().err
    assert fingerprint(neo4j_driver) == before
    assert scalar(neo4j_driver, "MATCH (o:ScaleOperation) RETURN count(o)") == operations


def test_dry_run_prints_the_plan_and_writes_nothing(scaled, neo4j_driver):
    before = fingerprint(neo4j_driver)
    indexes = scalar(neo4j_driver, "SHOW INDEXES YIELD name RETURN count(name)")
    operations = scalar(neo4j_driver, "MATCH (o:ScaleOperation) RETURN count(o)")
    code, plan = run_scale_up(scaled["tmp_path"], "--tenant-id", TENANT, "--scale-factor", "8",
                              "--dry-run", "--operation-id", "op-dry")
    assert code == 0 and plan["status"] == "planned" and plan["dry_run"] is True
    assert plan["expected"] == scaled["reports"]["x8"]["expected"]
    assert sum(plan["new_nodes_by_type"].values()) == plan["expected"]["nodes"]
    assert plan["write_transactions"] >= 7 and plan["max_concurrent_writes"] == 5
    assert fingerprint(neo4j_driver) == before
    assert scalar(neo4j_driver, "MATCH (o:ScaleOperation) RETURN count(o)") == operations
    assert scalar(neo4j_driver, "SHOW INDEXES YIELD name RETURN count(name)") == indexes


def test_resuming_with_other_parameters_is_refused(scaled, neo4j_driver, capsys):
    before = operation_fingerprint(neo4j_driver, "op-x2")
    code, report = run_scale_up(scaled["tmp_path"], "--tenant-id", TENANT, "--scale-factor", "3",
                                "--operation-id", "op-x2")
    assert code == 2 and report is None
    assert "was started with scale_factor=2.0" in capsys.readouterr().err
    assert operation_fingerprint(neo4j_driver, "op-x2") == before
