"""Schema creation on a real Neo4j: what is missing is created once, whoever races for
it; an old index of ours in the way of a constraint is replaced, anybody else's is
left alone with a warning."""

from __future__ import annotations

import logging
import threading
from typing import List

import neo4j
import pytest

from transforms.schema import SCALE_UP_CONSTRAINTS, SCALE_UP_INDEXES, ensure_schema

OLD_INDEX = "tenant_scaler_scaleoperation_id"  # what earlier versions created
CONSTRAINT = "tenant_scaler_scaleoperation_id_unique"
LEDGER = {("ScaleBatch", "key"): ["tenant_scaler_scalebatch_key_unique"]}  # always created here


def schema(driver: neo4j.Driver):
    """(RANGE indexes as {(label, properties): [names]}, uniqueness constraints as
    {(label, property): [names]})."""
    indexes, constraints = {}, {}
    for r in driver.execute_query("SHOW INDEXES YIELD name, type, labelsOrTypes, properties "
                                  "WHERE type = 'RANGE' RETURN *").records:
        indexes.setdefault((r["labelsOrTypes"][0], tuple(r["properties"])), []).append(r["name"])
    for r in driver.execute_query("SHOW CONSTRAINTS YIELD name, type, labelsOrTypes, properties "
                                  "RETURN *").records:
        constraints.setdefault((r["labelsOrTypes"][0], r["properties"][0]), []).append(r["name"])
    return indexes, constraints


def assert_complete(driver: neo4j.Driver) -> None:
    """Every index and constraint exactly once."""
    indexes, constraints = schema(driver)
    assert constraints == {("ScaleOperation", "id"): [CONSTRAINT], **LEDGER}
    assert set(constraints) == set(SCALE_UP_CONSTRAINTS)
    for label, properties in SCALE_UP_INDEXES:
        assert len(indexes[(label, properties)]) == 1, indexes
    assert indexes[("ScaleOperation", ("id",))] == [CONSTRAINT]  # the constraint's own


@pytest.mark.parametrize("round_", range(2))
def test_runs_that_start_together_on_a_fresh_database_all_succeed(neo4j_graph, neo4j_driver, round_):
    """Four creators with their own drivers, released at once: none fails, each rule is
    created exactly once, by exactly one of them."""
    creators = 4
    drivers = [neo4j_graph.open_driver() for _ in range(creators)]
    start = threading.Barrier(creators)
    created: List[List[str]] = [[] for _ in range(creators)]
    errors: List[BaseException] = []

    def create(i: int) -> None:
        try:
            start.wait()
            created[i] = ensure_schema(drivers[i], neo4j_graph.database)
        except BaseException as error:  # noqa: BLE001 - the test reports it
            errors.append(error)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(creators)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        for driver in drivers:
            driver.close()
    assert errors == []
    names = sorted(name for made in created for name in made)
    assert len(names) == len(set(names)) == len(SCALE_UP_INDEXES) + len(SCALE_UP_CONSTRAINTS)
    assert_complete(neo4j_driver)
    assert ensure_schema(neo4j_driver, neo4j_graph.database) == []


def test_our_old_index_is_replaced_by_the_constraint(neo4j_graph, neo4j_driver):
    neo4j_driver.execute_query(f"CREATE INDEX {OLD_INDEX} FOR (o:ScaleOperation) ON (o.id)")
    neo4j_driver.execute_query("CREATE (:ScaleOperation {id: 'a'}), (:ScaleOperation {id: 'b'})")
    created = ensure_schema(neo4j_driver, neo4j_graph.database)
    assert CONSTRAINT in created
    assert_complete(neo4j_driver)
    with pytest.raises(neo4j.exceptions.ConstraintError):
        neo4j_driver.execute_query("CREATE (:ScaleOperation {id: 'a'})")


def test_someone_elses_index_is_left_alone_with_a_warning(neo4j_graph, neo4j_driver, caplog):
    neo4j_driver.execute_query("CREATE INDEX their_index FOR (o:ScaleOperation) ON (o.id)")
    with caplog.at_level(logging.WARNING, logger="transforms.schema"):
        created = ensure_schema(neo4j_driver, neo4j_graph.database)
    indexes, constraints = schema(neo4j_driver)
    assert constraints == LEDGER and indexes[("ScaleOperation", ("id",))] == ["their_index"]
    assert CONSTRAINT not in created and len(created) == len(SCALE_UP_INDEXES) + len(LEDGER)
    assert any("their_index" in r.getMessage() and "DROP INDEX `their_index`" in r.getMessage()
               for r in caplog.records)


def test_duplicate_records_keep_our_index_and_say_what_to_fix(neo4j_graph, neo4j_driver, caplog):
    neo4j_driver.execute_query(f"CREATE INDEX {OLD_INDEX} FOR (o:ScaleOperation) ON (o.id)")
    neo4j_driver.execute_query("CREATE (:ScaleOperation {id: 'twice'}), (:ScaleOperation {id: 'twice'})")
    with caplog.at_level(logging.WARNING, logger="transforms.schema"):
        ensure_schema(neo4j_driver, neo4j_graph.database)
    indexes, constraints = schema(neo4j_driver)
    assert constraints == LEDGER and indexes[("ScaleOperation", ("id",))] == [OLD_INDEX]
    assert any("'twice'" in r.getMessage() for r in caplog.records)


def test_an_existing_constraint_of_another_name_is_kept(neo4j_graph, neo4j_driver):
    neo4j_driver.execute_query("CREATE CONSTRAINT theirs FOR (o:ScaleOperation) REQUIRE o.id IS UNIQUE")
    neo4j_driver.execute_query("CREATE INDEX resource_ids FOR (r:Resource) ON (r.id)")
    created = ensure_schema(neo4j_driver, neo4j_graph.database)
    indexes, constraints = schema(neo4j_driver)
    assert constraints == {("ScaleOperation", "id"): ["theirs"], **LEDGER}
    assert indexes[("Resource", ("id",))] == ["resource_ids"]
    assert len(created) == len(SCALE_UP_INDEXES) - 1 + len(LEDGER)
