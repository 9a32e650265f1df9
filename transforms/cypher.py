"""The only place that builds Cypher text from names found in the data.

Labels and relationship types cannot be query parameters in every Neo4j 5.x, so the
sink puts them into the statement text. Each such name is checked against a strict
identifier pattern first: a name with a backtick, a space or any Cypher syntax is
rejected with an error naming it, never escaped into a query. Values always travel
as parameters (``$rows``).

Each write statement is constant for its ``WriteKind``: one parse and plan per kind,
however many batches use it.
"""

from __future__ import annotations

import functools
import re
from typing import Optional, Tuple, Union

_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,127}\Z")

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
