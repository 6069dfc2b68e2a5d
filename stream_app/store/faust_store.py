"""``redis://`` table store for faust-streaming.

Working state lives in process memory as plain Python objects (like Faust's
``memory://`` store), so a table access never waits on the network. A
background flusher writes the keys changed since the last flush to Redis, one
hash per (table, partition), and in the same atomic step the changelog offset
that the flushed data covers. On assignment a partition is loaded from Redis
and Faust's recovery replays only the changelog records after that offset.

Layout, consistency argument and limits: docs/state-store.md.

Structure: ``partition_state.PartitionedState`` is the plain-Python core (no
Faust, no Redis: unit tested directly); ``redis_flush`` holds the key layout and
the flush script; ``RedisStore`` here is the Faust/Redis shell around them.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from mode import Service
from yarl import URL

from faust.exceptions import ImproperlyConfigured
from faust.stores import base
from faust.streams import current_event
from faust.types import TP, AppT, CollectionT, EventT

from .connection import STORE_OPTIONS, store_options
from .metrics import RedisStoreStats
from .partition_state import PartitionedState, PartitionSnapshot
from .redis_flush import FLUSH_OK, FLUSH_SCRIPT, FLUSH_WIPED, RedisKeys, flush_backoff, script_args

__all__ = ["RedisStore"]

log = logging.getLogger(__name__)


# Redis URLs a store of this process could not load from, and since when: the
# other tables then skip their own retries (one wait per worker start, not one per table).
_UNREACHABLE: dict[str, float] = {}



class RedisStore(base.Store):
    """Faust table store: in-memory working state, flushed to Redis in batches.

    URL: ``redis://[:password@]host:port/db?prefix=...&flush_interval=1.0``.
    Query options (also accepted in the table's ``options=`` mapping, with or
    without a ``redis_`` prefix): ``prefix`` (default ``faust:<app id>``),
    ``flush_interval`` seconds (default 1.0), ``scan_count`` (HSCAN page, 1000),
    ``max_fields_per_call`` (fields per atomic flush call, 10000),
    ``producer_flush_timeout`` (seconds, 5.0; 0 disables the producer flush
    before a snapshot), ``max_backoff`` (seconds, 10.0: longest pause between
    flush attempts while Redis fails), ``load_timeout`` (seconds, 5.0: how long an
    assignment retries reading a partition before replaying the changelog
    instead), ``socket_timeout`` (seconds, 10.0, for every Redis call).
    """

    def __init__(
        self,
        url: str | URL,
        app: AppT,
        table: CollectionT,
        *,
        options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if getattr(table, "use_partitioner", False):
            # The producer picks the changelog partition after the store call,
            # so the store could not know which partition hash a key belongs to.
            raise ImproperlyConfigured("RedisStore does not support tables with use_partitioner=True")
        if getattr(table, "is_global", False):
            raise ImproperlyConfigured("RedisStore does not support global tables")
        super().__init__(url, app, table, options=options, **kwargs)
        opts = store_options(URL(url), options or {})
        # Our options are ours; anything else in the query (ssl_ca_certs=..., ...) is redis-py's.
        self.redis_url = str(URL(url).with_query({k: v for k, v in URL(url).query.items() if k not in STORE_OPTIONS}))
        # Faust puts self.url in the service label it logs ("[^--RedisStore: <url>]: Starting"):
        # keep the password out of it (connections use self.redis_url).
        if self.url.password:
            self.url = self.url.with_password("***")
        self.prefix: str = opts.get("prefix") or f"faust:{app.conf.id}"
        self.flush_interval: float = opts.get("flush_interval", 1.0)
        self.scan_count: int = opts.get("scan_count", 1000)
        self.max_fields_per_call: int = opts.get("max_fields_per_call", 10000)
        self.producer_flush_timeout: float = opts.get("producer_flush_timeout", 5.0)
        self.max_backoff: float = max(opts.get("max_backoff", 10.0), self.flush_interval)
        self.load_timeout: float = opts.get("load_timeout", 5.0)
        self.socket_timeout: float = opts.get("socket_timeout", 10.0)
        self.keys = RedisKeys(self.prefix, self.table_name)
        self.mem = PartitionedState()
        self.data = self.mem.data  # FastUserDict reads go straight to the dict
        self._token = uuid.uuid4().hex  # ownership token of this store instance
        self._fenced: set[int] = set()
        self._client: Any = None
        self._script: Any = None
        self._lock: asyncio.Lock | None = None
        self._wake: asyncio.Event | None = None
        self._flush_count = 0
        self._flush_errors = 0
        self._last_flush_seconds = 0.0
        self._last_flush_keys = 0
        self._last_flush_at: float | None = None
        self._loaded_keys: dict[int, int] = {}
        self._replayed: dict[int, int] = {}
        self._revoke_receiver_connected = False
        # Redis availability (flushes keep failing while it is down).
        self._failures = 0
        self._unreachable_since: float | None = None
        self._load_fallbacks = 0
        # Partitions loaded without reaching Redis: their first flush must claim them.
        self._unclaimed: set[int] = set()

    # -- lazily created loop-bound objects ------------------------------------
    @property
    def changelog_topic_name(self) -> str:
        return self.table.changelog_topic_name  # type: ignore[attr-defined]

    def _get_lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def _get_wake(self) -> asyncio.Event:
        if self._wake is None:
            self._wake = asyncio.Event()
        return self._wake

    def _redis(self) -> Any:
        if self._client is None:
            import redis.asyncio as aioredis

            # Bounded waits: a hung connection must not hold the flush lock, which
            # rebalances and shutdown wait on. (Options in the URL take precedence.)
            self._client = aioredis.Redis.from_url(
                self.redis_url,
                decode_responses=False,
                socket_timeout=self.socket_timeout,
                socket_connect_timeout=min(self.socket_timeout, 2.0),
            )
            self._script = self._client.register_script(FLUSH_SCRIPT)
        return self._client

    # -- mapping interface (hot path: memory only) ----------------------------
    def _partition_for_write(self, key: Any) -> int:
        event = current_event()
        if event is not None:
            return event.message.partition
        p = self.mem.partition_of(key)
        if p is not None:  # e.g. Faust's window expiry deleting a known key
            return p
        raise TypeError("Cannot modify table key from outside of stream iteration")

    def __setitem__(self, key: Any, value: Any) -> None:
        self.mem.set(key, value, self._partition_for_write(key))

    def __delitem__(self, key: Any) -> None:
        if key not in self.mem.data:
            raise KeyError(key)
        event = current_event()
        self.mem.delete(key, event.message.partition if event is not None else None)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for mapping in args:
            items = mapping.items() if hasattr(mapping, "items") else mapping
            for k, v in items:
                self[k] = v
        for k, v in kwargs.items():
            self[k] = v

    def clear(self) -> None:
        for key in list(self.mem.data):
            self.mem.delete(key)

    def _clear(self) -> None:
        self.clear()

    # -- processor API --------------------------------------------------------
    def partition_keys(self, partition: int) -> list:
        """Keys currently held for ``partition`` (a copy; safe to iterate while writing)."""
        return self.mem.keys_of(partition)

    def partitions(self) -> list[int]:
        """Partitions this worker owns (active) for this table."""
        return sorted(self.mem.owned)

    def stats(self) -> RedisStoreStats:
        return RedisStoreStats(
            table=self.table_name,
            partitions=sorted(self.mem.owned),
            keys_per_partition=self.mem.keys_per_partition(),
            dirty_keys=self.mem.dirty_count(),
            flush_count=self._flush_count,
            flush_errors=self._flush_errors,
            last_flush_seconds=self._last_flush_seconds,
            last_flush_keys=self._last_flush_keys,
            last_flush_at=self._last_flush_at,
            offsets={p: self.mem.flushed_offsets.get(p) for p in sorted(self.mem.owned)},
            loaded_keys=dict(self._loaded_keys),
            replayed_records=dict(self._replayed),
            fenced_partitions=sorted(self._fenced),
            redis_available=self._failures == 0,
            consecutive_flush_errors=self._failures,
            unreachable_since=self._unreachable_since,
            load_fallbacks=self._load_fallbacks,
        )

    # -- changelog / offsets --------------------------------------------------
    def apply_changelog_batch(
        self,
        batch: Iterable[EventT],
        to_key: Callable[[Any], Any],
        to_value: Callable[[Any], Any],
    ) -> None:
        state = self.mem
        replayed = self._replayed
        for event in batch:
            msg = event.message
            if msg.key is None:
                raise TypeError(f"Changelog entry is missing key: {msg}")
            deleted = msg.value is None
            partition = msg.partition
            state.apply(
                to_key(event.key),
                None if deleted else to_value(event.value),
                partition,
                msg.offset,
                deleted,
            )
            replayed[partition] = replayed.get(partition, 0) + 1

    def persisted_offset(self, tp: TP) -> int | None:
        # Answered from memory: the offset was read from Redis in on_rebalance,
        # which Faust awaits before its recovery asks for it.
        if tp.topic != self.changelog_topic_name or tp.partition not in self.mem.owned:
            return None
        return self.mem.offsets.get(tp.partition)

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        # Called once Kafka acked our changelog record: memory already holds it.
        if tp.partition in self.mem.owned and tp.topic == self.changelog_topic_name:
            self.mem.note_offset(tp.partition, offset)

    async def need_active_standby_for(self, tp: TP) -> bool:
        return True

    # -- rebalance --------------------------------------------------------------
    async def on_rebalance(
        self,
        assigned: set[TP],
        revoked: set[TP],
        newly_assigned: set[TP],
        generation_id: int = 0,
    ) -> None:
        """Drop revoked partitions; load newly owned ones from Redis.

        Faust's TableManager awaits this for every table *before* the recovery
        service asks ``persisted_offset`` and seeks the changelog, so the load
        and the offset are in place when the tail replay starts.
        """
        self._connect_revoke_signal()
        topic = self.changelog_topic_name
        standbys = {tp.partition for tp in self.app.assignor.assigned_standbys() if tp.topic == topic}
        active = {tp.partition for tp in assigned if tp.topic == topic} - standbys
        async with self._get_lock():
            gone = self.mem.owned - active
            if gone:
                try:
                    await self._flush_locked(partitions=gone, reason="revoke")
                except Exception as exc:  # Redis down: the next owner replays a longer tail
                    log.warning("RedisStore[%s]: flush of revoked partitions failed: %r", self.table_name, exc)
                for p in gone:
                    n = self.mem.drop_partition(p)
                    self._fenced.discard(p)
                    self._unclaimed.discard(p)
                    log.info("RedisStore[%s]: partition %d revoked, dropped %d keys", self.table_name, p, n)
            for p in sorted(active - self.mem.owned):
                await self._load_partition(p)

    def _connect_revoke_signal(self) -> None:
        # Flush while Faust's revoke phase holds processing still, i.e. before
        # the group settles and another worker may load these partitions.
        if not self._revoke_receiver_connected:
            self.app.on_partitions_revoked.connect(self._on_app_partitions_revoked)
            self._revoke_receiver_connected = True

    async def _on_app_partitions_revoked(self, sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        topic = self.changelog_topic_name
        parts = {tp.partition for tp in revoked if tp.topic == topic} & self.mem.owned
        if parts:
            try:
                await self.flush(partitions=parts, reason="partitions-revoked")
            except Exception as exc:  # never fail the rebalance over the snapshot
                log.warning("RedisStore[%s]: flush of revoked partitions failed: %r", self.table_name, exc)

    async def _load_partition(self, partition: int) -> None:
        started = time.monotonic()
        # Once Redis failed a load in this process, later partitions and tables try once only.
        known_down = self._failures > 0 or self.redis_url in _UNREACHABLE
        deadline = started + (0.0 if known_down else self.load_timeout)
        attempt = 0
        while True:
            attempt += 1
            try:
                items, offset = await self._read_partition(partition)
                self._unclaimed.discard(partition)
                self._note_success()
                break
            except Exception as exc:  # connection trouble: retry, then do without Redis
                if time.monotonic() + min(0.5 * attempt, 2.0) > deadline:
                    # The changelog is complete: replay all of it instead of crash-looping
                    # until Redis is back. The first flush claims the partition and
                    # rewrites its hash.
                    self._note_failure(exc, "loading partition %d" % partition)
                    log.warning(
                        "RedisStore[%s]: redis unreachable (%r); partition %d will be replayed "
                        "from the whole changelog", self.table_name, exc, partition,
                    )
                    items, offset = [], None
                    _UNREACHABLE.setdefault(self.redis_url, time.time())
                    self._unclaimed.add(partition)
                    self._load_fallbacks += 1
                    break
                log.warning("RedisStore[%s]: loading partition %d failed (%r), retrying", self.table_name, partition, exc)
                await asyncio.sleep(min(0.5 * attempt, 2.0))
        n = self.mem.load_partition(partition, items, offset)
        self._fenced.discard(partition)
        self._loaded_keys[partition] = n
        self._replayed[partition] = 0
        log.info(
            "RedisStore[%s]: loaded partition %d: %d keys, persisted offset %s in %.3fs",
            self.table_name, partition, n, offset, time.monotonic() - started,
        )

    async def _read_partition(self, partition: int) -> tuple[list, int | None]:
        r = self._redis()
        p = str(partition)
        # Read the offset and claim the partition in one transaction: after the
        # claim a previous owner's late flushes are refused by the script.
        async with r.pipeline(transaction=True) as pipe:
            pipe.hget(self.keys.offsets, p)
            pipe.hset(self.keys.owners, p, self._token)
            raw_offset, _ = await pipe.execute()
        if raw_offset is None:
            return [], None  # not a usable snapshot: full replay + full rewrite
        decode_key, decode_value = self._decode_key_obj, self._decode_value_obj
        items: list = []
        cursor = 0
        while True:
            cursor, page = await r.hscan(self.keys.data(partition), cursor, count=self.scan_count)
            items.extend((decode_key(k), decode_value(v)) for k, v in page.items())
            if not cursor:
                break
        return items, int(raw_offset)

    def _decode_key_obj(self, raw: bytes) -> Any:
        # Same path as a changelog record: serializer, then the table's to_key
        # (turns JSON lists back into tuples, e.g. windowed keys).
        return self.table._to_key(self._decode_key(raw))  # type: ignore[attr-defined]

    def _decode_value_obj(self, raw: bytes) -> Any:
        return self.table._to_value(self._decode_value(raw))  # type: ignore[attr-defined]

    def _encode_value_bytes(self, value: Any) -> bytes:
        out = self._encode_value(value)
        if out is None:
            raise TypeError(f"RedisStore[{self.table_name}]: value serialized to None")
        return out

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        topic = self.changelog_topic_name
        active = {tp.partition for tp in active_tps if tp.topic == topic}
        # Standby data is memory-only and, like Faust's memory store, not kept.
        for p in list(self.mem.partition_keys):
            if p not in active and p not in self.mem.owned:
                self.mem.drop_partition(p)
        replayed = {p: self._replayed.get(p, 0) for p in sorted(self.mem.owned)}
        log.info(
            "RedisStore[%s]: recovery applied %d changelog records per partition %s; "
            "loaded from redis %s",
            self.table_name, sum(replayed.values()), replayed,
            {p: self._loaded_keys.get(p, 0) for p in sorted(self.mem.owned)},
        )
        self._get_wake().set()  # persist the recovered state promptly

    # -- flushing ---------------------------------------------------------------
    @Service.task
    async def _flusher(self) -> None:
        wake = self._get_wake()
        while not self.should_stop:
            delay = flush_backoff(self._failures, self.flush_interval, self.max_backoff)
            try:
                if self._failures:
                    await asyncio.sleep(delay)  # backing off: wake-ups wait too
                else:
                    await asyncio.wait_for(wake.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass
            wake.clear()
            if self.should_stop:
                break
            try:
                await self.flush(reason="timer")
            except asyncio.CancelledError:
                raise
            except Exception:  # keep going: dirty keys were restored, memory and changelog hold them
                pass  # counted and logged by _note_failure

    def _note_failure(self, exc: BaseException, what: str = "flush") -> None:
        self._failures += 1
        if self._failures == 1:
            self._unreachable_since = time.time()
            log.warning(
                "RedisStore[%s]: %s failed: %r; working from memory and the changelog, retrying with "
                "backoff (up to %.0fs)", self.table_name, what, exc, self.max_backoff,
            )
        else:
            log.debug("RedisStore[%s]: %s failed again (%d in a row): %r", self.table_name, what, self._failures, exc)

    def _note_success(self) -> None:
        _UNREACHABLE.pop(self.redis_url, None)
        if self._failures:
            down = time.time() - (self._unreachable_since or time.time())
            log.warning(
                "RedisStore[%s]: redis reachable again after %.1fs and %d failed attempts; %d keys pending",
                self.table_name, down, self._failures, self.mem.dirty_count(),
            )
        self._failures = 0
        self._unreachable_since = None

    async def flush(self, partitions: Iterable[int] | None = None, reason: str = "manual") -> int:
        """Write pending changes of owned partitions to Redis; returns keys written."""
        async with self._get_lock():
            return await self._flush_locked(partitions, reason)

    async def _maybe_flush_producer(self) -> None:
        # Let in-flight changelog sends complete first: then the data we
        # snapshot is (nearly) all in the changelog and the offsets are current.
        if self.producer_flush_timeout <= 0:
            return
        producer = getattr(self.app, "_producer", None)
        if producer is None or not producer._started.is_set() or producer.should_stop:
            return
        try:
            await asyncio.wait_for(producer.flush(), timeout=self.producer_flush_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("RedisStore[%s]: producer flush before snapshot failed: %r", self.table_name, exc)

    async def _flush_locked(self, partitions: Iterable[int] | None, reason: str) -> int:
        state = self.mem
        wanted = set(partitions) if partitions is not None else set(state.owned)
        targets = sorted(wanted & (state.owned - self._fenced))
        if not any(
            state.dirty.get(p) or p in state.full_rewrite or state.offsets.get(p) != state.flushed_offsets.get(p)
            for p in targets
        ):
            return 0
        await self._maybe_flush_producer()
        started = time.monotonic()
        # Pending keys and offsets of every target at one instant (no await).
        snaps = [snap for snap in (state.begin(p) for p in targets) if snap is not None]
        written = 0
        pending = list(snaps)
        try:
            r = self._redis()
            while pending:
                snap = pending[0]
                status, n = await self._write_snapshot(r, snap)
                pending.pop(0)
                written += n
                if status == FLUSH_OK:
                    state.flushed(snap)
                    self._unclaimed.discard(snap.partition)
                elif status == FLUSH_WIPED:
                    # Our ownership record vanished: Redis lost data under us.
                    # Memory is complete, so rewrite the whole partition.
                    log.warning("RedisStore[%s]: partition %d missing in redis; full rewrite", self.table_name, snap.partition)
                    state.restore(snap)
                    state.require_full_rewrite(snap.partition)
                    self._get_wake().set()
                else:
                    log.error(
                        "RedisStore[%s]: partition %d is owned by another worker; not writing it any more",
                        self.table_name, snap.partition,
                    )
                    self._fenced.add(snap.partition)
        except BaseException as exc:
            for snap in pending:
                state.restore(snap)
            self._last_flush_seconds = time.monotonic() - started
            if isinstance(exc, Exception):
                self._flush_errors += 1
                self._note_failure(exc)
            raise
        self._note_success()
        self._last_flush_seconds = time.monotonic() - started
        self._flush_count += 1
        self._last_flush_keys = written
        self._last_flush_at = time.time()
        log.debug("RedisStore[%s]: flush (%s) wrote %d fields in %.4fs", self.table_name, reason, written, self._last_flush_seconds)
        return written

    async def _write_snapshot(self, r: Any, snap: PartitionSnapshot) -> tuple[int, int]:
        """Encode and write one partition in calls of ``max_fields_per_call`` fields.

        The loop yields between calls, so a large flush (e.g. the full rewrite
        after a full replay) does not stall processing. Only the first call of
        a full rewrite drops the old hash; only the last one writes the offset.
        """
        keys = [self.keys.data(snap.partition), self.keys.offsets, self.keys.owners]
        todo = list(snap.keys)
        size = max(1, self.max_fields_per_call)
        written = 0
        first = True
        i = 0
        while first or i < len(todo):
            part = todo[i : i + size]
            i += size
            last = i >= len(todo)
            sets, dels = self.mem.encode(snap.partition, part, self._encode_key, self._encode_value_bytes)
            mode = ("c" if snap.partition in self._unclaimed else "f") if (snap.full and first) else "n"
            args = script_args(snap.partition, self._token, mode, snap.offset if last else None, sets, dels)
            status = int(await self._script(keys=keys, args=args, client=r))
            if status != FLUSH_OK:
                return status, written
            written += len(part)
            first = False
        return FLUSH_OK, written

    # -- lifecycle ----------------------------------------------------------------
    async def on_stop(self) -> None:
        try:
            await self.flush(reason="stop")
        except Exception as exc:
            log.error("RedisStore[%s]: final flush failed: %r", self.table_name, exc)

    async def on_shutdown(self) -> None:
        if self._revoke_receiver_connected:
            try:
                self.app.on_partitions_revoked.disconnect(self._on_app_partitions_revoked)
            except Exception:
                pass
            self._revoke_receiver_connected = False
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def reset_state(self) -> None:
        """Forget memory and delete this table's keys in Redis (``faust reset``)."""
        import redis

        self.mem = PartitionedState()
        self.data = self.mem.data
        client = redis.Redis.from_url(self.redis_url)
        try:
            batch = []
            for key in client.scan_iter(match=self.keys.pattern, count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    client.unlink(*batch)
                    batch.clear()
            if batch:
                client.unlink(*batch)
        finally:
            client.close()

    async def backup_partition(self, tp: TP | int, flush: bool = True, purge: bool = False, keep: int = 1) -> None:
        """Not applicable: Redis holds the durable copy."""

    def restore_backup(self, tp: TP | int, latest: bool = True, backup_id: int = 0) -> None:
        """Not applicable: Redis holds the durable copy."""

    def _repr_info(self) -> str:
        url = URL(self.redis_url)
        safe = url.with_password("***") if url.password else url  # reprs end up in logs
        return f"table_name={self.table_name} url={safe} prefix={self.prefix}"
