"""A copy never overwrites a node it did not create, and rolling the operation back never
deletes that node: end to end, against a real Neo4j."""

from pipelines.operation.rollback import rollback_operation
from tests.support import fingerprint, operation_counts, run_scale_up, scalar
from transforms.replicate import synthetic_id

TENANT, OTHER = "overwrite-tenant", "overwrite-other"
OPERATION = "op-overwrite"
FOREIGN = {"tenant_id": OTHER, "name": "not yours", "type": "T", "keep": [1, 2, 3]}


def test_an_existing_node_with_a_copys_id_is_left_alone_and_named(neo4j_graph, neo4j_driver,
                                                                   tmp_path, capsys):
    neo4j_driver.execute_query(
        "CREATE (region:Region {id: 'westeurope'}) WITH region "
        "UNWIND range(1, 6) AS i "
        "CREATE (r:Resource {id: 't-' + i, name: 'r' + i, tenant_id: $t, type: 'T'})"
        "-[:LOCATED_IN]->(region)", t=TENANT)
    # Another tenant's node whose id happens to be the id replica 0 of t-3 will get,
    # linked to something of its own.
    taken = synthetic_id(OPERATION, "t-3", 0)
    neo4j_driver.execute_query(
        "CREATE (n:Resource {id: $id})-[:USES]->(:Resource {id: 'its-neighbour', tenant_id: $o}) "
        "SET n += $props", id=taken, props=FOREIGN, o=OTHER)
    before = fingerprint(neo4j_driver)

    code, report = run_scale_up(tmp_path, "--tenant-id", TENANT, "--scale-factor", "3",
                                "--operation-id", OPERATION)
    assert code == 1 and report["status"] == "failed"
    assert report["dead_letters"] == 2  # the node, and its relationship to the region
    assert any(taken in line and "already exists" in line for line in capsys.readouterr().err.splitlines())
    # Everything else was copied; the foreign node and its relationship are as they were.
    assert operation_counts(neo4j_driver, OPERATION) == {"nodes": 11, "relationships": 11}
    assert fingerprint(neo4j_driver) == before
    assert scalar(neo4j_driver, "MATCH (n:Resource {id: $id}) RETURN count(n)", id=taken) == 1

    deleted = rollback_operation(neo4j_driver, neo4j_graph.database, OPERATION)
    assert (deleted["nodes_deleted"], deleted["relationships_deleted"]) == (11, 11)
    assert fingerprint(neo4j_driver) == before
    foreign = neo4j_driver.execute_query(
        "MATCH (n:Resource {id: $id})-[:USES]->(m) RETURN properties(n) AS props, m.id AS m",
        id=taken).records
    assert [(r["props"], r["m"]) for r in foreign] == [({"id": taken, **FOREIGN}, "its-neighbour")]
