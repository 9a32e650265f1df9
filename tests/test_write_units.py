"""The scale-up's writes against a real Neo4j: a copy unit is written exactly once,
even when sent again or raced; nothing that exists is overwritten; what Neo4j refuses
is isolated and dead-lettered, the rest written."""

import threading

import pytest

from tests.support import scalar
from transforms.replicate import UnitRows
from transforms.schema import ensure_schema
from transforms.write import CopyUnits, _Transactions

OP = "op-units"


def node(node_id, **props):
    return {"labels": ["Resource", "VirtualMachine"],
            "props": {"id": node_id, "scale_operation_id": OP, "synthetic": True, **props}}


def unit(key="u/0/0", nodes=("a", "b", "c"), shared=None, **extra):
    """Nodes chained a→b→c by USES; each node -[:LOCATED_IN]-> ``shared`` (an element id)."""
    rows = UnitRows(key, nodes=[node(n, **extra.get(n, {})) for n in nodes])
    rows.internal = [{"s": i, "e": i + 1, "type": "USES", "props": {"scale_operation_id": OP}}
                     for i in range(len(nodes) - 1)]
    if shared:
        rows.outgoing = [{"own": i, "other": shared, "type": "LOCATED_IN",
                          "props": {"scale_operation_id": OP}} for i in range(len(nodes))]
    return rows


def write(connection, driver, rows):
    (outcome,) = CopyUnits(lambda unit_rows: unit_rows, OP).write(
        _Transactions(driver, connection.database), rows)
    return outcome


def counts(driver):
    return (scalar(driver, "MATCH (n:Resource {scale_operation_id: $op}) RETURN count(n)", op=OP),
            scalar(driver, "MATCH ()-[r]->() WHERE r.scale_operation_id = $op RETURN count(r)", op=OP))


@pytest.fixture
def graph(neo4j_graph, neo4j_driver):
    ensure_schema(neo4j_driver, neo4j_graph.database)
    region = neo4j_driver.execute_query(
        "CREATE (r:Region {id: 'westeurope'}) RETURN elementId(r)").records[0][0]
    return region


def test_a_unit_is_written_once_however_often_it_is_sent(graph, neo4j_connection, neo4j_driver):
    first = write(neo4j_connection, neo4j_driver, unit(shared=graph))
    assert (first.nodes_written, first.relationships_written, first.already_written) == (3, 5, False)
    again = write(neo4j_connection, neo4j_driver, unit(shared=graph))
    assert (again.nodes_written, again.relationships_written, again.already_written) == (0, 0, True)
    assert counts(neo4j_driver) == (3, 5)
    assert scalar(neo4j_driver, "MATCH (b:ScaleBatch {key: 'u/0/0'}) RETURN b.written_at IS NOT NULL")


def test_racing_writers_of_one_unit_write_it_once(graph, neo4j_connection, neo4j_driver):
    drivers = [neo4j_connection.open_driver() for _ in range(6)]
    start = threading.Barrier(len(drivers))
    outcomes = []

    def race(driver):
        start.wait()
        outcomes.append(write(neo4j_connection, driver, unit(shared=graph)))

    try:
        threads = [threading.Thread(target=race, args=(driver,)) for driver in drivers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for driver in drivers:
            driver.close()
    assert counts(neo4j_driver) == (3, 5)
    assert sorted(o.already_written for o in outcomes) == [False] + [True] * 5
    assert scalar(neo4j_driver, "MATCH (n:Resource) WITH n.id AS id, count(*) AS c "
                                "WHERE c > 1 RETURN count(id)") == 0


def test_an_existing_node_with_a_new_id_is_never_overwritten(graph, neo4j_connection, neo4j_driver):
    neo4j_driver.execute_query("CREATE (:Resource {id: 'b', tenant_id: 'other', name: 'keep'})")
    outcome = write(neo4j_connection, neo4j_driver, unit(shared=graph))
    assert outcome.nodes_written == 2
    assert {(l.kind, l.identity) for l in outcome.dead_letters if l.kind == "node"} == {("node", "b")}
    assert "already exists" in outcome.dead_letters[0].reason
    # Its relationships (a→b, b→c, b→Region) are dead letters too; a→Region, c→Region written.
    assert sum(1 for l in outcome.dead_letters if l.kind == "relationship") == 3
    assert counts(neo4j_driver) == (2, 2)
    assert neo4j_driver.execute_query(
        "MATCH (n:Resource {id: 'b'}) RETURN properties(n) AS p").records[0]["p"] == {
        "id": "b", "tenant_id": "other", "name": "keep"}


def test_rows_neo4j_refuses_are_isolated_and_the_rest_is_written_once(graph, neo4j_connection,
                                                                      neo4j_driver):
    neo4j_driver.execute_query("CREATE CONSTRAINT serial_unique FOR (n:Resource) REQUIRE n.serial IS UNIQUE")
    neo4j_driver.execute_query("CREATE (:Resource {id: 'real', serial: 'S1'})")
    refused = unit(shared=graph, b={"serial": "S1"})
    outcome = write(neo4j_connection, neo4j_driver, refused)
    assert outcome.nodes_written == 2 and outcome.relationships_written == 2
    letters = {(l.kind, l.identity) for l in outcome.dead_letters}
    assert ("node", "b") in letters and len(outcome.dead_letters) == 4  # b, a→b, b→c, b→Region
    assert all("ConstraintValidationFailed" in l.reason or "refused" in l.reason
               for l in outcome.dead_letters)
    assert counts(neo4j_driver) == (2, 2)
    # The unit is complete: sent again, it writes nothing more.
    again = write(neo4j_connection, neo4j_driver, unit(shared=graph, b={"serial": "S1"}))
    assert again.already_written and counts(neo4j_driver) == (2, 2)


def test_a_relationship_to_a_shared_node_that_is_gone_is_a_dead_letter(graph, neo4j_connection,
                                                                       neo4j_driver):
    neo4j_driver.execute_query("MATCH (r:Region) DELETE r")
    outcome = write(neo4j_connection, neo4j_driver, unit(shared=graph))
    assert (outcome.nodes_written, outcome.relationships_written) == (3, 2)
    assert len(outcome.dead_letters) == 3 and all("no longer exists" in l.reason
                                                  for l in outcome.dead_letters)


def test_links_join_copies_written_elsewhere_once_and_skip_ends_without_a_copy(
        graph, neo4j_connection, neo4j_driver):
    write(neo4j_connection, neo4j_driver, unit(key="u/0/0", nodes=("a",)))
    write(neo4j_connection, neo4j_driver, unit(key="u/1/0", nodes=("b",)))
    links = UnitRows("u/0/0/links", links=[
        {"start": "a", "end": "b", "type": "USES", "props": {"scale_operation_id": OP}},
        {"start": "a", "end": "no-copy", "type": "USES", "props": {"scale_operation_id": OP}}])
    outcome = write(neo4j_connection, neo4j_driver, links)
    assert outcome.relationships_written == 1 and outcome.dead_letters == []
    assert write(neo4j_connection, neo4j_driver, links).already_written
    assert counts(neo4j_driver) == (2, 1)
