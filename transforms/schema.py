"""The indexes and uniqueness constraints the writes and queries rely on, created only
where missing, safely when several runs start at once.

Graphs written by Azure Tenant Grapher usually carry their own constraints and
indexes under their own names (a uniqueness constraint on ``Resource.id`` brings a
RANGE index). Creating ours under other names would fail or duplicate them, so we
look at what exists first and create an index only for a (label, properties) pair
that no RANGE index covers yet, and a constraint only where no uniqueness constraint
on that (label, property) exists, whatever their names.

**Races.** Two runs that start together on a fresh database both see an index
missing and both create it; the server then refuses the second with
``EquivalentSchemaRuleAlreadyExists`` (or a sibling code). Such a refusal is checked
again: if what we wanted now exists, it is fine, whoever made it.

**Old plain index in the way.** A uniqueness constraint cannot be created while a plain
index covers the same (label, property). Earlier versions of this project created
``tenant_scaler_scaleoperation_id``: that one is dropped and replaced by the
constraint. Anybody else's index is left alone, with a warning that says what to do.
"""

from __future__ import annotations

import logging
from typing import Iterable, List, Optional, Sequence, Set, Tuple

import neo4j
import neo4j.exceptions

from transforms.cypher import checked_identifier

_LOG = logging.getLogger(__name__)

IndexSpec = Tuple[str, Tuple[str, ...]]
#: A uniqueness constraint: (label, property).
ConstraintSpec = Tuple[str, str]

#: The seed's indexes: lookups by id, the synthetic markers, the tenant.
SCALE_UP_INDEXES: Tuple[IndexSpec, ...] = (
    ("Resource", ("id",)),
    ("Resource", ("synthetic",)),
    ("Resource", ("scale_operation_id",)),
    ("Resource", ("template_source_id",)),
    ("Resource", ("tenant_id",)),
    ("Resource", ("synthetic", "scale_operation_id")),
)
#: One ``ScaleOperation`` record per operation id, and one ledger node per written batch
#: (``transforms.write``), even when two runs start together: a ``MERGE`` is only safe
#: across transactions with a uniqueness constraint.
SCALE_UP_CONSTRAINTS: Tuple[ConstraintSpec, ...] = (
    ("ScaleOperation", "id"),
    ("ScaleBatch", "key"),
)
INDEX_ONLINE_TIMEOUT_S = 600

#: What the server says when an equivalent index or constraint (or one of that name)
#: appeared between our check and our ``CREATE``: another run made it.
_ALREADY_EXISTS = frozenset({
    "Neo.ClientError.Schema.EquivalentSchemaRuleAlreadyExists",
    "Neo.ClientError.Schema.IndexAlreadyExists",
    "Neo.ClientError.Schema.ConstraintAlreadyExists",
    "Neo.ClientError.Schema.IndexWithNameAlreadyExists",
    "Neo.ClientError.Schema.ConstraintWithNameAlreadyExists",
})
_UNIQUE_CONSTRAINT_TYPES = ("UNIQUENESS", "NODE_PROPERTY_UNIQUENESS", "NODE_KEY")


def _index_name(label: str, properties: Sequence[str]) -> str:
    return "tenant_scaler_" + "_".join([label.lower(), *properties])


def _constraint_name(label: str, prop: str) -> str:
    # Not the index's name: the old index of that name may still exist when it is created.
    return _index_name(label, (prop,)) + "_unique"


def _range_indexes(session: neo4j.Session) -> List[Tuple[str, Tuple[str, ...], str, Optional[str]]]:
    """(label, properties, name, owning constraint) of every node RANGE index."""
    result = session.run(
        "SHOW INDEXES YIELD name, type, entityType, labelsOrTypes, properties, owningConstraint "
        "WHERE type = 'RANGE' AND entityType = 'NODE' "
        "RETURN name, labelsOrTypes, properties, owningConstraint"
    )
    return [(r["labelsOrTypes"][0], tuple(r["properties"]), r["name"], r["owningConstraint"])
            for r in result]


def _unique_constraints(session: neo4j.Session) -> Set[ConstraintSpec]:
    """(label, property) of every node uniqueness constraint on one property."""
    result = session.run(
        "SHOW CONSTRAINTS YIELD type, entityType, labelsOrTypes, properties "
        "WHERE type IN $types AND entityType = 'NODE' AND size(properties) = 1 "
        "RETURN labelsOrTypes, properties", types=list(_UNIQUE_CONSTRAINT_TYPES))
    return {(r["labelsOrTypes"][0], r["properties"][0]) for r in result}


def ensure_schema(driver: neo4j.Driver, database: str,
                  indexes: Iterable[IndexSpec] = SCALE_UP_INDEXES,
                  constraints: Iterable[ConstraintSpec] = SCALE_UP_CONSTRAINTS) -> List[str]:
    """Create the missing uniqueness ``constraints``, then the missing RANGE ``indexes``
    (a constraint's own index may already cover one), and wait until all are online.

    Returns the names of what this call created (not what a concurrent run created).
    """
    created: List[str] = []
    with driver.session(database=database) as session:
        for label, prop in constraints:
            name = _ensure_constraint(session, label, prop)
            if name:
                created.append(name)
        for label, properties in indexes:
            name = _ensure_index(session, label, tuple(properties))
            if name:
                created.append(name)
        if created:
            _LOG.info("created %s; waiting for them to come online", ", ".join(created))
            session.run("CALL db.awaitIndexes($timeout)", timeout=INDEX_ONLINE_TIMEOUT_S).consume()
    return created


def _create(session: neo4j.Session, statement: str, exists) -> bool:
    """Run a ``CREATE`` schema statement; False if an equivalent rule turned out to
    exist already (``exists()`` says so after the server refused it)."""
    try:
        _run_schema(session, statement)
        return True
    except neo4j.exceptions.ClientError as error:
        if error.code in _ALREADY_EXISTS and exists():
            _LOG.debug("%s: made by another run meanwhile (%s)", statement, error.code)
            return False
        raise


def _run_schema(session: neo4j.Session, statement: str) -> None:
    """A schema command in a managed transaction: runs that create schema together
    can deadlock on the label's lock, which the driver then retries."""
    session.execute_write(lambda tx: tx.run(statement).consume())


def _ensure_index(session: neo4j.Session, label: str, properties: Tuple[str, ...]) -> Optional[str]:
    """The name of the index created for (label, properties), or None if one covers it."""
    def exists() -> bool:
        return any((on_label, on) == (label, properties)
                   for on_label, on, _, _ in _range_indexes(session))

    if exists():
        return None
    name = _index_name(label, properties)
    on = ", ".join(f"n.`{checked_identifier(p, 'property name')}`" for p in properties)
    statement = (f"CREATE INDEX `{name}` "
                 f"FOR (n:`{checked_identifier(label, 'label')}`) ON ({on})")
    return name if _create(session, statement, exists) else None


def _ensure_constraint(session: neo4j.Session, label: str, prop: str) -> Optional[str]:
    """The name of the uniqueness constraint created on (label, prop), or None if one
    exists or cannot be created (then a warning says why and what to do)."""
    def exists() -> bool:
        return (label, prop) in _unique_constraints(session)

    if exists():
        return None
    safe_label, safe_prop = checked_identifier(label, "label"), checked_identifier(prop, "property name")
    blocking = [name for on_label, properties, name, owner in _range_indexes(session)
                if (on_label, properties) == (label, (prop,)) and owner is None]
    ours = _index_name(label, (prop,))
    if [name for name in blocking if name != ours]:
        _LOG.warning("the index %s on :%s(%s) prevents a uniqueness constraint there, so two "
                     "runs started together could make duplicate %s nodes; drop it (DROP INDEX "
                     "`%s`) and the next run creates the constraint", blocking[0], label, prop,
                     label, blocking[0])
        return None
    duplicates = [record["value"] for record in session.run(
        f"MATCH (n:`{safe_label}`) WHERE n.`{safe_prop}` IS NOT NULL "
        f"WITH n.`{safe_prop}` AS value, count(*) AS n WHERE n > 1 RETURN value LIMIT 5")]
    if duplicates:
        _LOG.warning("cannot create the uniqueness constraint on :%s(%s): several nodes share "
                     "the values %s; merge or delete the duplicates, and the next run creates it",
                     label, prop, ", ".join(map(repr, duplicates)))
        return None
    if blocking:  # our own index of earlier versions: the constraint brings its own
        _run_schema(session, f"DROP INDEX `{ours}` IF EXISTS")
        _LOG.info("dropped the index %s: the uniqueness constraint on :%s(%s) replaces it",
                  ours, label, prop)
    name = _constraint_name(label, prop)
    statement = (f"CREATE CONSTRAINT `{name}` "
                 f"FOR (n:`{safe_label}`) REQUIRE n.`{safe_prop}` IS UNIQUE")
    return name if _create(session, statement, exists) else None
