"""The local Neo4j: a real server, real Bolt, real processes (no mocks).

The suite starts one server of its own beyond the session one (CLI start, SIGTERM,
cleanup), because each start costs ~10 s of the 2 cores; the error paths are checked
before any java process would start.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import neo4j
import neo4j.exceptions
import psutil
import pytest

from pipelines.infra import neo4j_server
from pipelines.infra.neo4j_server import LocalNeo4j, LocalNeo4jError
from pipelines.infra.processes import port_is_free, tail
from transforms.connection import Neo4jConnection

REPO = Path(__file__).resolve().parents[1]
own_server = pytest.mark.skipif(
    bool(os.environ.get("NEO4J_URI")), reason="NEO4J_URI is set: tests use that server, start none")


def _our_processes(needle: str) -> list[psutil.Process]:
    """Live processes whose command line mentions ``needle`` (a home dir of ours)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = process.info["cmdline"] or []
        if process.info["status"] != psutil.STATUS_ZOMBIE and any(needle in part for part in cmdline):
            found.append(process)
    return found


# --------------------------------------------------------------- the session server


def test_parameterised_write_and_read_round_trip(neo4j_graph: Neo4jConnection,
                                                 neo4j_driver: neo4j.Driver) -> None:
    rows = [{"id": f"u{i}", "name": f"User {i}", "score": i * 0.5, "tags": ["a", str(i)]} for i in range(100)]
    summary = neo4j_driver.execute_query(
        "UNWIND $rows AS row CREATE (u:User) SET u = row",
        rows=rows, database_=neo4j_graph.database,
    ).summary
    assert summary.counters.nodes_created == 100

    records, _, _ = neo4j_driver.execute_query(
        "MATCH (u:User) WHERE u.id IN $ids RETURN u.id AS id, u.name AS name, u.score AS score, "
        "u.tags AS tags ORDER BY u.score",
        ids=["u3", "u7"], database_=neo4j_graph.database, routing_=neo4j.RoutingControl.READ,
    )
    assert [r.data() for r in records] == [
        {"id": "u3", "name": "User 3", "score": 1.5, "tags": ["a", "3"]},
        {"id": "u7", "name": "User 7", "score": 3.5, "tags": ["a", "7"]},
    ]


def test_wrong_password_is_refused(neo4j_connection: Neo4jConnection) -> None:
    wrong = dataclasses.replace(neo4j_connection, password="not-the-password")
    with wrong.open_driver() as driver:
        with pytest.raises(neo4j.exceptions.AuthError):
            driver.verify_connectivity()


def test_clear_removes_data_constraints_and_indexes(neo4j_graph: Neo4jConnection, neo4j_driver: neo4j.Driver,
                                                    clear_neo4j: Callable[[], None]) -> None:
    db = neo4j_graph.database
    neo4j_driver.execute_query("CREATE CONSTRAINT user_id FOR (u:User) REQUIRE u.id IS UNIQUE", database_=db)
    neo4j_driver.execute_query("CREATE INDEX user_name FOR (u:User) ON (u.name)", database_=db)
    neo4j_driver.execute_query(
        "UNWIND range(1, 1000) AS i CREATE (:User {id: i})-[:MEMBER_OF]->(:Group {id: i})", database_=db)

    clear_neo4j()

    def count(query: str) -> int:
        return neo4j_driver.execute_query(query, database_=db).records[0][0]

    assert count("MATCH (n) RETURN count(n)") == 0
    assert count("SHOW CONSTRAINTS YIELD name RETURN count(*)") == 0
    assert count("SHOW INDEXES YIELD type WHERE type <> 'LOOKUP' RETURN count(*)") == 0
    assert count("SHOW INDEXES YIELD type WHERE type = 'LOOKUP' RETURN count(*)") == 2  # kept


# --------------------------------------------------------------- a server of our own


@own_server
def test_cli_start_serves_then_sigterm_leaves_nothing_behind(tmp_path: Path) -> None:
    """Cold start from cached jars via the CLI; SIGTERM stops java; port and processes freed."""
    neo4j_server.ensure_jars()  # the session server normally did this; not part of the timing
    marker_mtime = neo4j_server.fetch_marker().stat().st_mtime_ns
    home = tmp_path / "own-home"
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    env = dict(os.environ, NEO4J_HEAP="1g", NEO4J_PAGECACHE="256m", PYTHONPATH=str(REPO))
    env.pop("NEO4J_PASSWORD", None)
    began = time.monotonic()
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        cli = subprocess.Popen(
            [sys.executable, "-m", "pipelines.local_neo4j", "start", "--home", str(home), "--port", "0"],
            cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
    try:
        while "# logs:" not in out.read_text() and cli.poll() is None and time.monotonic() - began < 150:
            time.sleep(0.2)
        assert cli.poll() is None, f"CLI exited early:\n{err.read_text()}"
        ready_s = time.monotonic() - began
        exports = dict(re.findall(r"^export (\w+)=(.*)$", out.read_text(), re.M))
        assert exports["NEO4J_PASSWORD_FILE"] == str(home.resolve() / "password")
        connection = Neo4jConnection.from_environment(exports)
        port = int(exports["NEO4J_URI"].rsplit(":", 1)[1])
        assert connection.password and connection.password not in out.read_text() + err.read_text()
        with connection.open_driver() as driver:
            assert driver.execute_query("RETURN $x AS x", x=42, database_=connection.database).records[0]["x"] == 42

        javas = [p for p in psutil.Process(cli.pid).children() if "CommunityEntryPoint" in " ".join(p.cmdline())]
        assert len(javas) == 1
        java = javas[0]
        assert os.getpgid(java.pid) == java.pid  # own process group: Ctrl-C in a terminal does not hit it
        assert not port_is_free(port)

        cli.send_signal(signal.SIGTERM)
        assert cli.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
        # shown by pytest only if the test fails
        print(f"--- CLI stderr ---\n{err.read_text()}--- CLI stdout ---\n{out.read_text()}")
        print(f"--- neo4j.log ---\n{tail(home / 'logs' / 'neo4j.log')}")
    assert not java.is_running() or java.status() == psutil.STATUS_ZOMBIE
    assert _our_processes(str(home)) == []
    assert port_is_free(port)
    assert neo4j_server.fetch_marker().stat().st_mtime_ns == marker_mtime, "the jars were fetched again"
    assert "fetching" not in err.read_text()
    print(f"\ncold start of a second server (cached jars, via CLI): {ready_s:.1f} s "
          f"[{re.search(r'Neo4j ready in [0-9.]+ s', err.read_text()).group(0)}]")
    assert ready_s < 120


@own_server
def test_taken_port_is_refused_quickly_without_starting_java(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        began = time.monotonic()
        with pytest.raises(LocalNeo4jError, match=rf"\bport {port}\b"):
            LocalNeo4j(home, port=port).start()
        assert time.monotonic() - began < 2
    assert _our_processes(str(home.resolve())) == []
    assert not (home / "logs").exists()


@own_server
def test_missing_java_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(LocalNeo4jError, match=r"Java is not on PATH.*Java 17"):
        LocalNeo4j(tmp_path / "home").start()


@own_server
def test_old_java_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "java"
    fake.write_text('#!/bin/sh\necho \'java version "1.8.0_402"\' >&2\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(LocalNeo4jError, match=r"Java 8; .*install Java 17"):
        LocalNeo4j(tmp_path / "home").start()


def test_missing_maven_is_a_clear_error_when_jars_are_needed(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANT_SCALER_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("PATH", str(tmp_path))  # neither mvn nor java
    with pytest.raises(LocalNeo4jError, match=r"Maven \('mvn'\) is not on PATH"):
        neo4j_server.ensure_jars()


def test_generated_password_is_stored_privately_and_reused(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEO4J_PASSWORD", raising=False)
    first = LocalNeo4j(tmp_path / "home")
    assert first.password_file is not None
    assert stat.S_IMODE(first.password_file.stat().st_mode) == 0o600
    second = LocalNeo4j(tmp_path / "home")
    assert second._password == first._password and len(first._password) >= 24
    given = LocalNeo4j(tmp_path / "other", password="given-password")
    assert given.password_file is None and not (tmp_path / "other" / "password").exists()
    assert first._password not in repr(Neo4jConnection(password=first._password))
