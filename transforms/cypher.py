"""The only place that builds Cypher text for writes, and the rule for names from the data.

Two families of statements:

* **Copy units** (the scale-up): ``COPY_UNIT`` and ``COPY_LINKS`` are constant texts;
  labels and relationship types travel as parameters (Neo4j 5.26's dynamic labels
  and types, ``$(...)``), so one parse and plan serves every batch.
* **Row batches** (the demo loader): one ``MERGE`` statement per ``WriteKind``, whose
  labels and relationship type are written into the text.

Either way a label or type from the data must first pass ``checked_identifier`` (a
letter, then letters, digits and ``_``): a name with a backtick, a space or any Cypher
syntax is refused with an error naming it (and its record becomes a dead letter),
never escaped into a query. Values always travel as parameters.
"""

from __future__ import annotations

import functools
import re
from typing import Optional, Tuple, Union

#: What a label or relationship type from the data must look like; also used in
#: Cypher (``=~``, a full match) so that the plan refuses the same names.
IDENTIFIER_PATTERN = "[A-Za-z][A-Za-z0-9_]{0,127}"
_IDENTIFIER = re.compile(IDENTIFIER_PATTERN + r"\Z")

#: An endpoint matched by Neo4j's ``elementId`` rather than by ``:Label {id}``; used
#: for nodes that exist before the run (shared nodes, real resources).
ELEMENT_ID = "#elementId"


class UnsafeIdentifierError(ValueError):
    """A label, relationship type or property name that must not enter Cypher text."""


def checked_identifier(name: str, what: str) -> str:
    """Return ``name`` if it is a plain identifier (letter, then letters, digits, _).

    Raises ``UnsafeIdentifierError`` naming ``what`` ("label", "relationship type",
    ...) and the offending value otherwise.
    """
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise UnsafeIdentifierError(
            f"unsafe {what} {name!r}: only letters, digits and '_' (starting with a "
            "letter) may be written into Cypher text"
        )
    return name


def is_safe_identifier(name: str) -> bool:
    """True when ``checked_identifier`` would accept ``name``."""
    return isinstance(name, str) and bool(_IDENTIFIER.match(name))


# A write kind is a plain tuple so that Beam can use it as a deterministic key:
#   ("node", merge_label, extra_labels)
#   ("rel", rel_type, start_match, end_match, merge_property)
# where start_match/end_match is a label (match ``(:Label {id: ...})``) or ELEMENT_ID,
# and merge_property is the relationship property that identifies one relationship
# among parallel ones of the same type (None: at most one per pair and type).
NodeKind = Tuple[str, str, Tuple[str, ...]]
RelationshipKind = Tuple[str, str, str, str, Optional[str]]
WriteKind = Union[NodeKind, RelationshipKind]


def node_kind(merge_label: str, extra_labels: Tuple[str, ...] = ()) -> NodeKind:
    """Nodes merged on ``(:merge_label {id})`` that also carry ``extra_labels``."""
    return ("node", merge_label, tuple(sorted(extra_labels)))


def relationship_kind(
    rel_type: str, start_match: str, end_match: str, merge_property: Optional[str] = None
) -> RelationshipKind:
    """Relationships of one type whose ends are found the same way."""
    return ("rel", rel_type, start_match, end_match, merge_property)


def is_node_kind(kind: WriteKind) -> bool:
    return kind[0] == "node"


def _match_endpoint(variable: str, parameter: str, match: str, clause: str = "MATCH") -> str:
    if match == ELEMENT_ID:
        return f"{clause} ({variable}) WHERE elementId({variable}) = row.{parameter}"
    label = checked_identifier(match, "label")
    return f"{clause} ({variable}:`{label}` {{id: row.{parameter}}})"


@functools.lru_cache(maxsize=None)
def write_statement(kind: WriteKind) -> str:
    """The one ``UNWIND $rows`` statement that writes batches of ``kind``.

    A node row is the node's whole property map (with its ``id``); relationship rows are
    ``{"start": str, "end": str, "props": map}`` where start/end are an ``id`` or an
    ``elementId`` depending on the kind. ``MERGE`` makes every batch idempotent: a
    retried or re-sent batch converges to the same graph. Returns ``written``: the rows
    that found what they need (a relationship row whose end does not exist matches
    nothing and writes nothing; ``missing_ends_statement`` finds such rows).
    """
    if is_node_kind(kind):
        _, merge_label, extra_labels = kind
        label = checked_identifier(merge_label, "label")
        statement = f"UNWIND $rows AS row MERGE (n:`{label}` {{id: row.id}}) SET n = row"
        if extra_labels:
            labels = "".join(f":`{checked_identifier(extra, 'label')}`" for extra in extra_labels)
            statement += f", n{labels}"
        return statement + " RETURN count(*) AS written"
    _, rel_type, start_match, end_match, merge_property = kind
    rel = checked_identifier(rel_type, "relationship type")
    if merge_property is None:
        merge_pattern = f"[r:`{rel}`]"
    else:
        key = checked_identifier(merge_property, "property name")
        merge_pattern = f"[r:`{rel}` {{`{key}`: row.props.`{key}`}}]"
    return (
        "UNWIND $rows AS row "
        f"{_match_endpoint('a', 'start', start_match)} "
        f"{_match_endpoint('b', 'end', end_match)} "
        f"MERGE (a)-{merge_pattern}->(b) SET r = row.props RETURN count(*) AS written"
    )


@functools.lru_cache(maxsize=None)
def missing_ends_statement(kind: RelationshipKind) -> str:
    """For relationship rows ``$rows`` of ``kind``: the positions of the rows whose start
    or end node does not exist, with which one is missing (read only)."""
    _, _, start_match, end_match, _ = kind
    return (
        "UNWIND range(0, size($rows) - 1) AS i WITH i, $rows[i] AS row "
        f"{_match_endpoint('a', 'start', start_match, 'OPTIONAL MATCH')} "
        f"{_match_endpoint('b', 'end', end_match, 'OPTIONAL MATCH')} "
        "WITH i, a, b WHERE a IS NULL OR b IS NULL "
        "RETURN i, a IS NULL AS no_start, b IS NULL AS no_end"
    )


# --------------------------------------------------------------------------- copy units

#: The ledger node of one write transaction of a scale-up (``transforms.write``).
BATCH_LABEL = "ScaleBatch"

#: Writes one copy unit in one transaction, exactly once per ``$key``.
#:
#: The ledger node ``(:ScaleBatch {key})`` (unique key) is merged first: a second
#: transaction with the same key waits on its lock until the first commits, then sees
#: ``written_at`` and writes nothing, so batches sent twice (a retry, a resumed run, two
#: racing runs) never write twice, and the copies themselves can be ``CREATE``d.
#: Nothing is written either if a node with one of the new ids already exists
#: (``clashes``): the sink then sets those rows aside as dead letters and sends the rest.
#: Parameters: ``$nodes`` [{labels, props}], ``$internal`` [{s, e, type, props}] (both
#: ends new nodes, by position in ``$nodes``), ``$outgoing``/``$incoming`` [{own, other,
#: type, props}] (a new node by position, an existing node by element id, sorted by it
#: so that concurrent transactions lock shared nodes in the same order).
COPY_UNIT = f"""
MERGE (batch:{BATCH_LABEL} {{key: $key}})
  ON CREATE SET batch.operation_id = $operation_id
WITH batch, batch.written_at IS NULL AS to_write,
     COUNT {{ UNWIND $ids AS id MATCH (x:Resource {{id: id}}) RETURN x }} AS clashes
CALL (batch, to_write, clashes) {{
  WITH batch WHERE to_write AND clashes = 0
  SET batch.written_at = datetime()
  WITH batch
  UNWIND $nodes AS row
  CREATE (n:$(row.labels))
  SET n = row.props
  WITH batch, collect(n) AS created
  CALL (created) {{
    UNWIND $internal AS rel
    WITH created[rel.s] AS a, created[rel.e] AS b, rel
    CREATE (a)-[r:$(rel.type)]->(b) SET r = rel.props
  }}
  CALL (created) {{
    UNWIND $outgoing AS rel
    MATCH (other) WHERE elementId(other) = rel.other
    WITH created[rel.own] AS own, other, rel
    CREATE (own)-[r:$(rel.type)]->(other) SET r = rel.props
  }}
  CALL (created) {{
    UNWIND $incoming AS rel
    MATCH (other) WHERE elementId(other) = rel.other
    WITH created[rel.own] AS own, other, rel
    CREATE (other)-[r:$(rel.type)]->(own) SET r = rel.props
  }}
}}
RETURN to_write, clashes
"""

#: Relationships between copies that other transactions created, exactly once per
#: ``$key`` (same ledger as ``COPY_UNIT``): ``$rows`` [{start, end, type, props}], both
#: ends ids of ``$operation_id``'s copies. A row whose end has no copy writes nothing.
COPY_LINKS = f"""
MERGE (batch:{BATCH_LABEL} {{key: $key}})
  ON CREATE SET batch.operation_id = $operation_id
WITH batch, batch.written_at IS NULL AS to_write
CALL (batch, to_write) {{
  WITH batch WHERE to_write
  SET batch.written_at = datetime()
  WITH batch
  UNWIND $rows AS rel
  MATCH (a:Resource {{id: rel.start}}) WHERE a.scale_operation_id = $operation_id
  MATCH (b:Resource {{id: rel.end}}) WHERE b.scale_operation_id = $operation_id
  CREATE (a)-[r:$(rel.type)]->(b) SET r = rel.props
}}
RETURN to_write, 0 AS clashes
"""

#: The ids of ``$ids`` that some ``:Resource`` already has, and whether one of those is
#: a copy of ``$operation_id`` (read only).
EXISTING_IDS = ("UNWIND $ids AS id MATCH (x:Resource {id: id}) "
                "RETURN id, any(n IN collect(x) WHERE n.scale_operation_id = $operation_id) AS ours")

#: Of a written unit's relationships to existing nodes, those whose node is gone (read
#: only): ``$element_ids`` → the ones that match no node.
MISSING_NODES = ("UNWIND $element_ids AS element_id OPTIONAL MATCH (n) "
                 "WHERE elementId(n) = element_id WITH element_id, n WHERE n IS NULL "
                 "RETURN element_id")
