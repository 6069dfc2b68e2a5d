"""The health stage's stored layout: one row per (account, source, entity), rebuilt into the same
account states the live index holds."""

from __future__ import annotations

import json
import random

from stream_app.engine.health import HealthConfig, HealthStage, HealthState, row_key

D = 86400
PARTITIONS = 4
NOW = 1_700_000_000.0


class Stored:
    """The health stage with its rows in a dict, as the worker keeps them in its table:
    key -> [partition, row]."""

    def __init__(self) -> None:
        self.stage = HealthStage(HealthConfig())
        self.rows: dict[str, list] = {}

    @property
    def index(self):
        return self.stage.index

    def handle(self, account_id: str, message: dict, partition: int) -> None:
        sets, deletes = self.stage.apply(account_id, message)
        for key, row in sets:
            self.rows[key] = [partition, row]
        for key in deletes:
            self.rows.pop(key, None)

    def rebuild(self, partitions: set[int]) -> None:
        self.stage.rebuild(((k, v[1]) for k, v in self.rows.items() if v[0] in partitions), NOW)


def _processor() -> Stored:
    return Stored()


def _replayed(proc: Stored) -> Stored:
    """A fresh stage whose rows are what ``proc`` stored, through a JSON round trip (what the
    changelog or Redis gives back on recovery)."""
    fresh = Stored()
    fresh.rows = json.loads(json.dumps(proc.rows))
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


def _feed(proc, messages) -> None:
    for acc, m in messages:
        proc.handle(acc, m, partition=hash(acc) % PARTITIONS)


def test_rows_rebuild_the_live_states():
    for seed in range(5):
        proc = _processor()
        _feed(proc, _messages(seed))
        assert _states(_replayed(proc)) == _states(proc)
        # one row per live or tombstoned entity, none for pruned ones
        rows = set(proc.rows)
        want = {row_key(acc, src, e) for acc, s in proc.index.states.items()
                for src, d in s.entries.items() for e in d}  # fmt: skip
        assert rows == want


def test_rows_of_other_partitions_are_left_out():
    proc = _processor()
    _feed(proc, _messages(7))
    fresh = Stored()
    fresh.rows = json.loads(json.dumps(proc.rows))
    owned = {0, 1}
    fresh.rebuild(owned)
    assert _states(fresh) == {acc: st for acc, st in _states(proc).items() if hash(acc) % PARTITIONS in owned}


def test_state_shape_matches_the_core():
    proc = _processor()
    _feed(proc, _messages(11, n=50))
    for state in _replayed(proc).index.states.values():
        assert isinstance(state, HealthState)
        assert HealthState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
