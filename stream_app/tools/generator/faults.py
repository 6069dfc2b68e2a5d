"""Faults injected into a clean log: duplicates, out-of-order, late and invalid messages.

A streaming injector with its own random stream, so the clean events of a seed are the same with
or without faults, only reordered, plus the extra messages.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields, replace
from typing import Any

import orjson

from .message import SUBJECT_FIELDS, GeneratedEvent

#: Kinds of invalid events and the EventRejected reasons decode_event may give for each.
INVALID_KINDS: dict[str, frozenset[str]] = {
    "malformed_json": frozenset({"malformed_json"}),
    "not_utf8": frozenset({"not_utf8"}),
    "unknown_type": frozenset({"unknown_type"}),
    "unsupported_version": frozenset({"unsupported_version"}),
    "wrong_field_type": frozenset({"invalid"}),
    "missing_field": frozenset({"invalid"}),
    "naive_timestamp": frozenset({"invalid"}),
    "subject_mismatch": frozenset({"subject_mismatch"}),
    "negative_amount": frozenset({"invalid"}),  # subscription events with an amount only
    "score_out_of_scale": frozenset({"invalid"}),  # survey events only
}
_UNIVERSAL_KINDS = tuple(k for k in INVALID_KINDS if k not in ("negative_amount", "score_out_of_scale"))


@dataclass(frozen=True, slots=True)
class Faults:
    """Fractions (of clean events) to corrupt, and how far to displace them. All default to 0."""

    duplicate: float = 0.0  # exact same bytes re-emitted up to duplicate_within s later
    out_of_order: float = 0.0  # emitted after a later event of the same key (<= out_of_order_within s apart)
    late: float = 0.0  # emitted late_by seconds after its event time
    invalid: float = 0.0  # an extra invalid message derived from the event (the event itself stays)
    late_by: float = 600.0
    duplicate_within: float = 60.0
    out_of_order_within: float = 30.0

    def __post_init__(self) -> None:
        for name in ("duplicate", "out_of_order", "late", "invalid"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"fault fraction {name} must be within 0..1")
        if self.duplicate + self.late > 1.0:
            raise ValueError("duplicate + late must not exceed 1")
        for name in ("late_by", "duplicate_within", "out_of_order_within"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")

    @property
    def any(self) -> bool:
        return bool(self.duplicate or self.out_of_order or self.late or self.invalid)

    @classmethod
    def parse(cls, spec: str) -> Faults:
        """Parse ``"duplicate=0.01,invalid=0.005,late_by=900"`` (empty string = no faults)."""
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, float] = {}
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            name, sep, value = part.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in known:
                raise ValueError(f"bad fault spec {part!r}; known: {', '.join(sorted(known))}")
            kwargs[name] = float(value)
        return cls(**kwargs)



def _corrupt(ev: GeneratedEvent, kind: str, rng: random.Random, new_id: str) -> bytes:
    """Bytes of an invalid message of ``kind`` derived from a valid event (given a fresh id)."""
    doc = orjson.loads(ev.value)
    doc["id"] = new_id
    if kind == "malformed_json":
        raw = orjson.dumps(doc)
        return raw[: rng.randint(1, len(raw) - 2)]  # a cut-off object never parses
    data = doc["data"]
    subject_field = SUBJECT_FIELDS[ev.family]
    if kind == "not_utf8":
        # orjson refuses to write invalid UTF-8, so splice the bad bytes in afterwards
        return orjson.dumps(doc).replace(b'"source":"', b'"source":"\xff\xfe', 1)
    if kind == "unknown_type":
        doc["type"] = f"{ev.family}.teleported"
    elif kind == "unsupported_version":
        doc["schemaversion"] = 2
    elif kind == "wrong_field_type":
        # a nested object fits no field of any data model
        others = [k for k in data if k != subject_field]
        if others:
            data[rng.choice(others)] = {"unexpected": [1, 2]}
        else:  # e.g. ticket.closed carries only its id
            data[subject_field] = rng.randint(1, 10**9)
    elif kind == "missing_field":
        del data[subject_field]
    elif kind == "naive_timestamp":
        doc["time"] = doc["time"].removesuffix("Z")
    elif kind == "subject_mismatch":
        doc["subject"] = f"{doc['subject']}-other"
    elif kind == "negative_amount":
        data["amount_minor"] = -1 - rng.randint(0, abs(data["amount_minor"]))
    elif kind == "score_out_of_scale":
        hi = data.get("scale_max", 10)
        lo = data.get("scale_min", 0)
        data["score"] = hi + rng.randint(1, 5) if rng.random() < 0.5 else lo - rng.randint(1, 5)
    else:  # pragma: no cover - guarded by INVALID_KINDS
        raise ValueError(kind)
    return orjson.dumps(doc)


def _invalid_kinds_for(ev: GeneratedEvent) -> tuple[str, ...]:
    kinds = _UNIVERSAL_KINDS
    if ev.family == "survey":
        return kinds + ("score_out_of_scale",) * 2
    if ev.type in (
        "subscription.started",
        "subscription.plan_changed",
        "subscription.renewed",
        "subscription.payment",
    ):
        return kinds + ("negative_amount",) * 2
    return kinds


class _FaultInjector:
    """Streaming fault injection: a heap of pending messages ordered by emission time.

    A message can be released once the clean stream has moved more than the out-of-order window
    past its emission time, because only events within that window may still be moved.
    """

    def __init__(self, faults: Faults, seed: int) -> None:
        self.f = faults
        self.rng = random.Random(f"faults:{seed}")
        self.heap: list[list[Any]] = []  # [emit_time, seq, event, alive]
        self.seq = 0
        self.window = faults.out_of_order_within if faults.out_of_order else 0.0
        self.last: dict[str, list[Any] | None] = {}  # key -> its latest in-place pending entry
        self.n = 0
        self.n_with_pred = 0

    def _push(self, emit: float, ev: GeneratedEvent) -> list[Any]:
        self.seq += 1
        entry = [emit, self.seq, ev, True]
        heapq.heappush(self.heap, entry)
        return entry

    def _release(self, before: float) -> Iterator[GeneratedEvent]:
        heap = self.heap
        while heap and heap[0][0] < before:
            entry = heapq.heappop(heap)
            if entry[3]:
                ev = entry[2]
                if self.last.get(ev.key) is entry:
                    del self.last[ev.key]
                yield ev

    def feed(self, ev: GeneratedEvent) -> Iterator[GeneratedEvent]:
        f, r, t = self.f, self.rng, ev.time
        yield from self._release(t - self.window)
        self.n += 1
        u = r.random()
        if u < f.late:
            self._push(t + f.late_by, replace(ev, emit_time=t + f.late_by, is_late=True))
            entry = None
        else:
            entry = self._push(t, ev)
            if u < f.late + f.duplicate:
                emit = t + r.uniform(0.01, f.duplicate_within)
                self._push(emit, replace(ev, emit_time=emit, is_duplicate=True))
                entry = None  # a swap could move the original behind its copy
        if f.invalid and r.random() < f.invalid:
            kind = r.choice(_invalid_kinds_for(ev))
            new_id = f"evt_{r.getrandbits(64):016x}"
            bad = _corrupt(ev, kind, r, new_id)
            typ = f"{ev.family}.teleported" if kind == "unknown_type" else ev.type
            self._push(t, replace(ev, value=bad, type=typ, id=new_id, is_invalid=True, invalid_kind=kind))
        if f.out_of_order and entry is not None:
            prev = self.last.get(ev.key)
            if prev is not None and prev[3] and prev[2].time < t and t - prev[2].time <= f.out_of_order_within:
                self.n_with_pred += 1
                # only events with a recent predecessor can be swapped: scale up to hit the fraction
                if r.random() < f.out_of_order * self.n / self.n_with_pred:
                    prev[3] = False
                    self._push(t, replace(prev[2], emit_time=t, is_out_of_order=True))
                    entry = None  # neither of the pair is swapped again
            self.last[ev.key] = entry

    def flush(self) -> Iterator[GeneratedEvent]:
        yield from self._release(math.inf)


def apply_faults(clean: Iterable[GeneratedEvent], faults: Faults | None, seed: int) -> Iterator[GeneratedEvent]:
    """Clean events in event-time order -> the emitted log with faults applied."""
    if faults is None or not faults.any:
        yield from clean
        return
    inj = _FaultInjector(faults, seed)
    for ev in clean:
        yield from inj.feed(ev)
    yield from inj.flush()
