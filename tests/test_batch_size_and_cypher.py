"""Unit tests of the adaptive batch sizer and of the Cypher text builder."""

import pytest

from transforms.batch_size import TIERS, adaptive_batch_size
from transforms.cypher import (
    ELEMENT_ID,
    UnsafeIdentifierError,
    checked_identifier,
    node_kind,
    relationship_kind,
    write_statement,
)


@pytest.mark.parametrize("items, smallest, largest", [
    (0, 100, 500), (999, 100, 500),
    (1_000, 500, 1_000), (9_999, 500, 1_000),
    (10_000, 1_000, 5_000), (99_999, 1_000, 5_000),
    (100_000, 5_000, 10_000), (5_000_000, 5_000, 10_000), (10**9, 5_000, 10_000),
])
def test_read_sizes_stay_inside_the_seed_tiers(items, smallest, largest):
    assert smallest <= adaptive_batch_size(items, "read") <= largest


@pytest.mark.parametrize("items", [0, 500, 5_000, 35_000, 960_000, 10**8])
def test_writes_are_half_of_reads(items):
    assert adaptive_batch_size(items, "write") == adaptive_batch_size(items, "read") // 2


def test_sizes_grow_with_the_graph():
    sizes = [adaptive_batch_size(n, "read") for n in (10, 100, 1_000, 5_000, 50_000, 500_000)]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    assert TIERS[-1][2] == adaptive_batch_size(10**9, "read")


@pytest.mark.parametrize("bad", [-1, 1.5, "10"])
def test_bad_counts_are_refused(bad):
    with pytest.raises(ValueError):
        adaptive_batch_size(bad)


def test_unknown_operation_is_refused():
    with pytest.raises(ValueError, match="operation"):
        adaptive_batch_size(10, "delete")


@pytest.mark.parametrize("name", ["USES", "USES_SUBNET", "Resource", "a1"])
def test_plain_identifiers_pass(name):
    assert checked_identifier(name, "label") == name


@pytest.mark.parametrize("name", ["", "1abc", "has space", "back`tick", "X]->() DETACH DELETE n",
                                  "ünicode", "a-b", None, "x" * 200])
def test_anything_else_is_refused_with_its_name(name):
    with pytest.raises(UnsafeIdentifierError, match="relationship type"):
        checked_identifier(name, "relationship type")


def test_statements_are_constant_parameterised_unwind():
    node = write_statement(node_kind("Resource", ("VirtualMachine",)))
    assert node.startswith("UNWIND $rows AS row MERGE (n:`Resource` {id: row.id})")
    assert "n:`VirtualMachine`" in node
    rel = write_statement(relationship_kind("USES", "Resource", ELEMENT_ID, "template_source_rel_id"))
    assert "MATCH (a:`Resource` {id: row.start})" in rel
    assert "elementId(b) = row.end" in rel
    assert "MERGE (a)-[r:`USES` {`template_source_rel_id`: row.props.`template_source_rel_id`}]->(b)" in rel


def test_statement_refuses_unsafe_kinds():
    with pytest.raises(UnsafeIdentifierError):
        write_statement(relationship_kind("BAD TYPE", "Resource", "Resource"))
    with pytest.raises(UnsafeIdentifierError):
        write_statement(node_kind("Resource", ("Bad`Label",)))
