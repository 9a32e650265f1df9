"""The Cypher text builder: identifiers checked before they enter a statement, and one
constant parameterised statement per write kind."""

import pytest

from transforms.cypher import (
    ELEMENT_ID,
    UnsafeIdentifierError,
    checked_identifier,
    node_kind,
    relationship_kind,
    write_statement,
)


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
