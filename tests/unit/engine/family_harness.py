"""Comparison helpers shared by the family core tests (index output vs reference)."""

import math


def samples(index, now):
    """Non-zero samples of an index's collect(now): {(name, frozenset(labels)): value}."""
    out = {}
    for fam in index.collect(now):
        for s in fam.samples:
            if s.value:
                out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def lab(**kw):
    return frozenset(kw.items())


def assert_same(got, exp):
    assert set(got) == set(exp), (sorted(set(got) - set(exp), key=str)[:5], sorted(set(exp) - set(got), key=str)[:5])
    for k, v in exp.items():
        assert math.isclose(got[k], v, rel_tol=1e-9, abs_tol=1e-6), (k, got[k], v)
