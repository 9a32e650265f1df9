"""Indexes the writes and the queries rely on, created only where missing.

Graphs written by Azure Tenant Grapher usually carry their own constraints and
indexes under their own names (a uniqueness constraint on ``Resource.id`` brings a
RANGE index). Creating ours under other names would fail or duplicate them, so we
look at what exists first and create an index only for a (label, properties) pair
that no online RANGE index covers yet.
"""

from __future__ import annotations

import logging
from typing import Iterable, List, Sequence, Tuple

import neo4j

from transforms.cypher import checked_identifier

_LOG = logging.getLogger(__name__)

IndexSpec = Tuple[str, Tuple[str, ...]]

#: The seed's indexes (lookups by id, the synthetic markers, the tenant), and the
#: operation records' id.
SCALE_UP_INDEXES: Tuple[IndexSpec, ...] = (
    ("Resource", ("id",)),
    ("Resource", ("synthetic",)),
    ("Resource", ("scale_operation_id",)),
    ("Resource", ("template_source_id",)),
    ("Resource", ("tenant_id",)),
    ("Resource", ("synthetic", "scale_operation_id")),
    ("ScaleOperation", ("id",)),
)
#: Uniqueness the writes rely on: the ledger of written batches (``transforms.write``).
SCALE_UP_CONSTRAINTS: Tuple[Tuple[str, str], ...] = (("ScaleBatch", "key"),)
INDEX_ONLINE_TIMEOUT_S = 600


def _index_name(label: str, properties: Sequence[str]) -> str:
    return "tenant_scaler_" + "_".join([label.lower(), *properties])


def existing_range_indexes(session: neo4j.Session) -> set:
    """(label, properties) of every node RANGE index, including constraint-backed ones."""
    result = session.run(
        "SHOW INDEXES YIELD type, entityType, labelsOrTypes, properties "
        "WHERE type = 'RANGE' AND entityType = 'NODE' "
        "RETURN labelsOrTypes, properties"
    )
    return {(record["labelsOrTypes"][0], tuple(record["properties"])) for record in result}


def ensure_indexes(
    driver: neo4j.Driver, database: str, specs: Iterable[IndexSpec] = SCALE_UP_INDEXES
) -> List[str]:
    """Create the missing indexes of ``specs``, wait until all are online; return new names."""
    created = []
    with driver.session(database=database) as session:
        for label, prop in SCALE_UP_CONSTRAINTS:
            name = _index_name(label, (prop, "unique"))
            session.run(f"CREATE CONSTRAINT `{name}` IF NOT EXISTS FOR (n:`{label}`) "
                        f"REQUIRE n.`{prop}` IS UNIQUE").consume()
        existing = existing_range_indexes(session)
        for label, properties in specs:
            if (label, tuple(properties)) in existing:
                continue
            name = _index_name(label, properties)
            on = ", ".join(f"n.`{checked_identifier(p, 'property name')}`" for p in properties)
            session.run(
                f"CREATE INDEX `{name}` IF NOT EXISTS "
                f"FOR (n:`{checked_identifier(label, 'label')}`) ON ({on})"
            ).consume()
            created.append(name)
        if created:
            _LOG.info("created indexes %s; waiting for them to come online", ", ".join(created))
            session.run("CALL db.awaitIndexes($timeout)", timeout=INDEX_ONLINE_TIMEOUT_S).consume()
    return created
