"""Measure the plan stage (template checks, the component step, copies, parts) on a
tenant already in Neo4j: seconds and memory, as JSON on stdout.

    .venv/bin/python scripts/measure_plan.py --tenant-id T --scale-factor 2.5

The connection comes from the environment as for every command (NEO4J_URI, ...).
Memory is the peak of Python allocations during the plan (tracemalloc, which sees
numpy's arrays) and the process's peak RSS; nothing is written to the database.
"""

import argparse
import json
import resource
import time
import tracemalloc

from pipelines.options import MAX_NEW_NODES
from pipelines.plan import plan_scale_up
from transforms.connection import Neo4jConnection
from transforms.model import TemplateSelection


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenant-id", required=True)
    parser.add_argument("--scale-factor", type=float, default=2.5)
    args = parser.parse_args()
    connection = Neo4jConnection.from_environment()
    with connection.open_driver() as driver:
        driver.verify_connectivity()
        tracemalloc.start()
        started = time.perf_counter()
        plan = plan_scale_up(driver, connection.database, TemplateSelection(args.tenant_id),
                             args.scale_factor, None, MAX_NEW_NODES)
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    print(json.dumps({
        "templates": plan.template_count, "components": plan.components.to_dict(),
        "new_nodes": plan.new_node_count, "new_relationships": plan.new_relationship_count,
        "parts": len(plan.parts), "seconds": round(seconds, 2),
        "python_peak_mb": round(peak / 2**20, 1),
        "process_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }, sort_keys=True))


if __name__ == "__main__":
    main()
