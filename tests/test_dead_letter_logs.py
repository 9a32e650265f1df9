"""No megabyte row reaches a log line or an error line (issue 13): a row Neo4j refuses
is logged as one short line (what it was, why, cut), and an error that quotes a value
ends a command in one line of bounded length. Against a real Neo4j, whose refusal of a
property quotes the refused value in full.
"""

from __future__ import annotations

import logging

import apache_beam as beam
from apache_beam.metrics import MetricsFilter

from pipelines.beam_job import DEAD_LETTER_LOG_CHARS, log_dead_letter, pipeline_options
from pipelines.cli import MAX_ERROR_CHARS, exit_code_of
from tests.support import scalar
from transforms.cypher import node_kind
from transforms.model import DeadLetter
from transforms.write import RowBatches, WriteToNeo4j

MEGABYTE = 1_000_000
#: A property value Neo4j refuses (a map), quoting it whole in its message.
REFUSED = {"blob": {"text": "y" * MEGABYTE}}


def leaked(text: str) -> bool:
    return "y" * 1000 in text


def test_a_refused_megabyte_row_is_logged_as_one_short_line(neo4j_graph, neo4j_driver, caplog):
    caplog.set_level(logging.INFO)
    rows = [{"id": "dl-1"}, {"id": "dl-big", **REFUSED}, {"id": "dl-2"}]
    pipeline = beam.Pipeline(options=pipeline_options([]))
    written = (pipeline | beam.Create([((node_kind("Resource"), 0), [rows])])
               | WriteToNeo4j(neo4j_graph, RowBatches(), max_concurrent_writes=1))
    written.dead_letter | beam.Map(log_dead_letter)
    result = pipeline.run()
    result.wait_until_finish()

    dead_letters = sum(counter.committed for counter in result.metrics().query(
        MetricsFilter().with_name("dead_letters"))["counters"])
    assert dead_letters == 1
    assert scalar(neo4j_driver, "MATCH (n:Resource) RETURN collect(n.id)") in (["dl-1", "dl-2"],
                                                                               ["dl-2", "dl-1"])
    [line] = [r.getMessage() for r in caplog.records if r.name == "dead_letters"]
    assert line.startswith("not written: node dl-big (Neo.ClientError.Statement.TypeError: ")
    assert "\n" not in line and len(line) < 3 * DEAD_LETTER_LOG_CHARS
    assert line.endswith(" characters))")  # the cut says how long the reason was
    assert not any(leaked(record.getMessage()) or leaked(record.exc_text or "")
                   for record in caplog.records)


def test_a_dead_letter_with_line_breaks_is_one_line(caplog):
    caplog.set_level(logging.INFO)
    log_dead_letter(DeadLetter("relationship", "a\nb -> c", "refused:\n" + "z" * MEGABYTE,
                               record={"props": {"blob": "z" * MEGABYTE}}))
    [line] = [r.getMessage() for r in caplog.records if r.name == "dead_letters"]
    assert line.startswith("not written: relationship a b -> c (refused: zzz")
    assert line.endswith(f"… ({MEGABYTE + 9:,} characters))")
    assert len(line) < 3 * DEAD_LETTER_LOG_CHARS


def test_an_error_that_quotes_a_megabyte_value_ends_the_command_in_one_short_line(
        neo4j_graph, neo4j_driver, capsys):
    def refused_write() -> int:
        neo4j_driver.execute_query("CREATE (n:Resource) SET n = $row", row=REFUSED)
        return 0

    assert exit_code_of(neo4j_graph, refused_write) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: Neo4j at {neo4j_graph.uri} failed: {{neo4j_code: "
                           "Neo.ClientError.Statement.TypeError}")
    assert len(line) < MAX_ERROR_CHARS + 100 and not leaked(line)
    assert scalar(neo4j_driver, "MATCH (n) RETURN count(n)") == 0
