"""The metrics equal the batch reference with the state store on a real Redis Cluster.

One worker (``STREAM_APP_REDIS_CLUSTER=true``, tests/conftest.py ``redis_cluster``: 3 masters
and 3 replicas) reads a generated day of events (duplicates, late, out-of-order, too-late and
invalid ones) and is compared with the reference; then it is killed (-9) and restarted, loads
every partition from the cluster, and is compared again. The same comparison as
tests/integration/test_metrics_reference.py, on a smaller log.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid

import pytest

from stream_app.store.redis_flush import RedisKeys
from stream_app.tools.generator import Faults, generate
from stream_app.tools.producer import produce_log

from tests.support.references import assert_equals_reference, reference_events, too_late_events
from tests.support.worker import WorkerProcess, caught_up, settings_of, total, wait_for, worker_env

pytestmark = pytest.mark.integration

DAY = 86400.0


def test_one_worker_on_a_redis_cluster_equals_reference(stack, redis_cluster, tmp_path):
    run = f"refc-{uuid.uuid4().hex[:6]}"
    topics = {f: f"{run}.{f}" for f in ("ticket", "activity", "subscription", "survey")}
    stack.create_topics(list(topics.values()), partitions=4)
    now = time.time()
    faults = Faults(duplicate=0.02, out_of_order=0.02, late=0.01, invalid=0.005)
    events = generate(seed=20261125, start=now - DAY, duration_seconds=DAY - 120, rate=0.1, faults=faults)
    events += too_late_events(now)
    asyncio.run(produce_log(stack.bootstrap, topics, events))
    valid = reference_events(events, now)

    env = {**worker_env(stack, run, topics=topics, store="redis", worker_instance_id="refc-w0"), **redis_cluster.env()}
    settings = settings_of(env)
    worker = WorkerProcess(env, tmp_path).start()
    try:
        wait_for(lambda: total(worker.samples(), "stream_app_events_consumed_total") >= len(events),
                 timeout=300, interval=1.0, message="every event consumed")  # fmt: skip
        wait_for(lambda: caught_up(worker), timeout=120, interval=1.0, message="caught up")
        assert assert_equals_reference([worker], valid, settings, stack.bootstrap, settle=60) > 100
        samples = worker.samples()
        assert total(samples, "stream_app_store_redis_up") == len(samples["stream_app_store_redis_up"]) > 0
        # The checkpoints are in the cluster, each partition on the master serving its slot.
        prefix = f"stream_app:{settings.app_id}"
        masters = {redis_cluster.master_for(RedisKeys(prefix, "tickets", p).meta).port for p in range(4)}
        print(f"ticket partitions checkpointed on masters {sorted(masters)}")

        time.sleep(2)  # a checkpoint after the last event (every second)
        worker.kill()
        worker.start()  # ready: every partition loaded, every index rebuilt
        log = worker.log_path.read_text()
        loaded = sum(int(n) for n in re.findall(r"loaded partition \d+: (\d+) keys", log))
        assert loaded > 0, "the restarted worker loaded its states from the cluster"
        assert "rebuilt from its source topic's start" not in log
        assert_equals_reference([worker], valid, settings, stack.bootstrap, settle=60)
    finally:
        worker.stop()
