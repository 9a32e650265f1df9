#!/usr/bin/env python3
"""Print a benchmark JSON (from ``pytest tests/performance -m benchmark``) as a Markdown table.

    .venv/bin/python scripts/benchmark_table.py [benchmark-results/benchmark-<UTC>.json]

Without an argument it reads the newest ``benchmark-results/benchmark-*.json``. The
table (for the README) has one row per size; the machine it ran on and what each
column means follow it. Only the standard library is used.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmark-results"

COLUMNS = ("size", "wall time", "nodes/s", "rels/s", "ceiling nodes/s", "ceiling rels/s",
           "pipeline/ceiling", "peak RSS", "Neo4j RSS", "batch size × count", "write share")


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _number(value: Optional[float], digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _seconds(value: Optional[float]) -> str:
    if value is None:
        return "–"
    if value >= 120:
        return f"{int(value // 60)} min {value % 60:02.0f} s"
    return f"{value:.1f} s"


def _megabytes(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:,.0f} MB"


def _ratio(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _percent(value: Optional[float]) -> str:
    return "–" if value is None else f"{100 * value:.0f} %"


def row_of(entry: Dict[str, Any]) -> List[str]:
    if "error" in entry and "pipeline" not in entry:
        return [entry.get("label", "?"), f"failed: {entry['error'][:80]}"] + [""] * (len(COLUMNS) - 2)
    pipeline, ceiling = entry.get("pipeline", {}), entry.get("ceiling", {})
    batch_size, batch_count = pipeline.get("batch_size"), pipeline.get("batch_count")
    label = entry.get("label", "?") + (" ⚠" if "error" in entry else "")
    return [
        label,
        _seconds(pipeline.get("wall_s")),
        _number(pipeline.get("nodes_per_s")),
        _number(pipeline.get("relationships_per_s")),
        _number(ceiling.get("nodes_per_s")),
        _number(ceiling.get("relationships_per_s")),
        _ratio(_get(entry, "ratio", "rows_per_s")),
        _megabytes(pipeline.get("peak_rss_mb")),
        _megabytes(_get(entry, "neo4j_rss_mb", "peak_pipeline")),
        f"{_number(batch_size)} × {_number(batch_count)}" if batch_size else "–",
        _percent(pipeline.get("write_share_of_wall")),
    ]


def table(data: Dict[str, Any]) -> str:
    entries = sorted(data.get("results", []), key=lambda e: e.get("final_size", 0))
    lines = ["| " + " | ".join(COLUMNS) + " |",
             "| " + " | ".join(["---"] + ["---:"] * (len(COLUMNS) - 1)) + " |"]
    lines += ["| " + " | ".join(row_of(entry)) + " |" for entry in entries]
    return "\n".join(lines)


def machine_text(data: Dict[str, Any]) -> str:
    machine = data.get("machine", {})
    versions = machine.get("versions", {})
    neo4j = machine.get("neo4j", {})
    settings = data.get("settings", {})
    cores = f"{machine.get('logical_cores')} logical cores"
    if machine.get("physical_cores"):
        cores += f" ({machine['physical_cores']} physical)"
    if machine.get("cgroup_cpu_max") and not str(machine["cgroup_cpu_max"]).startswith("max"):
        cores += f", cgroup cpu.max {machine['cgroup_cpu_max']}"
    server = versions.get("neo4j_server") or "Neo4j"
    if neo4j.get("source") == "local":
        server += f", local, heap {neo4j.get('heap')}, page cache {neo4j.get('pagecache')}"
    else:
        server += f" ({neo4j.get('source')})"
    load = machine.get("loadavg_at_start")
    runners = sorted({_get(e, "pipeline", "runner") for e in data.get("results", [])} - {None})
    parts = [
        f"- Machine: {machine.get('cpu_model')}, {cores}, {machine.get('ram_gib')} GiB RAM; "
        f"{machine.get('os')}.",
        f"- Software: Python {machine.get('python')}, {machine.get('java')}, {server}; "
        f"Apache Beam {versions.get('apache-beam')} ({', '.join(runners) or 'runner unknown'}), "
        f"neo4j driver {versions.get('neo4j (driver)')} + neo4j-rust-ext "
        f"{versions.get('neo4j-rust-ext')}.",
        f"- Run: {data.get('started_at')} to {data.get('finished_at')}"
        f"{'' if data.get('complete') else ' (incomplete)'}, commit {machine.get('git_commit')}, "
        f"pipeline run {'in a fresh subprocess per size' if settings.get('mode') == 'subprocess' else 'in the test process'}, "
        f"{'after an unrecorded ' + str(settings['warmup']) + ' warm-up, ' if settings.get('warmup') else ''}"
        f"demo tenant seed {settings.get('seed')}; load average at start "
        f"{', '.join(str(x) for x in load) if load else 'unknown'} "
        f"(on {machine.get('logical_cores')} cores).",
    ]
    shares = [(e.get("label"), _get(e, "pipeline", "others_cpu_share"), _get(e, "ceiling", "others_cpu_share"))
              for e in sorted(data.get("results", []), key=lambda e: e.get("final_size", 0))]
    shares = [(label, a, b) for label, a, b in shares if a is not None or b is not None]
    if shares:
        noisy = any((a or 0) > 0.05 or (b or 0) > 0.05 for _, a, b in shares)
        parts.append(
            ("- **Noisy machine**: " if noisy else "- ")
            + "CPU taken by other processes (share of all cores) during the pipeline / the "
            "ceiling: " + "; ".join(f"{label} {_percent(a)} / {_percent(b)}" for label, a, b in shares)
            + ".")
    return "\n".join(parts)


LEGEND = """\
Columns: *wall time* is the report's `duration_s` (connect, plan and index checks,
the Beam pipeline, the read-back count); *nodes/s* and *rels/s* are the report's
throughput, each count divided by the whole Beam pipeline's time (`pipeline_s`).
*Ceiling* is the same rows written by a bare-driver loop (one thread, same driver,
statements, batch size and server, no Beam), rates on the same basis (count / all of
its transaction time); *pipeline/ceiling* is the ratio of those rates. *Peak RSS* is
the pipeline process's peak (`ru_maxrss`), *Neo4j RSS* the server's peak sampled
during the pipeline. *Batch size × count*: rows per transaction asked for × write
transactions made. *Write share*: Neo4j transaction time summed over concurrent
transactions, divided by the wall time (above 100 % means transactions overlapped)."""


def newest_result() -> Path:
    candidates = sorted(RESULTS_DIR.glob("benchmark-*.json"))
    if not candidates:
        raise SystemExit(f"no benchmark-*.json in {RESULTS_DIR}; run "
                         "`pytest tests/performance -m benchmark` first or name a file")
    return candidates[-1]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", nargs="?", type=Path,
                        help="benchmark JSON (default: the newest in benchmark-results/)")
    parser.add_argument("--no-legend", action="store_true", help="omit the column legend")
    args = parser.parse_args(argv)
    path = args.path or newest_result()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        print(f"error: cannot read {path}: {error}", file=sys.stderr)
        return 2
    print(table(data))
    print()
    print(machine_text(data))
    if not args.no_legend:
        print()
        print(LEGEND)
    return 0


if __name__ == "__main__":
    sys.exit(main())
