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

``ReplicateParts`` makes of each part what all its copies share (``replicate_part``:
properties without the real resource's claims and with the markers, relationships
classified), once, then one ``CopyUnit`` per replica (main output) and, when the part
is a slice of a component too large for one batch, one ``LinkUnit`` per replica for the
relationships to the other slices (output ``links``). Units are compact references to
the replicated part; ``UnitRowsOf`` expands one into the rows of its transaction in
the sink's write thread, just before the write, so that full rows exist only for the
transactions in flight.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Dict, Iterator, List, NamedTuple, Optional

import apache_beam as beam

from transforms.model import (
    GENERATION_STRATEGY,
    NOT_COPIED_LABELS,
    NOT_COPIED_PROPERTIES,
    RELATIONSHIP_KEY,
    RESOURCE_LABEL,
)
from transforms.read import PartTemplates

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


class ReplicatedTemplate(NamedTuple):
    """One template as every copy of it starts: its ``id``, the name to suffix (None:
    it has none), its copy's labels, ``base`` (every property a copy carries except
    ``id``, ``name`` and ``scale_replica``) and how many copies it gets."""

    id: str
    name: Optional[str]
    labels: List[str]
    base: Dict[str, Any]
    copies: int


class ReplicatedRelationship(NamedTuple):
    """One template relationship as every copy of it is written: ``kind`` is
    ``INTERNAL`` (``other``: the position of the other template in the part),
    ``OUTGOING``/``INCOMING`` (``other``: the element id of the shared node it links to)
    or ``LINK`` (``other``: the id of a template in another slice of its component);
    ``own``: the position of its template in the part; ``props`` with the markers.
    Relationships between templates always go from ``own`` to ``other``: the read
    stage gives each once, from its start (``transforms.read``)."""

    kind: str
    own: int
    other: Any
    type: str
    props: Dict[str, Any]


INTERNAL, OUTGOING, INCOMING, LINK = "internal", "outgoing", "incoming", "link"


class ReplicatedPart(NamedTuple):
    """A part as replicate makes it, once for all its replicas."""

    index: int
    templates: List[ReplicatedTemplate]
    relationships: List[ReplicatedRelationship]

    @property
    def has_links(self) -> bool:
        return any(rel.kind == LINK for rel in self.relationships)


def replicate_part(part: PartTemplates, settings: ReplicationSettings) -> ReplicatedPart:
    """What every copy of the part shares: properties without the real resource's
    claims and with the markers, relationships classified and carrying the markers."""
    position = {template["id"]: i for i, template in enumerate(part.templates)}
    templates = []
    for template, copies in zip(part.templates, part.part.copies(settings.base_copies)):
        props = template["props"]
        base = {key: value for key, value in props.items()
                if key not in NOT_COPIED_PROPERTIES and key not in ("id", "name")}
        base.update(synthetic=True, scale_operation_id=settings.operation_id,
                    template_source_id=template["id"], generation_strategy=GENERATION_STRATEGY,
                    generation_timestamp=settings.generation_timestamp)
        name = props.get("name")
        labels = [RESOURCE_LABEL, *(label for label in template["labels"]
                                    if label not in NOT_COPIED_LABELS)]
        templates.append(ReplicatedTemplate(template["id"], name if isinstance(name, str) else None,
                                            labels, base, copies))
    relationships = []
    for rel in part.relationships:
        props = dict(rel.props)
        props["scale_operation_id"] = settings.operation_id
        props[RELATIONSHIP_KEY] = rel.element_id
        other = rel.other_template_id
        if other is None:
            kind, target = (OUTGOING if rel.outgoing else INCOMING), rel.other_element_id
        elif other in position:
            kind, target = INTERNAL, position[other]
        else:
            # Only outgoing relationships reach other templates (transforms.read), so each
            # link is written once, by the part of its start.
            kind, target = LINK, other
        relationships.append(ReplicatedRelationship(kind, position[rel.template_id], target,
                                                    rel.type, props))
    # Shared nodes are locked in one order by every transaction: no lock cycles.
    relationships.sort(key=lambda rel: (rel.kind, rel.other) if rel.kind in (OUTGOING, INCOMING)
                       else (rel.kind, ""))
    return ReplicatedPart(part.part.index, templates, relationships)


class CopyUnit(NamedTuple):
    """Replica ``replica`` of a part: its copies, the relationships among them and to
    shared nodes. Written in one transaction."""

    part: ReplicatedPart
    replica: int


class LinkUnit(NamedTuple):
    """Replica ``replica`` of the relationships from a part to other slices of its
    component. Written in one transaction once every copy unit is written."""

    part: ReplicatedPart
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
    def __init__(self, settings: ReplicationSettings) -> None:
        self._settings = settings

    def process(self, part: PartTemplates) -> Iterator:
        replicated = replicate_part(part, self._settings)
        for replica in range(max(template.copies for template in replicated.templates)):
            yield CopyUnit(replicated, replica)
            if replicated.has_links:
                yield beam.pvalue.TaggedOutput(LINKS_TAG, LinkUnit(replicated, replica))


class ReplicateParts(beam.PTransform):
    """``PartTemplates`` → ``CopyUnit``s (main output) and ``LinkUnit``s (``links``)."""

    def __init__(self, settings: ReplicationSettings) -> None:
        super().__init__()
        self._settings = settings

    def expand(self, parts):
        return parts | "ReplicateParts" >> beam.ParDo(
            _ReplicatePartsFn(self._settings)).with_outputs(LINKS_TAG, main="copies")


class UnitRowsOf:
    """Expands a ``CopyUnit`` or ``LinkUnit`` into its ``UnitRows`` (the sink calls it in
    its write threads, just before the write; picklable)."""

    def __init__(self, operation_id: str) -> None:
        self._operation_id = operation_id

    def __call__(self, unit) -> UnitRows:
        part, replica = unit
        key = f"{self._operation_id}/{part.index}/{replica}"
        if isinstance(unit, LinkUnit):
            return self._links(part, replica, key + "/links")
        return self._copies(part, replica, key)

    def _copies(self, part: ReplicatedPart, replica: int, key: str) -> UnitRows:
        rows = UnitRows(key)
        position: Dict[int, int] = {}  # template's position in the part → node's in the unit
        for at, template in enumerate(part.templates):
            if template.copies > replica:
                position[at] = len(rows.nodes)
                suffix = synthetic_suffix(self._operation_id, template.id, replica)
                props = dict(template.base, id=template.id + suffix, scale_replica=replica)
                if template.name is not None:
                    props["name"] = template.name + suffix
                rows.nodes.append({"labels": template.labels, "props": props})
        for rel in part.relationships:
            own = position.get(rel.own)
            if own is None or rel.kind == LINK:
                continue  # no copy in this replica; links are the LinkUnit's
            if rel.kind == INTERNAL:
                other = position.get(rel.other)
                if other is not None:  # from own to other: see ReplicatedRelationship
                    rows.internal.append({"s": own, "e": other, "type": rel.type, "props": rel.props})
                # else: the other end has no copy in this replica (the component the
                # partial replica splits): left out, never linked to the real template.
                continue
            side = rows.outgoing if rel.kind == OUTGOING else rows.incoming
            side.append({"own": own, "other": rel.other, "type": rel.type, "props": rel.props})
        return rows

    def _links(self, part: ReplicatedPart, replica: int, key: str) -> UnitRows:
        rows = UnitRows(key)
        for rel in part.relationships:
            template = part.templates[rel.own]
            if rel.kind == LINK and template.copies > replica:
                rows.links.append({"start": synthetic_id(self._operation_id, template.id, replica),
                                   "end": synthetic_id(self._operation_id, rel.other, replica),
                                   "type": rel.type, "props": rel.props})
        return rows
