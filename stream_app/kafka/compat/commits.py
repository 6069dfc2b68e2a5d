"""A checkpoint before every offset commit.

Faust commits the offsets of acked messages on its own schedule (``broker_commit_interval``) and
when partitions are revoked, in ``Consumer._commit_offsets`` after the producer's flush; it
offers no hook before that. Running the worker's checkpoint first keeps every committed offset
covered by durable state, so consumer lag means what operators expect. Correctness does not
rest on it: a worker resumes each partition from its own checkpoint, never from the commit
(``positions``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)


def install(consumer: Any, before_commit: Callable[[], Awaitable[Any]]) -> None:
    """Make ``consumer._commit_offsets`` await ``before_commit()`` first (once per consumer).
    A failing checkpoint does not stop the commit: it is logged, and retried at the next one."""
    if getattr(consumer, "_stream_app_before_commit", None) is not None:
        return
    commit_offsets = consumer._commit_offsets

    async def _commit_offsets(offsets: Any, start_new_transaction: bool = True) -> bool:
        try:
            await before_commit()
        except Exception:  # noqa: BLE001 - never lose the commit over a checkpoint
            log.exception("checkpoint before the offset commit failed")
        return await commit_offsets(offsets, start_new_transaction=start_new_transaction)

    consumer._commit_offsets = _commit_offsets
    consumer._stream_app_before_commit = before_commit
