"""What the tests share: counting in the database, fingerprints of the graph, running
the commands (in this process or as subprocesses) and reading what they printed.

Every helper reads the database or a process's real output; none of them decides a
test's outcome by itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from array import array
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import neo4j
import pytest

from pipelines import scale_up
from pipelines.demo.load import load_demo_tenant
from pipelines.operation.validate import validate_operation
from pipelines.plan import ComponentSummary, ScalePlan
from transforms.batch import TemplatePart
from transforms.model import TemplateSelection

ROOT = Path(__file__).resolve().parents[1]
#: Longest a command run by ``CliRun`` may take before the test gives up on it (a hang).
RUN_TIMEOUT_S = 240


# --------------------------------------------------------------------------- the database


def scalar(driver: neo4j.Driver, query: str, **params: Any) -> Any:
    """The first value of the first record of ``query``."""
    return driver.execute_query(query, **params).records[0][0]


def quote(name: str) -> str:
    """``name`` as a Cypher identifier in backticks (for test data with odd names)."""
    return "`" + name.replace("`", "``") + "`"


def fingerprint(driver: neo4j.Driver, operation_ids: Optional[Sequence[str]] = None
                ) -> Tuple[int, int, str]:
    """(nodes, relationships, hash) of everything in the graph that no scale-up wrote:
    element ids, labels, types, ends and properties.

    ``operation_ids=None`` leaves out everything any scale-up wrote (nodes and
    relationships marked with an operation, every ``ScaleOperation`` record and
    ``ScaleBatch`` ledger node); a list leaves out only what those operations wrote,
    their records and ledgers.
    """
    ops = None if operation_ids is None else list(operation_ids)
    nodes = driver.execute_query(
        "MATCH (n) WHERE CASE WHEN $ops IS NULL "
        "  THEN n.scale_operation_id IS NULL AND NOT n:ScaleOperation AND NOT n:ScaleBatch "
        "  ELSE NOT coalesce(n.scale_operation_id IN $ops, false) "
        "       AND NOT (n:ScaleOperation AND n.id IN $ops) "
        "       AND NOT (n:ScaleBatch AND n.operation_id IN $ops) END "
        "RETURN elementId(n) AS id, labels(n) AS labels, properties(n) AS props", ops=ops).records
    relationships = driver.execute_query(
        "MATCH (a)-[r]->(b) WHERE CASE WHEN $ops IS NULL THEN r.scale_operation_id IS NULL "
        "  ELSE NOT coalesce(r.scale_operation_id IN $ops, false) END "
        "RETURN elementId(r) AS id, type(r) AS type, elementId(a) AS a, elementId(b) AS b, "
        "properties(r) AS props", ops=ops).records
    text = json.dumps(sorted(json.dumps(r.data(), sort_keys=True, default=str)
                             for r in [*nodes, *relationships]))
    return len(nodes), len(relationships), hashlib.sha256(text.encode()).hexdigest()


def operation_fingerprint(driver: neo4j.Driver, operation_id: str) -> Tuple[int, str]:
    """(nodes, hash) of everything one operation wrote, properties included."""
    rows = driver.execute_query(
        "MATCH (n:Resource {scale_operation_id: $op}) "
        "OPTIONAL MATCH (n)-[r]-(m) WHERE r.scale_operation_id = $op "
        "RETURN n.id AS id, properties(n) AS props, "
        "collect([type(r), startNode(r) = n, coalesce(m.id, elementId(m)), properties(r)]) AS rels",
        op=operation_id).records
    text = json.dumps(sorted(json.dumps(r.data(), sort_keys=True, default=str) for r in rows))
    return len(rows), hashlib.sha256(text.encode()).hexdigest()


def operation_counts(driver: neo4j.Driver, operation_id: str) -> Dict[str, int]:
    """``{"nodes", "relationships"}`` marked with the operation id, counted directly."""
    return {"nodes": scalar(driver, "MATCH (n) WHERE n.scale_operation_id = $op RETURN count(n)",
                            op=operation_id),
            "relationships": scalar(driver, "MATCH ()-[r]->() WHERE r.scale_operation_id = $op "
                                            "RETURN count(r)", op=operation_id)}


def expected_at_integer_factor(driver: neo4j.Driver, tenant_id: str, factor: int) -> Dict[str, int]:
    """``{"nodes", "relationships"}`` a scale-up of a fresh tenant by an integer factor
    must write, counted independently of the pipeline: every template and every
    relationship of a template (except the scan link) is copied ``factor - 1`` times."""
    templates = scalar(driver, "MATCH (t:Resource {tenant_id: $tenant}) WHERE NOT t:Original "
                               "RETURN count(t)", tenant=tenant_id)
    template_relationships = scalar(
        driver,
        "MATCH (t:Resource {tenant_id: $tenant})-[r]-(o) WHERE NOT t:Original "
        "AND type(r) <> 'SCAN_SOURCE_NODE' RETURN count(DISTINCT r)", tenant=tenant_id)
    return {"nodes": templates * (factor - 1),
            "relationships": template_relationships * (factor - 1)}


def operation_record(driver: neo4j.Driver, operation_id: str) -> Dict[str, Any]:
    """The properties of the operation's ``ScaleOperation`` record ({} if none)."""
    records = driver.execute_query("MATCH (o:ScaleOperation {id: $id}) RETURN properties(o) AS o",
                                   id=operation_id).records
    return records[0]["o"] if records else {}


def made_up_plan(templates: int = 10, base_copies: int = 1, parts: int = 2,
                 relationships: int = 4, types=None) -> ScalePlan:
    """A plan as ``pipelines.plan.plan_scale_up`` makes them, for tests without a graph:
    ``templates`` of one type in ``parts`` parts, ``base_copies`` copies each."""
    per_part = -(-templates // parts)
    made = tuple(TemplatePart(index, array("q", range(index * per_part,
                                                      min(templates, (index + 1) * per_part))).tobytes(),
                              bytes(min(templates, (index + 1) * per_part) - index * per_part))
                 for index in range(parts))
    return ScalePlan(
        selection=TemplateSelection("t", types), template_count=templates,
        templates_by_type={"vm": templates}, base_copies=base_copies, templates_with_extra_copy=0,
        new_node_count=templates * base_copies, new_nodes_by_type={"vm": templates * base_copies},
        template_relationships_by_type={"USES": relationships},
        new_relationships_by_type={"USES": relationships * base_copies},
        components=ComponentSummary(count=templates, largest=1, in_partial_replica=0, split=0,
                                    relationships_left_out=0),
        template_problems=(), relationship_problems=(), batch_size=100, parts=made,
        fingerprint="made-up")


def component_rule(driver: neo4j.Driver, tenant: str, factor: float,
                   types: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """The copies README's rule ("What it produces") gives each template, computed here
    independently of the plan (plain breadth-first search over what the database holds):
    round(N·(f−1)) new nodes, ⌊f−1⌋ copies each, and one more for whole connected
    components of the template subgraph taken in plan order (a hash of the id), the
    first that does not fit split in breadth-first order.

    Returns ``{"copies": {(id, type): n}, "components": [[id, ...]], "left_out": n}``
    (``left_out``: relationships between a template with the extra copy and one without).
    """
    selection = ("MATCH (t:Resource {tenant_id: $tenant}) WHERE NOT t:Original AND t.synthetic IS NULL "
                 "AND ($types IS NULL OR t.type IN $types) ")
    templates = {r["id"]: r["type"] for r in driver.execute_query(
        selection + "RETURN t.id AS id, t.type AS type", tenant=tenant, types=types).records}
    edges = [(r["a"], r["b"]) for r in driver.execute_query(
        selection + "MATCH (t)-[r]->(o:Resource {tenant_id: $tenant}) WHERE NOT o:Original "
        "AND o.synthetic IS NULL AND ($types IS NULL OR o.type IN $types) "
        "AND type(r) <> 'SCAN_SOURCE_NODE' RETURN t.id AS a, o.id AS b",
        tenant=tenant, types=types).records]
    order = sorted(templates, key=lambda i: int.from_bytes(
        hashlib.blake2b(i.encode(), digest_size=8).digest(), "big"))
    position = {template_id: i for i, template_id in enumerate(order)}
    neighbours = {template_id: set() for template_id in templates}
    for a, b in edges:
        neighbours[a].add(b)
        neighbours[b].add(a)

    def breadth_first(first):
        found, seen = [first], {first}
        for node in found:
            for other in sorted(neighbours[node], key=position.get):
                if other not in seen:
                    seen.add(other)
                    found.append(other)
        return found

    components, seen = [], set()
    for template_id in order:
        if template_id not in seen:
            component = breadth_first(template_id)
            seen.update(component)
            components.append(component)
    new = round(len(templates) * (factor - 1))
    base, remaining = divmod(new, len(templates))
    extra = set()
    for component in components:
        if remaining == 0:
            break
        taken = component[:remaining]
        extra.update(taken)
        remaining -= len(taken)
    left_out = sum(1 for a, b in edges if (a in extra) != (b in extra))
    return {"copies": {(i, t): base + (i in extra) for i, t in templates.items()},
            "components": components, "left_out": left_out}


def scale_beside_another(connection, driver: neo4j.Driver, clear: Callable[[], None],
                         tmp_path: Path, tenant, other_tenant, factors: Dict[str, float],
                         *args: str) -> Dict[str, Any]:
    """Empty the database, load two demo tenants (``DemoTenantSpec``s), scale the first
    by each of ``factors`` (name → factor; operation ``op-<name>``, with ``args``).
    Returns ``{"before": fingerprint before the scale-ups, "reports": {name: report},
    "tmp_path"}``."""
    clear()
    load_demo_tenant(connection, tenant)
    load_demo_tenant(connection, other_tenant)
    before = fingerprint(driver)
    reports = {}
    for name, factor in factors.items():
        code, report = run_scale_up(tmp_path, "--tenant-id", tenant.tenant_id, "--scale-factor",
                                    str(factor), "--operation-id", f"op-{name}", *args)
        assert code == 0, report
        reports[name] = report
    return {"before": before, "reports": reports, "tmp_path": tmp_path}


def assert_exact(driver: neo4j.Driver, operation_id: str, expected: Dict[str, int],
                 report: Dict[str, Any]) -> None:
    """The operation holds exactly the expected nodes and relationships, no duplicates,
    every invariant holds, and the report says so."""
    assert operation_counts(driver, operation_id) == expected
    duplicates = scalar(driver, "MATCH (n:Resource {scale_operation_id: $op}) "
                                "WITH n.id AS id, count(*) AS c WHERE c > 1 RETURN count(id)",
                        op=operation_id)
    assert duplicates == 0
    result = validate_operation(driver, "neo4j", operation_id)
    assert result.ok, result.to_dict()
    assert result.nodes_checked == expected["nodes"]
    assert report["status"] == "succeeded" and report["errors"] == [], report["errors"]
    assert report["expected"] == expected
    # This run wrote what earlier runs (or a commit it could not confirm) had not.
    assert {what: sum(counts.values()) for what, counts in report["in_database"].items()} == expected
    assert all(report["written"][what] <= expected[what] for what in expected)
    record = operation_record(driver, operation_id)
    assert record["status"] == "succeeded"


# --------------------------------------------------------------------------- commands


def run_scale_up(tmp_path: Path, *args: str) -> Tuple[int, Optional[Dict[str, Any]]]:
    """``python -m pipelines.scale_up ARGS`` in this process; (exit code, JSON report)."""
    report_path = tmp_path / f"report-{hashlib.sha1(repr(args).encode()).hexdigest()[:12]}.json"
    report_path.unlink(missing_ok=True)
    code = scale_up.run([*args, "--report", str(report_path)])
    return code, json.loads(report_path.read_text()) if report_path.exists() else None


def run_main(main: Callable, args: Sequence[str], capsys) -> Tuple[int, str, str]:
    """A command's exit code (argparse's own exits included), stdout and stderr."""
    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def last_json(out: str) -> Any:
    """The JSON of the last line a command printed."""
    return json.loads(out.strip().splitlines()[-1])


class CliRun:
    """``python -m MODULE ARGS`` as a subprocess in its own process group, stdout and
    stderr going to files (progress lines would fill a pipe)."""

    def __init__(self, tmp_path: Path, args: List[str], env: Optional[Dict[str, str]] = None,
                 module: str = "pipelines.scale_up", name: str = "run") -> None:
        self.stdout_path = tmp_path / f"{name}.stdout.txt"
        self.stderr_path = tmp_path / f"{name}.stderr.txt"
        self.started = time.monotonic()
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", module, *args],
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

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the command itself (as a scheduler would)."""
        self.process.send_signal(signum)

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
        """The JSON report a ``--json`` run printed (None if nothing was printed)."""
        lines = self.stdout.strip().splitlines()
        return json.loads(lines[-1]) if lines else None

    def error_lines(self) -> List[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]

    def wait_for_stderr(self, pattern: str, timeout: float) -> Optional[float]:
        """Seconds until ``pattern`` appears in stderr; None if the run ended first or
        ``timeout`` passed."""
        started = time.monotonic()
        regex = re.compile(pattern, re.MULTILINE)
        while time.monotonic() - started < timeout:
            if regex.search(self.stderr):
                return time.monotonic() - started
            if self.process.poll() is not None:
                return None
            time.sleep(0.2)
        return None


def wait_for_writes(driver: neo4j.Driver, run: CliRun, operation_id: str, phase: str = "copies",
                    expected: Optional[Dict[str, int]] = None, timeout: float = 120) -> Dict[str, int]:
    """Wait until the run is in ``phase``: "copies" once it has written some of the
    operation's nodes; "links" once every node (``expected["nodes"]``) is written, which
    is when the relationships between slices of large components are (the pipeline
    writes them after every copy unit). Returns ``operation_counts`` then; fails the
    test if the run ends or does not get there in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = operation_counts(driver, operation_id)
        if phase == "copies" and counts["nodes"] > 0:
            return counts
        if phase == "links" and counts["nodes"] == expected["nodes"]:
            return counts
        if run.process.poll() is not None:
            pytest.fail(f"the run ended (exit {run.process.returncode}) before its {phase} "
                        f"phase:\n{run.stderr_tail()}")
        time.sleep(0.05)
    run.kill()
    pytest.fail(f"the run did not reach its {phase} phase within {timeout} s:\n{run.stderr_tail()}")


# --------------------------------------------------------------------------- the network


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bolt_port(uri: str) -> int:
    """The port of a Bolt URI on this machine; skips the test for any other server."""
    match = re.fullmatch(r"(?:bolt|neo4j)://(?:127\.0\.0\.1|localhost):(\d+)", uri)
    if match is None:
        pytest.skip(f"this test needs a Neo4j on 127.0.0.1, not {uri}")
    return int(match.group(1))
