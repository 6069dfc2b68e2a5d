"""Checkpoints: signals coalesced without changing what the health stage ends with, produced
before the states that caused them are written, and nothing dropped when either step fails."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.engine.family import SignalChange
from stream_app.engine.health import HealthConfig, HealthState, apply_signal
from stream_app.store.backend import MemoryBackend
from stream_app.store.partition_state import PartitionStates
from stream_app.store.redis_flush import FLUSH_FENCED, FLUSH_OK, FLUSH_WIPED
from stream_app.worker.checkpoint import Checkpointer
from stream_app.worker.processing import Outbox

CFG = HealthConfig()

_changes = st.lists(
    st.builds(
        SignalChange,
        account_id=st.sampled_from(["a1", "a2"]),
        source=st.sampled_from(["usage", "support"]),
        entity=st.sampled_from(["e1", "e2", "e3"]),
        ts=st.integers(1_700_000_000, 1_700_000_000 + 5).map(float),
        signal=st.one_of(st.none(), st.fixed_dictionaries({"n": st.integers(0, 2)})),
    ),
    max_size=30,
)


def _health(changes) -> dict:
    states: dict[str, HealthState] = {}
    for c in changes:
        states[c.account_id], _ = apply_signal(states.get(c.account_id), c.message(), CFG, account_id=c.account_id)
    return {a: (s.hw, s.entries) for a, s in states.items()}


@settings(max_examples=300, deadline=None)
@given(_changes, st.integers(0, 30))
def test_coalescing_keeps_what_the_health_stage_would_keep(changes, cut):
    """Applying the outbox's messages (taken at any point) gives the same account states as
    applying every message in order."""
    box = Outbox()
    box.add(changes[:cut])
    first = box.take()
    box.add(changes[cut:])
    assert _health(first + box.take()) == _health(changes)


def test_restored_signals_go_under_newer_ones():
    box = Outbox()
    old = SignalChange("a", "usage", "u", 10.0, {"v": 1})
    box.add([old])
    taken = box.take()
    newer = SignalChange("a", "usage", "u", 11.0, {"v": 2})
    box.add([newer])
    box.restore(taken)
    assert box.take() == [newer]


class _Backend(MemoryBackend):
    def __init__(self, log: list, statuses=()) -> None:
        super().__init__()
        self.log = log
        self.statuses = list(statuses)

    async def write(self, flush):
        if self.statuses:
            status = self.statuses.pop(0)
            if isinstance(status, Exception):
                raise status
        else:
            status = FLUSH_OK
        self.log.append(("write", flush.partition, flush.offset))
        return status


class _Proc:
    def __init__(self) -> None:
        self.states = PartitionStates("t", lambda s: str(s).encode(), lambda raw: raw)
        self.states.install(0, [], offset=-1)


def _checkpointer(backend, log, *, fail_send=False):
    outbox, proc = Outbox(), _Proc()

    async def send(topic, key, value):
        if fail_send:
            raise RuntimeError("broker down")
        log.append(("send", key))

    async def flush():
        log.append(("flush-producer",))

    return Checkpointer([proc], outbox, backend, signals_topic="s", send=send, flush_producer=flush,
                        lock=asyncio.Lock()), outbox, proc  # fmt: skip


def test_signals_are_produced_before_the_states_and_offsets_are_written():
    log: list = []
    cp, outbox, proc = _checkpointer(_Backend(log), log)
    proc.states.put("k", 0, 1)
    proc.states.applied(0, 5)
    outbox.add([SignalChange("acc", "usage", "k", 1.0, {"x": 1})])
    assert asyncio.run(cp.run())
    assert log == [("send", b"acc"), ("flush-producer",), ("write", 0, 5)]
    assert proc.states.flushed_offset(0) == 5 and not cp.pending()


def test_a_failed_send_writes_nothing_and_keeps_everything():
    log: list = []
    cp, outbox, proc = _checkpointer(_Backend(log), log, fail_send=True)
    proc.states.put("k", 0, 1)
    proc.states.applied(0, 5)
    outbox.add([SignalChange("acc", "usage", "k", 1.0, {"x": 1})])
    assert not asyncio.run(cp.run())
    assert log == [] and len(outbox) == 1 and proc.states.take(0).sets == [("k", b"1")]


def test_failed_wiped_and_fenced_writes():
    log: list = []
    cp, _, proc = _checkpointer(_Backend(log, [OSError("redis down")]), log)
    proc.states.put("k", 0, 1)
    proc.states.applied(0, 5)
    assert not asyncio.run(cp.run())
    assert proc.states.pending(0) and proc.states.flushed_offset(0) == -1  # kept for the next one

    cp.backend.statuses = [FLUSH_WIPED]
    assert not asyncio.run(cp.run())
    flush = proc.states.take(0)
    assert flush.full and flush.sets == [("k", b"1")]  # the partition is rewritten whole next
    proc.states.restore(flush)

    cp.backend.statuses = [FLUSH_FENCED]
    assert not asyncio.run(cp.run())
    assert proc.states.partitions() == set()  # another worker owns it: let go of it
