"""Redis' maxmemory-policy judged by a real worker against the stack's real Redis
(stream_app.store.redis_memory): an evicting policy is refused at start by default, run with an
ERROR under STREAM_APP_REDIS_EVICTION_POLICY=warn, and the memory figures the headroom alert
reads are exported as Redis reports them."""

from __future__ import annotations

import uuid

import pytest
import redis

from tests.support.worker import WorkerProcess, total, wait_for, worker_env

pytestmark = pytest.mark.integration


@pytest.fixture
def evicting_redis(stack):
    """The stack's Redis with maxmemory-policy allkeys-lru and a 256 MiB maxmemory, restored after."""
    client = redis.Redis.from_url(stack.redis_url)
    before = client.config_get("maxmemory-policy")["maxmemory-policy"], client.config_get("maxmemory")["maxmemory"]
    client.config_set("maxmemory-policy", "allkeys-lru")
    client.config_set("maxmemory", str(256 * 1024 * 1024))
    try:
        yield client
    finally:
        client.config_set("maxmemory-policy", before[0])
        client.config_set("maxmemory", before[1])
        client.close()


def _env(stack, **settings):
    run = f"evict-{uuid.uuid4().hex[:6]}"
    topics = {f: f"{run}.{f}" for f in ("ticket", "activity", "subscription", "survey")}
    stack.create_topics(list(topics.values()), partitions=2)
    return worker_env(stack, run, topics=topics, store="redis", topic_partitions=2, **settings)


def test_an_evicting_policy_is_refused_at_start(stack, tmp_path, evicting_redis):
    w = WorkerProcess(_env(stack), tmp_path, name="refuse")
    with pytest.raises(AssertionError, match="worker exited"):
        w.start(ready_timeout=120)
    log = w.log_path.read_text(errors="replace")
    assert "maxmemory-policy allkeys-lru: it may evict checkpoints" in log, log[-3000:]
    assert w.proc.returncode != 0


def test_an_evicting_policy_under_warn_runs_loudly_and_exports_memory(stack, tmp_path, evicting_redis):
    w = WorkerProcess(_env(stack, redis_eviction_policy="warn"), tmp_path, name="warn").start(ready_timeout=120)
    try:
        s = wait_for(lambda: (x := w.samples()) and "stream_app_store_redis_used_memory_bytes" in x and x,
                     timeout=60, message="Redis memory exported")  # fmt: skip
        assert total(s, "stream_app_store_redis_evicting_policy", policy="allkeys-lru") == 1
        assert total(s, "stream_app_store_redis_maxmemory_bytes") == 256 * 1024 * 1024
        used = int(evicting_redis.info("memory")["used_memory"])
        # the worker's reading is from its last INFO (every 15 s): the same order of magnitude
        assert 0 < total(s, "stream_app_store_redis_used_memory_bytes") < 2 * used
        log = w.log_path.read_text(errors="replace")
        assert "ERROR" in log and "maxmemory-policy allkeys-lru: when it is full it evicts checkpoints" in log
    finally:
        w.stop()
