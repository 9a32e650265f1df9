"""Bad and odd data, against a real Neo4j: hostile names are refused by name and never
run, odd values are copied exactly, and a run that could not write everything fails
visibly (and is rolled back when asked).

Labels and relationship types that are Cypher injections are rejected by name and
never executed; odd property names and values (unicode, lists, empty strings,
5,000-character JSON, temporal and spatial values) are copied exactly.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import Any, Dict, List

import neo4j
import pytest
from neo4j.spatial import CartesianPoint, WGS84Point
from neo4j.time import Date, DateTime, Duration

from pipelines import scale_up
from tests.support import fingerprint, operation_record, quote, scalar
from transforms.model import NODE_MARKERS, NOT_COPIED_PROPERTIES, RELATIONSHIP_MARKERS
from transforms.replicate import synthetic_suffix


ODD_TENANT = "odd-tenant"
#: Names that would run Cypher if they were pasted into a statement unescaped.
HOSTILE_TYPE = "`X` DETACH DELETE n //"
HOSTILE_LABEL = "Evil`) MATCH (m) DETACH DELETE m //"
ODD_FACTOR = 3
_JSON_PAYLOAD = {"quote": "say \"hi\"", "backslash": "C:\\temp\\", "unicode": "名前 🚀 שלום",
                 "newline": "a\nb", "nested": {"list": [1, 2.5, None, True]}}


def _json_of_length(length: int) -> str:
    """A valid JSON document of exactly ``length`` characters, with escapes and unicode."""
    text = json.dumps({**_JSON_PAYLOAD, "pad": ""}, ensure_ascii=False)
    padded = json.dumps({**_JSON_PAYLOAD, "pad": "x" * (length - len(text))}, ensure_ascii=False)
    assert len(padded) == length
    return padded


ODD_PROPERTIES: Dict[str, Any] = {
    # property names Cypher could only take escaped
    "name with spaces": "spaces",
    "back`tick": "backtick",
    "`) DETACH DELETE n //": "injection as a key",
    "ünïcødé 名前 🚀": "unicode key",
    "dotted.key": "dot",
    "$param": "dollar",
    "123starts_with_digit": "digit",
    # values
    "list_of_strings": ["a", "", "名前", "🚀"],
    "list_of_ints": [1, -2, 3, 2**53 + 1],
    "list_of_floats": [1.5, -0.0, 1e308],
    "list_of_bools": [True, False],
    "empty_list": [],
    "emoji": "🚀🔥 cloud ☁️ 👩‍👩‍👧‍👦 🏳️‍🌈",
    "rtl": "שלום עולם — مرحبا بالعالم",
    "combining": "e\u0301 n\u0303 a\u0308\u0323 Z\u0351\u0352\u0353",
    "control_chars": "tab\tnewline\nnul\u0000bell\u0007",
    "empty": "",
    "whitespace": "  ",
    "properties": _json_of_length(5000),
    "tags": json.dumps({"env": "prod", "owner": "ünïcødé"}, ensure_ascii=False),
    "int_max": 2**63 - 1,
    "int_min": -(2**63),
    "float": 3.141592653589793,
    "bool": False,
    "datetime": DateTime(2024, 5, 6, 7, 8, 9, 123456789, tzinfo=datetime.timezone.utc),
    "local_datetime": DateTime(2024, 5, 6, 7, 8, 9),
    "date": Date(2024, 2, 29),
    "duration": Duration(months=1, days=2, seconds=3, nanoseconds=4),
    "point": CartesianPoint((1.0, 2.0)),
    "geo": WGS84Point((13.4, 52.5, 34.0)),
    "bytes": b"\x00\x01\xff",
}
#: The real-resource claims a template may carry: never copied.
CLAIMS = {"original_id": "/real/id", "original_name": "real-name", "abstracted_id": "abs-1",
          "scan_id": "scan-7"}


def _typed(value: Any) -> Any:
    """A value with its type made explicit, so that 1 and 1.0 or [] of different types differ."""
    if isinstance(value, list):
        return ["list", [_typed(item) for item in value]]
    return [type(value).__name__, value]


def _typed_map(props: Dict[str, Any]) -> Dict[str, Any]:
    return {key: _typed(value) for key, value in props.items()}


def build_odd_tenant(driver: neo4j.Driver) -> None:
    """A small tenant with odd data, hostile names among it, written with plain Cypher."""
    base = {"tenant_id": ODD_TENANT, "resource_group": "rg-odd", "location": "westeurope",
            "subscription_id": "sub-odd"}
    templates = [
        # every odd property, the real-resource claims, an extra label
        ("odd-all", ["Resource", "VirtualMachine"],
         {**base, **ODD_PROPERTIES, **CLAIMS, "name": "all", "type": "Microsoft.Compute/virtualMachines"}),
        # the bare minimum: what is absent must stay absent (no name, no location...)
        ("odd-bare", ["Resource"], {"tenant_id": ODD_TENANT, "type": "Microsoft.Web/sites"}),
        # an id and a name that are Cypher-ish too: values are parameters, so they are data
        ("odd-'quoted' `id` \" } ) //", ["Resource"],
         {**base, "name": "it's \"quoted\" `x`", "type": "Microsoft.Web/sites"}),
        # the two ends of the hostile relationship type, also linked by an odd DEPENDS_ON
        ("odd-a", ["Resource"], {**base, "name": "a", "type": "Microsoft.Network/virtualNetworks"}),
        ("odd-b", ["Resource"], {**base, "name": "b", "type": "Microsoft.Network/virtualNetworks/subnets"}),
        # a hostile label: this template must be rejected
        ("odd-evil", ["Resource", HOSTILE_LABEL], {**base, "name": "evil", "type": "Microsoft.Web/sites"}),
    ]
    with driver.session(database="neo4j") as session:
        session.run("CREATE (:Tenant {id: $t, tenant_id: $t}), (:ResourceGroup {id: 'rg-odd', tenant_id: $t}), "
                    "(:Region {id: 'westeurope-odd'})", t=ODD_TENANT).consume()
        for template_id, labels, props in templates:
            label_text = "".join(f":{quote(label)}" for label in labels)
            session.run(f"CREATE (n{label_text}) SET n = $props, n.id = $id",
                        props=props, id=template_id).consume()
            session.run("MATCH (g:ResourceGroup {id: 'rg-odd'}), (n:Resource {id: $id}) "
                        "CREATE (g)-[:CONTAINS]->(n)", id=template_id).consume()
        session.run(
            "MATCH (all:Resource {id: 'odd-all'}), (r:Region {id: 'westeurope-odd'}) "
            "CREATE (all)-[:LOCATED_IN {since: 'ünïcødé', weights: [1, 2]}]->(r), "
            "(all)-[:SCAN_SOURCE_NODE]->(:Resource:Original {id: '/real/id', name: 'real-name', "
            "tenant_id: $t, type: 'Microsoft.Compute/virtualMachines'})", t=ODD_TENANT).consume()
        session.run(
            f"MATCH (a:Resource {{id: 'odd-a'}}), (b:Resource {{id: 'odd-b'}}), (e:Resource {{id: 'odd-evil'}}) "
            f"CREATE (a)-[:{quote(HOSTILE_TYPE)} {{note: 'must never run'}}]->(b), "
            "(a)-[:DEPENDS_ON $props]->(b), (e)-[:USES]->(a)",
            props={"odd key`": "v", "list": ["x", ""], "empty": "", "emoji": "🚀"}).consume()


@pytest.fixture(scope="module")
def odd_run(neo4j_connection, neo4j_driver, clear_neo4j, tmp_path_factory):
    """The odd tenant, scaled once in this process; its stderr, exit code and report."""
    clear_neo4j()
    build_odd_tenant(neo4j_driver)
    before = fingerprint(neo4j_driver)
    templates = {record["id"]: record for record in neo4j_driver.execute_query(
        "MATCH (t:Resource {tenant_id: $t}) WHERE NOT t:Original "
        "RETURN t.id AS id, labels(t) AS labels, properties(t) AS props", t=ODD_TENANT).records}
    folder = tmp_path_factory.mktemp("odd")
    report_path, stderr_path = folder / "report.json", folder / "stderr.txt"
    # main() logs to the sys.stderr of the moment: a file, so the test can read it.
    with open(stderr_path, "w", encoding="utf-8") as err:
        saved, sys.stderr = sys.stderr, err
        try:
            code = scale_up.run(["--tenant-id", ODD_TENANT, "--scale-factor", str(ODD_FACTOR),
                                  "--operation-id", "odd-op", "--report", str(report_path)])
        finally:
            sys.stderr = saved
            for handler in logging.root.handlers[:]:
                if getattr(handler, "stream", None) is err:
                    logging.root.removeHandler(handler)
    return {"code": code, "stderr": stderr_path.read_text(encoding="utf-8"),
            "report": json.loads(report_path.read_text()) if report_path.exists() else None,
            "before": before, "templates": templates}


def test_hostile_label_and_relationship_type_are_rejected_by_name_and_never_run(odd_run, neo4j_driver):
    assert odd_run["code"] == 1
    report = odd_run["report"]
    assert report["status"] == "failed" and report["errors"]
    # The plan refuses them before anything is written: the template with the label, the
    # relationship with the type, and the relationship to the refused template.
    assert report["dead_letters"] == 3
    not_copied = {p["reason"]: p for kind in ("templates", "relationships")
                  for p in report["not_copied"][kind]}
    assert not_copied["a label that may not be written into Cypher"]["examples"] == [
        f"odd-evil {[HOSTILE_LABEL]}"]
    assert not_copied["a relationship type that may not be written into Cypher"]["examples"] == [
        f"{HOSTILE_TYPE} (x1)"]
    assert not_copied["the other end is a resource of the selection that is not copied"]["count"] == 1
    stderr = odd_run["stderr"]
    assert HOSTILE_LABEL in stderr and HOSTILE_TYPE in stderr
    assert operation_record(neo4j_driver, "odd-op")["status"] == "failed"
    # Nothing was deleted or changed; the hostile relationship is still there, once.
    assert fingerprint(neo4j_driver) == odd_run["before"]
    assert scalar(neo4j_driver, f"MATCH ()-[r:{quote(HOSTILE_TYPE)}]->() RETURN count(r)") == 1
    # The template with the hostile label has no copy; neither has its relationship.
    assert scalar(neo4j_driver, "MATCH (n:Resource {template_source_id: 'odd-evil'}) RETURN count(n)") == 0
    assert scalar(neo4j_driver, "MATCH ()-[r:USES]->() WHERE r.scale_operation_id = 'odd-op' "
                                "RETURN count(r)") == 0


def test_the_rest_of_the_odd_tenant_is_copied(odd_run, neo4j_driver):
    templates = odd_run["templates"]
    copies = neo4j_driver.execute_query(
        "MATCH (n:Resource {scale_operation_id: 'odd-op'}) "
        "RETURN n.id AS id, n.template_source_id AS template, labels(n) AS labels, "
        "properties(n) AS props ORDER BY id").records
    by_template: Dict[str, List[Any]] = {}
    for copy in copies:
        by_template.setdefault(copy["template"], []).append(copy)
    assert {t: len(c) for t, c in by_template.items()} == {
        t: ODD_FACTOR - 1 for t in templates if t != "odd-evil"}
    for template_id, template_copies in by_template.items():
        template = templates[template_id]
        for copy in template_copies:
            props = dict(copy["props"])
            suffix = synthetic_suffix("odd-op", template_id, props["scale_replica"])
            assert copy["id"] == template_id + suffix
            assert sorted(copy["labels"]) == sorted(template["labels"])
            if "name" in template["props"]:
                assert props.pop("name") == template["props"]["name"] + suffix
            else:
                assert "name" not in props  # absent stays absent
            assert props.pop("id") == copy["id"]
            assert props.pop("synthetic") is True and props.pop("scale_operation_id") == "odd-op"
            assert props.pop("template_source_id") == template_id
            for marker in NODE_MARKERS:
                props.pop(marker, None)
            expected = {k: v for k, v in template["props"].items()
                        if k not in NOT_COPIED_PROPERTIES and k not in ("id", "name")}
            # Exactly the template's properties, values and types: nothing added, lost
            # or converted (1 vs 1.0, list types, unicode normalisation, temporal types).
            assert _typed_map(props) == _typed_map(expected), template_id
    # What was written is what the test put in, not only what the template reads back as.
    all_copy = by_template["odd-all"][0]["props"]
    for key, value in ODD_PROPERTIES.items():
        assert _typed(all_copy[key]) == _typed(value), key
    assert len(all_copy["properties"]) == 5000 and json.loads(all_copy["properties"])["unicode"]
    assert not set(CLAIMS) & set(all_copy)
    bare = by_template["odd-bare"][0]["props"]
    assert set(bare) == {"id", "tenant_id", "type", *NODE_MARKERS}


def test_the_relationships_of_the_odd_tenant_are_copied(odd_run, neo4j_driver):
    rows = neo4j_driver.execute_query(
        "MATCH (a)-[r]->(b) WHERE r.scale_operation_id = 'odd-op' "
        "RETURN type(r) AS type, coalesce(a.template_source_id, a.id) AS start, "
        "coalesce(b.template_source_id, b.id) AS end, a.scale_replica AS ra, b.scale_replica AS rb, "
        "properties(r) AS props").records
    copied: Dict[tuple, int] = {}
    for row in rows:
        key = (row["type"], row["start"], row["end"])
        copied[key] = copied.get(key, 0) + 1
        if row["ra"] is not None and row["rb"] is not None:
            assert row["ra"] == row["rb"]  # both ends in the same replica
        props = {k: v for k, v in row["props"].items() if k not in RELATIONSHIP_MARKERS}
        template = neo4j_driver.execute_query(
            "MATCH (a)-[r]->(b) WHERE elementId(r) = $id RETURN properties(r) AS p",
            id=row["props"]["template_source_rel_id"]).records[0]["p"]
        assert _typed_map(props) == _typed_map(template)
    copies = ODD_FACTOR - 1
    expected = {("CONTAINS", "rg-odd", t): copies for t in odd_run["templates"] if t != "odd-evil"}
    expected[("LOCATED_IN", "odd-all", "westeurope-odd")] = copies
    expected[("DEPENDS_ON", "odd-a", "odd-b")] = copies
    assert copied == expected


def test_report_counts_only_what_was_written(odd_run):
    report = odd_run["report"]
    in_database = {what: sum(counts.values()) for what, counts in report["in_database"].items()}
    assert report["written"] == in_database


# --------------------------------------------------------------------------- rollback on failure


def test_a_failed_run_is_rolled_back_when_asked(neo4j_graph, neo4j_driver, tmp_path):
    neo4j_driver.execute_query(
        "UNWIND range(1, 30) AS i "
        "CREATE (r:Resource {id: 'rb/' + i, name: 'r' + i, tenant_id: 'rb', type: 'T'}) "
        "WITH r, i WHERE i = 7 SET r:`Bad Label`")
    report_path = tmp_path / "report.json"
    code = scale_up.run(["--tenant-id", "rb", "--scale-factor", "3", "--operation-id", "op-rb",
                          "--rollback-on-failure", "--report", str(report_path)])
    report = json.loads(report_path.read_text())
    assert code == 1
    assert report["status"] == "rolled_back" and report["dead_letters"] == 1
    assert report["rolled_back"]["nodes_deleted"] == 58  # 29 good templates x 2 copies
    remaining = neo4j_driver.execute_query(
        "MATCH (n:Resource {scale_operation_id: 'op-rb'}) RETURN count(n)").records[0][0]
    status = neo4j_driver.execute_query(
        "MATCH (o:ScaleOperation {id: 'op-rb'}) RETURN o.status").records[0][0]
    assert remaining == 0 and status == "rolled_back"
    assert neo4j_driver.execute_query(
        "MATCH (n:Resource {tenant_id: 'rb'}) RETURN count(n)").records[0][0] == 30
