"""Read: the templates of a scale-up and the relationships they bring, part by part.

``ReadTemplates`` takes the parts the plan packed (``transforms.batch.TemplatePart``:
whole components of templates, by internal node id) and reads each part in its own
read transactions, after the reshuffle that ``beam.Create`` does, so that a runner
can spread the parts over workers. Neither the launcher nor one transaction ever holds
the whole tenant.

A part comes out as one ``PartTemplates``: its templates ``{"node", "id", "labels",
"props"}`` in the part's order, and the relationships that touch them, each exactly
once, as ``TemplateRelationship``s. Relationships the plan refuses (an unsafe type, an
end that is a selected resource but no template) are not read: the plan counted them
as dead letters.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, NamedTuple, Optional

import apache_beam as beam
import neo4j
from apache_beam.metrics import Metrics

from transforms.batch import TemplatePart
from transforms.connection import Neo4jConnection, run_transaction
from transforms.cypher import IDENTIFIER_PATTERN
from transforms.model import (
    END_EXCLUDED,
    END_TEMPLATE,
    METRICS_NAMESPACE,
    OTHER_END_KIND,
    Metric,
    TemplateSelection,
    template_predicate,
)

#: The relationships that touch template ``t``, each exactly once: every relationship
# that leaves a template (to anything), and every relationship that reaches a template
# from a node that is not a template. Relationships with synthetic nodes of other
# operations and the scan links to originals are not part of the template subgraph.
TEMPLATE_RELATIONSHIPS = f"""
CALL {{
  WITH t
  MATCH (t)-[r]->(o)
  WHERE NOT type(r) IN $not_copied AND coalesce(o.synthetic, false) = false
  RETURN r, o, true AS outgoing
  UNION ALL
  WITH t
  MATCH (o)-[r]->(t)
  WHERE NOT type(r) IN $not_copied AND coalesce(o.synthetic, false) = false
    AND NOT {template_predicate('o')}
  RETURN r, o, false AS outgoing
}}
"""

_PART = f"""
UNWIND $nodes AS node
MATCH (t:Resource) WHERE id(t) = node AND {template_predicate('t')}
"""

_READ_PART_TEMPLATES = _PART + "RETURN id(t) AS node, t.id AS id, labels(t) AS labels, properties(t) AS props"

_READ_PART_RELATIONSHIPS = (
    _PART
    + TEMPLATE_RELATIONSHIPS
    + f"""
WITH t, r, o, outgoing, {OTHER_END_KIND} AS end
WHERE end <> '{END_EXCLUDED}' AND type(r) =~ $identifier
RETURN t.id AS template_id, outgoing, type(r) AS type, properties(r) AS props,
       elementId(r) AS element_id, elementId(o) AS other_element_id,
       CASE WHEN end = '{END_TEMPLATE}' THEN o.id END AS other_template_id
"""
)


class TemplateRelationship(NamedTuple):
    """One relationship of a template: the template's ``id``, its direction from the
    template, type, properties, element id, the other end's element id, and the other
    end's ``id`` when it is a template (None: a shared node, linked as it is)."""

    template_id: str
    outgoing: bool
    type: str
    props: Dict[str, Any]
    element_id: str
    other_element_id: str
    other_template_id: Optional[str]


class PartTemplates(NamedTuple):
    """A part as read: the plan's part, its templates in the part's order, their
    relationships."""

    part: TemplatePart
    templates: List[Dict[str, Any]]
    relationships: List[TemplateRelationship]


class TemplatesChangedError(RuntimeError):
    """A part no longer reads as planned: the templates changed since the plan."""


class _ReadPartFn(beam.DoFn):
    """Reads one part: its templates, then the relationships that touch them."""

    def __init__(self, connection: Neo4jConnection, selection: TemplateSelection) -> None:
        self._connection = connection
        self._selection = selection

    def setup(self) -> None:
        self._driver = self._connection.open_driver()
        self._templates_read = Metrics.counter(METRICS_NAMESPACE, Metric.TEMPLATES_READ)
        self._relationships_read = Metrics.counter(
            METRICS_NAMESPACE, Metric.TEMPLATE_RELATIONSHIPS_READ)
        self._parts_read = Metrics.counter(METRICS_NAMESPACE, Metric.TEMPLATE_PARTS_READ)

    def process(self, part: TemplatePart) -> Iterator[PartTemplates]:
        read = read_part(self._driver, self._connection.database, self._selection, part)
        self._templates_read.inc(len(read.templates))
        self._relationships_read.inc(len(read.relationships))
        self._parts_read.inc()
        yield read

    def teardown(self) -> None:
        driver = getattr(self, "_driver", None)
        if driver is not None:
            driver.close()


def read_part(driver: neo4j.Driver, database: str, selection: TemplateSelection,
              part: TemplatePart) -> PartTemplates:
    """One part's templates, in the part's order, and their relationships, in read
    transactions of their own. Raises ``TemplatesChangedError`` when the part's nodes
    are no longer all templates."""
    node_ids = part.node_ids()
    params = {**selection.parameters(), "nodes": node_ids, "identifier": IDENTIFIER_PATTERN}
    templates, relationships = (
        run_transaction(driver, database, lambda tx, query=query: tx.run(query, params).data(),
                        neo4j.READ_ACCESS, f"a read of part {part.index}")[0]
        for query in (_READ_PART_TEMPLATES, _READ_PART_RELATIONSHIPS))
    if len(templates) != len(node_ids):
        raise TemplatesChangedError(
            f"part {part.index} of the plan has {len(node_ids)} templates, {len(templates)} "
            "read as templates now: the templates changed since the plan; run the scale-up again")
    by_node = {template["node"]: template for template in templates}
    return PartTemplates(part, [by_node[node] for node in node_ids],
                         [TemplateRelationship(**row) for row in relationships])


class ReadTemplates(beam.PTransform):
    """Parts (``TemplatePart``) → one ``PartTemplates`` each; see the module docstring."""

    def __init__(self, connection: Neo4jConnection, selection: TemplateSelection,
                 parts: List[TemplatePart]) -> None:
        super().__init__()
        if not parts:
            raise ValueError("parts must not be empty: plan the templates first")
        self._connection = connection
        self._selection = selection
        self._parts = list(parts)

    def expand(self, pbegin):
        # Create reshuffles what it creates, which spreads the parts over the workers.
        return (
            pbegin
            | "Parts" >> beam.Create(self._parts)
            | "ReadPart" >> beam.ParDo(_ReadPartFn(self._connection, self._selection))
        )
