"""The shared model of a scale-up: what a template is, what a copy carries, how the
stages name their outputs and their metrics.

Every stage and command that needs one of these rules takes it from here, so that a
rule is written once:

* **Template**: a tenant's abstracted, real resource: ``:Resource``, not
  ``:Original``, not synthetic, with the tenant's ``tenant_id`` and, under a type
  filter, one of those types (``selected_predicate``), whose ``id`` is a string the
  plan did not have to exclude (``template_predicate``).
* **Copy**: a synthetic ``:Resource`` with every template property and label except
  those that claim to be the real resource (``NOT_COPIED_*``), plus the
  ``NODE_MARKERS``; every relationship a scale-up writes carries the
  ``RELATIONSHIP_MARKERS``.
* **Dead letter**: a record a stage could not use, with the reason, on the
  ``DEAD_LETTER_TAG`` output of the stage that refused it, counted by the
  ``dead_letters`` metric.
* **Metrics**: every counter and distribution lives in ``METRICS_NAMESPACE`` under one
  of the names of ``Metric``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, NamedTuple, Optional, Tuple

#: The label every template and every copy carries (and copies are found by).
RESOURCE_LABEL = "Resource"
#: The label of a scanned, real resource (never a template, never copied).
ORIGINAL_LABEL = "Original"
GENERATION_STRATEGY = "template_replication"

#: Properties and labels that claim to be the real resource: never copied.
NOT_COPIED_PROPERTIES = frozenset({"original_id", "original_name", "abstracted_id", "scan_id"})
NOT_COPIED_LABELS = frozenset({ORIGINAL_LABEL, RESOURCE_LABEL})
#: Relationship types that are never copied: a copy is not the scan of anything.
NOT_COPIED_RELATIONSHIPS = ("SCAN_SOURCE_NODE",)

#: The relationship property that tells parallel copies apart: the template
#: relationship's element id.
RELATIONSHIP_KEY = "template_source_rel_id"
NODE_MARKERS = ("synthetic", "scale_operation_id", "template_source_id", "generation_strategy",
                "generation_timestamp", "scale_replica")
RELATIONSHIP_MARKERS = ("scale_operation_id", RELATIONSHIP_KEY)


def real_resource_predicate(variable: str) -> str:
    """Cypher: ``variable`` is an abstracted resource no scale-up wrote (of any tenant)."""
    v = variable
    return (f"({v}:{RESOURCE_LABEL} AND NOT {v}:{ORIGINAL_LABEL} "
            f"AND coalesce({v}.synthetic, false) = false)")


def selected_predicate(variable: str) -> str:
    """Cypher: ``variable`` is a real resource the request selects: of ``$tenant_id``
    (and of ``$types`` unless null). A selected resource is a template unless the plan
    excluded it (``template_predicate``)."""
    v = variable
    return (f"({real_resource_predicate(v)} "
            f"AND {v}.tenant_id = $tenant_id AND ($types IS NULL OR {v}.type IN $types))")


def template_predicate(variable: str) -> str:
    """Cypher: ``variable`` is a template: a selected resource with a string ``id`` that
    the plan did not exclude (``$excluded_ids``: duplicate ids, unsafe labels)."""
    v = variable
    return (f"({selected_predicate(v)} AND {v}.id IS :: STRING NOT NULL "
            f"AND NOT {v}.id IN $excluded_ids)")


#: What the other end ``o`` of a template relationship is, in Cypher (needs the
#: parameters of ``TemplateSelection.parameters``): a template (its copy in the same
#: replica is linked), a selected resource that is not a template (the relationship is
#: not copied: a copy must never be linked to a real resource of the tenant), or a
#: shared node (linked as it is: a Tenant, a Tag, a resource of another type ...).
END_TEMPLATE, END_EXCLUDED, END_SHARED = "template", "excluded", "shared"
OTHER_END_KIND = (f"CASE WHEN {template_predicate('o')} THEN '{END_TEMPLATE}' "
                  f"WHEN {selected_predicate('o')} THEN '{END_EXCLUDED}' ELSE '{END_SHARED}' END")


@dataclasses.dataclass(frozen=True)
class TemplateSelection:
    """Which templates: a tenant, optionally some resource types, and the ids the plan
    excluded (``pipelines.plan``: templates that cannot be copied)."""

    tenant_id: str
    resource_types: Optional[Tuple[str, ...]] = None
    excluded_ids: Tuple[str, ...] = ()

    def parameters(self) -> Dict[str, object]:
        """The parameters ``template_predicate`` (and the template queries) need."""
        return {
            "tenant_id": self.tenant_id,
            "types": list(self.resource_types) if self.resource_types else None,
            "excluded_ids": list(self.excluded_ids),
            "not_copied": list(NOT_COPIED_RELATIONSHIPS),
        }


# --------------------------------------------------------------------------- outputs

DEAD_LETTER_TAG = "dead_letter"


class DeadLetter(NamedTuple):
    """A record a stage could not use: what it was (``kind``: "template",
    "relationship", "node", ...), its identity (an id or element id), the record
    itself where it helps, and why."""

    kind: str
    identity: Any
    reason: str
    record: Any = None


# --------------------------------------------------------------------------- metrics

METRICS_NAMESPACE = "tenant_scaler"


class Metric:
    """The names of every metric the pipeline reports (all in ``METRICS_NAMESPACE``)."""

    TEMPLATES_READ = "templates_read"
    TEMPLATE_RELATIONSHIPS_READ = "template_relationships_read"
    TEMPLATE_PARTS_READ = "template_parts_read"
    NODES_WRITTEN = "nodes_written"
    RELATIONSHIPS_WRITTEN = "relationships_written"
    BATCHES_WRITTEN = "batches_written"
    BATCHES_ALREADY_WRITTEN = "batches_already_written"
    WRITE_RETRIES = "write_retries"
    WRITE_FAILURES = "write_failures"
    DEAD_LETTERS = "dead_letters"
    BATCH_SIZE = "batch_size"
    WRITE_LATENCY_MS = "write_latency_ms"
    WRITE_CONCURRENCY = "write_concurrency"
    PROCESS_RSS_MB = "process_rss_mb"
