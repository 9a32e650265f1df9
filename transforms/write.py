"""Write: the Neo4j sink. Batches in, transactions out, bounded parallelism;
``WriteToNeo4j`` is the one public transform.

The sink knows how to run transactions well; what one batch is and how it becomes a
transaction is its handler's (as RunInference's model handlers are):

* ``CopyUnits`` (the scale-up): a batch is a copy unit (``transforms.replicate``):
  one part of the templates in one replica, written in one transaction that
  ``CREATE``s the copies and every relationship among them and to shared nodes, or a
  link unit (relationships between slices of a large component).
* ``RowBatches`` (the demo loader): a batch is ``((kind, shard), groups of rows)`` from
  ``transforms.batch.BatchRowGroups``, written with one ``MERGE`` statement per kind.

Why it is shaped like this:

* **Exactly once, even when runs race.** Beam retries bundles, users re-run failed
  operations, two runs may race. A copy unit's transaction first merges its ledger
  node ``(:ScaleBatch {key})`` (a uniqueness constraint on ``key``): a second
  transaction with the same key waits for the first to commit, then finds it written
  and writes nothing. The key is fixed by the plan, so a re-run skips what was
  written and writes the rest, and the copies can be ``CREATE``d: no index lookup to
  find whether they exist, no lock on anyone else's node. A commit whose outcome is
  unknown (``IncompleteCommit``, which the driver does not retry) is simply sent again.
  Row batches ``MERGE`` on deterministic keys instead.
* **Nothing overwritten.** ``CREATE`` never touches an existing node. A unit whose new
  ids already exist on some ``:Resource`` writes nothing; the sink sets those rows
  aside as dead letters (they are not this operation's) and writes the rest.
* **Really concurrent, bounded.** A single Beam worker calls ``process`` one batch at a
  time, so the DoFn keeps up to ``max_concurrent_writes`` transactions in flight on its
  own thread pool and blocks when all are busy (which also bounds memory). Copy units
  of different parts touch disjoint new nodes; their relationships to shared nodes are
  sorted by node, so concurrent transactions lock shared nodes in one order.
* **Nothing lost.** A batch that Neo4j refuses for its data is cut into pieces (each
  with a ledger key of its own) until the offending rows are isolated; those go to
  the ``dead_letter`` output (counted), the rest is written. A relationship whose
  existing end is gone is a dead letter by name. Infrastructure errors (server gone,
  auth) are counted and re-raised so that the run fails visibly and can be resumed.
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

from transforms.batch import split_into_transactions
from transforms.connection import Neo4jConnection, run_transaction
from transforms.cypher import (
    COPY_LINKS,
    COPY_UNIT,
    EXISTING_IDS,
    MISSING_NODES,
    UnsafeIdentifierError,
    WriteKind,
    is_node_kind,
    missing_ends_statement,
    write_statement,
)
from transforms.model import DEAD_LETTER_TAG, METRICS_NAMESPACE, DeadLetter, Metric
from transforms.replicate import UnitRows

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
#: The most write transactions the sink keeps in flight (a bound for the flags too).
MAX_CONCURRENT_WRITES = 64
#: Codes of client errors caused by the rows of a batch rather than by the system.
_DATA_ERROR_PREFIXES = ("Neo.ClientError.Statement.", "Neo.ClientError.Schema.")
_NOT_DATA_ERRORS = ("Neo.ClientError.Statement.SyntaxError",)


@dataclasses.dataclass(frozen=True)
class BatchWritten:
    """What one written transaction reports downstream (and to the run report)."""

    nodes: int
    relationships: int
    seconds: float


@dataclasses.dataclass
class _Outcome:
    """What a pool thread measured for one transaction; turned into metrics on the DoFn
    thread."""

    nodes_written: int = 0
    relationships_written: int = 0
    already_written: bool = False
    seconds: float = 0.0
    retries: int = 0
    concurrency: int = 0
    dead_letters: List[DeadLetter] = dataclasses.field(default_factory=list)

    @property
    def rows_written(self) -> int:
        return self.nodes_written + self.relationships_written


def _is_data_error(error: neo4j.exceptions.Neo4jError) -> bool:
    code = error.code or ""
    return code.startswith(_DATA_ERROR_PREFIXES) and code not in _NOT_DATA_ERRORS


def _reason(error: neo4j.exceptions.Neo4jError) -> str:
    return f"{error.code}: {error.message}"


def check_max_concurrent_writes(value: int) -> int:
    """``value`` if it is an integer from 1 to ``MAX_CONCURRENT_WRITES``, else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CONCURRENT_WRITES:
        raise ValueError(f"max_concurrent_writes must be an integer from 1 to "
                         f"{MAX_CONCURRENT_WRITES}, got {value!r}")
    return value


# --------------------------------------------------------------------------- transactions


class _Transactions:
    """The sink's transactions (``connection.run_transaction``'s rules), counting the
    re-runs of each into its outcome. Thread-safe: a session per transaction."""

    def __init__(self, driver: neo4j.Driver, database: str) -> None:
        self.driver = driver
        self.database = database

    def write(self, work: Callable[[neo4j.ManagedTransaction], Any], outcome: _Outcome,
              rows: int) -> Any:
        value, reruns = run_transaction(self.driver, self.database, work, neo4j.WRITE_ACCESS,
                                        f"a {rows}-row batch")
        outcome.retries += reruns
        return value

    def read(self, query: str, **params: Any) -> List[Dict[str, Any]]:
        value, _ = run_transaction(self.driver, self.database,
                                   lambda tx: tx.run(query, params).data(), neo4j.READ_ACCESS,
                                   "a read")
        return value


# --------------------------------------------------------------------------- handlers


class CopyUnits:
    """The scale-up's handler: a batch is a ``CopyUnit`` or ``LinkUnit``, expanded by
    ``rows_of`` (``transforms.replicate.UnitRowsOf``) into ``UnitRows`` and written in one
    transaction, exactly once per unit key (module docstring)."""

    def __init__(self, rows_of: Callable[[Any], UnitRows], operation_id: str) -> None:
        self._rows_of = rows_of
        self._operation_id = operation_id

    def write(self, transactions: _Transactions, unit: Any) -> List[_Outcome]:
        rows = self._rows_of(unit)
        if not rows.nodes and not rows.links:
            return []
        outcome = _Outcome()
        self._write(transactions, rows, outcome)
        return [outcome]

    def _write(self, transactions: _Transactions, rows: UnitRows, outcome: _Outcome) -> None:
        while True:
            try:
                result = transactions.write(lambda tx: self._run(tx, rows),
                                            outcome, len(rows.nodes) + rows.relationships)
            except neo4j.exceptions.ClientError as error:
                if not _is_data_error(error):
                    raise
                self._write_in_pieces(transactions, rows, outcome, _reason(error))
                return
            to_write, clashes, nodes, relationships = result
            if not to_write:
                outcome.already_written = True
                return
            if not clashes:
                break
            existing = transactions.read(
                EXISTING_IDS, ids=[node["props"]["id"] for node in rows.nodes],
                operation_id=self._operation_id)
            if any(row["ours"] for row in existing):
                # Copies of this unit written piece by piece by an earlier run: finish
                # the same way, each piece has its own ledger key.
                self._write_in_pieces(transactions, rows, outcome, None)
                return
            rows = _without_nodes(rows, {row["id"] for row in existing}, outcome)
            if not rows.nodes:
                return
        outcome.nodes_written += nodes
        outcome.relationships_written += relationships
        # A link whose other end has no copy in its replica writes nothing: left out by plan.
        if relationships < rows.relationships and not rows.links:
            outcome.dead_letters.extend(self._gone_ends(transactions, rows))

    def _run(self, tx: neo4j.ManagedTransaction, rows: UnitRows) -> Tuple[bool, int, int, int]:
        params = {"key": rows.key, "operation_id": self._operation_id}
        if rows.nodes:
            result = tx.run(COPY_UNIT, params, nodes=rows.nodes, internal=rows.internal,
                            outgoing=rows.outgoing, incoming=rows.incoming,
                            ids=[node["props"]["id"] for node in rows.nodes])
        else:
            result = tx.run(COPY_LINKS, params, rows=rows.links)
        record = result.single(strict=True)
        relationships = result.consume().counters.relationships_created
        # CREATE writes every node row or fails: the node count needs no counter (which
        # would include the ledger node).
        nodes = len(rows.nodes) if record["to_write"] and not record["clashes"] else 0
        return record["to_write"], record["clashes"], nodes, relationships

    def _write_in_pieces(self, transactions: _Transactions, rows: UnitRows, outcome: _Outcome,
                         reason: Optional[str]) -> None:
        """Write ``rows`` as smaller units, each with a ledger key of its own: each node
        with its relationships to shared nodes, then the relationships between them
        (by id); one row that still fails is a dead letter with ``reason`` (Neo4j's
        error). Used when Neo4j refuses the whole unit for its data, or when an earlier
        run wrote the unit this way."""
        if len(rows.nodes) + len(rows.links) <= 1:
            outcome.dead_letters.extend(_dead_letters(rows, reason or "refused by Neo4j"))
            return
        for position, node in enumerate(rows.nodes):
            self._write(transactions, UnitRows(
                f"{rows.key}/node/{position}", nodes=[node],
                outgoing=[{**rel, "own": 0} for rel in rows.outgoing if rel["own"] == position],
                incoming=[{**rel, "own": 0} for rel in rows.incoming if rel["own"] == position]),
                outcome)
        refused = {letter.identity for letter in outcome.dead_letters if letter.kind == "node"}
        links = list(rows.links)
        for rel in rows.internal:
            start, end = (rows.nodes[rel[end]]["props"]["id"] for end in ("s", "e"))
            if start in refused or end in refused:
                outcome.dead_letters.append(DeadLetter(
                    "relationship", rel["props"].get("template_source_rel_id"),
                    "an end of it was refused by Neo4j"))
            else:
                links.append({"start": start, "end": end, "type": rel["type"], "props": rel["props"]})
        if rows.links:  # a link unit refused whole: one link at a time
            for position, link in enumerate(links):
                self._write(transactions, UnitRows(f"{rows.key}/link/{position}", links=[link]), outcome)
        elif links:
            self._write(transactions, UnitRows(f"{rows.key}/links", links=links), outcome)
        # The unit is complete: later runs skip it rather than try it whole again.
        transactions.write(lambda tx: tx.run(COPY_LINKS, key=rows.key, rows=[],
                                             operation_id=self._operation_id).consume(),
                           outcome, 0)

    def _gone_ends(self, transactions: _Transactions, rows: UnitRows) -> List[DeadLetter]:
        """The relationships of a written unit whose existing end node is gone."""
        others = [rel["other"] for rel in (*rows.outgoing, *rows.incoming)]
        gone = {row["element_id"] for row in transactions.read(MISSING_NODES, element_ids=others)}
        return [DeadLetter("relationship", f"{rel['type']} of {rows.nodes[rel['own']]['props']['id']}",
                           f"its other end {rel['other']} no longer exists")
                for rel in (*rows.outgoing, *rows.incoming) if rel["other"] in gone]


def _without_nodes(rows: UnitRows, ids: set, outcome: _Outcome) -> UnitRows:
    """``rows`` without the nodes of ``ids`` (which exist already, not as this
    operation's: dead letters) and their relationships (dead letters too)."""
    keep = [i for i, node in enumerate(rows.nodes) if node["props"]["id"] not in ids]
    for node in rows.nodes:
        if node["props"]["id"] in ids:
            outcome.dead_letters.append(DeadLetter(
                "node", node["props"]["id"],
                "a node with this id already exists and is not this operation's copy: not overwritten"))
    new_position = {old: new for new, old in enumerate(keep)}
    kept = UnitRows(rows.key, nodes=[rows.nodes[i] for i in keep])
    for rel in rows.internal:
        if rel["s"] in new_position and rel["e"] in new_position:
            kept.internal.append({**rel, "s": new_position[rel["s"]], "e": new_position[rel["e"]]})
        else:
            outcome.dead_letters.append(DeadLetter("relationship", rel["props"].get("template_source_rel_id"),
                                                   "an end of it was not written (its id exists)"))
    for side, kept_side in ((rows.outgoing, kept.outgoing), (rows.incoming, kept.incoming)):
        for rel in side:
            if rel["own"] in new_position:
                kept_side.append({**rel, "own": new_position[rel["own"]]})
            else:
                outcome.dead_letters.append(DeadLetter("relationship", rel["props"].get("template_source_rel_id"),
                                                       "its copy end was not written (its id exists)"))
    return kept


def _dead_letters(rows: UnitRows, reason: str) -> List[DeadLetter]:
    """One piece that Neo4j refuses: its node and every relationship it carries."""
    letters = [DeadLetter("node", node["props"]["id"], reason) for node in rows.nodes]
    letters += [DeadLetter("relationship", rel["props"].get("template_source_rel_id"), reason)
                for rel in (*rows.internal, *rows.outgoing, *rows.incoming, *rows.links)]
    return letters


RowsOfGroup = Callable[[Any], List[Dict[str, Any]]]


def _group_is_rows(group: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return group


class RowBatches:
    """The demo loader's handler: a batch is ``((kind, shard), groups)``, written with
    ``write_statement(kind)`` in transactions of at most ``max_rows_per_transaction``
    rows. Relationship batches of one shard never run at once (they touch one shard's
    nodes); a batch Neo4j refuses is split in halves until the bad rows are isolated."""

    def __init__(self, max_rows_per_transaction: Optional[int] = None,
                 rows_of_group: RowsOfGroup = _group_is_rows) -> None:
        self._max_rows_per_transaction = max_rows_per_transaction
        self._rows_of_group = rows_of_group
        self._shard_locks: Dict[Any, threading.Lock] = {}
        self._shard_locks_lock = threading.Lock()

    def __getstate__(self):
        return {"_max_rows_per_transaction": self._max_rows_per_transaction,
                "_rows_of_group": self._rows_of_group}

    def __setstate__(self, state):
        self.__init__(state["_max_rows_per_transaction"], state["_rows_of_group"])

    def write(self, transactions: _Transactions, batch: Tuple[Tuple[WriteKind, int], Iterable[Any]]
              ) -> List[_Outcome]:
        (kind, shard), groups = batch
        rows = [row for group in groups for row in self._rows_of_group(group)]
        if is_node_kind(kind):
            return self._write_all(transactions, kind, rows)
        with self._shard_locks_lock:
            lock = self._shard_locks.setdefault(shard, threading.Lock())
        with lock:
            return self._write_all(transactions, kind, rows)

    def _write_all(self, transactions: _Transactions, kind: WriteKind,
                   rows: List[Dict[str, Any]]) -> List[_Outcome]:
        return [self._write_one(transactions, kind, piece)
                for piece in split_into_transactions(rows, self._max_rows_per_transaction)]

    def _write_one(self, transactions: _Transactions, kind: WriteKind,
                   rows: Sequence[Dict[str, Any]]) -> _Outcome:
        outcome = _Outcome()
        try:
            statement = write_statement(kind)
        except UnsafeIdentifierError as error:
            outcome.dead_letters = [_row_dead_letter(kind, row, str(error)) for row in rows]
            return outcome
        self._write_or_split(transactions, statement, kind, list(rows), outcome)
        return outcome

    def _write_or_split(self, transactions: _Transactions, statement: str, kind: WriteKind,
                        rows: List[Dict[str, Any]], outcome: _Outcome) -> None:
        try:
            written = transactions.write(
                lambda tx: tx.run(statement, rows=rows).single(strict=True)["written"],
                outcome, len(rows))
        except neo4j.exceptions.ClientError as error:
            if not _is_data_error(error):
                raise
            if len(rows) == 1:
                outcome.dead_letters.append(_row_dead_letter(kind, rows[0], _reason(error)))
                return
            middle = len(rows) // 2
            self._write_or_split(transactions, statement, kind, rows[:middle], outcome)
            self._write_or_split(transactions, statement, kind, rows[middle:], outcome)
            return
        written = min(written, len(rows))
        if is_node_kind(kind):
            outcome.nodes_written += written
            return
        outcome.relationships_written += written
        if written < len(rows):
            missing = transactions.read(missing_ends_statement(kind), rows=rows)
            for record in missing:
                ends = [end for end, gone in (("start", record["no_start"]),
                                              ("end", record["no_end"])) if gone]
                outcome.dead_letters.append(_row_dead_letter(
                    kind, rows[record["i"]], "no node matches its " + " and ".join(ends)))


def _row_dead_letter(kind: WriteKind, row: Dict[str, Any], reason: str) -> DeadLetter:
    """A refused row: nodes by id, relationships by ends."""
    if is_node_kind(kind):
        return DeadLetter("node", row.get("id"), reason, row)
    return DeadLetter("relationship", f"{row.get('start')} -> {row.get('end')}", reason, row)


# --------------------------------------------------------------------------- the DoFn


class _SinkMetrics:
    """All metrics of the sink in one place; used only from the DoFn's own thread."""

    def __init__(self) -> None:
        ns = METRICS_NAMESPACE
        self.nodes = Metrics.counter(ns, Metric.NODES_WRITTEN)
        self.relationships = Metrics.counter(ns, Metric.RELATIONSHIPS_WRITTEN)
        self.batches = Metrics.counter(ns, Metric.BATCHES_WRITTEN)
        self.already_written = Metrics.counter(ns, Metric.BATCHES_ALREADY_WRITTEN)
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
            self.nodes.inc(outcome.nodes_written)
            self.relationships.inc(outcome.relationships_written)
            WRITE_PROGRESS.add(outcome.nodes_written, outcome.relationships_written)
            self.batches.inc()
            self.batch_size.update(outcome.rows_written)
            self.write_latency_ms.update(int(outcome.seconds * 1000))
            self.write_concurrency.update(outcome.concurrency)
        if outcome.already_written:
            self.already_written.inc()
        if outcome.retries:
            self.retries.inc(outcome.retries)
        if outcome.dead_letters:
            self.dead_letters.inc(len(outcome.dead_letters))

    def record_memory(self) -> None:
        rss_mb = psutil.Process().memory_info().rss // (1024 * 1024)
        self.rss_mb.set(rss_mb)
        self.rss_mb_distribution.update(rss_mb)


def _in_global_window(output):
    """``finish_bundle`` must give each output its window explicitly."""
    if isinstance(output, beam.pvalue.TaggedOutput):
        return beam.pvalue.TaggedOutput(output.tag, GlobalWindows.windowed_value(output.value))
    return GlobalWindows.windowed_value(output)


class _WriteFn(beam.DoFn):
    def __init__(self, connection: Neo4jConnection, handler: Any, max_concurrent_writes: int) -> None:
        self._connection = connection
        self._handler = handler
        self._max_concurrent_writes = max_concurrent_writes

    def setup(self) -> None:
        self._driver = self._connection.open_driver(
            max_connection_pool_size=self._max_concurrent_writes + 1,
            # A deadlock between concurrent batches clears in milliseconds: retry after
            # 0.1 s, not the driver's default 1 s, so a write slot does not sit idle.
            # Doubling still spans the driver's 30 s retry time for a lost server.
            initial_retry_delay=RETRY_FIRST_DELAY_S,
        )
        self._transactions = _Transactions(self._driver, self._connection.database)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self._max_concurrent_writes, thread_name_prefix="neo4j-write")
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        self._metrics = _SinkMetrics()

    def start_bundle(self) -> None:
        self._pending: List[concurrent.futures.Future] = []

    def process(self, batch: Any, *unused_after):
        if len(self._pending) >= self._max_concurrent_writes:
            yield from self._collect(concurrent.futures.FIRST_COMPLETED)
        self._pending.append(self._pool.submit(self._write, batch))

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

    def _write(self, batch: Any) -> List[_Outcome]:
        """On a pool thread: the handler's transactions for ``batch``, measured."""
        with self._in_flight_lock:
            self._in_flight += 1
            concurrency = self._in_flight
        started = time.perf_counter()
        try:
            outcomes = self._handler.write(self._transactions, batch)
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1
        seconds = time.perf_counter() - started
        for outcome in outcomes:
            outcome.concurrency = concurrency
            outcome.seconds = seconds / len(outcomes)
        return outcomes

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
                yield BatchWritten(outcome.nodes_written, outcome.relationships_written,
                                   outcome.seconds)
            for dead_letter in outcome.dead_letters:
                yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, dead_letter)


class WriteToNeo4j(beam.PTransform):
    """Batches → Neo4j, each written by ``handler`` (``CopyUnits`` or ``RowBatches``) with
    at most ``max_concurrent_writes`` transactions in flight (1 to
    ``MAX_CONCURRENT_WRITES``); see the module docstring.

    Returns a tagged result: ``written`` has one ``BatchWritten`` per written
    transaction, ``dead_letter`` a ``DeadLetter`` for every record Neo4j refused.
    ``after``: optional side input that must be complete before the first batch is
    written (how relationships wait for the nodes they need).
    """

    def __init__(self, connection: Neo4jConnection, handler: Any, max_concurrent_writes: int = 5,
                 after: Optional[beam.pvalue.AsSideInput] = None) -> None:
        super().__init__()
        if not callable(getattr(handler, "write", None)):
            raise TypeError(f"handler must have a write(transactions, batch) method, got {handler!r}")
        self._connection = connection
        self._handler = handler
        self._max_concurrent_writes = check_max_concurrent_writes(max_concurrent_writes)
        self._after = after

    def expand(self, batches):
        side_inputs: Sequence[Any] = [self._after] if self._after is not None else []
        return batches | "WriteBatches" >> beam.ParDo(
            _WriteFn(self._connection, self._handler, self._max_concurrent_writes), *side_inputs
        ).with_outputs(DEAD_LETTER_TAG, main="written")
