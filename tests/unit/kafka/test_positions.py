"""stream_app.kafka.compat.positions: what Faust's fetcher is handed around a seek.

A stand-in consumer with Faust's own ``perform_seek`` (read and committed offset
bookkeeping); fetches return scripted batches, and ``drain`` follows Faust's
``Consumer._drain_messages``: take a message, yield to the loop, compare it
with the read offset (drop or "gap"), deliver it, record its offset. The
real-Kafka proof is tests/faults (kill -9 with static membership).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from faust.transport.consumer import Consumer
from faust.types import TP

from stream_app.kafka.compat.positions import install

TICKETS = TP("app.ticket", 0)
SIGNALS = TP("app.health-signals", 0)
CHANGELOG = TP("app-tickets-changelog", 0)
SOURCES = {"app.ticket", "app.health-signals"}


def msg(tp: TP, offset: int) -> SimpleNamespace:
    return SimpleNamespace(tp=tp, offset=offset)


class ScriptedConsumer:
    """Faust's Consumer surface the guard touches; fetches pop scripted batches."""

    perform_seek = Consumer.perform_seek  # Faust's: seek_to_committed, then read/committed offsets

    def __init__(self, committed: dict[TP, int | None], batches: list[dict[TP, list]]) -> None:
        self.committed = committed
        self.batches = batches
        self.fetch_started = asyncio.Event()
        self.release_fetch: asyncio.Event | None = None
        self._read_offset: dict[TP, int | None] = {}
        self._committed_offset: dict[TP, int | None] = {}
        self.seeks: list[tuple[TP, int | None]] = []

    def assignment(self) -> set[TP]:
        return set(self.committed)

    async def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))
        self._read_offset[tp] = offset if offset else None

    async def seek_to_committed(self) -> dict[TP, int | None]:
        self.seeks += [(tp, o) for tp, o in self.committed.items() if o]  # aiokafka skips None and 0
        return dict(self.committed)

    async def _getmany(self, active_partitions, timeout):
        self.fetch_started.set()
        if self.release_fetch is not None:
            await self.release_fetch.wait()
        return self.batches.pop(0) if self.batches else {}

    async def getmany(self, timeout: float):
        # Like Faust's Consumer.getmany: one fetch, then its messages one by one.
        records = await self._getmany(active_partitions=None, timeout=timeout)
        for tp, messages in records.items():
            for m in messages:
                yield tp, m


async def drain(consumer, out: list, on_message=None) -> None:
    """One batch through Faust's _drain_messages rules; out gets (tp, offset, verdict)."""
    async for tp, m in consumer.getmany(timeout=1.0):
        if on_message is not None:
            on_message(m)
        await asyncio.sleep(0)  # Faust yields to the loop every 100 messages, here every one
        r_offset = consumer._read_offset.get(tp)
        if r_offset is not None and m.offset < r_offset:
            out.append((tp, m.offset, "dropped"))
            continue
        gap = r_offset is not None and m.offset - r_offset > 1
        out.append((tp, m.offset, f"gap from {r_offset}" if gap else "delivered"))
        await asyncio.sleep(0)  # delivering to the agent's queue
        consumer._read_offset[tp] = m.offset


def test_uncommitted_source_partitions_start_from_the_beginning():
    committed = {TICKETS: None, SIGNALS: 7, CHANGELOG: None}
    consumer = ScriptedConsumer(committed, [])
    install(consumer, SOURCES)
    asyncio.run(consumer.perform_seek())
    # aiokafka would leave TICKETS where it was; the changelog is recovery's business.
    assert consumer.seeks == [(SIGNALS, 7), (TICKETS, 0)]
    assert consumer._read_offset[TICKETS] is None and consumer._read_offset[SIGNALS] == 7


def test_a_seek_during_a_hand_over_ends_that_batch_and_nothing_looks_read_or_skipped():
    # Recovery of a restarted worker: 5..7 were fetched before the seek back to
    # the committed offset 3, which happens while 5 is being handed over.
    consumer = ScriptedConsumer(
        {TICKETS: 3},
        [{TICKETS: [msg(TICKETS, 5), msg(TICKETS, 6), msg(TICKETS, 7)]},
         {TICKETS: [msg(TICKETS, 3), msg(TICKETS, 4), msg(TICKETS, 5), msg(TICKETS, 6)]}],  # fmt: skip
    )
    guard = install(consumer, SOURCES)
    out: list = []

    async def scenario():
        seeking: list = []

        def seek_on_first(m):
            if not seeking:
                seeking.append(asyncio.ensure_future(consumer.perform_seek()))

        await drain(consumer, out, seek_on_first)
        await seeking[0]
        await drain(consumer, out)

    asyncio.run(scenario())
    assert out == [
        (TICKETS, 5, "delivered"),  # handed over before the seek: Faust handles it as usual
        # 6 and 7 are not handed over after the seek; they come again from 3 on,
        # and no offset is dropped as already read or acked as a gap.
        (TICKETS, 3, "delivered"),
        (TICKETS, 4, "delivered"),
        (TICKETS, 5, "delivered"),
        (TICKETS, 6, "delivered"),
    ]
    assert guard.discarded == 2


def test_a_seek_waits_for_a_fetch_under_way_and_ends_that_batch():
    consumer = ScriptedConsumer(
        {TICKETS: 10},
        [{TICKETS: [msg(TICKETS, 12), msg(TICKETS, 13)]}, {TICKETS: [msg(TICKETS, 10), msg(TICKETS, 11)]}],
    )
    install(consumer, SOURCES)
    out: list = []

    async def scenario():
        consumer.release_fetch = asyncio.Event()
        fetching = asyncio.ensure_future(drain(consumer, out))
        await consumer.fetch_started.wait()
        seeking = asyncio.ensure_future(consumer.perform_seek())
        await asyncio.sleep(0.01)
        assert not seeking.done()  # the fetch holds it off
        consumer.release_fetch.set()
        await asyncio.gather(fetching, seeking)
        await drain(consumer, out)

    asyncio.run(scenario())
    # The seek was waiting first: nothing of the batch fetched before it is handed over.
    assert out == [(TICKETS, 10, "delivered"), (TICKETS, 11, "delivered")]


def test_batches_fetched_after_the_seek_are_handed_over_whole():
    consumer = ScriptedConsumer({TICKETS: 3, SIGNALS: 0}, [{TICKETS: [msg(TICKETS, 3)], SIGNALS: [msg(SIGNALS, 0)]},
                                                           {TICKETS: [msg(TICKETS, 4)]}])  # fmt: skip
    guard = install(consumer, SOURCES)
    out: list = []

    async def scenario():
        await consumer.perform_seek()
        await drain(consumer, out)
        await drain(consumer, out)

    asyncio.run(scenario())
    assert out == [(TICKETS, 3, "delivered"), (SIGNALS, 0, "delivered"), (TICKETS, 4, "delivered")]
    assert guard.discarded == 0
    assert install(consumer, SOURCES) is guard  # installing twice wraps once
