"""Redis going back in time under a running owner, against a real Redis.

A failover to a replica (Redis Cluster, Sentinel) can lose the last writes the old master had
acknowledged: Redis then holds an older checkpoint, or an older claim, than the workers think.
Here the loss is made exact: the partition's keys are dumped after one write and restored after a
later one (what the promoted replica would hold). Real scripts, the real backend, and the real
checkpoint step (``Checkpointer``) over real ``PartitionStates``; a real Redis Cluster failover
is in tests/integration/test_redis_cluster.py and tests/faults.

Also here: a checkpoint too large for one script call is never visible half-written, even when
the worker stops between its calls.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from stream_app.store.partition_state import PartitionFlush, PartitionStates
from stream_app.store.redis_flush import FLUSH_FENCED, FLUSH_OK, RedisKeys
from stream_app.store.redis_store import CheckpointMoved, RedisBackend
from stream_app.worker.checkpoint import Checkpointer
from stream_app.worker.processing import Outbox

pytestmark = pytest.mark.integration


class _Proc:
    """What the checkpoint needs of a processor: its table's states."""

    def __init__(self) -> None:
        self.states = PartitionStates("t", lambda s: str(s).encode(), lambda raw: int(raw))


def _checkpointer(backend: RedisBackend, proc: _Proc) -> Checkpointer:
    async def send(topic, key, value):  # no signals in these tests
        raise AssertionError("no signal expected")

    async def flush():
        pass

    return Checkpointer([proc], Outbox(), backend, signals_topic="s", send=send, flush_producer=flush,
                        lock=asyncio.Lock())  # fmt: skip


def _snapshot(client, keys: RedisKeys) -> dict:
    return {k: client.dump(k) for k in keys.all()}


def _restore(client, snap: dict) -> None:
    """Put the keys back as they were at the snapshot: a replica promoted before it saw the rest."""
    for k, raw in snap.items():
        client.delete(k)
        if raw is not None:
            client.restore(k, 0, raw)


def _redis_view(client, keys: RedisKeys) -> tuple[dict, int | None]:
    states = {k.decode(): int(v) for k, v in client.hgetall(keys.states).items()}
    raw = client.hget(keys.meta, "offset")
    return states, None if raw is None else int(raw)


def _apply(proc: _Proc, offset: int, **changes: int | None) -> None:
    """Events up to ``offset`` applied: states set (None = deleted)."""
    for key, value in changes.items():
        if value is None:
            proc.states.delete(key, 0)
        else:
            proc.states.put(key, 0, value)
    proc.states.applied(0, offset)


def _memory(proc: _Proc) -> dict:
    return {k: v for k, _, v in proc.states.items({0})}


def test_an_older_checkpoint_under_a_running_owner_is_rewritten_whole(stack, redis_client):
    """Without the offset check the owner's next (incremental) checkpoint would go on top of the
    older one: keys changed only in the lost checkpoint would keep their older values under a
    newer offset, and a worker loading it later would never re-read the events that changed them."""
    prefix = f"rf-{uuid.uuid4().hex[:8]}"
    keys = RedisKeys(prefix, "t", 0)

    async def run() -> None:
        backend = RedisBackend(stack.redis_url, prefix=prefix)
        proc = _Proc()
        cp = _checkpointer(backend, proc)
        try:
            proc.states.install(0, *await _take(backend))
            _apply(proc, 10, a=1, b=1)
            assert await cp.run()
            snap = _snapshot(redis_client, keys)  # what the replica has
            _apply(proc, 20, a=2, c=1)
            assert await cp.run()  # acknowledged by the master, lost in the failover:
            _restore(redis_client, snap)
            assert _redis_view(redis_client, keys) == ({"a": 1, "b": 1}, 10)

            # A kept partition is not kept when Redis went back: reloaded from the older checkpoint.
            assert not await backend.still_ours("t", 0, proc.states.flushed_offset(0))

            _apply(proc, 30, b=2)
            assert not await cp.run()  # refused: Redis is not at the offset we last wrote
            assert _redis_view(redis_client, keys) == ({"a": 1, "b": 1}, 10)  # untouched
            assert await cp.run()  # the whole partition from memory
            assert _redis_view(redis_client, keys) == (_memory(proc), 30) == ({"a": 2, "b": 2, "c": 1}, 30)
        finally:
            await backend.close()

    asyncio.run(run())


def test_a_lost_claim_is_told_from_a_newer_owner(stack, redis_client):
    """Worker b claimed the partition after a, the claim was lost: Redis shows a as the owner
    again. a (which missed the rebalance) may still write; b's next checkpoint takes the
    partition over whole, after which a is fenced. A genuine newer claim still fences."""
    prefix = f"rf-{uuid.uuid4().hex[:8]}"
    keys = RedisKeys(prefix, "t", 0)

    async def run() -> None:
        a, b = RedisBackend(stack.redis_url, prefix=prefix), RedisBackend(stack.redis_url, prefix=prefix)
        pa, pb = _Proc(), _Proc()
        ca, cb = _checkpointer(a, pa), _checkpointer(b, pb)
        try:
            pa.states.install(0, *await _take(a))
            _apply(pa, 10, x=1)
            assert await ca.run()
            snap = _snapshot(redis_client, keys)
            pb.states.install(0, *await _take(b))  # b claims (claim 2) ...
            _restore(redis_client, snap)  # ... and the failover loses that claim
            _apply(pb, 12, y=1)

            _apply(pa, 11, x=2)
            assert await ca.run()  # a is the owner as far as Redis knows
            assert not await cb.run()  # b: another owner, but with an older claim: rewrite whole
            assert pb.states.partitions() == {0}, "b keeps the partition"
            assert await cb.run()
            assert _redis_view(redis_client, keys) == ({"x": 1, "y": 1}, 12)
            _apply(pa, 13, x=3)
            assert not await ca.run()  # now a is fenced, and lets the partition go
            assert pa.states.partitions() == set()
            assert _redis_view(redis_client, keys) == ({"x": 1, "y": 1}, 12)

            # A claim that was not lost fences the older owner at once.
            c = RedisBackend(stack.redis_url, prefix=prefix)
            await c.claim("t", 0)
            await c.close()
            flush = PartitionFlush("t", 0, [("y", b"2")], [], 14, False, {"y"})
            assert await b.write(flush) == FLUSH_FENCED
            assert await b.write(PartitionFlush("t", 0, [("y", b"2")], [], 14, True, {"y"})) == FLUSH_FENCED
        finally:
            await a.close()
            await b.close()

    asyncio.run(run())


async def _take(backend: RedisBackend, partition: int = 0) -> tuple[list, int | None]:
    """What an assignment does: claim the partition, then read its states (items, offset)."""
    offset = await backend.claim("t", partition)
    return ([] if offset is None else await backend.read("t", partition)), offset


def test_states_read_after_the_claim_must_still_be_the_claimed_checkpoint(stack, redis_client):
    """An assignment claims a partition (its source is then read from after the claimed offset)
    and reads the states later. If Redis went back in between, or lost the partition, those
    states would not match that offset: the read refuses them instead of returning them."""
    prefix = f"rf-{uuid.uuid4().hex[:8]}"
    keys = RedisKeys(prefix, "t", 0)

    async def run() -> None:
        a, b = RedisBackend(stack.redis_url, prefix=prefix), RedisBackend(stack.redis_url, prefix=prefix)
        try:
            await a.claim("t", 0)
            assert await a.write(PartitionFlush("t", 0, [("x", b"1")], [], 10, True)) == FLUSH_OK
            snap = _snapshot(redis_client, keys)
            assert await a.write(PartitionFlush("t", 0, [("x", b"2")], [], 20, False)) == FLUSH_OK
            assert await b.claim("t", 0) == 20
            _restore(redis_client, snap)  # the failover took the last checkpoint and the claim back
            with pytest.raises(CheckpointMoved, match="holds offset 10 .not our claim. since it was claimed at offset 20"):
                await b.read("t", 0)
            assert await b.claim("t", 0) == 10 and await b.read("t", 0) == [("x", b"1")]  # claimed again: fine
            redis_client.delete(keys.meta, keys.states)  # wiped between claim and read
            with pytest.raises(CheckpointMoved):
                await b.read("t", 0)
        finally:
            await a.close()
            await b.close()

    asyncio.run(run())


def test_a_large_incremental_checkpoint_is_never_seen_half_written(stack, redis_client):
    """More changes than one script call takes: the calls before the last are kept aside, so
    between calls (and after a worker stopped between them) Redis shows the previous checkpoint,
    states and offset together; the last call makes the whole new one visible at once."""
    prefix = f"rf-{uuid.uuid4().hex[:8]}"
    keys = RedisKeys(prefix, "t", 0)
    seen: list = []
    stop_after: list[int] = []

    async def run() -> None:
        backend = RedisBackend(stack.redis_url, prefix=prefix, max_fields_per_call=7)
        script = backend._redis() and backend._script

        async def watching(keys, args, client):  # the real script, observed between calls
            if stop_after and len(seen) == stop_after[0]:
                raise ConnectionError("worker gone")
            status = await script(keys=keys, args=args, client=client)
            seen.append(_redis_view(redis_client, RedisKeys(prefix, "t", 0)))
            return status

        try:
            await backend.claim("t", 0)
            base = {f"k{i}": str(i).encode() for i in range(30)}
            assert await backend.write(PartitionFlush("t", 0, list(base.items()), [], 99, True, set(base))) == FLUSH_OK
            before = _redis_view(redis_client, keys)
            backend._script = watching
            changes = [(f"k{i}", b"-1") for i in range(10)] + [(f"n{i}", b"7") for i in range(12)]
            gone = [f"k{i}" for i in range(20, 30)]
            flush = PartitionFlush("t", 0, changes, gone, 150, False, set())

            stop_after.append(2)  # 22 sets and 10 deletes: 5 calls; the worker stops after two
            with pytest.raises(ConnectionError):
                await backend.write(flush)
            assert seen == [before, before]
            stop_after.clear()
            items, offset = await _take(backend)  # the next owner (here: the same worker, restarted)
            assert ({k: int(v) for k, v in items}, offset) == before
            assert redis_client.exists(keys.pending) == 0  # what the stopped write kept aside is void

            seen.clear()
            assert await backend.write(flush) == FLUSH_OK
            after = {**{k: int(v) for k, v in base.items()}, **{k: int(v) for k, v in changes}}
            for k in gone:
                del after[k]
            assert seen[:-1] == [before] * (len(seen) - 1) and seen[-1] == (after, 150)
            assert len(seen) == 5 and redis_client.exists(keys.pending) == 0
        finally:
            await backend.close()

    asyncio.run(run())
