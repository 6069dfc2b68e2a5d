"""stream_app.kafka.compat.positions against Faust's real fetch, drain and seek code.

Each scenario runs Faust's own consumer (``_drain_messages``, ``getmany``, ``perform_seek``,
read offsets and gaps), conductor and agent queue over a scripted aiokafka layer
(tests/unit/kafka/faust_consumer.py), with the guard, and once more without it as a control:
the control must show the Faust bug the guard exists for (a message that never reaches an agent,
or a gap Faust would ack unprocessed). If a Faust upgrade fixes a bug, its control fails: re-read
the guard. Every scenario also runs with the inline hand-over (compat.drain) installed.
The real-Kafka proof is tests/faults (kill -9 with static membership, rebalances).
"""

from __future__ import annotations

import asyncio

import pytest
from faust.types import TP

from .faust_consumer import FaustWorker, ScriptedKafka

TICKETS = TP("app.ticket", 0)
SIGNALS = TP("app.health-signals", 0)

FAST = pytest.mark.parametrize("fast", [False, True], ids=["wait_first", "inline"])


def _check(worker: FaustWorker, guarded: bool) -> None:
    if guarded:
        assert worker.lost() == {}
        assert worker.gaps() == {}
    else:  # the control: Faust alone loses a message or acks one unprocessed
        assert worker.lost() or worker.gaps(), "Faust without the guard got this right: re-read the guard"


@FAST
@pytest.mark.parametrize("guarded", [True, False], ids=["guard", "no-guard"])
def test_uncommitted_partition_rewinds_to_its_start(guarded, fast):
    # A rebalance stops the flow as offset 0 is handed over: the suspension interrupts that
    # hand-over, Faust's getmany drops the rest of the batch (1, 2) and aiokafka's position
    # stays at 3. The partition has no commit, so aiokafka's seek_to_committed leaves it there:
    # Faust alone never reads 0..2.
    kafka = ScriptedKafka({TICKETS: 8}, {TICKETS: None})

    async def scenario():
        async with FaustWorker(kafka, guard=guarded, fast=fast) as worker:
            rebalancing = []

            async def revoke(message):  # the revocation arrives during this hand-over
                worker.revoke()
                rebalancing.append(asyncio.ensure_future(worker.recover(after=0.01)))

            worker.before_hand_over(0, revoke)
            await worker.run_until_read()
            await asyncio.gather(*rebalancing)
        return worker

    worker = asyncio.run(scenario())
    _check(worker, guarded)
    if guarded:
        assert kafka.seeks == [(TICKETS, 0)]
        assert worker.received == [(TICKETS, o) for o in range(8)]
    else:
        assert worker.lost() == {TICKETS: [0, 1, 2]}


@FAST
@pytest.mark.parametrize("guarded", [True, False], ids=["guard", "no-guard"])
def test_seek_during_a_blocked_hand_over(guarded, fast):
    # Recovery of a restarted worker: 5..7 were fetched before the seek back to the committed
    # offset 3, which runs while the hand-over of 5 waits (its agent's queue full for a moment).
    # Faust alone writes 5's read offset back after the seek and drops 3 and 4 as already read.
    kafka = ScriptedKafka({TICKETS: 10}, {TICKETS: 3}, positions={TICKETS: 5})

    async def scenario():
        async with FaustWorker(kafka, guard=guarded, fast=fast) as worker:
            seeking = []

            async def seek_while_blocked(message):
                seeking.append(asyncio.ensure_future(worker.recover()))
                for _ in range(5):
                    await asyncio.sleep(0)

            worker.before_hand_over(5, seek_while_blocked)
            await worker.run_until_read()
            await asyncio.gather(*seeking)
        return worker

    worker = asyncio.run(scenario())
    _check(worker, guarded)
    if guarded:
        # 5 was handed over before the seek; 6 and 7 of that batch were not, and came again.
        assert worker.received == [(TICKETS, o) for o in [5, 3, 4, 5, 6, 7, 8, 9]]
        assert worker.guard.discarded == 2


@FAST
@pytest.mark.parametrize("guarded", [True, False], ids=["guard", "no-guard"])
def test_seek_while_a_fetch_is_under_way(guarded, fast):
    # The fetch from position 12 is in flight when the seek back to 10 starts. Faust alone
    # hands 12 over after the seek: a "gap" from 10 that it acks (11 unprocessed), and the
    # refetched 10..12 are dropped as already read.
    kafka = ScriptedKafka({TICKETS: 16}, {TICKETS: 10}, positions={TICKETS: 12})

    async def scenario():
        kafka.gate = asyncio.Event()
        async with FaustWorker(kafka, guard=guarded, fast=fast) as worker:
            await kafka.fetch_started.wait()
            seeking = asyncio.ensure_future(worker.recover())
            await asyncio.sleep(0.01)
            if guarded:
                assert not seeking.done()  # the fetch holds it off
            kafka.gate.set()
            kafka.gate = None
            await seeking
            await worker.run_until_read()
        return worker

    worker = asyncio.run(scenario())
    _check(worker, guarded)
    if guarded:
        assert worker.received == [(TICKETS, o) for o in range(10, 16)]
        assert worker.guard.discarded == 3


@FAST
def test_batches_fetched_after_a_seek_are_handed_over_whole(fast):
    kafka = ScriptedKafka({TICKETS: 5, SIGNALS: 2}, {TICKETS: 3, SIGNALS: 0})

    async def scenario():
        async with FaustWorker(kafka, guard=True, fast=fast) as worker:
            await worker.rebalance()
            await worker.run_until_read()
        return worker

    worker = asyncio.run(scenario())
    assert sorted(worker.received) == [(SIGNALS, 0), (SIGNALS, 1), (TICKETS, 3), (TICKETS, 4)]
    assert worker.guard.discarded == 0 and worker.gaps() == {}
    assert worker.guard.epoch >= 1


def test_installing_twice_wraps_once():
    from stream_app.kafka.compat import positions

    kafka = ScriptedKafka({TICKETS: 1}, {TICKETS: None})

    async def scenario():
        worker = FaustWorker(kafka, guard=True, fast=False)
        assert positions.install(worker.consumer, {"app.ticket"}) is worker.guard

    asyncio.run(scenario())


def _rebalance_to_checkpoint(kafka: ScriptedKafka, fast: bool, position: int, read_for: float) -> FaustWorker:
    """A guarded worker whose checkpoints put every source partition at ``position``, through
    one rebalance (its seek), then reading for ``read_for`` seconds at most."""

    async def from_checkpoint(tps):
        return {tp: position for tp in tps}

    async def scenario():
        async with FaustWorker(kafka, guard=True, fast=fast, positions_from=from_checkpoint) as worker:
            await worker.rebalance()
            await worker.run_until_read(timeout=read_for)
        return worker

    return asyncio.run(scenario())


@FAST
def test_a_checkpoint_position_ahead_of_kafka_is_committed_after_the_seek(fast):
    # The checkpoint says the states include offsets 0..4 of the tickets partition, Kafka's
    # committed offset is still 2 (the worker that wrote the checkpoint was killed before its
    # next commit), and nothing new arrives. The seek reads from 5; Faust, which takes 5 for
    # its committed offset, would never commit it: the group's lag would stay at 3.
    kafka = ScriptedKafka({TICKETS: 5}, {TICKETS: 2})
    worker = _rebalance_to_checkpoint(kafka, fast, 5, read_for=0.2)
    assert kafka.seeks[-1] == (TICKETS, 5)
    assert worker.received == []  # nothing to read past the checkpoint
    assert kafka.committed[TICKETS] == 5
    assert worker.guard.committed_ahead == 1


@FAST
def test_a_checkpoint_position_at_kafkas_commit_commits_nothing(fast):
    kafka = ScriptedKafka({TICKETS: 5}, {TICKETS: 3})
    commits = []
    kafka_commit = kafka.commit

    async def recording(offsets):
        commits.append(dict(offsets))
        return await kafka_commit(offsets)

    kafka.commit = recording
    worker = _rebalance_to_checkpoint(kafka, fast, 3, read_for=0.5)
    assert worker.received == [(TICKETS, 3), (TICKETS, 4)]
    assert worker.guard.committed_ahead == 0
    assert all(TICKETS not in c or c[TICKETS] != 3 for c in commits)
