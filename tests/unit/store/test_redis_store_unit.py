"""Unit tests for the redis:// table store: no Kafka, no Redis server."""

from __future__ import annotations

import contextlib
import time
import weakref
from dataclasses import dataclass
from typing import Any

import faust
import pytest
from faust.exceptions import ImproperlyConfigured
from faust.streams import _current_event
from faust.types import TP

from stream_app.store import STORE_PATH, register
from stream_app.store.faust_store import RedisStore
from stream_app.store.metrics import store_metric_families
from stream_app.store.partition_state import PartitionedState
from stream_app.store.redis_flush import flush_backoff, script_args


def enc(x: Any) -> bytes:
    return repr(x).encode()


# -- PartitionedState (pure core) --------------------------------------------------------


def test_writes_track_partition_keys_and_dirty_sets():
    s = PartitionedState()
    s.owned = {0, 1}
    s.set("a", 1, 0)
    s.set("b", 2, 1)
    s.set("c", 3, 1)
    assert s.data == {"a": 1, "b": 2, "c": 3}
    assert sorted(s.keys_of(0)) == ["a"]
    assert sorted(s.keys_of(1)) == ["b", "c"]
    assert s.dirty == {0: {"a"}, 1: {"b", "c"}}
    assert s.keys_per_partition() == {0: 1, 1: 2}
    assert s.dirty_count() == 3


def test_snapshot_encodes_sets_and_deletes_then_clears_dirty():
    s = PartitionedState()
    s.owned = {0}
    s.set("a", 1, 0)
    s.set("b", 2, 0)
    s.note_offset(0, 41)
    snap = s.snapshot(0, enc, enc)
    assert sorted(snap.sets) == [(enc("a"), enc(1)), (enc("b"), enc(2))]
    assert snap.deletes == [] and snap.offset == 41 and not snap.full
    s.flushed(snap)
    assert s.snapshot(0, enc, enc) is None  # nothing new: no write at all

    s.delete("a", 0)
    s.note_offset(0, 42)
    snap = s.snapshot(0, enc, enc)
    assert snap.sets == [] and snap.deletes == [enc("a")] and snap.offset == 42


def test_offset_only_change_is_flushed():
    s = PartitionedState()
    s.load_partition(0, [("a", 1)], 10)
    assert s.snapshot(0, enc, enc) is None
    s.note_offset(0, 12)
    snap = s.snapshot(0, enc, enc)
    assert snap.sets == [] and snap.deletes == [] and snap.offset == 12


def test_failed_flush_restores_dirty_keys():
    s = PartitionedState()
    s.owned = {0}
    s.set("a", 1, 0)
    snap = s.snapshot(0, enc, enc)
    assert s.dirty_count() == 0
    s.set("b", 2, 0)  # written while the flush was in flight
    s.restore(snap)
    assert s.dirty[0] == {"a", "b"}


def test_key_moving_partition_is_deleted_from_old_partition():
    s = PartitionedState()
    s.owned = {0, 1}
    s.set("k", 1, 0)
    s.flushed(s.snapshot(0, enc, enc))
    s.set("k", 2, 1)
    assert s.keys_of(0) == [] and s.keys_of(1) == ["k"]
    snap0 = s.snapshot(0, enc, enc)
    snap1 = s.snapshot(1, enc, enc)
    assert snap0.deletes == [enc("k")] and snap0.sets == []
    assert snap1.sets == [(enc("k"), enc(2))]


def test_apply_changelog_overwrites_deletes_and_tracks_offsets():
    s = PartitionedState()
    s.owned = {0}
    s.apply("a", {"n": 1}, 0, 5, deleted=False)
    s.apply("a", {"n": 2}, 0, 6, deleted=False)
    s.apply("b", {"n": 1}, 0, 7, deleted=False)
    s.apply("b", None, 0, 8, deleted=True)
    s.apply("c", None, 0, 9, deleted=True)  # tombstone of an unknown key: no error
    assert s.data == {"a": {"n": 2}}
    assert s.offsets[0] == 9
    snap = s.snapshot(0, enc, enc)
    assert snap.sets == [(enc("a"), enc({"n": 2}))]
    assert sorted(snap.deletes) == sorted([enc("b"), enc("c")])


def test_load_without_offset_means_full_rewrite_and_drop_partition():
    s = PartitionedState()
    assert s.load_partition(3, [("x", 1), ("y", 2)], None) == 2
    assert 3 in s.full_rewrite and 3 in s.owned
    assert s.offsets.get(3) is None
    snap = s.snapshot(3, enc, enc)
    assert snap.full and sorted(snap.sets) == [(enc("x"), enc(1)), (enc("y"), enc(2))]
    s.flushed(snap)
    assert 3 not in s.full_rewrite

    assert s.drop_partition(3) == 2
    assert s.data == {} and s.keys_of(3) == [] and 3 not in s.owned


def test_begin_takes_keys_and_offset_encode_reads_current_values():
    s = PartitionedState()
    s.load_partition(0, [("old", 0)], None)  # no stored offset: full rewrite pending
    s.set("a", 1, 0)
    s.note_offset(0, 99)
    snap = s.begin(0)
    assert snap.full and snap.keys == {"old", "a"} and snap.offset == 99
    assert s.dirty_count() == 0
    # Changes between begin and encode are read at encode time (newer than the
    # offset, which is safe) and leave the key dirty for the next flush.
    s.set("a", 2, 0)
    s.delete("old", 0)
    sets, dels = s.encode(0, sorted(snap.keys, key=str), enc, enc)
    assert sets == [(enc("a"), enc(2))] and dels == [enc("old")]
    assert s.dirty[0] == {"a", "old"}


def test_script_args_layout():
    args = script_args(3, "tok", "f", None, [(b"k1", b"v1"), (b"k2", b"v2")], [b"d1"])
    assert args == ["3", "tok", "f", "", "2", b"k1", b"v1", b"k2", b"v2", b"d1"]
    assert script_args(0, "t", "n", 7, [], [])[3] == "7"


# -- RedisStore shell inside a real (unstarted) Faust app ---------------------------------


@dataclass
class _Msg:
    key: Any
    value: Any
    partition: int
    offset: int
    topic: str = "t"


@dataclass
class _Event:
    """The attributes Faust's recovery hands to ``apply_changelog_batch``."""

    key: Any
    value: Any
    message: _Msg


@contextlib.contextmanager
def processing(partition: int):
    """Make ``faust.current_event()`` return an event of ``partition`` (as inside an agent)."""
    event = _Event(None, None, _Msg(b"k", b"v", partition, 0))
    token = _current_event.set(weakref.ref(event))
    try:
        yield event
    finally:
        _current_event.reset(token)


@pytest.fixture
def app():
    register()
    return faust.App("unit-redis-store", broker="kafka://127.0.0.1:1", store="memory://")


class Point(faust.Record, serializer="json"):
    x: int
    y: int


def test_register_and_url_options(app):
    from faust.stores import by_url

    assert by_url("redis://h:1/0") is RedisStore
    assert STORE_PATH.endswith(":RedisStore")
    t = app.Table("opts", default=int, store="redis://127.0.0.1:6399/2?prefix=pfx&flush_interval=0.25&scan_count=7")
    store = t.data
    assert isinstance(store, RedisStore)
    assert store.redis_url == "redis://127.0.0.1:6399/2"
    assert (store.prefix, store.flush_interval, store.scan_count) == ("pfx", 0.25, 7)
    assert store.keys.data(3) == "pfx:opts:3" and store.keys.offsets == "pfx:opts:offsets"
    assert app.Table("dflt", store="redis://h:1/0").data.prefix == "faust:unit-redis-store"


def test_use_partitioner_is_refused(app):
    t = app.Table("up", store="redis://h:1/0", use_partitioner=True)
    with pytest.raises(ImproperlyConfigured):
        t.data


def test_writes_use_current_event_partition_and_values_stay_objects(app):
    store = app.Table("objs", default=dict, store="redis://h:1/0").data
    store.mem.owned = {0, 2}
    value = {"ids": ["e1"], "n": 1}
    with processing(2):
        store["acct-1"] = value
    with processing(0):
        store["acct-2"] = {"n": 5}
    assert store["acct-1"] is value  # no encode/decode on access
    assert "acct-1" in store and len(store) == 2
    assert store.partition_keys(2) == ["acct-1"] and store.partition_keys(0) == ["acct-2"]
    assert store.stats().dirty_keys == 2
    # outside stream iteration a known key keeps its partition (window expiry path)
    del store["acct-2"]
    assert store.mem.dirty[0] == {"acct-2"}
    with pytest.raises(TypeError):
        store["unknown"] = 1
    with pytest.raises(KeyError):
        del store["unknown"]


def test_snapshot_bytes_roundtrip_through_table_serializers(app):
    table = app.Table("pts", store="redis://h:1/0", key_type=str, value_type=Point)
    store = table.data
    store.mem.owned = {1}
    with processing(1):
        store["p"] = Point(x=1, y=2)
    snap = store.mem.snapshot(1, store._encode_key, store._encode_value_bytes)
    [(kb, vb)] = snap.sets
    assert isinstance(kb, bytes) and isinstance(vb, bytes)
    assert store._decode_key_obj(kb) == "p"
    back = store._decode_value_obj(vb)
    assert isinstance(back, Point) and (back.x, back.y) == (1, 2)


def test_windowed_style_tuple_keys_roundtrip(app):
    store = app.Table("win", default=int, store="redis://h:1/0").data
    key = ("acct", (60.0, 119.9))
    raw = store._encode_key(key)
    assert store._decode_key_obj(raw) == key  # JSON list -> tuple via table._to_key


def test_apply_changelog_batch_and_offsets(app):
    table = app.Table("cl", default=dict, store="redis://h:1/0")
    store = table.data
    topic = table.changelog_topic_name
    store.mem.owned = {0, 1}

    def ev(key, value, partition, offset):
        return _Event(key, value, _Msg(key.encode(), None if value is None else b"x", partition, offset, topic))

    batch = [
        ev("a", {"n": 1}, 0, 10),
        ev("b", {"n": 1}, 1, 3),
        ev("a", {"n": 2}, 0, 11),
        ev("b", None, 1, 4),
    ]
    table.apply_changelog_batch(batch)
    assert dict(store.items()) == {"a": {"n": 2}}
    assert store.persisted_offset(TP(topic, 0)) == 11
    assert store.persisted_offset(TP(topic, 1)) == 4
    assert store.persisted_offset(TP(topic, 2)) is None  # not owned: Faust replays it fully
    assert store.stats().replayed_records == {0: 2, 1: 2}

    store.set_persisted_offset(TP(topic, 0), 15)
    store.set_persisted_offset(TP(topic, 0), 12)  # late ack: never goes back
    store.set_persisted_offset(TP(topic, 5), 99)  # not ours: ignored
    assert store.persisted_offset(TP(topic, 0)) == 15
    assert store.persisted_offset(TP(topic, 5)) is None


def test_update_and_clear_are_tracked(app):
    store = app.Table("uc", store="redis://h:1/0").data
    store.mem.owned = {0}
    with processing(0):
        store.update({"a": 1, "b": 2}, c=3)
    assert store.partition_keys(0) and sorted(store.partition_keys(0)) == ["a", "b", "c"]
    store.mem.flushed(store.mem.snapshot(0, store._encode_key, store._encode_value_bytes))
    store.clear()
    assert len(store) == 0 and store.mem.dirty[0] == {"a", "b", "c"}


# -- Redis unreachable (a closed port: connection refused, no server needed) -----------


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def test_flush_backoff_doubles_up_to_the_cap():
    assert flush_backoff(0, 1.0, 10.0) == 1.0
    assert [flush_backoff(n, 1.0, 10.0) for n in range(1, 6)] == [2.0, 4.0, 8.0, 10.0, 10.0]
    assert flush_backoff(10_000, 0.5, 30.0) == 30.0  # no overflow after a very long outage


def test_failed_flush_keeps_keys_dirty_and_reports_redis_down(app):
    import asyncio

    url = f"redis://127.0.0.1:{_closed_port()}/0?producer_flush_timeout=0&socket_timeout=1"
    store = app.Table("down", default=dict, store=url).data
    store.mem.owned = {0}
    with processing(0):
        store["a"] = {"n": 1}

    async def attempt():
        try:
            with pytest.raises(Exception):
                await store.flush()
            with pytest.raises(Exception):
                await store.flush()
        finally:
            await store.on_shutdown()

    asyncio.run(attempt())
    st = store.stats()
    assert (st.dirty_keys, st.flush_errors, st.consecutive_flush_errors) == (1, 2, 2)
    assert st.redis_available is False and st.unreachable_since is not None
    families = {f.name: f for f in store_metric_families([store])}
    assert families["stream_app_store_redis_up"].samples[0].value == 0.0
    assert families["stream_app_store_dirty_keys"].samples[0].value == 1.0


def test_unreachable_redis_at_assignment_falls_back_to_full_replay(app):
    import asyncio

    url = f"redis://127.0.0.1:{_closed_port()}/0?load_timeout=0.2&socket_timeout=1"
    table = app.Table("fallback", default=dict, store=url)
    store = table.data

    async def load():
        try:
            await store._load_partition(1)
            await store._load_partition(2)  # Redis already known to be down: one try only
        finally:
            await store.on_shutdown()

    asyncio.run(load())
    other = app.Table("fallback2", default=dict, store=url.replace("load_timeout=0.2", "load_timeout=30")).data
    t0 = time.monotonic()
    asyncio.run(other._load_partition(0))  # another table of the same worker does not wait again
    assert time.monotonic() - t0 < 5 and other.stats().load_fallbacks == 1
    asyncio.run(other.on_shutdown())
    assert store.partitions() == [1, 2]
    tp = TP(table.changelog_topic_name, 1)
    assert store.persisted_offset(tp) is None  # Faust replays the whole changelog
    assert store.mem.full_rewrite == {1, 2} and store._unclaimed == {1, 2}
    assert store.stats().load_fallbacks == 2
    # The first flush after Redis is back claims the partition over any previous owner.
    snap = store.mem.begin(1)
    assert snap.full
