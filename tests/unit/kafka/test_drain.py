"""stream_app.kafka.compat.drain: the inline hand-over keeps what mode's wait_first guarantees.

Faust's real drain loop, conductor and agent queues over a scripted aiokafka layer
(faust_consumer.py). Where behaviour must equal Faust's own, a test runs with the patch
("inline") and without it ("wait_first") and asserts the same outcome.
"""

from __future__ import annotations

import asyncio
import contextvars

import pytest
from faust.types import TP

from stream_app.kafka.compat import drain

from .faust_consumer import FaustWorker, ScriptedKafka

TICKETS = TP("app.ticket", 0)


async def _until(condition, timeout: float = 5.0) -> None:
    """Poll ``condition()`` on the loop (no fixed sleeps: the tests run on a busy machine)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.001)


BOTH = pytest.mark.parametrize("fast", [False, True], ids=["wait_first", "inline"])


def test_hand_overs_that_do_not_block_run_inline():
    kafka = ScriptedKafka({TICKETS: 60}, {TICKETS: None}, max_records=25)

    async def scenario():
        async with FaustWorker(kafka, guard=True, fast=True) as worker:
            await worker.run_until_read()
        return worker

    worker = asyncio.run(scenario())
    assert worker.received == [(TICKETS, o) for o in range(60)]
    # Faust's drain loop calls the patched wait_first for every message (if a Faust release
    # changes that call, nothing runs inline and this fails).
    assert (worker.hand_over.inline, worker.hand_over.blocked) == (60, 0)


def test_a_full_agent_queue_blocks_the_hand_over_until_the_agent_takes_more():
    # The agent is held until its queue (4) is full: the conductor waits on Channel.put, and
    # that hand-over goes on under wait_first until the agent takes more.
    kafka = ScriptedKafka({TICKETS: 40}, {TICKETS: None}, max_records=40)

    async def scenario():
        async with FaustWorker(kafka, guard=True, fast=True, buffer_size=4) as worker:
            worker.agents_running.clear()
            await _until(lambda: worker.hand_over.blocked > 0)
            worker.agents_running.set()
            await worker.run_until_read()
        return worker

    worker = asyncio.run(scenario())
    assert worker.received == [(TICKETS, o) for o in range(40)]
    assert worker.hand_over.blocked > 0 and worker.hand_over.inline > 0
    assert worker.lost() == {} and worker.gaps() == {}


@BOTH
def test_agents_take_each_message_before_the_next_hand_over(fast):
    # Faust's stream takes one event per loop trip; wait_first's loop trip per message keeps the
    # agent's queue next to empty. The inline hand-over keeps that trip (without it the fetcher
    # ran ~100 hand-overs per event taken and the queue filled up to its pressure limit).
    kafka = ScriptedKafka({TICKETS: 300}, {TICKETS: None}, max_records=300)
    depths = []

    async def scenario():
        async with FaustWorker(kafka, guard=True, fast=fast) as worker:
            queue = worker.channels[0].queue
            sample = asyncio.get_running_loop().call_soon

            def watch():
                depths.append(queue.qsize())
                if not worker.drain_task.done():
                    sample(watch)

            sample(watch)
            await worker.run_until_read()
        return worker

    worker = asyncio.run(scenario())
    assert worker.received == [(TICKETS, o) for o in range(300)]
    assert max(depths) <= 2


@BOTH
def test_a_suspension_interrupts_a_blocked_hand_over(fast):
    # The hand-over of 2 blocks (its callback waits on something that never comes). A rebalance
    # stops the flow: wait_first returns at once and cancels the callback where it waits, so the
    # fetcher lets go of the position guard's lock and the seek runs.
    kafka = ScriptedKafka({TICKETS: 6}, {TICKETS: 1}, positions={TICKETS: 1})
    seen: dict = {}

    async def scenario():
        async with FaustWorker(kafka, guard=True, fast=fast) as worker:
            blocked = asyncio.Event()

            async def block_forever(message):
                blocked.set()
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    seen["cancelled"] = True
                    raise

            worker.before_hand_over(2, block_forever)
            await asyncio.wait_for(blocked.wait(), 2)
            await asyncio.sleep(0.01)
            assert "cancelled" not in seen  # wait_first waits for the blocked callback ...
            worker.revoke()
            for _ in range(5):
                await asyncio.sleep(0)
            seen["interrupted"] = seen.get("cancelled", False)  # ... until the suspension
            seen["read_offset"] = worker.consumer._read_offset[TICKETS]
            await asyncio.wait_for(worker.recover(), 1)  # the guard's lock was released
            await worker.run_until_read()
        return worker

    worker = asyncio.run(scenario())
    assert seen == {"cancelled": True, "interrupted": True, "read_offset": 2}
    assert (TICKETS, 2) in worker.received  # fetched again after the seek to 1
    assert worker.lost() == {} and worker.gaps() == {}
    if fast:
        assert worker.hand_over.blocked == 1


@BOTH
def test_a_suspension_interrupts_a_hand_over_waiting_on_a_full_queue(fast):
    # Faust's own blocking path: the agents are held, their queue (2) is full, the conductor
    # waits in Channel.put. The rebalance must still get the fetcher off the hand-over, seek,
    # and after the flow resumes every message from the committed offset arrives.
    kafka = ScriptedKafka({TICKETS: 12}, {TICKETS: 3}, positions={TICKETS: 3}, max_records=6)

    async def scenario():
        async with FaustWorker(kafka, guard=True, fast=fast, buffer_size=2) as worker:
            worker.agents_running.clear()
            await _until(worker.channels[0].queue.full)
            await asyncio.sleep(0.02)  # the queue is full, a hand-over waits
            assert worker.consumer._read_offset[TICKETS] in (4, 5)
            worker.revoke()
            await asyncio.wait_for(worker.recover(), 1)
            worker.agents_running.set()
            await worker.run_until_read()
        return worker

    worker = asyncio.run(scenario())
    assert {o for _, o in worker.received} == set(range(3, 12))
    assert worker.lost() == {} and worker.gaps() == {}


@BOTH
@pytest.mark.parametrize("blocks_first", [False, True], ids=["at-once", "after-blocking"])
def test_a_callback_error_reaches_the_drain_loop(fast, blocks_first):
    kafka = ScriptedKafka({TICKETS: 5}, {TICKETS: None})

    async def scenario():
        async with FaustWorker(kafka, guard=False, fast=fast) as worker:

            async def fail(message):
                if blocks_first:
                    await asyncio.sleep(0)
                raise RuntimeError("agent delivery failed")

            worker.before_hand_over(1, fail)
            await asyncio.wait([worker.drain_task], timeout=2)
            return worker.drain_task.exception()

    error = asyncio.run(scenario())
    assert isinstance(error, RuntimeError) and str(error) == "agent delivery failed"


def test_only_the_drain_loops_call_runs_inline():
    kafka = ScriptedKafka({TICKETS: 1}, {TICKETS: None})

    async def scenario():
        worker = FaustWorker(kafka, guard=False, fast=True)
        consumer, hand_over = worker.consumer, worker.hand_over
        ran = []

        async def callback(value):
            ran.append(value)
            return value

        # another call shape: mode's wait_first
        other = await consumer.wait_first(callback("a"))
        # the drain loop's shape while the flow is suspended: mode's wait_first
        consumer.stop_flow()
        suspended = await consumer.wait_first(callback("b"), consumer.suspend_flow.wait())
        consumer.resume_flow()
        # the drain loop's shape with the flow running: inline
        inline = await consumer.wait_first(callback("c"), consumer.suspend_flow.wait())
        # an Event.wait() of another event is not the suspension: mode's wait_first
        other_event = asyncio.Event()
        other_event.set()
        foreign = await consumer.wait_first(callback("d"), other_event.wait())
        return other, suspended, inline, foreign, ran, hand_over

    other, suspended, inline, foreign, ran, hand_over = asyncio.run(scenario())
    assert ran == ["a", "b", "c", "d"]
    assert other.results == ["a"] and not other.stopped
    assert suspended.done and not suspended.stopped  # the suspension won (and maybe "b" too)
    assert inline.results == ["c"] and not inline.stopped
    assert not foreign.stopped
    assert (hand_over.inline, hand_over.blocked) == (1, 0)


def test_the_callback_runs_in_a_context_of_its_own():
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="drain loop")
    kafka = ScriptedKafka({TICKETS: 1}, {TICKETS: None})

    async def scenario():
        consumer = FaustWorker(kafka, guard=False, fast=True).consumer
        seen = []

        async def callback():
            var.set("callback")
            seen.append(var.get())
            await asyncio.sleep(0)  # blocks once: the rest runs in a task, same context
            seen.append(var.get())

        await consumer.wait_first(callback(), consumer.suspend_flow.wait())
        return seen, var.get()

    seen, after = asyncio.run(scenario())
    assert seen == ["callback", "callback"] and after == "drain loop"


def test_installing_twice_patches_once():
    kafka = ScriptedKafka({TICKETS: 1}, {TICKETS: None})

    async def scenario():
        worker = FaustWorker(kafka, guard=False, fast=True)
        assert drain.install(worker.consumer) is worker.hand_over

    asyncio.run(scenario())
