"""Synthetic customer-success traffic: coherent ticket, activity, subscription and survey lifecycles.

Functional core: everything here is pure and deterministic. A seeded ``random.Random`` drives a
small discrete-event simulation (one Python generator per lifecycle, merged through a heap in
event-time order), so the same seed and arguments always give the same bytes. No wall clock is
read except by ``generate_live`` through the clock the caller passes.

Emission order is the order of the returned list/iterator. Faults (duplicates, out-of-order,
late and invalid events) are applied afterwards by a streaming injector with its own RNG, so the
clean stream of a seed is the same with or without faults.

One concern per module: ``message`` (GeneratedEvent, the envelope), ``world`` (catalogue, draw
tables, Profile, accounts), ``simulation`` (the event loop and rate control), one module of
lifecycles per family (``tickets``, ``activity``, ``subscriptions``, ``surveys``), ``faults``.
This module holds the entry points. See docs/generator.md.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable, Iterable, Iterator

from .faults import INVALID_KINDS, Faults, apply_faults
from .message import FAMILIES, SOURCES, SUBJECT_FIELDS, GeneratedEvent, rfc3339
from .simulation import Simulation
from .world import DEMO_RATE, FEATURES, PLANS, PRICES, SAAS_USERS_PER_RATE, TEAMS, Profile

__all__ = [
    "DEMO_RATE",
    "FAMILIES",
    "FEATURES",
    "INVALID_KINDS",
    "PLANS",
    "PRICES",
    "SAAS_USERS_PER_RATE",
    "SOURCES",
    "SUBJECT_FIELDS",
    "TEAMS",
    "Faults",
    "GeneratedEvent",
    "Profile",
    "apply_faults",
    "generate",
    "generate_live",
    "iter_generate",
    "rfc3339",
    "summarize",
]


def iter_generate(
    seed: int,
    start: float,
    duration_seconds: float,
    rate: float,
    *,
    faults: Faults | None = None,
    profile: Profile | None = None,
) -> Iterator[GeneratedEvent]:
    """Lazy form of :func:`generate`."""
    sim = Simulation(seed, start, rate, profile or Profile())
    return apply_faults(sim.events(until=start + duration_seconds), faults, seed)


def generate(
    seed: int,
    start: float,
    duration_seconds: float,
    rate: float,
    *,
    faults: Faults | None = None,
    profile: Profile | None = None,
) -> list[GeneratedEvent]:
    """The log of ``duration_seconds`` of event time from ``start`` at about ``rate`` events/s.

    The world starts at ``start`` (no lifecycle is in flight before it); lifecycles still open at
    the end are cut off (unsolved tickets, running subscriptions). Late and duplicate copies whose
    emission falls after the end are still included, at the tail.
    """
    return list(iter_generate(seed, start, duration_seconds, rate, faults=faults, profile=profile))


def generate_live(
    seed: int,
    rate: float,
    *,
    clock: Callable[[], float] = _time.time,
    faults: Faults | None = None,
    profile: Profile | None = None,
) -> Iterator[GeneratedEvent]:
    """Endless log starting at ``clock()``. The caller sends each event when ``clock()`` reaches
    its ``emit_time``; then event time = now (minus the deliberate lateness of late events)."""
    sim = Simulation(seed, clock(), rate, profile or Profile())
    return apply_faults(sim.events(), faults, seed)


def summarize(events: Iterable[GeneratedEvent]) -> dict[str, int]:
    """Counts by family and by fault flag (for progress lines and tests)."""
    out: dict[str, int] = {"total": 0, **{f: 0 for f in FAMILIES}}
    out.update(duplicate=0, out_of_order=0, late=0, invalid=0)
    for ev in events:
        out["total"] += 1
        out[ev.family] += 1
        out["duplicate"] += ev.is_duplicate
        out["out_of_order"] += ev.is_out_of_order
        out["late"] += ev.is_late
        out["invalid"] += ev.is_invalid
    return out
