"""The state store's pure core: states by partition, what a checkpoint takes, the offsets."""

from __future__ import annotations

import json

import pytest

from stream_app.store.partition_state import PartitionStates
from stream_app.store.redis_flush import flush_backoff, script_args


def _states() -> PartitionStates:
    return PartitionStates("t", lambda s: json.dumps(s).encode(), lambda raw: json.loads(raw))


def test_installed_partitions_are_clean_and_resume_after_their_checkpoint():
    s = _states()
    assert s.install(0, [("a", b'{"n": 1}'), ("b", b'{"n": 2}')], offset=41) == 2
    assert s.get("a", 0) == {"n": 1} and s.get("a", 1) is None
    assert s.position(0) == 42 and not s.pending(0) and s.take(0) is None
    # No checkpoint: read from the topic's start; what the backend held is ignored; the first
    # checkpoint rewrites the partition whole.
    assert s.install(1, [("stale", b"{}")], offset=None) == 0
    assert s.position(1) == 0 and s.get("stale", 1) is None
    flush = s.take(1)
    assert flush.full and flush.sets == [] and flush.offset is None


def test_a_checkpoint_takes_changed_states_and_the_offset_they_reflect_at_one_instant():
    s = _states()
    s.install(0, [("a", b'{"n": 1}'), ("gone", b"{}")], offset=9)
    s.put("a", 0, {"n": 2})
    s.put("c", 0, {"n": 3})
    s.delete("gone", 0)
    s.applied(0, 12)
    flush = s.take(0)
    assert sorted(flush.sets) == [("a", b'{"n": 2}'), ("c", b'{"n": 3}')]
    assert flush.deletes == ["gone"] and flush.offset == 12 and not flush.full
    # Applied after the take: the next checkpoint's business, not this one's.
    s.put("a", 0, {"n": 4})
    s.applied(0, 13)
    s.flushed(flush)
    assert s.flushed_offset(0) == 12 and s.pending(0)
    nxt = s.take(0)
    assert nxt.sets == [("a", b'{"n": 4}')] and nxt.offset == 13


def test_an_offset_alone_is_checkpointed():
    s = _states()
    s.install(0, [], offset=5)
    s.applied(0, 8)  # events that changed no state (duplicates) still move the checkpoint
    flush = s.take(0)
    assert flush.sets == [] and flush.deletes == [] and flush.offset == 8


def test_a_failed_write_leaves_its_keys_dirty_and_a_wipe_means_a_full_rewrite():
    s = _states()
    s.install(0, [("a", b"1")], offset=1)
    s.put("b", 0, 2)
    s.applied(0, 2)
    flush = s.take(0)
    s.restore(flush)
    again = s.take(0)
    assert again.sets == [("b", b"2")] and again.offset == 2
    s.restore(again)
    s.require_full_rewrite(0)
    whole = s.take(0)
    assert whole.full and sorted(whole.sets) == [("a", b"1"), ("b", b"2")]
    s.flushed(whole)
    assert not s.pending(0) and s.dirty_count() == 0


def test_items_of_partitions_and_dropping_one():
    s = _states()
    s.install(0, [("a", b"1")], offset=0)
    s.install(1, [("b", b"2"), ("c", b"3")], offset=0)
    assert sorted(k for k, _, _ in s.items({1})) == ["b", "c"]
    assert s.drop(1) == 2 and s.partitions() == {0} and s.counts() == {0: 1}
    # A change to a partition that left is not restored into it.
    s.install(2, [], offset=0)
    s.put("x", 2, 1)
    flush = s.take(2)
    s.drop(2)
    s.restore(flush)
    assert s.partitions() == {0}
    with pytest.raises(KeyError):
        s.put("y", 2, 1)  # never silently: a partition must be held to be written


def test_script_args_layout_and_backoff():
    assert script_args("tok", "n", 7, 5, 3, [("k1", b"v1"), ("k2", b"v2")], ["d1"]) == [
        "tok", "n", "7", "5", "3", "2", "k1", b"v1", "k2", b"v2", "d1"
    ]
    assert script_args("tok", "f", None, "*", 1, [], []) == ["tok", "f", "", "*", "1", "0"]
    assert script_args("tok", "n", 9, None, 1, [], [])[3] == ""  # expects no offset in Redis
    assert [flush_backoff(n, 1.0, 10.0) for n in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
