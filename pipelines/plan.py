"""The plan stage: what a scale-up will write, decided before it writes anything.

Runs in the launcher, against the database, before the pipeline is built: counts the
templates and their relationships by type, decides how many copies each template
gets (``CopyRule``) and cuts the templates' ``id`` order into read chunks. It streams
the ordered ids once, keeping only chunk boundaries, so the launcher never holds the
whole tenant. ``PlanError`` is bad input: nothing has been written.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple

import neo4j

from transforms.batch import adaptive_batch_size
from transforms.model import CopyRule, TemplateSelection, real_resource_predicate, template_predicate
from transforms.read import TEMPLATE_RELATIONSHIPS

# Copies of template t (see CopyRule), and copies of a template relationship: as many
# as the end with more copies has (o is the other end, a template or not).
_COPIES = (
    "$base_copies + CASE WHEN $extra_copy_below_id IS NOT NULL "
    "AND t.id < $extra_copy_below_id THEN 1 ELSE 0 END"
)
_RELATIONSHIP_COPIES = (
    "$base_copies + CASE WHEN $extra_copy_below_id IS NOT NULL AND (t.id < $extra_copy_below_id "
    f"OR ({template_predicate('o')} AND o.id < $extra_copy_below_id)) THEN 1 ELSE 0 END"
)

_COUNT_BY_TYPE = f"""
MATCH (t:Resource) WHERE {template_predicate('t')}
RETURN t.type AS type, count(*) AS templates, sum({_COPIES}) AS copies
"""

_ORDERED_IDS = f"MATCH (t:Resource) WHERE {template_predicate('t')} RETURN t.id AS id ORDER BY t.id"

_COUNT_RELATIONSHIPS_BY_TYPE = f"""
MATCH (t:Resource) WHERE {template_predicate('t')}
{TEMPLATE_RELATIONSHIPS}
RETURN type(r) AS type, count(*) AS template_relationships, sum({_RELATIONSHIP_COPIES}) AS copies
"""


class PlanError(ValueError):
    """The request cannot be planned as asked (bad input: nothing is written)."""


class NoTemplatesError(PlanError):
    """The tenant (or the type filter) selects no template; the message says what exists."""


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
            f"MATCH (t:Resource) WHERE {template_predicate('t')} "
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
        f"MATCH (t:Resource) WHERE {real_resource_predicate('t')} AND t.tenant_id IS NOT NULL "
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


def read_chunk_size(template_count: int) -> int:
    """Templates per read chunk: the adaptive read batch size."""
    return max(1, adaptive_batch_size(template_count, "read"))

