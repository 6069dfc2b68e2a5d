"""Bad input: every malformed, hostile or conflicting event is rejected with a reason or
counted as a duplicate, never crashes the decoder, the metric cores or the worker, and never
crowds out good events.

Unit level (no servers): hypothesis over ``decode_event`` and over the whole ingest path
(decode -> entity state -> derived index, as ``FamilyProcessor.handle`` does it), plus one test
per kind of bad input. Integration: a real worker fed ~5k bad events mixed into a generated log;
every bad one is dead-lettered and counted by reason, the good ones equal the batch reference.

Decision on duplicate ids with different payloads: the first applied wins; the later copy is a
duplicate (``stream_app_events_duplicate_total``), not a dead letter. docs/security.md says why.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_app.events import EVENT_TYPES, SUBJECT_FIELDS, EventRejected, decode_event, family_of
from stream_app.events.decode import REASONS
from tests.support.engine import Pipeline
from tests.support.events import NOW, enc, event, iso
from tests.support.references import assert_equals_reference, reference_events, too_late_events
from tests.support.worker import WorkerProcess, caught_up, settings_of, total, wait_for, worker_env

# Planted in values (never in keys): rejection details must not repeat input values.
SENTINEL = "PII-7f3a-jane.doe@example.com"
# Reasons the worker adds to decode_event's: the Kafka key is not the subject; the core failed.
WORKER_REASONS = {"key_mismatch", "processing_error"}


def reject_reason(raw: bytes, **kw) -> str:
    with pytest.raises(EventRejected) as info:
        decode_event(raw, now=NOW, **kw)
    exc = info.value
    assert exc.reason in REASONS
    assert exc.detail and SENTINEL not in exc.detail and "\n" not in exc.detail
    # Raised outside the except block: no ValidationError (which quotes input) chained on.
    assert exc.__context__ is None and exc.__cause__ is None
    return exc.reason


# ----------------------------------------------------------------------------- strategies

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.just(SENTINEL),
    st.sampled_from(["", "EUR", "month", "agent", "high", "web", "1", "true"]),
)
_json = st.recursive(
    _scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3), max_leaves=6
)
_offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
_times = st.one_of(
    # recent, in any offset
    st.tuples(st.floats(-30 * 86400, 3600), _offsets).map(lambda a: iso(NOW + a[0], a[1])),
    # anywhere in years 1..9999, any offset (the edges do not fit UTC)
    st.tuples(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)), _offsets).map(
        lambda a: a[0].replace(tzinfo=a[1]).isoformat()
    ),
    st.datetimes().map(datetime.isoformat),  # naive
    st.text(max_size=30),
    st.integers(),
)
_numbers = st.one_of(st.integers(-(2**63), 2**63), st.floats(min_value=0, max_value=1e12), st.floats(allow_nan=False))


@st.composite
def mutated_event(draw, family: str | None = None) -> tuple[str, bytes]:
    """(family, bytes): a valid example with 0..3 random mutations, subjects from a small pool
    so that a sequence builds up entity state."""
    event_type = draw(st.sampled_from(sorted(t for t in EVENT_TYPES if family in (None, family_of(t)))))
    fam = family_of(event_type)
    ev = event(event_type, id=draw(st.sampled_from(["e1", "e2", "e3"]) | st.text(min_size=1, max_size=20)))
    ev["time"] = draw(st.one_of(_times, st.floats(0, 7 * 86400).map(lambda a: iso(NOW - a))))
    ev["subject"] = ev["data"][SUBJECT_FIELDS[fam]] = draw(st.sampled_from(["s1", "s2"]))
    for _ in range(draw(st.integers(0, 3))):
        data = ev["data"] if isinstance(ev.get("data"), dict) else {}
        kind = draw(st.integers(0, 8))
        if kind == 0 and data:
            data.pop(draw(st.sampled_from(sorted(data))))  # missing field
        elif kind == 1:
            ev.pop(draw(st.sampled_from(sorted(ev))), None)  # missing envelope attribute
        elif kind == 2 and data:
            data[draw(st.sampled_from(sorted(data)))] = draw(_json)  # wrong type / value
        elif kind == 3:
            ev[draw(st.sampled_from(sorted(ev)))] = draw(_json)
        elif kind == 4:
            ev["schemaversion"] = draw(st.integers(-3, 2**40))
        elif kind == 5:
            ev["type"] = draw(st.sampled_from(sorted(EVENT_TYPES)) | st.text(max_size=20))
        elif kind == 6 and data:
            data[draw(st.sampled_from(sorted(data)))] = draw(_numbers)  # money, scores, durations
        elif kind == 7:
            data[draw(st.text(min_size=1, max_size=10))] = SENTINEL  # unknown field
        elif kind == 8:
            for k in ("trial_ends_at", "due_at", "effective_at"):
                if k in data:
                    data[k] = draw(_times)
    return fam, enc(ev)


# ----------------------------------------------------------------------------- properties

_FAST = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@_FAST
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_escape_as_another_exception(raw):
    try:
        decode_event(raw, now=NOW)
    except EventRejected as exc:
        assert exc.reason in REASONS


@_FAST
@given(_json, st.sampled_from(["ticket", "activity", "subscription", "survey", None]))
def test_arbitrary_json_is_rejected_with_a_reason(value, family):
    if isinstance(value, dict) and SENTINEL in json.dumps(list(value)):
        return  # keys may be echoed (field paths); the sentinel is for values
    try:
        decode_event(enc(value), expected_family=family, now=NOW)
    except EventRejected as exc:
        assert exc.reason in REASONS and SENTINEL not in exc.detail


@_FAST
@given(mutated_event())
def test_mutated_events_decode_or_are_rejected_without_echoing_values(item):
    family, raw = item
    try:
        ev = decode_event(raw, expected_family=family, now=NOW)
    except EventRejected as exc:
        assert exc.reason in REASONS
        assert SENTINEL not in exc.detail and SENTINEL not in str(exc)
        assert exc.__context__ is None
        return
    # Accepted: re-encodes to bytes the decoder accepts as the same event.
    assert decode_event(ev.model_dump_json().encode(), now=NOW) == ev


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(st.sampled_from(sorted(SUBJECT_FIELDS)).flatmap(lambda f: st.lists(mutated_event(f), min_size=1, max_size=8)))
def test_any_sequence_through_the_ingest_path_is_safe_and_drift_free(sequence):
    """Whatever mix of good, bad, duplicate and conflicting events arrives for a few entities:
    only EventRejected is raised, stored states survive their JSON round trip, and the
    incrementally maintained index equals one rebuilt from the final states (no drift)."""
    pipe = Pipeline()
    outcomes = Counter()
    for family, raw in sequence:
        try:
            outcomes[pipe.ingest(raw, family)] += 1
        except EventRejected as exc:
            assert exc.reason in REASONS
            outcomes[exc.reason] += 1
    family = sequence[0][0]
    incremental, rebuilt = pipe.samples(family), pipe.rebuilt(family)
    drift = [
        (k, incremental.get(k), rebuilt.get(k))
        for k in set(incremental) | set(rebuilt)
        # Contributions dropped as too late are counted as they arrive: an event counter, not
        # derived from the states, so a rebuilt index starts it at 0.
        if not k[0].endswith("_window_dropped_contributions_total")
        and not math.isclose(incremental.get(k, 0.0), rebuilt.get(k, 0.0), rel_tol=1e-9, abs_tol=1e-6)
    ]
    assert not drift, drift[:3]


# ----------------------------------------------------------------------------- one test per kind

_BAD: list[tuple[str, bytes, dict, str]] = [
    # (name, raw bytes, decode kwargs, expected reason)
    ("empty message", b"", {}, "malformed_json"),
    ("whitespace", b"  \n ", {}, "malformed_json"),
    ("truncated JSON", enc(event("ticket.created"))[:40], {}, "malformed_json"),
    ("trailing garbage", enc(event("ticket.created")) + b"}", {}, "malformed_json"),
    ("NaN literal", enc(event("ticket.replied")).replace(b'"time_spent_seconds": 312.5', b"\"time_spent_seconds\": NaN"), {}, "invalid"),
    ("deep nesting within the size limit", b"[" * 30000 + b"]" * 30000, {}, "malformed_json"),
    ("lone surrogate escape", enc(event("ticket.created")).replace(b'"high"', b'"\\ud800"'), {}, "malformed_json"),
    ("latin-1 bytes", enc(event("ticket.created", team="Stra\u00dfe")).replace(b"\\u00df", b"\xdf"), {}, "not_utf8"),
    ("UTF-16", json.dumps(event("ticket.created")).encode("utf-16"), {}, "not_utf8"),
    ("overlong UTF-8", b'{"type": "\xc0\xaf"}', {}, "not_utf8"),
    ("array", b"[1, 2, 3]", {}, "not_an_object"),
    ("null", b"null", {}, "not_an_object"),
    ("string", b'"ticket.created"', {}, "not_an_object"),
    ("type missing", enc({k: v for k, v in event("ticket.created").items() if k != "type"}), {}, "unknown_type"),
    ("type unknown", enc({**event("ticket.created"), "type": "ticket.teleported"}), {}, "unknown_type"),
    ("type not a string", enc({**event("ticket.created"), "type": 42}), {}, "unknown_type"),
    ("type with personal data", enc({**event("ticket.created"), "type": SENTINEL}), {}, "unknown_type"),
    ("newer schemaversion", enc({**event("ticket.created"), "schemaversion": 2}), {}, "unsupported_version"),
    ("huge schemaversion", enc({**event("ticket.created"), "schemaversion": 10**30}), {}, "unsupported_version"),
    ("schemaversion 0", enc({**event("ticket.created"), "schemaversion": 0}), {}, "invalid"),
    ("schemaversion string", enc({**event("ticket.created"), "schemaversion": "1"}), {}, "invalid"),
    ("wrong topic", enc(event("survey.nps")), {"expected_family": "ticket"}, "wrong_topic"),
    ("subject mismatch", enc({**event("ticket.created"), "subject": "someone-else"}), {}, "subject_mismatch"),
    ("missing data field", enc(event("ticket.created", channel=None)), {}, "invalid"),
    ("missing id", enc({k: v for k, v in event("ticket.created").items() if k != "id"}), {}, "invalid"),
    ("empty id", enc(event("ticket.created", id="x") | {"id": ""}), {}, "invalid"),
    ("id too long", enc(event("ticket.created") | {"id": "x" * 129}), {}, "invalid"),
    ("enum not in list", enc(event("ticket.created", priority="whenever")), {}, "invalid"),
    ("enum wrong case", enc(event("ticket.created", channel="EMAIL")), {}, "invalid"),
    ("number as string", enc(event("subscription.started", amount_minor="4900")), {}, "invalid"),
    ("float amount", enc(event("subscription.started", amount_minor=49.0)), {}, "invalid"),
    ("bool as int", enc(event("survey.nps", score=True)), {}, "invalid"),
    ("unknown data field", enc(event("ticket.created", email=SENTINEL)), {}, "invalid"),
    ("data not an object", enc({**event("ticket.created"), "data": [SENTINEL]}), {}, "invalid"),
    ("negative money", enc(event("subscription.payment", amount_minor=-5)), {}, "invalid"),
    ("negative quantity", enc(event("subscription.started", quantity=0)), {}, "invalid"),
    ("currency lowercase", enc(event("subscription.payment", currency="eur")), {}, "invalid"),
    ("negative time spent", enc(event("ticket.solved", time_spent_seconds=-1.0)), {}, "invalid"),
    ("nps above 10", enc(event("survey.nps", score=11)), {}, "invalid"),
    ("nps below 0", enc(event("survey.nps", score=-1)), {}, "invalid"),
    ("csat above its scale", enc(event("survey.csat", score=6)), {}, "invalid"),
    ("ces below its scale", enc(event("survey.ces", score=0)), {}, "invalid"),
    ("inverted scale", enc(event("survey.csat", scale_min=5, scale_max=1, score=3)), {}, "invalid"),
    ("empty scale", enc(event("survey.csat", scale_min=3, scale_max=3, score=3)), {}, "invalid"),
    ("comment too long", enc(event("survey.nps", comment=SENTINEL * 100)), {}, "invalid"),
    ("naive time", enc(event("ticket.created") | {"time": "2026-01-01T10:00:00"}), {}, "invalid"),
    ("epoch number time", enc(event("ticket.created") | {"time": 1767261600}), {}, "invalid"),
    ("time not a date", enc(event("ticket.created") | {"time": SENTINEL}), {}, "invalid"),
    ("year 1 east of UTC", enc(event("ticket.created") | {"time": "0001-01-01T00:00:00+14:00"}), {}, "invalid"),
    ("year 9999 west of UTC", enc(event("ticket.created") | {"time": "9999-12-31T23:59:59-14:00"}), {}, "invalid"),
    ("year 10000", enc(event("ticket.created") | {"time": "10000-01-01T00:00:00Z"}), {}, "invalid"),
    ("data time out of UTC range", enc(event("subscription.renewal_due", due_at="0001-01-01T00:00:00+01:00")), {}, "invalid"),
    ("tomorrow", enc(event("ticket.created", ts=NOW + 86400)), {}, "future_time"),
    ("year 9999", enc(event("ticket.created") | {"time": "9999-12-31T23:59:59Z"}), {}, "future_time"),
    ("just beyond the skew", enc(event("ticket.created", ts=NOW + 301)), {"max_future_skew": 300.0}, "future_time"),
    ("oversized", enc(event("survey.nps", comment="x" * 2000)) + b" " * 70_000, {}, "too_large"),
    ("oversized garbage", b"\xff" * 65537, {}, "too_large"),
    ("oversized under a small limit", enc(event("ticket.created")), {"max_bytes": 256}, "too_large"),
]


@pytest.mark.parametrize("name,raw,kw,reason", _BAD, ids=[b[0] for b in _BAD])
def test_each_kind_of_bad_input_has_its_reason(name, raw, kw, reason):
    assert reject_reason(raw, **kw) == reason


def test_edge_values_that_are_valid_decode():
    """Not everything odd is bad: the far past decodes (the worker counts it too late), as do
    zero amounts, the scale edges and skew just inside the limit."""
    ok = [
        event("ticket.created") | {"time": "1970-01-01T00:00:00Z"},
        event("ticket.created") | {"time": "0001-01-01T00:00:00Z"},
        event("subscription.payment", amount_minor=0),
        event("subscription.payment", amount_minor=2**53 - 1),
        event("survey.nps", score=0),
        event("survey.nps", score=10),
        event("survey.csat", score=1),
        event("survey.ces", score=7),
        event("survey.csat", scale_min=-100, scale_max=100, score=-100),
        event("ticket.created", ts=NOW + 299),
        event("ticket.created", team="\u00e9quipe \u2603 \U0001f600"),
        event("ticket.created") | {"traceparent": "00-abc-01", "x-extension": {"nested": [1]}},
    ]
    for ev in ok:
        decode_event(enc(ev), now=NOW)


def test_amounts_beyond_float_range_fail_in_the_core_before_any_state_changes():
    """The contract bounds amounts below only (``int >= 0``). 10**400 decodes, and revenue math
    (floats) overflows while computing contributions: FamilyProcessor.handle computes those
    before writing the table, so the worker dead-letters the event as ``processing_error`` and
    the account's state is untouched (the flood test checks that through a real worker)."""
    pipe = Pipeline()
    good = event("subscription.started", subject="acct-big")
    assert pipe.ingest(enc(good), "subscription") == "applied"
    before = pipe.samples("subscription")
    state_before = pipe.states[("subscription", "acct-big")].to_dict()
    huge = event("subscription.plan_changed", subject="acct-big", ts=NOW - 10, amount_minor=10**400)  # after it
    with pytest.raises(OverflowError):
        pipe.ingest(enc(huge), "subscription")
    assert pipe.states[("subscription", "acct-big")].to_dict() == state_before
    assert pipe.samples("subscription") == before


# ----------------------------------------------------------------------------- conflicting duplicates


@pytest.mark.parametrize(
    "first,second,field",
    [
        (event("ticket.created", id="dup-1", subject="T-1", team="billing"),
         event("ticket.created", id="dup-1", subject="T-1", team="sales", priority="urgent"), "team"),
        (event("survey.nps", id="dup-2", subject="R-1", score=0),
         event("survey.nps", id="dup-2", subject="R-1", score=10, ts=NOW), "score"),
        (event("subscription.payment", id="dup-3", subject="A-1", amount_minor=100),
         event("subscription.payment", id="dup-3", subject="A-1", amount_minor=999_999), "amount_minor"),
        (event("activity.feature_used", id="dup-4", subject="U-1", feature="reports.export"),
         event("activity.feature_used", id="dup-4", subject="U-1", feature="admin.delete"), "feature"),
    ],
    ids=["ticket", "survey", "subscription", "activity"],
)  # fmt: skip
def test_same_id_different_payload_first_applied_wins(first, second, field):
    """A re-used id with a different payload is treated as a redelivery of the first: nothing in
    the state or the metrics changes, and the shell counts it as a duplicate."""
    family = family_of(first["type"])
    pipe = Pipeline()
    assert pipe.ingest(enc(first), family) == "applied"
    state = pipe.states[(family, first["subject"])].to_dict()
    samples = pipe.samples(family)
    assert pipe.ingest(enc(second), family) == "duplicate"
    assert pipe.states[(family, first["subject"])].to_dict() == state
    assert pipe.samples(family) == samples
    # The other way round the other payload wins: arrival order (Kafka order per key) decides.
    other = Pipeline()
    other.ingest(enc(second), family)
    assert other.ingest(enc(first), family) == "duplicate"
    assert other.samples(family) != samples or field == "amount_minor"


def test_same_id_on_another_entity_is_another_event():
    """Dedupe is per entity (the state remembers its own event ids): the same id on two tickets
    is applied to each; ids are unique per contract, so this only matters for broken producers."""
    pipe = Pipeline()
    assert pipe.ingest(enc(event("ticket.created", id="same", subject="T-a")), "ticket") == "applied"
    assert pipe.ingest(enc(event("ticket.created", id="same", subject="T-b")), "ticket") == "applied"


# ----------------------------------------------------------------------------- integration: the flood


def _bad_event(kind: str, i: int, now: float) -> tuple[str, bytes, bytes, str]:
    """(family, key, value, expected reason) of bad event number ``i`` of ``kind``."""
    tid, rid, aid = f"bad-T-{i}", f"bad-R-{i}", f"bad-A-{i}"
    ticket = event("ticket.created", subject=tid, ts=now - 60)
    key = tid.encode()
    if kind == "malformed_json":
        return "ticket", key, enc(ticket)[: 20 + i % 50], kind
    if kind == "not_utf8":
        return "ticket", key, enc(ticket).replace(b'"high"', b'"h\xffgh"'), kind
    if kind == "not_an_object":
        return "activity", key, [b"[]", b"null", b"42", b'"x"'][i % 4], kind
    if kind == "unknown_type":
        return "ticket", key, enc(ticket | {"type": f"ticket.flood{i}"}), kind
    if kind == "unsupported_version":
        return "ticket", key, enc(ticket | {"schemaversion": 2 + i}), kind
    if kind == "wrong_topic":
        return "ticket", rid.encode(), enc(event("survey.nps", subject=rid, ts=now - 60)), kind
    if kind == "subject_mismatch":
        return "ticket", key, enc(ticket | {"subject": f"other-{i}"}), kind
    if kind == "future_time":
        return "ticket", key, enc(ticket | {"time": iso(now + 86400 * (1 + i % 300))}), kind
    if kind == "too_large":
        return "survey", rid.encode(), enc(event("survey.nps", subject=rid)) + b" " * 70_000, kind
    if kind == "key_mismatch":
        return "ticket", b"not-the-subject", enc(ticket), kind
    if kind == "processing_error":
        return "subscription", aid.encode(), enc(event("subscription.started", subject=aid, ts=now - 60, amount_minor=10**400)), kind
    # "invalid": rotate through wrong types, missing fields, money, scores, times, unknown fields
    variants = [
        ("ticket", key, ticket | {"data": {**ticket["data"], "priority": 5}}),
        ("ticket", key, ticket | {"data": {k: v for k, v in ticket["data"].items() if k != "team"}}),
        ("ticket", key, ticket | {"data": {**ticket["data"], "channel": f"pigeon-{i}"}}),
        ("ticket", key, ticket | {"time": "2026-01-01T10:00:00"}),
        ("ticket", key, ticket | {"time": "0001-01-01T00:00:00+14:00"}),
        ("subscription", aid.encode(), event("subscription.payment", subject=aid, amount_minor=-(i + 1))),
        ("survey", rid.encode(), event("survey.nps", subject=rid, score=11 + i % 50)),
        ("survey", rid.encode(), event("survey.csat", subject=rid, score=6)),
        ("activity", f"bad-U-{i}".encode(), event("activity.feature_used", subject=f"bad-U-{i}", feature="Not A Key!")),
        ("ticket", key, ticket | {"data": {**ticket["data"], "email": SENTINEL}}),
    ]
    family, k, ev = variants[i % len(variants)]
    return family, k, enc(ev), "invalid"


_FLOOD_MIX = {
    "malformed_json": 600, "not_utf8": 400, "not_an_object": 400, "unknown_type": 500,
    "unsupported_version": 300, "wrong_topic": 400, "subject_mismatch": 400, "future_time": 400,
    "invalid": 1500, "too_large": 20, "key_mismatch": 300, "processing_error": 10,
}  # fmt: skip


def _conflicting_copies(good) -> list[tuple[int, object]]:
    """(position after which to send, copy): same id and key as an original, other payload."""
    from stream_app.tools.generator import GeneratedEvent

    change = {
        "ticket.created": lambda d: d | {"team": "conflict-team", "priority": "urgent"},
        "survey.nps": lambda d: d | {"score": 10 - d["score"]},
        "subscription.payment": lambda d: d | {"amount_minor": d["amount_minor"] + 12345},
        "activity.feature_used": lambda d: d | {"feature": "conflict.feature"},
    }
    out, per_type = [], Counter()
    for pos, ev in enumerate(good):
        if ev.type in change and per_type[ev.type] < 15 and not ev.is_invalid:
            per_type[ev.type] += 1
            body = json.loads(ev.value)
            body["data"] = change[ev.type](body["data"])
            out.append((pos, GeneratedEvent(family=ev.family, key=ev.key, value=enc(body), time=ev.time,
                                            emit_time=ev.emit_time, type=ev.type, id=ev.id, is_duplicate=True)))  # fmt: skip
    return out


@pytest.mark.integration
def test_flood_of_bad_events_does_not_starve_good_ones(stack, tmp_path):
    from stream_app.tools.generator import GeneratedEvent, generate
    from stream_app.tools.producer import produce_log

    app_id = f"flood-{uuid.uuid4().hex[:8]}"
    env = worker_env(stack, app_id)
    settings = settings_of(env)
    topics = settings.input_topics()
    stack.create_topics([*topics.values(), settings.topic_deadletter], partitions=settings.topic_partitions)
    now = time.time()

    good = generate(seed=7_2026, start=now - 43_200, duration_seconds=43_200 - 120, rate=0.05) + too_late_events(now)
    conflicts = _conflicting_copies(good)
    stream: list[GeneratedEvent] = list(good)
    for pos, copy in sorted(conflicts, key=lambda c: -c[0]):  # right behind its original
        stream.insert(pos + 1, copy)
    bad = [_bad_event(kind, i, now) for kind, n in _FLOOD_MIX.items() for i in range(n)]
    rng = random.Random(5)
    rng.shuffle(bad)
    # Bad messages at random places between the good ones (good keep their order).
    slots = sorted(rng.randrange(len(stream) + 1) for _ in bad)
    mixed: list[GeneratedEvent] = []
    it = iter(zip(slots, bad))
    nxt = next(it, None)
    for pos, ev in enumerate([*stream, None]):
        while nxt is not None and nxt[0] == pos:
            family, key, value, reason = nxt[1]
            mixed.append(GeneratedEvent(family=family, key=key.decode("utf-8", "replace"), value=value, time=now,
                                        emit_time=now, type=reason, id="", is_invalid=True))  # fmt: skip
            nxt = next(it, None)
        if ev is not None:
            mixed.append(ev)
    # key_mismatch needs bytes keys that differ from the subject: GeneratedEvent keys are str, fine.
    expected_reasons = Counter(reason for *_, reason in bad)

    worker = WorkerProcess(env, tmp_path).start()
    try:
        t0 = time.monotonic()
        asyncio.run(produce_log(stack.bootstrap, topics, mixed))
        wait_for(
            lambda: total(worker.samples(), "stream_app_events_consumed_total") >= len(mixed),
            timeout=240, interval=1.0, message=f"{len(mixed)} messages consumed",
        )  # fmt: skip
        elapsed = time.monotonic() - t0
        wait_for(lambda: caught_up(worker), timeout=120, interval=1.0, message="caught up")
        samples = worker.samples()
        assert worker.proc.poll() is None and worker.http_status("/healthz") == 200

        invalid = {r: total(samples, "stream_app_events_invalid_total", reason=r) for r in expected_reasons}
        dead = {r: total(samples, "stream_app_events_deadlettered_total", reason=r) for r in expected_reasons}
        print(f"\nflood: {len(good)} good + {len(conflicts)} conflicting copies + {len(bad)} bad messages "
              f"consumed in {elapsed:.1f}s ({len(mixed) / elapsed:.0f}/s); rejected by reason: {dict(invalid)}")  # fmt: skip
        assert invalid == dict(expected_reasons) == dead
        assert total(samples, "stream_app_events_invalid_total") == len(bad)
        processing_errors = expected_reasons["processing_error"]
        assert total(samples, "stream_app_events_valid_total") == len(good) + len(conflicts) + processing_errors

        # Conflicting copies: first applied wins, the copy counts as a duplicate.
        dup_by_topic = Counter(topics[c.family] for _, c in conflicts)
        for topic, n in dup_by_topic.items():
            got = total(samples, "stream_app_events_duplicate_total", topic=topic)
            # activity also counts events that add no new fact (e.g. repeated heartbeats)
            assert got >= n if topic == topics["activity"] else got == n, (topic, got, n)

        # The dead-letter topic holds every bad message once, with its reason.
        letters = asyncio.run(_read_deadletters(stack.bootstrap, settings.topic_deadletter, len(bad)))
        assert Counter(dict(m.headers)["x-reject-reason"].decode() for m in letters) == expected_reasons
        assert all(dict(m.headers)["x-reject-detail"] for m in letters)
        assert not any(SENTINEL.encode() in dict(m.headers)["x-reject-detail"] for m in letters)

        # The good events' metrics equal the batch reference (first copy of each id).
        assert assert_equals_reference([worker], reference_events(good, now), settings, stack.bootstrap) > 100
        log = worker.log_path.read_text(errors="replace")
        assert SENTINEL not in log
        # Only the processing errors log a traceback; no agent crashed.
        assert log.count("Traceback (most recent call last)") <= processing_errors
        assert "Crashed reason" not in log and "Agent crashed" not in log
    finally:
        worker.stop()


async def _read_deadletters(bootstrap: str, topic: str, expected: int, timeout: float = 60.0):
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    records = []
    try:
        deadline = time.monotonic() + timeout
        while len(records) < expected and time.monotonic() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                records.extend(msgs)
        for msgs in (await consumer.getmany(timeout_ms=1000)).values():  # nothing beyond: no double letters
            records.extend(msgs)
    finally:
        await consumer.stop()
    return records
