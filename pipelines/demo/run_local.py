"""The demo behind ``./run_local.sh``: a local Neo4j, a demo tenant, a scale-up, the report.

    python -m pipelines.run_local [--resources 5000] [--tenant-id demo] [--seed 0]
                                  [--home .neo4j] [any scale_up flag, e.g. --scale-factor 3]

Uses ``--neo4j-uri`` or ``$NEO4J_URI`` when one is given, else starts the project's
local Neo4j 5.26 (data in ``--home``, kept between runs) and stops it at the end.
Every flag is checked before anything starts (the scale-up's checks, see
``pipelines.options``). Loads the demo tenant unless that tenant already has exactly ``--resources`` templates, then scales it
(×8 unless a ``--scale-factor`` or ``--target-count`` is given) and prints what
``scale_up`` prints: a summary table on stdout (with ``--json`` only the JSON report),
progress and warnings on stderr (``-v`` and ``--log-file`` as for every command). A
signal stops it as it stops ``scale_up``; the command it names to resume the
operation is this one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Iterator, Optional, Sequence, Tuple

from pipelines import scale_up
from pipelines.cli import (
    CommandParser,
    add_logging_arguments,
    configure_logging,
    connect,
    exit_code_of,
    parsed,
)
from pipelines.demo.load import load_demo_tenant
from pipelines.infra.neo4j_server import DEFAULT_HOME, LocalNeo4j
from pipelines.infra.processes import InfraError
from pipelines.options import parse_arguments
from transforms.connection import Neo4jConnection
from transforms.demo import DemoTenantSpec
from transforms.model import TemplateSelection, template_predicate

_LOG = logging.getLogger("run_local")
DEFAULT_SCALE_FACTOR = "8"


@contextlib.contextmanager
def _neo4j(home: Path, given: Optional[Neo4jConnection], source: str) -> Iterator[Neo4jConnection]:
    """The ``given`` connection (the user named a server, in ``source``), else a local
    server that lives as long as the block, whose address and password file are put into
    this process's environment: the scale-up and its workers read the connection from
    there."""
    if given is not None:
        _LOG.info("using the Neo4j at %s (%s)", given.uri, source)
        yield given
        return
    with LocalNeo4j(home) as server:
        connection = server.connection
        os.environ.update(NEO4J_URI=connection.uri, NEO4J_USER=connection.user,
                          NEO4J_DATABASE=connection.database)
        if server.password_file is not None:
            os.environ["NEO4J_PASSWORD_FILE"] = str(server.password_file)
        yield connection


def _template_count(connection: Neo4jConnection, tenant_id: str) -> int:
    with connect(connection) as driver:
        return driver.execute_query(
            f"MATCH (t:Resource) WHERE {template_predicate('t')} RETURN count(t)",
            TemplateSelection(tenant_id).parameters(),
            database_=connection.database).records[0][0]


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = CommandParser(
        prog="./run_local.sh", description=__doc__.split("\n\n")[0],
        epilog="Other flags go to python -m pipelines.scale_up (see its --help).")
    parser.add_argument("--resources", type=int, default=5000,
                        help="resources of the demo tenant (default 5000)")
    parser.add_argument("--tenant-id", default="demo", help="demo tenant id (default demo)")
    parser.add_argument("--seed", type=int, default=0, help="demo tenant seed (default 0)")
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME,
                        help="home of the local Neo4j: conf, data, logs (default .neo4j)")
    add_logging_arguments(parser)
    args, scale_up_args = parser.parse_known_args(argv)
    configure_logging()
    if not {"--scale-factor", "--target-count"} & {a.split("=")[0] for a in scale_up_args}:
        scale_up_args = [*scale_up_args, "--scale-factor", DEFAULT_SCALE_FACTOR]
    scale_up_args = ["--tenant-id", args.tenant_id, *scale_up_args,
                     *(["--verbose"] if args.verbose else []),
                     *(["--log-file", args.log_file] if args.log_file else [])]

    def parse() -> Tuple[DemoTenantSpec, Neo4jConnection]:
        configure_logging(args.verbose, args.log_file)
        # Bad scale-up flags: exit 2 before starting anything.
        _, connection, _ = parse_arguments(scale_up_args, other_flags=parser.flags())
        spec = DemoTenantSpec(tenant_id=args.tenant_id, resources=args.resources, seed=args.seed)
        return spec, connection

    arguments = parsed(parse, bad_input=(ValueError,))
    if arguments is None:
        return 2
    spec, flagged = arguments
    flag = any(argument.split("=", 1)[0] == "--neo4j-uri" for argument in scale_up_args)
    named = flag or "NEO4J_URI" in os.environ
    # The operation resumes with this command: its own flags, then the scale-up's.
    program = ["./run_local.sh", "--resources", str(args.resources), "--seed", str(args.seed),
               "--home", str(args.home)]
    try:
        with _neo4j(args.home, flagged if named else None,
                    "--neo4j-uri" if flag else "$NEO4J_URI") as connection:
            return exit_code_of(connection,
                                lambda: _load_and_scale_up(connection, spec, scale_up_args, program))
    except InfraError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # while the local server starts or stops
        print("error: interrupted by SIGINT", file=sys.stderr)
        return 130


def _load_and_scale_up(connection: Neo4jConnection, spec: DemoTenantSpec,
                       scale_up_args: Sequence[str], program: Sequence[str]) -> int:
    if _template_count(connection, spec.tenant_id) != spec.resources:
        _LOG.info("loading the demo tenant %r (%d resources)", spec.tenant_id, spec.resources)
        summary = load_demo_tenant(connection, spec)
        _LOG.info("demo tenant loaded in %.1f s", summary["seconds"])
    else:
        _LOG.info("demo tenant %r is already loaded", spec.tenant_id)
    return scale_up.run(scale_up_args, program=program)


if __name__ == "__main__":
    sys.exit(main())
