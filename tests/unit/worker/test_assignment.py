"""Taking partitions over: checkpoint offsets at once, states in the background while events
wait, and an abandoned load never leaves a partition that looks held but is not filled."""

from __future__ import annotations

import asyncio
import json

from aiokafka.structs import TopicPartition as TP

from stream_app.store.backend import MemoryBackend
from stream_app.store.partition_state import PartitionStates
from stream_app.worker.assignment import Assignment

class _Gate:
    def __init__(self) -> None:
        self.rebalances = 0

    def begin_rebalance(self) -> None:
        self.rebalances += 1


class _Health:
    """What Assignment needs of the health processor: its states and a stage with nothing to
    rebuild (the family processors are left out: only claims and loads are under test)."""

    topic = "signals"
    table = "h"

    def __init__(self) -> None:
        self.states = PartitionStates("h", lambda s: json.dumps(s).encode(), json.loads)
        self.gate = _Gate()

    class stage:  # noqa: N801 - stands in for the health stage
        last_rebuild_accounts = 0

        @staticmethod
        def rebuild_steps(rows, now):
            list(rows)
            return iter(())

    def rows(self, partitions):
        return iter(())


class _Backend(MemoryBackend):
    """Checkpoints at offset 41 with one state; ``read`` waits for ``release``."""

    durable = True

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.claims: list[int] = []

    async def claim(self, table, partition):
        self.claims.append(partition)
        return 41

    async def read(self, table, partition):
        await self.release.wait()
        return [(f"k{partition}", b'{"n": 1}')]

    async def still_ours(self, table, partition, offset):
        return True


def _assignment(backend) -> Assignment:
    return Assignment([], _Health(), backend, asyncio.Lock())


def test_offsets_at_once_states_in_the_background_while_events_wait():
    async def run() -> None:
        backend = _Backend()
        assignment = _assignment(backend)
        health = assignment.health
        positions = await assignment.positions({TP("signals", 0), TP("signals", 1)})
        assert positions == {TP("signals", 0): 42, TP("signals", 1): 42}
        assert not assignment.processing.is_set() and not health.states.holds(0)
        backend.release.set()
        await assignment.wait_loaded()
        assert assignment.processing.is_set() and health.states.holds(0)
        assert health.states.get("k0", 0) == {"n": 1}

    asyncio.run(run())


def test_a_load_abandoned_by_a_new_rebalance_leaves_nothing_that_looks_held():
    async def run() -> None:
        backend = _Backend()
        assignment = _assignment(backend)
        health = assignment.health
        await assignment.positions({TP("signals", 0)})
        await asyncio.sleep(0)
        assignment.begin()  # partitions move again before the states came in
        await assignment.wait_loaded()
        assert assignment.processing.is_set()  # batches waiting are released...
        assert not health.states.holds(0)  # ...but apply nothing to the unfilled partition
        assert health.states.take(0) is None  # and a checkpoint writes nothing of it
        backend.release.set()
        await assignment.positions({TP("signals", 0)})  # claimed and read again, not kept
        await assignment.wait_loaded()
        assert backend.claims == [0, 0] and health.states.holds(0)

    asyncio.run(run())
