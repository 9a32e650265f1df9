"""Bad arguments and a bad environment, for every command, against a real Neo4j: each
is refused with exit 2 (1 for a server that cannot be reached or refuses the
credentials) and one ``error:`` line that says what to fix, before anything is
written: the graph, its indexes and its operation records are exactly as before.

Every case runs the command as a process (``tests.support.CliRun``); the checks made
while parsing need no server round trip and no pipeline, so each takes about as long
as Python and Beam take to import.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Dict, List, Optional

import neo4j
import neo4j.exceptions
import pytest

from pipelines.cli import UsageError, check_uri, connect
from tests.support import CliRun, closed_port, fingerprint, scalar
from transforms.connection import Neo4jConnection

TENANT = "inputs-tenant"
#: Each command with arguments that would make it work on the graph below.
COMMANDS: Dict[str, List[str]] = {
    "pipelines.scale_up": ["--tenant-id", TENANT, "--scale-factor", "2"],
    "pipelines.operations": ["list"],
    "pipelines.stats": [],
    "pipelines.validate": ["--operation-id", "op-inputs"],
    "pipelines.rollback": ["--operation-id", "op-inputs"],
    "pipelines.demo_tenant": ["--tenant-id", "inputs-demo", "--resources", "10"],
    "pipelines.run_local": ["--tenant-id", TENANT, "--resources", "3"],
}
#: The commands that pass the flags they do not know on to Beam.
BEAM_COMMANDS = ("pipelines.scale_up", "pipelines.demo_tenant", "pipelines.run_local")
#: "Within the same few seconds": Python and Beam take 1-3 s to import on 2 busy cores;
#: a server that never answers costs the driver's 8 s acquisition timeout on top.
FAIL_FAST_S = 10
SILENT_SERVER_S = 20
URI_SCHEMES = "bolt, bolt+s, bolt+ssc, neo4j, neo4j+s, neo4j+ssc"


@pytest.fixture(scope="module")
def graph(neo4j_connection, neo4j_driver, clear_neo4j):
    """A small tenant (three resources, one relationship) and an index, nothing else."""
    clear_neo4j()
    neo4j_driver.execute_query(
        "UNWIND range(1, 3) AS i CREATE (:Resource {id: $tenant + '-' + i, tenant_id: $tenant, "
        "type: 'Microsoft.Compute/disks', name: 'disk-' + i})", tenant=TENANT)
    neo4j_driver.execute_query(
        "MATCH (a:Resource {id: $tenant + '-1'}), (b:Resource {id: $tenant + '-2'}) "
        "CREATE (a)-[:DEPENDS_ON]->(b)", tenant=TENANT)
    neo4j_driver.execute_query("CREATE INDEX inputs_resource_id IF NOT EXISTS "
                               "FOR (n:Resource) ON (n.id)")
    return neo4j_connection


def database_state(driver: neo4j.Driver):
    """Everything in the graph (operation records included) and every index."""
    return (fingerprint(driver, []),
            scalar(driver, "MATCH (o:ScaleOperation) RETURN count(o)"),
            sorted(r["name"] for r in driver.execute_query("SHOW INDEXES YIELD name").records))


@pytest.fixture
def unchanged(graph, neo4j_driver):
    """Asserts, after the test, that the graph, its records and its indexes did not change."""
    before = database_state(neo4j_driver)
    yield
    assert database_state(neo4j_driver) == before
    assert before[1] == 0  # no ScaleOperation record, before or after


def run(tmp_path: Path, module: str, *args: str, env: Optional[Dict[str, str]] = None,
        name: str = "run") -> CliRun:
    command = CliRun(tmp_path, [*COMMANDS[module], *args], module=module, name=name,
                     env=None if env is None else {**os.environ, **env})
    command.wait()
    return command


def assert_refused(command: CliRun, code: int, line: str) -> None:
    """Exit ``code``, and ``line`` is the one error line (no traceback, no driver noise)."""
    assert command.process.returncode == code, command.stderr_tail()
    assert command.error_lines() == [line], command.stderr_tail()
    assert "Traceback" not in command.stderr


# ------------------------------------------------------------------------- --report

@pytest.mark.parametrize("module", ["pipelines.scale_up", "pipelines.demo_tenant",
                                    "pipelines.run_local"])
def test_report_into_a_missing_directory_is_refused_before_anything_runs(unchanged, tmp_path,
                                                                         module):
    report = tmp_path / "no-such-dir" / "report.json"
    command = run(tmp_path, module, "--report", str(report))
    assert_refused(command, 2, f"error: --report {report}: directory {report.parent} does not "
                               "exist; create it first")
    assert not report.parent.exists()


def test_report_into_an_unwritable_directory_is_refused(unchanged, tmp_path):
    report = Path("/sys/tenant-scaler-report.json")  # sysfs takes no new files, even from root
    try:
        report.touch()
    except OSError:
        pass
    else:
        report.unlink()
        pytest.skip("/sys takes new files here")
    command = run(tmp_path, "pipelines.scale_up", "--report", str(report))
    assert_refused(command, 2, f"error: --report {report}: cannot write it (Permission "
                               "denied); give a writable path")


def test_report_that_is_a_directory_is_refused(unchanged, tmp_path):
    command = run(tmp_path, "pipelines.scale_up", "--report", str(tmp_path))
    assert_refused(command, 2, f"error: --report {tmp_path}: is a directory; give a file name")


def test_checking_the_report_path_leaves_nothing_behind_when_the_run_stops_early(
        unchanged, tmp_path):
    new, old = tmp_path / "new.json", tmp_path / "old.json"
    old.write_text("the previous report\n")
    for report in (new, old):
        command = CliRun(tmp_path, ["--tenant-id", "no-such-tenant", "--scale-factor", "2",
                                    "--report", str(report)], name=report.stem)
        assert command.wait() == 2, command.stderr_tail()  # found by the plan, connected
        assert "'no-such-tenant'" in command.error_lines()[0]
    assert not new.exists()
    assert old.read_text() == "the previous report\n"


# ------------------------------------------------------------------------- flags

@pytest.mark.parametrize("module, flag, meant", [
    ("pipelines.scale_up", "--rollback-on-falure", "--rollback-on-failure"),
    ("pipelines.scale_up", "--rollback", "--rollback-on-failure"),
    ("pipelines.scale_up", "--paralelism=2", "--parallelism"),  # a Beam flag
    ("pipelines.operations", "--limt", "--limit"),
    ("pipelines.stats", "--tenant_id", "--tenant-id"),
    ("pipelines.rollback", "--batch-sise", "--batch-size"),
    ("pipelines.demo_tenant", "--seeed", "--seed"),
    ("pipelines.run_local", "--resorces", "--resources"),
])
def test_unknown_flag_is_refused_with_the_closest_known_one(unchanged, tmp_path, module, flag,
                                                            meant):
    command = run(tmp_path, module, flag, "1")
    assert_refused(command, 2, f"error: unknown flag {flag.split('=')[0]}; did you mean {meant}?")


@pytest.mark.parametrize("module", BEAM_COMMANDS)
def test_unknown_runner_is_refused_before_connecting(unchanged, tmp_path, module):
    command = run(tmp_path, module, "--runner", "NoSuchRunner")
    assert command.process.returncode == 2, command.stderr_tail()
    [line] = command.error_lines()
    assert line.startswith("error: --runner NoSuchRunner: Beam has no such runner (runners: ")
    assert "FnApiRunner" in line and "FlinkRunner" in line
    assert line.endswith("or the module path of a PipelineRunner class)")


def test_misspelt_runner_is_refused_with_the_closest_one(unchanged, tmp_path):
    command = run(tmp_path, "pipelines.scale_up", "--runner", "FlinkRuner")
    assert command.process.returncode == 2
    [line] = command.error_lines()
    assert line.startswith("error: --runner FlinkRuner: Beam has no such runner; "
                           "did you mean FlinkRunner? (runners: ")


def test_runner_path_that_is_no_runner_is_refused(unchanged, tmp_path):
    command = run(tmp_path, "pipelines.scale_up", "--runner", "collections.OrderedDict")
    assert_refused(command, 2, "error: --runner collections.OrderedDict: OrderedDict is not a "
                               "Beam PipelineRunner")


def test_bad_value_of_a_beam_flag_is_refused(unchanged, tmp_path):
    command = run(tmp_path, "pipelines.scale_up", "--direct_num_workers", "two")
    assert_refused(command, 2, "error: argument --direct_num_workers: invalid int value: 'two'")


# ------------------------------------------------------------------------- values

@pytest.mark.parametrize("module, value", [
    ("pipelines.scale_up", "nan"), ("pipelines.scale_up", "inf"), ("pipelines.scale_up", "0"),
    ("pipelines.scale_up", "1e9"), ("pipelines.rollback", "nan"), ("pipelines.rollback", "-inf"),
])
def test_progress_interval_must_be_finite_and_in_range(unchanged, tmp_path, module, value):
    command = run(tmp_path, module, f"--progress-interval={value}")
    assert_refused(command, 2, "error: --progress-interval must be a finite number from 0.01 "
                               f"to 3600, got {float(value)}")


@pytest.mark.parametrize("module, flag, value", [
    ("pipelines.scale_up", "--operation-id", ""),
    ("pipelines.scale_up", "--operation-id", "   "),
    ("pipelines.rollback", "--operation-id", ""),
    ("pipelines.stats", "--tenant-id", " "),
])
def test_blank_id_is_refused(unchanged, tmp_path, module, flag, value):
    command = run(tmp_path, module, flag, value)  # the last of a repeated flag counts
    assert_refused(command, 2, f"error: {flag} must not be empty")


# ------------------------------------------------------------------------- the URI

@pytest.mark.parametrize("module", COMMANDS)
def test_uri_that_is_not_bolt_is_refused(unchanged, tmp_path, module):
    command = run(tmp_path, module, env={"NEO4J_URI": "http://x"})
    assert_refused(command, 2, f"error: NEO4J_URI 'http://x' is not a Neo4j URI: its scheme "
                               f"must be one of {URI_SCHEMES} (e.g. bolt://localhost:7687)")


def test_uri_flag_with_a_bad_port_is_refused(unchanged, tmp_path):
    command = run(tmp_path, "pipelines.operations", "--neo4j-uri", "bolt://localhost:99999")
    assert_refused(command, 2, "error: --neo4j-uri 'bolt://localhost:99999' is not a Neo4j URI: "
                               "its port must be a number from 1 to 65535 (e.g. "
                               "bolt://localhost:7687)")


@pytest.mark.parametrize("uri, problem", [
    ("bolt://", "it names no host"),
    ("bolt://h:0", "its port must be a number from 1 to 65535"),
    ("bolt://h:port", "its port must be a number from 1 to 65535"),
    ("bolt://h:7687/db", "it must not have a path or a fragment"),
    ("bolt://h:7687?policy=x", "only neo4j:// URIs take a routing context (?key=value)"),
    ("127.0.0.1:7687", f"its scheme must be one of {URI_SCHEMES}"),
    ("https://h:7473", f"its scheme must be one of {URI_SCHEMES}"),
])
def test_malformed_uris_are_named_with_the_problem(uri, problem):
    with pytest.raises(UsageError) as refused:
        check_uri(uri, "--neo4j-uri")
    assert str(refused.value) == (f"--neo4j-uri {uri!r} is not a Neo4j URI: {problem} "
                                  "(e.g. bolt://localhost:7687)")


def test_credentials_in_the_uri_are_refused_and_not_repeated():
    with pytest.raises(UsageError, match="must not hold credentials") as refused:
        check_uri("neo4j+s://admin:s3cret@db.example.com:7687", "NEO4J_URI")
    assert "s3cret" not in str(refused.value) and "admin" not in str(refused.value)
    assert "'neo4j+s://…@db.example.com:7687'" in str(refused.value)


@pytest.mark.parametrize("uri", ["bolt://localhost", "bolt+s://db.example.com:7687",
                                 "bolt+ssc://[::1]:7687", "neo4j://h:7687?policy=eu",
                                 "NEO4J+S://h/"])
def test_well_formed_uris_pass(uri):
    check_uri(uri, "--neo4j-uri")


# ------------------------------------------------------------------------- the database

@pytest.mark.parametrize("module", COMMANDS)
def test_database_that_does_not_exist_is_refused_with_those_that_do(unchanged, tmp_path,
                                                                     neo4j_driver, module):
    databases = sorted({r["name"] for r in neo4j_driver.execute_query(
        "SHOW DATABASES YIELD name", database_="system").records})
    command = run(tmp_path, module, "--neo4j-database", "nosuch")
    assert_refused(command, 2, f"error: database 'nosuch' does not exist on {graph_uri()}; "
                               f"databases there: {', '.join(databases)}")


def graph_uri() -> str:
    return os.environ["NEO4J_URI"]


class _NotAllowedToList:
    """A server without database ``nosuch`` that does not let this user list its
    databases (Community edition has no such users, hence this stand-in)."""

    def session(self, database, **unused):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def run(self, query):
        if query.startswith("SHOW DATABASES"):
            raise neo4j.exceptions.Neo4jError._hydrate_neo4j(
                code="Neo.ClientError.Security.Forbidden", message="Permission denied.")
        raise neo4j.exceptions.Neo4jError._hydrate_neo4j(
            code="Neo.ClientError.Database.DatabaseNotFound", message="Graph not found: nosuch")

    def close(self):
        pass


class _ConnectionToThatServer(Neo4jConnection):
    def open_driver(self, **unused):
        return _NotAllowedToList()


def test_database_that_does_not_exist_without_the_right_to_list_gives_the_plain_message():
    connection = _ConnectionToThatServer(uri="bolt://db.example.com:7687", database="nosuch")
    with pytest.raises(UsageError) as refused:
        with connect(connection):
            pass
    assert str(refused.value) == ("database 'nosuch' does not exist on bolt://db.example.com:7687; "
                                  "check --neo4j-database or NEO4J_DATABASE")


# ------------------------------------------------------------------------- fail fast

def assert_fails_fast(command: CliRun, line_start: str, line_end: str, within: float) -> None:
    """Exit 1 within ``within`` seconds with one error line, and no other line about it:
    no warnings, no retries (progress lines of the command's own may come before)."""
    assert command.process.returncode == 1, command.stderr_tail()
    [line] = command.error_lines()
    assert line.startswith(line_start) and line.endswith(line_end), line
    others = [text for text in command.stderr.splitlines() if text != line
              and any(word in text.lower() for word in ("warning", "error", "retr", "traceback"))]
    assert others == [], command.stderr_tail()
    assert command.elapsed < within, f"{command.elapsed:.1f} s"


@pytest.mark.parametrize("scheme", ["bolt", "neo4j"])
@pytest.mark.parametrize("module", COMMANDS)
def test_unreachable_server_fails_fast_with_one_line(unchanged, tmp_path, module, scheme):
    uri = f"{scheme}://127.0.0.1:{closed_port()}"
    command = run(tmp_path, module, "--neo4j-uri", uri)
    assert_fails_fast(command, f"error: cannot reach Neo4j at {uri}: ",
                      "Connection refused); check that the server runs and that --neo4j-uri or "
                      "NEO4J_URI is its Bolt address", FAIL_FAST_S)


@pytest.mark.parametrize("module", COMMANDS)
def test_refused_credentials_fail_fast_with_one_line(unchanged, tmp_path, module):
    # A user of its own per command: the server locks a user out for a while after a few
    # wrong passwords, and the other tests connect as the real one.
    user = f"nobody-{module.rsplit('.', 1)[1]}"
    command = run(tmp_path, module, env={"NEO4J_USER": user, "NEO4J_PASSWORD": "wrong"})
    assert_fails_fast(command, f"error: Neo4j at {graph_uri()} refused the credentials of user "
                               f"'{user}'; check NEO4J_USER and NEO4J_PASSWORD", "", FAIL_FAST_S)
    assert "wrong" not in command.stderr.replace("wrong passwords", "")


def test_server_that_never_answers_fails_fast_for_every_command(unchanged, tmp_path):
    """All commands at once against one listening socket that never answers."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        uri = f"bolt://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        commands = {module: CliRun(tmp_path, [*args, "--neo4j-uri", uri], module=module,
                                   name=module) for module, args in COMMANDS.items()}
        for command in commands.values():
            command.wait(timeout=60)
    print(f"silent server: all {len(commands)} commands ended after "
          f"{time.monotonic() - started:.1f} s")
    for module, command in commands.items():
        assert_fails_fast(command, f"error: cannot reach Neo4j at {uri}: ",
                          "check that the server runs and that --neo4j-uri or NEO4J_URI is its "
                          "Bolt address", SILENT_SERVER_S)
