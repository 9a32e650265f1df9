"""Load a demo Azure tenant into Neo4j through the project's own sink.

    python -m pipelines.demo_tenant --tenant-id demo --resources 5000 [--seed 0]

generate (``transforms.demo.GenerateDemoTenant``) → batch
(``transforms.batch.BatchRowGroups``) → write (``transforms.write.WriteToNeo4j``), after creating the indexes every ``MERGE``
needs. Loading the same spec again converges to the same graph (every write is a
``MERGE`` on a deterministic id).

A large tenant is loaded as consecutive pipelines over slices of
``resources_per_pipeline`` resource indices: a single-process runner (``FnApiRunner``)
holds all rows in front of ``GroupIntoBatches`` in memory (measured peak: 1.4 GB for
40k resources in one run, tens of GB at 1M), and a slice bounds that (0.7 GB in runs of
10k, which were also faster). Slices are cut at block boundaries, so every
relationship's ends are written by its own slice or an earlier one.

Exit codes: 0 success, 2 bad input (the message says what to fix), 1 failure, 130/143
stopped by SIGINT/SIGTERM (load the same spec again: it converges). stdout holds a
summary table, or with ``--json`` only the summary as one JSON line (also written to
``--report``); progress and warnings go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import apache_beam as beam

from pipelines.cli import (
    CommandParser,
    add_connection_arguments,
    check_writable,
    configure_logging,
    connect,
    connection_from,
    duration_text,
    exit_code_of,
    format_pairs,
    parsed,
    print_result,
)
from pipelines.beam_job import (
    check_beam_arguments,
    log_dead_letter,
    metric_totals,
    pipeline_options,
    runner_name,
)
from transforms.batch import BatchRowGroups, adaptive_batch_size
from transforms.connection import Neo4jConnection
from transforms.demo import (
    BLOCK_SIZE,
    INDEX_SPECS,
    NODES,
    RELATIONSHIPS,
    ROWS_PER_GROUP,
    DemoTenantSpec,
    GenerateDemoTenant,
    approximate_counts,
    chunk_ranges,
)
from transforms.schema import SCALE_UP_INDEXES, ensure_schema
from transforms.write import (
    MAX_CONCURRENT_WRITES,
    RowBatches,
    WriteToNeo4j,
    check_max_concurrent_writes,
)

_LOG = logging.getLogger("demo_tenant")

#: Resources per pipeline run: bounds memory on FnApiRunner (see the module docstring).
DEFAULT_RESOURCES_PER_PIPELINE = 10_000
#: The demo tenant's id indexes first, then the scale-up's (which will run on it).
INDEXES = tuple(dict.fromkeys((*INDEX_SPECS, *SCALE_UP_INDEXES)))


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    """The loader's own flags; every other flag is Beam's (``--runner`` ...).

    Deliberately not a ``PipelineOptions`` subclass: Beam adds the flags of every
    subclass in the process to one parser whenever it reads options, so a required
    flag would stop every pipeline, and these flags (``--tenant-id``, ``--neo4j-uri``
    ...) would clash with the scale-up's in any process that imports both.
    """
    parser.add_argument("--tenant-id", dest="tenant_id", required=True,
                        help="tenant_id of the demo tenant: letters, digits, '.', '_', '-'")
    parser.add_argument("--resources", dest="resources", type=int, required=True,
                        help="number of abstracted resources (each also gets its Original)")
    parser.add_argument("--seed", dest="seed", type=int, default=0,
                        help="random seed; the same tenant id, size and seed always give "
                             "the same graph (default 0)")
    parser.add_argument("--subscriptions", dest="subscriptions", type=int, default=3,
                        help="number of subscriptions (default 3)")
    parser.add_argument("--max-concurrent-writes", dest="max_concurrent_writes", type=int,
                        default=5, help=f"write transactions in flight at once (1-{MAX_CONCURRENT_WRITES}, "
                             "default 5)")
    parser.add_argument("--resources-per-pipeline", dest="resources_per_pipeline", type=int,
                        default=DEFAULT_RESOURCES_PER_PIPELINE,
                        help="load in consecutive pipeline runs of this many resources, which "
                             f"bounds memory (default {DEFAULT_RESOURCES_PER_PIPELINE:,})")
    parser.add_argument("--json", dest="json", action="store_true",
                        help="print the summary as the only stdout line, as JSON, instead "
                             "of a table")
    parser.add_argument("--report", dest="report", default=None, metavar="FILE",
                        help="also write the JSON summary to FILE")
    add_connection_arguments(parser)


def _check_settings(max_concurrent_writes: int, resources_per_pipeline: int) -> None:
    check_max_concurrent_writes(max_concurrent_writes)
    if (isinstance(resources_per_pipeline, bool) or not isinstance(resources_per_pipeline, int)
            or resources_per_pipeline < 1):
        raise ValueError(f"resources_per_pipeline must be an integer of at least 1, got "
                         f"{resources_per_pipeline!r}")


def build_pipeline(pipeline: beam.Pipeline, connection: Neo4jConnection, spec: DemoTenantSpec,
                   batch_size: int, max_concurrent_writes: int,
                   resource_range: Optional[Tuple[int, int]] = None) -> None:
    """generate → batch → write nodes, then relationships; log what Neo4j refused.

    ``resource_range``: only the rows of those resource indices (default: all).
    """
    start, end = resource_range or (0, spec.resources)
    rows = pipeline | "GenerateDemoTenant" >> GenerateDemoTenant(
        spec, shards=max_concurrent_writes, start=start, end=end)
    node_batches, relationship_batches = (rows[NODES], rows[RELATIONSHIPS]) | "Batch" >> BatchRowGroups(
        batch_size, rows_per_group=ROWS_PER_GROUP)
    handler = RowBatches(max_rows_per_transaction=batch_size)
    nodes = node_batches | "WriteNodes" >> WriteToNeo4j(
        connection, handler, max_concurrent_writes=max_concurrent_writes)
    nodes_written = nodes.written | "NodesWritten" >> beam.combiners.Count.Globally()
    relationships = relationship_batches | "WriteRelationships" >> WriteToNeo4j(
        connection, handler, max_concurrent_writes=max_concurrent_writes,
        after=beam.pvalue.AsSingleton(nodes_written))
    (
        (nodes.dead_letter, relationships.dead_letter)
        | "DeadLetters" >> beam.Flatten()
        | "LogDeadLetters" >> beam.Map(log_dead_letter)
    )


def load_demo_tenant(
    connection: Neo4jConnection,
    spec: DemoTenantSpec,
    max_concurrent_writes: int = 5,
    beam_args: Sequence[str] = (),
    resources_per_pipeline: int = DEFAULT_RESOURCES_PER_PIPELINE,
) -> Dict[str, Any]:
    """Create the indexes, then generate and write ``spec``'s tenant; return a summary.

    The summary has the rows written (``nodes_written``, ``relationships_written``:
    rows sent and committed, so a re-load reports them again although it changes
    nothing), ``dead_letters`` (rows Neo4j refused; 0 unless something is wrong),
    ``seconds`` and the settings used. Runs on ``FnApiRunner`` unless ``beam_args``
    names a runner, one run per ``resources_per_pipeline`` resources (rounded up to a
    multiple of ``BLOCK_SIZE``).
    """
    _check_settings(max_concurrent_writes, resources_per_pipeline)
    slice_size = -(-resources_per_pipeline // BLOCK_SIZE) * BLOCK_SIZE
    started = time.monotonic()
    with connect(connection) as driver:
        created_indexes = ensure_schema(driver, connection.database, INDEXES)
    approximate_nodes, approximate_relationships = approximate_counts(spec)
    batch_size = adaptive_batch_size(approximate_nodes + approximate_relationships, "write")
    options = pipeline_options(beam_args)
    _LOG.info("loading demo tenant %s: %d resources (seed %d), ~%d nodes and ~%d relationships "
              "in batches of %d rows, %d concurrent writes", spec.tenant_id, spec.resources,
              spec.seed, approximate_nodes, approximate_relationships, batch_size,
              max_concurrent_writes)
    pipeline_started = time.monotonic()
    counters: Dict[str, int] = {}
    slices = chunk_ranges(0, spec.resources, slice_size)
    for number, resource_range in enumerate(slices, 1):
        if len(slices) > 1:
            _LOG.info("pipeline %d of %d: resources %d to %d", number, len(slices), *resource_range)
        pipeline = beam.Pipeline(options=options)
        build_pipeline(pipeline, connection, spec, batch_size, max_concurrent_writes,
                       resource_range)
        result = pipeline.run()
        result.wait_until_finish()
        for name, value in metric_totals(result)["counters"].items():
            counters[name] = counters.get(name, 0) + value
    pipeline_seconds = time.monotonic() - pipeline_started
    return {
        "tenant_id": spec.tenant_id,
        "resources": spec.resources,
        "seed": spec.seed,
        "subscriptions": spec.subscriptions,
        "runner": runner_name(options),
        "nodes_written": counters.get("nodes_written", 0),
        "relationships_written": counters.get("relationships_written", 0),
        "dead_letters": counters.get("dead_letters", 0),
        "write_retries": counters.get("write_retries", 0),
        "batch_size": batch_size,
        "max_concurrent_writes": max_concurrent_writes,
        "pipelines": len(slices),
        "indexes_created": created_indexes,
        "pipeline_seconds": round(pipeline_seconds, 3),
        "seconds": round(time.monotonic() - started, 3),
    }


def render_summary(summary: Dict[str, Any]) -> str:
    """The loader's summary as a short table for people."""
    return format_pairs([
        ("tenant", f"{summary['tenant_id']} ({summary['resources']:,} resources, seed "
                   f"{summary['seed']}, {summary['subscriptions']} subscriptions)"),
        ("written", f"{summary['nodes_written']:,} nodes, {summary['relationships_written']:,} "
                    "relationships (rows sent and committed: a re-load counts them again)"),
        ("time", f"{duration_text(summary['seconds'])} (pipeline "
                 f"{duration_text(summary['pipeline_seconds'])}, {summary['pipelines']} runs of "
                 f"{summary['runner']})"),
        ("retries", f"{summary['write_retries']:,} transient errors (deadlocks) retried"),
        ("dead letters", f"{summary['dead_letters']:,}"),
        ("next", f"python -m pipelines.scale_up --tenant-id {summary['tenant_id']} "
                 "--scale-factor 8"),
    ])


def parse_arguments(
    argv: Optional[Sequence[str]],
) -> Tuple[DemoTenantSpec, Dict[str, int], Neo4jConnection, List[str], argparse.Namespace]:
    """Flags → (spec, ``load_demo_tenant`` settings, connection, Beam flags, the flags).

    Malformed flags exit with 2; unknown flags, values that make no sense and a bad
    connection URI raise ``ValueError`` (``UsageError`` is one).
    """
    parser = CommandParser(
        prog="python -m pipelines.demo_tenant",
        description="Load a realistic demo Azure tenant (deterministic from its seed) into "
                    "Neo4j. Any Apache Beam pipeline flag (e.g. --runner) is passed on.",
    )
    _add_arguments(parser)
    args, beam_args = parser.parse_known_args(argv)
    check_beam_arguments(beam_args, parser.flags())
    if args.report is not None:
        check_writable("--report", args.report)
    spec = DemoTenantSpec(tenant_id=args.tenant_id, resources=args.resources, seed=args.seed,
                          subscriptions=args.subscriptions)
    settings = {"max_concurrent_writes": args.max_concurrent_writes,
                "resources_per_pipeline": args.resources_per_pipeline}
    _check_settings(**settings)
    return spec, settings, connection_from(args), beam_args, args


def main(argv: Optional[Sequence[str]] = None) -> int:
    configure_logging()

    def parse():
        arguments = parse_arguments(argv)
        configure_logging(arguments[-1].verbose, arguments[-1].log_file)
        return arguments

    arguments = parsed(parse, bad_input=(ValueError,))
    if arguments is None:
        return 2
    spec, settings, connection, beam_args, args = arguments

    def load_and_print() -> int:
        summary = load_demo_tenant(connection, spec, beam_args=beam_args, **settings)
        if summary["write_retries"]:
            _LOG.info("%d transient errors (deadlocks) retried", summary["write_retries"])
        print_result(summary, args.json, render_summary, args.report)
        return 0 if summary["dead_letters"] == 0 else 1

    return exit_code_of(connection, load_and_print)


if __name__ == "__main__":
    sys.exit(main())
