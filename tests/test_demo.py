"""The demo tenant: generator properties without Neo4j, and one load into a real Neo4j."""

from __future__ import annotations

import collections
import json
import re
import statistics
from typing import Any, Dict, List, Tuple

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.beam_job import LOCAL_RUNNER
from pipelines.demo import load as loader
from transforms.cypher import is_safe_identifier, node_kind, write_statement
from transforms.demo import (
    ABSTRACTION_PROPERTIES,
    BLOCK_SIZE,
    NODE_LABELS,
    NODES,
    RELATIONSHIPS,
    RESOURCE_TYPES,
    ROWS_PER_GROUP,
    SHARED_LABELS,
    DemoTenantSpec,
    GenerateDemoTenant,
    approximate_counts,
    chunk_ranges,
    expected_counts,
    generate_rows,
    label_key,
    shared_node_ids,
)

RESOURCE = node_kind("Resource")
ORIGINAL = node_kind("Resource", ("Original",))
RESOURCE_TO_RESOURCE = {"CONTAINS", "USES_SUBNET", "SECURED_BY", "CONNECTED_TO", "DEPENDS_ON",
                        "USES", "USES_NETWORK", "CONNECTED_TO_PE", "MONITORS", "LOGS_TO",
                        "SENDS_DIAG_TO"}
COMMON_PROPERTIES = {"id", "name", "type", "location", "resource_group", "subscription_id",
                     "tenant_id", "tags", "properties", "original_id", "original_name",
                     "abstracted_id", "scan_id", "layer_id", "updated_at", "llm_description"}


def _rows(spec: DemoTenantSpec, shards: int = 1) -> List[Tuple[str, Any]]:
    return list(generate_rows(spec, shards=shards))


def _nodes(rows) -> List[Tuple[Any, Dict[str, Any]]]:
    return [(kind, row) for tag, ((kind, _), row) in rows if tag == NODES]


def _relationships(rows) -> List[Tuple[Any, Dict[str, Any]]]:
    return [(kind, row) for tag, ((kind, _), row) in rows if tag == RELATIONSHIPS]


@pytest.fixture(scope="module")
def tenant_2000():
    return _rows(DemoTenantSpec("acme", 2000, seed=7), shards=5)


# --------------------------------------------------------------------------- spec

@pytest.mark.parametrize("field, kwargs", [
    ("tenant_id", {"tenant_id": ""}),
    ("tenant_id", {"tenant_id": "a b"}),
    ("tenant_id", {"tenant_id": "x`) DETACH DELETE n //"}),
    ("resources", {"resources": 0}),
    ("resources", {"resources": True}),
    ("resources", {"resources": 2.5}),
    ("seed", {"seed": -1}),
    ("subscriptions", {"subscriptions": 0}),
])
def test_spec_rejects_bad_values_naming_the_field(field, kwargs):
    values = {"tenant_id": "acme", "resources": 10, **kwargs}
    with pytest.raises(ValueError, match=field):
        DemoTenantSpec(**values)


def test_transform_rejects_bad_shards_and_chunk_size():
    spec = DemoTenantSpec("acme", 10)
    with pytest.raises(ValueError, match="shards"):
        GenerateDemoTenant(spec, shards=0)
    with pytest.raises(ValueError, match="chunk_size"):
        GenerateDemoTenant(spec, shards=2, chunk_size=0)


# --------------------------------------------------------------------------- determinism

def _serialized(rows) -> bytes:
    """The rows as bytes: JSON keeps each row's property order, unlike ``==`` on dicts."""
    return json.dumps(rows).encode("utf-8")


def test_same_spec_gives_byte_identical_rows():
    spec = DemoTenantSpec("acme", 450, seed=3)
    assert _serialized(_rows(spec, 4)) == _serialized(_rows(spec, 4))


@pytest.mark.parametrize("chunk_size", [1, 37, 100, 333, 1000])
def test_rows_do_not_depend_on_chunking(chunk_size):
    spec = DemoTenantSpec("acme", 517, seed=3)
    chunked = [row for start, end in chunk_ranges(0, spec.resources, chunk_size)
               for row in generate_rows(spec, start, end, shards=4)]
    assert _serialized(chunked) == _serialized(_rows(spec, 4))


def test_block_aligned_slices_never_need_a_later_slice():
    """What lets the loader write a big tenant as consecutive pipelines."""
    spec = DemoTenantSpec("acme", 1050, seed=3)
    written = set()
    for start, end in chunk_ranges(0, spec.resources, 2 * BLOCK_SIZE):
        rows = list(generate_rows(spec, start, end))
        written |= {(kind[1], row["id"]) for kind, row in _nodes(rows)}
        for kind, row in _relationships(rows):
            assert (kind[2], row["start"]) in written and (kind[3], row["end"]) in written


def _shared(nodes) -> Dict[Tuple[str, str], Dict[str, Any]]:
    """``{(label, id): row}`` of the shared nodes among ``nodes``."""
    return {(kind[1], row["id"]): row for kind, row in nodes if kind[1] in SHARED_LABELS}


def test_seed_and_tenant_change_the_tenant_but_not_its_shared_nodes():
    spec = DemoTenantSpec("acme", 200, seed=1)
    base = _nodes(_rows(spec))
    own = {row["id"] for kind, row in base if kind[1] not in ("Tenant", *SHARED_LABELS)}
    shared = _shared(base)
    assert not any("tenant_id" in row for row in shared.values())
    assert shared_node_ids(spec) == {
        label: {id_ for other_label, id_ in shared if other_label == label}
        for label in SHARED_LABELS}
    for other_spec in (DemoTenantSpec("acme", 200, seed=2), DemoTenantSpec("globex", 200, seed=1)):
        other = _nodes(_rows(other_spec))
        assert not own & {row["id"] for _, row in other}
        other_shared = _shared(other)
        # Every tenant writes every Tag; a shared node written by two tenants has the same
        # properties, so the order tenants are loaded in cannot matter.
        assert {key for key in shared if key[0] == "Tag"} == {
            key for key in other_shared if key[0] == "Tag"}
        common = shared.keys() & other_shared.keys()
        assert {label for label, _ in common} == set(SHARED_LABELS)
        assert all(shared[key] == other_shared[key] for key in common)


def _canonical(keyed_row) -> str:
    (kind, shard), row = keyed_row
    return json.dumps([kind, shard, row], sort_keys=True)


def _canonical_rows(group) -> List[str]:
    """A row group → its rows, canonical; checks the group's size on the way."""
    key, rows = group
    assert 1 <= len(rows) <= ROWS_PER_GROUP
    return [_canonical((key, row)) for row in rows]


def test_transform_emits_what_the_generator_makes():
    spec = DemoTenantSpec("acme", 120, seed=5)
    expected = collections.defaultdict(list)
    for tag, keyed_row in generate_rows(spec, shards=3):
        expected[tag].append(_canonical(keyed_row))
    with test_pipeline.TestPipeline(runner=LOCAL_RUNNER, argv=[]) as pipeline:
        head = pipeline | "Head" >> GenerateDemoTenant(spec, shards=3, chunk_size=17, end=100)
        tail = pipeline | "Tail" >> GenerateDemoTenant(spec, shards=3, chunk_size=17, start=100)
        for tag in (NODES, RELATIONSHIPS):
            rows = (head[tag], tail[tag]) | f"All{tag}" >> beam.Flatten()
            assert_that(rows | f"Canonical{tag}" >> beam.FlatMap(_canonical_rows),
                        equal_to(expected[tag]), label=f"Check{tag}")


# --------------------------------------------------------------------------- structure

@pytest.mark.parametrize("resources", [1, 2, 60, 99, 100, 101, 517])
def test_exact_resource_count_and_one_original_each(resources):
    nodes = _nodes(_rows(DemoTenantSpec("acme", resources)))
    abstracted = [row for kind, row in nodes if kind == RESOURCE]
    originals = [row for kind, row in nodes if kind == ORIGINAL]
    assert len(abstracted) == resources
    assert sorted(row["original_id"] for row in abstracted) == sorted(
        row["id"] for row in originals)


def test_ids_are_unique_per_merge_label(tenant_2000):
    seen = collections.Counter((kind[1], row["id"]) for kind, row in _nodes(tenant_2000))
    assert [key for key, count in seen.items() if count > 1] == []


def test_every_relationship_end_is_a_generated_node(tenant_2000):
    nodes = {(kind[1], row["id"]) for kind, row in _nodes(tenant_2000)}
    dangling = [(kind, row) for kind, row in _relationships(tenant_2000)
                if (kind[2], row["start"]) not in nodes or (kind[3], row["end"]) not in nodes]
    assert dangling == []


def test_no_two_relationships_merge_into_one(tenant_2000):
    """``MERGE (a)-[:T]->(b)`` keeps one per (type, a, b): a duplicate would be lost."""
    keys = collections.Counter((kind[1], row["start"], row["end"])
                               for kind, row in _relationships(tenant_2000))
    assert [key for key, count in keys.items() if count > 1] == []


def test_kinds_are_writable_by_the_sink(tenant_2000):
    kinds = {kind for tag, ((kind, _), _) in tenant_2000}
    for kind in kinds:
        write_statement(kind)  # raises for an unsafe label or type
        if kind[0] == "rel":
            assert kind[4] is None and is_safe_identifier(kind[2]) and is_safe_identifier(kind[3])
    assert {kind[1] for kind in kinds if kind[0] == "node"} == set(NODE_LABELS)


def test_shards_are_in_range_and_even(tenant_2000):
    shards = collections.Counter(shard for _, ((_, shard), _) in tenant_2000)
    assert set(shards) == set(range(5))
    assert max(shards.values()) < 1.25 * min(shards.values())


def test_relationships_of_a_resource_group_share_its_shard(tenant_2000):
    """The sink writes shards in parallel: resource↔resource links must not cross them."""
    shard_of = {row["id"]: shard for tag, ((kind, shard), row) in tenant_2000
                if tag == NODES and kind == RESOURCE}
    for tag, ((kind, shard), row) in tenant_2000:
        if tag == RELATIONSHIPS and kind[2] == kind[3] == "Resource":
            assert shard_of.get(row["start"], shard) == shard == shard_of.get(row["end"], shard)


def test_density_resembles_a_real_tenant(tenant_2000):
    resources = 2000
    resource_links = shared_links = scans = 0
    for kind, _ in _relationships(tenant_2000):
        _, rel_type, start, end, _ = kind
        if rel_type == "SCAN_SOURCE_NODE":
            scans += 1
        elif start == end == "Resource":
            assert rel_type in RESOURCE_TO_RESOURCE
            resource_links += 1
        elif "Resource" in (start, end):
            shared_links += 1
    assert scans == resources
    assert 0.5 <= resource_links / resources <= 1.5
    assert 2.0 <= shared_links / resources <= 3.2


def test_type_mix_is_realistic(tenant_2000):
    types = collections.Counter(
        row["type"] for kind, row in _nodes(tenant_2000) if kind == RESOURCE)
    assert set(types) == set(RESOURCE_TYPES)
    for common in ("Microsoft.Compute/virtualMachines", "Microsoft.Compute/disks",
                   "Microsoft.Network/networkInterfaces",
                   "Microsoft.Network/virtualNetworks/subnets", "Microsoft.Web/sites",
                   "Microsoft.Storage/storageAccounts"):
        assert types[common] >= 0.02 * 2000, common
    assert max(types.values()) <= 0.25 * 2000


def test_resource_properties_have_the_scanned_shape(tenant_2000):
    arm_id = re.compile(
        r"/subscriptions/[0-9a-f-]{36}/resourceGroups/[\w.-]+/providers/Microsoft\.\w+/\w+/[\w-]+"
        r"(/\w+/[\w-]+)?\Z")
    abstracted_id = re.compile(r"([a-z]+)-[0-9a-f]{16}\Z")
    nodes = _nodes(tenant_2000)
    originals = {row["id"]: row for kind, row in nodes if kind == ORIGINAL}
    lengths, property_sets = [], collections.defaultdict(set)
    prefixes = collections.defaultdict(set)
    for kind, row in nodes:
        if kind != RESOURCE:
            continue
        assert COMMON_PROPERTIES <= set(row), row["type"]
        assert abstracted_id.match(row["id"]) and arm_id.match(row["original_id"]), row["id"]
        prefixes[row["type"]].add(abstracted_id.match(row["id"])[1])
        assert row["abstracted_id"] == row["id"] and row["tenant_id"] == "acme"
        provider_type = "/".join(row["type"].split("/")[:2])  # a child's type nests in it
        assert row["original_id"].split("/providers/")[1].startswith(provider_type + "/")
        # ARM JSON refers to resources by their ARM ids, never by the graph's abstracted ids.
        references = re.findall(r'"id": "([^"]*)"', row["properties"])
        assert all(arm_id.match(ref) for ref in references if ref), row["id"]
        assert isinstance(json.loads(row["tags"]), dict)
        assert isinstance(json.loads(row["properties"]), dict)
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z", row["updated_at"])
        assert all(isinstance(value, (str, int, float, bool)) for value in row.values())
        lengths.append(len(row["properties"]))
        property_sets[row["type"]].add(frozenset(row))
        original = originals[row["original_id"]]
        assert original["name"] == row["original_name"]
        assert not set(ABSTRACTION_PROPERTIES) & set(original)
        assert {k: v for k, v in original.items() if k not in ("id", "name")} == {
            k: v for k, v in row.items() if k not in ("id", "name", *ABSTRACTION_PROPERTIES)}
    assert max(lengths) <= 6500 and sum(length > 2000 for length in lengths) > 0.05 * len(lengths)
    assert all(len(found) == 1 for found in prefixes.values()), prefixes  # one prefix per type
    assert len({prefix for found in prefixes.values() for prefix in found}) == len(prefixes)
    assert prefixes["Microsoft.Compute/virtualMachines"] == {"vm"}
    assert "sku" in next(iter(property_sets["Microsoft.Storage/storageAccounts"]))
    assert "sku" not in next(iter(property_sets["Microsoft.Network/virtualNetworks"]))


def _positions(ids) -> Dict[str, int]:
    return {id_: position for position, id_ in enumerate(sorted(ids))}


def test_id_order_carries_no_locality(tenant_2000):
    """As in real graphs: a prefix of the id order is no set of resource groups, and
    linked resources lie far apart in it. (In ARM id order every group is contiguous.)"""
    resources = [row for kind, row in _nodes(tenant_2000) if kind == RESOURCE]
    by_id, by_arm_id = (_positions(row[key] for row in resources) for key in ("id", "original_id"))
    groups = collections.defaultdict(list)
    for row in resources:
        groups[row["resource_group"]].append(row)

    def spans(positions, key):
        return [max(positions[row[key]] for row in rows) - min(positions[row[key]] for row in rows)
                + 1 - len(rows) for rows in groups.values()]  # 0: the group is contiguous

    assert set(spans(by_arm_id, "original_id")) == {0}
    gaps = spans(by_id, "id")
    assert 0 not in gaps
    assert statistics.median(gaps) > len(resources) / 2
    distances = [abs(by_id[row["start"]] - by_id[row["end"]])
                 for kind, row in _relationships(tenant_2000)
                 if kind[2] == kind[3] == "Resource" and kind[1] != "SCAN_SOURCE_NODE"]
    assert len(distances) > 1000
    assert statistics.median(distances) > len(resources) / 5  # ≈ 1/3 for random positions


def test_tagged_with_matches_the_tags_property(tenant_2000):
    tags = {row["id"]: (row["key"], row["value"])
            for kind, row in _nodes(tenant_2000) if kind[1] == "Tag"}
    linked = collections.defaultdict(set)
    for kind, row in _relationships(tenant_2000):
        if kind[1] == "TAGGED_WITH" and kind[2] == "Resource":
            linked[row["start"]].add(tags[row["end"]])
    for kind, row in _nodes(tenant_2000):
        if kind == RESOURCE:
            assert linked.get(row["id"], set()) == set(json.loads(row["tags"]).items())


def test_expected_counts_match_the_rows(tenant_2000):
    spec = DemoTenantSpec("acme", 2000, seed=7)
    counts = expected_counts(spec)
    nodes = collections.Counter(label_key(kind) for kind, _ in _nodes(tenant_2000))
    relationships = collections.Counter(kind[1] for kind, _ in _relationships(tenant_2000))
    assert counts["nodes"] == {key: n for key, n in nodes.items() if key not in SHARED_LABELS}
    assert counts["shared_nodes"] == {key: n for key, n in nodes.items() if key in SHARED_LABELS}
    assert counts["shared_nodes"] == {label: len(ids) for label, ids in shared_node_ids(spec).items()}
    assert counts["relationships"] == dict(relationships)
    assert sum(counts["resources_by_type"].values()) == counts["nodes"]["Resource"] == 2000
    approximate_nodes, approximate_relationships = approximate_counts(DemoTenantSpec("acme", 2000))
    assert abs(approximate_nodes / sum(nodes.values()) - 1) < 0.1
    assert abs(approximate_relationships / sum(relationships.values()) - 1) < 0.1


# --------------------------------------------------------------------------- CLI

@pytest.mark.parametrize("argv", [
    ["--tenant-id", "demo", "--resources", "0"],
    ["--tenant-id", "bad id", "--resources", "10"],
    ["--tenant-id", "demo", "--resources", "10", "--max-concurrent-writes", "0"],
    ["--tenant-id", "demo", "--resources", "many"],
    ["--resources", "10"],
])
def test_cli_rejects_bad_input_with_exit_2(argv, capsys):
    try:
        code = loader.main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    assert code == 2
    assert "error" in capsys.readouterr().err


def test_loader_flags_do_not_leak_into_beam_options():
    """Beam parses the flags of every PipelineOptions subclass of the process."""
    import pipelines.scale_up  # noqa: F401 - its options must coexist with ours
    assert PipelineOptions([]).get_all_options()["runner"] is None


def test_cli_help_documents_the_flags(capsys):
    with pytest.raises(SystemExit) as exit_:
        loader.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--tenant-id", "--resources", "--seed", "--neo4j-uri", "--neo4j-user",
                 "--neo4j-database", "--max-concurrent-writes"):
        assert flag in out


# --------------------------------------------------------------------------- real Neo4j

def _database_counts(connection, tenant_id: str) -> Dict[str, Dict[Any, int]]:
    """A tenant's own nodes by labels, its relationships by type, its resources by
    number of scan links, and its links to each shared node, counted in the database."""
    with connection.open_driver() as driver:
        nodes = driver.execute_query(
            "MATCH (n {tenant_id: $t}) RETURN labels(n) AS labels, count(*) AS n",
            t=tenant_id, database_=connection.database).records
        relationships = driver.execute_query(
            "MATCH (a {tenant_id: $t})-[r]->() RETURN type(r) AS type, count(*) AS n",
            t=tenant_id, database_=connection.database).records
        scans = driver.execute_query(
            "MATCH (r:Resource {tenant_id: $t}) WHERE NOT r:Original "
            "RETURN count { (r)-[:SCAN_SOURCE_NODE]->(:Resource:Original) } AS links, "
            "count(*) AS resources",
            t=tenant_id, database_=connection.database).records
        shared = driver.execute_query(
            "MATCH ({tenant_id: $t})-[r]->(s) WHERE s.tenant_id IS NULL "
            "RETURN labels(s) AS labels, s.id AS id, count(r) AS n",
            t=tenant_id, database_=connection.database).records
    return {"nodes": {":".join(sorted(r["labels"])): r["n"] for r in nodes},
            "relationships": {r["type"]: r["n"] for r in relationships},
            "scan_links": {r["links"]: r["resources"] for r in scans},
            "shared_links": {(":".join(r["labels"]), r["id"]): r["n"] for r in shared}}


def _shared_links(spec: DemoTenantSpec) -> Dict[Tuple[str, str], int]:
    """How many relationships of ``spec``'s rows end at each shared node."""
    return dict(collections.Counter(
        (kind[3], row["end"]) for kind, row in _relationships(_rows(spec))
        if kind[3] in SHARED_LABELS))


def _expected_in_database(spec: DemoTenantSpec) -> Dict[str, Dict[Any, int]]:
    """What ``_database_counts`` must find for ``spec``, from the generator's rows."""
    expected = expected_counts(spec)
    return {"nodes": {":".join(sorted(key.split(":"))): n for key, n in expected["nodes"].items()},
            "relationships": expected["relationships"],
            "scan_links": {1: spec.resources},
            "shared_links": _shared_links(spec)}


def _shared_nodes_in_database(connection) -> Dict[str, set]:
    """``{label: ids}`` of every node without a ``tenant_id``; fails on one that has labels
    other than one shared label or whose id is not unique."""
    with connection.open_driver() as driver:
        records = driver.execute_query(
            "MATCH (n) WHERE n.tenant_id IS NULL RETURN labels(n) AS labels, n.id AS id",
            database_=connection.database).records
    found: Dict[str, set] = {}
    for record in records:
        [label] = record["labels"]
        assert record["id"] not in found.setdefault(label, set()), (label, record["id"])
        found[label].add(record["id"])
    return found


@pytest.mark.neo4j
def test_load_writes_exactly_the_generated_tenant_and_reloads_idempotently(neo4j_graph):
    spec = DemoTenantSpec("helper-demo-test", 300, seed=11)
    beside = DemoTenantSpec("helper-demo-beside", 60, seed=11)
    expected = expected_counts(spec)
    summary_beside = loader.load_demo_tenant(neo4j_graph, beside, max_concurrent_writes=3)
    summary = loader.load_demo_tenant(neo4j_graph, spec, max_concurrent_writes=3)

    assert summary["dead_letters"] == summary_beside["dead_letters"] == 0
    assert summary["nodes_written"] == (sum(expected["nodes"].values())
                                        + sum(expected["shared_nodes"].values()))
    assert summary["relationships_written"] == sum(expected["relationships"].values())
    in_database = _database_counts(neo4j_graph, spec.tenant_id)
    # Every relationship starts at a node of the tenant; equal counts by type mean none
    # was lost (an end missing at write time) and none was merged with another.
    assert in_database == _expected_in_database(spec)
    # One node per shared id of either tenant, linked from both tenants' resources.
    shared_ids = {label: shared_node_ids(spec)[label] | shared_node_ids(beside)[label]
                  for label in SHARED_LABELS}
    assert _shared_nodes_in_database(neo4j_graph) == shared_ids
    beside_counts = _database_counts(neo4j_graph, beside.tenant_id)
    linked_from_both = in_database["shared_links"].keys() & beside_counts["shared_links"].keys()
    assert {label for label, _ in linked_from_both} == set(SHARED_LABELS)
    with neo4j_graph.open_driver() as driver:
        indexed = {(r["labels"][0], tuple(r["properties"])) for r in driver.execute_query(
            "SHOW INDEXES YIELD labelsOrTypes AS labels, properties, type WHERE type = 'RANGE' "
            "RETURN labels, properties", database_=neo4j_graph.database).records}
        crossing = driver.execute_query(
            "MATCH (a)-[r]-(b) WHERE a.tenant_id <> b.tenant_id RETURN count(r) AS n",
            database_=neo4j_graph.database).records[0]["n"]
    assert set(loader.INDEXES) <= indexed
    assert crossing == 0  # between the tenants' own nodes

    again = loader.load_demo_tenant(neo4j_graph, spec, max_concurrent_writes=3,
                                    resources_per_pipeline=100)
    assert again["pipelines"] == 3
    assert again["dead_letters"] == 0 and again["indexes_created"] == []
    assert (again["nodes_written"], again["relationships_written"]) == (
        summary["nodes_written"], summary["relationships_written"])
    assert _database_counts(neo4j_graph, spec.tenant_id) == in_database
    assert _database_counts(neo4j_graph, beside.tenant_id) == _expected_in_database(beside)
    assert _shared_nodes_in_database(neo4j_graph) == shared_ids


def _graph(connection) -> List[str]:
    """Every node and relationship by ids, labels, types and properties (no element ids):
    equal for two databases that hold the same graph."""
    with connection.open_driver() as driver:
        nodes = driver.execute_query(
            "MATCH (n) RETURN labels(n) AS labels, properties(n) AS props",
            database_=connection.database).records
        relationships = driver.execute_query(
            "MATCH (a)-[r]->(b) RETURN type(r) AS type, a.id AS a, b.id AS b, "
            "properties(r) AS props", database_=connection.database).records
    return sorted(json.dumps(record.data(), sort_keys=True) for record in [*nodes, *relationships])


@pytest.mark.neo4j
def test_two_tenants_loaded_in_either_order_give_the_same_graph(neo4j_graph, clear_neo4j):
    first, second = DemoTenantSpec("order-a", 40, seed=3), DemoTenantSpec("order-b", 30, seed=4)
    graphs = []
    for order in ((first, second), (second, first)):
        clear_neo4j()
        for spec in order:
            assert loader.load_demo_tenant(neo4j_graph, spec, max_concurrent_writes=2)[
                "dead_letters"] == 0
        graphs.append(_graph(neo4j_graph))
    assert graphs[0] == graphs[1]
    regions = [row["props"]["id"] for row in map(json.loads, graphs[0])
               if row.get("labels") == ["Region"]]
    assert sorted(regions) == sorted(shared_node_ids(first)["Region"]
                                     | shared_node_ids(second)["Region"])
