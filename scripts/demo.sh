#!/usr/bin/env bash
# The README's first command: install what is missing, then run local Kafka + Redis + a
# worker + the generator's SaaS world (stream-app demo). Ctrl-C stops everything.
# Extra arguments go to `stream-app demo` (e.g. --rate 50 --workers 2 --prometheus).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "demo: preparing .venv, Debian packages and Kafka jars (the first run takes a few minutes) ..."
bash scripts/bootstrap.sh
exec .venv/bin/stream-app demo "$@"
