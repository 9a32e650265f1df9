#!/usr/bin/env python3
"""Print a benchmark JSON (from ``pytest tests/performance -m benchmark``) as a Markdown table.

    .venv/bin/python scripts/benchmark_table.py [benchmark-results/benchmark-<UTC>.json]

Without an argument it reads the newest ``benchmark-results/benchmark-*.json``. The
table (for the README) has one row per size, the goals of issue 12 checked in its last
column; the machine it ran on and what each column means follow it. Only the standard
library is used.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmark-results"

COLUMNS = ("size", "wall (process)", "nodes/s", "rels/s", "best plain wall", "pipeline/best plain",
           "pipeline/plain-1", "CPU s pipeline", "CPU s Neo4j", "peak RSS pipeline",
           "peak RSS Neo4j", "goal met?")

#: Issue 12's goals, by (templates, scale factor).
SIZE_40K, SIZE_1M = (5_000, 8.0), (40_000, 25.0)
WALL_GOAL_S = {SIZE_40K: 8.0, SIZE_1M: 180.0}
RATIO_GOAL = {SIZE_40K: 1.0}
PEAK_RSS_GOAL_MB = {SIZE_1M: 1_536.0}  # 1.5 GB


def _number(value: Optional[float], digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


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


def _key(entry: Dict[str, Any]) -> tuple:
    return entry.get("templates"), entry.get("scale_factor")


def goals(entry: Dict[str, Any], entries: List[Dict[str, Any]]) -> str:
    """"yes", "no: <what is missed>", or "–" for a size without goals."""
    key, pipeline = _key(entry), entry.get("pipeline", {})
    if key not in WALL_GOAL_S:
        return "–"
    missed = []
    process_wall = pipeline.get("process_wall_s")
    if process_wall is None or process_wall > WALL_GOAL_S[key]:
        missed.append(f"process {_seconds(process_wall)} > {_seconds(WALL_GOAL_S[key])}")
    if key in RATIO_GOAL:
        ratio = entry.get("ratio", {}).get("best_plain")
        if ratio is None or ratio < RATIO_GOAL[key]:
            missed.append(f"{_ratio(ratio)} of best plain < {_ratio(RATIO_GOAL[key])}")
    if key in PEAK_RSS_GOAL_MB:
        peak = pipeline.get("peak_rss_mb")
        if peak is None or peak > PEAK_RSS_GOAL_MB[key]:
            missed.append(f"peak RSS {_megabytes(peak)} > 1.5 GB")
        at_40k = next((e.get("pipeline", {}).get("rows_per_s") for e in entries
                       if _key(e) == SIZE_40K), None)
        if at_40k is None:
            missed.append("no 5k→40k run to compare throughput with")
        elif (pipeline.get("rows_per_s") or 0) < at_40k:
            missed.append(f"{_number(pipeline.get('rows_per_s'))} rows/s < {_number(at_40k)} at 40k")
    return "no: " + "; ".join(missed) if missed else "yes"


def row_of(entry: Dict[str, Any], entries: List[Dict[str, Any]]) -> List[str]:
    label = entry.get("label", "?") + (" ⚠" if "error" in entry else "")
    if "pipeline" not in entry:
        return [label, f"failed: {entry.get('error', '?')[:80]}"] + [""] * (len(COLUMNS) - 2)
    pipeline, ratio = entry["pipeline"], entry.get("ratio", {})
    best = next((w for w in entry.get("plain", []) if w["name"] == entry.get("best_plain")), None)
    return [
        label,
        f"{_seconds(pipeline.get('wall_s'))} ({_seconds(pipeline.get('process_wall_s'))})",
        _number(pipeline.get("nodes_per_s")),
        _number(pipeline.get("relationships_per_s")),
        f"{_seconds(best['wall_s'])} ({best['name']})" if best else "–",
        _ratio(ratio.get("best_plain")),
        _ratio(ratio.get("plain_1")),
        _number(pipeline.get("cpu_s"), 1),
        _number(pipeline.get("neo4j_cpu_s"), 1),
        _megabytes(pipeline.get("peak_rss_mb")),
        _megabytes(pipeline.get("neo4j_rss_peak_mb")),
        goals(entry, entries),
    ]


def table(data: Dict[str, Any]) -> str:
    entries = sorted(data.get("results", []), key=lambda e: e.get("final_size", 0))
    lines = ["| " + " | ".join(COLUMNS) + " |",
             "| " + " | ".join(["---"] + ["---:"] * (len(COLUMNS) - 2) + ["---"]) + " |"]
    lines += ["| " + " | ".join(row_of(entry, entries)) + " |" for entry in entries]
    return "\n".join(lines)


def details_text(data: Dict[str, Any]) -> str:
    """Per size: every plain writer (wall, rows/s, CPU of the client and of Neo4j), and
    the server CPU of the pipeline's reads, measured apart."""
    lines = []
    for entry in sorted(data.get("results", []), key=lambda e: e.get("final_size", 0)):
        writers = "; ".join(
            f"{w['name']} {_seconds(w['wall_s'])}, {_number(w['rows_per_s'])} rows/s, CPU "
            f"{_number(w['cpu_s'], 1)} s client / {_number(w['neo4j_cpu_s'], 1)} s Neo4j"
            for w in entry.get("plain", []))
        if not writers:
            continue
        reads, read_back = entry.get("plain_rows", {}), entry.get("read_back", {})
        lines.append(
            f"- {entry.get('label')}: {writers}. Neo4j CPU of the pipeline's reads, measured "
            f"apart: plan and parts {_number(reads.get('neo4j_cpu_s'), 1)} s, read-back of the "
            f"counts {_number(read_back.get('neo4j_cpu_s'), 1)} s.")
    return "\n".join(lines)


def machine_text(data: Dict[str, Any]) -> str:
    machine, settings = data.get("machine", {}), data.get("settings", {})
    packages = machine.get("packages", {})
    load = machine.get("loadavg_at_start")
    shares = [f"{e.get('label')} {100 * e['pipeline']['others_cpu_share']:.0f} %"
              for e in sorted(data.get("results", []), key=lambda e: e.get("final_size", 0))
              if e.get("pipeline", {}).get("others_cpu_share") is not None]
    return "\n".join([
        f"- Machine: {machine.get('cpu_model')}, {machine.get('logical_cores')} logical cores, "
        f"{machine.get('ram_gib')} GiB RAM; {machine.get('os')}.",
        f"- Software: Python {machine.get('python')}, {machine.get('java')}, "
        f"{machine.get('neo4j_server')} (local, heap {machine.get('neo4j_heap')}, page cache "
        f"{machine.get('neo4j_pagecache')}), Apache Beam {packages.get('apache-beam')} "
        f"(FnApiRunner), neo4j driver {packages.get('neo4j')} + neo4j-rust-ext "
        f"{packages.get('neo4j-rust-ext')}.",
        f"- Run: {data.get('started_at')} to {data.get('finished_at')}"
        f"{'' if data.get('complete') else ' (incomplete)'}, commit {machine.get('git_commit')}, "
        f"{'after an unrecorded ' + settings['warmup'] + ' warm-up, ' if settings.get('warmup') else ''}"
        f"demo tenant seed {settings.get('seed')}; load average at start "
        f"{', '.join(map(str, load)) if load else 'unknown'}.",
        "- CPU taken by other processes during the pipeline (share of all cores): "
        + ("; ".join(shares) or "unknown") + ".",
    ])


LEGEND = """\
Columns: *wall* is the scale-up report's `duration_s` (connect, plan, index checks,
the Beam pipeline, the read-back of the counts), in parentheses the whole
`python -m pipelines.scale_up` process from start to exit; *nodes/s* and *rels/s* are
the counts over `duration_s`. *Best plain wall*: the fastest plain writer (the same
rows written by the bare driver, no Beam, no ledger, batches of 5,000: `plain-1` one
thread, `plain-N` N threads), its writes only. *Pipeline/best plain* and
*pipeline/plain-1*: that writer's wall over the pipeline's `duration_s` (above 1×
the pipeline is faster). *CPU s*: user + system seconds during the scale-up, of its
process (with children) and of the Neo4j server. *Peak RSS*: the pipeline process's
peak, and the server's sampled every 0.1 s. *Goal met?*: issue 12's goals: 5k→40k
whole process ≤ 8 s and ≥ 1.0× the best plain writer; 40k→1M whole process ≤ 180 s,
peak RSS ≤ 1.5 GB, rows/s (over `duration_s`) not below those at 40k."""


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
    if data.get("schema") != 2:
        print(f"error: {path} is a benchmark JSON of schema {data.get('schema')!r}; this script "
              "reads schema 2 (tests/performance/test_benchmarks.py)", file=sys.stderr)
        return 2
    print(table(data))
    print()
    print(details_text(data))
    print()
    print(machine_text(data))
    if not args.no_legend:
        print()
        print(LEGEND)
    return 0


if __name__ == "__main__":
    sys.exit(main())
