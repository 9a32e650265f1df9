"""Two writers of one operation at once, with no lease between them (the lease refuses
a second run; these race the writes themselves): the graph ends exact, no duplicates."""

import json
import subprocess
import sys
import time

from pipelines.demo.load import load_demo_tenant
from pipelines.operation import record
from pipelines.operation.validate import validate_operation
from tests.support import ROOT, fingerprint, scalar
from transforms.demo import DemoTenantSpec
from transforms.schema import ensure_schema

TENANT = "race-tenant"


def test_racing_writers_of_one_operation_write_every_copy_once(neo4j_graph, neo4j_driver):
    load_demo_tenant(neo4j_graph, DemoTenantSpec(TENANT, resources=200, seed=5))
    ensure_schema(neo4j_driver, neo4j_graph.database)
    before = fingerprint(neo4j_driver)
    lease = record.take_lease(neo4j_driver, neo4j_graph.database, "op-race", TENANT,
                              {"tenant_id": TENANT, "scale_factor": 3.5, "target_count": None,
                               "resource_types": None}, "(none: a test)", "race")
    timestamp = lease.generation_timestamp
    start_at = time.time() + 12  # both are importing Beam and planning before that
    racers = [subprocess.Popen([sys.executable, "-m", "tests.race_writer", TENANT, "3.5", "op-race",
                                timestamp, str(start_at)], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True) for _ in range(2)]
    counters = [json.loads(racer.communicate(timeout=300)[0].strip().splitlines()[-1])
                for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0]
    expected = 500  # round(200 * 2.5)
    nodes = scalar(neo4j_driver, "MATCH (n:Resource {scale_operation_id: 'op-race'}) RETURN count(n)")
    assert nodes == expected
    assert scalar(neo4j_driver, "MATCH (n:Resource) WITH n.id AS id, count(*) AS c WHERE c > 1 "
                                "RETURN count(id)") == 0
    # Each batch was written by one of them; the other found it written.
    assert sum(c.get("nodes_written", 0) for c in counters) == expected
    assert all(c.get("batches_already_written", 0) > 0 for c in counters) or \
        any(c.get("nodes_written", 0) == expected for c in counters)
    record.finish_operation(neo4j_driver, neo4j_graph.database, lease, record.SUCCEEDED)
    assert validate_operation(neo4j_driver, neo4j_graph.database, "op-race").ok
    assert fingerprint(neo4j_driver) == before
