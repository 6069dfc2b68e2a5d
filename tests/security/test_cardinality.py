"""Cardinality attack: floods of distinct team / plan / currency / feature / channel values
cannot grow the exposed series beyond what the label caps allow.

Unit: LabelGuard under floods (and hypothesis), then the family cores with a flood through
them. Integration: a real worker, /metrics counted before and after two waves of thousands of
distinct values; the second wave, arriving once the caps are full, adds no labelled series.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections import defaultdict
from itertools import product

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.config import Settings
from stream_app.engine.labels import OTHER, LabelGuard, LabelRule
from stream_app.engine.usage.config import LIFECYCLE_STATUSES
from stream_app.vocabulary import CHANNELS, CLIENTS, PRIORITIES, TICKET_STATUSES

from tests.support.engine import Pipeline
from tests.support.events import enc, event
from tests.support.worker import WorkerProcess, settings_of, total, wait_for, worker_env

CAPS = {"team": 6, "plan": 6, "currency": 5, "feature": 12}
ALLOWED = {"channel": set(CHANNELS), "priority": set(PRIORITIES), "status": set(TICKET_STATUSES) | set(LIFECYCLE_STATUSES), "client": set(CLIENTS)}
GUARDED = set(CAPS) | set(ALLOWED)
MARK = "flood"
# Series whose label values come from configuration, not from events: one series each.
CONFIGURED = {"stream_app_revenue_reporting_currency_info"}


def _settings(**kw) -> Settings:
    return Settings(**{f"label_{k}_cap": v for k, v in CAPS.items()}, **kw)


def _currency(n: int) -> str:
    """Distinct ISO-shaped codes: base 26 of n, from 'JAA' up."""
    n += 9 * 26 * 26
    return "".join(chr(65 + d) for d in (n // 676 % 26, n // 26 % 26, n % 26))


# ----------------------------------------------------------------------------- LabelGuard


def test_capped_label_keeps_the_first_values_and_folds_the_rest():
    guard = LabelGuard.with_overrides(team=LabelRule(cap=10))
    out = [guard.value("team", f"team-{i}") for i in range(100_000)]
    assert out[:10] == [f"team-{i}" for i in range(10)]
    assert set(out[10:]) == {OTHER}
    assert guard.kept("team") == {f"team-{i}" for i in range(10)}
    # Decisions never change: a kept value stays kept, a folded one stays folded.
    assert guard.value("team", "team-3") == "team-3" and guard.value("team", "team-99999") == OTHER


def test_allow_lists_admit_nothing_else():
    guard = LabelGuard()
    assert {guard.value("channel", f"pigeon-{i}") for i in range(10_000)} == {OTHER}
    assert {guard.value("channel", c) for c in CHANNELS} == set(CHANNELS)
    assert guard.kept("channel") == set(CHANNELS)


def test_empty_and_missing_values_are_other_and_use_no_slot():
    guard = LabelGuard.with_overrides(plan=LabelRule(cap=2))
    for raw in (None, "", "   ", "\t\n"):
        assert guard.value("plan", raw) == OTHER
    assert guard.kept("plan") == frozenset()
    assert guard.value("plan", "  growth ") == "growth"  # stripped: one value, not two


def test_labels_without_a_rule_are_refused():
    with pytest.raises(KeyError):
        LabelGuard().value("user_id", "u-1")


def test_tuple_memo_stays_bounded_under_a_flood():
    guard = LabelGuard()
    names = ("team", "channel", "priority")
    for i in range(120_000):
        assert guard.labels(names, (f"t{i}", "email", "high"))[1:] == ("email", "high")
    assert len(guard._tuple_cache) <= 100_000
    assert len(guard.kept("team")) == guard.rules["team"].cap


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.integers(0, 8), st.lists(st.one_of(st.none(), st.text(max_size=6)), max_size=300))
def test_any_value_stream_yields_at_most_cap_plus_one_values(cap, raws):
    guard = LabelGuard.with_overrides(team=LabelRule(cap=cap))
    first = {}
    for raw in raws:
        got = guard.value("team", raw)
        assert got == first.setdefault(raw, got)  # stable per raw value
        assert got == OTHER or got == raw.strip()
    assert len({first[r] for r in first} - {OTHER}) <= cap


# ----------------------------------------------------------------------------- through the cores


def _flood_events(wave: int, n: int, now: float) -> list[tuple[str, bytes, bytes]]:
    """(family, key, value): distinct teams, plans, currencies, features and (invalid) channels."""
    out = []
    combos = list(product(sorted(CHANNELS), sorted(PRIORITIES)))
    for i in range(n):
        channel, priority = combos[i % len(combos)]
        t, a, u = f"{MARK}-w{wave}-T{i}", f"{MARK}-w{wave}-A{i}", f"{MARK}-w{wave}-U{i}"
        ts = now - 120 + i * 0.001
        out += [
            ("ticket", t.encode(), enc(event("ticket.created", subject=t, ts=ts, team=f"{MARK}-team-w{wave}-{i}",
                                             channel=channel, priority=priority))),
            ("subscription", a.encode(), enc(event("subscription.started", subject=a, ts=ts,
                                                   plan=f"{MARK}-plan-w{wave}-{i}", currency=_currency(wave * n + i),
                                                   interval=("month", "year")[i % 2]))),
            ("activity", u.encode(), enc(event("activity.feature_used", subject=u, ts=ts,
                                               feature=f"{MARK}-feature-w{wave}-{i}"))),
            ("ticket", f"{t}c".encode(), enc(event("ticket.created", subject=f"{t}c", ts=ts, channel=f"{MARK}-ch-{i}"))),
        ]  # fmt: skip
    return out


def _series(samples) -> dict[str, set[tuple]]:
    """metric family name -> set of label tuples (sorted items)."""
    out: dict[str, set[tuple]] = defaultdict(set)
    for name, labels in samples:
        out[name].add(labels)
    return out


def check_bounded(series: dict[str, set[tuple]], flood_values: set[str]) -> tuple[int, int]:
    """Assert the caps' arithmetic; returns (series, bound)."""
    domains: dict[str, set[str]] = defaultdict(set)
    for name, labelsets in series.items():
        if name in CONFIGURED:
            assert len(labelsets) == 1, name
            continue
        for labels in labelsets:
            for k, v in labels:
                domains[k].add(v)
    for label, values in domains.items():
        if label in CAPS:
            assert len(values - {OTHER}) <= CAPS[label], (label, sorted(values))
        elif label in ALLOWED:
            assert values <= ALLOWED[label] | {OTHER}, (label, values - ALLOWED[label])
        else:
            leaked = {v for v in values if MARK in v or v in flood_values}
            assert not leaked, f"flood values in unguarded label {label!r}: {sorted(leaked)[:5]}"

    def size(label: str) -> int:
        if label in CAPS:
            return CAPS[label] + 1
        if label in ALLOWED:
            return len(ALLOWED[label]) + 1
        return len(domains[label])

    total = bound = 0
    for name, labelsets in series.items():
        names = {k for labels in labelsets for k, _ in labels}
        limit = 1 if name in CONFIGURED else math.prod(size(n) for n in names)
        assert len(labelsets) <= limit, (name, len(labelsets), limit)
        total += len(labelsets)
        bound += limit
    return total, bound


def _guarded_values(series: dict[str, set[tuple]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for name, labelsets in series.items():
        for labels in labelsets:
            for k, v in labels:
                if k in CAPS and name not in CONFIGURED:
                    out[k].add(v)
    return out


def test_flood_through_the_metric_cores_is_bounded_by_the_caps():
    now = time.time()
    pipe = Pipeline(_settings(), now=now)
    flood_values: set[str] = set()

    def run(wave: int) -> dict[str, set[tuple]]:
        rejected = 0
        for family, _, raw in _flood_events(wave, 800, now):
            try:
                pipe.ingest(raw, family)
            except Exception as exc:  # noqa: BLE001 - only the channel flood may be rejected
                assert getattr(exc, "reason", None) == "invalid", exc
                rejected += 1
        assert rejected == 800
        samples = {}
        for family in pipe.families:
            samples.update(pipe.samples(family))
        return _series(samples)

    first = run(1)
    second = run(2)
    flood_values |= {_currency(wave * 800 + i) for wave in (1, 2) for i in range(800)}
    assert _guarded_values(first) == _guarded_values(second)
    labelled = lambda s: {(n, ls) for n, lss in s.items() for ls in lss if any(k in GUARDED for k, _ in ls)}  # noqa: E731
    assert labelled(second) <= labelled(first), "the second wave added labelled series"
    total, bound = check_bounded(second, flood_values)
    for label, cap in CAPS.items():
        assert len(_guarded_values(second)[label] - {OTHER}) == cap, label  # caps filled, then 'other'
    print(f"\ncores: 2 x 800 distinct values per label -> {total} series (caps allow at most {bound})")


# ----------------------------------------------------------------------------- integration


@pytest.mark.integration
def test_flood_of_distinct_label_values_cannot_grow_series_beyond_the_caps(stack, tmp_path):
    from stream_app.tools.generator import generate
    from stream_app.tools.producer import EventProducer, produce_log

    app_id = f"card-{uuid.uuid4().hex[:8]}"
    env = worker_env(stack, app_id, store="memory", **{f"label_{k}_cap": v for k, v in CAPS.items()})
    settings = settings_of(env)
    topics = settings.input_topics()
    now = time.time()
    baseline = generate(seed=31, start=now - 7200, duration_seconds=7000, rate=0.1)
    worker = WorkerProcess(env, tmp_path).start()
    sent = 0

    def scrape() -> dict[str, set[tuple]]:
        return _series((s, ls) for s, values in worker.samples().items() for ls in values)

    def settle(n: int) -> None:
        wait_for(lambda: total(worker.samples(), "stream_app_events_consumed_total") >= n,
                 timeout=180, interval=1.0, message=f"{n} consumed")  # fmt: skip

    async def send(records) -> None:
        async with EventProducer(stack.bootstrap, topics) as producer:
            for family, key, value in records:
                await producer.send_raw(topics[family], key, value)

    try:
        before_empty = scrape()
        asyncio.run(produce_log(stack.bootstrap, topics, baseline))
        sent += len(baseline)
        settle(sent)
        before = scrape()
        counts = []
        waves = {}
        flood_values: set[str] = set()
        for wave in (1, 2):
            records = _flood_events(wave, 750, time.time())
            asyncio.run(send(records))
            sent += len(records)
            settle(sent)
            waves[wave] = scrape()
            counts.append(sum(map(len, waves[wave].values())))
            flood_values |= {_currency(wave * 750 + i) for i in range(750)}
        samples = worker.samples()
        assert total(samples, "stream_app_events_invalid_total", reason="invalid") == 2 * 750  # channel flood
        n = lambda s: sum(map(len, s.values()))  # noqa: E731
        print(f"\nseries: {n(before_empty)} at start, {n(before)} after {len(baseline)} generated events, "
              f"{counts[0]} after wave 1, {counts[1]} after wave 2 (each wave: 750 distinct teams, plans, "
              f"currencies, features and channels)")  # fmt: skip
        for wave in (1, 2):
            got, bound = check_bounded(waves[wave], flood_values)
            print(f"wave {wave}: {got} series <= {bound} allowed by the caps")
        assert _guarded_values(waves[2]) == _guarded_values(waves[1])
        for label, cap in CAPS.items():
            values = _guarded_values(waves[1])[label]
            assert len(values - {OTHER}) == cap and OTHER in values, (label, values)
        labelled = lambda s: {(m, ls) for m, lss in s.items() for ls in lss if any(k in GUARDED for k, _ in ls)}  # noqa: E731
        assert labelled(waves[2]) <= labelled(waves[1]), sorted(labelled(waves[2]) - labelled(waves[1]))[:5]
    finally:
        worker.stop()
