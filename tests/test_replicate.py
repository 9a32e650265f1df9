"""Unit tests of the replicator: parts → copy units → the rows of their transactions.
Pure logic, no Neo4j."""

from array import array

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.beam_job import LOCAL_RUNNER
from pipelines.plan import new_node_count_for
from transforms.batch import TemplatePart
from transforms.model import RELATIONSHIP_KEY
from transforms.read import PartTemplates, TemplateRelationship
from transforms.replicate import (
    CopyUnit,
    LinkUnit,
    ReplicateParts,
    ReplicationSettings,
    UnitRowsOf,
    _ReplicatePartsFn,
    replicate_part,
    synthetic_id,
)

OP = "op-test"
TIMESTAMP = "2026-11-28T12:00:00.000+00:00"


def template(template_id, labels=("Resource",), **props):
    return {"node": hash(template_id) % 10**6, "id": template_id, "labels": list(labels),
            "props": {"id": template_id, "name": template_id.split("/")[-1], **props}}


def relationship(template_id, other_template_id=None, outgoing=True, rel_type="USES",
                 other_element_id=None, **props):
    return TemplateRelationship(
        template_id=template_id, outgoing=outgoing, type=rel_type, props=props,
        element_id=f"rel:{template_id}:{other_template_id}:{rel_type}",
        other_element_id=other_element_id or f"node:{other_template_id or 'shared'}",
        other_template_id=other_template_id)


def part(templates, relationships=(), extra=None, index=0):
    """A part of ``templates``; ``extra``: ids with one copy more."""
    extra = set(extra or ())
    nodes = array("q", (t["node"] for t in templates)).tobytes()
    flags = bytes(1 if t["id"] in extra else 0 for t in templates)
    return PartTemplates(TemplatePart(index, nodes, flags), list(templates), list(relationships))


def rows(unit, base_copies=2):
    """The rows of ``unit`` (a CopyUnit or LinkUnit of a ``part(...)``), replicated first."""
    replicated = replicate_part(unit.part, ReplicationSettings(OP, TIMESTAMP, base_copies))
    return UnitRowsOf(OP)(type(unit)(replicated, unit.replica))


def test_copies_carry_properties_and_markers_but_not_the_real_resource_claims():
    t = template("vm-0a1b2c3d4e5f6789", labels=("Resource", "VirtualMachine", "Original"),
                 type="Microsoft.Compute/virtualMachines", tags='{"env": "prod"}',
                 original_id="/subscriptions/s/virtualMachines/vm1", original_name="vm1",
                 abstracted_id="x", scan_id="scan-1", props=[1, None, "ü"])
    for replica in range(2):
        unit = rows(CopyUnit(part([t]), replica))
        assert len(unit.nodes) == 1
        node = unit.nodes[0]
        assert node["labels"] == ["Resource", "VirtualMachine"]  # never :Original
        row = node["props"]
        assert row["synthetic"] is True and row["scale_operation_id"] == OP
        assert row["template_source_id"] == t["id"] and row["scale_replica"] == replica
        assert row["generation_timestamp"] == TIMESTAMP
        assert row["generation_strategy"] == "template_replication"
        assert row["tags"] == '{"env": "prod"}' and row["props"] == [1, None, "ü"]
        assert not {"original_id", "original_name", "abstracted_id", "scan_id"} & set(row)
        assert row["id"] == synthetic_id(OP, t["id"], replica)
        assert row["name"] == "vm-0a1b2c3d4e5f6789" + row["id"][len(t["id"]):]
        assert unit.key == f"{OP}/0/{replica}"


def test_ids_are_deterministic_and_differ_by_operation_template_and_replica():
    assert synthetic_id(OP, "a", 0) == synthetic_id(OP, "a", 0)
    ids = {synthetic_id(op, t, r) for op in ("o1", "o2") for t in ("a", "b") for r in range(3)}
    assert len(ids) == 12
    suffix = synthetic_id(OP, "a", 0)[len("a-syn-"):]
    assert len(suffix) == 24 and int(suffix, 16) >= 0  # 96 bits of hex


def test_a_template_without_a_name_gets_none():
    t = template("a")
    del t["props"]["name"]
    assert "name" not in rows(CopyUnit(part([t]), 0)).nodes[0]["props"]


def test_relationships_inside_a_part_link_the_same_replica_by_position_never_a_cross_product():
    a, b = template("a"), template("b")
    p = part([a, b], [relationship("a", "b", weight=3), relationship("b", "a", outgoing=True,
                                                                    rel_type="DEPENDS_ON")])
    for replica in range(2):
        unit = rows(CopyUnit(p, replica))
        ids = [node["props"]["id"] for node in unit.nodes]
        assert ids == [synthetic_id(OP, "a", replica), synthetic_id(OP, "b", replica)]
        assert [(rel["s"], rel["e"], rel["type"]) for rel in unit.internal] == [
            (0, 1, "USES"), (1, 0, "DEPENDS_ON")]
        assert unit.internal[0]["props"] == {"weight": 3, "scale_operation_id": OP,
                                             RELATIONSHIP_KEY: "rel:a:b:USES"}
        assert unit.outgoing == unit.incoming == unit.links == []


def test_relationships_to_shared_nodes_keep_the_node_and_the_direction_sorted_by_node():
    a = template("a")
    p = part([a], [relationship("a", None, rel_type="TAGGED_WITH", other_element_id="node:9"),
                   relationship("a", None, rel_type="LOCATED_IN", other_element_id="node:1"),
                   relationship("a", None, outgoing=False, rel_type="CONTAINS",
                                other_element_id="node:5")])
    unit = rows(CopyUnit(p, 1))
    assert [(rel["own"], rel["other"], rel["type"]) for rel in unit.outgoing] == [
        (0, "node:1", "LOCATED_IN"), (0, "node:9", "TAGGED_WITH")]
    assert [(rel["own"], rel["other"], rel["type"]) for rel in unit.incoming] == [
        (0, "node:5", "CONTAINS")]


def test_partial_replica_leaves_out_relationships_to_templates_without_a_copy_never_the_real_one():
    # a and b are one component split by the partial replica: a has the extra copy, b not.
    a, b, c = template("a"), template("b"), template("c")
    p = part([a, b, c], [relationship("a", "b"), relationship("b", "a", rel_type="DEPENDS_ON"),
                         relationship("a", None, rel_type="LOCATED_IN")], extra={"a"})
    full = rows(CopyUnit(p, 1), base_copies=2)
    assert len(full.nodes) == 3 and len(full.internal) == 2
    partial = rows(CopyUnit(p, 2), base_copies=2)
    assert [node["props"]["id"] for node in partial.nodes] == [synthetic_id(OP, "a", 2)]
    assert partial.internal == [] and partial.links == []
    # Its relationship to a shared node stays; nothing points at the real b.
    assert [rel["other"] for rel in partial.outgoing] == ["node:shared"]
    assert all(rel["other"] != "node:b" for rel in (*partial.outgoing, *partial.incoming))


def test_replicate_parts_makes_one_unit_per_replica_and_links_only_across_slices():
    a, b = template("a"), template("b")
    settings = ReplicationSettings(OP, TIMESTAMP, 2)
    inside = part([a, b], [relationship("a", "b")], extra={"a"})
    replicated = replicate_part(inside, settings)
    out = list(_ReplicatePartsFn(settings).process(inside))
    assert out == [CopyUnit(replicated, 0), CopyUnit(replicated, 1), CopyUnit(replicated, 2)]
    # A slice of a large component: its relationship to the other slice is a link.
    sliced = part([a], [relationship("a", "b"), relationship("a", None)], index=7)
    replicated = replicate_part(sliced, settings)
    out = list(_ReplicatePartsFn(settings).process(sliced))
    copies = [o for o in out if isinstance(o, CopyUnit)]
    links = [o.value for o in out if isinstance(o, beam.pvalue.TaggedOutput)]
    assert copies == [CopyUnit(replicated, 0), CopyUnit(replicated, 1)]
    assert links == [LinkUnit(replicated, 0), LinkUnit(replicated, 1)]
    copy_rows = rows(CopyUnit(sliced, 1))
    assert copy_rows.internal == [] and len(copy_rows.outgoing) == 1
    link_rows = rows(LinkUnit(sliced, 1))
    assert link_rows.key == f"{OP}/7/1/links" and link_rows.nodes == []
    assert [(link["start"], link["end"]) for link in link_rows.links] == [
        (synthetic_id(OP, "a", 1), synthetic_id(OP, "b", 1))]


def test_factor_counts_round_to_the_nearest_node():
    assert new_node_count_for(10, 3.5, None) == 25
    assert new_node_count_for(7, 1.37, None) == 3  # round(2.59)
    assert new_node_count_for(10, None, 13) == 3
    with pytest.raises(ValueError):
        new_node_count_for(10, 2.0, 12)


@pytest.mark.parametrize("bad", [dict(operation_id=""), dict(base_copies=-1), dict(base_copies=True)])
def test_settings_are_validated(bad):
    values = dict(operation_id=OP, generation_timestamp=TIMESTAMP, base_copies=1)
    values.update(bad)
    with pytest.raises(ValueError):
        ReplicationSettings(**values)


def test_replicate_in_a_pipeline_emits_every_copy_once():
    a, b = template("a"), template("b")
    parts = [part([a], index=0), part([b], [relationship("b", "a")], index=1)]
    settings = ReplicationSettings(OP, TIMESTAMP, 3)
    with BeamTestPipeline(runner=LOCAL_RUNNER) as p:
        units = p | beam.Create(parts) | ReplicateParts(settings)
        rows_of = UnitRowsOf(OP)
        assert_that(units.copies | "Ids" >> beam.FlatMap(
                        lambda unit: [node["props"]["id"] for node in rows_of(unit).nodes]),
                    equal_to([synthetic_id(OP, t, r) for t in "ab" for r in range(3)]),
                    label="AllNodeCopies")
        assert_that(units.links | "Links" >> beam.FlatMap(
                        lambda unit: [(l["start"], l["end"]) for l in rows_of(unit).links]),
                    equal_to([(synthetic_id(OP, "b", r), synthetic_id(OP, "a", r)) for r in range(3)]),
                    label="OneLinkPerReplica")
