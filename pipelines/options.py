"""The scale-up's flags: one ``PipelineOptions`` subclass, validated into plain values.

Every flag the scale-up itself knows is declared in ``ScaleUpOptions`` with its help;
``parse_arguments`` checks them and returns a ``ScaleUpConfig`` (plain, validated
values for the rest of the run), the connection, and the flags left for Beam.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
import uuid
from typing import Any, Dict, List, Optional, Sequence, Tuple

from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.beam_job import check_beam_arguments
from pipelines.cli import (
    PROGRESS_INTERVAL_RANGE_S,
    CommandParser,
    UsageError,
    add_connection_arguments,
    check_not_blank,
    check_number,
    check_writable,
    connection_from,
)
from transforms.connection import Neo4jConnection
from transforms.write import MAX_CONCURRENT_WRITES

#: The most new resources one operation may ask for.
MAX_NEW_NODES = 100_000_000
MAX_BATCH_SIZE = 100_000
PROGRESS_INTERVAL_S = 5.0


class ScaleUpOptions(PipelineOptions):
    """The scale-up's own flags; every other flag is Beam's (``--runner`` ...)."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        # Nothing is ``required=True`` here: Beam parses every PipelineOptions subclass
        # when it reads its own flags, so required flags are checked in parse_arguments.
        parser.add_argument("--tenant-id", dest="tenant_id",
                            help="tenant_id of the resources to copy (templates); required")
        size = parser.add_mutually_exclusive_group()
        size.add_argument("--scale-factor", dest="scale_factor", type=float,
                          help="final/initial size of the template set, > 1; 8 turns 5k into "
                               "40k; non-integer factors are fine")
        size.add_argument("--target-count", dest="target_count", type=int,
                          help="final size of the template set instead of a factor")
        parser.add_argument("--resource-types", dest="resource_types", nargs="+", default=None,
                            metavar="TYPE",
                            help="copy only these resource types (space- or comma-separated), "
                                 "e.g. Microsoft.Compute/virtualMachines")
        parser.add_argument("--operation-id", dest="operation_id", default=None,
                            help="id of this operation (default: a new one); re-running an "
                                 "operation id completes it without duplicates")
        parser.add_argument("--max-concurrent-writes", dest="max_concurrent_writes", type=int,
                            default=5,
                            help="write transactions in flight at once in total, across "
                                 "all workers: size it to the Neo4j server, not to the "
                                 "cluster (each of a run's P parallel writers, e.g. Flink's "
                                 "--parallelism, gets 1/P of it, so it must be at least P; "
                                 f"1-{MAX_CONCURRENT_WRITES}, default 5)")
        parser.add_argument("--batch-size", dest="batch_size", type=int, default=None,
                            help="rows per write transaction (default: adaptive, from the "
                                 "expected count)")
        parser.add_argument("--dry-run", dest="dry_run", action="store_true",
                            help="print the plan (templates, new nodes and relationships by "
                                 "type, batches, parallelism) and write nothing at all")
        parser.add_argument("--rollback-on-failure", dest="rollback_on_failure",
                            action="store_true",
                            help="if the run fails, delete what it wrote (and mark the "
                                 "operation rolled back) instead of leaving it to be resumed")
        parser.add_argument("--report", dest="report", default=None,
                            help="also write the JSON run report to this file")
        parser.add_argument("--json", dest="json", action="store_true",
                            help="print the JSON run report as the only stdout line, "
                                 "instead of the summary table")
        add_connection_arguments(parser)
        parser.add_argument("--progress-interval", dest="progress_interval", type=float,
                            default=PROGRESS_INTERVAL_S,
                            help="seconds between progress lines on stderr (0.01-3600, default 5)")


@dataclasses.dataclass(frozen=True)
class ScaleUpConfig:
    """Validated, plain values: what ``run`` needs besides the connection."""

    tenant_id: str
    scale_factor: Optional[float]
    target_count: Optional[int]
    resource_types: Optional[Tuple[str, ...]]
    operation_id: str
    max_concurrent_writes: int
    batch_size: Optional[int]
    report_path: Optional[str]
    progress_interval: float
    dry_run: bool = False
    rollback_on_failure: bool = False
    json: bool = False
    verbose: bool = False
    log_file: Optional[str] = None

    def parameters(self) -> Dict[str, Any]:
        """What the operation record keeps of the request."""
        return {
            "tenant_id": self.tenant_id,
            "scale_factor": self.scale_factor,
            "target_count": self.target_count,
            "resource_types": list(self.resource_types) if self.resource_types else None,
            "max_concurrent_writes": self.max_concurrent_writes,
            "batch_size": self.batch_size,
        }


def parse_arguments(argv: Optional[Sequence[str]], other_flags: Sequence[str] = ()
                    ) -> Tuple[ScaleUpConfig, Neo4jConnection, List[str]]:
    """Our flags → ``ScaleUpConfig`` and the connection; the rest are Beam's flags.

    Everything is checked here, before anything connects or writes: every flag is ours
    or Beam's, values are in range, the runner exists, the report path is writable, the
    URI is well-formed. Raises ``UsageError`` (argparse's own errors exit with 2).
    ``other_flags``: flags of a command that passes the rest on to this one
    (``run_local``), so that a misspelt one of them is suggested too.
    """
    parser = CommandParser(
        prog="python -m pipelines.scale_up",
        description="Scale up an Azure tenant graph in Neo4j with synthetic copies of its "
                    "resources. Any Apache Beam pipeline flag (e.g. --runner) is passed on.",
    )
    ScaleUpOptions._add_argparse_args(parser)
    args, beam_args = parser.parse_known_args(argv)
    check_beam_arguments(beam_args, [*parser.flags(), *other_flags])
    if not args.tenant_id or not args.tenant_id.strip():
        raise UsageError("--tenant-id is required (the tenant_id of the resources to copy)")
    if args.scale_factor is None and args.target_count is None:
        raise UsageError("give --scale-factor F (> 1) or --target-count N")
    if args.scale_factor is not None and not (math.isfinite(args.scale_factor) and args.scale_factor > 1):
        raise UsageError(f"--scale-factor must be a finite number > 1, got {args.scale_factor}")
    if args.target_count is not None and args.target_count < 2:
        raise UsageError(f"--target-count must be larger than the template count, got {args.target_count}")
    if not 1 <= args.max_concurrent_writes <= MAX_CONCURRENT_WRITES:
        raise UsageError(f"--max-concurrent-writes must be from 1 to {MAX_CONCURRENT_WRITES}, "
                         f"got {args.max_concurrent_writes}")
    if args.batch_size is not None and not 1 <= args.batch_size <= MAX_BATCH_SIZE:
        raise UsageError(f"--batch-size must be from 1 to {MAX_BATCH_SIZE}, got {args.batch_size}")
    check_number("--progress-interval", args.progress_interval, *PROGRESS_INTERVAL_RANGE_S)
    check_not_blank("--operation-id", args.operation_id)
    operation_id = args.operation_id or f"scale-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    if not operation_id.isprintable() or len(operation_id) > 200:
        raise UsageError("--operation-id must be printable and at most 200 characters")
    if args.report is not None:
        check_writable("--report", args.report)
    resource_types = None
    if args.resource_types:
        resource_types = tuple(sorted({t.strip() for arg in args.resource_types
                                       for t in arg.split(",") if t.strip()}))
    config = ScaleUpConfig(
        tenant_id=args.tenant_id,
        scale_factor=args.scale_factor,
        target_count=args.target_count,
        resource_types=resource_types or None,
        operation_id=operation_id,
        max_concurrent_writes=args.max_concurrent_writes,
        batch_size=args.batch_size,
        report_path=args.report,
        progress_interval=args.progress_interval,
        dry_run=args.dry_run,
        rollback_on_failure=args.rollback_on_failure,
        json=args.json,
        verbose=args.verbose,
        log_file=args.log_file,
    )
    return config, connection_from(args), beam_args
