"""Benchmarks: the scale-up against the best plain writers, on one local Neo4j, in one run.

    NEO4J_HEAP=4g NEO4J_PAGECACHE=6g .venv/bin/python -m pytest tests/performance -m benchmark -ra
    BENCHMARK_SIZES=50 BENCHMARK_WARMUP=0 NEO4J_HEAP=1g NEO4J_PAGECACHE=512m \\
        BENCHMARK_OUTPUT=$(mktemp -d) bash ./run_tests.sh -ra -m benchmark tests/performance  # smoke

The sizes are the seed's matrix, 100→1k (×10), 1k→5k (×5), 5k→40k (×8), 40k→1M (×25),
on the realistic demo tenant (``DemoTenantSpec(tenant, resources=N, seed)``: N
templates). Every size runs on its own, on ONE server started for the module
(``benchmark_neo4j``: a ``LocalNeo4j`` with an explicit heap and page cache; the
benchmark measures that server's process, so ``NEO4J_URI`` is not used):

1. **Load**: delete all data, load a fresh demo tenant (timed apart: part of no figure).
2. **Pipeline**: ``python -m pipelines.scale_up --tenant-id T --scale-factor F
   --operation-id OP --json`` in a subprocess. Its report gives the wall time
   (``duration_s``), ``plan_s``, ``pipeline_s`` and the counts; measured from
   outside: the process's wall time (start to exit), its peak RSS, the CPU seconds
   of the process (with its children) and of the Neo4j server, and the server's RSS
   peak (sampled every 0.1 s). The database must hold exactly the planned counts.
3. **Plain writers**: the pipeline's copies are deleted; the same copies are made
   again, under another operation id, by the project's own functions
   (``plan_scale_up`` → parts; ``read_part``; ``UnitRowsOf`` on each part's
   ``CopyUnit`` and ``LinkUnit`` of every replica), not timed. Then each writer writes
   those rows with the bare driver (no Beam, no ledger, batches of 5,000): nodes
   with ``UNWIND $rows AS row CREATE (n:$(row.labels)) SET n = row.props``, then
   relationships with ``UNWIND $rows AS row MATCH (a…) MATCH (b…) CREATE
   (a)-[r:$(row.type)]->(b) SET r = row.props`` (a copy matched by ``(:Resource
   {id})``, an existing node by ``elementId``). ``plain-1`` is one thread;
   ``plain-N`` cuts the nodes into N disjoint chunks and partitions the relationships
   by their start node, one thread and session each (the driver retries transient
   errors: deadlocks on hubs). Only the writes are timed; the counts are checked and
   the rows deleted after each writer. The fastest is the size's *best plain writer*.

Results go to ONE JSON file per run, ``benchmark-results/benchmark-<UTC>.json``
(``$BENCHMARK_OUTPUT``: a directory or a ``.json`` path), rewritten after every size,
with a PNG plot beside it; ``scripts/benchmark_table.py`` turns it into the README's
table and says which goals of issue 12 are met.

Environment: ``BENCHMARK_SIZES`` (comma-separated template counts, ``NxF`` for an
explicit factor; a count outside the matrix takes the factor of the largest matrix
size below it, ``50`` → ×10), ``BENCHMARK_PLAIN_THREADS`` (thread counts of the
parallel plain writers, default ``2,4``; ``plain-1`` always runs),
``BENCHMARK_WARMUP=0`` (skip the unrecorded 50→500 size run first, which warms up the
server's JIT and query plans), ``BENCHMARK_SEED`` (default 1), ``BENCHMARK_OUTPUT``,
``NEO4J_HEAP``/``NEO4J_PAGECACHE`` (default 4g/4g).

Memory: the plain writers hold every row of a size at once in this process, so that
making them is not timed: about 630 bytes per row (measured at 5k→40k with
tracemalloc), so about 4 GB at 40k→1M besides the server's heap and page cache.

Nothing here asserts a timing (benchmarks are not timed tests): only that every count
is exact and that the JSON and the PNG were written.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import neo4j
import psutil
import pytest

from pipelines.demo.load import load_demo_tenant
from pipelines.infra.neo4j_server import LocalNeo4j
from pipelines.operation.record import utc_now_iso, written_by_type
from pipelines.options import MAX_NEW_NODES
from pipelines.plan import plan_scale_up
from tests.support import CliRun, operation_counts
from transforms.connection import Neo4jConnection
from transforms.demo import DemoTenantSpec
from transforms.model import TemplateSelection
from transforms.read import read_part
from transforms.replicate import (
    CopyUnit,
    LinkUnit,
    ReplicationSettings,
    UnitRows,
    UnitRowsOf,
    replicate_part,
)

pytestmark = [pytest.mark.benchmark, pytest.mark.neo4j]

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_VERSION = 2
#: The seed's matrix: templates → scale factor.
SEED_MATRIX: Tuple[Tuple[int, float], ...] = ((100, 10.0), (1_000, 5.0), (5_000, 8.0), (40_000, 25.0))
SAMPLE_INTERVAL_S = 0.1
#: Longest one scale-up may take before the size fails (a hang); 40k→1M takes minutes.
PIPELINE_TIMEOUT_S = 3_600
#: Rows per transaction of the plain writers (issue 12's "batches of 5,000").
PLAIN_BATCH_SIZE = 5_000
DEFAULT_HEAP = "4g"
DEFAULT_PAGECACHE = "4g"

NOTES = [
    "pipeline.wall_s is the report's duration_s (connect, plan, indexes, the Beam pipeline, "
    "the read-back of the counts); process_wall_s is the subprocess from start to exit (Python "
    "start and imports too); plan_s is the plan alone, pipeline_s the Beam pipeline alone.",
    "rows_per_s, nodes_per_s, relationships_per_s: counts over wall_s, for the pipeline and "
    "for each plain writer alike.",
    "Plain writers write the pipeline's rows (made beforehand by the project's own functions, "
    "not timed) with the bare driver: no Beam, no ledger, batches of 5,000; their wall_s is "
    "the node phase plus the relationship phase. ratio.best_plain = best plain wall_s / "
    "pipeline wall_s (above 1: the pipeline is faster); ratio.plain_1 likewise; "
    "ratio.best_plain_to_process uses the pipeline's process_wall_s instead.",
    "cpu_s: CPU seconds (user + system) in the window: the pipeline subprocess with its "
    "children, or this process for a plain writer (client); neo4j_cpu_s: the server's; "
    "others_cpu_share: CPU of every other process on the machine over wall x cores "
    "(above a few percent the figures are disturbed).",
    "peak_rss_mb: the pipeline process's own peak (VmHWM, sampled every 0.1 s: a peak in "
    "its last 0.1 s would be missed); report_peak_rss_mb is the report's memory.peak_mb "
    "(ru_maxrss), which Linux carries over from the process that started it: here at least "
    "this test process's peak, so not the pipeline's. neo4j_rss_peak_mb: the server's RSS "
    "sampled every 0.1 s (one server serves the whole run).",
    "read_back and plain_rows measure two shares of the pipeline's server CPU apart: the "
    "report's read-back of what the operation wrote (written_by_type), and the plan's and "
    "the parts' reads (plan_scale_up and read_part, as the pipeline runs them), which the "
    "plain writers' rows are made from.",
    "Order per size: pipeline, then plain-1, then plain-N: the plain writers find the "
    "server's plans cached and its page cache warm.",
]


# --------------------------------------------------------------------------- settings


@dataclasses.dataclass(frozen=True)
class Size:
    templates: int
    factor: float

    @property
    def final(self) -> int:
        return self.templates + round(self.templates * (self.factor - 1))

    @property
    def label(self) -> str:
        return f"{_short(self.templates)}→{_short(self.final)} (×{self.factor:g})"

    @property
    def id(self) -> str:
        return f"{self.templates}x{self.factor:g}"


def _short(count: int) -> str:
    for unit, name in ((1_000_000, "M"), (1_000, "k")):
        if count >= unit and count % (unit // 10) == 0:
            return f"{count / unit:g}{name}"
    return f"{count:,}"


def parse_sizes(text: Optional[str]) -> List[Size]:
    """``"100,1000"`` or ``"50x4,1000"`` → sizes; empty → the seed's matrix."""
    if not text or not text.strip():
        return [Size(n, f) for n, f in SEED_MATRIX]
    sizes = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        count_text, _, factor_text = item.lower().partition("x")
        count = int(count_text.replace("_", ""))
        below = [f for n, f in SEED_MATRIX if n <= count]
        factor = float(factor_text) if factor_text else (below or [SEED_MATRIX[0][1]])[-1]
        if count < 1 or not factor > 1:
            raise ValueError(f"BENCHMARK_SIZES: bad size {item!r} (need N >= 1 and factor > 1)")
        sizes.append(Size(count, factor))
    return sizes


def parse_threads(text: Optional[str]) -> List[int]:
    """``"2,4"`` → the thread counts of the writers after ``plain-1``."""
    threads = sorted({int(part) for part in (text or "2,4").split(",") if part.strip()} - {1})
    if any(n < 1 for n in threads):
        raise ValueError(f"BENCHMARK_PLAIN_THREADS: thread counts must be positive, got {text!r}")
    return threads


SIZES = parse_sizes(os.environ.get("BENCHMARK_SIZES"))
PLAIN_WRITERS = [1, *parse_threads(os.environ.get("BENCHMARK_PLAIN_THREADS"))]
WARMUP = os.environ.get("BENCHMARK_WARMUP", "1") not in ("0", "", "false", "no")
#: The unrecorded size run first to warm the server up.
WARMUP_SIZE = Size(50, 10.0)
SEED = int(os.environ.get("BENCHMARK_SEED", "1"))


# --------------------------------------------------------------------------- server


@dataclasses.dataclass
class BenchmarkServer:
    connection: Neo4jConnection
    pid: int
    heap: str
    pagecache: str
    #: Environment variables that point a subprocess at this server.
    env: Dict[str, str]


@pytest.fixture(scope="module")
def benchmark_neo4j(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BenchmarkServer]:
    """ONE local server for the module, with an explicit heap and page cache."""
    heap = os.environ.get("NEO4J_HEAP") or DEFAULT_HEAP
    pagecache = os.environ.get("NEO4J_PAGECACHE") or DEFAULT_PAGECACHE
    home = tmp_path_factory.mktemp("benchmark-neo4j")
    server = LocalNeo4j(home, heap=heap, pagecache=pagecache)
    try:
        connection = server.start()
        env = {"NEO4J_URI": connection.uri, "NEO4J_USER": connection.user,
               "NEO4J_DATABASE": connection.database}
        if server.password_file is not None:  # else it is $NEO4J_PASSWORD, inherited
            env["NEO4J_PASSWORD_FILE"] = str(server.password_file)
        yield BenchmarkServer(connection, server.pid, heap, pagecache, env)
    finally:
        server.stop()
        # pytest keeps the last three temporary folders: keep the logs, not gigabytes of data.
        shutil.rmtree(home / "data", ignore_errors=True)


@pytest.fixture(scope="module")
def bench_driver(benchmark_neo4j: BenchmarkServer) -> Iterator[neo4j.Driver]:
    driver = benchmark_neo4j.connection.open_driver()
    try:
        driver.verify_connectivity()
        yield driver
    finally:
        driver.close()


def delete_data(driver: neo4j.Driver, operation_id: Optional[str] = None) -> float:
    """Delete one operation's copies (with their relationships), or with None all data
    (indexes and constraints stay: every size's loader needs them again); the seconds."""
    started = time.perf_counter()
    with driver.session() as session:  # CALL {} IN TRANSACTIONS needs auto-commit: run()
        if operation_id is None:
            session.run("MATCH ()-[r]->() CALL (r) { DELETE r } IN TRANSACTIONS OF 50000 ROWS").consume()
            session.run("MATCH (n) CALL (n) { DELETE n } IN TRANSACTIONS OF 50000 ROWS").consume()
        else:
            session.run("MATCH (n:Resource {scale_operation_id: $op}) "
                        "CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS",
                        op=operation_id).consume()
    return round(time.perf_counter() - started, 3)


# --------------------------------------------------------------------------- measuring


class Measured:
    """What happens during a window, measured from outside: CPU seconds (user + system)
    of this process, of its children that ended in the window (the pipeline
    subprocess, with its own children), of the Neo4j server and of everything else on
    the machine; the memory of watched processes, sampled every 0.1 s (``memory_mb``)."""

    def __init__(self, neo4j_pid: int) -> None:
        self._neo4j = psutil.Process(neo4j_pid)
        self._watched: Dict[str, int] = {"neo4j": neo4j_pid}
        self._peaks: Dict[str, Dict[str, float]] = {}
        self._stopped = threading.Event()
        self._sampler = threading.Thread(target=self._sample_until_stopped, name="rss-sampler",
                                         daemon=True)
        self._started = time.perf_counter()
        self._start = self._cpu()
        self._sample()
        self._sampler.start()

    def watch(self, name: str, pid: int) -> None:
        self._watched = {**self._watched, name: pid}

    def _cpu(self) -> Dict[str, float]:
        mine, system = psutil.Process().cpu_times(), psutil.cpu_times()
        neo4j_times = self._neo4j.cpu_times()
        return {"self": mine.user + mine.system,
                "children": mine.children_user + mine.children_system,
                "neo4j": neo4j_times.user + neo4j_times.system,
                "busy": sum(system) - system.idle - getattr(system, "iowait", 0.0)
                        - getattr(system, "guest", 0.0) - getattr(system, "guest_nice", 0.0)}

    def _sample(self) -> None:
        for name, pid in self._watched.items():
            memory = memory_mb(pid)
            if memory is not None:  # else the pipeline has ended
                peaks = self._peaks.setdefault(name, {})
                for key, value in memory.items():
                    peaks[key] = max(value, peaks.get(key, 0.0))

    def _sample_until_stopped(self) -> None:
        while not self._stopped.wait(SAMPLE_INTERVAL_S):
            self._sample()

    def stop(self) -> Dict[str, Any]:
        """The figures of the window; ``memory_mb[name]``: the highest ``rss`` sampled
        and the last ``peak`` (see ``memory_mb``) of each watched process."""
        self._stopped.set()
        self._sampler.join()
        self._sample()
        wall, end = time.perf_counter() - self._started, self._cpu()
        spent = {key: end[key] - self._start[key] for key in end}
        others = max(0.0, spent["busy"] - spent["self"] - spent["children"] - spent["neo4j"])
        return {"wall_s": round(wall, 3),
                "self_cpu_s": round(spent["self"], 2),
                "children_cpu_s": round(spent["children"], 2),
                "neo4j_cpu_s": round(spent["neo4j"], 2),
                "others_cpu_share": round(others / (wall * (os.cpu_count() or 1)), 3),
                "memory_mb": {name: {key: round(value, 1) for key, value in peaks.items()}
                              for name, peaks in self._peaks.items()}}


def memory_mb(pid: int) -> Optional[Dict[str, float]]:
    """``{"rss", "peak"}`` of a running process, in MB, from ``/proc`` (Linux); None once
    it has ended. ``peak`` is the high-water mark of the process's own memory
    (``VmHWM``). Not ``ru_maxrss``, which Linux carries over from the parent through
    fork and exec: a scale-up started by this test process would report at least this
    process's peak (measured: 811 MB in a child that used 11)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB$", status, re.MULTILINE))
    if len(fields) < 2:  # a zombie: no memory left
        return None
    return {"rss": int(fields["VmRSS"]) / 1024, "peak": int(fields["VmHWM"]) / 1024}


def _window_figures(window: Dict[str, Any]) -> Dict[str, float]:
    """Wall and CPU seconds of a window in which this process queried the server."""
    return {"wall_s": window["wall_s"], "cpu_s": window["self_cpu_s"],
            "neo4j_cpu_s": window["neo4j_cpu_s"]}


def _rate(count: float, seconds: Optional[float]) -> Optional[float]:
    return round(count / seconds, 1) if seconds else None


def _rates(nodes: int, relationships: int, seconds: float) -> Dict[str, Optional[float]]:
    return {"nodes_per_s": _rate(nodes, seconds),
            "relationships_per_s": _rate(relationships, seconds),
            "rows_per_s": _rate(nodes + relationships, seconds)}


# --------------------------------------------------------------------------- pipeline


def run_pipeline(server: BenchmarkServer, size: Size, tenant_id: str, operation_id: str,
                 work_dir: Path) -> Dict[str, Any]:
    """``python -m pipelines.scale_up`` in a subprocess, measured; its figures and report."""
    measured = Measured(server.pid)
    try:
        run = CliRun(work_dir, ["--tenant-id", tenant_id, "--scale-factor", f"{size.factor:g}",
                                "--operation-id", operation_id, "--json"],
                     env={**os.environ, **server.env}, name=f"scale_up-{size.id}")
        measured.watch("pipeline", run.process.pid)
        code = run.wait(PIPELINE_TIMEOUT_S)
    finally:
        window = measured.stop()
    report = run.report() if code == 0 else None
    if report is None:
        pytest.fail(f"python -m pipelines.scale_up exited {code} for {size.label}:\n"
                    + run.stderr_tail())
    nodes, relationships = report["written"]["nodes"], report["written"]["relationships"]
    return {
        "operation_id": operation_id,
        "status": report["status"],
        "runner": report["runner"],
        "wall_s": report["duration_s"],
        "process_wall_s": round(run.elapsed, 3),
        "plan_s": report["plan_s"],
        "pipeline_s": report["pipeline_s"],
        "nodes": nodes,
        "relationships": relationships,
        **_rates(nodes, relationships, report["duration_s"]),
        "cpu_s": window["children_cpu_s"],
        "neo4j_cpu_s": window["neo4j_cpu_s"],
        "others_cpu_share": window["others_cpu_share"],
        "peak_rss_mb": window["memory_mb"].get("pipeline", {}).get("peak"),
        "report_peak_rss_mb": report["memory"]["peak_mb"],
        "neo4j_rss_peak_mb": window["memory_mb"]["neo4j"]["rss"],
        "batch_size": report["batches"]["batch_size"],
        "parts": report["batches"]["parts"],
        "write_transactions": report["neo4j"]["write_transactions"],
        "neo4j_write_time_s": report["neo4j"]["write_time_s"],
        "retries": report["retries"],
        "components": report["components"],
        "report": report,
    }


# --------------------------------------------------------------------------- plain writers

#: How a plain writer finds a relationship's end: a copy by id, an existing node by
#: element id.
COPY, EXISTING = "copy", "existing"
_ENDS = {COPY: "MATCH ({v}:Resource {{id: row.{key}}})",
         EXISTING: "MATCH ({v}) WHERE elementId({v}) = row.{key}"}
PLAIN_NODES = "UNWIND $rows AS row CREATE (n:$(row.labels)) SET n = row.props"
PLAIN_RELATIONSHIPS = {
    (start, end): (f"UNWIND $rows AS row {_ENDS[start].format(v='a', key='start')} "
                   f"{_ENDS[end].format(v='b', key='end')} "
                   "CREATE (a)-[r:$(row.type)]->(b) SET r = row.props")
    for start, end in ((COPY, COPY), (COPY, EXISTING), (EXISTING, COPY))
}


@dataclasses.dataclass
class PlainRows:
    """The rows of a scale-up as a plain writer takes them: ``nodes`` [{labels, props}];
    ``relationships`` [{start, end, type, props}] by the kind of their ends."""

    nodes: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    relationships: Dict[Tuple[str, str], List[Dict[str, Any]]] = dataclasses.field(
        default_factory=lambda: {kind: [] for kind in PLAIN_RELATIONSHIPS})

    @property
    def relationship_count(self) -> int:
        return sum(map(len, self.relationships.values()))

    def add(self, unit: UnitRows) -> None:
        """A unit's rows, its ends by id (new copies) or element id (existing nodes)."""
        ids = [node["props"]["id"] for node in unit.nodes]
        self.nodes.extend(unit.nodes)
        copy_to_copy = self.relationships[COPY, COPY]
        for rel in unit.internal:
            copy_to_copy.append({"start": ids[rel["s"]], "end": ids[rel["e"]],
                                 "type": rel["type"], "props": rel["props"]})
        copy_to_copy.extend(unit.links)  # already {start, end, type, props} by id
        for rel in unit.outgoing:
            self.relationships[COPY, EXISTING].append(
                {"start": ids[rel["own"]], "end": rel["other"], "type": rel["type"], "props": rel["props"]})
        for rel in unit.incoming:
            self.relationships[EXISTING, COPY].append(
                {"start": rel["other"], "end": ids[rel["own"]], "type": rel["type"], "props": rel["props"]})


def make_plain_rows(driver: neo4j.Driver, database: str, tenant_id: str, size: Size,
                    operation_id: str) -> Tuple[PlainRows, Dict[str, int]]:
    """The rows the pipeline writes, under ``operation_id``, made by the project's own
    functions outside Beam: plan → parts → ``read_part`` → ``replicate_part`` →
    ``UnitRowsOf`` of every copy unit and link unit. Returns (rows, the plan's expected
    counts)."""
    plan = plan_scale_up(driver, database, TemplateSelection(tenant_id), size.factor, None,
                         MAX_NEW_NODES)
    settings = ReplicationSettings(operation_id, utc_now_iso(), plan.base_copies)
    rows_of = UnitRowsOf(operation_id)
    rows = PlainRows()
    for part in plan.parts:
        replicated = replicate_part(read_part(driver, database, plan.selection, part), settings)
        for replica in range(max(part.copies(plan.base_copies))):
            rows.add(rows_of(CopyUnit(replicated, replica)))
            rows.add(rows_of(LinkUnit(replicated, replica)))
    return rows, {"nodes": plan.new_node_count, "relationships": plan.new_relationship_count}


Batches = List[Tuple[str, List[Dict[str, Any]]]]


def _batches(statement: str, rows: List[Dict[str, Any]]) -> Batches:
    return [(statement, rows[first:first + PLAIN_BATCH_SIZE])
            for first in range(0, len(rows), PLAIN_BATCH_SIZE)]


def plain_work(rows: PlainRows, threads: int) -> Tuple[List[Batches], List[Batches]]:
    """(node batches, relationship batches) of each thread: the nodes in ``threads``
    disjoint chunks; the relationships partitioned by start node, by kind of ends."""
    count = len(rows.nodes)
    nodes = [_batches(PLAIN_NODES, rows.nodes[count * i // threads:count * (i + 1) // threads])
             for i in range(threads)]
    relationships: List[Batches] = [[] for _ in range(threads)]
    for kind, kind_rows in rows.relationships.items():
        partitions: List[List[Dict[str, Any]]] = [[] for _ in range(threads)]
        for row in kind_rows:
            partitions[hash(row["start"]) % threads].append(row)
        for thread, partition in enumerate(partitions):
            relationships[thread] += _batches(PLAIN_RELATIONSHIPS[kind], partition)
    return nodes, relationships


def write_in_threads(driver: neo4j.Driver, work: List[Batches]) -> int:
    """Each thread writes its batches in order, in a session of its own, one transaction
    per batch (``execute_write`` retries transient errors); returns the retries."""

    def write(batches: Batches) -> int:
        calls = 0

        def run(tx: neo4j.ManagedTransaction, statement: str, batch: List[Dict[str, Any]]) -> None:
            nonlocal calls
            calls += 1
            tx.run(statement, rows=batch).consume()

        with driver.session() as session:
            for statement, batch in batches:
                session.execute_write(run, statement, batch)
        return calls - len(batches)

    with concurrent.futures.ThreadPoolExecutor(len(work), thread_name_prefix="plain") as pool:
        return sum(pool.map(write, work))


def run_plain_writer(server: BenchmarkServer, driver: neo4j.Driver, rows: PlainRows,
                     threads: int) -> Dict[str, Any]:
    """Write ``rows`` with ``threads`` threads, nodes first; only the writes are timed."""
    node_work, relationship_work = plain_work(rows, threads)
    measured = Measured(server.pid)
    try:
        started = time.perf_counter()
        retries = write_in_threads(driver, node_work)
        node_s = time.perf_counter() - started
        retries += write_in_threads(driver, relationship_work)
        wall = time.perf_counter() - started
    finally:
        window = measured.stop()
    nodes, relationships = len(rows.nodes), rows.relationship_count
    return {
        "name": f"plain-{threads}",
        "threads": threads,
        "batch_size": PLAIN_BATCH_SIZE,
        "transactions": sum(len(batches) for batches in (*node_work, *relationship_work)),
        "wall_s": round(wall, 3),
        "node_s": round(node_s, 3),
        "relationship_s": round(wall - node_s, 3),
        "nodes": nodes,
        "relationships": relationships,
        **_rates(nodes, relationships, wall),
        "retries": retries,
        "cpu_s": window["self_cpu_s"],
        "neo4j_cpu_s": window["neo4j_cpu_s"],
        "others_cpu_share": window["others_cpu_share"],
        "neo4j_rss_peak_mb": window["memory_mb"]["neo4j"]["rss"],
    }


# --------------------------------------------------------------------------- machine


def _first_line(command: Sequence[str]) -> Optional[str]:
    try:
        out = subprocess.run(list(command), capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout + out.stderr).strip()
    return text.splitlines()[0] if text else None


def _cpu_model() -> Optional[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine_description(driver: neo4j.Driver, server: BenchmarkServer) -> Dict[str, Any]:
    """The CPU, cores, RAM, versions of everything measured, the server's memory, the commit."""
    component = driver.execute_query(
        "CALL dbms.components() YIELD name, versions, edition "
        "RETURN name + ' ' + versions[0] + ' ' + edition AS server").records[0]["server"]
    commit = _first_line(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"])
    dirty = _first_line(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"])
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "os": platform.platform(),
        "python": platform.python_version(),
        "java": _first_line(["java", "-version"]),
        "neo4j_server": component,
        "neo4j_heap": server.heap,
        "neo4j_pagecache": server.pagecache,
        "packages": {name: importlib.metadata.version(name)
                     for name in ("apache-beam", "neo4j", "neo4j-rust-ext", "psutil")},
        "git_commit": (commit + ("-dirty" if dirty else "")) if commit else None,
    }


# --------------------------------------------------------------------------- results


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def output_path() -> Path:
    name = f"benchmark-{datetime.datetime.now(datetime.timezone.utc):%Y%m%dT%H%M%SZ}.json"
    configured = os.environ.get("BENCHMARK_OUTPUT")
    if not configured:
        return REPO_ROOT / "benchmark-results" / name
    path = Path(configured).expanduser()
    return path if path.suffix == ".json" else path / name


class Results:
    """The one JSON file of this run, rewritten after every size, and its PNG."""

    def __init__(self, path: Path, header: Dict[str, Any]) -> None:
        self.path = path
        self.png_path = path.with_suffix(".png")
        self.data = {**header, "results": []}

    def add(self, entry: Dict[str, Any]) -> None:
        self.data["results"].append(entry)
        self.save()

    def save(self, complete: bool = False) -> None:
        self.data["complete"] = complete
        self.data["finished_at"] = _utc_now()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(self.data, indent=2) + "\n", encoding="utf-8")
        temporary.replace(self.path)
        plot(self.data, self.png_path)


def plot(data: Dict[str, Any], path: Path) -> None:
    """Throughput (rows/s) and wall time against the final graph size, log-log: the
    pipeline (solid) and each plain writer (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    entries = sorted((e for e in data["results"] if "pipeline" in e), key=lambda e: e["final_size"])
    figure, (rates, times) = plt.subplots(1, 2, figsize=(13, 5))
    x = [e["final_size"] for e in entries]
    writers = sorted({w["name"] for e in entries for w in e.get("plain", [])},
                     key=lambda name: int(name.split("-")[1]))

    def series(figures_of, key):
        values = [(figures_of(e) or {}).get(key) for e in entries]
        return [float("nan") if value is None else value for value in values]

    def plain(name):
        return lambda entry: next((w for w in entry.get("plain", []) if w["name"] == name), None)

    rates.plot(x, series(lambda e: e["pipeline"], "rows_per_s"), "o-", color="black", label="pipeline")
    times.plot(x, series(lambda e: e["pipeline"], "wall_s"), "o-", color="black",
               label="pipeline (duration_s)")
    times.plot(x, series(lambda e: e["pipeline"], "process_wall_s"), "^:", color="black",
               label="pipeline (whole process)")
    for name in writers:
        rates.plot(x, series(plain(name), "rows_per_s"), "s--", alpha=0.7, label=name)
        times.plot(x, series(plain(name), "wall_s"), "s--", alpha=0.7, label=name)
    for axis, title, unit in ((rates, "Throughput", "rows (nodes + relationships) per second"),
                              (times, "Wall time", "seconds")):
        if entries:  # a log scale needs data
            axis.set_xscale("log")
            axis.set_yscale("log")
            axis.set_xticks(x)
            axis.set_xticklabels([e["label"] for e in entries], rotation=20, fontsize=8)
        axis.xaxis.set_minor_locator(ticker.NullLocator())
        axis.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.yaxis.set_minor_locator(ticker.NullLocator())
        axis.yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:,g}"))
        axis.grid(True, which="major", alpha=0.3)
        axis.legend(fontsize=8)
        axis.set_xlabel("graph size (templates → final resources)")
        axis.set_ylabel(unit)
        axis.set_title(title)
    machine = data["machine"]
    figure.suptitle(f"scale-up benchmark {data['started_at']} · {machine['cpu_model']} · "
                    f"{machine['logical_cores']} cores · Neo4j heap {machine['neo4j_heap']}, "
                    f"page cache {machine['neo4j_pagecache']} · {machine['git_commit']}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


@pytest.fixture(scope="module")
def results(benchmark_neo4j: BenchmarkServer, bench_driver: neo4j.Driver) -> Results:
    results = Results(output_path(), {
        "schema": SCHEMA_VERSION,
        "started_at": _utc_now(),
        "settings": {"sizes": [dataclasses.asdict(size) for size in SIZES], "seed": SEED,
                     "plain_writers": [f"plain-{n}" for n in PLAIN_WRITERS],
                     "plain_batch_size": PLAIN_BATCH_SIZE,
                     "warmup": WARMUP_SIZE.id if WARMUP else None,
                     "scale_up_flags": "defaults (FnApiRunner, adaptive batch size, "
                                       "--max-concurrent-writes 5)"},
        "machine": machine_description(bench_driver, benchmark_neo4j),
        "notes": NOTES,
    })
    results.save()
    return results


# --------------------------------------------------------------------------- tests


def measure_size(size: Size, server: BenchmarkServer, driver: neo4j.Driver, work_dir: Path,
                 entry: Dict[str, Any], prefix: str = "bench") -> None:
    """One size into ``entry``, filled as it goes (a failure keeps what was measured):
    load, pipeline, counts, plain writers, counts, clean-up."""
    database = server.connection.database
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    tenant_id, operation_id = f"{prefix}-{size.templates}-{stamp}", f"{prefix}-{size.id}-{stamp}"
    entry.update({"label": size.label, "templates": size.templates, "scale_factor": size.factor,
                  "final_size": size.final, "tenant_id": tenant_id,
                  "loadavg_before": [round(x, 2) for x in os.getloadavg()],
                  "clear_s": delete_data(driver)})
    load = load_demo_tenant(server.connection, DemoTenantSpec(tenant_id, resources=size.templates,
                                                              seed=SEED))
    entry["load"] = {key: load[key] for key in ("seconds", "nodes_written", "relationships_written",
                                                "dead_letters")}
    assert load["dead_letters"] == 0, load

    pipeline = entry["pipeline"] = run_pipeline(server, size, tenant_id, operation_id, work_dir)
    report = pipeline.pop("report")
    entry["report"] = report
    expected = report["expected"]
    assert report["status"] == "succeeded", report["errors"]
    assert operation_counts(driver, operation_id) == expected == report["written"]
    # A share of the pipeline's server CPU, measured apart: its read-back of the counts.
    measured = Measured(server.pid)
    written_by_type(driver, database, operation_id)
    entry["read_back"] = _window_figures(measured.stop())
    entry["delete_s"] = {"pipeline": delete_data(driver, operation_id)}

    # Another share: the plan's and the parts' reads, the same queries as the pipeline's.
    plain_operation_id = f"plain-{size.id}-{stamp}"
    measured = Measured(server.pid)
    rows, plain_expected = make_plain_rows(driver, database, tenant_id, size, plain_operation_id)
    entry["plain_rows"] = {**_window_figures(measured.stop()), "nodes": len(rows.nodes),
                           "relationships": rows.relationship_count}
    assert plain_expected == expected
    assert {"nodes": len(rows.nodes), "relationships": rows.relationship_count} == expected
    entry["plain"] = []
    for threads in PLAIN_WRITERS:
        figures = run_plain_writer(server, driver, rows, threads)
        entry["plain"].append(figures)
        assert operation_counts(driver, plain_operation_id) == expected, figures["name"]
        entry["delete_s"][figures["name"]] = delete_data(driver, plain_operation_id)
    best = min(entry["plain"], key=lambda figures: figures["wall_s"])
    entry["best_plain"] = best["name"]
    entry["ratio"] = {"best_plain": round(best["wall_s"] / pipeline["wall_s"], 3),
                      "plain_1": round(entry["plain"][0]["wall_s"] / pipeline["wall_s"], 3),
                      "best_plain_to_process": round(best["wall_s"] / pipeline["process_wall_s"], 3)}
    entry["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]


@pytest.fixture(scope="module")
def warmed_up(benchmark_neo4j: BenchmarkServer, bench_driver: neo4j.Driver, results: Results,
              tmp_path_factory: pytest.TempPathFactory) -> None:
    """One unrecorded small size first (unless BENCHMARK_WARMUP=0): a fresh server's
    JIT and query plans are cold, which would be charged to the first size's pipeline."""
    if not WARMUP:
        return
    entry: Dict[str, Any] = {}
    started = time.perf_counter()
    measure_size(WARMUP_SIZE, benchmark_neo4j, bench_driver, tmp_path_factory.mktemp("warmup"),
                 entry, prefix="warmup")
    results.data["warmup"] = {"label": entry["label"], "seconds": round(time.perf_counter() - started, 3)}


@pytest.mark.parametrize("size", SIZES, ids=[size.id for size in SIZES])
def test_scale_up_benchmark(size: Size, benchmark_neo4j: BenchmarkServer, bench_driver: neo4j.Driver,
                            results: Results, warmed_up: None, tmp_path: Path) -> None:
    entry: Dict[str, Any] = {}
    try:
        measure_size(size, benchmark_neo4j, bench_driver, tmp_path, entry)
    except BaseException as error:
        entry["error"] = f"{type(error).__name__}: {error}"[:2000]
        raise
    finally:
        results.add(entry)


def test_results_were_written(results: Results) -> None:
    """Runs last: the JSON holds every size, without errors, and the plot exists."""
    results.save(complete=True)
    data = json.loads(results.path.read_text(encoding="utf-8"))
    assert [entry["label"] for entry in data["results"]] == [size.label for size in SIZES]
    assert [entry["label"] for entry in data["results"] if "error" in entry] == []
    assert results.png_path.stat().st_size > 0
    print(f"\nbenchmark results: {results.path}\nplot: {results.png_path}")
