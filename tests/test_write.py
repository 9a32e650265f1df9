"""Unit tests of the sink's logic with a fake driver, through the demo loader's
``RowBatches`` handler (copy units are tested against a real Neo4j in
test_write_units.py)."""

import threading
import time

import apache_beam as beam
import neo4j.exceptions
import pytest
from apache_beam.metrics import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline

from pipelines.beam_job import LOCAL_RUNNER
from transforms.cypher import node_kind, relationship_kind
from transforms.connection import MAX_SEND_ATTEMPTS, CommitNotConfirmedError
from transforms.write import RowBatches, WriteToNeo4j, _Transactions

NODE = node_kind("Resource")
REL = relationship_kind("USES", "Resource", "Resource")


class FakeResult:
    def __init__(self, written=None, records=()):
        self._written = written
        self._records = list(records)

    def single(self, strict=False):
        return {"written": self._written}

    def data(self):
        return self._records


class FakeTransaction:
    def __init__(self, driver):
        self._driver = driver

    def run(self, statement, rows=None):
        return FakeResult(written=self._driver.on_run(statement, rows))


class FakeReadTransaction:
    """Answers the sink's missing-ends query from the driver's ``missing_ends``."""

    def __init__(self, driver):
        self._driver = driver

    def run(self, statement, params):
        assert "OPTIONAL MATCH" in statement
        rows = params["rows"]
        return FakeResult(records=[{"i": i, "no_start": False, "no_end": True}
                                   for i, row in enumerate(rows)
                                   if row["id"] in self._driver.missing_ends])


class FakeSession:
    def __init__(self, driver):
        self._driver = driver

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute_write(self, fn):
        return self._driver.execute_write(fn)

    def execute_read(self, fn):
        return fn(FakeReadTransaction(self._driver))


class FakeDriver:
    """Records batches; ``fail_rows`` are refused as bad data, ``incomplete_commits``
    makes that many commits end with an unknown outcome, ``transient`` retries."""

    def __init__(self, fail_rows=(), incomplete_commits=0, transient=0, delay=0.0,
                 missing_ends=()):
        self.fail_rows = set(fail_rows)
        self.missing_ends = set(missing_ends)
        self.incomplete_commits = incomplete_commits
        self.transient = transient
        self.delay = delay
        self.written = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0

    def session(self, database, default_access_mode=None):
        return FakeSession(self)

    def execute_write(self, fn):
        while True:  # the real driver retries transient errors itself
            try:
                return fn(FakeTransaction(self))
            except neo4j.exceptions.TransientError:
                continue

    def on_run(self, statement, rows):
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(self.delay)
            with self.lock:
                if self.transient:
                    self.transient -= 1
                    raise neo4j.exceptions.TransientError._hydrate_neo4j(
                        code="Neo.TransientError.Transaction.DeadlockDetected", message="deadlock")
                bad = [row for row in rows if row["id"] in self.fail_rows]
                if bad:
                    raise neo4j.exceptions.ClientError._hydrate_neo4j(
                        code="Neo.ClientError.Statement.TypeError", message=f"bad {bad[0]['id']}")
                if self.incomplete_commits:
                    self.incomplete_commits -= 1
                    self.written.extend(rows)  # the commit may have happened: unknown outcome
                    raise neo4j.exceptions.IncompleteCommit("connection lost during commit")
                self.written.extend(rows)
                return len([row for row in rows if row["id"] not in self.missing_ends])
        finally:
            with self.lock:
                self.in_flight -= 1

    def close(self):
        pass


def rows(n, prefix="n"):
    return [{"id": f"{prefix}{i}"} for i in range(n)]


def write(driver, kind, rows_):
    """One batch of ``rows_`` through the handler; its one outcome."""
    (outcome,) = RowBatches().write(_Transactions(driver, "neo4j"), ((kind, 0), [rows_]))
    return outcome


def test_bad_rows_are_isolated_and_dead_lettered_the_rest_is_written():
    driver = FakeDriver(fail_rows={"n3", "n7"})
    outcome = write(driver, NODE, rows(10))
    assert outcome.nodes_written == 8
    assert sorted(row["id"] for row in driver.written) == sorted(f"n{i}" for i in range(10) if i not in (3, 7))
    assert [(letter.kind, letter.identity) for letter in outcome.dead_letters] == [
        ("node", "n3"), ("node", "n7")]
    assert "Neo.ClientError.Statement.TypeError" in outcome.dead_letters[0].reason


def test_relationship_rows_without_an_end_are_not_counted_but_dead_lettered():
    driver = FakeDriver(missing_ends={"r2", "r5"})
    rows_ = [{"id": f"r{i}", "start": "a", "end": f"b{i}", "props": {}} for i in range(8)]
    outcome = write(driver, REL, rows_)
    assert outcome.relationships_written == 6
    assert [(letter.record["id"], letter.reason) for letter in outcome.dead_letters] == [
        ("r2", "no node matches its end"), ("r5", "no node matches its end")]


def test_unknown_commit_outcome_is_sent_again_and_counted_as_retry():
    driver = FakeDriver(incomplete_commits=1)
    outcome = write(driver, NODE, rows(5))
    assert outcome.rows_written == 5 and outcome.retries == 1
    assert len(driver.written) == 10  # sent twice: only MERGE keeps the graph exact


def test_unknown_commit_outcome_gives_up_with_a_named_error():
    driver = FakeDriver(incomplete_commits=MAX_SEND_ATTEMPTS)
    with pytest.raises(CommitNotConfirmedError, match=f"after {MAX_SEND_ATTEMPTS} attempts"):
        write(driver, NODE, rows(2))


def test_transient_errors_retried_by_the_driver_are_counted():
    driver = FakeDriver(transient=2)
    outcome = write(driver, NODE, rows(3))
    assert outcome.rows_written == 3 and outcome.retries == 2


def test_unsafe_kind_dead_letters_every_row_without_sending():
    driver = FakeDriver()
    outcome = write(driver, relationship_kind("BAD TYPE", "Resource", "Resource"),
                    [{"start": "a", "end": "b", "props": {}}])
    assert driver.written == [] and len(outcome.dead_letters) == 1


def test_infrastructure_errors_are_raised_not_swallowed():
    class DeadDriver(FakeDriver):
        def execute_write(self, fn):
            raise neo4j.exceptions.ServiceUnavailable("server gone")

    with pytest.raises(neo4j.exceptions.ServiceUnavailable):
        write(DeadDriver(), NODE, rows(1))


# The DoFn builds its driver from the connection in setup(); FnApiRunner runs it in
# this process, so a fake connection can hand out one shared fake driver.
_SHARED_DRIVERS = {}


class FakeConnection:
    database = "neo4j"

    def __init__(self, name):
        self.name = name

    def open_driver(self, **unused):
        return _SHARED_DRIVERS[self.name]


@pytest.mark.parametrize("limit", [1, 3])
def test_sink_keeps_at_most_the_limit_in_flight_and_really_overlaps(limit):
    driver = _SHARED_DRIVERS[f"limit{limit}"] = FakeDriver(delay=0.05)
    batches = [((NODE, i % 4), [rows(4, prefix=f"b{i}-"), rows(6, prefix=f"c{i}-")]) for i in range(12)]
    pipeline = BeamTestPipeline(runner=LOCAL_RUNNER)
    _ = pipeline | beam.Create(batches) | WriteToNeo4j(
        FakeConnection(f"limit{limit}"), RowBatches(), max_concurrent_writes=limit)
    result = pipeline.run()
    result.wait_until_finish()
    assert len(driver.written) == 120
    assert driver.max_in_flight == limit
    counters = {c.key.metric.name: c.committed for c in result.metrics().query(
        MetricsFilter().with_namespace("tenant_scaler"))["counters"]}
    assert counters["nodes_written"] == 120 and counters["batches_written"] == 12
    concurrency = [d.committed for d in result.metrics().query(
        MetricsFilter().with_name("write_concurrency"))["distributions"]]
    assert max(d.max for d in concurrency) == limit


def test_relationship_batches_of_one_shard_never_overlap():
    driver = _SHARED_DRIVERS["shards"] = FakeDriver(delay=0.05)
    batches = [((REL, 0), [[{"id": f"r{i}", "start": "a", "end": "b", "props": {}}]]) for i in range(6)]
    pipeline = BeamTestPipeline(runner=LOCAL_RUNNER)
    _ = pipeline | beam.Create(batches) | WriteToNeo4j(
        FakeConnection("shards"), RowBatches(), max_concurrent_writes=5)
    pipeline.run().wait_until_finish()
    assert len(driver.written) == 6 and driver.max_in_flight == 1


def test_concurrency_limit_is_validated():
    with pytest.raises(ValueError, match="max_concurrent_writes"):
        WriteToNeo4j(FakeConnection("x"), RowBatches(), max_concurrent_writes=0)
    with pytest.raises(TypeError, match="handler"):
        WriteToNeo4j(FakeConnection("x"), object())
