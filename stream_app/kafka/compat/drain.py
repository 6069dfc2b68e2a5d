"""Faust's per-message hand-over without two tasks and an ``asyncio.wait`` when nothing blocks.

Faust's fetcher (``Consumer._drain_messages``, faust/transport/consumer.py) hands every message
to the conductor with::

    await self.wait_first(callback(message), self.suspend_flow.wait())

mode's ``Service.wait_first`` wraps each awaitable *and* the service's ``_stopped`` and
``_crashed`` events in a task and runs ``asyncio.wait(FIRST_COMPLETED)``: four tasks, a wait and
at least one trip through the event loop per message. That is about half of Faust's CPU per
message with a no-op agent (measured with shared/tools/faust_floor.py: 87 -> 43 µs with the
crude measurement patch). Almost always the callback finishes in its first step: the conductor
decodes the message and puts it into the agent's queue without waiting.

The race ``wait_first`` exists for: the callback can *block* -- the agent's queue is full
(``Channel.put``), flow control is suspended (``FlowControlEvent.acquire``), the producer buffer
is over its limit, or the conductor's index lock is held by a resubscription. A rebalance then
calls ``Consumer.stop_flow()`` (``suspend_flow.set()``) before it pauses the partitions, clears
the agents' queues and waits for the streams to ack what they started. The blocked callback must
not hold the fetcher: ``wait_first`` returns as soon as ``suspend_flow`` (or the service's stop
or crash) is set and cancels the callback. Without that the fetcher keeps the flow -- and in
stream_app the position guard's lock, held for the whole hand-over of one message -- until the
queue drains, which it may never do while flow control holds the agents (a seek waiting on that
lock would wait for it too).

:func:`install` replaces ``wait_first`` on one consumer instance. For the drain loop's call
only -- two awaitables, the second an ``asyncio.Event.wait()`` of this consumer's
``suspend_flow``, no timeout -- and only while neither ``suspend_flow`` nor the service's
``_stopped``/``_crashed`` is set, it runs the callback's first step itself, in a copy of the
current context as a task would:

* the callback finished (the common case): the message is handed over, the suspension
  coroutine is closed unawaited, the drain loop yields to the event loop once (a bare
  ``asyncio.sleep(0)``) and ``WaitResults([callback], [result], False)`` is returned -- what
  ``wait_first`` returns when the callback wins. An exception from the callback propagates, as
  ``wait_first`` propagates it.
* the callback blocked (it yielded a future): the rest of it continues in a task, in the same
  context, and that task goes through Faust's own ``wait_first`` together with the same
  ``suspend_flow.wait()``: a suspension (or stop, or crash) arriving while it waits returns at
  once and cancels the callback at the very await it blocked on, exactly as before.

Why this is safe: every run of the patched hand-over is a run the original allows. The original
creates the callback's task and lets the event loop start it; anything else that is ready may
run before or after that first step, and when the first step completes the callback has won
(``asyncio.wait`` reports it done; nothing is cancelled). Running the first step immediately is
the schedule where it comes first. The loop trip per message is kept: Faust's stream iterators
take one event per loop trip (``sleep(0)`` in ``StreamIterator.next``), so without it the
fetcher would hand ~100 messages over (its own yield interval) for every event an agent takes,
and under a backlog the agents' queues would sit at their pressure limit (thousands of fetched
events that a rebalance clears and fetches again) instead of next to empty as with
``wait_first``. (Measured without it: Faust paused the partitions at the queue's pressure mark
and every second fetch came back empty after its full 1 s timeout -- a third of the wall time.) Any other call of ``wait_first`` on the consumer, and every call while flow is
suspended or the service stopping, goes to mode's ``wait_first`` unchanged.

One difference can be observed by the callback: during its first step
``asyncio.current_task()`` is the fetcher's task, not a task of its own. Faust's conductor path
(``Conductor.on_message``, ``ConductorHandler``, ``Topic.decode``, ``Queue.put``) does not use it;
code that captures the current task before its first suspension (``asyncio.timeout``) would.

Written against faust-streaming 0.15.2-0.15.3 (``Consumer._drain_messages``) and mode-streaming
0.7 (``Service.wait_first``, unchanged since 0.4); the versions are asserted by
``stream_app.kafka.compat.install``.
Upstream: https://github.com/faust-streaming/faust/blob/master/faust/transport/consumer.py
(``_drain_messages``), https://github.com/faust-streaming/mode/blob/master/mode/services.py
(``wait_first``).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Generator
from typing import Any

from mode.services import WaitResults

_EVENT_WAIT = asyncio.Event.wait.__code__


class _Continue:
    """Awaitable that goes on driving a coroutine whose first step already ran and yielded
    ``pending`` (what a coroutine yields to its task: a future it waits on, or None)."""

    __slots__ = ("_coro", "_pending")

    def __init__(self, coro: Any, pending: Any) -> None:
        self._coro = coro
        self._pending = pending

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, pending = self._coro, self._pending
        self._coro = self._pending = None
        while True:
            try:
                sent = yield pending  # the task waits on it as if the coroutine had yielded it
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # thrown into the task (cancellation): into the coroutine
                try:
                    pending = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    pending = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _resume(coro: Any, pending: Any) -> Any:
    return await _Continue(coro, pending)


class FastHandOver:
    """``wait_first`` for one Faust consumer: the drain loop's hand-over inline when it does not
    block, mode's ``wait_first`` otherwise. ``inline`` and ``blocked`` count the two cases."""

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer
        self.inline = 0  # callbacks that completed in their first step
        self.blocked = 0  # callbacks that blocked and went on under wait_first
        self._wait_first = consumer.wait_first  # mode's, bound to the consumer

    def _is_hand_over(self, coros: tuple[Any, ...], timeout: Any) -> bool:
        if len(coros) != 2 or timeout is not None:
            return False
        callback, suspended = coros
        consumer = self.consumer
        frame = getattr(suspended, "cr_frame", None)  # None once a coroutine ran or was closed
        return (
            getattr(suspended, "cr_code", None) is _EVENT_WAIT
            and frame is not None
            and frame.f_locals.get("self") is consumer.suspend_flow
            and hasattr(callback, "send")
            and not consumer.suspend_flow.is_set()
            and not consumer._stopped.is_set()
            and not consumer._crashed.is_set()
        )

    async def wait_first(self, *coros: Any, timeout: Any = None) -> Any:
        if not self._is_hand_over(coros, timeout):
            return await self._wait_first(*coros, timeout=timeout)
        callback, suspended = coros
        context = contextvars.copy_context()
        try:
            pending = context.run(callback.send, None)
        except StopIteration as done:
            suspended.close()
            self.inline += 1
            await asyncio.sleep(0)  # the loop trip wait_first made: agents take what came
            return WaitResults([callback], [done.value], False)
        except BaseException:
            suspended.close()
            raise
        self.blocked += 1
        task = self.consumer.loop.create_task(_resume(callback, pending), context=context)
        return await self._wait_first(task, suspended)


def install(consumer: Any) -> FastHandOver:
    """Replace ``wait_first`` on ``consumer`` (a Faust ``Consumer``) once; returns the hand-over."""
    hand_over = getattr(consumer, "_stream_app_fast_hand_over", None)
    if hand_over is None:
        hand_over = FastHandOver(consumer)
        consumer.wait_first = hand_over.wait_first
        consumer._stream_app_fast_hand_over = hand_over
    return hand_over
