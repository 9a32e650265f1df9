"""Shared fixtures: one Neo4j server for the whole session, and a clean graph per test.

* ``neo4j_connection`` (session): ``Neo4jConnection.from_environment()`` when
  ``NEO4J_URI`` is set (your own server; its database is wiped by ``neo4j_graph``!),
  otherwise ONE ``LocalNeo4j`` started in a session tmp dir and stopped at the end
  (server starts cost ~10 s each on 2 cores, so the suite shares this one); for the
  session it is also exported as ``NEO4J_URI``/``NEO4J_USER``/``NEO4J_DATABASE``/
  ``NEO4J_PASSWORD_FILE``, so code that reads the environment reaches it too.
* ``neo4j_driver`` (session): one driver on that connection, closed at the end.
* ``clear_neo4j`` (session): a function that empties the database: all nodes and
  relationships, all constraints and indexes except the built-in LOOKUP ones.
* ``neo4j_graph`` (function): calls ``clear_neo4j()`` before the test, yields the
  ``Neo4jConnection``.

Tests that use any of these are marked ``neo4j`` automatically.
"""

from __future__ import annotations

import os
from typing import Callable, Iterator

import neo4j
import pytest

from pipelines.infra.neo4j_server import LocalNeo4j
from transforms.connection import Neo4jConnection

_NEO4J_FIXTURES = {"neo4j_connection", "neo4j_driver", "clear_neo4j", "neo4j_graph"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _NEO4J_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.neo4j)


@pytest.fixture(scope="session")
def neo4j_connection(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Neo4jConnection]:
    """Where the tests' Neo4j is: ``$NEO4J_URI`` if set, else a local server for the session."""
    if os.environ.get("NEO4J_URI"):
        yield Neo4jConnection.from_environment()
        return
    server = LocalNeo4j(tmp_path_factory.mktemp("neo4j-home"))
    try:
        connection = server.start()
        # Export it too, for code under test that reads the environment (CLI main()s,
        # subprocesses) rather than taking a connection: it must reach this server.
        with pytest.MonkeyPatch.context() as env:
            env.setenv("NEO4J_URI", connection.uri)
            env.setenv("NEO4J_USER", connection.user)
            env.setenv("NEO4J_DATABASE", connection.database)
            if server.password_file is not None:  # else it came from NEO4J_PASSWORD
                env.setenv("NEO4J_PASSWORD_FILE", str(server.password_file))
            yield connection
    finally:
        server.stop()


@pytest.fixture(scope="session")
def neo4j_driver(neo4j_connection: Neo4jConnection) -> Iterator[neo4j.Driver]:
    """One driver for the session (drivers are thread-safe and pool their connections)."""
    driver = neo4j_connection.open_driver()
    try:
        driver.verify_connectivity()
        yield driver
    finally:
        driver.close()


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


@pytest.fixture(scope="session")
def clear_neo4j(neo4j_driver: neo4j.Driver, neo4j_connection: Neo4jConnection) -> Callable[[], None]:
    """A function that empties the test database (data, constraints, indexes).

    Relationships go first and everything in bounded batches (``CALL {} IN
    TRANSACTIONS``, which needs an auto-commit transaction, hence ``session.run``), so a
    big graph left by a benchmark does not become one huge transaction. Constraints are
    dropped before indexes because a constraint owns its backing index.
    """

    def clear() -> None:
        with neo4j_driver.session(database=neo4j_connection.database) as session:
            session.run(
                "MATCH ()-[r]->() CALL (r) { DELETE r } IN TRANSACTIONS OF 50000 ROWS").consume()
            session.run(
                "MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 20000 ROWS").consume()
            constraints = [r["name"] for r in session.run("SHOW CONSTRAINTS YIELD name")]
            for name in constraints:
                session.run(f"DROP CONSTRAINT {_quote(name)} IF EXISTS").consume()
            indexes = [r["name"] for r in session.run(
                "SHOW INDEXES YIELD name, type WHERE type <> 'LOOKUP' RETURN name")]
            for name in indexes:
                session.run(f"DROP INDEX {_quote(name)} IF EXISTS").consume()

    return clear


@pytest.fixture
def neo4j_graph(neo4j_connection: Neo4jConnection, clear_neo4j: Callable[[], None]) -> Iterator[Neo4jConnection]:
    """An empty database (no data, constraints or non-LOOKUP indexes) for this test."""
    clear_neo4j()
    yield neo4j_connection
