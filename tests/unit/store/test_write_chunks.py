"""How a checkpoint is cut into script calls (FLUSH_SCRIPT's modes): only the last call writes the
offset; a large incremental checkpoint is kept aside until its last call; a full rewrite starts by
dropping the partition (or taking it over, when the assignment could not claim it)."""

from __future__ import annotations

from stream_app.store.partition_state import PartitionFlush
from stream_app.store.redis_store import write_chunks


def _flush(nsets: int, ndeletes: int, *, full: bool, offset: int | None = 9) -> PartitionFlush:
    sets = [(f"k{i}", b"v") for i in range(nsets)]
    deletes = [f"d{i}" for i in range(ndeletes)]
    return PartitionFlush("t", 0, sets, deletes, offset, full)


def _shape(chunks) -> list[tuple[str, int, int, int | None]]:
    return [(mode, len(sets), len(deletes), offset) for mode, sets, deletes, offset in chunks]


def test_small_checkpoints_are_one_call():
    assert _shape(write_chunks(_flush(3, 2, full=False), 10)) == [("n", 3, 2, 9)]
    assert _shape(write_chunks(_flush(6, 4, full=False), 10)) == [("n", 6, 4, 9)]
    assert _shape(write_chunks(_flush(0, 0, full=False), 10)) == [("n", 0, 0, 9)]  # the offset alone
    assert _shape(write_chunks(_flush(4, 0, full=True), 10)) == [("f", 4, 0, 9)]
    assert _shape(write_chunks(_flush(4, 0, full=True), 10, unclaimed=True)) == [("c", 4, 0, 9)]


def test_large_incremental_checkpoints_are_kept_aside_until_the_last_call():
    assert _shape(write_chunks(_flush(5, 3, full=False), 2)) == [
        ("S", 2, 0, None), ("s", 2, 0, None), ("s", 1, 1, None), ("m", 0, 2, 9),
    ]  # fmt: skip


def test_large_full_rewrites_drop_first_and_write_the_offset_last():
    assert _shape(write_chunks(_flush(3, 0, full=True, offset=None), 2)) == [("f", 2, 0, None), ("n", 1, 0, None)]
    assert _shape(write_chunks(_flush(3, 2, full=True), 2, unclaimed=True)) == [
        ("c", 2, 0, None), ("n", 1, 1, None), ("n", 0, 1, 9),
    ]  # fmt: skip
