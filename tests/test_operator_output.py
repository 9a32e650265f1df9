"""What a person and a scheduler see, against a real Neo4j: stderr holds only this
project's lines unless ``-v`` asks for more, ``--log-file`` keeps everything, stdout
ends with a summary table, or with ``--json`` is one JSON line; the same for
``run_local``, the demo loader and the operation commands. A terminal gets a live bar.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import time

import pytest

from pipelines import cli
from pipelines.demo import load as loader
from pipelines.operation import record, stats, validate
from pipelines.report import render_summary
from tests.support import CliRun, expected_at_integer_factor, run_main

TENANT = "output-tenant"
RESOURCES = 60
FACTOR = 3
OPERATION = "output-default"
#: Every line a default run may write to stderr: time, then one of our messages.
OUR_LINES = re.compile(r"\d\d:\d\d:\d\d (operation \S+: \d+ templates in \d+ components → .*|"
                       r"progress: .*|"
                       r"\d+ transient errors \(deadlocks\) retried)")


@pytest.fixture(scope="module")
def tenant(neo4j_driver, clear_neo4j, tmp_path_factory):
    """The tenant, loaded by the demo loader's command as a user runs it (what it
    printed is kept for a test), and what a scale-up of it writes."""
    clear_neo4j()
    summary = tmp_path_factory.mktemp("loader") / "summary.json"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = loader.main(["--tenant-id", TENANT, "--resources", str(RESOURCES), "--seed", "3",
                            "--report", str(summary)])
    assert code == 0, err.getvalue()
    return {"expected": expected_at_integer_factor(neo4j_driver, TENANT, FACTOR),
            "loader": {"out": out.getvalue(), "err": err.getvalue(),
                       "summary": json.loads(summary.read_text())}}


@pytest.fixture(scope="module")
def default_run(tenant, tmp_path_factory):
    """One scale-up as a user runs it (plus ``--report``, to compare)."""
    folder = tmp_path_factory.mktemp("default-run")
    run = CliRun(folder, ["--tenant-id", TENANT, "--scale-factor", str(FACTOR), "--operation-id",
                          OPERATION, "--progress-interval", "0.5",
                          "--report", str(folder / "report.json")])
    assert run.wait() == 0, run.stderr_tail()
    return {"run": run, "report": json.loads((folder / "report.json").read_text())}


def password(neo4j_connection) -> str:
    assert neo4j_connection.password, "these tests need a server with a password"
    return neo4j_connection.password


def test_a_default_run_writes_only_our_lines_to_stderr(default_run):
    run, report = default_run["run"], default_run["report"]
    lines = run.stderr.splitlines()
    print(f"default run: {len(lines)} stderr lines in {run.elapsed:.1f} s:\n" + run.stderr)
    assert [line for line in lines if not OUR_LINES.fullmatch(line)] == []
    assert sum(" components → " in line for line in lines) == 1
    progress = [line for line in lines if " progress: " in line]
    assert 1 <= len(progress) <= run.elapsed / 0.5 + 1
    assert all(re.search(r"of [\d,]+ nodes, .* \(\d+%\), phase (copies|links|done), "
                         r"[\d,]+ /s, ETA ", line) for line in progress), progress
    retried = [line[len("00:00:00 "):] for line in lines if "transient errors" in line]
    assert retried == ([f"{report['retries']} transient errors (deadlocks) retried"]
                       if report["retries"] else [])


def test_a_default_run_ends_with_a_summary_table(default_run, tenant):
    out, report = default_run["run"].stdout, default_run["report"]
    nodes, relationships = tenant["expected"]["nodes"], tenant["expected"]["relationships"]
    assert report["status"] == "succeeded" and report["written"] == tenant["expected"]
    lines = out.splitlines()
    assert lines[0] == f"operation     {OPERATION} (tenant {TENANT}, scale factor {FACTOR})"
    assert lines[1] == "status        succeeded"
    assert re.search(rf"^nodes +{nodes:,} +{nodes:,} +{nodes:,} +[\d,.]+$", out, re.MULTILINE)
    assert re.search(rf"^relationships +{relationships:,} +{relationships:,} +{relationships:,} "
                     r"+[\d,.]+$", out, re.MULTILINE)
    for row in ("wall time", "peak memory", "retries", "dead letters  0"):
        assert any(line.startswith(row) for line in lines), row
    assert lines[-2] == f"next          check it: python -m pipelines.validate --operation-id {OPERATION}"
    assert lines[-1].endswith(f"undo it:  python -m pipelines.rollback --operation-id {OPERATION}")
    assert not any(line.startswith("{") for line in lines)


def test_verbose_shows_the_libraries_json_is_one_line_and_the_log_file_keeps_all(
        tenant, neo4j_connection, tmp_path):
    log_file = tmp_path / "run.log"
    run = CliRun(tmp_path, ["--tenant-id", TENANT, "--scale-factor", str(FACTOR), "--operation-id",
                            "output-verbose", "-v", "--json", "--log-file", str(log_file),
                            "--report", str(tmp_path / "report.json")])
    assert run.wait() == 0, run.stderr_tail()
    [line] = run.stdout.splitlines()
    assert json.loads(line) == json.loads((tmp_path / "report.json").read_text())
    assert json.loads(line)["status"] == "succeeded"
    assert " INFO apache_beam." in run.stderr and " INFO scale_up: operation output-verbose" in run.stderr
    logged = log_file.read_text()
    for wanted in (" DEBUG neo4j", " DEBUG apache_beam", " INFO scale_up: operation output-verbose"):
        assert wanted in logged, wanted
    assert password(neo4j_connection) not in logged + run.stderr + run.stdout


def test_the_operation_commands_are_quiet_and_print_one_json_line(default_run, tmp_path, capsys):
    commands = [(record.main, []), (record.main, ["show", OPERATION]), (stats.main, []),
                (validate.main, ["--operation-id", OPERATION])]
    for main, args in commands:
        code, out, err = run_main(main, args, capsys)
        assert code == 0 and err == "", (args, err)
        assert OPERATION in out and not out.startswith("{")
        code, out, err = run_main(main, [*args, "--json"], capsys)
        assert code == 0 and err == "", (args, err)
        [line] = out.splitlines()
        assert isinstance(json.loads(line), dict)
    log_file = tmp_path / "stats.log"
    code, out, err = run_main(stats.main, ["--json", "-v", "--log-file", str(log_file)], capsys)
    assert code == 0 and len(out.splitlines()) == 1
    assert " DEBUG neo4j" in log_file.read_text()


def test_the_demo_loader_prints_a_summary_table_and_writes_json(tenant):
    out, err, summary = (tenant["loader"][key] for key in ("out", "err", "summary"))
    assert summary["tenant_id"] == TENANT and summary["dead_letters"] == 0
    assert out == loader.render_summary(summary) + "\n"
    assert f"{summary['nodes_written']:,} nodes" in out and "dead letters  0" in out
    ours = re.compile(r"\d\d:\d\d:\d\d (loading demo tenant output-tenant: .*|created .*|"
                      r"\d+ transient errors \(deadlocks\) retried)")
    assert [line for line in err.splitlines() if not ours.fullmatch(line)] == []


def test_run_local_shows_nothing_but_our_lines_and_the_summary(tenant, tmp_path):
    run = CliRun(tmp_path, ["--resources", str(RESOURCES), "--tenant-id", TENANT,
                            "--scale-factor", "2", "--home", str(tmp_path / "home")],
                 module="pipelines.run_local")
    assert run.wait() == 0, run.stderr_tail()
    print(f"run_local: {run.elapsed:.1f} s\n--- stderr\n{run.stderr}--- stdout\n{run.stdout}")
    ours = re.compile(r"\d\d:\d\d:\d\d (using the Neo4j at \S+ \(\$NEO4J_URI\)|"
                      rf"demo tenant '{TENANT}' is already loaded|"
                      rf"operation \S+: {RESOURCES} templates in \d+ components → .*|progress: .*|"
                      r"\d+ transient errors \(deadlocks\) retried)")
    assert [line for line in run.stderr.splitlines() if not ours.fullmatch(line)] == []
    lines = run.stdout.splitlines()
    assert lines[0].startswith("operation     scale-") and lines[1] == "status        succeeded"
    assert lines[-1].startswith("              undo it:  python -m pipelines.rollback")


# --------------------------------------------------------------------------- no server


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_live_bar_that_leaves_its_last_state_as_a_line(monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    monkeypatch.setenv("COLUMNS", "200")  # the bar is cut to the terminal's width
    cli.configure_logging()
    done = {"nodes": 0}

    def measure():
        done["nodes"] = min(done["nodes"] + 10, 40)
        return [("nodes", done["nodes"], 40), ("relationships", 0, 60)]

    progress = cli.ProgressReporter("progress", measure, interval=0.05, phases=("copies", "links"))
    progress.start()
    time.sleep(0.3)
    logging.getLogger("scale_up").info("a line while the bar runs")
    time.sleep(0.1)
    progress.stop()
    text = terminal.getvalue()
    assert "\r\x1b[Kprogress [" in text and "nodes 40/40  relationships 0/60, phase links" in text
    assert re.search(r"\r\x1b\[K\d\d:\d\d:\d\d a line while the bar runs\nprogress \[", text)
    last = text.split("\r\x1b[K")[-1]
    assert re.fullmatch(r"\d\d:\d\d:\d\d progress: 40 of 40 nodes, 0 of 60 relationships \(40%\), "
                        r"phase links, .*\n", last), last


def test_the_summary_shows_errors_dead_letters_and_what_to_do_whatever_else_the_report_has():
    report = {"operation_id": "op-1", "tenant_id": "t", "status": "failed", "runner": "FnApiRunner",
              "parameters": {"scale_factor": 2.5}, "expected": {"nodes": 10, "relationships": 4},
              "written": {"nodes": 9, "relationships": 4}, "duration_s": 75.2, "pipeline_s": 70.0,
              "in_database": {"nodes": {"vm": 9}, "relationships": {"USES": 4}},
              "throughput": {"nodes_per_s": 0.1, "relationships_per_s": 0.1},
              "memory": {"peak_mb": 512.4}, "retries": 12,
              "dead_letters": {"templates": 1, "rows": 2},
              "errors": ["wrote 9 nodes, expected 10", "1 template had no id"],
              "components_copied": 3, "some_future_key": {"x": 1}}
    text = render_summary(report, resume_command="python -m pipelines.scale_up --operation-id op-1")
    lines = text.splitlines()
    assert lines[:2] == ["operation     op-1 (tenant t, scale factor 2.5)", "status        failed"]
    assert "wall time     1 min 15 s (pipeline 1 min 10 s, runner FnApiRunner)" in lines
    assert "peak memory   512 MB" in lines
    assert "retries       12 transient errors (deadlocks) retried" in lines
    assert "dead letters  templates 1, rows 2" in lines
    assert "errors        wrote 9 nodes, expected 10" in lines
    assert "              1 template had no id" in lines
    assert lines[-2:] == ["next          resume it: python -m pipelines.scale_up --operation-id op-1",
                          "              undo it:   python -m pipelines.rollback --operation-id op-1"]
