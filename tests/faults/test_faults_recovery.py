"""Faults during recovery and wide rebalances, against real Kafka + Redis (docs/reliability.md):

* a worker killed (-9) while it is still taking its partitions over after a restart;
* a second worker joining while the first is still recovering;
* 1 -> 4 workers and back to 1 while events flow: with 4 workers every metric sums exactly to
  the reference, and each worker shows exactly the reference of the partitions it holds (no
  stale series from partitions that moved away), then again with 1.

Recoveries are widened with ``STREAM_APP_DEBUG_RECOVERY_PAUSE_SECONDS`` (a pause per table while
partitions are taken over), so a kill or a join lands inside one for certain; the log proves it.
Every scenario ends with the fault suite's verdict: 0 lost, 0 double, every source offset
received by an agent.
"""

from __future__ import annotations

import re
import time

import pytest
from aiokafka.partitioner import DefaultPartitioner

from tests.support.references import INTERNAL, REFERENCES, reference_events, reference_params, scrape_at
from tests.support.worker import settings_of, wait_for

from .harness import PARTITIONS, FaultRun, make_event_log, wait_ready

pytestmark = pytest.mark.integration

PAUSE = 1.5  # seconds per table while partitions are taken over: 5 tables, ~8 s of recovery


@pytest.fixture(scope="module")
def event_log():
    return make_event_log()


@pytest.fixture
def scenario(stack, event_log, tmp_path):
    runs: list[FaultRun] = []

    def make(name: str, **settings) -> FaultRun:
        run = FaultRun(stack, event_log, tmp_path, name, settings)
        runs.append(run)
        return run

    yield make
    for run in runs:
        run.close()


def _log_since(w, size: int) -> str:
    return w.log_path.read_text(errors="replace")[size:]


def _wait_recovering(run: FaultRun, w, size: int, timeout: float = 120) -> None:
    """Until ``w`` (started after its log was ``size`` bytes) is inside a recovery pause."""

    def paused() -> bool:
        run.observe()
        return "recovery paused" in _log_since(w, size)

    wait_for(paused, timeout=timeout, interval=0.1, message=f"{w.workdir.name} recovering")


def _recovered_after(text: str, marker: int) -> bool:
    """Whether the incarnation whose log is ``text`` finished a recovery after position ``marker``."""
    return "health: rebuilt" in text[marker:]


def test_kill9_during_own_recovery(scenario):
    run = scenario("kill-recovering", worker_instance_id="rec-w0", debug_recovery_pause_seconds=PAUSE)
    w = run.start(run.worker())
    run.feed()
    for fraction in (0.3, 0.6):
        run.at_fraction(fraction)
        run.fault(f"kill -9 at {fraction:.0%}, then again during its recovery")
        run.kill(w)
        size = w.log_path.stat().st_size
        run.start(w, wait=False)
        _wait_recovering(run, w, size)
        text = _log_since(w, size)
        assert not _recovered_after(text, text.index("recovery paused")), "killed after its recovery ended"
        run.kill(w)  # inside the recovery: partitions claimed, some loaded, no index rebuilt
        print(f"  killed during recovery: {text.count('loaded partition')} partitions loaded, "
              f"{text.count('recovery paused')} tables paused")  # fmt: skip
        run.start(w)
    run.finish()
    run.verdict()


def test_second_worker_joins_while_first_recovers(scenario):
    run = scenario("join-recovering", debug_recovery_pause_seconds=PAUSE)
    w0 = run.start(run.worker("w0"))
    w1 = run.worker("w1")
    run.feed()
    run.at_fraction(0.3)
    run.fault("w0 restarted (kill -9); w1 joins during its recovery")
    run.kill(w0)
    size = w0.log_path.stat().st_size
    run.start(w0, wait=False)
    _wait_recovering(run, w0, size)
    joined_at = len(_log_since(w0, size))
    run.start(w1, wait=False)
    wait_ready([w0, w1], timeout=180)
    text = _log_since(w0, size)
    # w0's recovery was overtaken: it recovered (again) after w1 joined
    assert _recovered_after(text, joined_at), "w0 never finished a recovery after w1 joined"
    shares = [sum(w.samples()["stream_app_assigned_partitions"].values()) for w in (w0, w1)]
    assert all(shares), f"both workers own partitions: {shares}"
    run.at_fraction(0.7)
    run.fault("w1 leaves (stop)")
    run.stop(w1)
    run.finish()
    run.verdict()


# --------------------------------------------------------------------------- 1 -> 4 -> 1


def _partition_of_events(events) -> dict[str, int]:
    """Event id -> partition of its key (the producer's default partitioner, as Kafka placed it)."""
    part, parts = DefaultPartitioner(), list(range(PARTITIONS))
    return {ev.id: part(ev.key_bytes, parts, parts) for ev in events}


def _held_partitions(w, topic: str) -> set[int]:
    """Partitions of ``topic`` a worker took over last (its last 'resumes at offsets' line)."""
    lines = re.findall(rf"{re.escape(topic)} resumes at offsets \{{([^}}]*)\}}", w.log_path.read_text(errors="replace"))
    return {int(p) for p in re.findall(r"(\d+): \d+", lines[-1])} if lines else set()


def _assert_each_worker_shows_its_own_partitions(run: FaultRun, workers, valid, partition_of) -> int:
    """Each worker's family series equal the reference over the events of the partitions it holds:
    nothing left over from partitions that moved away (no stale series), nothing missing."""
    settings = settings_of(run.env)
    params = reference_params(settings)
    at = time.time()
    checked = 0
    for w in workers:
        got = scrape_at([w], at)
        for name, (module, family) in REFERENCES.items():
            held = _held_partitions(w, run.topics[family])
            mine = [e for e in valid if e["family"] == family and partition_of[e["id"]] in held]
            expected = module.compute(mine, at, params[name])
            prefix = f"stream_app_{name}_"
            shown = {k: v for k, v in got.items() if k[0].startswith(prefix) and not INTERNAL.search(k[0]) and v}
            stale = sorted(set(shown) - set(expected), key=str)
            missing = sorted(set(expected) - set(shown), key=str)
            wrong = [k for k in expected if k in shown and abs(shown[k] - expected[k]) > 1e-6 * max(1, abs(expected[k]))]
            assert not stale and not missing and not wrong, (w.workdir.name, name, held, stale[:3], missing[:3],
                                                             [(k, shown[k], expected[k]) for k in wrong[:3]])  # fmt: skip
            checked += len(expected)
    return checked


def test_scale_one_to_four_and_back(scenario):
    run = scenario("scale-4")
    events = run.log.events
    half = len(events) // 2
    partition_of = _partition_of_events(events)
    workers = [run.worker(f"w{i}") for i in range(4)]
    run.start(workers[0])
    run.feed(events=events[:half])
    run.at_fraction(0.15)
    run.fault("scale 1->4")
    for w in workers[1:]:
        run.start(w)
    wait_ready(workers, timeout=180)
    shares = [sum(w.samples()["stream_app_assigned_partitions"].values()) for w in workers]
    assert shares == [4, 4, 4, 4], f"one partition of each of the 4 input topics per worker: {shares}"
    run.finish()
    # With 4 workers: the sum equals the reference over what was produced so far, and each worker
    # shows exactly its own partitions' share.
    now = time.time()
    valid = reference_events(events[:half], now)
    diff = run.compare(valid=valid)
    print(f"  4 workers: {diff['checked']} samples summed across workers, lost {diff['missing'] + diff['lost']}, "
          f"double {diff['double'] + diff['extra']}")  # fmt: skip
    assert diff["missing"] == diff["lost"] == diff["double"] == diff["extra"] == 0, diff
    own = _assert_each_worker_shows_its_own_partitions(run, workers, valid, partition_of)
    print(f"  4 workers: each shows exactly its own partitions ({own} samples), no stale series")
    # Back to 1 while the second half flows: two leave, one is killed.
    run.feed(events=events[half:])
    for fraction, name, action in ((0.6, "scale 4->3 (stop)", lambda: run.stop(workers[3])),
                                   (0.7, "scale 3->2 (stop)", lambda: run.stop(workers[2])),
                                   (0.8, "scale 2->1 (kill -9)", lambda: run.kill(workers[1]))):  # fmt: skip
        run.at_fraction(fraction)
        run.fault(f"{name} at {fraction:.0%}")
        action()
    run.finish()
    own = _assert_each_worker_shows_its_own_partitions(run, [workers[0]], run.log.valid, partition_of)
    print(f"  back to 1 worker: it shows every partition ({own} samples)")
    run.verdict()
