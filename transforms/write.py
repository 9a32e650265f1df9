"""Write: the Neo4j sink. Batches in, idempotent ``UNWIND`` transactions out, bounded
parallelism; ``WriteToNeo4j`` is the one public transform.

Input is what ``transforms.batch.BatchRowGroups`` emits: ``((kind, shard), groups)``,
each group a list of rows, or a compact description of rows that ``rows_of_group``
expands (the copies of one template, say) in the write thread, just before its
transaction.
``kind`` (see ``transforms.cypher``) names the one constant statement the batch is
written with; ``shard`` spreads the work over concurrent transactions.

Why it is shaped like this:

* **Idempotent.** Beam retries bundles and users re-run failed operations, so every
  statement ``MERGE``s on a deterministic key: sending a batch twice converges to the
  same graph. That is also why a connection lost during COMMIT (``IncompleteCommit``,
  outcome unknown, not retried by the driver) can simply be sent again.
* **Really concurrent, bounded.** A single Beam worker calls ``process`` one batch at a
  time, so the DoFn keeps up to ``max_concurrent_writes`` transactions in flight on its
  own thread pool and blocks when all are busy (which also bounds memory).
* **No lock fights.** Creating a relationship locks both end nodes. Relationship
  batches of one shard touch one shard's synthetic nodes, so the sink never runs two
  batches of the same shard at once; batches of different shards touch disjoint
  synthetic nodes and run in parallel. Node batches take no such locks.
* **Nothing lost.** A batch that Neo4j rejects for its data is split in halves until the
  offending rows are isolated; those go to the ``dead_letter`` output (counted), the
  rest is written. A relationship row whose end node does not exist writes nothing:
  the statement counts what it wrote, and rows short of it are dead-lettered by name. Infrastructure errors (server gone, auth) are counted and re-raised
  so that the run fails visibly and can be resumed.
* **Metrics on the right thread.** Beam's metric context is thread-local, so the pool
  threads only measure; counters and distributions are updated by the DoFn's thread.
* **Live progress.** Beam metrics are only reported after a run ends, so the sink also
  adds what it wrote to ``WRITE_PROGRESS``, process-wide counters that a thread of the
  launching process reads. That works whenever the SDK worker runs in that process
  (FnApiRunner, and Flink with ``--environment_type=LOOPBACK``); elsewhere they stay
  at zero and the launcher counts the operation's writes in Neo4j instead
  (``pipelines.scale_up.run_pipeline``).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import apache_beam as beam
import neo4j
import neo4j.exceptions
import psutil
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from transforms.connection import Neo4jConnection
from transforms.cypher import (
    UnsafeIdentifierError,
    WriteKind,
    is_node_kind,
    missing_ends_statement,
    write_statement,
)
from transforms.batch import split_into_transactions
from transforms.model import DEAD_LETTER_TAG, METRICS_NAMESPACE, DeadLetter, Metric

_LOG = logging.getLogger(__name__)

class _WriteProgress:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nodes = 0
        self._relationships = 0

    def add(self, nodes: int = 0, relationships: int = 0) -> None:
        with self._lock:
            self._nodes += nodes
            self._relationships += relationships

    def snapshot(self) -> tuple[int, int]:
        """``(nodes, relationships)`` written so far by this process."""
        with self._lock:
            return self._nodes, self._relationships

    def reset(self) -> None:
        with self._lock:
            self._nodes = 0
            self._relationships = 0


WRITE_PROGRESS = _WriteProgress()

#: First pause before the driver retries a transient error (deadlock, leader switch).
RETRY_FIRST_DELAY_S = 0.1
#: How often a batch whose commit outcome is unknown (``IncompleteCommit``) is sent.
MAX_SEND_ATTEMPTS = 3
#: Codes of client errors caused by the rows of a batch rather than by the system.
_DATA_ERROR_PREFIXES = ("Neo.ClientError.Statement.", "Neo.ClientError.Schema.")
_NOT_DATA_ERRORS = ("Neo.ClientError.Statement.SyntaxError",)


class WriteRetriesExhaustedError(RuntimeError):
    """A batch could not be confirmed written after ``MAX_SEND_ATTEMPTS`` sends."""


@dataclasses.dataclass(frozen=True)
class BatchWritten:
    """What one written batch reports downstream (and to the run report)."""

    is_node: bool
    rows: int
    seconds: float


@dataclasses.dataclass
class _Outcome:
    """What a pool thread measured for one batch; turned into metrics on the DoFn thread."""

    kind: WriteKind
    rows_written: int = 0
    seconds: float = 0.0
    retries: int = 0
    concurrency: int = 0
    dead_letters: List[Tuple[WriteKind, Dict[str, Any], str]] = dataclasses.field(
        default_factory=list
    )


def _is_data_error(error: neo4j.exceptions.Neo4jError) -> bool:
    code = error.code or ""
    return code.startswith(_DATA_ERROR_PREFIXES) and code not in _NOT_DATA_ERRORS


class _SinkMetrics:
    """All metrics of the sink in one place; used only from the DoFn's own thread."""

    def __init__(self) -> None:
        ns = METRICS_NAMESPACE
        self.nodes = Metrics.counter(ns, Metric.NODES_WRITTEN)
        self.relationships = Metrics.counter(ns, Metric.RELATIONSHIPS_WRITTEN)
        self.batches = Metrics.counter(ns, Metric.BATCHES_WRITTEN)
        self.retries = Metrics.counter(ns, Metric.WRITE_RETRIES)
        self.dead_letters = Metrics.counter(ns, Metric.DEAD_LETTERS)
        self.write_failures = Metrics.counter(ns, Metric.WRITE_FAILURES)
        self.batch_size = Metrics.distribution(ns, Metric.BATCH_SIZE)
        self.write_latency_ms = Metrics.distribution(ns, Metric.WRITE_LATENCY_MS)
        self.write_concurrency = Metrics.distribution(ns, Metric.WRITE_CONCURRENCY)
        self.rss_mb = Metrics.gauge(ns, Metric.PROCESS_RSS_MB)
        self.rss_mb_distribution = Metrics.distribution(ns, Metric.PROCESS_RSS_MB)

    def record(self, outcome: _Outcome) -> None:
        if outcome.rows_written:
            if is_node_kind(outcome.kind):
                self.nodes.inc(outcome.rows_written)
                WRITE_PROGRESS.add(nodes=outcome.rows_written)
            else:
                self.relationships.inc(outcome.rows_written)
                WRITE_PROGRESS.add(relationships=outcome.rows_written)
            self.batches.inc()
            self.batch_size.update(outcome.rows_written)
            self.write_latency_ms.update(int(outcome.seconds * 1000))
            self.write_concurrency.update(outcome.concurrency)
        if outcome.retries:
            self.retries.inc(outcome.retries)
        if outcome.dead_letters:
            self.dead_letters.inc(len(outcome.dead_letters))

    def record_memory(self) -> None:
        rss_mb = psutil.Process().memory_info().rss // (1024 * 1024)
        self.rss_mb.set(rss_mb)
        self.rss_mb_distribution.update(rss_mb)


class _BatchWriter:
    """Writes one batch in one transaction, with the sink's retry and split rules.

    Thread-safe: one instance serves all pool threads (the driver is thread-safe and a
    new session is opened per transaction).
    """

    def __init__(self, driver: neo4j.Driver, database: str) -> None:
        self._driver = driver
        self._database = database
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()

    def write(self, kind: WriteKind, rows: List[Dict[str, Any]]) -> _Outcome:
        outcome = _Outcome(kind=kind)
        started = time.perf_counter()
        try:
            statement = write_statement(kind)
        except UnsafeIdentifierError as error:
            outcome.dead_letters = [(kind, row, str(error)) for row in rows]
            return outcome
        with self._in_flight_lock:
            self._in_flight += 1
            outcome.concurrency = self._in_flight
        try:
            self._write_or_split(statement, kind, rows, outcome)
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1
        outcome.seconds = time.perf_counter() - started
        return outcome

    def _write_or_split(
        self, statement: str, kind: WriteKind, rows: List[Dict[str, Any]], outcome: _Outcome
    ) -> None:
        try:
            written = self._send(statement, rows, outcome)
        except neo4j.exceptions.ClientError as error:
            if not _is_data_error(error):
                raise
            if len(rows) == 1:
                outcome.dead_letters.append((kind, rows[0], f"{error.code}: {error.message}"))
                return
            middle = len(rows) // 2
            self._write_or_split(statement, kind, rows[:middle], outcome)
            self._write_or_split(statement, kind, rows[middle:], outcome)
            return
        outcome.rows_written += min(written, len(rows))
        if written < len(rows) and not is_node_kind(kind):
            outcome.dead_letters.extend(self._rows_without_ends(kind, rows))

    def _rows_without_ends(self, kind: WriteKind, rows: List[Dict[str, Any]]) -> List[Tuple]:
        """The rows of a written batch that wrote nothing because an end node is missing
        (its template was refused, say, or a shared node was deleted meanwhile)."""
        with self._driver.session(database=self._database,
                                  default_access_mode=neo4j.READ_ACCESS) as session:
            missing = session.execute_read(
                lambda tx: tx.run(missing_ends_statement(kind), rows=rows).data())
        return [(kind, rows[record["i"]],
                 "no node matches its " + " and ".join(
                     end for end, gone in (("start", record["no_start"]), ("end", record["no_end"]))
                     if gone))
                for record in missing]

    def _send(self, statement: str, rows: List[Dict[str, Any]], outcome: _Outcome) -> int:
        """One transaction; the driver retries transient errors, we re-send unknown commits.
        Returns the statement's ``written`` count."""
        calls = 0

        def run_batch(tx: neo4j.ManagedTransaction) -> int:
            nonlocal calls
            calls += 1
            return tx.run(statement, rows=rows).single(strict=True)["written"]

        for attempt in range(1, MAX_SEND_ATTEMPTS + 1):
            try:
                with self._driver.session(database=self._database) as session:
                    written = session.execute_write(run_batch)
                outcome.retries += calls - 1
                return written
            except neo4j.exceptions.IncompleteCommit as error:
                outcome.retries += calls
                calls = 0
                _LOG.warning(
                    "commit of a %d-row batch not confirmed (%s); sending it again, "
                    "attempt %d of %d", len(rows), error, attempt + 1, MAX_SEND_ATTEMPTS,
                )
        raise WriteRetriesExhaustedError(
            f"a {len(rows)}-row batch could not be confirmed written after "
            f"{MAX_SEND_ATTEMPTS} attempts"
        )


def _dead_letter(kind: WriteKind, row: Dict[str, Any], reason: str) -> DeadLetter:
    """A refused row as the pipeline's dead letters look: nodes by id, relationships by ends."""
    if is_node_kind(kind):
        return DeadLetter("node", row.get("id"), reason, row)
    return DeadLetter("relationship", f"{row.get('start')} -> {row.get('end')}", reason, row)


def _in_global_window(output):
    """``finish_bundle`` must give each output its window explicitly."""
    if isinstance(output, beam.pvalue.TaggedOutput):
        return beam.pvalue.TaggedOutput(output.tag, GlobalWindows.windowed_value(output.value))
    return GlobalWindows.windowed_value(output)


RowsOfGroup = Callable[[Any], List[Dict[str, Any]]]


def _group_is_rows(group: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return group


class _WriteBatchesFn(beam.DoFn):
    def __init__(self, connection: Neo4jConnection, max_concurrent_writes: int,
                 max_rows_per_transaction: Optional[int], rows_of_group: RowsOfGroup) -> None:
        self._connection = connection
        self._max_concurrent_writes = max_concurrent_writes
        self._max_rows_per_transaction = max_rows_per_transaction
        self._rows_of_group = rows_of_group

    def setup(self) -> None:
        self._driver = self._connection.open_driver(
            max_connection_pool_size=self._max_concurrent_writes + 1,
            # A deadlock between concurrent batches clears in milliseconds: retry after
            # 0.1 s, not the driver's default 1 s, so a write slot does not sit idle.
            # Doubling still spans the driver's 30 s retry time for a lost server.
            initial_retry_delay=RETRY_FIRST_DELAY_S,
        )
        self._writer = _BatchWriter(self._driver, self._connection.database)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self._max_concurrent_writes, thread_name_prefix="neo4j-write"
        )
        self._shard_locks: Dict[Any, threading.Lock] = {}
        self._metrics = _SinkMetrics()

    def start_bundle(self) -> None:
        self._pending: List[concurrent.futures.Future] = []

    def process(self, batch: Tuple[Tuple[WriteKind, int], Iterable[Any]], *unused_after):
        (kind, shard), groups = batch
        if len(self._pending) >= self._max_concurrent_writes:
            yield from self._collect(concurrent.futures.FIRST_COMPLETED)
        self._pending.append(self._pool.submit(self._write_in_shard, kind, shard, list(groups)))

    def finish_bundle(self):
        for output in self._collect(concurrent.futures.ALL_COMPLETED):
            yield _in_global_window(output)
        self._metrics.record_memory()

    def teardown(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        driver = getattr(self, "_driver", None)
        if driver is not None:
            driver.close()

    def _write_in_shard(self, kind: WriteKind, shard: int, groups: List[Any]) -> List[_Outcome]:
        rows = [row for group in groups for row in self._rows_of_group(group)]
        if is_node_kind(kind):
            return self._write_in_transactions(kind, rows)
        lock = self._shard_locks.setdefault(shard, threading.Lock())
        with lock:
            return self._write_in_transactions(kind, rows)

    def _write_in_transactions(self, kind: WriteKind, rows: List[Dict[str, Any]]) -> List[_Outcome]:
        return [self._writer.write(kind, transaction)
                for transaction in split_into_transactions(rows, self._max_rows_per_transaction)]

    def _collect(self, return_when: str):
        """Wait for pending writes, record their metrics, yield their outputs."""
        done, not_done = concurrent.futures.wait(self._pending, return_when=return_when)
        self._pending = list(not_done)
        outcomes = []
        for future in done:
            try:
                outcomes.extend(future.result())
            except Exception:
                self._metrics.write_failures.inc()
                raise  # an infrastructure error: the bundle fails, the runner decides
        for outcome in outcomes:
            self._metrics.record(outcome)
            if outcome.rows_written:
                yield BatchWritten(
                    is_node=is_node_kind(outcome.kind),
                    rows=outcome.rows_written,
                    seconds=outcome.seconds,
                )
            for kind, row, reason in outcome.dead_letters:
                yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, _dead_letter(kind, row, reason))


#: The most write transactions the sink keeps in flight (a bound for the flags too).
MAX_CONCURRENT_WRITES = 64


def check_max_concurrent_writes(value: int) -> int:
    """``value`` if it is an integer from 1 to ``MAX_CONCURRENT_WRITES``, else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CONCURRENT_WRITES:
        raise ValueError(f"max_concurrent_writes must be an integer from 1 to "
                         f"{MAX_CONCURRENT_WRITES}, got {value!r}")
    return value


class _WriteBatches(beam.PTransform):
    """Writes ``((kind, shard), groups of rows)`` batches to Neo4j; see the module docstring.

    Returns a tagged result: ``written`` has one ``BatchWritten`` per written batch,
    ``dead_letter`` a ``DeadLetter`` for every row Neo4j refused. ``after``: optional
    side input that must be complete before the first batch is written (how every node
    is written before any relationship that needs it).
    """

    def __init__(self, connection: Neo4jConnection, max_concurrent_writes: int,
                 max_rows_per_transaction: Optional[int], rows_of_group: RowsOfGroup,
                 after: Optional[beam.pvalue.AsSideInput] = None) -> None:
        super().__init__()
        self._connection = connection
        self._max_concurrent_writes = max_concurrent_writes
        self._after = after
        self._max_rows_per_transaction = max_rows_per_transaction
        self._rows_of_group = rows_of_group

    def expand(self, batches):
        side_inputs: Sequence[Any] = [self._after] if self._after is not None else []
        return batches | "WriteBatches" >> beam.ParDo(
            _WriteBatchesFn(self._connection, self._max_concurrent_writes,
                            self._max_rows_per_transaction, self._rows_of_group), *side_inputs
        ).with_outputs(DEAD_LETTER_TAG, main="written")


class WriteToNeo4j(beam.PTransform):
    """``(node batches, relationship batches)`` (``transforms.batch.BatchRowGroups``'s
    output) → Neo4j: every node batch before the first relationship batch (a
    relationship needs both its ends). Returns the ``DeadLetter``s of both writes.

    ``max_rows_per_transaction``: a batch with more rows is written in several
    transactions of at most that many rows. ``rows_of_group``: turns one element of a
    batch into its rows (default: the element is a list of rows); a module-level
    function or a picklable callable object. ``max_concurrent_writes``: transactions
    in flight at once, 1 to ``MAX_CONCURRENT_WRITES``.
    """

    def __init__(
        self,
        connection: Neo4jConnection,
        max_rows_per_transaction: Optional[int] = None,
        max_concurrent_writes: int = 5,
        rows_of_group: RowsOfGroup = _group_is_rows,
    ) -> None:
        super().__init__()
        self._connection = connection
        self._max_rows_per_transaction = max_rows_per_transaction
        self._max_concurrent_writes = check_max_concurrent_writes(max_concurrent_writes)
        self._rows_of_group = rows_of_group

    def expand(self, node_and_relationship_batches):
        node_batches, relationship_batches = node_and_relationship_batches
        node_writes = node_batches | "WriteNodes" >> _WriteBatches(
            self._connection, self._max_concurrent_writes, self._max_rows_per_transaction,
            self._rows_of_group)
        nodes_written = node_writes.written | "NodesWritten" >> beam.combiners.Count.Globally()
        relationship_writes = relationship_batches | "WriteRelationships" >> _WriteBatches(
            self._connection, self._max_concurrent_writes, self._max_rows_per_transaction,
            self._rows_of_group, after=beam.pvalue.AsSingleton(nodes_written))
        return (
            (node_writes.dead_letter, relationship_writes.dead_letter)
            | "WriteDeadLetters" >> beam.Flatten()
        )
