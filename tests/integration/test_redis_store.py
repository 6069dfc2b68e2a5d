"""The Redis state backend against a real Redis: checkpoints are atomic per partition, fenced by
ownership, detected when Redis lost them, chunked without ever exposing a half-written checkpoint,
and a partition assigned while Redis is unreachable claims it back with its first write.

Worker-level behaviour (kill -9, graceful restarts, partitions moving between workers, Redis
restarts and wipes under traffic) is covered end to end by tests/faults and
tests/integration/test_metrics_reference.py.
"""

from __future__ import annotations

import asyncio
import socket
import uuid

import pytest

from stream_app.store.partition_state import PartitionFlush
from stream_app.store.redis_flush import FLUSH_FENCED, FLUSH_OK, FLUSH_SCRIPT, FLUSH_WIPED, RedisKeys, script_args
from stream_app.store.redis_store import RedisBackend

pytestmark = pytest.mark.integration


def _prefix() -> str:
    return f"rs-{uuid.uuid4().hex[:8]}"


def _flush(sets: dict[str, bytes], offset: int | None, *, deletes=(), full=False, table="t", partition=0):
    return PartitionFlush(table, partition, list(sets.items()), list(deletes), offset, full, set(sets) | set(deletes))


def test_checkpoint_script_fences_other_owners_and_detects_wipes(redis_client):
    keys = RedisKeys(_prefix(), "t", 0)
    script = redis_client.register_script(FLUSH_SCRIPT)

    def call(token, mode, offset, sets=(), dels=()):
        # Unchecked offsets, claim 1 for everyone: the claim count and the offset check have
        # their own tests (tests/integration/test_redis_failover.py).
        args = script_args(token, mode, offset, "*", 1, list(sets), list(dels))
        return int(script(keys=keys.all(), args=args)[0])

    redis_client.hset(keys.states, "stale", "x")
    assert call("A", "f", 5, [("a", "1")]) == FLUSH_OK  # full rewrite drops stale states
    assert redis_client.hgetall(keys.states) == {b"a": b"1"}
    assert redis_client.hget(keys.meta, "offset") == b"5"

    redis_client.hset(keys.meta, "owner", "B")  # another worker claimed the partition
    assert call("A", "n", 9, [("a", "2")], ["x"]) == FLUSH_FENCED
    assert call("A", "f", 9, [("a", "2")]) == FLUSH_FENCED  # a full rewrite may not take it either
    assert redis_client.hget(keys.states, "a") == b"1" and redis_client.hget(keys.meta, "offset") == b"5"

    assert call("B", "n", 7, [("b", "1")], ["a"]) == FLUSH_OK
    assert redis_client.hgetall(keys.states) == {b"b": b"1"}

    redis_client.delete(keys.meta)  # wiped
    assert call("B", "n", 8, [("c", "1")]) == FLUSH_WIPED
    assert redis_client.hget(keys.states, "c") is None and redis_client.hget(keys.meta, "offset") is None

    # 'c': the claim an assignment could not make (Redis was unreachable) takes over from anyone.
    redis_client.hset(keys.meta, "owner", "B")
    assert call("C", "c", 11, [("d", "1")]) == FLUSH_OK
    assert redis_client.hgetall(keys.states) == {b"d": b"1"}
    assert redis_client.hmget(keys.meta, ["owner", "offset"]) == [b"C", b"11"]
    assert call("B", "n", 12, [("e", "1")]) == FLUSH_FENCED


def test_a_claim_fences_the_previous_owner_and_reads_the_last_checkpoint(stack, redis_client):
    prefix = _prefix()

    async def run() -> None:
        a = RedisBackend(stack.redis_url, prefix=prefix)
        b = RedisBackend(stack.redis_url, prefix=prefix)
        try:
            assert await a.claim("t", 0) is None  # nothing yet: rebuild from the start
            assert await a.write(_flush({"k1": b"v1", "k2": b"v2"}, 10, full=True)) == FLUSH_OK
            assert await a.write(_flush({"k3": b"v3"}, 12, deletes=["k1"])) == FLUSH_OK
            assert await a.still_ours("t", 0, 12) and not await a.still_ours("t", 0, 11)

            assert await b.claim("t", 0) == 12  # a rebalance moved it: b claims it
            assert sorted(await b.read("t", 0)) == [("k2", b"v2"), ("k3", b"v3")]
            assert not await a.still_ours("t", 0, 12)
            assert await a.write(_flush({"k4": b"late"}, 13)) == FLUSH_FENCED  # a's late write
            assert redis_client.hget(RedisKeys(prefix, "t", 0).states, "k4") is None
            assert await b.write(_flush({"k4": b"v4"}, 13)) == FLUSH_OK
            assert a.stats("t").last_write_at is not None and b.available
        finally:
            await a.close()
            await b.close()

    asyncio.run(run())


def test_a_large_checkpoint_is_chunked_and_only_its_last_chunk_moves_the_offset(stack, redis_client):
    prefix = _prefix()
    keys = RedisKeys(prefix, "t", 0)
    seen_offsets: list = []

    async def run() -> None:
        backend = RedisBackend(stack.redis_url, prefix=prefix, max_fields_per_call=7)
        script = backend._redis() and backend._script

        async def watching(keys, args, client):  # the real script, observed between chunks
            status = await script(keys=keys, args=args, client=client)
            seen_offsets.append(await client.hget(keys[1], "offset"))
            return status

        backend._script = watching
        try:
            await backend.claim("t", 0)
            sets = {f"k{i}": f"v{i}".encode() for i in range(30)}
            assert await backend.write(_flush(sets, 99, deletes=[f"gone{i}" for i in range(10)], full=True)) == FLUSH_OK
        finally:
            await backend.close()

    asyncio.run(run())
    assert len(seen_offsets) == 6  # 30 sets and 10 deletes in calls of 7 fields
    assert seen_offsets[:-1] == [None] * 5 and seen_offsets[-1] == b"99"  # no half checkpoint visible
    assert redis_client.hlen(keys.states) == 30


def test_unreachable_redis_at_assignment_means_rebuild_and_a_claiming_first_write(stack, redis_client):
    prefix = _prefix()
    keys = RedisKeys(prefix, "t", 0)
    redis_client.hset(keys.meta, mapping={"owner": "a-previous-process", "offset": "41"})
    redis_client.hset(keys.states, "old", "x")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{s.getsockname()[1]}/0"

    async def run() -> None:
        down = RedisBackend(dead, prefix=prefix, load_timeout=0.5, socket_timeout=0.5)
        assert await down.claim("t", 0) is None and not down.available
        assert down.stats("t").load_fallbacks == 1
        # Redis is back (same token, now the live address): the first write of the rebuilt
        # partition is a full rewrite that takes the partition over.
        down.url = stack.redis_url
        down._client = None
        assert await down.write(_flush({"new": b"y"}, 57, full=True)) == FLUSH_OK
        assert down.available
        await down.close()

    asyncio.run(run())
    assert redis_client.hgetall(keys.states) == {b"new": b"y"}
    assert redis_client.hget(keys.meta, "offset") == b"57"
