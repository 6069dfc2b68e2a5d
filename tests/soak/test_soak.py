"""Soak: steady traffic for an hour with kill -9s and rebalances; nothing lost, nothing counted
twice, and memory (worker RSS, Redis used_memory) must level off.

Deselected unless the marker expression names it (tests/conftest.py):

    bash scripts/test.sh -m soak -s tests/soak          # an hour
    STREAM_APP_SOAK_MINUTES=15 bash scripts/test.sh -m soak -s tests/soak

The log is ``STREAM_APP_SOAK_DAYS`` days of generated event time (duplicates, late,
out-of-order and invalid events included) fed at a steady ``STREAM_APP_SOAK_RATE`` messages/s,
so the run passes through days of event time: long enough for windows to slide and retained
state to expire. Every ``STREAM_APP_SOAK_FAULT_SECONDS`` the next fault of a fixed cycle happens
(a second worker joins, the first is killed -9 and restarted, the second leaves by SIGTERM or
kill -9); every ``STREAM_APP_SOAK_SAMPLE_SECONDS`` the workers' RSS and Redis's used_memory are
sampled. The end is the fault harness's verdict (every metric equal to the batch reference,
every message processed, every invalid one dead-lettered), then the memory check: the peak of
the last third of the run at most ``LEVEL_OFF`` above the peak of the middle third (steady
growth, as with unbounded state, is about 50% above). docs/reliability.md, "Soak", has the
figures of the runs so far.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path

import pytest
import redis

from tests.faults.harness import DAY, FaultRun, make_event_log

pytestmark = [pytest.mark.soak, pytest.mark.integration]

MINUTES = float(os.environ.get("STREAM_APP_SOAK_MINUTES", "60"))
RATE = float(os.environ.get("STREAM_APP_SOAK_RATE", "100"))  # messages per wall-clock second
DAYS = float(os.environ.get("STREAM_APP_SOAK_DAYS", "7"))  # event time the log spans
SAMPLE_SECONDS = float(os.environ.get("STREAM_APP_SOAK_SAMPLE_SECONDS", "60"))
FAULT_SECONDS = float(os.environ.get("STREAM_APP_SOAK_FAULT_SECONDS", str(max(60.0, MINUTES * 60 / 12))))
REPORT = os.environ.get("STREAM_APP_SOAK_REPORT", "")  # a path: samples and figures as JSON
LEVEL_OFF = 0.10
# Messages per generator event per second of event time (measured: a 7-day log at 0.15 has ~93k).
MESSAGES_PER_RATE_SECOND = 1.025


def rss_bytes(pid: int) -> int:
    """Resident set size of a live process (Linux /proc)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def levels_off(values: list[float]) -> tuple[bool, float]:
    """(peak of the last third <= (1 + LEVEL_OFF) x peak of the middle third, that ratio)."""
    n = len(values)
    middle, last = values[n // 3 : 2 * n // 3], values[2 * n // 3 :]
    ratio = max(last) / max(max(middle), 1.0)
    return ratio <= 1.0 + LEVEL_OFF, ratio


@pytest.mark.timeout(int(MINUTES * 60 + 3600))
def test_soak_steady_traffic_with_kills_and_rebalances(stack, tmp_path):
    messages = RATE * MINUTES * 60
    t_gen = time.monotonic()
    log = make_event_log(seed=20261205, days=DAYS, rate=messages / (DAYS * DAY * MESSAGES_PER_RATE_SECOND))
    feed_rate = len(log.events) / (MINUTES * 60)
    print(f"\nsoak: {MINUTES:g} min, {len(log.events)} messages ({log.invalid} invalid, {log.duplicates} duplicates) "
          f"over {DAYS:g} days of event time at {feed_rate:.0f}/s; generated in {time.monotonic() - t_gen:.0f}s; "
          f"a fault every {FAULT_SECONDS:.0f}s, a sample every {SAMPLE_SECONDS:.0f}s")  # fmt: skip
    client = redis.Redis.from_url(stack.redis_url)
    run = FaultRun(stack, log, tmp_path, "soak")
    w0, w1 = run.worker("w0"), run.worker("w1")

    def restart_w0() -> None:
        run.kill(w0)
        run.start(w0)

    def w1_leaves(kill: bool) -> None:
        if run.live().count(w1):
            (run.kill if kill else run.stop)(w1)

    def w1_joins() -> None:
        if not run.live().count(w1):
            run.start(w1)

    cycle = itertools.cycle([
        ("second worker joins", w1_joins),
        ("kill -9 first worker, restart", restart_w0),
        ("second worker leaves (SIGTERM)", lambda: w1_leaves(kill=False)),
        ("second worker joins", w1_joins),
        ("second worker killed -9 (leaves)", lambda: w1_leaves(kill=True)),
        ("kill -9 first worker, restart", restart_w0),
    ])  # fmt: skip
    samples: list[dict] = []

    def sample() -> None:
        rss = {w.workdir.name: rss_bytes(w.proc.pid) for w in run.live()}
        mem = client.info("memory")
        samples.append({
            "minute": round((time.monotonic() - t0) / 60, 2), "acked": run.feeder.acked if run.feeder else 0,
            "rss": rss, "rss_max": max(rss.values(), default=0), "rss_total": sum(rss.values()),
            "redis_used_memory": mem["used_memory"], "redis_keys": client.dbsize(),
        })  # fmt: skip
        s = samples[-1]
        print(f"  [{s['minute']:5.1f} min] acked {s['acked']}, rss {', '.join(f'{k} {v / 2**20:.0f} MiB' for k, v in rss.items())}, "
              f"redis used_memory {s['redis_used_memory'] / 2**20:.1f} MiB ({s['redis_keys']} keys)")  # fmt: skip

    try:
        run.start(w0)
        t0 = time.monotonic()
        sample()
        run.feed(rate=feed_rate)
        next_sample, next_fault = t0 + SAMPLE_SECONDS, t0 + FAULT_SECONDS
        while run.feeder.acked < len(log.events) and not run.feeder.error:
            now = time.monotonic()
            if now >= next_sample:
                sample()
                next_sample += SAMPLE_SECONDS
            if now >= next_fault and run.feeder.acked < 0.95 * len(log.events):
                name, action = next(cycle)
                run.fault(f"{name} at {(now - t0) / 60:.1f} min")
                action()
                next_fault = time.monotonic() + FAULT_SECONDS
            run.observe()
            time.sleep(1.0)
        run.finish(timeout=900)
        sample()
        figures = run.verdict()  # 0 lost, 0 double, all processed, all invalid dead-lettered
    finally:
        if REPORT:
            Path(REPORT).write_text(json.dumps({"samples": samples, "minutes": MINUTES, "messages": len(log.events)}, indent=1))
        client.close()

    redis_ok, redis_ratio = levels_off([s["redis_used_memory"] for s in samples])
    rss_ok, rss_ratio = levels_off([s["rss_max"] for s in samples])

    def mib(key: str) -> str:
        values = [s[key] for s in samples]
        return f"start {values[0] / 2**20:.1f}, peak {max(values) / 2**20:.1f}, end {values[-1] / 2**20:.1f} MiB"

    print(f"\nsoak figures: {(time.monotonic() - t0) / 60:.1f} min, {figures['produced']} produced, "
          f"{figures['processed']} processed, lost {figures['lost']}, double {figures['double_counted']}; "
          f"largest worker RSS {mib('rss_max')} (last third / middle third peak {rss_ratio:.2f}); "
          f"Redis used_memory {mib('redis_used_memory')} (ratio {redis_ratio:.2f}); "
          f"faults: {len(run.recoveries)}")  # fmt: skip
    assert redis_ok, f"Redis memory still growing: last third peaks {redis_ratio:.2f}x the middle third"
    assert rss_ok, f"worker RSS still growing: last third peaks {rss_ratio:.2f}x the middle third"
