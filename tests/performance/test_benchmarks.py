"""Benchmarks of the scale-up, measured for real on a local Neo4j, with a bare-driver ceiling.

    NEO4J_HEAP=4g NEO4J_PAGECACHE=4g .venv/bin/python -m pytest tests/performance -m benchmark
    BENCHMARK_SIZES=50 BENCHMARK_WARMUP=0 NEO4J_HEAP=1g NEO4J_PAGECACHE=512m \\
        .venv/bin/python -m pytest tests/performance -m benchmark        # smoke (CI), ~1.5 min

The matrix is the seed's (PERFORMANCE_OPTIMIZATION_SUMMARY.md): 100→1k (×10),
1k→5k (×5), 5k→40k (×8), 40k→1M (×25), on the realistic demo tenant
(``DemoTenantSpec(tenant, resources=N, seed=...)``; N is the number of templates).

Per size, on ONE server for the module (``benchmark_neo4j``: a ``LocalNeo4j`` in a
temporary home with an explicit heap and page cache, ``$NEO4J_HEAP``/``$NEO4J_PAGECACHE``
or 4g/4g; not the 2g/2g session server of ``tests/conftest.py``), independently of
the other sizes:

1. wipe the database, load a fresh demo tenant (timed, not part of the scale-up);
2. run the scale-up: by default in a fresh ``python -m pipelines.scale_up ... --report``
   subprocess, so the report's ``memory.peak_mb`` (ru_maxrss: process-wide and
   monotonic) is this size's own peak; ``BENCHMARK_MODE=inprocess`` runs
   ``pipelines.scale_up.run`` in this process instead (then peaks carry over from
   earlier sizes and from the tenant load). Meanwhile a thread samples the RSS of the
   Neo4j server (and of the pipeline subprocess) every 0.1 s;
3. check the database holds exactly what the report says was written;
4. delete the pipeline's rows, then the **bare-driver ceiling**: the same rows (the
   project's own template reads and replicator DoFns, outside Beam, under another
   operation id), written by the plainest loop: one thread, one session, the same
   driver settings, server, ``write_statement(kind)`` and batch size; all node
   batches, then all relationship batches, grouped by kind. Only the transactions are
   timed. Then the ceiling's rows are deleted again.

Results go to ONE JSON file per run, ``benchmark-results/benchmark-<UTC>.json``
(``$BENCHMARK_OUTPUT`` overrides the path), rewritten after every size, and a PNG
plot beside it (same name, ``.png``). ``scripts/benchmark_table.py`` turns the JSON
into the README's Markdown table.

Environment:

* ``BENCHMARK_SIZES``: comma-separated template counts, optionally ``NxF`` for an
  explicit factor (default ``100,1000,5000,40000``). A size from the seed's matrix
  takes the seed's factor; any other the factor of the largest seed size below it
  (``50`` → ×10).
* ``BENCHMARK_SEED`` (default 1), ``BENCHMARK_MODE`` (``subprocess``/``inprocess``),
  ``BENCHMARK_OUTPUT``, ``NEO4J_HEAP``/``NEO4J_PAGECACHE`` (default 4g/4g).
* ``BENCHMARK_WARMUP=0`` skips the unrecorded 50→500 warm-up run that otherwise
  comes first (a freshly started server's cold JIT and plan cache would be charged to
  the first size).
* ``NEO4J_URI`` (+ user/password, see README): use that server instead; **its
  database is wiped** before every size, and the Neo4j RSS is not measured.

Nothing here asserts a timing; only what must hold (counts in the database equal the
report's and the ceiling's, no dead letters, the JSON and PNG were written).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import neo4j
import psutil
import pytest

from pipelines import scale_up
from pipelines.operation import record as operations
from pipelines.demo.load import load_demo_tenant
from pipelines.infra.neo4j_server import LocalNeo4j
from transforms.connection import Neo4jConnection
from transforms.cypher import WriteKind, is_node_kind, write_statement
from transforms.demo import DemoTenantSpec
from transforms.replicate import (
    CopySetRows,
    ReplicationSettings,
    _ReplicateNodesFn,
    _ReplicateRelationshipsFn,
)
from pipelines.options import parse_arguments
from pipelines.plan import TemplatePlan, plan_templates
from transforms.model import TemplateSelection
from transforms.read import _READ_CHUNK_RELATIONSHIPS, _READ_CHUNK_TEMPLATES, _fetch_all

pytestmark = [pytest.mark.benchmark, pytest.mark.neo4j]

REPO_ROOT = Path(__file__).resolve().parents[2]
#: The seed's matrix: templates → scale factor.
SEED_MATRIX: Tuple[Tuple[int, float], ...] = ((100, 10.0), (1_000, 5.0), (5_000, 8.0), (40_000, 25.0))
SAMPLE_INTERVAL_S = 0.1
DELETE_QUERY = ("MATCH (n:Resource {scale_operation_id: $op}) "
                "CALL { WITH n DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS")
SCHEMA_VERSION = 1

NOTES = [
    "wall_s is the report's duration_s: from the start of pipelines.scale_up.run (connect, "
    "plan, indexes) to the report, including the read-back count of what was written; "
    "pipeline_s is only the Beam pipeline's run.",
    "nodes_per_s / relationships_per_s are the report's throughput: each count divided by "
    "pipeline_s, the whole pipeline (nodes and relationships are written one after the "
    "other, so neither is the rate of its own phase).",
    "The ceiling writes the same rows with the bare driver (one thread, one session, the "
    "same statements and batch size, no Beam); its time is the sum of its transactions "
    "only. Its nodes_per_s / relationships_per_s use the same basis as the pipeline's "
    "(count / whole write time), so ratio = pipeline rate / ceiling rate = ceiling write_s "
    "/ pipeline_s; node_phase_nodes_per_s and relationship_phase_relationships_per_s are "
    "the rates of each phase alone.",
    "neo4j_write_time_s is the report's write_time_s: transaction time summed over "
    "concurrent transactions, so it can exceed the wall time; write_share_of_wall = "
    "neo4j_write_time_s / wall_s and write_share_of_pipeline = neo4j_write_time_s / "
    "pipeline_s (values above 1 mean overlapping transactions).",
    "peak_rss_mb is the report's memory.peak_mb (ru_maxrss of the process that ran the "
    "pipeline: a fresh subprocess per size in mode 'subprocess'; process-wide and "
    "carried over between sizes in mode 'inprocess'); rss_sampled_peak_mb is sampled "
    "every 0.1 s from outside. neo4j_rss_mb is the server JVM's RSS (heap + page cache "
    "+ native, as touched), sampled every 0.1 s; one server serves the whole run, so it "
    "also reflects the sizes before (before_load shows where each size started).",
    "cpu: CPU seconds in the window (pipeline run, or ceiling write loop): this test "
    "process (self), the pipeline subprocess (children), the Neo4j server, and everything "
    "else on the machine (others = machine busy time minus ours); others_cpu_share = "
    "others / (wall x cores). Above a few percent the figures are disturbed by other load.",
    "The ceiling runs after the pipeline on the same server, with its query plans "
    "cached and its JIT warmer: an advantage for the ceiling. An unrecorded warm-up size "
    "(settings.warmup) runs first so that the first size does not pay for a cold server; "
    "the JVM keeps warming over several runs, so small sizes remain a little pessimistic.",
]


# --------------------------------------------------------------------------- sizes


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
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        count_text, _, factor_text = item.lower().partition("x")
        count = int(count_text.replace("_", ""))
        if factor_text:
            factor = float(factor_text)
        else:
            below = [f for n, f in SEED_MATRIX if n <= count]
            factor = below[-1] if below else SEED_MATRIX[0][1]
        if count < 1 or not factor > 1:
            raise ValueError(f"BENCHMARK_SIZES: bad size {item!r} (need N >= 1 and factor > 1)")
        sizes.append(Size(count, factor))
    return sizes


SIZES = parse_sizes(os.environ.get("BENCHMARK_SIZES"))
MODE = os.environ.get("BENCHMARK_MODE", "subprocess")
WARMUP = os.environ.get("BENCHMARK_WARMUP", "1") not in ("0", "", "false", "no")
#: The unrecorded size run first to warm the server up (see ``warmed_up``).
WARMUP_SIZE = Size(50, 10.0)
SEED = int(os.environ.get("BENCHMARK_SEED", "1"))
if MODE not in ("subprocess", "inprocess"):
    raise ValueError(f"BENCHMARK_MODE must be 'subprocess' or 'inprocess', got {MODE!r}")


# --------------------------------------------------------------------------- server

#: Heap and page cache of the benchmark's own server unless $NEO4J_HEAP/$NEO4J_PAGECACHE.
DEFAULT_HEAP = "4g"
DEFAULT_PAGECACHE = "4g"


@dataclasses.dataclass
class BenchmarkServer:
    connection: Neo4jConnection
    #: The server's process id (``None``: a server we did not start, RSS unknown).
    pid: Optional[int]
    heap: Optional[str]
    pagecache: Optional[str]
    #: "local" (started here) or "NEO4J_URI" (the caller's own server).
    source: str
    #: Environment variables that point a subprocess at this server.
    env: Dict[str, str]
    home: Optional[Path] = None


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def clear_database(driver: neo4j.Driver, database: str) -> None:
    """Empty the database: data in bounded transactions, then constraints and indexes
    (all but the built-in LOOKUP ones), as ``tests/conftest.py`` does."""
    with driver.session(database=database) as session:
        session.run("MATCH ()-[r]->() CALL (r) { DELETE r } IN TRANSACTIONS OF 50000 ROWS").consume()
        session.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 20000 ROWS").consume()
        for name in [r["name"] for r in session.run("SHOW CONSTRAINTS YIELD name")]:
            session.run(f"DROP CONSTRAINT {_quote(name)} IF EXISTS").consume()
        indexes = [r["name"] for r in session.run(
            "SHOW INDEXES YIELD name, type WHERE type <> 'LOOKUP' RETURN name")]
        for name in indexes:
            session.run(f"DROP INDEX {_quote(name)} IF EXISTS").consume()


@pytest.fixture(scope="module")
def benchmark_neo4j(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BenchmarkServer]:
    """``$NEO4J_URI`` when set (its database is wiped before every size), else ONE local
    server for the module, with an explicit heap and page cache, stopped at the end."""
    if os.environ.get("NEO4J_URI"):
        env = {key: os.environ[key] for key in ("NEO4J_URI", "NEO4J_USER", "NEO4J_DATABASE",
                                                "NEO4J_PASSWORD", "NEO4J_PASSWORD_FILE")
               if key in os.environ}
        yield BenchmarkServer(Neo4jConnection.from_environment(), pid=None, heap=None,
                              pagecache=None, source="NEO4J_URI", env=env)
        return
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
        yield BenchmarkServer(connection, pid=server.pid, heap=heap, pagecache=pagecache,
                              source="local", env=env, home=home)
    finally:
        server.stop()
        # pytest keeps the last three temporary folders: keep the logs, not gigabytes of data.
        shutil.rmtree(home / "data", ignore_errors=True)


# --------------------------------------------------------------------------- measuring


class RssSampler(threading.Thread):
    """Samples the RSS (MB) of named processes every ``interval`` s; keeps the peaks."""

    def __init__(self, interval: float = SAMPLE_INTERVAL_S) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self._interval = interval
        self._processes: Dict[str, psutil.Process] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self.peaks: Dict[str, float] = {}
        self.samples = 0

    def watch(self, name: str, pid: Optional[int]) -> None:
        if pid is None:
            return
        try:
            process = psutil.Process(pid)
        except psutil.NoSuchProcess:
            return
        with self._lock:
            self._processes[name] = process
        self._sample_one(name, process)

    def _sample_one(self, name: str, process: psutil.Process) -> None:
        try:
            rss = process.memory_info().rss / 2**20
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return
        if rss > self.peaks.get(name, 0.0):
            self.peaks[name] = rss

    def run(self) -> None:
        while not self._stopped.wait(self._interval):
            with self._lock:
                processes = list(self._processes.items())
            for name, process in processes:
                self._sample_one(name, process)
            self.samples += 1

    def stop(self) -> Dict[str, float]:
        self._stopped.set()
        self.join()
        with self._lock:
            for name, process in self._processes.items():
                self._sample_one(name, process)
        return {name: round(value, 1) for name, value in self.peaks.items()}


def _rss_mb(pid: Optional[int]) -> Optional[float]:
    if pid is None:
        return None
    try:
        return round(psutil.Process(pid).memory_info().rss / 2**20, 1)
    except psutil.Error:
        return None


def _cpu_s(pid: Optional[int]) -> Optional[float]:
    if pid is None:
        return None
    try:
        times = psutil.Process(pid).cpu_times()
        return times.user + times.system
    except psutil.Error:
        return None


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class CpuWindow:
    """CPU seconds spent during a window: by this process, by its children reaped in the
    window (the pipeline subprocess), by the Neo4j server, and by everything else on
    the machine (other users of the shared cores: what makes a run noisy)."""

    def __init__(self, neo4j_pid: Optional[int]) -> None:
        self._neo4j_pid = neo4j_pid
        self._started = time.perf_counter()
        self._start = self._read()

    def _read(self) -> Dict[str, Optional[float]]:
        system = psutil.cpu_times()
        busy = sum(system) - system.idle - getattr(system, "iowait", 0.0)
        busy -= getattr(system, "guest", 0.0) + getattr(system, "guest_nice", 0.0)  # in user too
        return {"busy": busy, "self": _cpu_s(os.getpid()), "children": _children_cpu_s(),
                "neo4j": _cpu_s(self._neo4j_pid)}

    def stop(self) -> Dict[str, Optional[float]]:
        end, wall = self._read(), time.perf_counter() - self._started
        spent = {key: (end[key] - self._start[key]
                       if end[key] is not None and self._start[key] is not None else None)
                 for key in end}
        ours = sum(value for key, value in spent.items() if key != "busy" and value is not None)
        capacity = wall * (os.cpu_count() or 1)
        others = max(0.0, spent["busy"] - ours)
        return {
            "wall_s": round(wall, 3),
            "capacity_cpu_s": round(capacity, 2),
            "self_cpu_s": round(spent["self"], 2),
            "children_cpu_s": round(spent["children"], 2),
            "neo4j_cpu_s": round(spent["neo4j"], 2) if spent["neo4j"] is not None else None,
            "others_cpu_s": round(others, 2),
            "others_share": round(others / capacity, 3) if capacity else None,
        }


def _rate(count: Optional[float], seconds: Optional[float]) -> Optional[float]:
    if count is None or not seconds:
        return None
    return round(count / seconds, 1)


def _ratio(a: Optional[float], b: Optional[float], digits: int = 3) -> Optional[float]:
    if a is None or not b:
        return None
    return round(a / b, digits)


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


def _package_version(name: str) -> Optional[str]:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cgroup_cpu_limit() -> Optional[str]:
    try:
        return Path("/sys/fs/cgroup/cpu.max").read_text().strip()
    except OSError:
        return None


def machine_description(driver: neo4j.Driver, server: BenchmarkServer) -> Dict[str, Any]:
    """Cores, RAM, CPU model, OS, versions of everything measured, the server's settings."""
    try:
        component = driver.execute_query(
            "CALL dbms.components() YIELD name, versions, edition "
            "RETURN name, versions[0] AS version, edition",
            database_=server.connection.database).records[0]
        neo4j_server = f"{component['name']} {component['version']} {component['edition']}"
    except neo4j.exceptions.Neo4jError:
        neo4j_server = None
    commit = _first_line(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"])
    dirty = _first_line(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"])
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cgroup_cpu_max": _cgroup_cpu_limit(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "ram_available_gib_at_start": round(psutil.virtual_memory().available / 2**30, 1),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "os": platform.platform(),
        "python": platform.python_version(),
        "java": _first_line(["java", "-version"]),
        "versions": {
            "neo4j_server": neo4j_server,
            "apache-beam": _package_version("apache-beam"),
            "neo4j (driver)": _package_version("neo4j"),
            "neo4j-rust-ext": _package_version("neo4j-rust-ext"),
            "psutil": _package_version("psutil"),
        },
        "neo4j": {"source": server.source, "heap": server.heap, "pagecache": server.pagecache},
        "git_commit": (commit + ("-dirty" if dirty else "")) if commit else None,
    }


# --------------------------------------------------------------------------- results


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
        temporary.write_text(json.dumps(self.data, indent=2, sort_keys=False) + "\n",
                             encoding="utf-8")
        temporary.replace(self.path)
        plot(self.data, self.png_path)


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def output_path() -> Path:
    configured = os.environ.get("BENCHMARK_OUTPUT")
    if configured:
        path = Path(configured).expanduser()
        return path if path.suffix == ".json" else path / _default_name()
    return REPO_ROOT / "benchmark-results" / _default_name()


def _default_name() -> str:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"benchmark-{stamp}.json"


def plot(data: Dict[str, Any], path: Path) -> None:
    """Throughput (nodes/s, relationships/s; pipeline and ceiling) and wall time against
    the final graph size, log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    entries = sorted((e for e in data["results"] if "pipeline" in e), key=lambda e: e["final_size"])
    figure, (rates, times) = plt.subplots(1, 2, figsize=(13, 5))
    if entries:
        x = [e["final_size"] for e in entries]

        def series(*keys):
            values = []
            for entry in entries:
                value: Any = entry
                for key in keys:
                    value = value.get(key) if isinstance(value, dict) else None
                values.append(value if value is not None else float("nan"))
            return values

        rates.plot(x, series("pipeline", "nodes_per_s"), "o-", color="tab:blue", label="pipeline nodes/s")
        rates.plot(x, series("pipeline", "relationships_per_s"), "s-", color="tab:orange",
                   label="pipeline relationships/s")
        rates.plot(x, series("ceiling", "nodes_per_s"), "o--", color="tab:blue", alpha=0.6,
                   label="bare-driver ceiling nodes/s")
        rates.plot(x, series("ceiling", "relationships_per_s"), "s--", color="tab:orange", alpha=0.6,
                   label="bare-driver ceiling relationships/s")
        times.plot(x, series("pipeline", "wall_s"), "o-", color="tab:green", label="pipeline wall time")
        times.plot(x, series("pipeline", "pipeline_s"), "^:", color="tab:green", alpha=0.7,
                   label="of which Beam pipeline")
        times.plot(x, series("ceiling", "write_s"), "o--", color="tab:gray", label="ceiling write time")
        for axis in (rates, times):
            axis.set_xscale("log")
            axis.set_yscale("log")
            axis.set_xticks(x)
            axis.set_xticklabels([e["label"] for e in entries], rotation=20, fontsize=8)
            axis.xaxis.set_minor_locator(ticker.NullLocator())
            axis.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axis.yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:,g}"))
            axis.yaxis.set_minor_locator(ticker.NullLocator())
            axis.grid(True, which="major", alpha=0.3)
            axis.legend(fontsize=8)
    rates.set_xlabel("graph size (templates → final resources)")
    rates.set_ylabel("items per second (count / whole run)")
    rates.set_title("Throughput")
    times.set_xlabel("graph size (templates → final resources)")
    times.set_ylabel("seconds")
    times.set_title("Wall time")
    machine = data.get("machine", {})
    figure.suptitle(
        f"scale-up benchmark {data.get('started_at', '')} · {machine.get('cpu_model')} · "
        f"{machine.get('logical_cores')} cores · Neo4j heap {machine.get('neo4j', {}).get('heap')} "
        f"page cache {machine.get('neo4j', {}).get('pagecache')}", fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


# --------------------------------------------------------------------------- database


def _scalar(driver: neo4j.Driver, database: str, query: str, **params: Any) -> Any:
    return driver.execute_query(query, params, database_=database).records[0][0]


def operation_counts(driver: neo4j.Driver, database: str, operation_id: str) -> Dict[str, int]:
    """Nodes and relationships carrying ``scale_operation_id = operation_id``."""
    nodes = _scalar(driver, database,
                    "MATCH (n:Resource {scale_operation_id: $op}) RETURN count(n)", op=operation_id)
    relationships = _scalar(driver, database,
                            "MATCH ()-[r]->() WHERE r.scale_operation_id = $op RETURN count(r)",
                            op=operation_id)
    return {"nodes": nodes, "relationships": relationships}


def delete_operation(driver: neo4j.Driver, database: str, operation_id: str) -> float:
    """Delete an operation's nodes (and so their relationships); return the seconds."""
    started = time.perf_counter()
    with driver.session(database=database) as session:
        session.run(DELETE_QUERY, op=operation_id).consume()
    return round(time.perf_counter() - started, 3)


# --------------------------------------------------------------------------- pipeline


def run_pipeline(server: BenchmarkServer, size: Size, tenant_id: str, operation_id: str,
                 work_dir: Path) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Run the scale-up (subprocess or in-process); return (report, our measurements)."""
    args = ["--tenant-id", tenant_id, "--scale-factor", f"{size.factor:g}",
            "--operation-id", operation_id]
    sampler = RssSampler()
    sampler.watch("neo4j", server.pid)
    measured: Dict[str, Any] = {"mode": MODE}
    sampler.start()
    cpu = CpuWindow(server.pid)
    started = time.perf_counter()
    try:
        if MODE == "subprocess":
            report_path = work_dir / f"report-{size.id}.json"
            log_path = work_dir / f"scale_up-{size.id}.log"
            with open(log_path, "wb") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "pipelines.scale_up", *args, "--report", str(report_path)],
                    cwd=REPO_ROOT, env={**os.environ, **server.env, "PYTHONUNBUFFERED": "1"},
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
                sampler.watch("pipeline", process.pid)
                code = process.wait()
            measured["process_wall_s"] = round(time.perf_counter() - started, 3)
            if code != 0 or not report_path.exists():
                tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
                pytest.fail(f"python -m pipelines.scale_up exited {code} for {size.label}:\n{tail}")
            report = json.loads(report_path.read_text())
        else:
            config, _, beam_args = parse_arguments(args)
            report = scale_up.scale_up(config, server.connection, beam_args)
            measured["process_wall_s"] = round(time.perf_counter() - started, 3)
    finally:
        peaks = sampler.stop()
        measured["cpu"] = cpu.stop()
    measured["pipeline_cpu_s"] = measured["cpu"]["children_cpu_s" if MODE == "subprocess" else "self_cpu_s"]
    measured["rss_sampled_peak_mb"] = peaks.get("pipeline")
    measured["neo4j_rss_peak_mb"] = peaks.get("neo4j")
    return report, measured


def pipeline_figures(report: Dict[str, Any], measured: Dict[str, Any]) -> Dict[str, Any]:
    wall = report["duration_s"]
    pipeline_s = report["pipeline_s"]
    nodes = report["written"]["nodes"]
    relationships = report["written"]["relationships"]
    write_time = report["neo4j"]["write_time_s"]
    return {
        "status": report["status"],
        "runner": report["runner"],
        "wall_s": wall,
        "pipeline_s": pipeline_s,
        "nodes": nodes,
        "relationships": relationships,
        "nodes_per_s": report["throughput"]["nodes_per_s"],
        "relationships_per_s": report["throughput"]["relationships_per_s"],
        "rows_per_s": _rate(nodes + relationships, pipeline_s),
        "nodes_per_wall_s": _rate(nodes, wall),
        "relationships_per_wall_s": _rate(relationships, wall),
        "peak_rss_mb": report["memory"]["peak_mb"],
        "rss_sampled_peak_mb": measured.get("rss_sampled_peak_mb"),
        "memory": report["memory"],
        "batch_size": report["batches"]["batch_size"],
        "batch_count": report["batches"]["count"],
        "batch_rows": report["batches"].get("size"),
        "max_concurrent_writes": report["batches"]["max_concurrent_writes"],
        "observed_concurrency_max": report["batches"]["observed_concurrency_max"],
        "write_transactions": report["neo4j"]["write_transactions"],
        "neo4j_write_time_s": write_time,
        "write_share_of_wall": _ratio(write_time, wall),
        "write_share_of_pipeline": _ratio(write_time, pipeline_s),
        "retries": report["retries"],
        "dead_letters": report["dead_letters"],
        "process_wall_s": measured.get("process_wall_s"),
        "cpu_s": measured.get("pipeline_cpu_s"),
        "neo4j_cpu_s": measured["cpu"]["neo4j_cpu_s"],
        "others_cpu_share": measured["cpu"]["others_share"],
        "cpu": measured["cpu"],
    }


# --------------------------------------------------------------------------- ceiling


def final_rows(element: Any, operation_id: str) -> Tuple[WriteKind, Callable[[], List[Dict[str, Any]]]]:
    """One main output of the replicator's DoFns → (write kind, a function making its rows).

    The ONE place that knows the replicator's element format; adapt it when that
    changes. Today an element is ``((kind, shard), copy set)`` and the sink expands the
    copy set with ``transforms.replicate.CopySetRows(operation_id)`` in its write
    thread, just before the transaction (outside the write latency it reports). The
    ceiling does the same: rows are made per batch, outside the timed transactions.
    """
    (kind, _shard), copy_set = element
    return kind, functools.partial(CopySetRows(operation_id), copy_set)


RowMakers = Dict[WriteKind, List[Callable[[], List[Dict[str, Any]]]]]


def replicate_outside_beam(driver: neo4j.Driver, database: str, plan: TemplatePlan,
                           settings: ReplicationSettings) -> Tuple[RowMakers, RowMakers, int]:
    """The pipeline's reads (same queries, same chunks) and replicator DoFns, no Beam.

    Returns (node row makers by kind, relationship row makers by kind, dead letters).
    """
    node_fn, relationship_fn = _ReplicateNodesFn(settings), _ReplicateRelationshipsFn(settings)
    node_fn.setup()
    relationship_fn.setup()
    nodes: RowMakers = {}
    relationships: RowMakers = {}
    dead_letters = 0

    def collect(outputs: Iterable[Any]) -> None:
        nonlocal dead_letters
        for output in outputs:
            if hasattr(output, "tag"):  # beam.pvalue.TaggedOutput: a dead letter
                dead_letters += 1
                continue
            kind, make_rows = final_rows(output, settings.operation_id)
            (nodes if is_node_kind(kind) else relationships).setdefault(kind, []).append(make_rows)

    with driver.session(database=database, default_access_mode=neo4j.READ_ACCESS) as session:
        for first_id, count in plan.chunks:
            params = {**plan.selection.parameters(), "first_id": first_id, "count": count}
            for template in session.execute_read(_fetch_all, _READ_CHUNK_TEMPLATES, params):
                collect(node_fn.process(template))
            for relationship in session.execute_read(_fetch_all, _READ_CHUNK_RELATIONSHIPS, params):
                collect(relationship_fn.process(relationship))
    return nodes, relationships, dead_letters


def batches_of(makers: List[Callable[[], List[Dict[str, Any]]]],
               batch_size: int) -> Iterator[List[Dict[str, Any]]]:
    """The rows of one kind, made lazily, in batches of exactly ``batch_size`` (the last
    one smaller): only one batch of full rows exists at a time."""
    buffer: List[Dict[str, Any]] = []
    for make_rows in makers:
        buffer.extend(make_rows())
        while len(buffer) >= batch_size:
            yield buffer[:batch_size]
            del buffer[:batch_size]
    if buffer:
        yield buffer


def _write_batch(tx: neo4j.ManagedTransaction, statement: str, rows: List[Dict[str, Any]]) -> None:
    tx.run(statement, rows=rows).consume()


def run_ceiling(server: BenchmarkServer, driver: neo4j.Driver, size: Size, tenant_id: str,
                operation_id: str, batch_size: int) -> Dict[str, Any]:
    """Generate the same rows as the pipeline under ``operation_id``; write them with
    the plainest loop; time only the transactions."""
    database = server.connection.database
    generate_started = time.perf_counter()
    plan = plan_templates(driver, database, TemplateSelection(tenant_id, None), size.factor, None,
                          scale_up.MAX_NEW_NODES)
    settings = ReplicationSettings(operation_id, operations.utc_now_iso(), plan.copy_rule, shards=5)
    nodes, relationships, dead_letters = replicate_outside_beam(driver, database, plan, settings)
    generate_s = time.perf_counter() - generate_started

    phase_seconds = {"nodes": 0.0, "relationships": 0.0}
    phase_batches = {"nodes": 0, "relationships": 0}
    phase_rows = {"nodes": 0, "relationships": 0}
    by_kind_figures: List[Dict[str, Any]] = []
    sampler = RssSampler()
    sampler.watch("neo4j", server.pid)
    sampler.start()
    cpu = CpuWindow(server.pid)
    loop_started = time.perf_counter()
    try:
        with driver.session(database=database) as session:
            for phase, by_kind in (("nodes", nodes), ("relationships", relationships)):
                for kind, makers in by_kind.items():
                    statement = write_statement(kind)
                    figures = {"kind": " ".join(str(part) for part in kind), "rows": 0,
                               "batches": 0, "seconds": 0.0}
                    for batch in batches_of(makers, batch_size):
                        began = time.perf_counter()
                        session.execute_write(_write_batch, statement, batch)
                        seconds = time.perf_counter() - began
                        figures["seconds"] += seconds
                        figures["batches"] += 1
                        figures["rows"] += len(batch)
                    phase_seconds[phase] += figures["seconds"]
                    phase_batches[phase] += figures["batches"]
                    phase_rows[phase] += figures["rows"]
                    figures["seconds"] = round(figures["seconds"], 3)
                    figures["rows_per_s"] = _rate(figures["rows"], figures["seconds"])
                    by_kind_figures.append(figures)
    finally:
        loop_wall_s = time.perf_counter() - loop_started
        peaks = sampler.stop()
        cpu_figures = cpu.stop()
    write_s = phase_seconds["nodes"] + phase_seconds["relationships"]
    return {
        "operation_id": operation_id,
        "expected": {"nodes": plan.new_node_count, "relationships": plan.new_relationship_count},
        "nodes": phase_rows["nodes"],
        "relationships": phase_rows["relationships"],
        "dead_letters": dead_letters,
        "batch_size": batch_size,
        "node_batches": phase_batches["nodes"],
        "relationship_batches": phase_batches["relationships"],
        "node_kinds": len(nodes),
        "relationship_kinds": len(relationships),
        "generate_s": round(generate_s, 3),
        "node_write_s": round(phase_seconds["nodes"], 3),
        "relationship_write_s": round(phase_seconds["relationships"], 3),
        "write_s": round(write_s, 3),
        "loop_wall_s": round(loop_wall_s, 3),
        "row_making_s": round(loop_wall_s - write_s, 3),
        "nodes_per_s": _rate(phase_rows["nodes"], write_s),
        "relationships_per_s": _rate(phase_rows["relationships"], write_s),
        "rows_per_s": _rate(phase_rows["nodes"] + phase_rows["relationships"], write_s),
        "node_phase_nodes_per_s": _rate(phase_rows["nodes"], phase_seconds["nodes"]),
        "relationship_phase_relationships_per_s": _rate(phase_rows["relationships"],
                                                        phase_seconds["relationships"]),
        "cpu_s": cpu_figures["self_cpu_s"],
        "neo4j_cpu_s": cpu_figures["neo4j_cpu_s"],
        "others_cpu_share": cpu_figures["others_share"],
        "cpu": cpu_figures,
        "by_kind": by_kind_figures,
        "neo4j_rss_peak_mb": peaks.get("neo4j"),
    }


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def bench_driver(benchmark_neo4j: BenchmarkServer):
    driver = benchmark_neo4j.connection.open_driver()
    try:
        driver.verify_connectivity()
        yield driver
    finally:
        driver.close()


@pytest.fixture(scope="module")
def results(benchmark_neo4j: BenchmarkServer, bench_driver: neo4j.Driver) -> Results:
    header = {
        "schema": SCHEMA_VERSION,
        "started_at": _utc_now(),
        "finished_at": None,
        "complete": False,
        "command": " ".join(sys.argv),
        "settings": {
            "sizes": [dataclasses.asdict(size) for size in SIZES],
            "seed": SEED,
            "mode": MODE,
            "sample_interval_s": SAMPLE_INTERVAL_S,
            "warmup": WARMUP_SIZE.id if WARMUP else None,
            "scale_up_flags": "defaults (runner FnApiRunner, adaptive batch size, "
                              "--max-concurrent-writes 5)",
        },
        "machine": machine_description(bench_driver, benchmark_neo4j),
        "notes": NOTES,
    }
    results = Results(output_path(), header)
    results.save()
    return results


# --------------------------------------------------------------------------- tests


def measure_size(size: Size, server: BenchmarkServer, driver: neo4j.Driver, work_dir: Path,
                 entry: Dict[str, Any], prefix: str = "bench") -> None:
    """One size, start to end, into ``entry`` (filled as it goes, so a failure keeps
    what was measured): clear, load, pipeline, checks, ceiling, clean-up."""
    database = server.connection.database
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    tenant_id = f"{prefix}-{size.templates}-{stamp}"
    operation_id = f"{prefix}-{size.id}-{stamp}"
    ceiling_operation_id = f"ceiling-{size.id}-{stamp}"
    entry.update({"label": size.label, "templates": size.templates, "scale_factor": size.factor,
                  "final_size": size.final, "tenant_id": tenant_id, "seed": SEED,
                  "loadavg_before": [round(x, 2) for x in os.getloadavg()]})
    clear_started = time.perf_counter()
    clear_database(driver, database)
    entry["clear_s"] = round(time.perf_counter() - clear_started, 3)
    entry["neo4j_rss_mb"] = {"before_load": _rss_mb(server.pid)}

    load = load_demo_tenant(server.connection, DemoTenantSpec(tenant_id, resources=size.templates,
                                                              seed=SEED))
    entry["load"] = {key: load[key] for key in (
        "seconds", "pipeline_seconds", "nodes_written", "relationships_written", "batch_size",
        "pipelines", "write_retries", "dead_letters")}
    assert load["dead_letters"] == 0, load
    entry["neo4j_rss_mb"]["before_pipeline"] = _rss_mb(server.pid)

    report, measured = run_pipeline(server, size, tenant_id, operation_id, work_dir)
    entry["operation_id"] = operation_id
    entry["pipeline"] = pipeline_figures(report, measured)
    entry["report"] = report
    entry["neo4j_rss_mb"]["peak_pipeline"] = measured["neo4j_rss_peak_mb"]

    # What must hold: the report is right about what is in the database.
    count_started = time.perf_counter()
    in_database = operation_counts(driver, database, operation_id)
    entry["database_counts"] = {**in_database,
                                "seconds": round(time.perf_counter() - count_started, 3)}
    assert report["status"] == "succeeded", report["errors"]
    assert report["dead_letters"] == 0
    assert in_database == report["written"] == report["expected"], (in_database, report["written"])
    assert in_database["nodes"] == sum(report["in_database"]["nodes"].values())
    assert in_database["relationships"] == sum(report["in_database"]["relationships"].values())

    # The ceiling writes into the state the pipeline wrote into: the tenant only.
    entry["cleanup"] = {"pipeline_delete_s": delete_operation(driver, database, operation_id)}
    ceiling = run_ceiling(server, driver, size, tenant_id, ceiling_operation_id,
                          report["batches"]["batch_size"])
    entry["ceiling"] = ceiling
    entry["neo4j_rss_mb"]["peak_ceiling"] = ceiling.pop("neo4j_rss_peak_mb")
    ceiling_counts = operation_counts(driver, database, ceiling_operation_id)
    entry["ceiling_database_counts"] = ceiling_counts
    pipeline = entry["pipeline"]
    entry["ratio"] = {  # pipeline / ceiling, same basis (count / whole write time)
        "nodes_per_s": _ratio(pipeline["nodes_per_s"], ceiling["nodes_per_s"]),
        "relationships_per_s": _ratio(pipeline["relationships_per_s"],
                                      ceiling["relationships_per_s"]),
        "rows_per_s": _ratio(pipeline["rows_per_s"], ceiling["rows_per_s"]),
        "wall_rows_per_s": _ratio(_rate(pipeline["nodes"] + pipeline["relationships"],
                                        pipeline["wall_s"]), ceiling["rows_per_s"]),
    }
    entry["cleanup"]["ceiling_delete_s"] = delete_operation(driver, database, ceiling_operation_id)
    entry["neo4j_rss_mb"]["after"] = _rss_mb(server.pid)
    entry["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    assert ceiling["dead_letters"] == 0
    assert ceiling["expected"] == report["expected"]
    assert ceiling_counts == report["expected"], (ceiling_counts, report["expected"])
    assert operation_counts(driver, database, ceiling_operation_id) == {"nodes": 0, "relationships": 0}


@pytest.fixture(scope="module")
def warmed_up(benchmark_neo4j: BenchmarkServer, bench_driver: neo4j.Driver, results: Results,
              tmp_path_factory: pytest.TempPathFactory) -> None:
    """One unrecorded small size first (unless BENCHMARK_WARMUP=0): the server's JIT and
    query plans are cold after its start, which would charge the first size's pipeline
    (and not its ceiling, which always runs second) for the warm-up."""
    if not WARMUP:
        results.data["warmup"] = None
        return
    entry: Dict[str, Any] = {}
    started = time.perf_counter()
    measure_size(WARMUP_SIZE, benchmark_neo4j, bench_driver, tmp_path_factory.mktemp("warmup"),
                 entry, prefix="warmup")
    results.data["warmup"] = {
        "label": entry["label"], "seconds": round(time.perf_counter() - started, 3),
        "pipeline_wall_s": entry["pipeline"]["wall_s"],
        "pipeline_neo4j_cpu_s": entry["pipeline"]["neo4j_cpu_s"],
        "ceiling_write_s": entry["ceiling"]["write_s"],
        "ceiling_neo4j_cpu_s": entry["ceiling"]["neo4j_cpu_s"],
    }
    results.save()


@pytest.mark.parametrize("size", SIZES, ids=[size.id for size in SIZES])
def test_scale_up_benchmark(size: Size, benchmark_neo4j: BenchmarkServer, bench_driver: neo4j.Driver,
                            results: Results, warmed_up: None, tmp_path: Path) -> None:
    entry: Dict[str, Any] = {}
    try:
        measure_size(size, benchmark_neo4j, bench_driver, tmp_path, entry)
    except BaseException as error:
        entry["error"] = f"{type(error).__name__}: {error}"[:2000]
        entry.setdefault("loadavg_after", [round(x, 2) for x in os.getloadavg()])
        raise
    finally:
        results.add(entry)


def test_results_were_written(results: Results) -> None:
    """Runs last: the JSON holds every size that ran, and the plot exists."""
    results.save(complete=True)
    data = json.loads(results.path.read_text(encoding="utf-8"))
    assert data["complete"] is True
    assert data["results"], "no size ran"
    assert all("error" not in entry for entry in data["results"]), [
        (entry["label"], entry["error"]) for entry in data["results"] if "error" in entry]
    assert results.png_path.stat().st_size > 0
    print(f"\nbenchmark results: {results.path}\nplot: {results.png_path}")
