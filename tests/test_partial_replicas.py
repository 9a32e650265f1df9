"""Partial replicas are whole subgraphs (non-integer factors), against a real Neo4j.

The demo tenant with a second tenant beside it, scaled by 1.37, 2.5 and 3.5 with
parts small enough that components are sliced (their relationships across slices are
links); and a hand-made tenant whose ids are random hashes, with a component that
straddles the id order. In each: no synthetic node linked to a real resource of the
tenant, exact counts from the rule computed independently, whole components in the
partial replica with at most one split, validate's invariants, and a re-run that
converges.
"""

import hashlib

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

TENANT, OTHER_TENANT = "partial-tenant", "partial-beside"
FACTORS = {"x1.37": 1.37, "x2.5": 2.5, "x3.5": 3.5}
HASHED = "hashed-tenant"

LINKED_TO_REAL = """
MATCH (s:Resource {scale_operation_id: $op})--(x:Resource)
WHERE x.tenant_id = $tenant AND NOT x:Original AND coalesce(x.synthetic, false) = false
RETURN count(*)
"""


@pytest.fixture(scope="module")
def scaled(neo4j_connection, neo4j_driver, clear_neo4j, tmp_path_factory):
    return scale_beside_another(neo4j_connection, neo4j_driver, clear_neo4j,
                                tmp_path_factory.mktemp("partial"),
                                DemoTenantSpec(TENANT, resources=300, seed=21),
                                DemoTenantSpec(OTHER_TENANT, resources=100, seed=22), FACTORS,
                                "--batch-size", "60", "--max-concurrent-writes", "3")


@pytest.mark.parametrize("name", FACTORS)
def test_no_synthetic_node_is_linked_to_a_real_resource_of_the_tenant(scaled, neo4j_driver, name):
    assert scalar(neo4j_driver, LINKED_TO_REAL, op=f"op-{name}", tenant=TENANT) == 0


@pytest.mark.parametrize("name", FACTORS)
def test_counts_are_exact_by_the_rule(scaled, neo4j_driver, name):
    rule = component_rule(neo4j_driver, TENANT, FACTORS[name])
    per_template = dict(neo4j_driver.execute_query(
        "MATCH (n:Resource {scale_operation_id: $op}) RETURN n.template_source_id, count(*)",
        op=f"op-{name}").records)
    assert per_template == {template_id: n for (template_id, _), n in rule["copies"].items() if n}
    assert sum(per_template.values()) == round(300 * (FACTORS[name] - 1))
    report = scaled["reports"][name]
    assert report["components"]["relationships_left_out"] == rule["left_out"]
    assert report["written"]["nodes"] == report["expected"]["nodes"]
    assert report["written"]["relationships"] == report["expected"]["relationships"]


@pytest.mark.parametrize("name", FACTORS)
def test_the_partial_replica_takes_whole_components_and_splits_at_most_one(scaled, neo4j_driver,
                                                                          name):
    rule = component_rule(neo4j_driver, TENANT, FACTORS[name])
    base = int(FACTORS[name] - 1)
    partial = set(record[0] for record in neo4j_driver.execute_query(
        "MATCH (n:Resource {scale_operation_id: $op, scale_replica: $replica}) "
        "RETURN n.template_source_id", op=f"op-{name}", replica=base).records)
    assert partial, "a non-integer factor has a partial replica"
    cut = [component for component in rule["components"]
           if 0 < len(partial & set(component)) < len(component)]
    assert len(cut) <= 1
    report = scaled["reports"][name]
    assert report["components"]["split"] == len(cut)
    assert report["components"]["in_partial_replica"] == sum(
        1 for component in rule["components"] if partial & set(component))


@pytest.mark.parametrize("name", FACTORS)
def test_every_invariant_holds_left_out_relationships_only_in_the_split_component(
        scaled, neo4j_driver, name):
    result = validate_operation(neo4j_driver, "neo4j", f"op-{name}", page_size=300)
    assert result.ok, result.to_dict()
    assert result.nodes_checked == scaled["reports"][name]["expected"]["nodes"]


def test_parts_were_small_enough_to_slice_components(scaled):
    # Components of the demo tenant reach 40 resources (~200 rows): batches of 60 rows
    # cut them, so links between slices were written and checked above.
    report = scaled["reports"]["x3.5"]
    assert report["components"]["largest"] * 2 > 60
    assert report["batches"]["size"]["max"] <= 60


def test_rerunning_converges(scaled, neo4j_driver):
    before = operation_fingerprint(neo4j_driver, "op-x2.5")
    code, report = run_scale_up(scaled["tmp_path"], "--tenant-id", TENANT, "--scale-factor", "2.5",
                                "--operation-id", "op-x2.5", "--batch-size", "60")
    assert code == 0 and report["written"] == {"nodes": 0, "relationships": 0}
    assert operation_fingerprint(neo4j_driver, "op-x2.5") == before


def test_nothing_outside_the_operations_changed(scaled, neo4j_driver):
    assert fingerprint(neo4j_driver) == scaled["before"]


# --------------------------------------------------------------------------- hashed ids


def hashed_id(prefix, i):
    return f"{prefix}-{hashlib.sha1(f'{prefix}{i}'.encode()).hexdigest()[:16]}"


@pytest.fixture(scope="module")
def hashed(neo4j_driver, clear_neo4j, tmp_path_factory):
    """40 templates with hash ids; a chain of 8 of them spread over the whole id order
    (every 5th in id order); the rest alone; all in one region, shared."""
    clear_neo4j()
    ids = sorted(hashed_id("res", i) for i in range(40))
    chain = ids[::5]
    neo4j_driver.execute_query(
        "CREATE (region:Region {id: 'westeurope'}) WITH region "
        "UNWIND $ids AS id CREATE (r:Resource {id: id, name: id, tenant_id: $tenant, type: 'T'})"
        "-[:LOCATED_IN]->(region)", ids=ids, tenant=HASHED)
    neo4j_driver.execute_query(
        "UNWIND range(0, size($chain) - 2) AS i MATCH (a:Resource {id: $chain[i]}), "
        "(b:Resource {id: $chain[i + 1]}) CREATE (a)-[:DEPENDS_ON {hop: i}]->(b)", chain=chain)
    before = fingerprint(neo4j_driver)
    tmp_path = tmp_path_factory.mktemp("hashed")
    reports = {}
    for factor in (1.2, 1.35, 1.6):  # 8, 14, 24 extra copies
        code, report = run_scale_up(tmp_path, "--tenant-id", HASHED, "--scale-factor", str(factor),
                                    "--operation-id", f"hashed-{factor}")
        assert code == 0, report
        reports[factor] = report
    return {"chain": chain, "reports": reports, "before": before}


@pytest.mark.parametrize("factor", (1.2, 1.35, 1.6))
def test_hashed_ids_a_component_straddling_the_id_order_is_copied_whole_or_is_the_split_one(
        hashed, neo4j_driver, factor):
    operation_id = f"hashed-{factor}"
    copied = {record[0] for record in neo4j_driver.execute_query(
        "MATCH (n:Resource {scale_operation_id: $op}) RETURN n.template_source_id",
        op=operation_id).records}
    rule = component_rule(neo4j_driver, HASHED, factor)
    assert copied == {template_id for (template_id, _), n in rule["copies"].items() if n}
    chain = hashed["chain"]
    chain_copied = copied & set(chain)
    report = hashed["reports"][factor]
    if 0 < len(chain_copied) < len(chain):
        assert report["components"]["split"] == 1 and rule["left_out"] > 0
    else:
        assert rule["left_out"] == 0
    assert report["components"]["relationships_left_out"] == rule["left_out"]
    assert scalar(neo4j_driver, LINKED_TO_REAL, op=operation_id, tenant=HASHED) == 0
    # The chain's copies link only to each other: one hop for each hop whose ends both
    # have a copy.
    hops = [record[0] for record in neo4j_driver.execute_query(
        "MATCH (a:Resource {scale_operation_id: $op})-[r:DEPENDS_ON]-(b) "
        "WHERE startNode(r) = a RETURN b.scale_operation_id = $op AS to_copy",
        op=operation_id).records]
    assert all(hops)
    assert len(hops) == sum(1 for a, b in zip(chain, chain[1:])
                            if a in chain_copied and b in chain_copied)
    assert validate_operation(neo4j_driver, "neo4j", operation_id).ok
    assert fingerprint(neo4j_driver) == hashed["before"]
