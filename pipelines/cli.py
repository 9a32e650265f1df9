"""What every command of this project shares: connection flags, logging, exit codes,
tables and progress lines.

Exit codes: 0 ok, 1 failure (Neo4j unreachable, refused credentials, a database
error, anything unexpected), 2 bad input (a message says what is wrong and how to fix
it; nothing was written).
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from typing import Any, Callable, List, Optional, Sequence, Tuple, Type, TypeVar

import neo4j
import neo4j.exceptions

from transforms.connection import Neo4jConnection

_LOG = logging.getLogger("cli")
T = TypeVar("T")


class UsageError(ValueError):
    """Bad input: exit code 2; the message says what is wrong and how to fix it."""


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """``--neo4j-uri``, ``--neo4j-user``, ``--neo4j-database``; never a password flag."""
    parser.add_argument("--neo4j-uri", dest="neo4j_uri", default=None,
                        help="Bolt URI (default: $NEO4J_URI or bolt://127.0.0.1:7687)")
    parser.add_argument("--neo4j-user", dest="neo4j_user", default=None,
                        help="user (default: $NEO4J_USER or neo4j); the password comes only "
                             "from $NEO4J_PASSWORD or the file $NEO4J_PASSWORD_FILE; without "
                             "one, no authentication is used")
    parser.add_argument("--neo4j-database", dest="neo4j_database", default=None,
                        help="database (default: $NEO4J_DATABASE or neo4j)")


def connection_from(args: argparse.Namespace) -> Neo4jConnection:
    """The connection named by the flags, completed from the environment."""
    return Neo4jConnection.from_environment(
        uri=args.neo4j_uri, user=args.neo4j_user, database=args.neo4j_database)


def configure_logging() -> None:
    """INFO and above to stderr, with times: stdout is kept for the machine-readable result."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def exit_code_of(connection: Neo4jConnection, action: Callable[[], int],
                 bad_input: Tuple[Type[BaseException], ...] = ()) -> int:
    """Run ``action`` and turn the errors every command shares into a message and an
    exit code: ``UsageError`` (and ``bad_input``) → 2; Neo4j unreachable, refusing the
    credentials, failing a query, or anything unexpected → 1. Messages never contain
    the password.
    """
    try:
        return action()
    except (UsageError, *bad_input) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except neo4j.exceptions.AuthError as error:
        _fail(f"Neo4j at {connection.uri} refused the credentials of user "
              f"{connection.user!r}; check NEO4J_USER and NEO4J_PASSWORD", error)
    except (neo4j.exceptions.ServiceUnavailable, OSError) as error:
        _fail(f"cannot reach Neo4j at {connection.uri}: {error}", error)
    except (neo4j.exceptions.Neo4jError, neo4j.exceptions.DriverError) as error:
        _fail(f"Neo4j at {connection.uri} failed: {error}", error)
    except Exception as error:  # noqa: BLE001 - a scheduler needs a message and exit 1
        _LOG.exception("failed")
        _fail(f"{type(error).__name__}: {error}", error)
    return 1


#: An attribute a command may set on an error it re-raises: what the user can do next
#: (the scale-up names the operation to resume). It ends the one-line message.
NEXT_STEP = "next_step"


def _fail(message: str, error: BaseException) -> None:
    """One line, so that the last ``error:`` line says it all (driver errors span lines)."""
    next_step = getattr(error, NEXT_STEP, None)
    text = " ".join(message.split()) + (f"; {next_step}" if next_step else "")
    print(f"error: {text}", file=sys.stderr)


def parsed(parse: Callable[[], T], bad_input: Tuple[Type[BaseException], ...] = (UsageError,)
           ) -> Optional[T]:
    """``parse()`` (the flags, and the connection with its password file); on bad input
    print why and return None: the command then exits with 2."""
    try:
        return parse()
    except bad_input as error:
        print(f"error: {error}", file=sys.stderr)
    except OSError as error:  # an unreadable NEO4J_PASSWORD_FILE
        print(f"error: cannot read the password file: {error}", file=sys.stderr)
    return None


def run_command(args: argparse.Namespace,
                command: Callable[[neo4j.Driver, str], int]) -> int:
    """Run ``command(driver, database)`` on the connection of the flags; return its exit
    code, under ``exit_code_of``'s rules (an unreadable password file is bad input)."""
    connection = parsed(lambda: connection_from(args))
    if connection is None:
        return 2

    def with_driver() -> int:
        with connection.open_driver() as driver:
            return command(driver, connection.database)

    return exit_code_of(connection, with_driver)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: columns padded to their widest cell, numbers right-aligned,
    thousands separated, None shown as ``-``."""
    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, int):
            return f"{value:,}"
        if isinstance(value, float):
            return f"{value:,.1f}"
        return str(value)

    cells = [[cell(value) for value in row] for row in rows]
    widths = [max([len(header), *(len(row[i]) for row in cells)])
              for i, header in enumerate(headers)]
    numeric = [bool(rows) and all(isinstance(row[i], (int, float)) or row[i] is None
                                  for row in rows)
               for i in range(len(headers))]
    lines = []
    for row in [list(headers), *cells]:
        lines.append("  ".join(text.rjust(width) if right else text.ljust(width)
                               for text, width, right in zip(row, widths, numeric)).rstrip())
    return "\n".join(lines)


#: One measure of a progress line: (what, done, total), e.g. ("nodes written", 7, 35).
Measure = Tuple[str, int, int]


class ProgressReporter(threading.Thread):
    """Logs ``label: 7 of 35 nodes written, ... (20%), 120 /s, ETA 1 s`` every
    ``interval`` seconds until ``stop()``; the rate and ETA are over all measures.

    ``measure()`` is called on this thread (paced by its own cost, see
    ``MEASURE_COST_FACTOR``); if it raises (the database it counts in went
    away, say), one warning ends the lines and the work it watches goes on.
    """

    def __init__(self, label: str, measure: Callable[[], List[Measure]], interval: float) -> None:
        super().__init__(name=f"progress {label}", daemon=True)
        self._label = label
        self._measure = measure
        self._interval = interval
        self._stopped = threading.Event()
        self._began = time.monotonic()

    #: A measure that takes t seconds (a count in the database) is taken again after
    #: at least this many t: progress lines never cost more than 5% of anything.
    MEASURE_COST_FACTOR = 20

    def run(self) -> None:
        pause = self._interval
        while not self._stopped.wait(pause):
            began = time.monotonic()
            try:
                measures = self._measure()
            except Exception as error:  # noqa: BLE001 - progress must never fail the work
                _LOG.warning("%s: no more progress lines (%s)", self._label, error)
                return
            pause = max(self._interval, self.MEASURE_COST_FACTOR * (time.monotonic() - began))
            _LOG.info("%s", self.line(measures, time.monotonic() - self._began))

    def line(self, measures: List[Measure], elapsed: float) -> str:
        done = sum(count for _, count, _ in measures)
        total = sum(of for _, _, of in measures)
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = f"{(total - done) / rate:.0f} s" if rate > 0 else "unknown"
        parts = ", ".join(f"{count} of {of} {what}" for what, count, of in measures)
        return (f"{self._label}: {parts} ({100.0 * done / max(total, 1):.0f}%), "
                f"{rate:.0f} /s, ETA {eta}")

    def stop(self) -> None:
        self._stopped.set()
        if self.is_alive():
            self.join()
