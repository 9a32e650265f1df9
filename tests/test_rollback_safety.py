"""Rollback deletes only what the operation created (issue 13, item 3), against a real
Neo4j: its synthetic nodes and the relationships that touch them, never a relationship
between nodes it did not create, whatever properties that relationship carries.

The graph: a demo tenant scaled by one operation (and, for the tenant-wide rollback,
a second one), then data no scale-up writes but that carries the operation's id: a
relationship between two real resources, one between a real resource and a shared
node, and a real resource with the id as a property. The rollback runs as a process
(``python -m pipelines.rollback``); everything outside the operation's own nodes and
their relationships must be byte-for-byte what it was.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Sequence, Tuple

import neo4j
import pytest

from pipelines.demo.load import load_demo_tenant
from pipelines.operation.validate import validate_operation
from tests.support import CliRun, operation_record, run_scale_up, scalar
from transforms.demo import DemoTenantSpec

TENANT = "rollback-safety"


def stray_properties(operation_id: str) -> Dict[str, Any]:
    """What a stray relationship carries: the marks of a copy, on a relationship no
    scale-up wrote."""
    return {"scale_operation_id": operation_id, "template_source_rel_id": "not-a-copy"}


def created_by(driver: neo4j.Driver, operation_ids: Sequence[str]) -> Tuple[int, int]:
    """(nodes, relationships) an operation created: its synthetic nodes and every
    relationship that touches one of them, counted directly."""
    nodes = scalar(driver, "MATCH (n:Resource) WHERE n.synthetic = true "
                           "AND n.scale_operation_id IN $ops RETURN count(n)", ops=list(operation_ids))
    relationships = scalar(driver, "MATCH (n:Resource)-[r]-() WHERE n.synthetic = true "
                                   "AND n.scale_operation_id IN $ops RETURN count(DISTINCT r)",
                           ops=list(operation_ids))
    return nodes, relationships


def outside(driver: neo4j.Driver, operation_ids: Sequence[str]) -> Tuple[int, int, str]:
    """(nodes, relationships, sorted JSON) of everything but what the operations created
    (``created_by``), their records and ledgers: what a rollback must leave exactly as it
    was."""
    mine = "(x.synthetic = true AND x.scale_operation_id IN $ops)"
    nodes = driver.execute_query(
        f"MATCH (x) WHERE NOT {mine} AND NOT (x:ScaleOperation AND x.id IN $ops) "
        "AND NOT (x:ScaleBatch AND x.operation_id IN $ops) "
        "RETURN elementId(x) AS id, labels(x) AS labels, properties(x) AS props",
        ops=list(operation_ids)).records
    relationships = driver.execute_query(
        f"MATCH (a)-[r]->(b) WHERE NOT {mine.replace('x.', 'a.')} AND NOT {mine.replace('x.', 'b.')} "
        "RETURN elementId(r) AS id, type(r) AS type, elementId(a) AS a, elementId(b) AS b, "
        "properties(r) AS props", ops=list(operation_ids)).records
    rows = sorted(json.dumps(r.data(), sort_keys=True, default=str) for r in [*nodes, *relationships])
    return len(nodes), len(relationships), json.dumps(rows)


def add_strays(driver: neo4j.Driver, operation_id: str, skip: int) -> List[str]:
    """Data that carries the operation's id but that no scale-up wrote, on the real
    resources from the ``skip``-th in id order: a relationship between two of them, one
    from the first to the tenant's shared ``Tenant`` node, and the id as a property of a
    third. Returns their element ids (relationships first)."""
    return driver.execute_query(
        "MATCH (x:Resource {tenant_id: $tenant}) WHERE NOT x:Original AND x.synthetic IS NULL "
        "WITH x ORDER BY x.id SKIP $skip LIMIT 3 WITH collect(x) AS real "
        "WITH real[0] AS a, real[1] AS b, real[2] AS c MATCH (t:Tenant {id: $tenant}) "
        "CREATE (a)-[r1:DEPENDS_ON]->(b), (a)-[r2:MONITORS]->(t) "
        "SET r1 = $props, r2 = $props, c.scale_operation_id = $op "
        "RETURN [elementId(r1), elementId(r2), elementId(c)]",
        tenant=TENANT, props=stray_properties(operation_id), op=operation_id,
        skip=skip).records[0][0]


def still_there(driver: neo4j.Driver, element_ids: Sequence[str]) -> Dict[str, Any]:
    """The properties of each of ``element_ids`` that still exists (node or relationship)."""
    found = driver.execute_query(
        "UNWIND $ids AS id OPTIONAL MATCH (n) WHERE elementId(n) = id "
        "OPTIONAL MATCH ()-[r]->() WHERE elementId(r) = id "
        "RETURN id, properties(coalesce(n, r)) AS props", ids=list(element_ids)).records
    return {record["id"]: record["props"] for record in found if record["props"] is not None}


@pytest.fixture(scope="module")
def tenant(neo4j_connection, clear_neo4j, tmp_path_factory):
    clear_neo4j()
    load_demo_tenant(neo4j_connection, DemoTenantSpec(TENANT, resources=60, seed=31))
    return tmp_path_factory.mktemp("rollback-safety")


def scale(tmp_path, operation_id: str) -> Dict[str, Any]:
    code, report = run_scale_up(tmp_path, "--tenant-id", TENANT, "--scale-factor", "2",
                                "--operation-id", operation_id, "--max-concurrent-writes", "2")
    assert code == 0, report
    return report


def rollback(tmp_path, *args: str) -> Dict[str, Any]:
    command = CliRun(tmp_path, [*args, "--batch-size", "13", "--json"],
                     module="pipelines.rollback", name="rollback")
    assert command.wait() == 0, command.stderr_tail()
    return command.report()


def test_rollback_of_an_operation_keeps_relationships_it_did_not_create(tenant, neo4j_driver,
                                                                      tmp_path):
    operation_id = "op-safe"
    report = scale(tenant, operation_id)
    strays = add_strays(neo4j_driver, operation_id, skip=0)
    nodes, relationships = created_by(neo4j_driver, [operation_id])
    assert (nodes, relationships) == (report["written"]["nodes"],
                                      report["written"]["relationships"])
    # validate reports the marked relationships that touch none of the operation's nodes;
    # rollback leaves them.
    checks = {c.name: c for c in validate_operation(neo4j_driver, "neo4j", operation_id).checks}
    assert checks["no_orphan_relationships"].problems == 2
    kept = still_there(neo4j_driver, strays)
    before = outside(neo4j_driver, [operation_id])

    result = rollback(tmp_path, "--operation-id", operation_id)

    assert (result["nodes_deleted"], result["relationships_deleted"]) == (nodes, relationships)
    assert created_by(neo4j_driver, [operation_id]) == (0, 0)
    assert still_there(neo4j_driver, strays) == kept and len(kept) == 3
    assert outside(neo4j_driver, [operation_id]) == before
    record = operation_record(neo4j_driver, operation_id)
    assert record["status"] == "rolled_back"
    assert (record["rolled_back_nodes"], record["rolled_back_relationships"]) == (nodes,
                                                                                relationships)


def test_tenant_wide_rollback_keeps_relationships_it_did_not_create(tenant, neo4j_driver,
                                                                   tmp_path):
    operations = ["op-safe-a", "op-safe-b"]
    strays = []
    for number, operation_id in enumerate(operations, 1):
        scale(tenant, operation_id)
        strays += add_strays(neo4j_driver, operation_id, skip=3 * number)
    per_operation = {operation_id: created_by(neo4j_driver, [operation_id])
                     for operation_id in operations}
    nodes, relationships = created_by(neo4j_driver, operations)
    kept = still_there(neo4j_driver, strays)
    before = outside(neo4j_driver, operations)

    result = rollback(tmp_path, "--tenant-id", TENANT, "--all-synthetic", "--yes")

    assert (result["nodes_deleted"], result["relationships_deleted"]) == (nodes, relationships)
    assert {row["operation_id"]: (row["nodes_deleted"], row["relationships_deleted"])
            for row in result["operations"]} == per_operation
    assert created_by(neo4j_driver, operations) == (0, 0)
    assert still_there(neo4j_driver, strays) == kept and len(kept) == 6
    assert outside(neo4j_driver, operations) == before
