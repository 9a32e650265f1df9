"""How this project's pipelines run on Beam: default runner, metrics read back, dead letters."""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    DirectOptions,
    FlinkRunnerOptions,
    PipelineOptions,
    PortableOptions,
    StandardOptions,
    _BeamArgumentParser,
)
from apache_beam.runners.runner import PipelineRunner, create_runner

from pipelines.cli import UsageError, closest, flags_of, one_line, unknown_argument
from transforms.model import METRICS_NAMESPACE, DeadLetter

_LOG = logging.getLogger("dead_letters")

#: The DirectRunner sends GroupIntoBatches pipelines to its legacy runner, which drops
#: user metrics of all but the first bundle and needs 16x the memory; FnApiRunner runs
#: them correctly, in-process, with no download (README, "How it runs").
DEFAULT_RUNNER = "FnApiRunner"
#: Beam 2.62 knows FnApiRunner only by its module path; ``--runner FnApiRunner`` is
#: accepted as the short name it has in later Beam versions.
LOCAL_RUNNER = "apache_beam.runners.portability.fn_api_runner.FnApiRunner"
_RUNNER_PATHS = {DEFAULT_RUNNER: LOCAL_RUNNER}


def pipeline_options(beam_args: Sequence[str]) -> PipelineOptions:
    """Beam's options from its flags, on ``DEFAULT_RUNNER`` unless ``--runner`` says otherwise."""
    options = PipelineOptions(list(beam_args))
    standard = options.view_as(StandardOptions)
    runner = standard.runner or DEFAULT_RUNNER
    standard.runner = _RUNNER_PATHS.get(runner, runner)
    return options


class _BeamFlags(_BeamArgumentParser):
    """Beam's own parser of pipeline flags (it knows ``ValueProvider`` flags), with
    every flag spelt out and a bad value reported as ``UsageError``."""

    def __init__(self) -> None:
        super().__init__(allow_abbrev=False, add_help=False)
        # As Beam reads its flags: every direct subclass of PipelineOptions adds its own.
        # Only Beam's: a subclass of this project's (the scale-up's) has its own parser.
        for options_class in PipelineOptions.__subclasses__():
            if options_class.__module__.startswith("apache_beam."):
                options_class._add_argparse_args(self)

    def error(self, message: str):
        raise UsageError(message)


def check_beam_arguments(beam_args: Sequence[str], own_flags: Sequence[str]) -> None:
    """``UsageError`` unless every one of ``beam_args`` (what a command's own parser left)
    is a Beam pipeline flag with a value Beam takes, and ``--runner`` names a runner.

    Beam itself drops a flag it does not know with one log line, so a misspelt flag of
    ours (``--rollback-on-falure``) would silently not apply; here it is an error that
    suggests the closest of ``own_flags`` and Beam's flags.
    """
    parser = _BeamFlags()
    known, unknown = parser.parse_known_args(list(beam_args))
    if unknown:
        raise unknown_argument(unknown, [*own_flags, *flags_of(parser)])
    if known.runner is not None:
        check_runner(known.runner)


def check_runner(name: str) -> None:
    """``UsageError`` unless Beam can make a runner of ``--runner name`` (a name Beam
    knows, our ``FnApiRunner``, or the module path of a ``PipelineRunner`` class):
    checked by making one, as the pipeline will."""
    try:
        runner = create_runner(_RUNNER_PATHS.get(name, name))
    except ValueError:
        names = sorted({*StandardOptions.KNOWN_RUNNER_NAMES, DEFAULT_RUNNER})
        close = closest(name, names, cutoff=0.8)  # all end in "Runner"
        raise UsageError(
            f"--runner {name}: Beam has no such runner"
            + (f"; did you mean {close}?" if close else "")
            + f" (runners: {', '.join(names)}, or the module path of a PipelineRunner class)"
        ) from None
    except Exception as error:  # noqa: BLE001 - an import of a user's path can raise anything
        raise UsageError(f"--runner {name}: cannot load it ({type(error).__name__}: "
                         f"{one_line(error, 300)})") from None
    if not isinstance(runner, PipelineRunner):
        raise UsageError(f"--runner {name}: {type(runner).__name__} is not a Beam PipelineRunner")


def runner_name(options: PipelineOptions) -> str:
    """The runner's short name (``FnApiRunner``, ``FlinkRunner``), for reports."""
    return options.view_as(StandardOptions).runner.rsplit(".", 1)[-1]


def parallel_writers(options: PipelineOptions) -> int:
    """How many instances of the write stage can run at once under ``options``.

    Flink runs one per task slot of the job (``--parallelism``, which
    ``pipelines.infra.flink.flink_options`` always sets); the local runner one per
    ``--direct_num_workers`` (0: one per core). Other runners are taken as one.
    ``--max-concurrent-writes`` is shared out over them so that it bounds the writes
    in flight in total.
    """
    runner = runner_name(options)
    if runner == "FlinkRunner":
        return max(1, options.view_as(FlinkRunnerOptions).parallelism)
    if runner in (DEFAULT_RUNNER, "DirectRunner"):
        workers = options.view_as(DirectOptions).direct_num_workers
        return workers if workers > 0 else (os.cpu_count() or 1)
    return 1


def workers_share_this_process(options: PipelineOptions) -> bool:
    """Whether the DoFns run inside the launching process (so its globals see them):
    the local runners, and any portable run with ``--environment_type=LOOPBACK``."""
    if runner_name(options) in (DEFAULT_RUNNER, "DirectRunner"):
        return True
    return (options.view_as(PortableOptions).environment_type or "").upper() == "LOOPBACK"


def metric_totals(result: beam.runners.runner.PipelineResult) -> Dict[str, Any]:
    """The project's metrics of a finished run: ``{"counters": {name: int},
    "distributions": {name: {count, sum, min, max, mean}}}``, summed over steps.

    Committed values where the runner reports them, attempted ones otherwise.
    """
    query = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(METRICS_NAMESPACE))
    counters: Dict[str, int] = {}
    for counter in query["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        counters[counter.key.metric.name] = counters.get(counter.key.metric.name, 0) + (value or 0)
    distributions: Dict[str, Dict[str, float]] = {}
    for distribution in query["distributions"]:
        value = distribution.committed or distribution.attempted
        if value is None or value.count == 0:
            continue
        merged = distributions.setdefault(distribution.key.metric.name,
                                          {"count": 0, "sum": 0, "min": value.min, "max": value.max})
        merged["count"] += value.count
        merged["sum"] += value.sum
        merged["min"] = min(merged["min"], value.min)
        merged["max"] = max(merged["max"], value.max)
    for merged in distributions.values():
        merged["mean"] = merged["sum"] / merged["count"]
    return {"counters": counters, "distributions": distributions}


#: Longest identity or reason a dead-letter log line shows (rows can be megabytes, and
#: Neo4j quotes a value it refuses in its message).
DEAD_LETTER_LOG_CHARS = 300


def log_dead_letter(dead_letter: DeadLetter) -> None:
    """Log one record that could not be written: what it was and why (counted by the
    ``dead_letters`` metric where it was refused), as one line of readable length; the
    record itself is never logged."""
    _LOG.error("not written: %s %s (%s)", *(one_line(part, DEAD_LETTER_LOG_CHARS) for part in
                                            (dead_letter.kind, dead_letter.identity,
                                             dead_letter.reason)))
