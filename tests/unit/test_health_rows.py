"""HealthProcessor's table layout: one row per (account, source, entity), rebuilt into the same
account states the live index holds; rows of the earlier whole-account layout are still read."""

from __future__ import annotations

import asyncio
import json
import random

from stream_app.app import StreamWorker
from stream_app.config import Settings
from stream_app.core.health import HealthState
from stream_app.processing import health_row_key

D = 86400
PARTITIONS = 4


def _processor():
    """The worker's HealthProcessor on the memory store; changelog sends replaced by a JSON
    round trip of the value (what the changelog would give back on recovery)."""
    worker = StreamWorker(Settings(store="memory", topic_partitions=PARTITIONS))
    proc = worker.health
    table = proc.table
    table.on_key_set = lambda key, value: None
    table.on_key_del = lambda key: None
    proc.rebuild(set(range(PARTITIONS)))
    return proc


def _replayed(proc):
    """A fresh processor whose table holds what the changelog of ``proc``'s table holds."""
    fresh = _processor()
    for key, value in proc.table.data.items():
        fresh.table.data[key] = json.loads(json.dumps(value))
    fresh.rebuild(set(range(PARTITIONS)))
    return fresh


def _states(proc) -> dict:
    return {acc: (s.hw, {src: dict(d) for src, d in s.entries.items() if d}) for acc, s in proc.index.states.items()}


def _messages(seed: int, n: int = 600) -> list[tuple[str, dict]]:
    rng = random.Random(seed)
    t0 = 1_700_000_000.0
    out = []
    for i in range(n):
        acc = f"acc{rng.randrange(4)}"
        source = rng.choice(["usage", "support", "voice", "revenue"])
        entity = acc if source == "revenue" else f"{source[0]}{rng.randrange(12)}"
        # mostly forward in time, some far jumps (retention prunes) and late or repeated messages
        ts = t0 + i * 600 + (rng.choice([0, 0, 0, 95 * D, -rng.randrange(5) * 600]) if rng.random() < 0.2 else 0)
        t0 += 95 * D if rng.random() < 0.01 else 0
        signal = None if rng.random() < 0.1 else {"account_id": acc, "n": rng.randrange(3)}
        out.append((acc, {"source": source, "entity": entity, "ts": ts, "signal": signal}))
    return out


async def _feed(proc, messages) -> None:
    for acc, m in messages:
        await proc.handle(acc, m, partition=hash(acc) % PARTITIONS)


def test_rows_rebuild_the_live_states():
    for seed in range(5):
        proc = _processor()
        asyncio.run(_feed(proc, _messages(seed)))
        assert _states(_replayed(proc)) == _states(proc)
        # one row per live or tombstoned entity, none for pruned ones
        rows = {k for k, v in proc.table.data.items() if v is not None}
        want = {health_row_key(acc, src, e) for acc, s in proc.index.states.items()
                for src, d in s.entries.items() for e in d}  # fmt: skip
        assert rows == want


def test_rows_of_other_partitions_are_left_out():
    proc = _processor()
    asyncio.run(_feed(proc, _messages(7)))
    fresh = _processor()
    for key, value in proc.table.data.items():
        fresh.table.data[key] = json.loads(json.dumps(value))
    owned = {0, 1}
    fresh.rebuild(owned)
    assert _states(fresh) == {acc: st for acc, st in _states(proc).items() if hash(acc) % PARTITIONS in owned}


def test_whole_account_rows_are_read_and_replaced():
    # An account stored in the earlier layout (key = account id, value = the whole state).
    live = _processor()
    asyncio.run(_feed(live, _messages(3)))
    legacy = _processor()
    for acc, state in live.index.states.items():
        legacy.table.data[acc] = json.loads(json.dumps([hash(acc) % PARTITIONS, state.to_dict()]))
    legacy.rebuild(set(range(PARTITIONS)))
    assert _states(legacy) == _states(live)

    # The next change of an account rewrites it as entity rows and drops the whole-account row.
    acc = next(iter(live.index.states))
    hw = live.index.states[acc].hw
    more = [(acc, {"source": "usage", "entity": "new-user", "ts": hw + 1, "signal": {"account_id": acc}})]
    asyncio.run(_feed(legacy, more))
    asyncio.run(_feed(live, more))
    assert legacy.table.data.get(acc) is None
    assert _states(_replayed(legacy)) == _states(live)


def test_state_shape_matches_the_core():
    proc = _processor()
    asyncio.run(_feed(proc, _messages(11, n=50)))
    for state in _replayed(proc).index.states.values():
        assert isinstance(state, HealthState)
        assert HealthState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
