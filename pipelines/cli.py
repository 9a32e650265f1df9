"""What every command of this project shares: connection and logging flags, logging,
signals, exit codes, tables, results and progress lines.

Exit codes: 0 ok, 1 failure (Neo4j unreachable, refused credentials, a database
error, anything unexpected), 2 bad input (a message says what is wrong and how to fix
it; nothing was written), 128 + N when signal N (SIGINT: 130, SIGTERM: 143) stopped
the command.

**stderr is for people, stdout for the result.** By default stderr shows only this
project's own lines (progress, warnings a user can act on, errors); Beam's and the
Neo4j driver's logs are dropped. ``-v`` shows every library's INFO lines too, and
``--log-file FILE`` keeps everything, DEBUG included, in FILE. stdout holds the result:
a table, or with ``--json`` one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import logging
import math
import os
import shutil
import signal
import sys
import threading
import time
import urllib.parse
from types import FrameType
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Type, TypeVar

import neo4j
import neo4j.exceptions

from transforms.connection import Neo4jConnection

_LOG = logging.getLogger("cli")
#: Tracebacks of unexpected errors: not a project logger, so only ``-v`` and
#: ``--log-file`` show them (the one-line error always says what failed).
_TRACEBACKS = logging.getLogger("traceback")
T = TypeVar("T")


class UsageError(ValueError):
    """Bad input: exit code 2; the message says what is wrong and how to fix it."""


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """``--neo4j-uri``, ``--neo4j-user``, ``--neo4j-database`` (never a password flag),
    and the logging flags (``add_logging_arguments``): every command that connects
    takes both."""
    parser.add_argument("--neo4j-uri", dest="neo4j_uri", default=None,
                        help="Bolt URI (default: $NEO4J_URI or bolt://127.0.0.1:7687)")
    parser.add_argument("--neo4j-user", dest="neo4j_user", default=None,
                        help="user (default: $NEO4J_USER or neo4j); the password comes only "
                             "from $NEO4J_PASSWORD or the file $NEO4J_PASSWORD_FILE; without "
                             "one, no authentication is used")
    parser.add_argument("--neo4j-database", dest="neo4j_database", default=None,
                        help="database (default: $NEO4J_DATABASE or neo4j)")
    add_logging_arguments(parser)


def connection_from(args: argparse.Namespace) -> Neo4jConnection:
    """The connection named by the flags, completed from the environment; ``UsageError``
    if its URI is not one the driver can use (``check_uri``)."""
    connection = Neo4jConnection.from_environment(
        uri=args.neo4j_uri, user=args.neo4j_user, database=args.neo4j_database)
    check_uri(connection.uri, "--neo4j-uri" if args.neo4j_uri else "NEO4J_URI")
    return connection


#: The URI schemes of Bolt: direct (bolt) or routed (neo4j); +s verifies the server's
#: certificate, +ssc encrypts without verifying it.
URI_SCHEMES = ("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc")


def check_uri(uri: str, source: str) -> None:
    """``UsageError`` unless ``uri`` is ``SCHEME://HOST[:PORT]`` with a Bolt scheme
    (``URI_SCHEMES``), a host and, if given, a port from 1 to 65535; ``neo4j`` schemes
    may add a routing context (``?key=value``). ``source`` names where it came from.

    The driver takes far more than it can use (``http://`` fails later with a traceback
    about a missing module, ``bolt://h:99999`` when it connects). Credentials in the URI
    are refused, and not repeated in the message.
    """
    parts = urllib.parse.urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in URI_SCHEMES:
        problem = f"its scheme must be one of {', '.join(URI_SCHEMES)}"
    elif "@" in parts.netloc:
        problem = ("it must not hold credentials: the user goes in --neo4j-user or NEO4J_USER, "
                   "the password in NEO4J_PASSWORD or NEO4J_PASSWORD_FILE")
        uri = parts._replace(netloc="…@" + parts.netloc.rsplit("@", 1)[1]).geturl()
    elif not parts.hostname:
        problem = "it names no host"
    elif not _has_valid_port(parts):
        problem = "its port must be a number from 1 to 65535"
    elif parts.path not in ("", "/") or parts.fragment:
        problem = "it must not have a path or a fragment"
    elif parts.query and not scheme.startswith("neo4j"):
        problem = "only neo4j:// URIs take a routing context (?key=value)"
    else:
        return
    raise UsageError(f"{source} {uri!r} is not a Neo4j URI: {problem} "
                     "(e.g. bolt://localhost:7687)")


def _has_valid_port(parts: urllib.parse.SplitResult) -> bool:
    try:
        port = parts.port  # ValueError: not a number, or above 65535
    except ValueError:
        return False
    return port is None or port >= 1


class CommandParser(argparse.ArgumentParser):
    """The parser of every command: bad flags exit with 2 and one ``error:`` line.

    An unknown flag is named, with the closest known one (``did you mean``), before
    anything else is read from the command line; flags are never abbreviated
    (``--rollback`` is not ``--rollback-on-failure``). Commands that pass flags on to
    Beam take theirs with ``parse_known_args`` and check the rest with
    ``pipelines.beam_job.check_beam_arguments``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        known = self.flags()
        for argument in args:
            if argument == "--":
                break
            if argument.startswith("--") and argument.split("=", 1)[0] not in known:
                self.error(str(unknown_argument([argument], known)))
        return super().parse_args(args, namespace)

    def flags(self) -> List[str]:
        return flags_of(self)

    def error(self, message: str):
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def flags_of(parser: argparse.ArgumentParser) -> List[str]:
    """Every flag ``parser`` knows (``--tenant-id``, ``-h``...)."""
    return [flag for action in parser._actions for flag in action.option_strings]


def unknown_argument(arguments: Sequence[str], known_flags: Sequence[str]) -> UsageError:
    """The error for the first of ``arguments`` that no parser took: an unknown flag,
    with the closest of ``known_flags`` if one is close (difflib), or a stray value."""
    first = arguments[0]
    if not first.startswith("-"):
        return UsageError(f"unexpected argument {first!r} (see --help)")
    flag = first.split("=", 1)[0]
    close = closest(flag, known_flags)
    return UsageError(f"unknown flag {flag}; " + (f"did you mean {close}?" if close else "see --help"))


def closest(name: str, candidates: Sequence[str], cutoff: float = 0.6) -> Optional[str]:
    """The one candidate that ``name`` begins (``--rollback``), else the candidate most
    like it (difflib, leading dashes aside) if one is close enough."""
    extensions = [candidate for candidate in candidates if candidate.startswith(name)]
    if len(extensions) == 1:
        return extensions[0]
    by_stem = {candidate.lstrip("-"): candidate for candidate in candidates}
    close = difflib.get_close_matches(name.lstrip("-"), list(by_stem), n=1, cutoff=cutoff)
    return by_stem[close[0]] if close else None


def check_number(flag: str, value: float, low: float, high: float) -> None:
    """``UsageError`` unless ``value`` is a finite number from ``low`` to ``high``
    (argparse's ``float`` takes ``nan`` and ``inf``)."""
    if not (math.isfinite(value) and low <= value <= high):
        raise UsageError(f"{flag} must be a finite number from {low:g} to {high:g}, got {value}")


def check_not_blank(flag: str, value: Optional[str]) -> None:
    """``UsageError`` if ``value`` was given but is empty or only whitespace."""
    if value is not None and not value.strip():
        raise UsageError(f"{flag} must not be empty")


def check_writable(flag: str, path: str) -> None:
    """``UsageError`` unless the file ``path`` can be written: its directory exists and
    takes a new file, or the file exists and can be opened for writing. Found out by
    opening it for appending (which changes nothing) and removing it again if it did
    not exist, so a run that stops before its end leaves no file behind."""
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path}: is a directory; give a file name")
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise UsageError(f"{flag} {path}: {directory} is not a directory")
    if not os.path.isdir(directory):
        raise UsageError(f"{flag} {path}: directory {directory} does not exist; create it first")
    existed = os.path.exists(path)
    try:
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as error:
        raise UsageError(f"{flag} {path}: cannot write it ({error.strerror}); give a writable path") from None
    if not existed:
        os.remove(path)


#: Seconds between progress lines: from often enough to watch a small run to hourly.
PROGRESS_INTERVAL_RANGE_S = (0.01, 3600.0)


def add_logging_arguments(parser: argparse.ArgumentParser) -> None:
    """``-v/--verbose`` and ``--log-file FILE``, read by ``configure_logging``."""
    parser.add_argument("-v", "--verbose", dest="verbose", action="store_true",
                        help="also show Beam's and the Neo4j driver's log lines on stderr "
                             "(by default stderr shows only this project's progress, "
                             "warnings and errors)")
    parser.add_argument("--log-file", dest="log_file", default=None, metavar="FILE",
                        help="append every log line, DEBUG included, to FILE")


#: Loggers whose records are this project's own (a name, or the prefix of a dotted one):
#: the only ones shown on stderr without ``--verbose``.
PROJECT_LOGGERS = ("cli", "scale_up", "rollback", "dead_letters", "demo_tenant", "run_local",
                   "pipelines", "transforms")
_QUIET_FORMAT = "%(asctime)s %(message)s"
_FULL_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def is_project_record(record: logging.LogRecord) -> bool:
    """Whether ``record`` comes from one of ``PROJECT_LOGGERS``."""
    return any(record.name == name or record.name.startswith(name + ".")
               for name in PROJECT_LOGGERS)


class _QuietFormatter(logging.Formatter):
    """``12:00:01 message``; warnings and errors say so: ``12:00:01 warning: message``."""

    def __init__(self) -> None:
        super().__init__(_QUIET_FORMAT, datefmt="%H:%M:%S")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        if record.levelno >= logging.WARNING:
            record.message = f"{record.levelname.lower()}: {record.message}"
        return super().formatMessage(record)


class _StderrHandler(logging.Handler):
    """Log lines on the ``sys.stderr`` of the moment, and a live progress bar under them
    when stderr is a terminal: a line is written above the bar, which is then redrawn."""

    def __init__(self) -> None:
        super().__init__()
        self._bar = ""

    @property
    def live(self) -> bool:
        """Whether stderr is a terminal, where progress is a bar instead of lines."""
        return sys.stderr.isatty()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            with self.lock:
                self._write(f"\r\x1b[K{text}\n{self._bar}" if self._bar else f"{text}\n")
        except Exception:  # noqa: BLE001 - logging's own rule: never fail the caller
            self.handleError(record)

    def show_bar(self, text: str) -> None:
        """Draw (or redraw) the bar, cut to the terminal's width; ``""`` removes it."""
        with self.lock:
            self._bar = text[:max(shutil.get_terminal_size().columns - 1, 20)]
            self._write(f"\r\x1b[K{self._bar}")

    @staticmethod
    def _write(text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()


_stderr_handler: Optional[_StderrHandler] = None


def configure_logging(verbose: bool = False, log_file: Optional[str] = None) -> None:
    """Set up logging for a command (again, if it was set up before).

    stderr: this project's records at INFO and above, as ``time message`` lines; with
    ``verbose`` every logger's, with their level and name. ``log_file``: every record
    at DEBUG and above is appended there (``UsageError`` if it cannot be opened).
    Python warnings are logged too, so they follow the same rules.
    """
    global _stderr_handler
    handlers: List[logging.Handler] = []
    if log_file:
        try:
            file_handler: logging.Handler = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as error:
            raise UsageError(f"cannot write the log file {log_file}: {error.strerror}") from error
        file_handler.setFormatter(logging.Formatter(_FULL_FORMAT))
        handlers.append(file_handler)
    stderr = _StderrHandler()
    stderr.setLevel(logging.INFO)
    if verbose:
        stderr.setFormatter(logging.Formatter(_FULL_FORMAT))
    else:
        stderr.setFormatter(_QuietFormatter())
        stderr.addFilter(is_project_record)
    handlers.append(stderr)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if log_file else logging.INFO)
    logging.captureWarnings(True)
    _stderr_handler = stderr


# --------------------------------------------------------------------------- signals


class Interrupted(BaseException):
    """The command was stopped by a signal (SIGINT, SIGTERM): raised in the main thread
    by the first one. A ``BaseException``, so that ``except Exception`` lets it pass."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


def _is_driver_code(frame: FrameType) -> bool:
    module = frame.f_globals.get("__name__", "")
    return module == "neo4j" or module.startswith("neo4j.")


def _inside_neo4j_driver(frame: Optional[FrameType]) -> bool:
    """Whether the main thread, at ``frame``, is running the Neo4j driver's own code:
    the innermost driver frame on the stack is not the one that calls a transaction
    function (``_run_transaction``). Inside a transaction function of ours, an exception
    is what the driver expects (it rolls the transaction back on a clean connection)."""
    while frame is not None:
        if _is_driver_code(frame):
            return frame.f_code.co_name != "_run_transaction"
        frame = frame.f_back
    return False


class _SignalStop:
    """While active, the first SIGINT or SIGTERM raises ``Interrupted`` in the main
    thread and the second ends the process at once (``os._exit``: the server rolls back
    whatever transaction was still open, as it does when a connection closes).

    ``Interrupted`` is never raised inside the Neo4j driver's own code: an exception in
    the middle of reading a response leaves the connection half-read, and cleaning it up
    then fails (``BufferError``) or waits for bytes that never come, until the receive
    timeout the server advertises (two minutes: a 120 s stop seen in CI). A signal that
    arrives while the main thread is in the driver is held: the main thread is traced
    (``sys.settrace``, the way a debugger steps) until it runs other code, and raises
    there; an interrupted system call is resumed meanwhile (PEP 475). The second signal
    still ends the process at once."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self.hint: Optional[str] = None
        self._previous: Dict[int, Any] = {}
        self._stop_tracing: Optional[Callable[[], None]] = None

    def __enter__(self) -> "_SignalStop":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._stop_tracing is not None:  # the block ended inside the driver
            self._stop_tracing()
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.signum is not None:
            name = signal.Signals(signum).name
            hint = f"; {self.hint}" if self.hint else ""
            os.write(2, f"\nerror: {name} again: stopped at once{hint}\n".encode())
            os._exit(128 + signum)
        self.signum = signum
        os.write(2, f"\n{signal.Signals(signum).name}: stopping (send it again to stop "
                    "at once)\n".encode())
        if _inside_neo4j_driver(frame):
            self._raise_on_leaving_the_driver(frame)
        else:
            raise Interrupted(signum)

    def _raise_on_leaving_the_driver(self, frame: Optional[FrameType]) -> None:
        """Trace the main thread from ``frame`` on; raise ``Interrupted`` at the first
        event of code that is not the driver's, then stop tracing."""
        previous = sys.gettrace()
        traced: List[FrameType] = []

        def stop_tracing() -> None:
            sys.settrace(previous)
            for each in traced:
                each.f_trace = None
            self._stop_tracing = None

        def on_event(current: FrameType, event: str, arg: Any):
            if _inside_neo4j_driver(current):
                return on_event
            stop_tracing()
            raise Interrupted(self.signum)

        def on_call(current: FrameType, event: str, arg: Any):
            return None if _is_driver_code(current) else on_event

        while frame is not None:  # the frames the driver returns to
            if not _is_driver_code(frame):
                frame.f_trace = on_event
                traced.append(frame)
            frame = frame.f_back
        self._stop_tracing = stop_tracing
        sys.settrace(on_call)

    def interruptible(self, action: Callable[[], T]) -> Callable[[], T]:
        """``action``, raising ``Interrupted`` for whatever error a signal caused (Beam
        wraps the exception raised in its thread into a ``RuntimeError`` of its own),
        with the error's ``NEXT_STEP``."""
        def run() -> T:
            try:
                return action()
            except BaseException as error:
                if self.signum is None or isinstance(error, Interrupted):
                    raise
                interrupted = Interrupted(self.signum)
                setattr(interrupted, NEXT_STEP, getattr(error, NEXT_STEP, None))
                raise interrupted from error
        return run


#: The innermost active signal stop of this process (commands can nest: run_local
#: runs scale_up), or None.
_signal_stop: Optional[_SignalStop] = None


@contextlib.contextmanager
def stopping_on_signals() -> Iterator[_SignalStop]:
    """SIGINT and SIGTERM stop the block (see ``_SignalStop``); handlers restored after."""
    global _signal_stop
    outer = _signal_stop
    with _SignalStop() as stop:
        _signal_stop = stop
        try:
            yield stop
        finally:
            _signal_stop = outer


def stop_signal() -> Optional[int]:
    """The signal that is stopping the current command, or None."""
    return _signal_stop.signum if _signal_stop is not None else None


@contextlib.contextmanager
def said_if_stopped_at_once(hint: str) -> Iterator[None]:
    """Within the block, a second signal's last line ends with ``hint`` (what to do
    next: the command stops without recording anything)."""
    stop = _signal_stop
    if stop is None:
        yield
        return
    outer, stop.hint = stop.hint, hint
    try:
        yield
    finally:
        stop.hint = outer


def exit_code_of(connection: Neo4jConnection, action: Callable[[], int],
                 bad_input: Tuple[Type[BaseException], ...] = ()) -> int:
    """Run ``action`` and turn the errors every command shares into a message and an
    exit code (module docstring): a signal → 128 + its number; ``UsageError`` (and
    ``bad_input``) → 2; Neo4j unreachable, refusing the credentials, failing a query,
    or anything unexpected → 1. Messages never contain the password.
    """
    with stopping_on_signals() as stop:
        try:
            return _exit_code(connection, stop.interruptible(action), bad_input)
        except Interrupted as interruption:
            _fail(str(interruption), interruption)
            return 128 + interruption.signum


def _exit_code(connection: Neo4jConnection, action: Callable[[], int],
               bad_input: Tuple[Type[BaseException], ...]) -> int:
    try:
        return action()
    except (UsageError, *bad_input) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except neo4j.exceptions.AuthError as error:
        _fail(f"Neo4j at {connection.uri} refused the credentials of user "
              f"{connection.user!r}; check NEO4J_USER and NEO4J_PASSWORD", error)
    except (neo4j.exceptions.ServiceUnavailable, OSError) as error:
        if isinstance(error, OSError) and error.filename:  # a file, not the server
            _fail(f"cannot write {error.filename}: {error.strerror}", error)
        else:
            _fail(f"cannot reach Neo4j at {connection.uri}: {_root_cause(error)}; check that "
                  "the server runs and that --neo4j-uri or NEO4J_URI is its Bolt address", error)
    except (neo4j.exceptions.Neo4jError, neo4j.exceptions.DriverError) as error:
        if getattr(error, "code", None) == "Neo.ClientError.Security.AuthenticationRateLimit":
            _fail(f"Neo4j at {connection.uri} refuses user {connection.user!r} for a few seconds "
                  "after repeated wrong passwords; check NEO4J_USER and NEO4J_PASSWORD", error)
        else:
            _fail(f"Neo4j at {connection.uri} failed: {error}", error)
    except Exception as error:  # noqa: BLE001 - a scheduler needs a message and exit 1
        _TRACEBACKS.error("failed", exc_info=True)
        _fail(f"{type(error).__name__}: {error} (-v or --log-file shows the traceback)", error)
    return 1


#: An attribute a command may set on an error it re-raises: what the user can do next
#: (the scale-up names the operation to resume). It ends the one-line message.
NEXT_STEP = "next_step"


def _fail(message: str, error: BaseException) -> None:
    """One line, so that the last ``error:`` line says it all (driver errors span lines,
    and a message that quotes data is cut)."""
    next_step = getattr(error, NEXT_STEP, None)
    text = one_line(message, MAX_ERROR_CHARS) + (f"; {next_step}" if next_step else "")
    print(f"error: {text}", file=sys.stderr)


def _root_cause(error: BaseException) -> str:
    """What the driver says went wrong; for a routed URI, whose error only says "Unable
    to retrieve routing information", what the first of its attempts ran into."""
    cause = error.__cause__
    if not isinstance(cause, BaseExceptionGroup):
        return str(error)
    while isinstance(cause, BaseExceptionGroup) and cause.exceptions:
        cause = cause.exceptions[0]
    return str(cause)


#: Longest message an ``error:`` line quotes (an error can quote a refused value).
MAX_ERROR_CHARS = 1000


def one_line(value: Any, limit: int) -> str:
    """``str(value)`` as one line of at most ``limit`` characters (plus a note of the
    full length): runs of whitespace, line breaks included, become one space."""
    text = " ".join(str(value).split())
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text):,} characters)"


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
    """Run ``command(driver, database)`` on the connection of the flags, once ``connect``
    has checked it; return its exit code, under ``exit_code_of``'s rules (an unreadable
    password file is bad input)."""
    def parse() -> Neo4jConnection:
        configure_logging(args.verbose, args.log_file)
        return connection_from(args)

    connection = parsed(parse)
    if connection is None:
        return 2

    def with_driver() -> int:
        with connect(connection) as driver:
            return command(driver, connection.database)

    return exit_code_of(connection, with_driver)


class UnknownDatabaseError(UsageError):
    """The server has no database of that name; the message lists those it has."""


@contextlib.contextmanager
def connect(connection: Neo4jConnection) -> Iterator[neo4j.Driver]:
    """A driver on ``connection``, proven usable before anything runs on it: the server
    answers, takes the credentials and has the database. Closed when the block ends.

    Every command connects through here. The proof is one query in a session, which
    the driver does not retry: an unreachable server fails within the connection
    timeouts (a few seconds) with one error, instead of the 30 s of retries, and
    their log lines, of the first ``execute_query``. Raises the driver's
    ``ServiceUnavailable`` or ``AuthError`` (``exit_code_of`` words them) and
    ``UnknownDatabaseError``.
    """
    driver = connection.open_driver()
    try:
        try:
            with driver.session(database=connection.database) as session:
                session.run("RETURN 1").consume()
        except neo4j.exceptions.ClientError as error:
            if error.code != "Neo.ClientError.Database.DatabaseNotFound":
                raise
            raise _unknown_database(driver, connection) from None
        yield driver
    finally:
        driver.close()


def _unknown_database(driver: neo4j.Driver, connection: Neo4jConnection) -> UnknownDatabaseError:
    """The error for a database the server does not have, with the databases it has
    when the user may list them (``SHOW DATABASES`` on ``system``)."""
    message = f"database {connection.database!r} does not exist on {connection.uri}"
    try:
        with driver.session(database="system", default_access_mode=neo4j.READ_ACCESS) as session:
            names = sorted({record["name"] for record in session.run("SHOW DATABASES YIELD name")})
    except neo4j.exceptions.Neo4jError:  # not allowed to list them: the plain message
        return UnknownDatabaseError(f"{message}; check --neo4j-database or NEO4J_DATABASE")
    return UnknownDatabaseError(f"{message}; databases there: {', '.join(names) or 'none'}")


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


def format_pairs(rows: Sequence[Tuple[str, Any]]) -> str:
    """``name  value`` lines, values aligned; a value of several lines stays aligned,
    None is shown as ``-``."""
    width = max(len(name) for name, _ in rows)
    lines = []
    for name, value in rows:
        first, *rest = ("-" if value is None else str(value)).split("\n")
        lines.append(f"{name.ljust(width)}  {first}".rstrip())
        lines.extend(" " * (width + 2) + line for line in rest)
    return "\n".join(lines)


def print_result(result: Dict[str, Any], as_json: bool, render: Callable[[Dict[str, Any]], str],
                 report_path: Optional[str] = None) -> None:
    """A command's result on stdout: ``render(result)`` for people, or with ``as_json``
    the JSON as the one and only line (for schedulers and scripts); also written to
    ``report_path`` as JSON when given."""
    text = json.dumps(result, sort_keys=True)
    if report_path:
        with open(report_path, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    print(text if as_json else render(result), flush=True)


def duration_text(seconds: float) -> str:
    """``4.2 s``, ``3 min 5 s``, ``2 h 10 min``: a duration as people read it."""
    if seconds < 59.95:
        return f"{seconds:.1f} s"
    seconds = round(seconds)
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


#: One measure of a progress line: (what, done, total), e.g. ("nodes", 7, 35).
Measure = Tuple[str, int, int]


class ProgressReporter(threading.Thread):
    """Shows ``label: 7 of 35 nodes, 0 of 90 relationships (6%), phase copies, 120 /s,
    ETA 1 s`` every ``interval`` seconds until ``stop()``: as a log line, or as a live
    bar redrawn every second when stderr is a terminal. The rate and ETA are over all
    measures. With several measures, the phase is named after the first one not yet
    complete: ``phases[i]`` for measure i if given, else the measure's own name.

    ``measure()`` is called on this thread (paced by its own cost, see
    ``MEASURE_COST_FACTOR``); if it raises (the database it counts in went
    away, say), one warning ends the lines and the work it watches goes on.
    """

    #: Seconds between redraws of the live bar (at most: see MEASURE_COST_FACTOR).
    BAR_INTERVAL_S = 1.0
    BAR_WIDTH = 24

    def __init__(self, label: str, measure: Callable[[], List[Measure]], interval: float,
                 phases: Optional[Sequence[str]] = None) -> None:
        super().__init__(name=f"progress {label}", daemon=True)
        self._label = label
        self._phases = phases
        self._measure = measure
        self._bar = _stderr_handler if _stderr_handler is not None and _stderr_handler.live else None
        self._interval = min(interval, self.BAR_INTERVAL_S) if self._bar else interval
        self._stopped = threading.Event()
        self._began = time.monotonic()
        self._last: Optional[List[Measure]] = None

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
            self._last = measures
            elapsed = time.monotonic() - self._began
            if self._bar is not None:
                self._bar.show_bar(self.bar(measures, elapsed))
            else:
                _LOG.info("%s", self.line(measures, elapsed))

    @staticmethod
    def _totals(measures: List[Measure], elapsed: float) -> Tuple[float, str, str]:
        """(fraction done, rate text, ETA text) over all measures."""
        done = sum(count for _, count, _ in measures)
        total = sum(of for _, _, of in measures)
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = duration_text((total - done) / rate) if rate > 0 else "unknown"
        return done / max(total, 1), f"{rate:,.0f} /s", eta

    def _phase(self, measures: List[Measure]) -> str:
        if len(measures) < 2:
            return ""
        names = self._phases or [what for what, _, _ in measures]
        phase = next((name for name, (_, count, of) in zip(names, measures) if count < of), "done")
        return f", phase {phase}"

    def line(self, measures: List[Measure], elapsed: float) -> str:
        fraction, rate, eta = self._totals(measures, elapsed)
        parts = ", ".join(f"{count:,} of {of:,} {what}" for what, count, of in measures)
        return (f"{self._label}: {parts} ({100 * fraction:.0f}%){self._phase(measures)}, "
                f"{rate}, ETA {eta}")

    def bar(self, measures: List[Measure], elapsed: float) -> str:
        fraction, rate, eta = self._totals(measures, elapsed)
        filled = round(self.BAR_WIDTH * min(fraction, 1.0))
        parts = "  ".join(f"{what} {count:,}/{of:,}" for what, count, of in measures)
        return (f"{self._label} [{'#' * filled}{'.' * (self.BAR_WIDTH - filled)}] "
                f"{100 * fraction:3.0f}%  {parts}{self._phase(measures)}  {rate}  ETA {eta}")

    def stop(self) -> None:
        """Stop; a live bar is replaced by a last measure as a line."""
        self._stopped.set()
        if self.is_alive():
            self.join()
        if self._bar is not None:
            self._bar.show_bar("")
            with contextlib.suppress(Exception):  # then the last one the bar showed
                self._last = self._measure()
            if self._last is not None:
                _LOG.info("%s", self.line(self._last, time.monotonic() - self._began))
