"""Validate a scale-up in the database: the invariants of README's "What it produces",
over every node it made.

    python -m pipelines.validate --operation-id ID [--json]

Checks, each with a count of offenders and the first examples:

* ``counts_by_type``: new nodes and relationships by type equal what the operation's
  recorded parameters ask for on the current templates;
* ``unique_ids``: no two synthetic nodes share an ``id`` or a ``name``;
* ``nodes_match_templates``: every synthetic node has its template, the template's
  labels (minus ``:Original``) and properties (minus the real-resource claims), its
  markers, and an id/name that extend the template's;
* ``relationships_one_to_one``: every synthetic node's relationships correspond one
  to one to its template's: same type, direction, properties and template
  relationship, the neighbour being the same replica of the template's neighbour or
  the same node (which also rules out cross products and duplicates);
* ``no_orphan_relationships``: every relationship marked with the operation touches
  one of its nodes.
* ``no_link_to_real_resources``: no node of the operation has a relationship (of any
  origin) with one of the operation's templates, a real resource of its tenant (and of
  its types, under a type filter: resources of other types are shared nodes then). Such
  a link would change the real subgraph the tenant's tools read.

The checks read in pages of synthetic nodes (keyset pagination on ``id``), so memory
and transaction size stay bounded at millions of nodes.

Exit codes: 0 all checks pass, 1 a check fails, 2 bad input (unknown operation).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import sys
from typing import Any, Dict, List, Optional, Sequence

import neo4j

from pipelines.cli import CommandParser, add_connection_arguments, run_command
from pipelines.operation import record
from pipelines.plan import plan_scale_up
from transforms.model import (
    NODE_MARKERS,
    NOT_COPIED_LABELS,
    NOT_COPIED_PROPERTIES,
    RELATIONSHIP_KEY,
    RELATIONSHIP_MARKERS,
    RESOURCE_LABEL,
    TemplateSelection,
    real_resource_predicate,
    selected_predicate,
    template_predicate,
)
from transforms.cypher import IDENTIFIER_PATTERN

PAGE_SIZE = 2_000

_PAGE = """
MATCH (s:Resource) WHERE s.scale_operation_id = $op AND s.id > $after
WITH s ORDER BY s.id LIMIT $page
OPTIONAL MATCH (t:Resource {id: s.template_source_id})
WHERE """ + real_resource_predicate("t") + """
CALL {
  WITH s
  OPTIONAL MATCH (s)-[r]-(x)
  WITH r, x, CASE WHEN r IS NULL THEN null ELSE [
    type(r), startNode(r) = s, properties(r), r[$key],
    CASE WHEN x.scale_operation_id = $op AND x.scale_replica = s.scale_replica
         THEN x.template_source_id ELSE elementId(x) END] END AS signature
  RETURN collect(signature) AS copy_relationships
}
CALL {
  WITH s, t
  OPTIONAL MATCH (t)-[r]-(o)
  WHERE NOT type(r) IN $not_copied AND coalesce(o.synthetic, false) = false
    AND type(r) =~ $identifier AND NOT (""" + selected_predicate("o") + """
                                        AND NOT """ + template_predicate("o") + """)
  WITH t, r, o, """ + template_predicate("o") + """ AS to_template,
       EXISTS { MATCH (c:Resource {template_source_id: o.id})
                WHERE c.scale_operation_id = $op AND c.scale_replica = s.scale_replica } AS has_copy
  // A relationship to a template without a copy in this replica is left out.
  WITH t, r, o, CASE WHEN r IS NULL OR (to_template AND NOT has_copy) THEN null ELSE [
    type(r), startNode(r) = t, properties(r), elementId(r),
    CASE WHEN to_template THEN o.id ELSE elementId(o) END] END AS signature
  RETURN collect(signature) AS template_relationships
}
RETURN s.id AS id, labels(s) AS labels, properties(s) AS props,
       t.id AS template_id, labels(t) AS template_labels, properties(t) AS template_props,
       copy_relationships, template_relationships
"""

#: ``no_link_to_real_resources``: one streamed query over the relationships of the
#: operation's nodes; each one to a template is an offender, named by ids and type.
_LINKS_TO_TEMPLATES = """
MATCH (s:Resource {scale_operation_id: $op})-[r]-(t)
WHERE """ + template_predicate("t") + """
RETURN coalesce(s.id, elementId(s))
       + CASE WHEN startNode(r) = s THEN ' -[' + type(r) + ']-> ' ELSE ' <-[' + type(r) + ']- ' END
       + 'real resource ' + coalesce(t.id, elementId(t)) + ' (' + coalesce(t.type, 'no type') + ')'
       AS example
"""


@dataclasses.dataclass
class Check:
    """One invariant: how many offenders, and the first few."""

    name: str
    problems: int = 0
    examples: List[str] = dataclasses.field(default_factory=list)

    def fail(self, example: str, max_examples: int) -> None:
        self.problems += 1
        if len(self.examples) < max_examples:
            self.examples.append(example)

    @property
    def ok(self) -> bool:
        return self.problems == 0


@dataclasses.dataclass
class ValidationResult:
    operation_id: str
    nodes_checked: int
    checks: List[Check]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "operation_id": self.operation_id,
            "ok": self.ok,
            "nodes_checked": self.nodes_checked,
            "checks": {c.name: {"ok": c.ok, "problems": c.problems, "examples": c.examples}
                       for c in self.checks},
        }


def _signature(relationship: List[Any], strip: Sequence[str]) -> str:
    rel_type, outgoing, props, source_rel, neighbour = relationship
    props = {k: v for k, v in props.items() if k not in strip}
    return json.dumps([rel_type, outgoing, props, source_rel, neighbour], sort_keys=True, default=str)


def _check_node(row: Dict[str, Any], operation_id: str, check: Check, max_examples: int) -> None:
    node_id, template_id = row["id"], row["template_id"]
    if template_id is None:
        check.fail(f"{node_id}: its template {row['props'].get('template_source_id')!r} is "
                   "missing or not a template", max_examples)
        return
    props, template = row["props"], row["template_props"]
    expected_labels = sorted(set(row["template_labels"]) - NOT_COPIED_LABELS | {RESOURCE_LABEL})
    suffix = node_id[len(template_id):]
    problems = []
    if sorted(row["labels"]) != expected_labels:
        problems.append(f"labels {sorted(row['labels'])} != {expected_labels}")
    if not (node_id.startswith(template_id) and suffix.startswith("-syn-")):
        problems.append("id does not extend the template's id")
    if isinstance(template.get("name"), str) and props.get("name") != template["name"] + suffix:
        problems.append("name does not extend the template's name like the id")
    if props.get("synthetic") is not True or props.get("scale_operation_id") != operation_id:
        problems.append("markers synthetic/scale_operation_id missing")
    if not all(props.get(marker) is not None for marker in NODE_MARKERS):
        problems.append("a marker is missing")
    copied = {k: v for k, v in props.items() if k not in NODE_MARKERS and k not in ("id", "name")}
    expected = {k: v for k, v in template.items()
                if k not in NOT_COPIED_PROPERTIES and k not in ("id", "name")}
    if copied != expected:
        differing = sorted(k for k in set(copied) | set(expected) if copied.get(k) != expected.get(k))
        problems.append(f"properties differ from the template's: {differing}")
    if problems:
        check.fail(f"{node_id}: " + "; ".join(problems), max_examples)


def _check_relationships(row: Dict[str, Any], check: Check, max_examples: int) -> None:
    copies = collections.Counter(_signature(r, RELATIONSHIP_MARKERS) for r in row["copy_relationships"])
    expected = collections.Counter(_signature(r, ()) for r in row["template_relationships"])
    if copies != expected:
        missing = list((expected - copies).elements())[:2]
        unexpected = list((copies - expected).elements())[:2]
        check.fail(f"{row['id']}: missing {missing}, unexpected {unexpected}", max_examples)


def _count_check(session, name, query, params, max_examples) -> Check:
    check = Check(name)
    for row in session.run(query, params):
        check.fail(row["example"], max_examples)
    return check


def validate_operation(driver: neo4j.Driver, database: str, operation_id: str,
                       max_examples: int = 5, page_size: int = PAGE_SIZE) -> ValidationResult:
    """Run every check on ``operation_id``; raises ``UnknownOperationError``."""
    operation = record.get_operation(driver, database, operation_id)
    plan = _plan_of(driver, database, operation)
    params = {**plan.selection.parameters(), "op": operation_id, "key": RELATIONSHIP_KEY,
              "identifier": IDENTIFIER_PATTERN} if plan else None
    with driver.session(database=database, default_access_mode=neo4j.READ_ACCESS) as session:
        counts = _check_counts(driver, database, plan, operation_id, max_examples)
        if params is None:  # rolled back: nothing may be left, which counts_by_type checks
            params = {**_selection_of(operation).parameters(), "op": operation_id,
                      "key": RELATIONSHIP_KEY, "identifier": IDENTIFIER_PATTERN}
        unique = _count_check(session, "unique_ids", """
            MATCH (n:Resource {scale_operation_id: $op})
            WITH n.id AS id, count(*) AS copies WHERE copies > 1
            RETURN id + ' x' + toString(copies) AS example
            UNION ALL
            MATCH (n:Resource {scale_operation_id: $op}) WHERE n.name IS NOT NULL
            WITH n.name AS name, count(*) AS copies WHERE copies > 1
            RETURN 'name ' + name + ' x' + toString(copies) AS example""", params, max_examples)
        orphans = _count_check(session, "no_orphan_relationships", """
            MATCH (a)-[r]->(b) WHERE r.scale_operation_id = $op
              AND coalesce(a.scale_operation_id, '') <> $op AND coalesce(b.scale_operation_id, '') <> $op
            RETURN elementId(r) + ' ' + type(r) AS example""", params, max_examples)
        real_links = _count_check(session, "no_link_to_real_resources", _LINKS_TO_TEMPLATES,
                                  params, max_examples)
        nodes, relationships = Check("nodes_match_templates"), Check("relationships_one_to_one")
        checked, after = 0, ""
        while True:
            rows = session.run(_PAGE, {**params, "after": after, "page": page_size}).data()
            for row in rows:
                _check_node(row, operation_id, nodes, max_examples)
                _check_relationships(row, relationships, max_examples)
            checked += len(rows)
            if len(rows) < page_size:
                break
            after = rows[-1]["id"]
    return ValidationResult(operation_id, checked,
                            [counts, unique, nodes, relationships, orphans, real_links])


def _selection_of(operation: Dict[str, Any]) -> TemplateSelection:
    types = (operation.get("parameters") or {}).get("resource_types")
    return TemplateSelection(operation["tenant_id"], tuple(types) if types else None)


def _plan_of(driver: neo4j.Driver, database: str, operation: Dict[str, Any]):
    """The operation's plan on the current templates (None once it was rolled back)."""
    if operation["status"] == record.ROLLED_BACK:
        return None
    parameters = operation.get("parameters") or {}
    return plan_scale_up(driver, database, _selection_of(operation),
                         parameters.get("scale_factor"), parameters.get("target_count"),
                         max_new_nodes=10**12)


def _check_counts(driver, database, plan, operation_id, max_examples) -> Check:
    """What is in the database against what the recorded request asks of the current
    templates (nothing at all once the operation was rolled back: ``plan`` None)."""
    check = Check("counts_by_type")
    expected_nodes = plan.new_nodes_by_type if plan else {}
    expected_relationships = plan.new_relationships_by_type if plan else {}
    written = record.written_by_type(driver, database, operation_id)
    nodes, relationships = written["nodes"], written["relationships"]
    for what, expected, actual in (("nodes", expected_nodes, nodes),
                                   ("relationships", expected_relationships, relationships)):
        for name in sorted(set(expected) | set(actual), key=str):
            if expected.get(name, 0) != actual.get(name, 0):
                check.fail(f"{what} of type {name}: {actual.get(name, 0)} in the database, "
                           f"{expected.get(name, 0)} expected", max_examples)
    return check


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = CommandParser(prog="python -m pipelines.validate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--operation-id", required=True, help="the scale operation to validate")
    parser.add_argument("--max-examples", type=int, default=5,
                        help="offenders shown per check (1-1000, default 5)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    add_connection_arguments(parser)
    args = parser.parse_args(argv)
    if not 1 <= args.max_examples <= 1000:
        parser.error(f"--max-examples must be from 1 to 1000, got {args.max_examples}")

    def command(driver: neo4j.Driver, database: str) -> int:
        result = validate_operation(driver, database, args.operation_id, args.max_examples)
        if args.json:
            print(json.dumps(result.to_dict(), sort_keys=True))
        else:
            print(f"operation {result.operation_id}: {result.nodes_checked} synthetic nodes checked")
            for check in result.checks:
                print(f"  {'ok  ' if check.ok else 'FAIL'} {check.name}"
                      + ("" if check.ok else f": {check.problems} problems"))
                for example in check.examples:
                    print(f"       {example}")
        return 0 if result.ok else 1

    return run_command(args, command)


if __name__ == "__main__":
    sys.exit(main())
