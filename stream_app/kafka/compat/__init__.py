"""Every patch of Faust's and aiokafka's internals, installed by one call, for the versions they
were written against.

Each patch replaces private behaviour that the library gives no seam for, so each is checked
against the exact versions it was read from: :func:`install` refuses any other version at start
(:class:`CompatError`, a clear message) instead of patching code it has not seen. Upgrading
faust-streaming or aiokafka means re-reading the patched functions, re-running
tests/unit/kafka/ and the fault suite (tests/faults), then widening the ranges below.

=================  ===========================================  ===============================
patch              works around                                 upstream
=================  ===========================================  ===============================
``positions``      Faust's read offsets vs. seeks after a       faust-streaming #221, #216;
                   rebalance: messages fetched before the        robinhood/faust #542
                   seek are handed over after it and taken for
                   a gap (acked unprocessed); aiokafka does not
                   seek partitions without a commit
``drain``          Faust hands every message over through       faust-streaming
                   mode's ``wait_first`` (four tasks and an     ``_drain_messages``; mode
                   ``asyncio.wait`` each): inline when the      ``Service.wait_first``
                   callback does not block, under               (faust-streaming/mode)
                   ``wait_first`` when it does (a
                   suspension still interrupts it)
``batching``       aiokafka lingers per partition: one produce  aio-libs/aiokafka #1137
                   request per partition batch                  (PR #1142)
``commits``        no hook before Faust commits offsets: the    (no upstream issue: Faust's
                   worker checkpoints its states first          tables do this internally)
=================  ===========================================  ===============================

The position guard's discards are exported by :func:`guard_metric_families`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from importlib.metadata import version
from typing import Any

from . import batching, commits, drain, positions
from .positions import guard_metric_families

__all__ = ["CompatError", "check_versions", "guard_metric_families", "install"]

# (distribution, lowest supported, first unsupported): the versions whose source the patches
# were written against.
SUPPORTED = (
    ("faust-streaming", (0, 15, 2), (0, 16, 0)),
    ("aiokafka", (0, 14, 0), (0, 15, 0)),
    # Service.wait_first, which ``drain`` bypasses when nothing blocks (faust needs >=0.6)
    ("mode-streaming", (0, 6, 0), (0, 8, 0)),
)


class CompatError(RuntimeError):
    """A dependency version the patches were not written for."""


def _parse(v: str) -> tuple[int, ...]:
    """"0.15.3" -> (0, 15, 3); a pre-release or local suffix is ignored."""
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


def check_versions() -> None:
    """Raise :class:`CompatError` unless every patched dependency is in its supported range."""
    for dist, low, high in SUPPORTED:
        have = version(dist)
        if not low <= _parse(have) < high:
            raise CompatError(
                f"{dist} {have} is not supported: stream_app patches its internals for "
                f">={'.'.join(map(str, low))},<{'.'.join(map(str, high))} (stream_app.kafka.compat)"
            )


def install(
    app: Any,
    sources: Iterable[str],
    *,
    positions_from: positions.Positions | None = None,
    before_commit: Callable[[], Awaitable[Any]] | None = None,
) -> positions.PositionGuard:
    """Install every patch on a Faust app before it starts: the position guard and the inline
    hand-over on its consumer (``sources``: the topics whose positions Faust's agents consume;
    ``positions_from``: where each assigned source partition is read from, default its
    committed offset), the checkpoint before each offset commit, and node-batched produce
    requests on its producer. Returns the guard (its counters are exported by
    :func:`guard_metric_families`)."""
    check_versions()
    if before_commit is not None:
        commits.install(app.consumer, before_commit)
    producer = app.producer
    new_producer = producer._new_producer

    def _new_producer(*args: Any, **kwargs: Any) -> Any:
        aio = new_producer(*args, **kwargs)
        batching.drain_node_batches_together(aio)
        return aio

    producer._new_producer = _new_producer
    consumer = app.consumer
    guard = positions.install(consumer, sources, positions_from)
    drain.install(consumer)
    return guard
