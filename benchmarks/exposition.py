"""In-process measurement of ``/metrics``: series per family and labelset, bytes, render time.

No Kafka: a real ``StreamWorker``'s registry and exposition, its family engines driven by the
test runner (``tests/support/engine.py``: the real engine step over dict states), health signals
applied by the worker's health stage, as ``tests/unit/tools/test_dashboards.py`` does.

    .venv/bin/python -m benchmarks.exposition demo             # the generator's default world
    .venv/bin/python -m benchmarks.exposition demo --rate 2 --hours 26 --series
    .venv/bin/python -m benchmarks.exposition large --entities 1000000
    .venv/bin/python -m benchmarks.exposition demo --now 1764950400 --dump new.txt   # the text itself

Worlds:
* ``demo``: the generator's default profile (4 teams) at ``--rate`` events/s over ``--hours`` of
  event time ending now. 2 ev/s over 26 h (about 190k events) has every team x channel x priority
  labelset the generator draws inside the 24 h windows: the series count of a steady state.
* ``large``: ``benchmarks.bench.entity_events`` (the 1M-entity benchmark's world: 40 % open
  tickets, 40 % users in an open session, 20 % paying accounts, event times in the last hour).

Render times are CPU time of ``Exposition.render`` (process time, less sensitive to other load on
the machine), best of ``--repeat``, for: the first read after feeding (cold: every running clock
and account judged once), the same instant again, one second later (same window bucket), after
one more event, and at the next bucket edge. ``--dump`` writes the text of the log as fed, read at
``--now``, before those (the "cold" figure is then not the first read).
"""

from __future__ import annotations

import argparse
import gc
import resource
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable

from stream_app.config import Settings
from stream_app.events import EventRejected, decode_event
from stream_app.worker.app import StreamWorker
from tests.support.engine import EngineRunner


def build_worker() -> tuple[StreamWorker, dict[str, EngineRunner]]:
    worker = StreamWorker(Settings(store="memory"))
    engines = {p.family.event_family: EngineRunner(p.family) for p in worker.processors}
    for p in worker.processors:
        p.engine = engines[p.family.event_family].engine  # the worker exposes what the runners hold
    return worker, engines


def feed(worker: StreamWorker, engines: dict[str, EngineRunner], log: Iterable, now: float) -> int:
    """Decode, count and apply every message of ``log``; returns how many were applied."""
    n = 0
    health = worker.health.stage
    for raw in log:
        topic = worker.input_topics[raw.family]
        worker.pipeline.observe_consumed(topic, now)
        try:
            event = decode_event(raw.value, expected_family=raw.family, now=now)
        except EventRejected as rejected:
            worker.pipeline.invalid.labels(topic, rejected.reason).inc()
            continue
        worker.pipeline.observe_valid(topic, event.type, event.ts, now)
        run = engines[raw.family]
        run.process(event)
        n += 1
        for change in run.signals:
            health.apply(change.account_id, change.message())
        run.signals.clear()
    return n


def demo_log(rate: float, hours: float, now: float, seed: int = 11):
    from stream_app.tools.generator import Faults, iter_generate

    return iter_generate(seed=seed, start=now - hours * 3600, duration_seconds=hours * 3600 - 60, rate=rate,
                         faults=Faults(duplicate=0.01, invalid=0.005))  # fmt: skip


def large_log(entities: int, now: float, seed: int = 7):
    from .bench import entity_events

    return entity_events(entities, seed, now - 60)[0]


def series_breakdown(worker: StreamWorker, now: float) -> tuple[Counter, dict[str, set]]:
    """Samples per metric family, and the label names (without ``le``) of each."""
    per: Counter = Counter()
    names: dict[str, set] = defaultdict(set)
    for fam in worker.exposition.at(now).collect():
        for s in fam.samples:
            per[fam.name] += 1
            names[fam.name].add(tuple(sorted(k for k in s.labels if k != "le")))
    return per, names


class GcClock:
    """Wall time spent in the cyclic garbage collector (gc.callbacks), to tell it apart."""

    def __init__(self) -> None:
        self.total = 0.0
        self._t0 = 0.0
        gc.callbacks.append(self._cb)

    def _cb(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.total += time.perf_counter() - self._t0


GC = GcClock()


def cpu_ms(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best * 1000


def render_times(worker: StreamWorker, engines: dict[str, EngineRunner], now: float, repeat: int) -> dict:
    render = worker.exposition.render
    out = {}
    t0, g0 = time.process_time(), GC.total
    body = render(now)
    out["cold"] = (time.process_time() - t0) * 1000
    out["cold: of which garbage collector (wall)"] = (GC.total - g0) * 1000
    out["same instant"] = cpu_ms(lambda: render(now), repeat)
    out["+1 s"] = cpu_ms(lambda: render(now + 1), repeat)

    # one more event per measurement (a ticket reply: support index changes)
    from .bench import envelope

    runner = engines["ticket"]
    key = next(iter(runner.states.data), None)
    times = []
    for i in range(repeat):
        if key is not None:
            ev = envelope("ticket", "ticket.replied", key, {"ticket_id": key, "author_role": "customer",
                                                             "public": True, "author_id": None,
                                                             "time_spent_seconds": None}, now + 1 + i * 0.001)
            runner.process(decode_event(ev.value, expected_family="ticket", now=now + 60))
        t0 = time.process_time()
        render(now + 2)
        times.append(time.process_time() - t0)
    out["after one event"] = min(times) * 1000
    edge = (int(now // 60) + 1) * 60
    t0, g0 = time.process_time(), GC.total
    render(edge)
    out["next bucket edge (first)"] = (time.process_time() - t0) * 1000
    out["next bucket edge (first): of which garbage collector (wall)"] = (GC.total - g0) * 1000
    out["next bucket edge (again)"] = cpu_ms(lambda: render(edge), repeat)
    out["bytes"] = len(body)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("world", choices=("demo", "large"))
    parser.add_argument("--rate", type=float, default=2.0, help="demo: events/s of event time (default 2)")
    parser.add_argument("--hours", type=float, default=26.0, help="demo: hours of event time (default 26)")
    parser.add_argument("--entities", type=int, default=200_000, help="large: entities (default 200k)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--series", action="store_true", help="print the series per family")
    parser.add_argument("--now", type=float, help="the instant the log ends and is read at (default: now)")
    parser.add_argument("--dump", help="write the /metrics text read at --now to this file")
    args = parser.parse_args(argv)

    now = time.time() if args.now is None else args.now
    worker, engines = build_worker()
    log = demo_log(args.rate, args.hours, now) if args.world == "demo" else large_log(args.entities, now)
    gc.disable()  # as the worker does during rebuilds: a feed this size is mostly allocation
    t0 = time.monotonic()
    n = feed(worker, engines, log, now)
    gc.enable()
    gc.collect()
    gc.freeze()
    tracked = {name: len(r.states.data) for name, r in engines.items()}
    print(f"{args.world}: {n} events applied in {time.monotonic() - t0:.1f} s; states {tracked}, "
          f"health accounts {len(worker.health.stage.index)}; max RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if args.dump:  # the log as fed, read at --now (then the "cold" render below is not the first)
        with open(args.dump, "wb") as f:
            f.write(worker.exposition.render(now))
    times = render_times(worker, engines, now, args.repeat)
    per, names = series_breakdown(worker, now)
    print(f"series: {sum(per.values())}")
    if args.series:
        for name, count in per.most_common():
            print(f"  {count:6d}  {name}  {sorted(names[name])}")
    print(f"bytes: {times.pop('bytes')}")
    for what, ms in times.items():
        print(f"render, {what}: {ms:.2f} ms{'' if 'wall' in what else ' CPU'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
