"""The expiry index finds exactly the keys whose retention time is before a bucket-aligned cutoff,
one entry per key however often it moves."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.engine.expiry import Expiry

G = 60


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcdefgh"), st.one_of(st.none(), st.floats(0, 3600))), max_size=60),
       st.integers(0, 60))
def test_due_keys_are_exactly_those_before_the_cutoff(moves, cutoff_bucket):
    expiry, latest = Expiry(G), {}
    for key, until in moves:
        expiry.schedule(0, key, until)
        latest[key] = until
    cutoff = cutoff_bucket * G
    due = expiry.due(0, cutoff, budget=1000)
    assert sorted(due) == sorted(k for k, u in latest.items() if u is not None and u < cutoff)
    assert len(expiry) == sum(1 for u in latest.values() if u is not None) - len(due)
    assert expiry.due(0, cutoff, budget=1000) == []  # taken out


def test_budget_and_partitions():
    expiry = Expiry(G)
    for i in range(10):
        expiry.schedule(i % 2, f"k{i}", 10.0 * i)
    first = expiry.due(0, 120, budget=3)
    assert len(first) == 3 and all(int(k[1:]) % 2 == 0 for k in first)
    rest = expiry.due(0, 120, budget=10)
    assert sorted(first + rest) == ["k0", "k2", "k4", "k6", "k8"]
    assert sorted(expiry.due(1, 60, budget=10)) == ["k1", "k3", "k5"]  # 70 and 90 are not due


def test_one_entry_per_key_however_often_it_moves():
    expiry = Expiry(G)
    rng = random.Random(3)
    for _ in range(10_000):
        expiry.schedule(0, f"u{rng.randrange(50)}", rng.uniform(0, 86400))
    assert len(expiry) == 50
    assert sum(len(b) for b in expiry._keys[0].values()) == 50
