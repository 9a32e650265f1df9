"""Replicate: parts of templates → copy units, the write batches of a scale-up.

Replica ``r`` of the tenant is an independent copy of the template subgraph:

* each template ``t`` with ``copies(t) > r`` gets a synthetic node ``t_r`` carrying all
  of its properties and labels except those that claim to be the real resource, plus
  the markers (``synthetic``, ``scale_operation_id``, ``template_source_id``,
  ``generation_strategy``, ``generation_timestamp``, and ``scale_replica``: which
  copy it is);
* each template relationship becomes, in replica ``r``, the same type, direction and
  properties (plus ``scale_operation_id`` and ``template_source_rel_id``) between the
  replica-``r`` copy of its template and: the replica-``r`` copy of the other end when
  that is a template too, or the other end itself when it is a shared node (a
  ``Tenant``, a ``Tag``, a resource outside the selection). A relationship between two
  templates of which only one has a replica-``r`` copy (the one component the partial
  replica splits) is left out: a copy is never linked to a real resource.

So every synthetic node's relationships correspond one-to-one to its template's; no
cross product of copies is possible, and nothing depends on where parts end.

Ids are ``<template id>-syn-<24 hex>``, names ``<template name>-syn-<24 hex>``: the hex
is 96 bits of BLAKE2b over (operation, template id, replica), so the same operation
always makes the same ids (re-runs converge) and collisions at 10M nodes have a
probability below 1e-15.

``ReplicateParts`` turns each part into one ``CopyUnit`` per replica (main output) and,
when the part is a slice of a component too large for one batch, one ``LinkUnit`` per
replica for the relationships to the other slices (output ``links``). Units are
compact references to the part; ``UnitRows`` expands one into the rows of its
transaction in the sink's write thread, just before the write, so that full rows exist
only for the transactions in flight.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Dict, Iterator, List, NamedTuple

import apache_beam as beam

from transforms.model import (
    GENERATION_STRATEGY,
    NOT_COPIED_LABELS,
    NOT_COPIED_PROPERTIES,
    RELATIONSHIP_KEY,
    RESOURCE_LABEL,
)
from transforms.read import PartTemplates, TemplateRelationship

LINKS_TAG = "links"


@dataclasses.dataclass(frozen=True)
class ReplicationSettings:
    """The operation-wide values every synthetic row depends on."""

    operation_id: str
    generation_timestamp: str
    base_copies: int

    def __post_init__(self) -> None:
        if not self.operation_id:
            raise ValueError("operation_id must not be empty")
        if isinstance(self.base_copies, bool) or not isinstance(self.base_copies, int) \
                or self.base_copies < 0:
            raise ValueError(f"base_copies must be a non-negative integer, got {self.base_copies!r}")


def synthetic_suffix(operation_id: str, template_id: str, replica: int) -> str:
    """``-syn-`` and 96 bits of a hash of (operation, template, replica)."""
    digest = hashlib.blake2b(
        f"{operation_id}\x1f{template_id}\x1f{replica}".encode("utf-8"), digest_size=12
    ).hexdigest()
    return f"-syn-{digest}"


def synthetic_id(operation_id: str, template_id: str, replica: int) -> str:
    return template_id + synthetic_suffix(operation_id, template_id, replica)


class CopyUnit(NamedTuple):
    """Replica ``replica`` of a part: its copies, the relationships among them and to
    shared nodes. Written in one transaction."""

    part: PartTemplates
    replica: int


class LinkUnit(NamedTuple):
    """Replica ``replica`` of the relationships from a part to other slices of its
    component. Written in one transaction once every copy unit is written."""

    part: PartTemplates
    replica: int


@dataclasses.dataclass
class UnitRows:
    """What one unit writes, as the sink's statements take it (``transforms.cypher``).

    ``key``: the unit's ledger key (operation, part, replica), the same in every run of
    the operation. A copy unit has ``nodes`` [{labels, props}], ``internal`` [{s, e,
    type, props}] between its nodes (by position), ``outgoing``/``incoming`` [{own,
    other, type, props}] to existing nodes (by element id); a link unit has ``links``
    [{start, end, type, props}] between copies (by id).
    """

    key: str
    nodes: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    internal: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    outgoing: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    incoming: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    links: List[Dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def relationships(self) -> int:
        return len(self.internal) + len(self.outgoing) + len(self.incoming) + len(self.links)


class _ReplicatePartsFn(beam.DoFn):
    def __init__(self, base_copies: int) -> None:
        self._base_copies = base_copies

    def process(self, part: PartTemplates) -> Iterator:
        copies = part.part.copies(self._base_copies)
        in_part = {template["id"] for template in part.templates}
        has_links = any(rel.other_template_id is not None and rel.other_template_id not in in_part
                        for rel in part.relationships)
        for replica in range(max(copies)):
            yield CopyUnit(part, replica)
            if has_links:
                yield beam.pvalue.TaggedOutput(LINKS_TAG, LinkUnit(part, replica))


class ReplicateParts(beam.PTransform):
    """``PartTemplates`` → ``CopyUnit``s (main output) and ``LinkUnit``s (``links``)."""

    def __init__(self, base_copies: int) -> None:
        super().__init__()
        self._base_copies = base_copies

    def expand(self, parts):
        return parts | "ReplicateParts" >> beam.ParDo(
            _ReplicatePartsFn(self._base_copies)).with_outputs(LINKS_TAG, main="copies")


class UnitRowsOf:
    """Expands a ``CopyUnit`` or ``LinkUnit`` into its ``UnitRows`` (the sink calls it in
    its write threads; picklable)."""

    def __init__(self, settings: ReplicationSettings) -> None:
        self._settings = settings

    def __call__(self, unit) -> UnitRows:
        part, replica = unit
        key = f"{self._settings.operation_id}/{part.part.index}/{replica}"
        copied = {template["id"] for template, copies
                  in zip(part.templates, part.part.copies(self._settings.base_copies))
                  if copies > replica}
        if isinstance(unit, LinkUnit):
            return self._links(part, replica, copied, key + "/links")
        return self._copies(part, replica, copied, key)

    def _copies(self, part: PartTemplates, replica: int, copied: set, key: str) -> UnitRows:
        rows = UnitRows(key)
        position: Dict[str, int] = {}
        for template in part.templates:
            if template["id"] in copied:
                position[template["id"]] = len(rows.nodes)
                rows.nodes.append(self._node(template, replica))
        in_part = {template["id"] for template in part.templates}
        for rel in part.relationships:
            if rel.template_id not in copied:
                continue
            own, props = position[rel.template_id], self._props(rel)
            other = rel.other_template_id
            if other is None:
                side = rows.outgoing if rel.outgoing else rows.incoming
                side.append({"own": own, "other": rel.other_element_id, "type": rel.type,
                             "props": props})
            elif other not in in_part:
                continue  # a link: written by the LinkUnit of this replica
            elif other in copied:
                start, end = (own, position[other]) if rel.outgoing else (position[other], own)
                rows.internal.append({"s": start, "e": end, "type": rel.type, "props": props})
            # else: the other end has no copy in this replica (the component the partial
            # replica splits): left out, never linked to the real template.
        # Shared nodes are locked in one order by every transaction: no lock cycles.
        rows.outgoing.sort(key=lambda rel: rel["other"])
        rows.incoming.sort(key=lambda rel: rel["other"])
        return rows

    def _links(self, part: PartTemplates, replica: int, copied: set, key: str) -> UnitRows:
        rows = UnitRows(key)
        operation_id = self._settings.operation_id
        in_part = {template["id"] for template in part.templates}
        for rel in part.relationships:
            other = rel.other_template_id
            if rel.template_id not in copied or other is None or other in in_part:
                continue
            # Only outgoing relationships reach other templates (module read), so each
            # link is written once, by the part of its start.
            rows.links.append({"start": synthetic_id(operation_id, rel.template_id, replica),
                               "end": synthetic_id(operation_id, other, replica),
                               "type": rel.type, "props": self._props(rel)})
        return rows

    def _node(self, template: Dict[str, Any], replica: int) -> Dict[str, Any]:
        settings = self._settings
        template_id, props = template["id"], template["props"]
        suffix = synthetic_suffix(settings.operation_id, template_id, replica)
        row = {key: value for key, value in props.items() if key not in NOT_COPIED_PROPERTIES}
        row.update(id=template_id + suffix, synthetic=True,
                   scale_operation_id=settings.operation_id, template_source_id=template_id,
                   generation_strategy=GENERATION_STRATEGY,
                   generation_timestamp=settings.generation_timestamp, scale_replica=replica)
        name = props.get("name")
        if isinstance(name, str):
            row["name"] = name + suffix
        labels = [RESOURCE_LABEL, *(label for label in template["labels"]
                                    if label not in NOT_COPIED_LABELS)]
        return {"labels": labels, "props": row}

    def _props(self, rel: TemplateRelationship) -> Dict[str, Any]:
        props = dict(rel.props)
        props["scale_operation_id"] = self._settings.operation_id
        props[RELATIONSHIP_KEY] = rel.element_id
        return props
