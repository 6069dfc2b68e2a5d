"""The Redis state backend: the system of record of every worker's entity states.

A checkpoint writes each changed table partition in one script call: the changed states, the
source offset they reflect, checked against the partition's owner (``redis_flush``). On
assignment a worker claims the partition and reads it; it then reads its source from the next
offset, so what Redis holds plus the source topic is always the whole truth. Redis down: the
worker keeps processing from memory and retries with back-off; a partition it cannot read at
assignment is rebuilt from its source's start. Argument and limits: docs/state-store.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from .backend import TableStats
from .connection import redact_url
from .partition_state import PartitionFlush
from .redis_flush import FLUSH_FENCED, FLUSH_OK, FLUSH_SCRIPT, FLUSH_WIPED, RedisKeys, script_args

log = logging.getLogger(__name__)

# While Redis stays unreachable, say so again this often (the first failure and the recovery are
# always logged).
_REMIND_SECONDS = 60.0


class RedisBackend:
    """Checkpoints in Redis for one worker process (one ownership token)."""

    durable = True

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        socket_timeout: float = 10.0,
        load_timeout: float = 5.0,
        scan_count: int = 10000,
        max_fields_per_call: int = 10000,
    ) -> None:
        self.url = url
        self.address = redact_url(url)
        self.prefix = prefix
        self.socket_timeout = socket_timeout
        self.load_timeout = load_timeout
        self.scan_count = scan_count
        self.max_fields_per_call = max_fields_per_call
        self.token = uuid.uuid4().hex  # this process's ownership token
        self._client: Any = None
        self._script: Any = None
        self._stats: dict[str, TableStats] = {}
        self._failures = 0
        self._unreachable_since: float | None = None
        self._last_reminder = 0.0
        self._load_given_up = False  # a load failed after retries: later loads try once
        # Partitions assigned while Redis was unreachable: their first write claims them.
        self._unclaimed: set[tuple[str, int]] = set()

    # -- connection and availability --------------------------------------------
    def _redis(self) -> Any:
        if self._client is None:
            import redis.asyncio as aioredis

            # Bounded waits: a hung connection must not hold a checkpoint, which commits and
            # rebalances wait on. (Options in the URL take precedence.)
            self._client = aioredis.Redis.from_url(
                self.url, socket_timeout=self.socket_timeout, socket_connect_timeout=self.socket_timeout
            )
            self._script = self._client.register_script(FLUSH_SCRIPT)
        return self._client

    @property
    def available(self) -> bool:
        return self._failures == 0

    def _failed(self, exc: BaseException, what: str) -> None:
        self._failures += 1
        now = time.time()
        if self._failures == 1:
            self._unreachable_since = now
            self._last_reminder = now
            log.warning(
                "redis at %s: %s failed (%r); processing goes on from memory, retrying", self.address, what, exc
            )
        elif now - self._last_reminder >= _REMIND_SECONDS:
            self._last_reminder = now
            log.warning(
                "redis at %s still unreachable after %.0fs (%d failed attempts): %r",
                self.address, now - (self._unreachable_since or now), self._failures, exc,
            )

    def _reached(self) -> None:
        if self._failures:
            down = time.time() - (self._unreachable_since or time.time())
            log.warning("redis at %s reachable again after %.1fs and %d failed attempts", self.address, down, self._failures)
        self._failures = 0
        self._unreachable_since = None
        self._load_given_up = False

    def stats(self, table: str) -> TableStats:
        return self._stats.setdefault(table, TableStats(table))

    # -- assignment -----------------------------------------------------------------
    async def claim(self, table: str, partition: int) -> int | None:
        keys = RedisKeys(self.prefix, table, partition)
        deadline = time.monotonic() + (0.0 if self._load_given_up else self.load_timeout)
        attempt = 0
        while True:
            attempt += 1
            try:
                r = self._redis()
                # Read the checkpoint and claim the partition in one transaction: after the claim
                # a previous owner's late writes are refused by the script.
                async with r.pipeline(transaction=True) as pipe:
                    pipe.hget(keys.meta, "offset")
                    pipe.hset(keys.meta, "owner", self.token)
                    raw_offset, _ = await pipe.execute()
                self._unclaimed.discard((table, partition))
                self._reached()
                return None if raw_offset is None else int(raw_offset)
            except Exception as exc:  # connection trouble: retry, then rebuild from the source
                delay = min(0.5 * attempt, 2.0)
                if time.monotonic() + delay > deadline:
                    self._failed(exc, f"claiming {table} partition {partition}")
                    log.warning(
                        "redis at %s unreachable: %s partition %d is rebuilt from its source topic's start",
                        self.address, table, partition,
                    )
                    self._load_given_up = True
                    self._unclaimed.add((table, partition))
                    self.stats(table).load_fallbacks += 1
                    return None
                await asyncio.sleep(delay)

    async def read(self, table: str, partition: int) -> list[tuple[str, bytes]]:
        """Read a claimed partition's states, retrying until Redis answers (events wait: the
        source was already positioned after this checkpoint; a new rebalance cancels)."""
        keys = RedisKeys(self.prefix, table, partition)
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                r = self._redis()
                items: list[tuple[str, bytes]] = []
                cursor = 0
                while True:
                    cursor, page = await r.hscan(keys.states, cursor, count=self.scan_count)
                    items.extend((k.decode(), v) for k, v in page.items())
                    if not cursor:
                        break
                self._reached()
                break
            except Exception as exc:  # noqa: BLE001 - keep trying: nothing else is correct here
                self._failed(exc, f"reading {table} partition {partition}")
                await asyncio.sleep(min(0.5 * attempt, 2.0))
        self.stats(table).loaded_states[partition] = len(items)
        log.info(
            "%s: loaded partition %d: %d keys in %.3fs", table, partition, len(items), time.monotonic() - started
        )
        return items

    async def still_ours(self, table: str, partition: int, offset: int | None) -> bool:
        keys = RedisKeys(self.prefix, table, partition)
        try:
            raw_offset, owner = await self._redis().hmget(keys.meta, ["offset", "owner"])
        except Exception as exc:  # unknown: reload (which falls back to the source if need be)
            self._failed(exc, f"checking {table} partition {partition}")
            return False
        self._reached()
        stored = None if raw_offset is None else int(raw_offset)
        return owner is not None and owner.decode() == self.token and stored == offset

    # -- checkpoints --------------------------------------------------------------------
    async def write(self, flush: PartitionFlush) -> int:
        """Write one partition's checkpoint in calls of ``max_fields_per_call`` fields. The loop
        yields between calls; only the first call of a full rewrite drops the old states, only
        the last one writes the offset (a crash in between leaves no checkpoint: rebuilt)."""
        keys = RedisKeys(self.prefix, flush.table, flush.partition)
        stats = self.stats(flush.table)
        try:
            r = self._redis()
            sets, deletes = flush.sets, flush.deletes
            size = max(1, self.max_fields_per_call)
            chunks = [(sets[i : i + size], []) for i in range(0, len(sets), size)]
            chunks += [([], deletes[i : i + size]) for i in range(0, len(deletes), size)]
            chunks = chunks or [([], [])]
            unclaimed = (flush.table, flush.partition) in self._unclaimed
            for n, (chunk_sets, chunk_deletes) in enumerate(chunks):
                mode = ("c" if unclaimed else "f") if flush.full and n == 0 else "n"
                offset = flush.offset if n == len(chunks) - 1 else None
                args = script_args(self.token, mode, offset, chunk_sets, chunk_deletes)
                status = int(await self._script(keys=[keys.states, keys.meta], args=args, client=r))
                if status != FLUSH_OK:
                    break
        except Exception as exc:
            stats.write_errors += 1
            self._failed(exc, f"checkpoint of {flush.table} partition {flush.partition}")
            raise
        self._reached()
        if status == FLUSH_OK:
            stats.last_write_at = time.time()
            self._unclaimed.discard((flush.table, flush.partition))
        elif status == FLUSH_WIPED:
            log.warning("redis at %s lost %s partition %d: it is rewritten whole", self.address, flush.table, flush.partition)
        elif status == FLUSH_FENCED:
            log.error("%s partition %d is owned by another worker now: not writing it", flush.table, flush.partition)
        return status

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()
