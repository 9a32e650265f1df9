#!/usr/bin/env bash
# Run the tests: ./run_tests.sh [pytest args]
#
# Creates .venv if missing, installs the project (-e '.[test]') when setup.py changed
# since the last install, fetches the Neo4j jars once (unless NEO4J_URI points at your
# own server), then runs pytest. The tests start one local Neo4j for the session.
set -euo pipefail
cd "$(dirname "$0")"

venv=.venv
python=$venv/bin/python
stamp=$venv/.installed-setup-py.sha256

if [[ ! -x $python ]]; then
    echo "==> creating $venv (python3 -m venv)"
    python3 -m venv "$venv"
fi

want=$(sha256sum setup.py | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    echo "==> installing the project and its test dependencies into $venv (pip install -e '.[test]')"
    "$python" -m pip install --disable-pip-version-check --progress-bar off -e '.[test]'
    echo "$want" > "$stamp"
else
    echo "==> $venv is up to date with setup.py"
fi

if [[ -z ${NEO4J_URI:-} ]]; then
    echo "==> Neo4j jars (fetched from Maven Central once, then cached)"
    "$python" -m pipelines.local_neo4j fetch
else
    echo "==> NEO4J_URI is set: the tests use $NEO4J_URI (its database is wiped between tests)"
fi

echo "==> pytest $*"
exec "$python" -m pytest "$@"
