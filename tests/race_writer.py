"""A test helper process: write one operation's copies with the scale-up pipeline,
with no operation record and no lease, so that tests can race two writers of the same
operation and see that the writes alone keep the graph exact.

    python -m tests.race_writer TENANT FACTOR OPERATION_ID TIMESTAMP START_AT

``START_AT`` (a ``time.time()``): the pipeline starts then, so racers start together.
Prints the JSON of the sink's counters on its last line.
"""

import json
import sys
import time

from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.beam_job import LOCAL_RUNNER, metric_totals
from pipelines.options import MAX_NEW_NODES
from pipelines.plan import plan_scale_up
from pipelines.scale_up import build_pipeline
from transforms.connection import Neo4jConnection
from transforms.model import TemplateSelection
from transforms.replicate import ReplicationSettings

import apache_beam as beam


def main(tenant: str, factor: str, operation_id: str, timestamp: str, start_at: str) -> None:
    connection = Neo4jConnection.from_environment()
    with connection.open_driver() as driver:
        plan = plan_scale_up(driver, connection.database, TemplateSelection(tenant),
                             float(factor), None, MAX_NEW_NODES, batch_size=40)
    settings = ReplicationSettings(operation_id, timestamp, plan.base_copies)
    pipeline = beam.Pipeline(options=PipelineOptions([f"--runner={LOCAL_RUNNER}"]))
    build_pipeline(pipeline, connection, plan, settings, max_concurrent_writes=4)
    time.sleep(max(0.0, float(start_at) - time.time()))
    result = pipeline.run()
    result.wait_until_finish()
    print(json.dumps(metric_totals(result)["counters"], sort_keys=True))


if __name__ == "__main__":
    main(*sys.argv[1:])
