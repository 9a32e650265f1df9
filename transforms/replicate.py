"""Replicate: templates and their relationships → synthetic write rows.

Replica ``r`` of the tenant is an independent copy of the template subgraph:

* each template ``t`` with ``copies(t) > r`` gets a synthetic node ``t_r`` carrying all
  of its properties and labels except those that claim to be the real resource, plus
  the markers (``synthetic``, ``scale_operation_id``, ``template_source_id``,
  ``generation_strategy``, ``generation_timestamp``, and ``scale_replica``: which
  copy it is);
* each template relationship becomes, in replica ``r``, the same type, direction and
  properties (plus ``scale_operation_id`` and ``template_source_rel_id``) between the
  replica-``r`` copies of its two ends. An end that has no replica-``r`` copy is kept
  as it is: a shared node, a resource outside the selection, or, when the factor is
  not an integer, a template with one copy fewer than the other end. A relationship
  is copied into as many replicas as its ends have copies (the larger count).

So every synthetic node's relationships correspond one-to-one to its template's; no
cross product of copies is possible, and nothing depends on chunk boundaries because
a relationship row needs only its own two ends.

Ids are ``<template id>-syn-<24 hex>``, names ``<template name>-syn-<24 hex>``: the hex
is 96 bits of BLAKE2b over (operation, template id, replica), so the same operation
always makes the same ids (re-runs converge) and collisions at 10M nodes have a
probability below 1e-15.

Output elements are ``((write kind, shard), copy set)``: a copy set describes all
copies of one template (or of one template relationship) that share a write kind,
compactly: the template's properties once plus the replica numbers. The sink turns
it into rows with ``CopySetRows`` just before writing. Beam's per-element costs
(coding, ``GroupIntoBatches`` state and timers) and the memory the local runner
holds between stages then grow with the templates, not with the copies: at 40k →
1M, 40k node elements instead of 960k full rows.

The shard is derived from the template's resource group. Azure links resources
mostly within their resource group, so relationship batches of different shards
touch disjoint synthetic nodes, and the sink can write shards in parallel without
lock contention.
"""

from __future__ import annotations

import dataclasses
import hashlib
import zlib
from typing import Any, Dict, Iterator, List, Optional, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.cypher import (
    ELEMENT_ID,
    UnsafeIdentifierError,
    checked_identifier,
    node_kind,
    relationship_kind,
)
from transforms.model import (
    DEAD_LETTER_TAG,
    GENERATION_STRATEGY,
    METRICS_NAMESPACE,
    NOT_COPIED_LABELS,
    NOT_COPIED_PROPERTIES,
    RELATIONSHIP_KEY,
    RESOURCE_LABEL,
    CopyRule,
    DeadLetter,
    Metric,
)


@dataclasses.dataclass(frozen=True)
class ReplicationSettings:
    """The operation-wide values every synthetic row depends on."""

    operation_id: str
    generation_timestamp: str
    copy_rule: CopyRule
    shards: int

    def __post_init__(self) -> None:
        if not self.operation_id:
            raise ValueError("operation_id must not be empty")
        if self.shards < 1:
            raise ValueError(f"shards must be at least 1, got {self.shards}")


def synthetic_suffix(operation_id: str, template_id: str, replica: int) -> str:
    """``-syn-`` and 96 bits of a hash of (operation, template, replica)."""
    digest = hashlib.blake2b(
        f"{operation_id}\x1f{template_id}\x1f{replica}".encode("utf-8"), digest_size=12
    ).hexdigest()
    return f"-syn-{digest}"


def synthetic_id(operation_id: str, template_id: str, replica: int) -> str:
    return template_id + synthetic_suffix(operation_id, template_id, replica)


def _shard(resource_group: Optional[str], shards: int) -> int:
    return zlib.crc32((resource_group or "").encode("utf-8")) % shards


# A copy set is a plain tuple, so that Beam codes it with its fast primitive coder:
#   (NODES, base row, template id, template name or None, replicas)
#   (RELATIONSHIPS, properties, start end, end end, replicas)
# where an end is (template id, element id, is_copy): the replica's copy of that
# template when is_copy, else the node with that element id.
NODES, RELATIONSHIPS = "nodes", "relationships"


class _ReplicateNodesFn(beam.DoFn):
    def __init__(self, settings: ReplicationSettings) -> None:
        self._settings = settings

    def setup(self) -> None:
        self._dead_letters = Metrics.counter(METRICS_NAMESPACE, Metric.DEAD_LETTERS)

    def process(self, template: Dict[str, Any]) -> Iterator:
        settings = self._settings
        template_id = template["id"]
        try:
            extra_labels = tuple(
                checked_identifier(label, "label")
                for label in template["labels"]
                if label not in NOT_COPIED_LABELS
            )
        except UnsafeIdentifierError as error:
            self._dead_letters.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG,
                                          DeadLetter("template", template_id, str(error)))
            return
        props = template["props"]
        base = {key: value for key, value in props.items() if key not in NOT_COPIED_PROPERTIES}
        base["synthetic"] = True
        base["scale_operation_id"] = settings.operation_id
        base["template_source_id"] = template_id
        base["generation_strategy"] = GENERATION_STRATEGY
        base["generation_timestamp"] = settings.generation_timestamp
        name = props.get("name")
        replicas = list(range(settings.copy_rule.copies_of(template_id)))
        key = (node_kind(RESOURCE_LABEL, extra_labels),
               _shard(props.get("resource_group"), settings.shards))
        yield key, (NODES, base, template_id, name if isinstance(name, str) else None, replicas)


class _ReplicateRelationshipsFn(beam.DoFn):
    def __init__(self, settings: ReplicationSettings) -> None:
        self._settings = settings

    def setup(self) -> None:
        self._dead_letters = Metrics.counter(METRICS_NAMESPACE, Metric.DEAD_LETTERS)

    def process(self, relationship: Dict[str, Any]) -> Iterator:
        settings = self._settings
        rule = settings.copy_rule
        try:
            rel_type = checked_identifier(relationship["type"], "relationship type")
        except UnsafeIdentifierError as error:
            self._dead_letters.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, DeadLetter(
                "relationship", relationship["element_id"], str(error)))
            return
        template_id = relationship["template_id"]
        other_template_id = relationship["other_template_id"]
        own_copies = rule.copies_of(template_id)
        other_copies = rule.copies_of(other_template_id) if other_template_id is not None else 0
        props = dict(relationship["props"])
        props["scale_operation_id"] = settings.operation_id
        props[RELATIONSHIP_KEY] = relationship["element_id"]
        replicas_by_ends: Dict[Tuple[bool, bool], List[int]] = {}
        for replica in range(max(own_copies, other_copies)):
            ends = (replica < own_copies, replica < other_copies)
            replicas_by_ends.setdefault(ends, []).append(replica)
        shard = _shard(relationship["resource_group"], settings.shards)
        for (own_is_copy, other_is_copy), replicas in replicas_by_ends.items():
            own = (template_id, relationship["template_element_id"], own_is_copy)
            other = (other_template_id, relationship["other_element_id"], other_is_copy)
            start, end = (own, other) if relationship["outgoing"] else (other, own)
            kind = relationship_kind(rel_type, _match(start), _match(end), RELATIONSHIP_KEY)
            yield (kind, shard), (RELATIONSHIPS, props, start, end, replicas)


def _match(end: Tuple[Optional[str], str, bool]) -> str:
    """How the sink finds a relationship end: a copy by ``id``, anything else by ``elementId``."""
    return RESOURCE_LABEL if end[2] else ELEMENT_ID


class CopySetRows:
    """Turns a copy set into the rows the sink writes (``WriteToNeo4j``'s ``rows_of_group``).

    Runs in the sink, just before the write, so that full rows exist only for the
    batches in flight.
    """

    def __init__(self, operation_id: str) -> None:
        self._operation_id = operation_id

    def __call__(self, copy_set: Tuple) -> List[Dict[str, Any]]:
        operation_id = self._operation_id
        if copy_set[0] == NODES:
            _, base, template_id, name, replicas = copy_set
            rows = []
            for replica in replicas:
                suffix = synthetic_suffix(operation_id, template_id, replica)
                row = dict(base)
                row["id"] = template_id + suffix
                row["scale_replica"] = replica
                if name is not None:
                    row["name"] = name + suffix
                rows.append(row)
            return rows
        _, props, start, end, replicas = copy_set
        return [{"start": self._end(start, replica), "end": self._end(end, replica), "props": props}
                for replica in replicas]

    def _end(self, end: Tuple[Optional[str], str, bool], replica: int) -> str:
        template_id, element_id, is_copy = end
        return synthetic_id(self._operation_id, template_id, replica) if is_copy else element_id


class ReplicateNodes(beam.PTransform):
    """Templates → ``((kind, shard), copy set)``; unusable templates → ``dead_letter``."""

    def __init__(self, settings: ReplicationSettings) -> None:
        super().__init__()
        self._settings = settings

    def expand(self, templates):
        return templates | "ReplicateNodes" >> beam.ParDo(
            _ReplicateNodesFn(self._settings)
        ).with_outputs(DEAD_LETTER_TAG, main="rows")


class ReplicateRelationships(beam.PTransform):
    """Template relationships → ``((kind, shard), copy set)``; unusable ones →
    ``dead_letter``."""

    def __init__(self, settings: ReplicationSettings) -> None:
        super().__init__()
        self._settings = settings

    def expand(self, relationships):
        return relationships | "ReplicateRelationships" >> beam.ParDo(
            _ReplicateRelationshipsFn(self._settings)
        ).with_outputs(DEAD_LETTER_TAG, main="rows")
