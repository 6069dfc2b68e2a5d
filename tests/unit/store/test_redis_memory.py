"""Redis' maxmemory-policy judged at start (stream_app.store.redis_memory): policies that may evict
our keys are refused (or warned about), the memory figures are exported for the headroom alert."""

from __future__ import annotations

import asyncio
import logging

import pytest

from stream_app.store.redis_memory import EvictingRedis, RedisMemoryWatch, parse_info


class FakeRedis:
    def __init__(self, **info):
        self.info_reply = info
        self.fail = False

    async def info(self, section):
        assert section == "memory"
        if self.fail:
            raise ConnectionError("down")
        return self.info_reply


def _watch(client, **kw):
    return RedisMemoryWatch(lambda: client, address="127.0.0.1:6379", **kw)


def _samples(watch):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for m in watch.families() for s in m.samples}


def test_noeviction_and_volatile_policies_are_fine(caplog):
    for policy in ("noeviction", "volatile-lru", "volatile-ttl"):
        watch = _watch(FakeRedis(used_memory=300, maxmemory=1000, maxmemory_policy=policy))
        asyncio.run(watch.check())
        assert watch.checked and not watch.memory.evicting
        assert watch.memory.headroom == pytest.approx(0.7)
        assert _samples(watch) == {
            ("stream_app_store_redis_used_memory_bytes", ()): 300.0,
            ("stream_app_store_redis_maxmemory_bytes", ()): 1000.0,
            ("stream_app_store_redis_evicting_policy", (("policy", policy),)): 0.0,
        }


@pytest.mark.parametrize("policy", ["allkeys-lru", "allkeys-lfu", "allkeys-random"])
def test_an_evicting_policy_is_refused_at_start(policy, caplog):
    watch = _watch(FakeRedis(used_memory=1, maxmemory=0, maxmemory_policy=policy))
    with caplog.at_level(logging.CRITICAL), pytest.raises(EvictingRedis, match=policy):
        asyncio.run(watch.check())
    assert f"maxmemory-policy {policy}" in caplog.text and "noeviction" in caplog.text
    assert _samples(watch)[("stream_app_store_redis_evicting_policy", (("policy", policy),))] == 1.0


def test_warn_runs_and_repeats_the_error_every_ten_minutes(caplog, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("stream_app.store.redis_memory.time.monotonic", lambda: clock[0])
    watch = _watch(FakeRedis(used_memory=5, maxmemory=10, maxmemory_policy="allkeys-lru"), on_evicting="warn")
    with caplog.at_level(logging.ERROR):
        asyncio.run(watch.check())
        clock[0] += 300
        asyncio.run(watch.check())
        clock[0] += 301
        asyncio.run(watch.check())
    assert sum("evicts checkpoints" in r.getMessage() for r in caplog.records) == 2


def test_redis_down_at_start_is_judged_when_it_answers(caplog):
    client = FakeRedis(used_memory=5, maxmemory=10, maxmemory_policy="allkeys-lru")
    client.fail = True
    watch = _watch(client)
    with caplog.at_level(logging.WARNING):
        asyncio.run(watch.check())
    assert not watch.checked and watch.families() == [] and "could not read" in caplog.text
    client.fail = False
    with pytest.raises(EvictingRedis):
        asyncio.run(watch.check())
    # once judged at start, a policy changed later (CONFIG SET) is reported, not refused
    ok = _watch(FakeRedis(used_memory=5, maxmemory=10, maxmemory_policy="noeviction"))
    asyncio.run(ok.check())
    ok._client.info_reply["maxmemory_policy"] = "allkeys-lfu"
    asyncio.run(ok.check())
    assert ok.memory.evicting


def test_parse_info_defaults_and_setting_values():
    assert parse_info({}).policy == "unknown" and parse_info({}).headroom is None
    with pytest.raises(ValueError):
        RedisMemoryWatch(lambda: None, on_evicting="ignore")
