#!/usr/bin/env bash
# THE test command: prepare the checkout (scripts/bootstrap.sh), then run pytest in .venv.
# Arguments go to pytest; none = the whole suite. Integration tests start their own
# Kafka and Redis (tests/conftest.py, docs/local-stack.md); nothing needs to be running.
#   bash scripts/test.sh                        # everything
#   bash scripts/test.sh -m "not integration"   # no servers
#   bash scripts/test.sh tests/integration/test_stack.py -x
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
