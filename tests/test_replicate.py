"""Unit tests of the replicator: pure row logic, no Neo4j."""

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.beam_job import LOCAL_RUNNER
from transforms.cypher import ELEMENT_ID, node_kind, relationship_kind
from transforms.replicate import (
    RELATIONSHIP_KEY,
    CopySetRows,
    _ReplicateNodesFn,
    _ReplicateRelationshipsFn,
    ReplicateNodes,
    ReplicateRelationships,
    ReplicationSettings,
    synthetic_id,
)
from pipelines.plan import new_node_count_for
from transforms.model import CopyRule

OP = "op-test"
TIMESTAMP = "2026-11-28T12:00:00.000+00:00"


def settings(base_copies=2, extra_copy_below_id=None, shards=3):
    return ReplicationSettings(OP, TIMESTAMP, CopyRule(base_copies, extra_copy_below_id), shards)


def template(template_id, labels=("Resource",), **props):
    return {"id": template_id, "labels": list(labels),
            "props": {"id": template_id, "name": template_id.split("/")[-1], **props}}


def run_fn(fn, elements):
    """Call a DoFn directly: one ``(key, row)`` per row of its row groups, and tagged
    outputs as ``("tag", value)``."""
    fn.setup()
    out = []
    for element in elements:
        for output in fn.process(element):
            if isinstance(output, beam.pvalue.TaggedOutput):
                out.append((output.tag, output.value))
            else:
                key, copy_set = output
                out.extend((key, row) for row in CopySetRows(fn._settings.operation_id)(copy_set))
    return out


def nodes_of(templates, replication):
    return run_fn(_ReplicateNodesFn(replication), templates)


def test_copies_carry_properties_and_markers_but_not_the_real_resource_claims():
    t = template("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1",
                 labels=("Resource", "VirtualMachine"), type="Microsoft.Compute/virtualMachines",
                 tags='{"env": "prod"}', original_id="/real/vm1", abstracted_id="x", scan_id="scan-1",
                 resource_group="rg", props=[1, None, "ü"])
    rows = nodes_of([t], settings(base_copies=2))
    assert len(rows) == 2
    for (kind, shard), row in rows:
        assert kind == node_kind("Resource", ("VirtualMachine",))
        assert 0 <= shard < 3
        assert row["synthetic"] is True
        assert row["scale_operation_id"] == OP
        assert row["template_source_id"] == t["id"]
        assert row["generation_timestamp"] == TIMESTAMP
        assert row["generation_strategy"] == "template_replication"
        assert row["scale_replica"] in (0, 1)
        assert row["tags"] == '{"env": "prod"}' and row["props"] == [1, None, "ü"]
        assert not {"original_id", "abstracted_id", "scan_id"} & set(row)
        assert row["id"].startswith(t["id"] + "-syn-") and row["name"].startswith("vm1-syn-")
    assert len({row["id"] for _, row in rows}) == 2
    assert len({row["name"] for _, row in rows}) == 2


def test_ids_are_deterministic_and_differ_by_operation_template_and_replica():
    assert synthetic_id(OP, "a", 0) == synthetic_id(OP, "a", 0)
    ids = {synthetic_id(op, t, r) for op in ("o1", "o2") for t in ("a", "b") for r in range(3)}
    assert len(ids) == 12
    suffix = synthetic_id(OP, "a", 0)[len("a-syn-"):]
    assert len(suffix) == 24 and int(suffix, 16) >= 0  # 96 bits of hex


def test_non_integer_factor_gives_the_extra_copy_to_an_id_prefix():
    templates = [template(f"t{i}") for i in range(10)]
    new = new_node_count_for(10, 3.5, None)
    assert new == 25
    base, extra = divmod(new, 10)
    rows = nodes_of(templates, settings(base_copies=base, extra_copy_below_id=f"t{extra}"))
    per_template = {}
    for _, row in rows:
        per_template[row["template_source_id"]] = per_template.get(row["template_source_id"], 0) + 1
    assert len(rows) == 25
    assert per_template == {f"t{i}": (3 if i < 5 else 2) for i in range(10)}


def test_unsafe_label_goes_to_dead_letter_and_is_not_replicated():
    bad = template("bad", labels=("Resource", "Evil` DETACH DELETE n //"))
    good = template("good")
    out = nodes_of([bad, good], settings(base_copies=1))
    dead = [value for tag, value in out if tag == "dead_letter"]
    rows = [row for tag, row in out if tag != "dead_letter"]
    assert len(rows) == 1 and rows[0]["template_source_id"] == "good"
    assert len(dead) == 1 and (dead[0].kind, dead[0].identity) == ("template", "bad")
    assert "unsafe label" in dead[0].reason


def relationship(template_id, other_template_id=None, outgoing=True, rel_type="USES", **props):
    return {"template_id": template_id, "template_element_id": f"node:{template_id}",
            "resource_group": "rg", "outgoing": outgoing,
            "type": rel_type, "props": props, "element_id": f"rel:{template_id}:{other_template_id}",
            "other_element_id": f"node:{other_template_id or 'shared'}",
            "other_template_id": other_template_id}


def relationships_of(relationships, replication):
    return run_fn(_ReplicateRelationshipsFn(replication), relationships)


def test_relationship_between_templates_links_the_same_replica_never_a_cross_product():
    rows = relationships_of([relationship("a", "b", weight=3)], settings(base_copies=4))
    assert len(rows) == 4  # not 16
    pairs = {(row["start"], row["end"]) for _, row in rows}
    assert pairs == {(synthetic_id(OP, "a", r), synthetic_id(OP, "b", r)) for r in range(4)}
    for (kind, _), row in rows:
        assert kind == relationship_kind("USES", "Resource", "Resource", RELATIONSHIP_KEY)
        assert row["props"] == {"weight": 3, "scale_operation_id": OP,
                                RELATIONSHIP_KEY: "rel:a:b"}


def test_relationships_to_shared_nodes_keep_the_shared_node_and_their_direction():
    outgoing = relationships_of([relationship("a", None, outgoing=True, rel_type="TAGGED_WITH")],
                                settings(base_copies=2))
    incoming = relationships_of([relationship("a", None, outgoing=False, rel_type="CONTAINS")],
                                settings(base_copies=2))
    assert {(k[0][2], k[0][3], row["start"], row["end"]) for k, row in outgoing} == {
        ("Resource", ELEMENT_ID, synthetic_id(OP, "a", r), "node:shared") for r in range(2)}
    assert {(k[0][2], k[0][3], row["start"], row["end"]) for k, row in incoming} == {
        (ELEMENT_ID, "Resource", "node:shared", synthetic_id(OP, "a", r)) for r in range(2)}


def test_partial_replica_links_to_the_real_neighbour_when_it_has_no_copy_there():
    # "a" gets 3 copies, "b" only 2: replica 2 of "a" links to the real "b" ...
    rows = relationships_of([relationship("a", "b")], settings(base_copies=2, extra_copy_below_id="b"))
    assert sorted((row["start"], row["end"]) for _, row in rows) == sorted(
        [(synthetic_id(OP, "a", r), synthetic_id(OP, "b", r)) for r in range(2)]
        + [(synthetic_id(OP, "a", 2), "node:b")])
    assert {kind[3] for (kind, _), row in rows if row["end"] == "node:b"} == {ELEMENT_ID}
    # ... and the other way round: the real "a" links to replica 2 of "b".
    rows = relationships_of([relationship("b", "a")], settings(base_copies=2, extra_copy_below_id="b"))
    assert sorted((row["start"], row["end"]) for _, row in rows) == sorted(
        [(synthetic_id(OP, "b", r), synthetic_id(OP, "a", r)) for r in range(2)]
        + [("node:b", synthetic_id(OP, "a", 2))])


def test_unsafe_relationship_type_is_dead_lettered():
    out = relationships_of([relationship("a", "b", rel_type="X]->() DELETE n")], settings())
    assert len(out) == 1 and out[0][0] == "dead_letter"
    assert out[0][1].kind == "relationship" and "unsafe relationship type" in out[0][1].reason


def test_copies_of_one_template_travel_as_one_group_in_their_resource_groups_shard():
    replication = settings(base_copies=5, shards=3)
    groups = list(_ReplicateNodesFn(replication).process(template("a", resource_group="rg-1")))
    assert len(groups) == 1 and len(CopySetRows(OP)(groups[0][1])) == 5
    rel_groups = list(_ReplicateRelationshipsFn(replication).process(relationship("a", None)))
    assert len(rel_groups) == 1 and len(CopySetRows(OP)(rel_groups[0][1])) == 5
    shards = {_ReplicateNodesFn(replication).process(template(f"t{i}", resource_group=f"rg-{i}"))
              .__next__()[0][1] for i in range(30)}
    assert shards == {0, 1, 2}  # resource groups spread over all shards


def test_same_shard_for_a_node_and_its_relationships():
    nodes = nodes_of([template("a", resource_group="rg")], settings(base_copies=5, shards=3))
    rels = relationships_of([relationship("a", None)], settings(base_copies=5, shards=3))
    node_shards = {row["id"]: shard for (_, shard), row in nodes}
    assert {node_shards[row["start"]] == shard for (_, shard), row in rels} == {True}


@pytest.mark.parametrize("bad", [dict(operation_id=""), dict(shards=0)])
def test_settings_are_validated(bad):
    values = dict(operation_id=OP, generation_timestamp=TIMESTAMP, copy_rule=CopyRule(1, None), shards=1)
    values.update(bad)
    with pytest.raises(ValueError):
        ReplicationSettings(**values)


def test_transforms_in_a_pipeline_emit_every_copy_keyed_for_batching():
    replication = settings(base_copies=3)
    with BeamTestPipeline(runner=LOCAL_RUNNER) as p:
        nodes = (p | "Templates" >> beam.Create([template("a"), template("b")])
                 | ReplicateNodes(replication))
        rels = (p | "Relationships" >> beam.Create([relationship("a", "b")])
                | ReplicateRelationships(replication))
        rows_of = CopySetRows(OP)
        assert_that(nodes.rows | "NodeIds" >> beam.FlatMap(lambda kv: [row["id"] for row in rows_of(kv[1])]),
                    equal_to([synthetic_id(OP, t, r) for t in "ab" for r in range(3)]),
                    label="AllNodeCopies")
        assert_that(rels.rows | "Ends" >> beam.FlatMap(
                        lambda kv: [(r["start"], r["end"]) for r in rows_of(kv[1])]),
                    equal_to([(synthetic_id(OP, "a", r), synthetic_id(OP, "b", r)) for r in range(3)]),
                    label="OneRelationshipPerReplica")
        assert_that(nodes.dead_letter, equal_to([]), label="NoDeadLetters")
