"""Read the templates of a scale-up: which resources, how many copies, in which chunks.

A template is a tenant's abstracted, real resource: ``:Resource``, not ``:Original``,
not synthetic, with the tenant's ``tenant_id`` and, if a type filter is given, one of
those types. Templates are ordered by ``id``; that order decides everything that must
be deterministic (the copies each template gets, the chunks it is read in).

Planning (``plan_templates``) runs before the pipeline is built and streams the
ordered ids once, keeping only chunk boundaries, so neither the launcher nor one
transaction ever holds the whole tenant. ``ReadTemplates`` then reads each chunk in
its own transactions, after a reshuffle so that a runner can spread the chunks over
workers.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam
import neo4j
from apache_beam.metrics import Metrics

from transforms.batch_size import adaptive_batch_size
from transforms.connection import Neo4jConnection

TEMPLATES_TAG = "templates"
RELATIONSHIPS_TAG = "relationships"

#: Relationship types that are never copied: a copy is not the scan of anything.
NOT_COPIED_RELATIONSHIPS = ("SCAN_SOURCE_NODE",)


def _is_template(variable: str) -> str:
    """Cypher predicate: ``variable`` is a template of ``$tenant_id`` (and ``$types``)."""
    v = variable
    return (
        f"({v}:Resource AND NOT {v}:Original AND coalesce({v}.synthetic, false) = false "
        f"AND {v}.tenant_id = $tenant_id AND ($types IS NULL OR {v}.type IN $types))"
    )


# Copies of template t (see CopyRule), and copies of a template relationship: as many
# as the end with more copies has (o is the other end, a template or not).
_COPIES = (
    "$base_copies + CASE WHEN $extra_copy_below_id IS NOT NULL "
    "AND t.id < $extra_copy_below_id THEN 1 ELSE 0 END"
)
_RELATIONSHIP_COPIES = (
    "$base_copies + CASE WHEN $extra_copy_below_id IS NOT NULL AND (t.id < $extra_copy_below_id "
    f"OR ({_is_template('o')} AND o.id < $extra_copy_below_id)) THEN 1 ELSE 0 END"
)

_COUNT_BY_TYPE = f"""
MATCH (t:Resource) WHERE {_is_template('t')}
RETURN t.type AS type, count(*) AS templates, sum({_COPIES}) AS copies
"""

_ORDERED_IDS = f"MATCH (t:Resource) WHERE {_is_template('t')} RETURN t.id AS id ORDER BY t.id"

# The relationships that touch templates, each exactly once: every relationship that
# leaves a template (to anything), and every relationship that reaches a template from
# a node that is not a template. Relationships with synthetic nodes of other operations
# and the scan links to originals are not part of the template subgraph.
_TEMPLATE_RELATIONSHIPS = f"""
CALL {{
  WITH t
  MATCH (t)-[r]->(o)
  WHERE NOT type(r) IN $not_copied AND coalesce(o.synthetic, false) = false
  RETURN r, o, true AS outgoing
  UNION ALL
  WITH t
  MATCH (o)-[r]->(t)
  WHERE NOT type(r) IN $not_copied AND coalesce(o.synthetic, false) = false
    AND NOT {_is_template('o')}
  RETURN r, o, false AS outgoing
}}
"""

_COUNT_RELATIONSHIPS_BY_TYPE = f"""
MATCH (t:Resource) WHERE {_is_template('t')}
{_TEMPLATE_RELATIONSHIPS}
RETURN type(r) AS type, count(*) AS template_relationships, sum({_RELATIONSHIP_COPIES}) AS copies
"""

_CHUNK = f"""
MATCH (t:Resource) WHERE t.id >= $first_id AND {_is_template('t')}
WITH t ORDER BY t.id LIMIT $count
"""

_READ_CHUNK_TEMPLATES = _CHUNK + "RETURN t.id AS id, labels(t) AS labels, properties(t) AS props"

_READ_CHUNK_RELATIONSHIPS = (
    _CHUNK
    + _TEMPLATE_RELATIONSHIPS
    + f"""
RETURN t.id AS template_id, elementId(t) AS template_element_id,
       t.resource_group AS resource_group, outgoing,
       type(r) AS type, properties(r) AS props, elementId(r) AS element_id,
       elementId(o) AS other_element_id,
       CASE WHEN {_is_template('o')} THEN o.id END AS other_template_id
"""
)


class PlanError(ValueError):
    """The request cannot be planned as asked (bad input: nothing is written)."""


class NoTemplatesError(PlanError):
    """The tenant (or the type filter) selects no template; the message says what exists."""


@dataclasses.dataclass(frozen=True)
class TemplateSelection:
    """Which templates: a tenant and optionally some resource types."""

    tenant_id: str
    resource_types: Optional[Tuple[str, ...]] = None

    def parameters(self) -> Dict[str, object]:
        return {
            "tenant_id": self.tenant_id,
            "types": list(self.resource_types) if self.resource_types else None,
            "not_copied": list(NOT_COPIED_RELATIONSHIPS),
        }


@dataclasses.dataclass(frozen=True)
class CopyRule:
    """How many copies each template gets: ``base_copies``, plus one for the templates
    whose id sorts before ``extra_copy_below_id``.

    For a non-integer factor the templates that get the extra copy are a prefix of
    the id order. Ids of Azure resources start with their subscription and resource
    group, so the partial replica copies whole resource groups (whose resources are
    the ones linked to each other) and splits at most one.
    """

    base_copies: int
    extra_copy_below_id: Optional[str]

    def copies_of(self, template_id: str) -> int:
        below = self.extra_copy_below_id
        return self.base_copies + (1 if below is not None and template_id < below else 0)

    def parameters(self) -> Dict[str, object]:
        return {"base_copies": self.base_copies, "extra_copy_below_id": self.extra_copy_below_id}


@dataclasses.dataclass(frozen=True)
class TemplatePlan:
    """Everything known about a scale-up before it writes anything."""

    selection: TemplateSelection
    copy_rule: CopyRule
    template_count: int
    new_node_count: int
    templates_by_type: Dict[str, int]
    new_nodes_by_type: Dict[str, int]
    template_relationships_by_type: Dict[str, int]
    new_relationships_by_type: Dict[str, int]
    chunks: Tuple[Tuple[str, int], ...]  # (first template id, number of templates)

    @property
    def new_relationship_count(self) -> int:
        return sum(self.new_relationships_by_type.values())


def new_node_count_for(template_count: int, scale_factor: Optional[float], target_count: Optional[int]) -> int:
    """round(N·(f−1)) for a factor, ``target − N`` for a target count (exactly one given)."""
    if (scale_factor is None) == (target_count is None):
        raise ValueError("give exactly one of scale_factor and target_count")
    if target_count is not None:
        return target_count - template_count
    return round(template_count * (scale_factor - 1))


def _describe_existing(session: neo4j.Session, selection: TemplateSelection) -> str:
    if selection.resource_types:
        types = session.run(
            f"MATCH (t:Resource) WHERE {_is_template('t')} "
            "RETURN t.type AS type, count(*) AS n ORDER BY type",
            {**selection.parameters(), "types": None},
        ).data()
        if types:
            listed = ", ".join(f"{row['type']} ({row['n']})" for row in types)
            return (
                f"the type filter {list(selection.resource_types)} matches no template of "
                f"tenant {selection.tenant_id!r}; its types are: {listed}"
            )
    tenants = session.run(
        "MATCH (t:Resource) WHERE NOT t:Original AND coalesce(t.synthetic, false) = false "
        "AND t.tenant_id IS NOT NULL "
        "RETURN t.tenant_id AS tenant, count(*) AS n ORDER BY n DESC, tenant LIMIT 20"
    ).data()
    listed = ", ".join(f"{row['tenant']} ({row['n']} resources)" for row in tenants) or "none"
    return f"tenant {selection.tenant_id!r} has no resources to copy; tenants in this database: {listed}"


def plan_templates(
    driver: neo4j.Driver,
    database: str,
    selection: TemplateSelection,
    scale_factor: Optional[float],
    target_count: Optional[int],
    max_new_nodes: int,
    chunk_size: Optional[int] = None,
) -> TemplatePlan:
    """Count the templates and their relationships, decide copies and read chunks.

    Raises ``NoTemplatesError`` when nothing matches, and ``PlanError`` when the factor
    or target count asks for no new resources or for more than ``max_new_nodes``.
    ``chunk_size`` (templates per read) defaults to the adaptive read batch size.
    """
    params = selection.parameters()
    with driver.session(database=database, default_access_mode=neo4j.READ_ACCESS) as session:
        by_type = session.run(_COUNT_BY_TYPE, {**params, **CopyRule(0, None).parameters()}).data()
        template_count = sum(row["templates"] for row in by_type)
        if template_count == 0:
            raise NoTemplatesError(_describe_existing(session, selection))
        new_count = new_node_count_for(template_count, scale_factor, target_count)
        if new_count < 1:
            raise PlanError(
                f"this scale-up would create {new_count} resources from {template_count} "
                "templates; ask for a larger factor or target count"
            )
        if new_count > max_new_nodes:
            raise PlanError(
                f"this scale-up would create {new_count:,} resources from {template_count:,} "
                f"templates, more than the limit of {max_new_nodes:,}; ask for less"
            )
        chunk_size = chunk_size or read_chunk_size(template_count)
        base_copies, extra = divmod(new_count, template_count)
        chunks: List[Tuple[str, int]] = []
        extra_copy_below_id = None
        for position, record in enumerate(session.run(_ORDERED_IDS, params)):
            if position % chunk_size == 0:
                chunks.append((record["id"], min(chunk_size, template_count - position)))
            if extra and position == extra:
                extra_copy_below_id = record["id"]
        if extra and extra_copy_below_id is None:
            raise RuntimeError("the template set changed while it was being planned")
        rule = CopyRule(base_copies, extra_copy_below_id)
        rule_params = {**params, **rule.parameters()}
        nodes = session.run(_COUNT_BY_TYPE, rule_params).data()
        relationships = session.run(_COUNT_RELATIONSHIPS_BY_TYPE, rule_params).data()
    return TemplatePlan(
        selection=selection,
        copy_rule=rule,
        template_count=template_count,
        new_node_count=new_count,
        templates_by_type={row["type"]: row["templates"] for row in nodes},
        new_nodes_by_type={row["type"]: row["copies"] for row in nodes},
        template_relationships_by_type={row["type"]: row["template_relationships"] for row in relationships},
        new_relationships_by_type={row["type"]: row["copies"] for row in relationships},
        chunks=tuple(chunks),
    )


class _ReadChunkFn(beam.DoFn):
    """Reads one chunk of templates and the relationships that touch them."""

    def __init__(self, connection: Neo4jConnection, selection: TemplateSelection) -> None:
        self._connection = connection
        self._selection = selection

    def setup(self) -> None:
        self._driver = self._connection.open_driver()
        self._templates_read = Metrics.counter("tenant_scaler", "templates_read")
        self._relationships_read = Metrics.counter("tenant_scaler", "template_relationships_read")

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
    """Chunks of a ``TemplatePlan`` → templates (main output ``templates``) and the
    relationships that touch them (output ``relationships``).

    A template is ``{"id", "labels", "props"}``; a template relationship is
    ``{"template_id", "template_element_id", "resource_group", "outgoing", "type",
    "props", "element_id", "other_element_id", "other_template_id"}`` (``other_template_id`` is None when the
    other end is not a template: a shared node, or a resource outside the selection).
    """

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


def read_chunk_size(template_count: int) -> int:
    """Templates per read chunk: the adaptive read batch size."""
    return max(1, adaptive_batch_size(template_count, "read"))

