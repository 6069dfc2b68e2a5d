#!/usr/bin/env bash
# THE benchmark command: prepare the checkout (scripts/bootstrap.sh), add the `bench` extra
# (Quix Streams peer, py-spy), then run the harness. Arguments go to `python -m benchmarks.bench`;
# it starts its own Kafka + Redis (stream_app.stack) and stops them at the end.
#   bash scripts/bench.sh                                   # 200k events, 100k entities
#   bash scripts/bench.sh --entities 1000000 --phases recovery --stores redis   # the 1M-entity run
#   bash scripts/bench.sh --entities 1000000 --stores redis --doc   # every goal of issue #11 from one run
#   bash scripts/bench.sh --profile 60 --doc                # py-spy the worker; update docs/performance.md
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh
if ! .venv/bin/python -c 'import quixstreams' >/dev/null 2>&1 || [[ ! -x .venv/bin/py-spy ]]; then
  .venv/bin/python -m pip install -q -e ".[test,bench]"
fi
exec .venv/bin/python -m benchmarks.bench "$@"
