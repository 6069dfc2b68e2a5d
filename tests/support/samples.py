"""An index read at one instant as the tests compare it: {(sample name, labels): value}."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

Samples = dict[tuple[str, frozenset], float]

# Contributions refused as too late are counted as they arrive: an event counter, not derived from
# the states, so it depends on arrival order and an index rebuilt from the states starts it at 0.
DROPPED = "_window_dropped_contributions_total"


def samples(index: Any, now: float, *, zeros: bool = False) -> Samples:
    """The samples of ``index.collect(now)``; zero-valued ones only with ``zeros`` (a series read
    as 0 and a missing one mean the same to a reference, not to a cardinality check)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in index.collect(now)
        for s in family.samples
        if zeros or s.value
    }


def lab(**labels: str) -> frozenset:
    """The labels part of a sample key."""
    return frozenset(labels.items())


def state_derived(got: Mapping[tuple[str, frozenset], float]) -> Samples:
    """Every sample but the too-late counter (see ``DROPPED``)."""
    return {k: v for k, v in got.items() if not k[0].endswith(DROPPED)}


def assert_same(got: Mapping, exp: Mapping, *, abs_tol: float = 1e-9) -> None:
    """The same series, and every value equal to ``exp``'s within float rounding."""
    assert set(got) == set(exp), (sorted(set(got) - set(exp), key=str)[:5], sorted(set(exp) - set(got), key=str)[:5])
    for k, v in exp.items():
        assert math.isclose(got[k], v, rel_tol=1e-9, abs_tol=abs_tol), (k, got[k], v)


def exposition(index: Any, now: float) -> str:
    """The Prometheus text format of ``index`` read at ``now``, as /metrics renders it."""

    class At:
        def collect(self):
            return index.collect(now)

    registry = CollectorRegistry()
    registry.register(At())
    return generate_latest(registry).decode()
