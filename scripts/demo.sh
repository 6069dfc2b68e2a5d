#!/usr/bin/env bash
# The README's first command: install what is missing, then run local Kafka +
# Redis + a worker + the synthetic event generator (stream-app demo).
# Extra arguments go to `stream-app demo` (e.g. --rate 200 --workers 2).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/stream-app demo "$@"
