"""Fault injection beyond one machine: the state store on a Redis Cluster whose masters are killed
under traffic, and (test_kafka_cluster_faults.py) a replicated Kafka whose partition leader is.

Same harness and verdict as test_faults.py: the generated log fed at a steady rate while the
faults happen, every metric of every live worker compared with the batch reference at the end,
and produced / processed / deduplicated / dead-lettered / lost / double counted / recovery times
printed. docs/reliability.md explains each fault.
"""

from __future__ import annotations

import time

import pytest

from stream_app.store.redis_flush import RedisKeys

from .harness import FaultRun, make_event_log
from .services import Services

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def event_log():
    return make_event_log()


@pytest.fixture
def cluster_scenario(stack, redis_cluster, event_log, tmp_path):
    runs: list[FaultRun] = []

    def make(name: str, **settings) -> FaultRun:
        env = redis_cluster.env()
        settings = {"redis_cluster": "true", "redis_cluster_nodes": env["STREAM_APP_REDIS_CLUSTER_NODES"], **settings}
        run = FaultRun(Services(stack.kafka, redis_cluster.redis_url), event_log, tmp_path, name, settings)
        runs.append(run)
        return run

    yield make
    for run in runs:
        run.close()
    # Shared by the session: whatever a test did, leave every node up and the cluster whole.
    for node in redis_cluster.nodes:
        redis_cluster.resume(node)
        if not node.running:
            node.start()
    redis_cluster.wait_healthy()


def _checkpointed_since(run: FaultRun, wall: float) -> bool:
    """Every live worker sees Redis up, and each table was written since ``wall`` or has nothing
    to write (a table with no changes writes nothing: a restarted worker that loaded its
    partitions writes a table only when one of its events arrives)."""
    run.observe()
    for w in run.live():
        s = w.samples()
        if not all(v == 1 for v in s["stream_app_store_redis_up"].values()):
            return False
        dirty = s["stream_app_store_dirty_keys"]
        written = s["stream_app_store_last_flush_timestamp_seconds"]
        if not all(v > wall or dirty.get(labels, 0) == 0 for labels, v in written.items()):
            return False
    return True


def _wait_checkpointed(run: FaultRun, wall: float, timeout: float = 120) -> float:
    t0 = time.monotonic()
    while not _checkpointed_since(run, wall):
        assert time.monotonic() - t0 < timeout, "checkpoints did not resume"
        time.sleep(0.25)
    return time.monotonic() - t0


def test_redis_cluster_masters_killed_under_traffic(cluster_scenario, redis_cluster):
    """Kill the master serving a ticket partition's checkpoint three times while events flow:
    with its replica in sync; while its replica lags (the replication link cut a few seconds
    before: the promoted replica lacks checkpoints the master had acknowledged, so Redis goes back
    in time under the running worker, which rewrites those partitions whole); and together with a
    kill -9 of the worker, restarted during the failover (it loads what the cluster kept). Each
    time the killed node comes back as a replica. docs/state-store.md has the argument."""
    run = cluster_scenario("redis-cluster", worker_instance_id="fault-rc-w0")
    w = run.start(run.worker())
    key = RedisKeys(f"stream_app:{run.app_id}", "tickets", 0).meta
    run.feed()
    faults = ((0.15, "in sync"), (0.45, "replica lagging"), (0.75, "worker kill -9 + restart"))
    for fraction, how in faults:
        run.at_fraction(fraction)
        victim = redis_cluster.master_for(key)
        stalled = None
        if how == "replica lagging":
            stalled = redis_cluster.stall_replica(victim)
            lag_from = time.monotonic()
            while time.monotonic() - lag_from < 3.0:  # three checkpoints acknowledged, not replicated
                run.observe()
                time.sleep(0.2)
        rec = run.fault(f"redis master killed at {fraction:.0%}, {how}")
        wall, t0 = time.time(), time.monotonic()
        victim.kill()
        if stalled is not None:
            redis_cluster.resume(stalled)
        if how.startswith("worker"):
            run.kill(w)
            run.start(w)
        redis_cluster.wait_promoted(victim, tick=run.observe)
        promoted = time.monotonic() - t0
        _wait_checkpointed(run, wall)
        rec.fault += f" (replica promoted {promoted:.1f}s, every table checkpointed again {time.monotonic() - t0:.1f}s)"
        run.settle()
        victim.start()  # rejoins as a replica of the promoted one
        redis_cluster.wait_healthy(tick=run.observe)
    run.finish()
    run.verdict()
    log = w.log_path.read_text(errors="replace")
    behind = log.count("went back to an older")
    print(f"  store: {behind} partitions found Redis behind their last checkpoint and were rewritten whole, "
          f"{log.count('rebuilt from its source')} rebuilt from the topics")  # fmt: skip
    assert behind > 0, "the lagging replica's promotion took acknowledged checkpoints back"
