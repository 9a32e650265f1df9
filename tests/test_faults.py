"""Faults and bad input, each against a real Neo4j.

* The server cannot be reached (a closed port), refuses the password, or accepts TCP
  but never answers: the command fails within seconds, exit 1, with a message that
  says so, and writes nothing.
* Connections cut in the middle of a run (``tests.tcp_proxy.TcpProxy`` between the
  subprocess and the server): a short cut is carried by the driver's retries; a cut
  that outlasts them fails the run (exit 1, clear message, the operation recorded as
  failed). Either way a re-run of the same operation id ends with exact counts and no
  duplicates, and nothing else in the graph changed.
* The process killed (SIGKILL) in the middle of a run: the re-run completes it exactly.
* Hostile or odd data: labels and relationship types that are Cypher injections are
  rejected by name and never executed; odd property names and values (unicode, lists,
  empty strings, 5,000-character JSON, temporal and spatial values) are copied exactly.

Runs are subprocesses (``python -m pipelines.scale_up``) where the process is the
thing under test (exit code, stderr, signals, its own connection), and in-process
(``scale_up.main``) for the re-runs, which the tests only need the result of.

A known bug gets a test that asserts the right behaviour, marked
``xfail(strict=True)`` until the fix lands (the mark goes with the fix).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import neo4j
import pytest
from neo4j.spatial import CartesianPoint, WGS84Point
from neo4j.time import Date, DateTime, Duration

from pipelines import scale_up
from pipelines.demo_tenant import load_demo_tenant
from pipelines.validate import NODE_MARKERS, RELATIONSHIP_MARKERS, validate_operation
from tests.tcp_proxy import TcpProxy
from tests.test_scale_up import fingerprint, operation_fingerprint
from transforms.demo_tenant import DemoTenantSpec
from transforms.replicate import NOT_COPIED_PROPERTIES, synthetic_suffix

ROOT = Path(__file__).resolve().parents[1]

# The tenant the mid-run faults scale: big enough that a run writes for several seconds
# (900 copies, ~3,500 relationships, batches of 200), small enough for 2 shared cores.
TENANT = "fault-tenant"
RESOURCES = 300
FACTOR = 4
BATCH_SIZE = 200
#: Longest a run through the faults may take before the test gives up on it (a hang).
RUN_TIMEOUT_S = 240
#: "Within a few seconds": Python + Beam imports take ~2 s of that on 2 cores.
QUICK_FAILURE_S = 15


# --------------------------------------------------------------------------- helpers


def scalar(driver: neo4j.Driver, query: str, **params: Any) -> Any:
    return driver.execute_query(query, **params).records[0][0]


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bolt_port(uri: str) -> int:
    match = re.fullmatch(r"(?:bolt|neo4j)://(?:127\.0\.0\.1|localhost):(\d+)", uri)
    if match is None:
        pytest.skip(f"the fault tests need a Neo4j on 127.0.0.1, not {uri}")
    return int(match.group(1))


class CliRun:
    """``python -m pipelines.scale_up`` as a subprocess, in its own process group;
    stdout and stderr go to files (the progress lines would fill a pipe)."""

    def __init__(self, tmp_path: Path, args: List[str], env: Optional[Dict[str, str]] = None) -> None:
        self.stdout_path = tmp_path / "stdout.txt"
        self.stderr_path = tmp_path / "stderr.txt"
        self.started = time.monotonic()
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pipelines.scale_up", *args],
                cwd=ROOT, env=env if env is not None else dict(os.environ),
                stdout=out, stderr=err, start_new_session=True)
        self.elapsed: Optional[float] = None

    def wait(self, timeout: float = RUN_TIMEOUT_S) -> int:
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the run did not end within {timeout:.0f} s (a hang); stderr:\n"
                        + self.stderr_tail())
        self.elapsed = time.monotonic() - self.started
        return code

    def kill(self) -> None:
        """SIGKILL to the run's process group (only processes this test started)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def stderr_tail(self, lines: int = 40) -> str:
        return "\n".join(self.stderr.splitlines()[-lines:])

    def report(self) -> Optional[Dict[str, Any]]:
        lines = self.stdout.strip().splitlines()
        return json.loads(lines[-1]) if lines else None

    def error_lines(self) -> List[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]


def scale_args(operation_id: str, *extra: str, tenant: str = TENANT) -> List[str]:
    return ["--tenant-id", tenant, "--scale-factor", str(FACTOR), "--operation-id", operation_id,
            "--batch-size", str(BATCH_SIZE), "--progress-interval", "1", *extra]


def wait_for_writes(driver: neo4j.Driver, run: CliRun, operation_id: str, timeout: float = 120) -> int:
    """Wait until the run has written some of the operation's nodes; return how many."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        written = scalar(driver, "MATCH (n:Resource {scale_operation_id: $op}) RETURN count(n)",
                         op=operation_id)
        if written:
            return written
        if run.process.poll() is not None:
            pytest.fail(f"the run ended (exit {run.process.returncode}) before it wrote "
                        f"anything:\n{run.stderr_tail()}")
        time.sleep(0.1)
    run.kill()
    pytest.fail(f"the run wrote nothing within {timeout} s:\n{run.stderr_tail()}")


def wait_for_stderr(run: CliRun, pattern: str, timeout: float) -> Optional[float]:
    """Seconds until ``pattern`` appears in the run's stderr; None if the run ended first
    or ``timeout`` passed."""
    started = time.monotonic()
    regex = re.compile(pattern, re.MULTILINE)
    while time.monotonic() - started < timeout:
        if regex.search(run.stderr):
            return time.monotonic() - started
        if run.process.poll() is not None:
            return None
        time.sleep(0.2)
    return None


def operation_written(driver: neo4j.Driver, operation_id: str) -> Dict[str, int]:
    nodes = scalar(driver, "MATCH (n:Resource {scale_operation_id: $op}) RETURN count(n)",
                   op=operation_id)
    relationships = scalar(driver, "MATCH ()-[r]->() WHERE r.scale_operation_id = $op "
                                   "RETURN count(r)", op=operation_id)
    return {"nodes": nodes, "relationships": relationships}


def operation_record(driver: neo4j.Driver, operation_id: str) -> Dict[str, Any]:
    records = driver.execute_query("MATCH (o:ScaleOperation {id: $id}) RETURN properties(o) AS o",
                                   id=operation_id).records
    return records[0]["o"] if records else {}


def resume(tmp_path: Path, operation_id: str) -> tuple:
    """Re-run the operation in this process, on the direct connection; (exit code, report)."""
    report_path = tmp_path / f"resume-{operation_id}.json"
    started = time.monotonic()
    code = scale_up.main([*scale_args(operation_id), "--report", str(report_path)])
    print(f"resume of {operation_id}: exit {code} after {time.monotonic() - started:.1f} s")
    return code, json.loads(report_path.read_text()) if report_path.exists() else None


def assert_exact(driver: neo4j.Driver, operation_id: str, expected: Dict[str, int],
                 report: Dict[str, Any]) -> None:
    """The operation holds exactly the expected nodes and relationships, no duplicates,
    every invariant holds, and the report says so."""
    assert operation_written(driver, operation_id) == expected
    duplicates = scalar(driver, "MATCH (n:Resource {scale_operation_id: $op}) "
                                "WITH n.id AS id, count(*) AS c WHERE c > 1 RETURN count(id)",
                        op=operation_id)
    assert duplicates == 0
    result = validate_operation(driver, "neo4j", operation_id)
    assert result.ok, result.to_dict()
    assert result.nodes_checked == expected["nodes"]
    assert report["status"] == "succeeded" and report["errors"] == [], report["errors"]
    assert report["expected"] == expected
    assert report["written"] == expected
    assert {what: sum(counts.values()) for what, counts in report["in_database"].items()} == expected
    record = operation_record(driver, operation_id)
    assert record["status"] == "succeeded"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tenant(neo4j_connection, neo4j_driver, clear_neo4j):
    """The fault tenant in an otherwise empty database; what a scale-up of it must write."""
    clear_neo4j()
    load_demo_tenant(neo4j_connection, DemoTenantSpec(TENANT, resources=RESOURCES, seed=21))
    templates = scalar(neo4j_driver, "MATCH (t:Resource {tenant_id: $tenant}) WHERE NOT t:Original "
                                     "RETURN count(t)", tenant=TENANT)
    # Counted here independently of the pipeline: at an integer factor every template
    # and every relationship of a template (except the scan link) is copied f-1 times.
    template_relationships = scalar(
        neo4j_driver,
        "MATCH (t:Resource {tenant_id: $tenant})-[r]-(o) WHERE NOT t:Original "
        "AND type(r) <> 'SCAN_SOURCE_NODE' RETURN count(DISTINCT r)", tenant=TENANT)
    return {
        "connection": neo4j_connection,
        "port": bolt_port(neo4j_connection.uri),
        "expected": {"nodes": templates * (FACTOR - 1),
                     "relationships": template_relationships * (FACTOR - 1)},
    }


@pytest.fixture
def unchanged(tenant, neo4j_driver):
    """Asserts, after the test, that nothing outside the scale operations changed."""
    before = fingerprint(neo4j_driver)
    yield
    assert fingerprint(neo4j_driver) == before


# --------------------------------------------------------------------------- the proxy itself


@pytest.fixture
def echo_server():
    """A loopback echo server (one thread per connection, daemon threads); its port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    stop = threading.Event()

    def echo(conn):
        with conn:
            while not stop.is_set():
                try:
                    data = conn.recv(4096)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not data:
                    return
                conn.sendall(data)

    def accept():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except (socket.timeout, OSError):
                continue
            conn.settimeout(0.2)
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    server.close()


def _echoes(port: int, payload: bytes = b"ping") -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(payload)
        received = b""
        while len(received) < len(payload):  # TCP may hand the echo back in pieces
            chunk = sock.recv(len(payload) - len(received))
            if not chunk:
                break
            received += chunk
        return received == payload


def test_proxy_forwards_cuts_refuses_stalls_and_restores(echo_server):
    with TcpProxy(echo_server) as proxy:
        assert _echoes(proxy.port, "ünï 🚀".encode() * 1000)
        live = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        live.sendall(b"x")
        assert live.recv(1) == b"x"
        assert proxy.cut() >= 1 and proxy.refusing
        with pytest.raises((ConnectionResetError, BrokenPipeError, OSError)):
            live.sendall(b"y")
            if not live.recv(1):
                raise ConnectionResetError("closed")
        live.close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        proxy.restore()
        assert _echoes(proxy.port)
        proxy.cut(refuse_for=0.3)  # restores by itself
        time.sleep(0.6)
        assert not proxy.refusing and _echoes(proxy.port)
        held = socket.create_connection(("127.0.0.1", proxy.port), timeout=0.5)
        held.sendall(b"h")
        assert held.recv(1) == b"h"  # admitted and forwarding
        assert proxy.stall() >= 1
        held.sendall(b"z")
        with pytest.raises(socket.timeout):  # silent: no answer, no reset
            held.recv(1)
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=0.5) as new:
            new.sendall(b"n")
            with pytest.raises(socket.timeout):
                new.recv(1)
        proxy.restore()
        assert _echoes(proxy.port)
        held.close()
    assert proxy.live_connections == 0
    assert not any(t.name.startswith("tcp-proxy") and t.is_alive() for t in threading.enumerate())
    with pytest.raises(ValueError):
        TcpProxy(echo_server, target_host="10.0.0.1")


# --------------------------------------------------------------------------- no server


def test_unreachable_server_fails_fast_and_writes_nothing(tenant, neo4j_driver, unchanged, tmp_path):
    operations = scalar(neo4j_driver, "MATCH (o:ScaleOperation) RETURN count(o)")
    uri = f"bolt://127.0.0.1:{closed_port()}"
    run = CliRun(tmp_path, [*scale_args("fault-unreachable"), "--neo4j-uri", uri])
    assert run.wait() == 1, run.stderr_tail()
    print(f"unreachable: exit 1 after {run.elapsed:.1f} s")
    assert run.elapsed < QUICK_FAILURE_S
    assert run.error_lines() and run.error_lines()[-1].startswith(f"error: cannot reach Neo4j at {uri}")
    assert "Traceback" not in run.stderr and run.report() is None
    assert scalar(neo4j_driver, "MATCH (o:ScaleOperation) RETURN count(o)") == operations


def test_wrong_password_fails_fast_and_writes_nothing(tenant, neo4j_driver, unchanged, tmp_path):
    operations = scalar(neo4j_driver, "MATCH (o:ScaleOperation) RETURN count(o)")
    password = "not-the-password-" + os.urandom(6).hex()
    env = dict(os.environ, NEO4J_PASSWORD=password, NEO4J_URI=tenant["connection"].uri)
    run = CliRun(tmp_path, scale_args("fault-password"), env=env)
    assert run.wait() == 1, run.stderr_tail()
    print(f"wrong password: exit 1 after {run.elapsed:.1f} s")
    assert run.elapsed < QUICK_FAILURE_S
    assert run.error_lines() == [
        f"error: Neo4j at {tenant['connection'].uri} refused the credentials of user 'neo4j'; "
        "check NEO4J_USER and NEO4J_PASSWORD"]
    assert password not in run.stderr + run.stdout
    assert "Traceback" not in run.stderr and run.report() is None
    assert scalar(neo4j_driver, "MATCH (o:ScaleOperation) RETURN count(o)") == operations


def test_server_that_never_answers_fails_fast_and_writes_nothing(tenant, neo4j_driver, unchanged,
                                                                 tmp_path):
    operations = scalar(neo4j_driver, "MATCH (o:ScaleOperation) RETURN count(o)")
    with socket.socket() as silent:  # listens (the kernel completes connects), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        uri = f"bolt://127.0.0.1:{silent.getsockname()[1]}"
        run = CliRun(tmp_path, [*scale_args("fault-silent"), "--neo4j-uri", uri])
        try:
            code = run.process.wait(timeout=QUICK_FAILURE_S)
        except subprocess.TimeoutExpired:
            run.kill()
            code = None
    assert scalar(neo4j_driver, "MATCH (o:ScaleOperation) RETURN count(o)") == operations
    assert code == 1, f"no answer within {QUICK_FAILURE_S} s:\n{run.stderr_tail()}"
    assert run.error_lines()[-1].startswith(f"error: cannot reach Neo4j at {uri}")


# --------------------------------------------------------------------------- mid-run faults


def test_short_connection_cut_is_carried_by_the_retries(tenant, neo4j_driver, unchanged, tmp_path):
    operation_id = "fault-short-cut"
    expected = tenant["expected"]
    with TcpProxy(tenant["port"]) as proxy:
        env = dict(os.environ, NEO4J_URI=proxy.uri)
        run = CliRun(tmp_path, scale_args(operation_id), env=env)
        wait_for_writes(neo4j_driver, run, operation_id)
        at_cut = operation_written(neo4j_driver, operation_id)
        connections_before = proxy.accepted
        cut = proxy.cut(refuse_for=3.0)
        code = run.wait()
        reconnections = proxy.accepted - connections_before
    report = run.report()
    print(f"short cut: {at_cut} written at the cut, {cut} connections cut, "
          f"{reconnections} new ones after it; exit {code} after {run.elapsed:.1f} s, "
          f"report retries {report and report['retries']}")
    assert cut > 0 and at_cut != expected  # the cut hit live connections, mid-run
    assert code == 0, run.stderr_tail()
    assert reconnections > 0
    assert_exact(neo4j_driver, operation_id, expected, report)
    written = operation_fingerprint(neo4j_driver, operation_id)

    code, report = resume(tmp_path, operation_id)
    assert code == 0
    assert_exact(neo4j_driver, operation_id, expected, report)
    assert operation_fingerprint(neo4j_driver, operation_id) == written
    assert operation_record(neo4j_driver, operation_id)["runs"] == 2


@pytest.fixture(scope="module")
def long_cut(tenant, neo4j_driver, tmp_path_factory):
    """A run whose connections are cut and refused until it gives up (its transaction
    retries are exhausted: 30 s or more), after which the server is reachable again for
    the run's failure path. Nothing is asserted here; the tests below read the result."""
    operation_id = "fault-long-cut"
    before = fingerprint(neo4j_driver)
    with TcpProxy(tenant["port"]) as proxy:
        env = dict(os.environ, NEO4J_URI=proxy.uri)
        run = CliRun(tmp_path_factory.mktemp("long-cut"), scale_args(operation_id), env=env)
        wait_for_writes(neo4j_driver, run, operation_id)
        at_cut = operation_written(neo4j_driver, operation_id)
        cut_at = time.monotonic()
        cut = proxy.cut()
        # Beam logs the sink's exception when it gives up; then the outage ends.
        gave_up = wait_for_stderr(run, r" ERROR apache_beam", timeout=150)
        proxy.restore()
        code = run.wait()
        ended = time.monotonic() - cut_at
    print(f"long cut: {at_cut} written at the cut, {cut} connections cut; gave up "
          f"{gave_up and round(gave_up, 1)} s after it, exit {code} {ended:.1f} s after it")
    return {"operation_id": operation_id, "run": run, "code": code, "cut": cut,
            "at_cut": at_cut, "gave_up": gave_up, "uri": proxy.uri, "before": before,
            "record": operation_record(neo4j_driver, operation_id),
            "after": operation_written(neo4j_driver, operation_id)}


def test_cut_longer_than_the_retries_fails_the_run_and_records_it(long_cut, tenant):
    run = long_cut["run"]
    assert long_cut["cut"] > 0 and long_cut["at_cut"] != tenant["expected"]
    assert long_cut["gave_up"] is not None, run.stderr_tail()
    assert long_cut["gave_up"] >= 25  # the driver's retries did carry it that long
    assert long_cut["code"] == 1, run.stderr_tail()
    assert run.report() is None
    assert run.error_lines() and run.error_lines()[-1].startswith(
        f"error: cannot reach Neo4j at {long_cut['uri']}"), run.stderr_tail()
    record = long_cut["record"]
    assert record["status"] == "failed", record
    assert record["error"].startswith("ServiceUnavailable")
    assert long_cut["after"] != tenant["expected"]  # the run did stop short


def test_cut_longer_than_the_retries_says_which_operation_to_resume(long_cut):
    last = long_cut["run"].error_lines()[-1]
    assert long_cut["operation_id"] in last and "--operation-id" in last, last


def test_resume_after_the_long_cut_is_exact(long_cut, tenant, neo4j_driver, tmp_path):
    code, report = resume(tmp_path, long_cut["operation_id"])
    assert code == 0
    assert_exact(neo4j_driver, long_cut["operation_id"], tenant["expected"], report)
    assert operation_record(neo4j_driver, long_cut["operation_id"])["runs"] == 2
    assert fingerprint(neo4j_driver) == long_cut["before"]


def test_killed_run_is_completed_by_a_resume(tenant, neo4j_driver, unchanged, tmp_path):
    operation_id = "fault-killed"
    expected = tenant["expected"]
    run = CliRun(tmp_path, scale_args(operation_id))
    wait_for_writes(neo4j_driver, run, operation_id)
    run.kill()
    assert run.process.returncode == -signal.SIGKILL
    at_kill = operation_written(neo4j_driver, operation_id)
    print(f"killed after {time.monotonic() - run.started:.1f} s with {at_kill} written")
    assert 0 < at_kill["nodes"] and at_kill != expected

    code, report = resume(tmp_path, operation_id)
    assert code == 0
    assert_exact(neo4j_driver, operation_id, expected, report)
    assert operation_record(neo4j_driver, operation_id)["runs"] == 2


# --------------------------------------------------------------------------- hostile data

ODD_TENANT = "odd-tenant"
#: Names that would run Cypher if they were pasted into a statement unescaped.
HOSTILE_TYPE = "`X` DETACH DELETE n //"
HOSTILE_LABEL = "Evil`) MATCH (m) DETACH DELETE m //"
ODD_FACTOR = 3
_JSON_PAYLOAD = {"quote": "say \"hi\"", "backslash": "C:\\temp\\", "unicode": "名前 🚀 שלום",
                 "newline": "a\nb", "nested": {"list": [1, 2.5, None, True]}}


def _json_of_length(length: int) -> str:
    """A valid JSON document of exactly ``length`` characters, with escapes and unicode."""
    text = json.dumps({**_JSON_PAYLOAD, "pad": ""}, ensure_ascii=False)
    padded = json.dumps({**_JSON_PAYLOAD, "pad": "x" * (length - len(text))}, ensure_ascii=False)
    assert len(padded) == length
    return padded


ODD_PROPERTIES: Dict[str, Any] = {
    # property names Cypher could only take escaped
    "name with spaces": "spaces",
    "back`tick": "backtick",
    "`) DETACH DELETE n //": "injection as a key",
    "ünïcødé 名前 🚀": "unicode key",
    "dotted.key": "dot",
    "$param": "dollar",
    "123starts_with_digit": "digit",
    # values
    "list_of_strings": ["a", "", "名前", "🚀"],
    "list_of_ints": [1, -2, 3, 2**53 + 1],
    "list_of_floats": [1.5, -0.0, 1e308],
    "list_of_bools": [True, False],
    "empty_list": [],
    "emoji": "🚀🔥 cloud ☁️ 👩‍👩‍👧‍👦 🏳️‍🌈",
    "rtl": "שלום עולם — مرحبا بالعالم",
    "combining": "e\u0301 n\u0303 a\u0308\u0323 Z\u0351\u0352\u0353",
    "control_chars": "tab\tnewline\nnul\u0000bell\u0007",
    "empty": "",
    "whitespace": "  ",
    "properties": _json_of_length(5000),
    "tags": json.dumps({"env": "prod", "owner": "ünïcødé"}, ensure_ascii=False),
    "int_max": 2**63 - 1,
    "int_min": -(2**63),
    "float": 3.141592653589793,
    "bool": False,
    "datetime": DateTime(2024, 5, 6, 7, 8, 9, 123456789, tzinfo=datetime.timezone.utc),
    "local_datetime": DateTime(2024, 5, 6, 7, 8, 9),
    "date": Date(2024, 2, 29),
    "duration": Duration(months=1, days=2, seconds=3, nanoseconds=4),
    "point": CartesianPoint((1.0, 2.0)),
    "geo": WGS84Point((13.4, 52.5, 34.0)),
    "bytes": b"\x00\x01\xff",
}
#: The real-resource claims a template may carry: never copied.
CLAIMS = {"original_id": "/real/id", "original_name": "real-name", "abstracted_id": "abs-1",
          "scan_id": "scan-7"}


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _typed(value: Any) -> Any:
    """A value with its type made explicit, so that 1 and 1.0 or [] of different types differ."""
    if isinstance(value, list):
        return ["list", [_typed(item) for item in value]]
    return [type(value).__name__, value]


def _typed_map(props: Dict[str, Any]) -> Dict[str, Any]:
    return {key: _typed(value) for key, value in props.items()}


def build_odd_tenant(driver: neo4j.Driver) -> None:
    """A small tenant with odd data, hostile names among it, written with plain Cypher."""
    base = {"tenant_id": ODD_TENANT, "resource_group": "rg-odd", "location": "westeurope",
            "subscription_id": "sub-odd"}
    templates = [
        # every odd property, the real-resource claims, an extra label
        ("odd-all", ["Resource", "VirtualMachine"],
         {**base, **ODD_PROPERTIES, **CLAIMS, "name": "all", "type": "Microsoft.Compute/virtualMachines"}),
        # the bare minimum: what is absent must stay absent (no name, no location...)
        ("odd-bare", ["Resource"], {"tenant_id": ODD_TENANT, "type": "Microsoft.Web/sites"}),
        # an id and a name that are Cypher-ish too: values are parameters, so they are data
        ("odd-'quoted' `id` \" } ) //", ["Resource"],
         {**base, "name": "it's \"quoted\" `x`", "type": "Microsoft.Web/sites"}),
        # the two ends of the hostile relationship type, also linked by an odd DEPENDS_ON
        ("odd-a", ["Resource"], {**base, "name": "a", "type": "Microsoft.Network/virtualNetworks"}),
        ("odd-b", ["Resource"], {**base, "name": "b", "type": "Microsoft.Network/virtualNetworks/subnets"}),
        # a hostile label: this template must be rejected
        ("odd-evil", ["Resource", HOSTILE_LABEL], {**base, "name": "evil", "type": "Microsoft.Web/sites"}),
    ]
    with driver.session(database="neo4j") as session:
        session.run("CREATE (:Tenant {id: $t, tenant_id: $t}), (:ResourceGroup {id: 'rg-odd', tenant_id: $t}), "
                    "(:Region {id: 'westeurope-odd'})", t=ODD_TENANT).consume()
        for template_id, labels, props in templates:
            label_text = "".join(f":{_quote(label)}" for label in labels)
            session.run(f"CREATE (n{label_text}) SET n = $props, n.id = $id",
                        props=props, id=template_id).consume()
            session.run("MATCH (g:ResourceGroup {id: 'rg-odd'}), (n:Resource {id: $id}) "
                        "CREATE (g)-[:CONTAINS]->(n)", id=template_id).consume()
        session.run(
            "MATCH (all:Resource {id: 'odd-all'}), (r:Region {id: 'westeurope-odd'}) "
            "CREATE (all)-[:LOCATED_IN {since: 'ünïcødé', weights: [1, 2]}]->(r), "
            "(all)-[:SCAN_SOURCE_NODE]->(:Resource:Original {id: '/real/id', name: 'real-name', "
            "tenant_id: $t, type: 'Microsoft.Compute/virtualMachines'})", t=ODD_TENANT).consume()
        session.run(
            f"MATCH (a:Resource {{id: 'odd-a'}}), (b:Resource {{id: 'odd-b'}}), (e:Resource {{id: 'odd-evil'}}) "
            f"CREATE (a)-[:{_quote(HOSTILE_TYPE)} {{note: 'must never run'}}]->(b), "
            "(a)-[:DEPENDS_ON $props]->(b), (e)-[:USES]->(a)",
            props={"odd key`": "v", "list": ["x", ""], "empty": "", "emoji": "🚀"}).consume()


@pytest.fixture(scope="module")
def odd_run(neo4j_connection, neo4j_driver, clear_neo4j, tmp_path_factory):
    """The odd tenant, scaled once in this process; its stderr, exit code and report."""
    clear_neo4j()
    build_odd_tenant(neo4j_driver)
    before = fingerprint(neo4j_driver)
    templates = {record["id"]: record for record in neo4j_driver.execute_query(
        "MATCH (t:Resource {tenant_id: $t}) WHERE NOT t:Original "
        "RETURN t.id AS id, labels(t) AS labels, properties(t) AS props", t=ODD_TENANT).records}
    folder = tmp_path_factory.mktemp("odd")
    report_path, stderr_path = folder / "report.json", folder / "stderr.txt"
    # main() logs to the sys.stderr of the moment: a file, so the test can read it.
    with open(stderr_path, "w", encoding="utf-8") as err:
        saved, sys.stderr = sys.stderr, err
        try:
            code = scale_up.main(["--tenant-id", ODD_TENANT, "--scale-factor", str(ODD_FACTOR),
                                  "--operation-id", "odd-op", "--report", str(report_path)])
        finally:
            sys.stderr = saved
            for handler in logging.root.handlers[:]:
                if getattr(handler, "stream", None) is err:
                    logging.root.removeHandler(handler)
    return {"code": code, "stderr": stderr_path.read_text(encoding="utf-8"),
            "report": json.loads(report_path.read_text()) if report_path.exists() else None,
            "before": before, "templates": templates}


def test_hostile_label_and_relationship_type_are_rejected_by_name_and_never_run(odd_run, neo4j_driver):
    assert odd_run["code"] == 1
    report = odd_run["report"]
    assert report["status"] == "failed" and report["errors"]
    # The template with the label, the relationship with the type, and each copy of the
    # template's relationships, which has no copy of it to end at (named as such).
    stderr = odd_run["stderr"]
    rows_without_an_end = stderr.count("no node matches its")
    assert rows_without_an_end > 0
    assert report["dead_letters"] == 2 + rows_without_an_end
    assert f"unsafe label {HOSTILE_LABEL!r}" in stderr
    assert f"unsafe relationship type {HOSTILE_TYPE!r}" in stderr
    assert operation_record(neo4j_driver, "odd-op")["status"] == "failed"
    # Nothing was deleted or changed; the hostile relationship is still there, once.
    assert fingerprint(neo4j_driver) == odd_run["before"]
    assert scalar(neo4j_driver, f"MATCH ()-[r:{_quote(HOSTILE_TYPE)}]->() RETURN count(r)") == 1
    # The template with the hostile label has no copy; neither has its relationship.
    assert scalar(neo4j_driver, "MATCH (n:Resource {template_source_id: 'odd-evil'}) RETURN count(n)") == 0
    assert scalar(neo4j_driver, "MATCH ()-[r:USES]->() WHERE r.scale_operation_id = 'odd-op' "
                                "RETURN count(r)") == 0


def test_the_rest_of_the_odd_tenant_is_copied(odd_run, neo4j_driver):
    templates = odd_run["templates"]
    copies = neo4j_driver.execute_query(
        "MATCH (n:Resource {scale_operation_id: 'odd-op'}) "
        "RETURN n.id AS id, n.template_source_id AS template, labels(n) AS labels, "
        "properties(n) AS props ORDER BY id").records
    by_template: Dict[str, List[Any]] = {}
    for copy in copies:
        by_template.setdefault(copy["template"], []).append(copy)
    assert {t: len(c) for t, c in by_template.items()} == {
        t: ODD_FACTOR - 1 for t in templates if t != "odd-evil"}
    for template_id, template_copies in by_template.items():
        template = templates[template_id]
        for copy in template_copies:
            props = dict(copy["props"])
            suffix = synthetic_suffix("odd-op", template_id, props["scale_replica"])
            assert copy["id"] == template_id + suffix
            assert sorted(copy["labels"]) == sorted(template["labels"])
            if "name" in template["props"]:
                assert props.pop("name") == template["props"]["name"] + suffix
            else:
                assert "name" not in props  # absent stays absent
            assert props.pop("id") == copy["id"]
            assert props.pop("synthetic") is True and props.pop("scale_operation_id") == "odd-op"
            assert props.pop("template_source_id") == template_id
            for marker in NODE_MARKERS:
                props.pop(marker, None)
            expected = {k: v for k, v in template["props"].items()
                        if k not in NOT_COPIED_PROPERTIES and k not in ("id", "name")}
            # Exactly the template's properties, values and types: nothing added, lost
            # or converted (1 vs 1.0, list types, unicode normalisation, temporal types).
            assert _typed_map(props) == _typed_map(expected), template_id
    # What was written is what the test put in, not only what the template reads back as.
    all_copy = by_template["odd-all"][0]["props"]
    for key, value in ODD_PROPERTIES.items():
        assert _typed(all_copy[key]) == _typed(value), key
    assert len(all_copy["properties"]) == 5000 and json.loads(all_copy["properties"])["unicode"]
    assert not set(CLAIMS) & set(all_copy)
    bare = by_template["odd-bare"][0]["props"]
    assert set(bare) == {"id", "tenant_id", "type", *NODE_MARKERS}


def test_the_relationships_of_the_odd_tenant_are_copied(odd_run, neo4j_driver):
    rows = neo4j_driver.execute_query(
        "MATCH (a)-[r]->(b) WHERE r.scale_operation_id = 'odd-op' "
        "RETURN type(r) AS type, coalesce(a.template_source_id, a.id) AS start, "
        "coalesce(b.template_source_id, b.id) AS end, a.scale_replica AS ra, b.scale_replica AS rb, "
        "properties(r) AS props").records
    copied: Dict[tuple, int] = {}
    for row in rows:
        key = (row["type"], row["start"], row["end"])
        copied[key] = copied.get(key, 0) + 1
        if row["ra"] is not None and row["rb"] is not None:
            assert row["ra"] == row["rb"]  # both ends in the same replica
        props = {k: v for k, v in row["props"].items() if k not in RELATIONSHIP_MARKERS}
        template = neo4j_driver.execute_query(
            "MATCH (a)-[r]->(b) WHERE elementId(r) = $id RETURN properties(r) AS p",
            id=row["props"]["template_source_rel_id"]).records[0]["p"]
        assert _typed_map(props) == _typed_map(template)
    copies = ODD_FACTOR - 1
    expected = {("CONTAINS", "rg-odd", t): copies for t in odd_run["templates"] if t != "odd-evil"}
    expected[("LOCATED_IN", "odd-all", "westeurope-odd")] = copies
    expected[("DEPENDS_ON", "odd-a", "odd-b")] = copies
    assert copied == expected


def test_report_counts_only_what_was_written(odd_run):
    report = odd_run["report"]
    in_database = {what: sum(counts.values()) for what, counts in report["in_database"].items()}
    assert report["written"] == in_database
