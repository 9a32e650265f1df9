"""``python -m pipelines.flink {cluster,flags,fetch,worker-pool}``: the local Flink's command.

The cluster, the job server jar and ``flink_options`` live in ``pipelines.infra.flink``;
this module keeps the command where users and scripts call it.
"""

import sys

from pipelines.infra.flink import main

if __name__ == "__main__":
    sys.exit(main())
