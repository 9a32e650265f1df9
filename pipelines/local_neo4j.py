"""``python -m pipelines.local_neo4j {start,fetch}``: the local Neo4j server's command.

The server itself lives in ``pipelines.infra.neo4j_server``; this module keeps the
command where users and scripts call it.
"""

import sys

from pipelines.infra.neo4j_server import main

if __name__ == "__main__":
    sys.exit(main())
