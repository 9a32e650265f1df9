"""How the pipeline reaches Neo4j: connection settings and the driver they open.

The settings travel inside pickled DoFns to whatever worker runs them, so they are
plain values; the driver itself is never pickled: each DoFn opens one in ``setup()``
and closes it in ``teardown()`` (the driver is thread-safe but bound to its process).

**The password never travels.** A pickled ``Neo4jConnection`` carries the URI, user and
database, and an opaque token that stands for its password in the process that pickled
it. Unpickled in that same process (the local runner, Flink's LOOPBACK workers), the
token gives back the very password the connection was made with, so a connection built
in code (a test's server, say) keeps working; unpickled anywhere else (a Flink worker),
the connection reads the password from that process's own ``NEO4J_PASSWORD`` or
``NEO4J_PASSWORD_FILE``. A pipeline's serialized form, its logs and Beam's display data
therefore never contain it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import threading
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import neo4j
import neo4j.exceptions

_LOG = logging.getLogger(__name__)

DEFAULT_URI = "bolt://127.0.0.1:7687"
DEFAULT_USER = "neo4j"
DEFAULT_DATABASE = "neo4j"
#: How often a transaction whose commit outcome is unknown (``IncompleteCommit``) is sent.
MAX_SEND_ATTEMPTS = 3
#: Seconds to open a TCP connection, and to get a ready (handshaken) connection.
CONNECT_TIMEOUT_S = 5.0
ACQUIRE_TIMEOUT_S = 8.0


@dataclasses.dataclass(frozen=True)
class Neo4jConnection:
    """Where and as whom to connect.

    ``password=None`` means "connect without authentication". The password is
    excluded from ``repr`` so that it never reaches a log line, an error message or
    Beam display data.
    """

    uri: str = DEFAULT_URI
    user: str = DEFAULT_USER
    password: Optional[str] = dataclasses.field(default=None, repr=False)
    database: str = DEFAULT_DATABASE

    @classmethod
    def from_environment(
        cls,
        environ: Mapping[str, str] = os.environ,
        uri: Optional[str] = None,
        user: Optional[str] = None,
        database: Optional[str] = None,
    ) -> "Neo4jConnection":
        """Explicit values win, then ``NEO4J_URI``/``NEO4J_USER``/``NEO4J_DATABASE``.

        The password only ever comes from ``NEO4J_PASSWORD``, or from the file named
        by ``NEO4J_PASSWORD_FILE`` (its first line), never from a command-line flag.
        """
        password = environ.get("NEO4J_PASSWORD")
        password_file = environ.get("NEO4J_PASSWORD_FILE")
        if password is None and password_file:
            with open(password_file, encoding="utf-8") as handle:
                password = handle.readline().rstrip("\r\n")
        return cls(
            uri=uri or environ.get("NEO4J_URI") or DEFAULT_URI,
            user=user or environ.get("NEO4J_USER") or DEFAULT_USER,
            password=password or None,
            database=database or environ.get("NEO4J_DATABASE") or DEFAULT_DATABASE,
        )

    def __reduce__(self):
        """Pickle without the password: a token for it instead (module doc)."""
        token = None if self.password is None else _token_of(self.password)
        return (_connection_of_this_process, (self.uri, self.user, self.database, token))

    def open_driver(self, **driver_options) -> neo4j.Driver:
        """A new driver for this process; the caller closes it.

        Server notifications are turned off: they are about this project's own constant
        queries (the ``CALL { WITH x }`` form that every Neo4j 5.x understands and 5.23+
        calls deprecated; "label ``Resource`` does not exist" on an empty database), not
        something a user can act on, and the server then does not even send them.
        """
        auth = (self.user, self.password) if self.password is not None else None
        driver_options.setdefault("notifications_min_severity",
                                  neo4j.NotificationMinimumSeverity.OFF)
        # A server that accepts TCP but never answers Bolt would otherwise hold a command
        # for the driver's default 60 s before it says anything.
        driver_options.setdefault("connection_timeout", CONNECT_TIMEOUT_S)
        driver_options.setdefault("connection_acquisition_timeout", ACQUIRE_TIMEOUT_S)
        return neo4j.GraphDatabase.driver(self.uri, auth=auth, **driver_options)


#: Passwords of connections pickled by this process, by token; never leaves the process.
_PASSWORDS_BY_TOKEN: Dict[str, str] = {}
_TOKENS_BY_PASSWORD: Dict[str, str] = {}
_TOKENS_LOCK = threading.Lock()


def _token_of(password: str) -> str:
    """A random token that stands for ``password`` in this process (the same one each
    time, so that a pipeline pickles the same way twice); it says nothing about it."""
    with _TOKENS_LOCK:
        token = _TOKENS_BY_PASSWORD.get(password)
        if token is None:
            token = secrets.token_hex(16)
            _TOKENS_BY_PASSWORD[password] = token
            _PASSWORDS_BY_TOKEN[token] = password
        return token


def _connection_of_this_process(uri: str, user: str, database: str,
                                token: Optional[str] = None) -> Neo4jConnection:
    """An unpickled connection: the settings that travelled, and the password its token
    stands for if it was pickled in this process, else this process's own password."""
    with _TOKENS_LOCK:
        password = _PASSWORDS_BY_TOKEN.get(token) if token is not None else None
    if password is not None:
        return Neo4jConnection(uri=uri, user=user, password=password, database=database)
    return Neo4jConnection.from_environment(uri=uri, user=user, database=database)


class CommitNotConfirmedError(RuntimeError):
    """A transaction could not be confirmed committed after ``MAX_SEND_ATTEMPTS`` sends."""


def run_transaction(driver: neo4j.Driver, database: str,
                    work: Callable[[neo4j.ManagedTransaction], Any], access_mode: str,
                    what: str) -> Tuple[Any, int]:
    """Run ``work`` in a managed transaction the way every stage needs it; return
    (its value, how many times it was run again).

    The driver retries transient errors (deadlocks too) and a lost server for up to 30 s.
    A connection lost during COMMIT (``IncompleteCommit``) leaves the outcome unknown and
    is not retried by the driver: the transaction is sent again, up to
    ``MAX_SEND_ATTEMPTS`` times in all. That is safe because reads can always be
    repeated and every write of this project is idempotent. ``what`` names the work in
    the warning ("a 160-row batch").
    """
    calls = 0

    def counted(tx: neo4j.ManagedTransaction) -> Any:
        nonlocal calls
        calls += 1
        return work(tx)

    reruns = 0
    for attempt in range(1, MAX_SEND_ATTEMPTS + 1):
        try:
            with driver.session(database=database, default_access_mode=access_mode) as session:
                run = session.execute_write if access_mode == neo4j.WRITE_ACCESS else session.execute_read
                value = run(counted)
            return value, reruns + calls - 1
        except neo4j.exceptions.IncompleteCommit as error:
            reruns += calls
            calls = 0
            if attempt < MAX_SEND_ATTEMPTS:
                _LOG.warning("commit of %s not confirmed (%s); sending it again, attempt %d of %d",
                             what, error, attempt + 1, MAX_SEND_ATTEMPTS)
    raise CommitNotConfirmedError(
        f"{what} could not be confirmed committed after {MAX_SEND_ATTEMPTS} attempts")
