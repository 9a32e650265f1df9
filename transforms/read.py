"""Read: the templates of a scale-up and the relationships they bring, chunk by chunk.

``ReadTemplates`` takes the read chunks the plan (``pipelines.plan``) cut from the
templates' ``id`` order and reads each chunk in its own read transactions, after a
reshuffle so that a runner can spread the chunks over workers. Neither the launcher
nor one transaction ever holds the whole tenant.

A template is ``{"id", "labels", "props"}``; a template relationship is
``{"template_id", "template_element_id", "resource_group", "outgoing", "type",
"props", "element_id", "other_element_id", "other_template_id"}``
(``other_template_id`` is None when the other end is not a template: a shared node,
or a resource outside the selection).
"""

from __future__ import annotations

from typing import Dict, Iterator, List, Sequence, Tuple

import apache_beam as beam
import neo4j
from apache_beam.metrics import Metrics

from transforms.connection import Neo4jConnection
from transforms.model import METRICS_NAMESPACE, Metric, TemplateSelection, template_predicate

TEMPLATES_TAG = "templates"
RELATIONSHIPS_TAG = "relationships"

#: The relationships that touch templates, each exactly once: every relationship that
# leaves a template (to anything), and every relationship that reaches a template from
# a node that is not a template. Relationships with synthetic nodes of other operations
# and the scan links to originals are not part of the template subgraph.
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

_CHUNK = f"""
MATCH (t:Resource) WHERE t.id >= $first_id AND {template_predicate('t')}
WITH t ORDER BY t.id LIMIT $count
"""

_READ_CHUNK_TEMPLATES = _CHUNK + "RETURN t.id AS id, labels(t) AS labels, properties(t) AS props"

_READ_CHUNK_RELATIONSHIPS = (
    _CHUNK
    + TEMPLATE_RELATIONSHIPS
    + f"""
RETURN t.id AS template_id, elementId(t) AS template_element_id,
       t.resource_group AS resource_group, outgoing,
       type(r) AS type, properties(r) AS props, elementId(r) AS element_id,
       elementId(o) AS other_element_id,
       CASE WHEN {template_predicate('o')} THEN o.id END AS other_template_id
"""
)


class _ReadChunkFn(beam.DoFn):
    """Reads one chunk of templates and the relationships that touch them."""

    def __init__(self, connection: Neo4jConnection, selection: TemplateSelection) -> None:
        self._connection = connection
        self._selection = selection

    def setup(self) -> None:
        self._driver = self._connection.open_driver()
        self._templates_read = Metrics.counter(METRICS_NAMESPACE, Metric.TEMPLATES_READ)
        self._relationships_read = Metrics.counter(
            METRICS_NAMESPACE, Metric.TEMPLATE_RELATIONSHIPS_READ)

    def process(self, chunk: Tuple[str, int]) -> Iterator:
        first_id, count = chunk
        params = {**self._selection.parameters(), "first_id": first_id, "count": count}
        with self._driver.session(
            database=self._connection.database, default_access_mode=neo4j.READ_ACCESS
        ) as session:
            templates = session.execute_read(_fetch_all, _READ_CHUNK_TEMPLATES, params)
            relationships = session.execute_read(_fetch_all, _READ_CHUNK_RELATIONSHIPS, params)
        self._templates_read.inc(len(templates))
        self._relationships_read.inc(len(relationships))
        yield from templates
        for relationship in relationships:
            yield beam.pvalue.TaggedOutput(RELATIONSHIPS_TAG, relationship)

    def teardown(self) -> None:
        driver = getattr(self, "_driver", None)
        if driver is not None:
            driver.close()


def _fetch_all(tx: neo4j.ManagedTransaction, query: str, params: Dict[str, object]) -> List[dict]:
    return [record.data() for record in tx.run(query, params)]


class ReadTemplates(beam.PTransform):
    """Read chunks ``(first template id, count)`` → templates (main output
    ``templates``) and the relationships that touch them (output ``relationships``);
    the shapes are in the module docstring."""

    def __init__(self, connection: Neo4jConnection, selection: TemplateSelection,
                 chunks: Sequence[Tuple[str, int]]) -> None:
        super().__init__()
        if not chunks:
            raise ValueError("chunks must not be empty: plan the templates first")
        self._connection = connection
        self._selection = selection
        self._chunks = list(chunks)

    def expand(self, pbegin):
        return (
            pbegin
            | "Chunks" >> beam.Create(self._chunks)
            | "SpreadChunks" >> beam.Reshuffle()
            | "ReadChunk" >> beam.ParDo(_ReadChunkFn(self._connection, self._selection)).with_outputs(
                RELATIONSHIPS_TAG, main=TEMPLATES_TAG
            )
        )


