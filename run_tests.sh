#!/usr/bin/env bash
# Run the tests: ./run_tests.sh [pytest args]
#
# Creates .venv if missing, installs the project (-e '.[test]') when setup.py changed
# since the last install, fetches the Neo4j jars once (unless NEO4J_URI points at your
# own server), then runs pytest. The tests start one local Neo4j for the session.
set -euo pipefail
cd "$(dirname "$0")"

source scripts/venv.sh

if [[ -z ${NEO4J_URI:-} ]]; then
    echo "==> Neo4j jars (fetched from Maven Central once, then cached)"
    "$python" -m pipelines.local_neo4j fetch
else
    echo "==> NEO4J_URI is set: the tests use $NEO4J_URI (its database is wiped between tests)"
fi

echo "==> pytest $*"
exec "$python" -m pytest "$@"
