"""Redis' memory as the state store sees it: how full it is, and whether it may evict our keys.

Redis is the system of record (docs/state-store.md). A ``maxmemory-policy`` of ``allkeys-*``
lets Redis drop any key when it is full: a partition's states hash or its offset record, without
an error. A dropped offset record is noticed (the next checkpoint rewrites the partition from
memory), but a dropped states hash under a surviving offset is not: the next worker to load the
partition resumes after that offset with the states gone, and the numbers are silently wrong.
So the worker checks the policy before it takes any partition and, by
``STREAM_APP_REDIS_EVICTION_POLICY``, refuses to run (``refuse``, the default) or runs with an
ERROR every ten minutes (``warn``). ``noeviction`` is right: a full Redis then refuses
checkpoints, which the worker retries and reports (``stream_app_store_flush_errors_total``).
``volatile-*`` policies only evict keys with a TTL, and ours have none, so they behave like
``noeviction`` for us.

The figures come from ``INFO memory`` (managed Redis services often disable ``CONFIG``), read at
start and then every ``refresh_seconds``: ``stream_app_store_redis_used_memory_bytes``,
``stream_app_store_redis_maxmemory_bytes`` (0 = no limit), and
``stream_app_store_redis_evicting_policy`` (1 = it may evict our keys); the headroom alert
(docs/alerts.md, StreamAppRedisMemoryHeadroomLow) divides the first two.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

log = logging.getLogger(__name__)

#: maxmemory-policy values that may evict keys without a TTL (every key of ours)
EVICTING_POLICIES = frozenset({"allkeys-lru", "allkeys-lfu", "allkeys-random"})
WARN_EVERY_SECONDS = 600.0


class EvictingRedis(RuntimeError):
    """Redis may evict checkpoints and STREAM_APP_REDIS_EVICTION_POLICY is refuse."""


@dataclass(frozen=True)
class RedisMemory:
    used_bytes: int
    maxmemory_bytes: int  # 0: no limit
    policy: str

    @property
    def evicting(self) -> bool:
        return self.policy in EVICTING_POLICIES

    @property
    def headroom(self) -> float | None:
        """Share of maxmemory still free, or None without a limit."""
        if not self.maxmemory_bytes:
            return None
        return max(0.0, 1.0 - self.used_bytes / self.maxmemory_bytes)


def parse_info(info: dict[str, Any]) -> RedisMemory:
    """The fields we use from an ``INFO memory`` reply (as redis-py parses it)."""
    return RedisMemory(
        used_bytes=int(info.get("used_memory", 0)),
        maxmemory_bytes=int(info.get("maxmemory", 0)),
        policy=str(info.get("maxmemory_policy", "unknown")),
    )


class RedisMemoryWatch:
    """Reads Redis' memory at start and on a timer; applies the eviction policy setting."""

    def __init__(self, client_factory: Any, *, on_evicting: str = "refuse", address: str = "Redis") -> None:
        if on_evicting not in ("refuse", "warn"):
            raise ValueError(f"eviction policy setting must be 'refuse' or 'warn', not {on_evicting!r}")
        self._client_factory = client_factory  # () -> redis.asyncio.Redis
        self._client: Any = None
        self.on_evicting = on_evicting
        self.address = address  # for log lines: host:port, never the password
        self.memory: RedisMemory | None = None
        self.checked = False  # the policy was judged at least once
        self._warned_at = 0.0

    @classmethod
    def for_url(cls, url: str, *, on_evicting: str = "refuse", address: str = "Redis") -> RedisMemoryWatch:
        """A watch with its own connection to ``url`` (one more client connection per worker)."""
        from redis import asyncio as aioredis

        return cls(lambda: aioredis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0),
                   on_evicting=on_evicting, address=address)  # fmt: skip

    async def refresh(self) -> RedisMemory | None:
        """Read ``INFO memory``; None (last figures kept) when Redis does not answer."""
        try:
            if self._client is None:
                self._client = self._client_factory()
            self.memory = parse_info(await self._client.info("memory"))
        except Exception as exc:  # noqa: BLE001 - Redis down is the store's business; we retry
            log.debug("reading %s memory failed: %r", self.address, exc)
            return None
        return self.memory

    async def check(self) -> None:
        """Judge the policy (at start, then each refresh): raises :class:`EvictingRedis` the first
        time an evicting policy is seen under ``refuse``; logs otherwise."""
        mem = await self.refresh()
        if mem is None:
            if not self.checked:
                log.warning("could not read %s memory (INFO memory) yet; its maxmemory-policy is checked "
                            "when it answers", self.address)  # fmt: skip
            return
        first = not self.checked
        self.checked = True
        if not mem.evicting:
            if first:
                limit = f"{mem.maxmemory_bytes} bytes" if mem.maxmemory_bytes else "no maxmemory limit"
                log.info("%s: maxmemory-policy %s, %s, %d bytes used", self.address, mem.policy, limit,
                         mem.used_bytes)  # fmt: skip
            return
        if first and self.on_evicting == "refuse":
            log.critical(
                "%s has maxmemory-policy %s: it may evict checkpoints (states lost without an error). "
                "Set it to noeviction, or STREAM_APP_REDIS_EVICTION_POLICY=warn to run anyway.",
                self.address, mem.policy,
            )  # fmt: skip
            raise EvictingRedis(f"Redis maxmemory-policy {mem.policy} may evict checkpoints")
        now = time.monotonic()
        if first or now - self._warned_at >= WARN_EVERY_SECONDS:
            self._warned_at = now
            log.error(
                "%s has maxmemory-policy %s: when it is full it evicts checkpoints and states are lost "
                "without an error; set it to noeviction (used %d of %s bytes)",
                self.address, mem.policy, mem.used_bytes, mem.maxmemory_bytes or "unlimited",
            )  # fmt: skip

    def families(self) -> list[Metric]:
        mem = self.memory
        if mem is None:
            return []
        used = GaugeMetricFamily(
            "stream_app_store_redis_used_memory_bytes", "Redis used_memory (INFO memory), as last read."
        )
        used.add_metric([], float(mem.used_bytes))
        limit = GaugeMetricFamily(
            "stream_app_store_redis_maxmemory_bytes", "Redis maxmemory as last read; 0 = no limit."
        )
        limit.add_metric([], float(mem.maxmemory_bytes))
        evicting = GaugeMetricFamily(
            "stream_app_store_redis_evicting_policy",
            "1 when Redis' maxmemory-policy may evict our keys (allkeys-*): checkpoints can be lost.",
            labels=["policy"],
        )
        evicting.add_metric([mem.policy], 1.0 if mem.evicting else 0.0)
        return [used, limit, evicting]

    async def close(self) -> None:
        if self._client is not None:
            try:
                await self._client.aclose()
            except Exception:  # noqa: BLE001
                pass
            self._client = None
