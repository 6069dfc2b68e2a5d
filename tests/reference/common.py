"""What the batch references share: the log as first delivered, trailing windows of buckets read
at ``now``, window names, and the samples they produce. Written from docs/metrics.md, not from
stream_app."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping


def first_deliveries(events: Iterable[dict]) -> list[dict]:
    """Each event id once, its first delivery, in arrival order (a redelivery changes nothing)."""
    seen: set[str] = set()
    out = []
    for e in events:
        if e["id"] not in seen:
            seen.add(e["id"])
            out.append(e)
    return out


def time_order(e: dict) -> tuple:
    return e["time"], e["id"]


def by_entity(log: Iterable[dict], field: str) -> dict[str, list[dict]]:
    """The events of each entity (``data[field]``), in log order."""
    out: dict[str, list[dict]] = {}
    for e in log:
        out.setdefault(e["data"][field], []).append(e)
    return out


def window_test(now: float, bucket: int):
    """``in_window(ts, w)``: whether event time ``ts`` is in the trailing window of ``w`` seconds
    read at ``now``, i.e. its bucket is one of the ``w // bucket`` buckets ending with now's."""
    now_bucket = math.floor(now / bucket)

    def in_window(ts: float, w: int) -> bool:
        return now_bucket - w // bucket < math.floor(ts / bucket) <= now_bucket

    return in_window


def window_name(w: int) -> str:
    """The ``window`` label: days beyond one day, else hours, minutes or seconds."""
    if w % 86400 == 0 and w > 86400:
        return f"{w // 86400}d"
    return f"{w // 3600}h" if w % 3600 == 0 else (f"{w // 60}m" if w % 60 == 0 else f"{w}s")


class Samples(dict):
    """{(sample name, frozenset of labels): value}, the form the tests compare; zeros left out."""

    def put(self, name: str, labels: Mapping | frozenset, value: float) -> None:
        """Add ``value`` to a sample; ``labels`` as a mapping or as the frozenset of its items."""
        if value:
            key = (name, frozenset(dict(labels).items()))
            total = self.get(key, 0) + value
            if total:
                self[key] = total
            else:  # values of both signs that cancel (sentiment sums): a zero is left out too
                self.pop(key, None)
