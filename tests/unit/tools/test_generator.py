"""The synthetic traffic generator: deterministic, valid per the contract, coherent lifecycles,
and faults that are what their flags say (checked with the real decoder)."""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import time
from collections import Counter

import orjson
import pytest

from stream_app.config import Settings
from stream_app.events import EVENT_TYPES, FAMILIES, EventRejected, decode_event
from stream_app.tools.generator import (
    INVALID_KINDS,
    Faults,
    GeneratedEvent,
    Profile,
    generate,
    generate_live,
    iter_generate,
    summarize,
)

START = 1_750_000_000.0  # 2025-06-15, safely in the past for the future-time check
FAULTS = Faults(duplicate=0.02, out_of_order=0.02, late=0.01, invalid=0.02, late_by=900.0)


@pytest.fixture(scope="module")
def clean() -> list[GeneratedEvent]:
    # fast profile: trials, renewals and closes happen within the 3 hours of event time
    return generate(11, START, 3 * 3600, 8.0, profile=Profile.fast())


@pytest.fixture(scope="module")
def faulty() -> list[GeneratedEvent]:
    return generate(11, START, 3 * 3600, 8.0, profile=Profile.fast(), faults=FAULTS)


@pytest.fixture(scope="module")
def decoded(clean):
    return [decode_event(ev.value, expected_family=ev.family) for ev in clean]


def _doc(ev: GeneratedEvent) -> dict:
    return orjson.loads(ev.value)


# --------------------------------------------------------------------------- determinism


def test_same_seed_and_args_give_identical_bytes():
    a = generate(5, START, 600, 20.0, faults=FAULTS)
    b = generate(5, START, 600, 20.0, faults=FAULTS)
    assert a == b
    assert [e.value for e in a] == [e.value for e in b]


def test_other_seed_gives_other_events():
    a = generate(5, START, 300, 20.0)
    b = generate(6, START, 300, 20.0)
    assert {e.id for e in a}.isdisjoint({e.id for e in b})
    assert {e.key for e in a} != {e.key for e in b}


def test_iterator_and_list_forms_agree():
    assert list(iter_generate(3, START, 300, 10.0, faults=FAULTS)) == generate(3, START, 300, 10.0, faults=FAULTS)


def test_faults_leave_the_clean_stream_unchanged(clean, faulty):
    # everything except added copies/invalid messages is the clean log, only re-ordered
    originals = [e.value for e in faulty if not (e.is_duplicate or e.is_invalid)]
    assert sorted(originals) == sorted(e.value for e in clean)


# --------------------------------------------------------------------------- contract


def test_every_clean_event_decodes_and_matches_its_metadata(clean, decoded):
    assert len(clean) > 10_000
    for ev, model in zip(clean, decoded, strict=True):
        assert model.id == ev.id
        assert model.type == ev.type
        assert model.family == ev.family
        assert model.subject == ev.key
        assert model.ts == pytest.approx(ev.time, abs=0.0005)
        assert not (ev.is_duplicate or ev.is_out_of_order or ev.is_late or ev.is_invalid)


def test_every_type_of_the_contract_is_generated(clean):
    assert {e.type for e in clean} == set(EVENT_TYPES)
    assert {e.family for e in clean} == set(FAMILIES)


def test_ids_are_unique_in_a_clean_log(clean):
    ids = [e.id for e in clean]
    assert len(ids) == len(set(ids))


def test_clean_log_is_in_event_time_order(clean):
    assert all(a.time <= b.time for a, b in itertools.pairwise(clean))
    assert all(e.emit_time == e.time for e in clean)
    assert clean[0].time >= START and clean[-1].time < START + 3 * 3600


@pytest.mark.parametrize("rate", [5.0, 40.0])
def test_rate_is_roughly_honoured(rate):
    duration = 1800
    events = generate(2, START, duration, rate)
    assert len(events) == pytest.approx(rate * duration, rel=0.05)
    # also over the first minute: a fresh world reaches the rate at once
    first_minute = sum(1 for e in events if e.time < START + 60)
    assert first_minute == pytest.approx(rate * 60, rel=0.25)


def test_activity_dominates_but_every_family_has_a_real_share():
    events = generate(4, START, 2 * 3600, 10.0)
    share = {f: n / len(events) for f, n in summarize(events).items() if f in FAMILIES}
    assert share["activity"] > 0.5
    assert share["ticket"] > 0.15
    assert share["subscription"] > 0.005 and share["survey"] > 0.005


# --------------------------------------------------------------------------- lifecycles


def test_ticket_lifecycles_are_coherent(decoded):
    status: dict[str, str] = {}
    created_at: dict[str, float] = {}
    solved: set[str] = set()
    reopened = resolved_again = closed = 0
    after_created = {"ticket.replied", "ticket.assigned", "ticket.status_changed", "ticket.solved"}
    for m in decoded:
        if m.family != "ticket":
            continue
        tid = m.data.ticket_id
        if m.type == "ticket.created":
            assert tid not in status, "created twice"
            status[tid], created_at[tid] = "new", m.ts
            continue
        assert tid in status, f"{m.type} before ticket.created"
        assert m.ts >= created_at[tid]
        assert status[tid] != "closed", "event after close"
        if m.type == "ticket.status_changed":
            assert m.data.previous_status == status[tid]
            assert m.data.status not in ("solved", "closed")  # dedicated types carry those
            status[tid] = m.data.status
        elif m.type == "ticket.solved":
            assert status[tid] in ("open", "pending", "on_hold")
            resolved_again += tid in solved
            solved.add(tid)
            status[tid] = "solved"
        elif m.type == "ticket.reopened":
            assert status[tid] == "solved"
            reopened += 1
            status[tid] = "open"
        elif m.type == "ticket.closed":
            assert status[tid] == "solved"
            closed += 1
            status[tid] = "closed"
        else:
            assert m.type in after_created
    assert reopened > 0 and resolved_again > 0 and closed > 0
    unsolved = [t for t, s in status.items() if s not in ("solved", "closed")]
    assert unsolved, "some tickets must still be open at the end"
    teams = Counter(m.data.team for m in decoded if m.type == "ticket.created")
    assert set(teams) == {"technical", "billing", "onboarding", "enterprise"}


def test_replies_have_agents_customers_bots_and_internal_notes(decoded):
    replies = [m.data for m in decoded if m.type == "ticket.replied"]
    roles = Counter(r.author_role for r in replies)
    assert set(roles) == {"agent", "customer", "bot"}
    assert any(not r.public for r in replies)
    for r in replies:
        if r.author_role == "agent":
            assert r.time_spent_seconds is not None and r.author_id
        else:
            assert r.time_spent_seconds is None
            assert r.public


def test_sessions_are_coherent(decoded):
    signed_up_at: dict[str, float] = {}
    seen_user: set[str] = set()
    session_user: dict[str, str] = {}
    ended: set[str] = set()
    logouts = idle = 0
    for m in decoded:
        if m.family != "activity":
            continue
        uid = m.data.user_id
        if m.type == "activity.signed_up":
            assert uid not in seen_user, "activity before sign-up"
            signed_up_at[uid] = m.ts
        seen_user.add(uid)
        sid = getattr(m.data, "session_id", None)
        if m.type == "activity.login":
            assert sid not in session_user
            session_user[sid] = uid
        elif sid is not None:
            assert session_user.get(sid) == uid, f"{m.type} outside its user's session"
            assert sid not in ended, "event after logout"
            if m.type == "activity.logout":
                ended.add(sid)
                logouts += 1
    idle = len(set(session_user) - ended)
    assert logouts > 0 and idle > 0
    assert signed_up_at, "new users sign up"


def test_subscription_lifecycles_are_coherent(decoded):
    subs: dict[str, dict] = {}
    trials: dict[str, float] = {}
    kinds = Counter()
    for m in decoded:
        if m.family != "subscription":
            continue
        kinds[m.type] += 1
        d = m.data
        if m.type == "subscription.trial_started":
            trials[d.account_id] = m.ts
            assert d.trial_ends_at.timestamp() > m.ts
            continue
        if m.type == "subscription.payment":
            assert d.amount_minor >= 0
            continue
        sid = d.subscription_id
        if m.type == "subscription.started":
            assert sid not in subs
            subs[sid] = {"account": d.account_id, "amount": d.amount_minor, "state": "active",
                         "currency": d.currency, "interval": d.interval}
            if d.account_id in trials:
                assert m.ts >= trials[d.account_id]
            continue
        s = subs[sid]  # KeyError = event for a subscription never started
        assert s["account"] == d.account_id
        assert s["state"] != "ended", f"{m.type} after ended"
        if m.type == "subscription.plan_changed":
            assert d.amount_minor != s["amount"]
            s["amount"] = d.amount_minor
        elif m.type == "subscription.renewed":
            # a renewal charges the current terms
            assert (d.amount_minor, d.currency, d.interval) == (s["amount"], s["currency"], s["interval"])
        elif m.type == "subscription.renewal_due":
            assert d.due_at.timestamp() > m.ts
        elif m.type == "subscription.cancelled":
            s["state"] = "cancelled"
        elif m.type == "subscription.ended":
            assert s["state"] == "cancelled", "ended without cancelled"
            s["state"] = "ended"
    for t in EVENT_TYPES:
        if t.startswith("subscription."):
            assert kinds[t] > 0, t
    currencies = Counter(s["currency"] for s in subs.values())
    assert currencies.most_common(1)[0][0] == "USD"
    assert set(currencies) <= {"USD", "EUR", "GBP"}
    # some trials convert, most do not
    converted = {s["account"] for s in subs.values()} & set(trials)
    assert 0 < len(converted) < len(trials)


def test_surveys_refer_to_solved_tickets_and_stay_in_scale(decoded):
    solved: dict[str, tuple[float, str]] = {}
    ticket_account: dict[str, str] = {}
    kinds = Counter()
    for m in decoded:
        if m.type == "ticket.created":
            ticket_account[m.data.ticket_id] = m.data.account_id
        elif m.type == "ticket.solved":
            solved.setdefault(m.data.ticket_id, (m.ts, ""))
        elif m.family == "survey":
            d = m.data
            kinds[m.type] += 1
            if m.type == "survey.nps":
                assert 0 <= d.score <= 10 and d.ticket_id is None and d.account_id
            else:
                assert d.scale_min <= d.score <= d.scale_max
                assert d.ticket_id in solved and m.ts >= solved[d.ticket_id][0]
                assert d.account_id == ticket_account[d.ticket_id]
    assert kinds["survey.csat"] > kinds["survey.ces"] > 0 and kinds["survey.nps"] > 0
    comments = [m.data.comment for m in decoded if m.family == "survey"]
    assert any(c for c in comments) and any(c is None for c in comments)


# --------------------------------------------------------------------------- faults


def test_fault_fractions_are_roughly_honoured(clean, faulty):
    n = len(clean)
    counts = summarize(faulty)
    for name in ("duplicate", "out_of_order", "late", "invalid"):
        assert counts[name] == pytest.approx(getattr(FAULTS, name) * n, rel=0.2), name
    assert counts["total"] == n + counts["duplicate"] + counts["invalid"]


def test_duplicates_repeat_earlier_bytes_exactly(faulty):
    seen: dict[bytes, GeneratedEvent] = {}
    for ev in faulty:
        if ev.is_duplicate:
            first = seen[ev.value]  # KeyError = duplicate emitted before its original
            assert first.id == ev.id and not first.is_duplicate
            assert 0 < ev.emit_time - ev.time <= FAULTS.duplicate_within
        elif not ev.is_invalid:
            assert ev.value not in seen
            seen[ev.value] = ev


def test_out_of_order_events_follow_a_later_event_of_their_key(faulty):
    latest_by_key: dict[str, float] = {}
    flagged = 0
    for ev in faulty:
        if ev.is_invalid:
            continue
        if ev.is_out_of_order:
            flagged += 1
            assert latest_by_key[ev.key] > ev.time
            assert latest_by_key[ev.key] - ev.time <= FAULTS.out_of_order_within
        latest_by_key[ev.key] = max(latest_by_key.get(ev.key, 0.0), ev.time)
    assert flagged


def test_out_of_order_puts_follow_ups_before_the_lifecycle_start(faulty):
    # e.g. a reply emitted before its ticket.created, a heartbeat before its login
    first_type_by_key: dict[str, str] = {}
    swapped_starts = Counter()
    for ev in faulty:
        if ev.is_invalid:
            continue
        first_type_by_key.setdefault(ev.key, ev.type)
        if ev.is_out_of_order and ev.type in ("ticket.created", "activity.login"):
            if first_type_by_key[ev.key] != ev.type:
                swapped_starts[ev.type] += 1
    assert swapped_starts["ticket.created"] and swapped_starts["activity.login"]


def test_late_events_come_late_by_the_configured_lag(clean, faulty):
    end = clean[-1].time  # late events due after the end are emitted at the tail
    max_time = float("-inf")
    late = 0
    for ev in faulty:
        if ev.is_late:
            late += 1
            assert ev.emit_time == pytest.approx(ev.time + FAULTS.late_by)
            # by the time it is emitted the stream has moved on by about late_by
            assert max_time >= min(ev.time + FAULTS.late_by, end) - 60
            decode_event(ev.value, expected_family=ev.family)  # late, but valid
        if not ev.is_invalid:
            max_time = max(max_time, ev.time)
    assert late


def test_emission_order_is_the_list_order(faulty):
    assert all(a.emit_time <= b.emit_time for a, b in itertools.pairwise(faulty))


def test_invalid_events_are_rejected_with_the_expected_reason(faulty):
    kinds = Counter()
    for ev in faulty:
        if not ev.is_invalid:
            decode_event(ev.value, expected_family=ev.family)
            continue
        kinds[ev.invalid_kind] += 1
        with pytest.raises(EventRejected) as info:
            decode_event(ev.value, expected_family=ev.family)
        assert info.value.reason in INVALID_KINDS[ev.invalid_kind], (ev.invalid_kind, info.value)
        assert info.value.detail
    assert set(kinds) == set(INVALID_KINDS)


def test_invalid_messages_keep_the_key_and_do_not_reuse_ids(faulty):
    valid_ids = {e.id for e in faulty if not e.is_invalid}
    for ev in faulty:
        if ev.is_invalid:
            assert ev.key and ev.id not in valid_ids


# --------------------------------------------------------------------------- options


def test_faults_parse():
    f = Faults.parse("duplicate=0.01, invalid=0.005,late=0.002,late_by=1200,out-of-order=0.03")
    assert f == Faults(duplicate=0.01, invalid=0.005, late=0.002, late_by=1200.0, out_of_order=0.03)
    assert Faults.parse("") == Faults() and not Faults().any
    for bad in ("dupe=0.1", "duplicate", "invalid=2", "late_by=0", "duplicate=0.7,late=0.7"):
        with pytest.raises(ValueError):
            Faults.parse(bad)


def test_profiles():
    assert Profile.named("realistic") == Profile()
    assert Profile.named("fast").month_seconds < Profile().month_seconds
    with pytest.raises(ValueError):
        Profile.named("slow")
    with pytest.raises(ValueError):
        generate(1, START, 10, 0.0)


def test_live_generation_starts_at_the_clock_and_never_ends():
    now = 1_800_000_000.0
    live = generate_live(9, 100.0, clock=lambda: now, faults=Faults(invalid=0.01))
    events = list(itertools.islice(live, 20_000))
    assert len(events) == 20_000
    assert events[0].time >= now
    assert events[-1].emit_time - now == pytest.approx(200, rel=0.05)  # ~100/s of event time
    again = list(itertools.islice(generate_live(9, 100.0, clock=lambda: now, faults=Faults(invalid=0.01)), 20_000))
    assert again == events
    for ev in events[:2000]:
        if not ev.is_invalid:
            decode_event(ev.value, expected_family=ev.family, now=ev.time)


# --------------------------------------------------------------------------- CLI (no broker: --dry-run)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "stream_app.tools.producer", *args]


def test_cli_dry_run_prints_decodable_events_paced_at_the_rate():
    proc = subprocess.run(
        _cli("--dry-run", "--rate", "200", "--duration", "1.5", "--seed", "3", "--faults", "invalid=0.05"),
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == pytest.approx(300, rel=0.25)
    topics = Settings().input_topics()  # the subprocess reads the same environment
    rejected = 0
    for line in lines:
        topic, key, value = line.split(b" ", 2)
        try:
            event = decode_event(value)
        except EventRejected:
            rejected += 1
            continue
        assert topic.decode() == topics[event.family] and key.decode() == event.subject
        assert abs(event.ts - time.time()) < 60  # live: event time is now
    assert rejected > 0
    assert b"seed=3" in proc.stderr and b"sent=" in proc.stderr


def test_cli_stops_cleanly_on_sigterm():
    proc = subprocess.Popen(_cli("--dry-run", "--rate", "50"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # The first progress line comes from the running loop, after its signal handlers are
        # installed (a fixed sleep raced with the imports on a loaded machine).
        before = []
        for line in proc.stderr:
            before.append(line)
            if line.startswith(b"sent="):
                break
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        err = b"".join(before) + err
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert b"sent=" in err.splitlines()[-1]


@pytest.mark.parametrize("args", [["--rate", "0"], ["--faults", "bogus=1"]])
def test_cli_rejects_bad_options(args):
    proc = subprocess.run(_cli("--dry-run", *args), capture_output=True, timeout=60)
    assert proc.returncode == 2 and b"generate:" in proc.stderr
