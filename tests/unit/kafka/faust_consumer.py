"""Faust's real consumer path over a scripted Kafka, for tests of stream_app.kafka.compat.

Everything from the fetch to the agent's queue is Faust's own code: the app's
``faust.transport.drivers.aiokafka.Consumer`` (``_drain_messages``, ``getmany``,
``_wait_next_records``, ``perform_seek``, read offsets, gaps, acks), the conductor with its
compiled per-partition handler, and a topic channel's queue that an "agent" task reads. Only
the layer below Faust's consumer is scripted: :class:`ScriptedKafka` stands in for Faust's
``AIOKafkaConsumerThread`` (the aiokafka consumer in its thread) with a log per partition, a
fetch position, ``seek`` and aiokafka's ``seek_to_committed``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import faust
from aiokafka.structs import ConsumerRecord
from faust.types import TP

from stream_app.kafka.compat import drain, positions

_ids = itertools.count()


class ScriptedKafka:
    """What Faust's consumer thread answers, over logs of offsets ``0 .. end-1`` per partition.

    A fetch returns up to ``max_records`` per active partition from its position and advances
    the position (aiokafka's fetcher); the batch is cut from the positions when the fetch
    starts, so a fetch held at ``gate`` returns what was fetched before any seek made meanwhile.
    ``seek_to_committed`` moves only partitions with a committed offset > 0, as aiokafka 0.14's
    ``AIOKafkaConsumer.seek_to_committed`` does. Every call yields to the loop once, as the hop
    to Faust's consumer thread and back does.
    """

    def __init__(
        self,
        ends: dict[TP, int],
        committed: dict[TP, int | None],
        *,
        positions: dict[TP, int] | None = None,
        max_records: int = 3,
    ) -> None:
        self.ends = dict(ends)
        self.committed = dict(committed)
        self.position = {tp: (positions or {}).get(tp, committed.get(tp) or 0) for tp in ends}
        self.max_records = max_records
        self.gate: asyncio.Event | None = None  # a fetch waits for it before it returns
        self.fetch_started = asyncio.Event()
        self.seeks: list[tuple[TP, int]] = []

    async def getmany(self, active_partitions: set[TP] | None, timeout: float) -> dict[TP, list]:
        await asyncio.sleep(0)
        batch = {}
        for tp in sorted(active_partitions or ()):
            start = self.position[tp]
            stop = min(self.ends[tp], start + self.max_records)
            if start < stop:
                batch[tp] = [_record(tp, offset) for offset in range(start, stop)]
                self.position[tp] = stop
        self.fetch_started.set()
        if self.gate is not None:
            await self.gate.wait()
        if not batch:
            await asyncio.sleep(0.002)  # a fetch with nothing new waits for its timeout
        return batch

    def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))
        self.position[tp] = offset

    async def seek_to_committed(self) -> dict[TP, int | None]:
        await asyncio.sleep(0)
        for tp, offset in self.committed.items():
            if offset and offset > 0:
                self.seek(tp, offset)
        return dict(self.committed)

    async def commit(self, offsets: dict[TP, int]) -> bool:
        """The consumer thread's commit (Faust's ``_commit`` calls it): Kafka's committed offsets."""
        await asyncio.sleep(0)
        self.committed.update(offsets)
        return True

    def assignment(self) -> set[TP]:
        return set(self.ends)

    def highwater(self, tp: TP) -> int:
        return self.ends[tp]


def _record(tp: TP, offset: int) -> ConsumerRecord:
    return ConsumerRecord(
        topic=tp.topic,
        partition=tp.partition,
        offset=offset,
        timestamp=1_700_000_000_000 + offset,
        timestamp_type=0,
        key=b"k",
        value=b"v%d" % offset,
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=2,
        headers=(),
    )


Hook = Callable[[Any], Awaitable[None]]


class FaustWorker:
    """A Faust app whose consumer reads :class:`ScriptedKafka`, with one agent per topic that
    records what reaches it (``received``) and acks it. ``guard`` / ``fast`` install
    stream_app's position guard and inline hand-over. ``before_hand_over(offset, hook)`` runs
    ``hook(message)`` inside the hand-over of that offset, before the conductor delivers it (a
    hook that awaits makes the hand-over block, as a full queue would)."""

    def __init__(
        self,
        kafka: ScriptedKafka,
        *,
        guard: bool,
        fast: bool,
        buffer_size: int = 100,
        positions_from: positions.Positions | None = None,
    ) -> None:
        self.kafka = kafka
        self.app = faust.App(
            f"compat-test-{next(_ids)}",
            broker="kafka://127.0.0.1:1",  # never contacted: the consumer thread is scripted
            store="memory://",
            web_enabled=False,
            stream_buffer_maxsize=buffer_size,
        )
        self.consumer = self.app.consumer
        self.consumer._thread.thread_loop.close()  # the real thread's loop: never started here
        self.consumer._thread = kafka
        self.topics = {tp.topic: self.app.topic(tp.topic, value_serializer="raw") for tp in kafka.ends}
        self.received: list[tuple[TP, int]] = []
        self.agents_running = asyncio.Event()  # clear it to hold the agents (their queues fill)
        self.agents_running.set()
        self.hooks: dict[int, Hook] = {}
        self.guard = positions.install(self.consumer, set(self.topics), positions_from) if guard else None
        self.hand_over = drain.install(self.consumer) if fast else None
        self._tasks: list[asyncio.Task] = []

    def before_hand_over(self, offset: int, hook: Hook) -> None:
        self.hooks[offset] = hook

    async def __aenter__(self) -> FaustWorker:
        conductor = self.app.topics
        # An agent iterates a clone of its topic, which the clone registers with the conductor.
        self.channels = [topic.__aiter__() for topic in self.topics.values()]
        await conductor._update_indices()  # what Conductor._subscriber does before subscribing
        assigned = self.kafka.assignment()
        await conductor.on_partitions_assigned(assigned)  # builds the per-partition handlers
        self.app.flow_control.resume()
        self.consumer.resume_partitions(assigned)
        deliver = self.consumer.callback  # Conductor.on_message

        async def on_message(message: Any) -> None:
            hook = self.hooks.pop(message.offset, None)
            if hook is not None:
                await hook(message)
            await deliver(message)

        self.consumer.callback = on_message
        self.fetcher = SimpleNamespace(_stopped=asyncio.Event())  # Faust's Fetcher service
        self._tasks = [asyncio.ensure_future(self.consumer._drain_messages(self.fetcher))]
        self._tasks += [asyncio.ensure_future(self._agent(channel)) for channel in self.channels]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.fetcher._stopped.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _agent(self, channel: Any) -> None:
        while True:
            await self.agents_running.wait()
            event = await channel.queue.get()
            message = event.message
            self.received.append((message.tp, message.offset))
            message.ack(self.consumer)

    @property
    def drain_task(self) -> asyncio.Task:
        return self._tasks[0]

    def revoke(self) -> None:
        """What ``App._on_partitions_revoked`` does to the consumer first: stop the flow,
        suspend flow control, pause the partitions, clear the agents' queues."""
        self.consumer.stop_flow()
        self.app.flow_control.suspend()
        self.consumer.pause_partitions(self.kafka.assignment())
        self.app.flow_control.clear()

    async def recover(self, after: float = 0.0) -> None:
        """What ``Recovery._resume_streams`` does then (``after`` seconds: a rebalance and a
        table recovery take a while): resume the partitions, seek back to the committed
        offsets, resume flow control and the flow."""
        await asyncio.sleep(after)
        self.consumer.resume_partitions(self.kafka.assignment())
        await self.consumer.perform_seek()
        self.app.flow_control.resume()
        self.consumer.resume_flow()

    async def rebalance(self) -> None:
        self.revoke()
        await asyncio.sleep(0)
        await self.recover()

    async def run_until_read(self, timeout: float = 5.0) -> None:
        """Until every partition has been handed over to its end (or ``timeout``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self.drain_task.done():
                self.drain_task.result()  # a crash of the fetcher fails the test
            read = self.consumer._read_offset
            if all(read.get(tp) == end - 1 for tp, end in self.kafka.ends.items()):
                break
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.02)  # let the agents take what is queued

    def lost(self) -> dict[TP, list[int]]:
        """Offsets from the committed one to the end of the log that never reached an agent."""
        got = set(self.received)
        return {
            tp: missing
            for tp, end in self.kafka.ends.items()
            if (missing := [o for o in range(self.kafka.committed[tp] or 0, end) if (tp, o) not in got])
        }

    def gaps(self) -> dict[TP, list[int]]:
        """Offsets Faust recorded as gaps (acked without being processed)."""
        return {
            tp: sorted(o for iv in tree for o in range(iv.begin, iv.end))
            for tp, tree in self.consumer._gap.items()
            if tree
        }
