"""Fault injection against real Kafka + Redis: every scenario ends equal to the batch reference.

Each scenario feeds the same generated log (duplicates, late, out-of-order and
invalid events included) into fresh topics at a steady rate while it injects
its faults, waits until everything is processed, then compares every metric of
every live worker with the batch reference, counts the dead-lettered messages,
and prints produced / processed / deduplicated / dead-lettered / lost / double
counted and the recovery times. docs/reliability.md explains each fault.

Run: ``python -m pytest tests/faults -s``; ``STREAM_APP_SOAK=1`` runs the longer
log with more faults per scenario.
"""

from __future__ import annotations

import re
import shutil
import time

import pytest
import redis

from tests.support.worker import total, wait_for
from .harness import SOAK, FaultRun, make_event_log

pytestmark = pytest.mark.integration

KILL_POINTS = (0.1, 0.25, 0.4, 0.55, 0.7, 0.85) if SOAK else (0.15, 0.45, 0.75)
REDIS_OUTAGE_SECONDS = 60.0 if SOAK else 15.0


@pytest.fixture(scope="module")
def event_log():
    t0 = time.monotonic()
    log = make_event_log()
    print(f"\nfault log: {len(log.events)} messages ({len(log.valid)} valid, {log.invalid} invalid, "
          f"{log.duplicates} duplicates), generated in {time.monotonic() - t0:.1f}s")  # fmt: skip
    return log


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
    # Services are shared by the session: whatever a test did, leave them up.
    if not stack.redis.running:
        stack.redis.start()
    if not stack.kafka.running:
        stack.kafka.start()


def _flushall(stack) -> None:
    client = redis.Redis.from_url(stack.redis_url)
    try:
        client.flushall()
    finally:
        client.close()


def _restart_redis(stack, *, keep_data: bool) -> None:
    stack.redis.stop()  # SIGTERM: the AOF is fsynced on the way out
    if not keep_data:
        shutil.rmtree(stack.redis.data_dir)
    stack.redis.start()


def _restart_from_redis(run: FaultRun, w) -> tuple[int, int]:
    """Graceful restart; returns (states loaded from Redis, input events read again because
    their checkpoint was behind) of the new run."""
    ends = run.ends()  # (topic, partition) -> end offset of every input partition
    size = w.log_path.stat().st_size
    run.stop(w)
    run.start(w)
    text = w.log_path.read_text(errors="replace")[size:]
    wait = time.monotonic() + 30
    while len(re.findall(r"resumes at offsets", text)) < len(run.topics) + 1 and time.monotonic() < wait:
        time.sleep(0.2)
        text = w.log_path.read_text(errors="replace")[size:]
    loaded = sum(int(n) for n in re.findall(r"loaded partition \d+: (\d+) keys", text))
    resumed = {
        (topic, int(p)): int(off)
        for topic, body in re.findall(r"(\S+) resumes at offsets \{([^}]*)\}", text)
        for p, off in re.findall(r"(\d+): (\d+)", body)
    }
    reread = sum(end - resumed.get(tp, 0) for tp, end in ends.items())
    print(f"  restart from redis: {loaded} states loaded, {reread} input events read again")
    return loaded, reread


@pytest.mark.parametrize(
    "static",
    [True, False],
    ids=["static-membership", "dynamic-membership"],
)
def test_kill9_repeatedly_mid_stream(scenario, static):
    run = scenario("kill-static" if static else "kill-dynamic", **({"worker_instance_id": "fault-w0"} if static else {}))
    w = run.start(run.worker())
    run.feed()
    for fraction in KILL_POINTS:
        run.at_fraction(fraction)
        run.fault(f"kill -9 at {fraction:.0%}")
        run.kill(w)
        run.start(w)
    run.finish()
    run.verdict()


def test_graceful_stop_and_start(scenario):
    run = scenario("graceful")
    w = run.start(run.worker())
    run.feed()
    for fraction in (0.3, 0.65):
        run.at_fraction(fraction)
        run.fault(f"stop+start at {fraction:.0%}")
        run.stop(w)
        run.start(w)
    run.finish()
    run.verdict()
    loaded, reread = _restart_from_redis(run, w)
    assert loaded > 0 and reread == 0, "a clean stop leaves a complete checkpoint in Redis"


def test_scale_one_two_one_during_traffic(scenario):
    run = scenario("scale")
    w0 = run.start(run.worker("w0"))
    w1 = run.worker("w1")
    run.feed()
    steps = [(0.2, "scale 1->2", lambda: run.start(w1)), (0.45, "scale 2->1 (stop)", lambda: run.stop(w1)),
             (0.65, "scale 1->2", lambda: run.start(w1)), (0.85, "scale 2->1 (kill -9)", lambda: run.kill(w1))]  # fmt: skip
    for fraction, name, action in steps:
        run.at_fraction(fraction)
        run.fault(f"{name} at {fraction:.0%}")
        action()
        if w1.workdir not in run._down:
            shares = [sum(w.samples()["stream_app_assigned_partitions"].values()) for w in (w0, w1)]
            assert all(shares), f"both workers own partitions after joining: {shares}"
    run.finish()
    run.verdict()


def test_redis_restart_and_wipes(scenario, stack):
    run = scenario("redis")
    w = run.start(run.worker())
    run.feed()
    run.at_fraction(0.2)
    run.fault("redis restart with AOF")
    _restart_redis(stack, keep_data=True)
    run.at_fraction(0.4)
    run.fault("redis FLUSHALL, worker running")
    _flushall(stack)
    run.at_fraction(0.6)
    run.fault("redis restart without data, worker running")
    _restart_redis(stack, keep_data=False)
    run.at_fraction(0.8)
    run.fault("redis FLUSHALL, worker down")
    run.stop(w)
    _flushall(stack)
    run.start(w)
    run.finish()
    run.verdict()
    # The wiped checkpoints were rewritten from memory / rebuilt from the topics: a restart reads them back.
    loaded, reread = _restart_from_redis(run, w)
    assert loaded > 0 and reread == 0
    run.verdict()


def test_redis_unavailable_while_events_flow(scenario, stack):
    run = scenario("redis-down")
    # Started below while Redis is down: opt in to starting without it (docs/state-store.md).
    w = run.start(run.worker(STREAM_APP_REDIS_REQUIRED_AT_START="false"))
    run.feed()
    run.at_fraction(0.25)
    before = run.counter("consumed")
    run.fault(f"redis down {REDIS_OUTAGE_SECONDS:.0f}s")
    stack.redis.stop()
    try:
        t0 = time.monotonic()
        end = t0 + REDIS_OUTAGE_SECONDS
        restarted = False
        while time.monotonic() < end:
            run.observe()
            assert w.http_status("/healthz") == 200
            if not restarted and time.monotonic() > t0 + REDIS_OUTAGE_SECONDS / 3:
                # A worker (re)started while Redis is down rebuilds its partitions from the topics.
                run.fault("worker restart while redis is down")
                run.stop(w)
                run.start(w)
                restarted = True
            time.sleep(0.5)
        # The restarted worker rebuilt its partitions from the topics and works from memory: wait
        # (Redis still down) until it has applied something it cannot checkpoint.
        def working_from_memory() -> bool:
            run.observe()
            s = w.samples()
            return total(s, "stream_app_store_load_fallbacks_total") > 0 and total(s, "stream_app_store_dirty_keys") > 0

        wait_for(working_from_memory, timeout=120, interval=0.5, message="restarted worker applying without redis")
        assert total(w.samples(), "stream_app_store_redis_up") == 0, "the store reports Redis down"
        during = run.counter("consumed") - before
    finally:
        stack.redis.start()
    back, back_wall = time.monotonic(), time.time()
    print(f"  processed {during:.0f} events while redis was down (worker restarted meanwhile)")
    assert during > 0, "processing goes on from memory while redis is down"

    def flushed() -> bool:
        run.observe()
        s = w.samples()
        tables = s["stream_app_store_redis_up"]
        return all(v == 1 for v in tables.values()) and all(
            v > back_wall for v in s["stream_app_store_last_flush_timestamp_seconds"].values()
        )

    wait_for(flushed, timeout=60, interval=0.25, message="store flushed after redis came back")
    print(f"  state flushed to redis {time.monotonic() - back:.1f}s after it came back")
    run.finish()
    run.verdict()
    loaded, reread = _restart_from_redis(run, w)
    assert loaded > 0 and reread == 0, "everything was checkpointed once redis came back"


def test_kafka_broker_restart_during_traffic(scenario, stack):
    run = scenario("kafka")
    w = run.start(run.worker())
    run.feed()
    run.at_fraction(0.4)
    run.fault("kafka broker restart")
    stack.kafka.restart()
    run.finish()
    run.verdict()
    assert w.proc.poll() is None
