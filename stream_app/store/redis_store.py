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
from collections.abc import Sequence
from typing import Any

from .backend import TableStats
from .connection import redact_url
from .partition_state import PartitionFlush
from .redis_flush import (
    CLAIM_SCRIPT,
    FLUSH_CLAIM_LOST,
    FLUSH_FENCED,
    FLUSH_OK,
    FLUSH_SCRIPT,
    FLUSH_STALE,
    FLUSH_WIPED,
    RedisKeys,
    script_args,
)

log = logging.getLogger(__name__)

# While Redis stays unreachable, say so again this often (the first failure and the recovery are
# always logged).
_REMIND_SECONDS = 60.0


class CheckpointMoved(RuntimeError):
    """A claimed partition's checkpoint changed before its states were read (a failover took it
    back, or Redis lost it): the states would not match the offset its source is read from."""


class RedisBackend:
    """Checkpoints in Redis for one worker process (one ownership token); ``cluster``: ``url`` is
    one node of a Redis Cluster (redis-py's cluster client finds the others from it or from
    ``cluster_nodes``)."""

    durable = True

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        cluster: bool = False,
        cluster_nodes: Sequence[str] = (),
        socket_timeout: float = 10.0,
        load_timeout: float = 5.0,
        scan_count: int = 10000,
        max_fields_per_call: int = 10000,
    ) -> None:
        self.url = url
        self.cluster = cluster
        self.cluster_nodes = list(cluster_nodes)  # more seeds than the URL's node ("host:port")
        self.address = redact_url(url) + (" (cluster)" if cluster else "")
        self.prefix = prefix
        self.socket_timeout = socket_timeout
        self.load_timeout = load_timeout
        self.scan_count = scan_count
        self.max_fields_per_call = max_fields_per_call
        self.token = uuid.uuid4().hex  # this process's ownership token
        self._client: Any = None
        self._script: Any = None
        self._claim: Any = None
        # Per partition held: (our claim number, the offset Redis holds as far as we know: what we
        # read or last wrote). A write checks both, so Redis going back in time is noticed.
        self._held: dict[tuple[str, int], tuple[int, int | None]] = {}
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
            timeouts = {"socket_timeout": self.socket_timeout, "socket_connect_timeout": self.socket_timeout}
            if self.cluster:
                # Every key a script touches shares the partition's hash tag, so each call goes to
                # the one node serving that slot; the client follows MOVED and failovers.
                from redis.asyncio.cluster import ClusterNode, RedisCluster

                seeds = [ClusterNode(h, int(p)) for h, _, p in (n.rpartition(":") for n in self.cluster_nodes)]
                self._client = RedisCluster.from_url(self.url, startup_nodes=seeds or None, **timeouts)
            else:
                self._client = aioredis.Redis.from_url(self.url, **timeouts)
            self._script = self._client.register_script(FLUSH_SCRIPT)
            self._claim = self._client.register_script(CLAIM_SCRIPT)
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
                # Claim the partition and read its checkpoint's offset in one step: after the
                # claim a previous owner's late writes are refused by the checkpoint script.
                raw_offset, claim = await self._claim(keys=keys.all(), args=[self.token], client=r)
                offset = None if raw_offset is None else int(raw_offset)
                self._held[(table, partition)] = (int(claim), offset)
                self._unclaimed.discard((table, partition))
                self._reached()
                return offset
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
                # Still the checkpoint we claimed? (Nobody writes it meanwhile, but a failover or
                # a wipe can take it away.)
                raw_offset, owner = await r.hmget(keys.meta, ["offset", "owner"])
                self._reached()
                break
            except Exception as exc:  # noqa: BLE001 - keep trying: nothing else is correct here
                self._failed(exc, f"reading {table} partition {partition}")
                await asyncio.sleep(min(0.5 * attempt, 2.0))
        claimed = self._held.get((table, partition), (0, None))[1]
        stored = None if raw_offset is None else int(raw_offset)
        if owner is None or owner.decode() != self.token or stored != claimed:
            # Its source is already read from after the claimed offset: these states would not
            # match it. Not held (nothing applied, nothing written); claimed again at the next
            # rebalance.
            raise CheckpointMoved(
                f"{table} partition {partition}: redis at {self.address} holds offset {stored} "
                f"({'our claim' if owner is not None and owner.decode() == self.token else 'not our claim'}) "
                f"since it was claimed at offset {claimed}"
            )
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
        yields between calls; whatever happens in between, Redis shows the previous checkpoint or
        this one, never a mix: a large incremental checkpoint is kept aside until its last call,
        and the first call of a full rewrite drops the offset (a crash before the last call leaves
        no checkpoint: rebuilt)."""
        keys = RedisKeys(self.prefix, flush.table, flush.partition)
        where = (flush.table, flush.partition)
        stats = self.stats(flush.table)
        try:
            r = self._redis()
            claim, expected = self._held.get(where, (0, None))
            unchecked = where not in self._held
            chunks = write_chunks(flush, self.max_fields_per_call, unclaimed=where in self._unclaimed)
            for mode, chunk_sets, chunk_deletes, offset in chunks:
                check = "*" if unchecked or mode in ("f", "c") else expected
                args = script_args(self.token, mode, offset, check, claim, chunk_sets, chunk_deletes)
                status, claim = (int(x) for x in await self._script(keys=keys.all(), args=args, client=r))
                if status != FLUSH_OK:
                    break
                # What Redis holds now, for the next call's check.
                unchecked = False
                if mode in ("f", "c"):
                    expected = None
                if offset is not None:
                    expected = offset
                self._held[where] = (claim, expected)
        except Exception as exc:
            # Unknown whether the call landed: the next write's check finds out (a full rewrite).
            stats.write_errors += 1
            self._failed(exc, f"checkpoint of {flush.table} partition {flush.partition}")
            raise
        self._reached()
        if status == FLUSH_OK:
            stats.last_write_at = time.time()
            self._unclaimed.discard(where)
        elif status == FLUSH_WIPED:
            log.warning("redis at %s lost %s partition %d: it is rewritten whole", self.address, flush.table, flush.partition)
        elif status in (FLUSH_STALE, FLUSH_CLAIM_LOST):
            # A failover lost writes Redis had acknowledged: what it holds is an older, consistent
            # checkpoint (or an older claim). Memory is complete: rewrite it whole, as for a wipe.
            what = "checkpoint" if status == FLUSH_STALE else "claim"
            log.warning(
                "redis at %s went back to an older %s of %s partition %d (a failover lost acknowledged "
                "writes?): it is rewritten whole", self.address, what, flush.table, flush.partition,
            )  # fmt: skip
            status = FLUSH_WIPED
        elif status == FLUSH_FENCED:
            log.error("%s partition %d is owned by another worker now: not writing it", flush.table, flush.partition)
        return status

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


def write_chunks(
    flush: PartitionFlush, size: int, *, unclaimed: bool = False
) -> list[tuple[str, list, list, int | None]]:
    """The script calls of one checkpoint: (mode, sets, deletes, offset or None), at most ``size``
    fields each (FLUSH_SCRIPT's modes). Only the last call writes the offset."""
    size = max(1, size)
    fields: list[tuple[str, bytes | None]] = [*flush.sets, *((k, None) for k in flush.deletes)]
    parts = [
        ([(k, v) for k, v in block if v is not None], [k for k, v in block if v is None])
        for block in (fields[i : i + size] for i in range(0, len(fields), size))
    ] or [([], [])]
    last = len(parts) - 1
    out = []
    for n, (sets, deletes) in enumerate(parts):
        if flush.full:
            mode = ("c" if unclaimed else "f") if n == 0 else "n"
        elif last == 0:
            mode = "n"
        else:
            mode = "S" if n == 0 else "m" if n == last else "s"
        out.append((mode, sets, deletes, flush.offset if n == last else None))
    return out
