"""In-process measurement of state size per entity and family (docs/state-store.md, Memory model).

Feeds the seeded generator's log through each family's real engine step (tests.support.engine:
states kept in a dict, round-tripped through their stored form) and reports, per family, the
entities held and their bytes:

* ``stored``: the msgpack bytes of each state as a checkpoint writes it (the Redis hash field
  value; Redis adds its own per-field overhead, see the sizing rule in docs/state-store.md);
* ``python``: what the states and the index grew the interpreter's heap by (tracemalloc), per
  entity: the worker's RSS share, without the interpreter, Faust and the label series.

No Kafka, no Redis, no worker: cheap enough to run on a laptop in a minute.

    .venv/bin/python -m benchmarks.state_bytes --rate 50 --seconds 1800
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import tracemalloc
from collections import defaultdict

import msgspec

from stream_app.config import Settings
from stream_app.events import EventRejected, decode_event
from stream_app.tools.generator import iter_generate
from stream_app.worker.families import build_families
from tests.support.engine import EngineRunner


def measure(seed: int, rate: float, seconds: float) -> dict[str, dict]:
    start = time.time() - seconds - 900
    end = start + seconds
    by_family: dict[str, list] = defaultdict(list)
    for g in iter_generate(seed, start, seconds, rate):
        try:
            by_family[g.family].append(decode_event(g.value, expected_family=g.family, now=end + 900))
        except EventRejected:
            continue  # dead letters hold no state
    out = {}
    for family in build_families(Settings()):
        events = by_family.get(family.event_family, [])
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        run = EngineRunner(family).feed(events)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        states = run.entities
        stored = [len(msgspec.msgpack.encode(family.to_stored(s))) for s in states.values()]
        key = sum(len(k.encode()) for k in states) / max(len(states), 1)
        n = max(len(states), 1)
        out[family.table] = {
            "events": len(events),
            "entities": len(states),
            "stored_bytes_per_entity": round(sum(stored) / n, 1),
            "stored_bytes_p99": sorted(stored)[int(0.99 * (len(stored) - 1))] if stored else 0,
            "key_bytes_per_entity": round(key, 1),
            "python_bytes_per_entity": round(grown / n, 1),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=20261205)
    ap.add_argument("--rate", type=float, default=50.0, help="events per second of event time")
    ap.add_argument("--seconds", type=float, default=1800.0, help="event-time span of the log")
    args = ap.parse_args(argv)
    print(json.dumps(measure(args.seed, args.rate, args.seconds), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
