#!/usr/bin/env bash
# Run the job: ./run_local.sh [--resources N] [scale_up flags, e.g. --scale-factor 3]
#
# Starts the project's local Neo4j (unless NEO4J_URI is set), loads a 5,000-resource
# demo tenant once, scales it x8 (5k -> 40k) and prints a summary of the run (--json:
# the JSON report instead). See python -m pipelines.run_local --help.
set -euo pipefail
cd "$(dirname "$0")"

source scripts/venv.sh >&2  # its messages too: stdout is for the result

exec "$python" -m pipelines.run_local "$@"
