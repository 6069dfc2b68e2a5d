"""Product usage metrics: hand-worked examples, ordering/duplicate/lateness behaviour, state size
and pruning, and property tests against the independent batch reference
(tests/reference/usage_reference.py), also on generator logs."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_app.engine.labels import LabelGuard, LabelRule
from stream_app.engine.usage import (
    UsageConfig,
    UsageFamily,
    UsageIndex,
    UserState,
    account_signal,
    apply,
    contributions,
    retention_until,
)
from tests.reference import usage_reference as ref
from tests.support.engine import EngineRunner
from tests.support.events import Ev, arrival_orders
from tests.support.references import usage_params
from tests.support.samples import assert_same, exposition, lab, samples, state_derived

T0 = datetime(2024, 1, 1, 8, 0, tzinfo=timezone.utc).timestamp()  # bucket-aligned
H = 3600
D = 86400
P = "stream_app_usage_"


def signup(eid, ts, user, acc="acc"):
    return Ev(eid, "activity.signed_up", float(ts), {"user_id": user, "account_id": acc})


def login(eid, ts, user, sid, client="web", acc="acc"):
    return Ev(eid, "activity.login", float(ts), {"user_id": user, "account_id": acc, "session_id": sid,
                                                   "client": client})


def hb(eid, ts, user, sid):
    return Ev(eid, "activity.heartbeat", float(ts), {"user_id": user, "session_id": sid})


def logout(eid, ts, user, sid):
    return Ev(eid, "activity.logout", float(ts), {"user_id": user, "session_id": sid})


def feat(eid, ts, user, feature, sid=None, acc="acc"):
    return Ev(eid, "activity.feature_used", float(ts), {"user_id": user, "account_id": acc, "session_id": sid,
                                                          "feature": feature})


def engine(cfg):
    """The worker's engine step over users in a dict (watermark, eviction, expiry: the real ones)."""
    return EngineRunner(UsageFamily(cfg))


def as_dicts(events):
    return [e.as_reference() for e in events]


# ----------------------------------------------------------------------------- hand-worked

NOW = T0 + 4 * H


def scenario():
    """Five users; expected values worked out in test_hand_worked_metrics. Delivered in event-time
    order, as a live feed brings them: U4's session (10 d old) arriving after U3's newest event
    would be older than the session store's horizon (7 d + 1 h) and refused as too late."""
    return sorted([
        # U1 signs up and has one web session closed by a logout: T0+60 .. T0+1200
        signup("u1-0", T0, "U1", acc="acc1"),
        login("u1-1", T0 + 60, "U1", "S1", "web", acc="acc1"),
        feat("u1-2", T0 + 120, "U1", "dashboard.view", "S1", acc="acc1"),
        hb("u1-3", T0 + 600, "U1", "S1"),
        feat("u1-4", T0 + 900, "U1", "search", "S1", acc="acc1"),
        logout("u1-5", T0 + 1200, "U1", "S1"),
        # U2: an ios session without logout, last event T0+3h05m
        login("u2-1", T0 + 3 * H, "U2", "S2", "ios"),
        hb("u2-2", T0 + 3 * H + 300, "U2", "S2"),
        # U3: an API call two days ago (no session), a web session still open at NOW
        feat("u3-0", T0 - 2 * D, "U3", "api.call", None, acc="acc3"),
        login("u3-1", NOW - 600, "U3", "S3", "web", acc="acc3"),
        feat("u3-2", NOW - 300, "U3", "report.export", "S3", acc="acc3"),
        # U4: an android session ten days ago
        login("u4-1", T0 - 10 * D, "U4", "S4", "android"),
        logout("u4-2", T0 - 10 * D + 600, "U4", "S4"),
        # U5: signed up, never active
        signup("u5-0", T0 + H, "U5"),
    ], key=lambda e: e.ts)


def test_hand_worked_metrics():
    cfg = UsageConfig()
    s = samples(engine(cfg).feed(scenario()).index, NOW)

    # DAU: last activity in the 24h window: U1 (T0+1200), U2 (T0+3h05), U3 (NOW-300) -> 3.
    # WAU: the same 3 (U3's API call 2 days ago is not a second count). MAU adds U4 (10 d ago) -> 4.
    assert s[(P + "active_users", lab(window="24h"))] == 3
    assert s[(P + "active_users", lab(window="7d"))] == 3
    assert s[(P + "active_users", lab(window="30d"))] == 4
    # known users (90 d): U1..U5 (U5 only signed up) -> 5. Active user rate over 30 d = 4/5.
    assert s[(P + "known_users", lab(window="90d"))] == 5
    # per client: web U1, U3; ios U2; android U4 (30d only)
    assert s[(P + "client_active_users", lab(client="web", window="24h"))] == 2
    assert s[(P + "client_active_users", lab(client="ios", window="24h"))] == 1
    assert (P + "client_active_users", lab(client="android", window="7d")) not in s
    assert s[(P + "client_active_users", lab(client="android", window="30d"))] == 1
    # adoption: U1 and U5 signed up today; U1 was active 60 s later (<= 7 d), U5 never -> 1 of 2
    assert s[(P + "signups", lab(window="24h"))] == 2
    assert s[(P + "adopted_signups", lab(window="24h"))] == 1
    # sessions started: 1h window = buckets starting in [NOW-3540, NOW] -> S3 only (NOW-600)
    assert s[(P + "sessions_started", lab(client="web", window="1h"))] == 1
    assert s[(P + "sessions_started", lab(client="web", window="24h"))] == 2  # S1, S3
    assert s[(P + "sessions_started", lab(client="ios", window="24h"))] == 1  # S2
    assert (P + "sessions_started", lab(client="android", window="7d")) not in s  # S4: 10 days ago

    def hist(client, window):
        return (
            s.get((P + "session_duration_seconds_gcount", lab(client=client, window=window)), 0),
            s.get((P + "session_duration_seconds_gsum", lab(client=client, window=window)), 0),
        )

    # S1 ended by logout: 1200 - 60 = 1140 s, at T0+1200 (not in the 1h window)
    assert hist("web", "24h") == (1, 1140)
    assert hist("web", "1h") == (0, 0)
    # S2 has no logout; idle since T0+3h05, NOW - that = 55 min > 30 min: over, 300 s, ended at
    # T0+3h05 which is inside the 1h window (it starts at T0+3h01)
    assert hist("ios", "1h") == (1, 300)
    assert s[(P + "session_duration_seconds_bucket", lab(client="ios", window="1h", le="300.0"))] == 1
    assert (P + "session_duration_seconds_bucket", lab(client="ios", window="1h", le="60.0")) not in s
    # S3: last event 300 s ago: open
    assert s[(P + "open_sessions", lab(client="web"))] == 1
    assert (P + "open_sessions", lab(client="ios")) not in s  # published at 0
    # features: U1 dashboard.view + search, U3 report.export today, api.call 2 days ago
    assert s[(P + "feature_users", lab(feature="report.export", window="1h"))] == 1
    assert s[(P + "feature_users", lab(feature="dashboard.view", window="24h"))] == 1
    assert (P + "feature_users", lab(feature="api.call", window="24h")) not in s
    assert s[(P + "feature_users", lab(feature="api.call", window="7d"))] == 1
    assert s[(P + "user_feature_pairs", lab(window="1h"))] == 1
    assert s[(P + "user_feature_pairs", lab(window="24h"))] == 3  # features per DAU = 3/3
    assert s[(P + "user_feature_pairs", lab(window="7d"))] == 4
    assert s[(P + "users_tracked", lab())] == 5
    # and the independent reference agrees on every sample
    assert_same(s, ref.compute(as_dicts(scenario()), NOW, usage_params(cfg)))


def test_lifecycle_and_power_users_by_utc_day_and_week():
    """Issue #13 item 6, worked by hand. T0 is Monday 2024-01-01; read on Wednesday Jan 10 12:00:
    current day Jan 10, previous Jan 9; current week Jan 8-14, previous Jan 1-7."""
    def day(d, month=1, year=2024):
        return datetime(year, month, d, 12, 0, tzinfo=timezone.utc).timestamp()

    now = day(10)
    events = sorted([
        feat("a1", day(2), "A", "x"), feat("a2", day(9), "A", "x"), feat("a3", day(10) - 60, "A", "x"),
        signup("b0", day(10) - 120, "B"), login("b1", day(10) - 60, "B", "SB"),
        feat("c1", day(3), "C", "x"), feat("c2", day(9), "C", "x"),
        feat("e1", day(5), "E", "x"), feat("e2", day(8), "E", "x"),
        feat("f1", T0, "F", "x"),
        feat("g1", day(20, 12, 2023), "G", "x"), feat("g2", day(10) - 30, "G", "x"),
    ], key=lambda e: e.ts)
    run = engine(UsageConfig()).feed(events)

    def lifecycle(at):
        s = samples(run.index, at)
        return {(dict(k[1])["period"], dict(k[1])["status"]): v for k, v in s.items() if k[0] == P + "lifecycle_users"}

    assert lifecycle(now) == {
        # Jan 10: A active Jan 9 too; B's first activity; C active Jan 9 only; G back after Dec 20
        ("current_day", "current"): 1, ("current_day", "new"): 1, ("current_day", "dormant"): 1,
        ("current_day", "resurrected"): 1,
        # Jan 9: A and C active, not Jan 8, not new; E active Jan 8, not Jan 9
        ("previous_day", "resurrected"): 2, ("previous_day", "dormant"): 1,
        # this week: A, C, E active in both weeks; B new; F (Jan 1 only) dormant; G back
        ("current_week", "current"): 3, ("current_week", "new"): 1, ("current_week", "dormant"): 1,
        ("current_week", "resurrected"): 1,
        # last week: A, C, E, F had their first activity in it; G was not active
        ("previous_week", "new"): 4,
    }
    s = samples(run.index, now)
    power = {(dict(k[1])["window"], dict(k[1])["days"]): v for k, v in s.items() if k[0] == P + "power_users"}
    # active days in Jan 4-10 / Dec 14-Jan 10: A 2/3, B 1/1, C 1/2, E 2/2, F 0/1, G 1/2
    assert power == {("7d", "1"): 3, ("7d", "2"): 2, ("28d", "1"): 2, ("28d", "2"): 3, ("28d", "3"): 1}
    # the next day (no new events): A, B and G are dormant; yesterday's view is today's above
    nxt = lifecycle(day(11))
    assert nxt[("current_day", "dormant")] == 3 and ("current_day", "current") not in nxt
    assert {k[1]: v for k, v in nxt.items() if k[0] == "previous_day"} == {
        "current": 1, "new": 1, "dormant": 1, "resurrected": 1}
    # every series is published, zeros included: 4 periods x 4 statuses, 7 + 28 curve points
    fams = {f.name: f for f in run.index.collect(now)}
    assert len(fams[P + "lifecycle_users"].samples) == 16 and len(fams[P + "power_users"].samples) == 35


def test_account_signal():
    e = engine(UsageConfig()).feed(scenario())
    assert account_signal(e.entities["U1"], NOW) == {
        "account_id": "acc1", "last_active_ts": T0 + 1200, "sessions_7d": 1, "features_30d": 2,
    }
    # U3: the API call counts as a feature (2 days ago), one session
    assert account_signal(e.entities["U3"], NOW) == {
        "account_id": "acc3", "last_active_ts": NOW - 300, "sessions_7d": 1, "features_30d": 2,
    }
    # U4's session started 10 days ago: not in the 7 days
    assert account_signal(e.entities["U4"], NOW)["sessions_7d"] == 0
    assert account_signal(e.entities["U5"], NOW) == {
        "account_id": "acc", "last_active_ts": None, "sessions_7d": 0, "features_30d": 0,
    }
    st_, _ = apply(None, hb("x", T0, "U9", "S"))  # heartbeats carry no account
    assert account_signal(st_, NOW) is None
    assert account_signal(None, NOW) is None
    # the account of a user is the one named by its latest event
    st_, _ = apply(st_, login("y", T0 + 5, "U9", "S", acc="b"))
    st_, _ = apply(st_, signup("z", T0 - 5, "U9", acc="a"))
    assert account_signal(st_, NOW)["account_id"] == "b"


def test_idle_session_ends_with_the_wall_clock():
    cfg = UsageConfig()
    idx = engine(cfg).feed([login("a", T0, "U", "S", "desktop"), hb("b", T0 + 300, "U", "S")]).index
    key_open = (P + "open_sessions", lab(client="desktop"))
    key_n = (P + "session_duration_seconds_gcount", lab(client="desktop", window="1h"))
    s = samples(idx, T0 + 300 + 1800)  # idle exactly the timeout: still open
    assert s[key_open] == 1 and key_n not in s
    s = samples(idx, T0 + 300 + 1801)
    assert key_open not in s and s[key_n] == 1
    assert s[(P + "session_duration_seconds_gsum", lab(client="desktop", window="1h"))] == 300
    # it ended at its last event (T0+300): it leaves the 1h window with that bucket
    assert key_n not in samples(idx, T0 + 300 + H)
    assert samples(idx, T0 + 300 + H)[(P + "session_duration_seconds_gcount", lab(client="desktop", window="24h"))] == 1
    # a heartbeat after 20 min reopens the idle clock
    e = engine(cfg).feed([login("a", T0, "U", "S", "desktop"), hb("b", T0 + 300, "U", "S"),
                          hb("c", T0 + 1500, "U", "S")])
    assert samples(e.index, T0 + 300 + 1801)[key_open] == 1


def test_a_later_event_of_the_user_ends_an_idle_session():
    cfg = UsageConfig()
    s, _ = apply(None, login("a", T0, "U", "S1"), cfg)
    s, _ = apply(s, hb("b", T0 + 100, "U", "S1"), cfg)
    assert [c[0] for c in contributions(s, cfg) if c[0].startswith("session_")] == ["session_started", "session_clock"]
    s2, _ = apply(s, feat("c", T0 + 100 + 1801, "U", "search"), cfg)  # 1801 s after S1's last event
    names = [c for c in contributions(s2, cfg) if c[0] == "session_duration"]
    assert names == [("session_duration", ("web",), T0 + 100, 100.0)]


def test_session_client_and_unknown_login():
    cfg = UsageConfig()
    # heartbeat before its login: client known once the login arrives; no login at all -> other
    e = engine(cfg).feed([hb("a", T0 + 60, "U", "S"), login("b", T0, "U", "S", "ios"),
                          hb("c", T0, "V", "SV"), logout("d", T0 + 30, "V", "SV")])
    s = samples(e.index, T0 + 120)
    assert s[(P + "sessions_started", lab(client="ios", window="1h"))] == 1
    assert s[(P + "sessions_started", lab(client="other", window="1h"))] == 1
    assert s[(P + "session_duration_seconds_gsum", lab(client="other", window="1h"))] == 30
    # a session without a login is in no client's active users
    assert s[(P + "client_active_users", lab(client="ios", window="24h"))] == 1
    assert (P + "client_active_users", lab(client="other", window="24h")) not in s
    # two logins with different clients in one session: labelled by the first client by name,
    # active for both
    e = engine(cfg).feed([login("a", T0, "U", "S", "web"), login("b", T0 + 5, "U", "S", "android")])
    s = samples(e.index, T0 + 120)
    assert s[(P + "sessions_started", lab(client="android", window="1h"))] == 1
    assert s[(P + "client_active_users", lab(client="web", window="24h"))] == 1
    assert s[(P + "client_active_users", lab(client="android", window="24h"))] == 1


def test_adoption_window():
    cfg = UsageConfig(adoption_seconds=7 * D)
    late = engine(cfg).feed([signup("a", T0, "U"), login("b", T0 + 7 * D + 1, "U", "S")])
    on_time = engine(cfg).feed([signup("a", T0, "U"), login("b", T0 + 7 * D, "U", "S")])
    now = T0 + 7 * D + 60
    assert samples(late.index, now)[(P + "signups", lab(window="30d"))] == 1
    assert (P + "adopted_signups", lab(window="30d")) not in samples(late.index, now)
    assert samples(on_time.index, now)[(P + "adopted_signups", lab(window="30d"))] == 1
    # a signup alone is not activity: not active, but known
    s = samples(engine(cfg).feed([signup("a", T0, "U")]).index, T0 + 60)
    assert (P + "active_users", lab(window="24h")) not in s
    assert s[(P + "known_users", lab(window="90d"))] == 1


# ----------------------------------------------------------------------------- ordering, duplicates, lateness


def test_any_order_gives_the_same_state_and_metrics():
    cfg = UsageConfig()
    evs = scenario()
    base = engine(cfg).feed(evs)
    expected = samples(base.index, NOW)
    for shuffled in arrival_orders(evs, seed=3, runs=20, redelivered=5):
        e = engine(cfg).feed(shuffled)
        assert e.stored() == base.stored()
        # U4's session refused when it arrives after U3's newest event: counted as it arrives
        assert_same(state_derived(samples(e.index, NOW)), expected)


def test_duplicate_delivery_is_a_no_op():
    cfg = UsageConfig()
    s0, ok0 = apply(None, login("a", T0, "U", "S"), cfg)
    s1, ok1 = apply(s0, login("a", T0, "U", "S"), cfg)
    assert ok0 and not ok1 and s1 is s0 and s0.has_event("a")
    e = engine(cfg).feed(scenario() + scenario())
    assert e.duplicates == len(scenario())  # in time order every first delivery adds a fact
    assert samples(e.index, NOW) == samples(engine(cfg).feed(scenario()).index, NOW)
    # an old redelivery is not remembered by id, yet changes nothing
    s, _ = apply(None, login("a", T0, "U", "S"), cfg)
    for i in range(1, 5):
        s, _ = apply(s, hb(f"h{i}", T0 + 60 * i, "U", "S"), cfg)
    assert not s.has_event("a")
    assert apply(s, login("a", T0, "U", "S"), cfg) == (s, False)


def test_apply_is_pure():
    s0, _ = apply(None, login("a", T0, "U", "S"))
    before = json.dumps(s0.to_dict(), sort_keys=True)
    apply(s0, feat("b", T0 + 5, "U", "search", "S"))
    apply(s0, logout("c", T0 + 9, "U", "S"))
    assert json.dumps(s0.to_dict(), sort_keys=True) == before


def test_late_session_event_beyond_its_store_horizon_is_dropped_and_counted():
    cfg = UsageConfig()  # family horizon 90 d + 1 h; session stores 7 d + 1 h
    e = engine(cfg).feed([login("n", T0 + 10 * D, "N", "SN")])
    e.feed([login("old", T0 + 10 * D - 8 * D, "OLD", "SO", "ios")])
    assert e.too_late == 0  # within the family horizon...
    assert e.index.dropped == 1  # ...but its session bucket (8 d old) is gone: counted
    s = samples(e.index, T0 + 10 * D)
    assert (P + "sessions_started", lab(client="ios", window="7d")) not in s
    assert s[(P + "active_users", lab(window="30d"))] == 2  # the 30 d store still holds it
    assert s[(P + "window_dropped_contributions_total", lab())] == 1


def test_too_late_event_is_counted_and_its_state_still_updated():
    cfg = UsageConfig()
    e = engine(cfg).feed([login("n", T0 + 100 * D, "N", "SN")])
    e.feed([signup("old", T0, "OLD")])  # 100 d old: before cutoff = 100 d - (90 d + 1 h)
    assert e.too_late == 1
    assert e.index.dropped == 2  # its known and signup points
    assert samples(e.index, T0 + 100 * D)[(P + "known_users", lab(window="90d"))] == 1
    # OLD's state was written; its newest event is behind the cutoff, so it affects no metric and
    # expiry deletes it in the same step
    assert "OLD" not in e.entities and e.engine.evicted_entities == 1
    # a user with a recent event keeps its state, with the too-late fact recorded
    e.feed([login("k", T0 + 100 * D, "KEPT", "SK"), signup("kept-old", T0, "KEPT")])
    assert e.too_late == 2
    assert e.index.dropped == 3  # only its signup point: KEPT is known by its login
    assert e.entities["KEPT"].signup == T0


def test_rebuild_from_states_equals_incremental_index():
    cfg = UsageConfig()
    e = engine(cfg).feed(scenario())
    fresh = e.rebuilt()
    assert fresh.tracker.watermark() == NOW - 300  # seeded with the newest event time of the states
    assert samples(fresh.index, NOW) == samples(e.index, NOW)
    # retracting every state empties the index
    for st_ in e.entities.values():
        e.index.retract(contributions(st_, cfg))
    assert samples(e.index, NOW) == {}


def test_retention_until_is_the_newest_event():
    cfg = UsageConfig()
    e = engine(cfg).feed(scenario())
    assert retention_until(e.entities["U1"], cfg) == T0 + 1200
    assert retention_until(e.entities["U5"], cfg) == T0 + H


# ----------------------------------------------------------------------------- state size and pruning


def test_state_round_trip_and_version():
    s, _ = apply(None, login("a", T0, "U", "S", "ios"))
    s, _ = apply(s, feat("b", T0 + 1.5, "U", "search", "S"))
    d = s.to_dict()
    assert UserState.from_dict(json.loads(json.dumps(d))) == s
    with pytest.raises(ValueError):
        UserState.from_dict({**d, "v": 2})
    with pytest.raises(ValueError):
        apply(s, Ev("x", "ticket.created", T0, {"ticket_id": "t"}))


def test_old_facts_are_pruned_behind_the_newest_event():
    cfg = UsageConfig()  # sessions kept 7 d + 1 h, features 30 d + 1 h, clients 30 d + 1 h
    s, _ = apply(None, login("a", T0, "U", "S1", "ios"), cfg)
    s, _ = apply(s, feat("b", T0, "U", "search", "S1"), cfg)
    s, _ = apply(s, login("c", T0 + 8 * D, "U", "S2", "web"), cfg)
    assert len(s.sessions) == 1 and "search" in s.features and set(s.clients) == {"i", "w"}
    s, _ = apply(s, hb("d", T0 + 31 * D, "U", "S2"), cfg)
    assert s.features == {} and set(s.clients) == {"w"}
    # an event older than the retention arriving now adds nothing that stays
    s2, changed = apply(s, feat("e", T0 + 12 * H, "U", "old.feature"), cfg)  # < 31 d - (30 d + 1 h)
    assert s2.features == {} and not changed


def test_feature_cap_per_user_and_label_cap():
    guard = LabelGuard.with_overrides(feature=LabelRule(cap=1))
    cfg = UsageConfig(max_features_per_user=3, labels=guard)
    evs = [feat(f"f{i}", T0 + i, "U", f"feat{i}") for i in range(5)]
    e = engine(cfg).feed(evs + [feat("g", T0 + 10, "V", "feat4"), feat("h", T0 + 11, "V", "feat3")])
    assert sorted(e.entities["U"].features) == ["feat2", "feat3", "feat4"]  # the 3 most recent
    s = samples(e.index, T0 + 60)
    # the one feature label admitted is feat0 (the first seen), since dropped from U's state; every
    # other feature maps to 'other', where each user counts once
    assert not any(dict(k[1]).get("feature") == "feat0" for k in s)
    assert s[(P + "feature_users", lab(feature="other", window="1h"))] == 2  # U and V
    assert s[(P + "user_feature_pairs", lab(window="1h"))] == 5  # 3 for U + 2 for V


def test_typical_state_is_small():
    """A user with a week of daily sessions and three features: about 400 bytes of JSON."""
    cfg = UsageConfig()
    s = None
    n = 0
    for day in range(7):
        t = T0 + day * D
        sid = f"ses_{day:016x}"
        for ev_ in (login(f"evt_{n:016x}", t, "usr_0123456789abcdef", sid, acc="acc_0123456789abcdef"),
                    feat(f"evt_{n + 1:016x}", t + 30.123, "usr_0123456789abcdef",
                         ("dashboard.view", "search", "report.export")[day % 3], sid, acc="acc_0123456789abcdef"),
                    hb(f"evt_{n + 2:016x}", t + 300.456, "usr_0123456789abcdef", sid),
                    logout(f"evt_{n + 3:016x}", t + 900.789, "usr_0123456789abcdef", sid)):
            s, _ = apply(s, ev_, cfg)
        n += 4
    size = len(json.dumps(s.to_dict(), separators=(",", ":")))
    assert len(s.sessions) == 7
    assert size < 420, size  # ~180 B with one session, + ~29 B per session kept (7 d + 1 h)


# ----------------------------------------------------------------------------- exposition


def test_exposition_renders():
    idx = engine(UsageConfig()).feed(scenario()).index
    text = exposition(idx, NOW)
    assert 'stream_app_usage_active_users{window="24h"} 3.0' in text
    assert 'stream_app_usage_session_duration_seconds_bucket{client="ios",le="300.0",window="1h"} 1.0' in text
    assert "stream_app_usage_window_dropped_contributions_total 0.0" in text
    # unlabelled ratio parts exist at 0 (e.g. adopted signups in the 24h window of a quiet worker)
    empty = {f.name: f for f in UsageIndex(UsageConfig()).collect(NOW)}
    assert [s.value for s in empty[P + "adopted_signups"].samples] == [0, 0, 0]


# ----------------------------------------------------------------------------- property tests vs reference

CLIENTS = ("web", "ios", "desktop", "tv")  # tv: not in the contract's enum -> label other
FEATURES = ("search", "report.export", "dashboard.view", "api.call")


@st.composite
def event_logs(draw, span_days):
    """Users with sessions (events within 3 h of the session start, sessions anywhere in
    ``span_days``), sessionless feature uses and signups."""
    events = []
    for u in range(draw(st.integers(1, 4))):
        uid = f"U{u}"
        for _ in range(draw(st.integers(0, 2))):
            events.append(signup(None, draw(st.integers(0, span_days * D)), uid,
                                 acc=draw(st.sampled_from(["a1", "a2"]))))
        for si in range(draw(st.integers(0, 3))):
            sid = f"{uid}-S{si}"
            base = draw(st.integers(0, span_days * D))
            for _ in range(draw(st.integers(1, 6))):
                t = base + draw(st.integers(0, 3 * H))
                kind = draw(st.sampled_from(["login", "hb", "hb", "logout", "feat"]))
                if kind == "login":
                    events.append(login(None, t, uid, sid, draw(st.sampled_from(CLIENTS))))
                elif kind == "hb":
                    events.append(hb(None, t, uid, sid))
                elif kind == "logout":
                    events.append(logout(None, t, uid, sid))
                else:
                    events.append(feat(None, t, uid, draw(st.sampled_from(FEATURES)), sid))
        for _ in range(draw(st.integers(0, 2))):
            events.append(feat(None, draw(st.integers(0, span_days * D)), uid, draw(st.sampled_from(FEATURES))))
    log = []
    for j, e in enumerate(events):
        log.append(Ev(f"e{j:03d}", e.type, float(T0 + e.ts + draw(st.sampled_from([0, 0.25, 0.5]))), e.data))
    rnd = draw(st.randoms(use_true_random=False))
    n_dup = draw(st.integers(0, 5)) if log else 0
    top = max((e.ts for e in log), default=T0)
    now = top + draw(st.integers(0, 8 * D))  # a live worker reads at now >= event times
    return log, [rnd.choice(log) for _ in range(n_dup)], rnd, now


def check_against_reference(delivered, now, cfg):
    run = engine(cfg).feed(delivered)
    got = samples(run.index, now)
    assert_same(got, ref.compute(as_dicts(delivered), now, usage_params(cfg)))
    assert_same(samples(run.rebuilt().index, now), got)
    return run


@given(event_logs(span_days=6))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_index_matches_reference_for_any_order_and_duplicates(case):
    # spans under the session retention (7 d + 1 h): any arrival order gives the same state
    log, dups, rnd, now = case
    delivered = log + dups
    rnd.shuffle(delivered)
    cfg = UsageConfig()
    run = check_against_reference(delivered, now, cfg)
    in_order = engine(cfg).feed(sorted(log, key=lambda e: (e.ts, e.id)))
    assert run.stored() == in_order.stored()


@given(event_logs(span_days=45))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_index_matches_reference_with_pruning(case):
    # long histories (pruning active), delivered in time order with duplicates and local swaps
    log, dups, rnd, now = case
    delivered = sorted(log + dups, key=lambda e: (e.ts + rnd.uniform(0, 1800), e.id))
    check_against_reference(delivered, now, UsageConfig())


@pytest.mark.parametrize("seed", [1, 7, 42])
def test_generator_logs_match_reference(seed):
    from stream_app.events import decode_event
    from stream_app.tools.generator import Faults, generate

    start = T0
    gen = generate(seed, start, 2 * H, rate=1.5,
                   faults=Faults(duplicate=0.02, out_of_order=0.05, late=0.02, late_by=900.0))
    decoded = [decode_event(g.value, now=start + 4 * H) for g in gen if g.family == "activity" and not g.is_invalid]
    assert len(decoded) > 4000
    events = [Ev(d.id, d.type, d.ts, d.data.model_dump()) for d in decoded]
    cfg = UsageConfig()
    for now in (start + 2 * H + 60, start + 3 * H):
        run = check_against_reference(events, now, cfg)
    # states are small: the median user of a two-hour log
    sizes = sorted(len(json.dumps(s.to_dict(), separators=(",", ":"))) for s in run.entities.values())
    assert sizes[len(sizes) // 2] < 300, sizes[len(sizes) // 2]


def test_saas_world_has_dormant_and_resurrected_users_matching_reference():
    """The demo's world (warm start: users last active up to 30 days back, who come back daily,
    weekly or monthly) exercises every lifecycle status; checked against the reference."""
    from stream_app.events import decode_event
    from stream_app.tools.generator import Profile, generate

    gen = generate(7, T0, D, rate=0.02, profile=Profile.saas())
    decoded = [decode_event(g.value, now=T0 + 2 * D) for g in gen if g.family == "activity" and not g.is_invalid]
    events = [Ev(d.id, d.type, d.ts, d.data.model_dump()) for d in decoded]
    for now in (T0 + D - 60, T0 + D + 6 * H):  # the second read is on the next UTC day
        got = samples(check_against_reference(events, now, UsageConfig()).index, now)
    statuses = {dict(k[1])["status"] for k, v in got.items() if k[0] == P + "lifecycle_users" and v}
    assert statuses == {"new", "current", "resurrected", "dormant"}
    assert any(k[0] == P + "power_users" and dict(k[1])["days"] == "2" for k in got)


def test_real_decoded_events_drive_the_engine():
    from stream_app.events import decode_event

    def wire(eid, etype, iso, data):
        return json.dumps({"specversion": "1.0", "id": eid, "source": "test", "type": etype, "time": iso,
                           "subject": "u1", "schemaversion": 1, "data": {"user_id": "u1", **data}}).encode()

    raw = [
        wire("h", "activity.heartbeat", "2024-01-01T10:10:00+01:00", {"session_id": "s"}),  # 09:10 UTC, first
        wire("l", "activity.login", "2024-01-01T09:00:00Z", {"account_id": "a", "session_id": "s", "client": "ios"}),
        wire("f", "activity.feature_used", "2024-01-01T09:05:00Z",
             {"account_id": "a", "session_id": None, "feature": "reports.export"}),
        wire("o", "activity.logout", "2024-01-01T09:20:00Z", {"session_id": "s"}),
    ]
    cfg = UsageConfig()
    e = engine(cfg).feed([decode_event(r, now=T0 + D) for r in raw])
    s = samples(e.index, T0 + 2 * H)
    assert s[(P + "session_duration_seconds_gsum", lab(client="ios", window="1h"))] == 1200  # 09:00 -> 09:20
    assert s[(P + "feature_users", lab(feature="reports.export", window="1h"))] == 1
    assert s[(P + "active_users", lab(window="24h"))] == 1
