"""Voice-of-the-customer metrics: hand-worked examples, corrections, duplicates, lateness, retention,
and property tests against the independent batch reference (tests/reference/voice_reference.py)."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from stream_app.engine.labels import LabelGuard
from stream_app.engine.voice import (
    ResponseState,
    VoiceConfig,
    VoiceFamily,
    VoiceIndex,
    account_signal,
    apply,
    category,
    contributions,
    normalized_score,
    retention_until,
)
from stream_app.engine.windows import window_label
from tests.reference import voice_reference as ref
from tests.support.engine import EngineRunner
from tests.support.events import Ev, arrival_orders
from tests.support.references import plain, voice_params
from tests.support.samples import assert_same, exposition, lab, samples

DAY = 86400
H = 3600
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc).timestamp()  # hour-aligned
NOW = T0 + 100 * DAY + 1800  # mid-bucket
P = "stream_app_voice_"
VADER = SentimentIntensityAnalyzer()


def nps(eid, ts, rid, score, comment=None, account="acc"):
    return Ev(eid, "survey.nps", float(ts), dict(response_id=rid, score=score, comment=comment, account_id=account,
                                                  ticket_id=None, respondent_id=None))


def csat(eid, ts, rid, score, lo=1, hi=5, comment=None, account="acc"):
    return Ev(eid, "survey.csat", float(ts), dict(response_id=rid, score=score, scale_min=lo, scale_max=hi,
                                                   comment=comment, account_id=account, ticket_id="t",
                                                   respondent_id=None))


def ces(eid, ts, rid, score, lo=1, hi=7, comment=None, account="acc"):
    e = csat(eid, ts, rid, score, lo, hi, comment, account)
    e.type = "survey.ces"
    return e


class KeptVoice(VoiceFamily):
    """Voice with every response kept for ever: what expiry is compared against."""

    def retention_until(self, state):
        return None


def engine(cfg, family=VoiceFamily):
    """The worker's engine step over responses in a dict (watermark, eviction, expiry: the real
    ones)."""
    return EngineRunner(family(cfg))


# ----------------------------------------------------------------------------- scoring rules


def test_categories_and_normalisation_on_declared_scales():
    # NPS: 9-10 promoters, 7-8 passives, 0-6 detractors
    assert [category("nps", s, 0, 10) for s in range(11)] == ["detractor"] * 7 + ["passive"] * 2 + ["promoter"] * 2
    # CSAT 1-5: 4-5 satisfied, 3 neutral, 1-2 dissatisfied
    assert [category("csat", s, 1, 5) for s in range(1, 6)] == ["dissatisfied"] * 2 + ["neutral"] + ["satisfied"] * 2
    # CES 1-7: 5-7 easy, 4 neutral, 1-3 difficult
    assert [category("ces", s, 1, 7) for s in range(1, 8)] == ["difficult"] * 3 + ["neutral"] + ["easy"] * 3
    # other scales: position p = (s - min) / (max - min); csat top p >= 3/4, bottom p <= 1/4
    # 1-10: p(8) = 7/9 = 0.78 -> satisfied, p(7) = 6/9 = 0.67 -> neutral, p(3) = 2/9 -> dissatisfied
    assert [category("csat", s, 1, 10) for s in (3, 4, 7, 8)] == ["dissatisfied", "neutral", "neutral", "satisfied"]
    assert [category("csat", s, 0, 1) for s in (0, 1)] == ["dissatisfied", "satisfied"]  # thumbs down / up
    assert [category("csat", s, 1, 3) for s in (1, 2, 3)] == ["dissatisfied", "neutral", "satisfied"]
    # ces top p >= 2/3: on 1-5, p(4) = 3/4 -> easy, p(3) = 1/2 -> neutral, p(2) = 1/4 -> difficult
    assert [category("ces", s, 1, 5) for s in (2, 3, 4)] == ["difficult", "neutral", "easy"]
    # normalised to the canonical scale: csat 1 + 4p, ces 1 + 6p, nps as is
    assert normalized_score("csat", 8, 1, 10) == pytest.approx(1 + 4 * 7 / 9)
    assert normalized_score("csat", 2, 1, 3) == 3.0
    assert normalized_score("ces", 4, 1, 5) == 5.5  # 1 + 6 * 3/4
    assert normalized_score("nps", 7, 0, 10) == 7.0
    for kind, lo, hi in (("csat", 1, 10), ("csat", 0, 100), ("ces", 1, 5), ("ces", 0, 10)):
        for s in range(lo, hi + 1):
            assert category(kind, s, lo, hi) == ref.classify(kind, s, lo, hi)
            assert normalized_score(kind, s, lo, hi) == pytest.approx(float(ref.normalise(kind, s, lo, hi)))


def test_window_labels_read_in_days():
    assert [window_label(w) for w in VoiceConfig().windows] == ["7d", "30d", "90d"]
    assert window_label(86400) == "24h"  # support's labels are unchanged


# ----------------------------------------------------------------------------- hand-worked


def scenario():
    """Ages are relative to NOW; expected values are worked in test_hand_worked_metrics."""
    a = lambda days: NOW - days * DAY  # noqa: E731
    return [
        nps("n1", a(1), "N1", 10),
        nps("n2", a(3), "N2", 9, comment="Great support"),
        nps("n3", a(10), "N3", 8),
        nps("n4", a(40), "N4", 7),
        nps("n5", a(2), "N5", 6, comment="   "),  # whitespace only: no comment
        nps("n6", a(20), "N6", 0, comment="Still broken"),
        nps("n7", a(91), "N7", 3),  # outside every window (90 d), inside the horizon (91 d behind n1)
        csat("c1", a(1), "C1", 5),
        csat("c2", a(2), "C2", 4, comment="ok"),
        csat("c3", a(5), "C3", 3),
        csat("c4", a(6), "C4", 1, comment="Too slow"),
        csat("c5", a(1), "C5", 8, lo=1, hi=10),  # satisfied, normalised 1 + 4*7/9
        csat("c6", a(1), "C6", 2, lo=1, hi=3),  # neutral, normalised 3
        ces("e1", a(1), "E1", 7),
        ces("e2", a(1), "E2", 5),
        ces("e3", a(1), "E3", 4, comment=""),
        ces("e4", a(1), "E4", 2),
        ces("e5", a(1), "E5", 4, lo=1, hi=5),  # easy, normalised 5.5
    ]


def test_hand_worked_metrics():
    cfg = VoiceConfig()
    s = samples(engine(cfg).feed(scenario()).index, NOW)

    def r(kind, cat, w, name="responses"):
        return s.get((P + name, lab(kind=kind, category=cat, window=w)), 0)

    # NPS 7d: promoters n1 n2, passives none, detractors n5 -> (2 - 1) / 3 = 33.3
    assert [r("nps", c, "7d") for c in ("promoter", "passive", "detractor")] == [2, 0, 1]
    assert ref.nps(s, "7d") == pytest.approx(100 / 3)
    # 30d adds n3 (passive) and n6 (detractor): (2 - 2) / 5 = 0; 90d adds n4 (passive); n7 is out
    assert [r("nps", c, "30d") for c in ("promoter", "passive", "detractor")] == [2, 1, 2]
    assert [r("nps", c, "90d") for c in ("promoter", "passive", "detractor")] == [2, 2, 2]
    assert ref.nps(s, "90d") == 0
    # NPS comments: n2 (7d on), n6 (30d on); n5's blank comment does not count
    assert r("nps", "promoter", "7d", "commented_responses") == 1
    assert r("nps", "detractor", "7d", "commented_responses") == 0
    assert r("nps", "detractor", "30d", "commented_responses") == 1
    # mean NPS score 7d: (10 + 9 + 6) / 3
    assert s[(P + "score_gsum", lab(kind="nps", window="7d"))] == 25
    assert s[(P + "score_gcount", lab(kind="nps", window="7d"))] == 3
    # score distribution: le=6 holds n5 (6); le=9 adds n2 (9); +Inf = all 3
    assert s[(P + "score_bucket", lab(kind="nps", window="7d", le="6.0"))] == 1
    assert s[(P + "score_bucket", lab(kind="nps", window="7d", le="9.0"))] == 2
    # CSAT 7d: satisfied c1 c2 c5 = 3, neutral c3 c6 = 2, dissatisfied c4 = 1 -> CSAT 3/6 = 50 %
    assert [r("csat", c, "7d") for c in ("satisfied", "neutral", "dissatisfied")] == [3, 2, 1]
    # mean on 1-5: (5 + 4 + 3 + 1 + (1 + 28/9) + 3) / 6 = 20.111 / 6 = 3.352
    assert s[(P + "score_gsum", lab(kind="csat", window="7d"))] == pytest.approx(16 + 37 / 9)
    assert s[(P + "score_gcount", lab(kind="csat", window="7d"))] == 6
    assert r("csat", "satisfied", "7d", "commented_responses") == 1  # c2
    assert r("csat", "dissatisfied", "7d", "commented_responses") == 1  # c4
    # CES 7d: easy e1 e2 e5 = 3, neutral e3, difficult e4; mean (7 + 5 + 4 + 2 + 5.5) / 5 = 4.7
    assert [r("ces", c, "7d") for c in ("easy", "neutral", "difficult")] == [3, 1, 1]
    ces_sum = s[(P + "score_gsum", lab(kind="ces", window="7d"))]
    assert ces_sum / s[(P + "score_gcount", lab(kind="ces", window="7d"))] == pytest.approx(4.7)
    assert (P + "commented_responses", lab(kind="ces", category="neutral", window="7d")) not in s  # "" is no comment
    assert s[(P + "min_responses", lab())] == 30
    assert s[(P + "responses_tracked", lab())] == len(scenario())
    assert_same(s, ref.compute([e.as_reference() for e in scenario()], NOW, voice_params(cfg)))


def test_every_category_published_with_zeros_while_kind_has_data():
    cfg = VoiceConfig()
    idx = engine(cfg).feed([nps("x", NOW - 60, "X", 10)]).index
    fams = {f.name: f for f in idx.collect(NOW)}
    got = {(x.labels["category"], x.labels["window"]): x.value for x in fams[P + "responses"].samples}
    cats, ws = ("promoter", "passive", "detractor"), ("7d", "30d", "90d")
    assert got == {(c, w): float(c == "promoter") for c in cats for w in ws}
    assert {x.labels["kind"] for x in fams[P + "commented_responses"].samples} == {"nps"}
    assert {x.labels["kind"] for x in fams[P + "score"].samples} == {"nps"}  # csat/ces absent: no data
    # once the response leaves the longest window, the kind disappears
    assert not [x for x in VoiceIndex(cfg).collect(NOW) if x.name == P + "responses"][0].samples
    assert not idx.collect(NOW + 91 * DAY)[0].samples


def test_window_edges_with_hourly_buckets():
    cfg = VoiceConfig()
    # the 7d window read at NOW holds buckets starting in [bucket(NOW) - 7d + 1h, bucket(NOW)]
    first = (NOW // H) * H - 7 * DAY + H
    e = engine(cfg).feed([nps("in", first, "IN", 10), nps("out", first - 1, "OUT", 0)])
    s = samples(e.index, NOW)
    assert s[(P + "responses", lab(kind="nps", category="promoter", window="7d"))] == 1
    assert (P + "responses", lab(kind="nps", category="detractor", window="7d")) not in s
    assert s[(P + "responses", lab(kind="nps", category="detractor", window="30d"))] == 1
    # a response timestamped in a bucket after now (clock skew) counts once now reaches it
    e = engine(cfg).feed([nps("f", NOW + H, "F", 10)])
    assert (P + "responses", lab(kind="nps", category="promoter", window="7d")) not in samples(e.index, NOW)
    assert samples(e.index, NOW + H)[(P + "responses", lab(kind="nps", category="promoter", window="7d"))] == 1


def test_comment_text_never_reaches_the_exposition_or_the_state():
    cfg = VoiceConfig()
    secret = "call me at +1 555 0100"
    e = engine(cfg).feed([nps("x", NOW - 60, "X", 2, comment=secret, account="acct-9")])
    text = exposition(e.index, NOW)
    assert 'stream_app_voice_commented_responses{category="detractor",kind="nps",window="7d"} 1.0' in text
    assert 'stream_app_voice_score_bucket{kind="nps",le="2.0",window="7d"} 1.0' in text
    assert "stream_app_voice_min_responses 30.0" in text
    for leak in (secret, "acct-9", '"X"'):
        assert leak not in text
    assert secret not in json.dumps(e.entities["X"].to_dict())


# ----------------------------------------------------------------------------- corrections, duplicates


def test_correction_latest_event_time_wins_in_any_order():
    cfg = VoiceConfig()
    v1 = nps("a", NOW - 10 * DAY, "R", 3)
    v2 = nps("b", NOW - 1 * DAY, "R", 10, comment="changed my mind")
    fwd = engine(cfg).feed([v1, v2])
    rev = engine(cfg).feed([v2, v1])
    assert fwd.entities["R"].to_dict() == rev.entities["R"].to_dict()
    assert fwd.entities["R"].superseded == ("a",)
    s = samples(fwd.index, NOW)
    assert s == samples(rev.index, NOW)
    # counted once, as the winning version, in the window of the winning version's time
    assert s[(P + "responses", lab(kind="nps", category="promoter", window="7d"))] == 1
    assert s[(P + "responses", lab(kind="nps", category="promoter", window="30d"))] == 1
    assert (P + "responses", lab(kind="nps", category="detractor", window="30d")) not in s
    assert s[(P + "commented_responses", lab(kind="nps", category="promoter", window="7d"))] == 1
    assert s[(P + "responses_tracked", lab())] == 1


def test_older_correction_arriving_late_is_recorded_but_loses():
    cfg = VoiceConfig()
    e = engine(cfg).feed([nps("b", NOW - DAY, "R", 10)])
    before = samples(e.index, NOW)
    s0 = e.entities["R"]
    s1, applied = apply(s0, nps("a", NOW - 2 * DAY, "R", 0))
    assert applied and s1.current == s0.current and s1.superseded == ("a",)
    assert contributions(s1, cfg) == contributions(s0, cfg)  # the index does not move
    e.feed([nps("a", NOW - 2 * DAY, "R", 0)])
    assert samples(e.index, NOW) == before
    # its redelivery is a duplicate, as is the winner's
    assert apply(s1, nps("a", NOW - 2 * DAY, "R", 0)) == (s1, False)
    assert apply(s1, nps("b", NOW - DAY, "R", 10))[1] is False


def test_same_time_correction_tie_broken_by_event_id_and_kind_may_change():
    cfg = VoiceConfig()
    t = NOW - DAY
    for order in ([csat("z", t, "R", 5), nps("m", t, "R", 0)], [nps("m", t, "R", 0), csat("z", t, "R", 5)]):
        e = engine(cfg).feed(order)
        s = samples(e.index, NOW)
        assert s[(P + "responses", lab(kind="csat", category="satisfied", window="7d"))] == 1  # "z" > "m"
        assert not [k for k in s if dict(k[1]).get("kind") == "nps"]


def test_duplicate_delivery_is_a_no_op_and_apply_is_pure():
    cfg = VoiceConfig()
    s0, ok0 = apply(None, nps("x", NOW, "R", 9))
    before = json.dumps(s0.to_dict(), sort_keys=True)
    s1, ok1 = apply(s0, nps("x", NOW, "R", 9))
    assert ok0 and not ok1 and s1 is s0
    apply(s0, nps("y", NOW + 1, "R", 1))
    assert json.dumps(s0.to_dict(), sort_keys=True) == before
    e = engine(cfg).feed(scenario() + scenario())
    assert e.duplicates == len(scenario())
    assert samples(e.index, NOW) == samples(engine(cfg).feed(scenario()).index, NOW)


def test_state_round_trip_version_and_rejections():
    s, _ = apply(None, csat("x", NOW, "R", 3, comment="meh"))
    s, _ = apply(s, csat("w", NOW - 5, "R", 4))
    d = s.to_dict()
    vader = VADER.polarity_scores("meh")["compound"]
    assert d == {"v": 1, "r": "R", "c": ["x", NOW, "csat", 3, 1, 5, 1, "acc", vader, ["other"], None], "x": ["w"]}
    old = {"v": 1, "r": "R", "c": ["x", NOW, "csat", 3, 1, 5, 1, "acc"]}  # written before comments were analysed
    assert ResponseState.from_dict(old).facts()[-3:] == (None, (), None)
    assert ResponseState.from_dict(json.loads(json.dumps(d))) == s
    assert s.max_ts() == NOW and s.has_event("w") and s.has_event("x") and not s.has_event("v")
    with pytest.raises(ValueError):
        ResponseState.from_dict({**d, "v": 2})
    with pytest.raises(ValueError):
        apply(s, Ev("t", "ticket.created", NOW, {"response_id": "R"}))
    with pytest.raises(ValueError):
        apply(None, csat("bad", NOW, "R", 6))  # outside 1-5
    with pytest.raises(ValueError):
        apply(None, csat("bad", NOW, "R", 1, lo=1, hi=1))


def test_account_signal_for_customer_health():
    s, _ = apply(None, csat("x", NOW, "R", 8, lo=1, hi=10, comment="private words", account="acct-1"))
    sig = account_signal(s)
    assert sig == {"account_id": "acct-1", "kind": "csat", "score": pytest.approx(7 / 9), "category": "satisfied",
                   "ts": NOW, "has_comment": True, "response_id": "R",
                   "sentiment": VADER.polarity_scores("private words")["compound"], "themes": ["other"]}
    assert "private words" not in json.dumps(sig)
    s2, _ = apply(s, nps("y", NOW + 60, "R", 10, account="acct-1"))  # a correction replaces the signal
    assert account_signal(s2)["score"] == 1.0 and account_signal(s2)["kind"] == "nps"
    assert account_signal(apply(None, nps("z", NOW, "Q", 0))[0])["score"] == 0.0
    assert account_signal(apply(None, nps("z", NOW, "Q", 5, account=None))[0]) is None


# ----------------------------------------------------------------------------- lateness, retention, rebuild


def test_late_event_within_grace_lands_in_its_own_window():
    cfg = VoiceConfig()
    e = engine(cfg).feed([nps("n", NOW, "N", 10), nps("l", NOW - 50 * DAY, "L", 0)])
    assert e.too_late == 0
    s = samples(e.index, NOW)
    assert s[(P + "responses", lab(kind="nps", category="detractor", window="90d"))] == 1
    assert (P + "responses", lab(kind="nps", category="detractor", window="30d")) not in s


def test_too_late_event_is_counted_and_its_state_still_updated():
    cfg = VoiceConfig()  # horizon 90 d + 1 d grace
    e = engine(cfg).feed([nps("n", NOW, "N", 10)])
    # cutoff = bucket_start(NOW - 91 d); a response 95 d old is too late
    e.feed([nps("old", NOW - 95 * DAY, "OLD", 0, comment="x")])
    assert e.too_late == 1
    # responses, commented, score, comment sentiment and comment theme (other) contributions refused
    assert e.index.dropped == 5
    s = samples(e.index, NOW)
    assert s[(P + "window_dropped_contributions_total", lab())] == 5
    # its state was written and served the health view; older than the cutoff it affects no
    # metric any more, so expiry deletes it in the same step and tells health so
    assert [(c.entity, c.signal and c.signal["score"]) for c in e.signals] == [("N", 1.0), ("OLD", 0.0), ("OLD", None)]
    assert s[(P + "responses_tracked", lab())] == 1 and "OLD" not in e.entities
    # a too-late older version of a kept response is recorded in its state (and loses)
    e.feed([nps("n-old", NOW - 95 * DAY, "N", 0)])
    assert e.too_late == 2 and e.entities["N"].superseded == ("n-old",)


def test_retention_deletes_states_without_changing_any_window():
    cfg = VoiceConfig()
    early = [nps("a1", T0, "A", 10), csat("b1", T0 + H, "B", 2, comment="no")]
    later = [nps("z", T0 + 92 * DAY, "Z", 8)]  # cutoff = bucket_start(T0 + 1 d) > T0 + 1 h
    kept = engine(cfg, KeptVoice).feed(early + later)
    pruned = engine(cfg).feed(early + later)
    assert pruned.engine.evicted_entities == 2 and set(pruned.entities) == {"Z"}
    assert retention_until(kept.entities["A"], cfg) == T0
    now = T0 + 92 * DAY + 60
    exp = samples(kept.index, now)
    got = samples(pruned.index, now)
    # responses_tracked counts responses retained at the read time: deleted (pruned) or still held
    # (kept), A and B are past their retention; the gauge is the same either way
    assert got[(P + "responses_tracked", lab())] == exp[(P + "responses_tracked", lab())] == 1
    assert got == exp
    # a correction of a deleted response counts at its own time, exactly as if the state were kept
    fix = [nps("a2", T0 + 92 * DAY + 30, "A", 0)]
    kept.feed(fix)
    pruned.feed(fix)
    got, exp = samples(pruned.index, now), samples(kept.index, now)
    assert got[(P + "responses", lab(kind="nps", category="detractor", window="7d"))] == 1
    untracked = lambda d: {k: v for k, v in d.items() if "tracked" not in k[0]}  # noqa: E731
    assert untracked(got) == untracked(exp)


def test_rebuild_from_states_equals_incremental_index():
    cfg = VoiceConfig()
    e = engine(cfg).feed(scenario())
    fresh = e.rebuilt()
    assert fresh.tracker.watermark() == max(x.ts for x in scenario())  # seeded by the states
    assert samples(fresh.index, NOW) == samples(e.index, NOW)


def test_config_checks_and_shared_guard():
    with pytest.raises(ValueError):
        VoiceConfig(windows=(7 * DAY + 1,))
    with pytest.raises(ValueError):
        VoiceConfig(min_responses=-1)
    shared = LabelGuard()  # a worker-wide guard (team, channel, ...) gains the voice rules
    cfg = VoiceConfig(labels=shared, windows=(DAY,), bucket_seconds=60)
    assert cfg.horizon == DAY + DAY
    assert shared.value("kind", "nps") == "nps" and shared.value("team", "x") == "x"
    assert samples(engine(cfg).feed([nps("x", NOW, "R", 9)]).index, NOW)[
        (P + "responses", lab(kind="nps", category="promoter", window="24h"))] == 1


# ----------------------------------------------------------------------------- property tests vs reference

SCALES = {"csat": [(1, 5), (1, 5), (1, 10), (0, 1), (1, 3)], "ces": [(1, 7), (1, 7), (1, 5), (0, 10)]}
COMMENTS = [None, None, "", "  ", "fine"]


@st.composite
def event_logs(draw, span):
    log = []
    for i in range(draw(st.integers(1, 8))):
        rid = f"R{i}"
        base = draw(st.integers(0, span))
        kind0 = draw(st.sampled_from(["nps", "csat", "ces"]))
        for _ in range(draw(st.integers(1, 3))):  # versions: corrections
            kind = kind0 if draw(st.integers(0, 5)) else draw(st.sampled_from(["nps", "csat", "ces"]))
            t = base + draw(st.integers(-span // 20, span // 10))
            data = dict(response_id=rid, comment=draw(st.sampled_from(COMMENTS)),
                        account_id=draw(st.sampled_from(["a1", None])), ticket_id=None, respondent_id=None)
            if kind == "nps":
                data["score"] = draw(st.integers(0, 10))
            else:
                lo, hi = draw(st.sampled_from(SCALES[kind]))
                data.update(scale_min=lo, scale_max=hi, score=draw(st.integers(lo, hi)))
            eid = f"e{draw(st.integers(0, 10**6)):07d}-{len(log)}"
            log.append(dict(id=eid, type=f"survey.{kind}", time=float(T0 + t), data=data))
    rnd = draw(st.randoms(use_true_random=False))
    delivered = log + [rnd.choice(log) for _ in range(draw(st.integers(0, 4)))]
    rnd.shuffle(delivered)
    now = float(T0 + draw(st.integers(0, span + span // 5)))
    return delivered, now


def _check(cfg, delivered, now):
    run = engine(cfg).feed([Ev(e["id"], e["type"], e["time"], e["data"]) for e in delivered])
    got = samples(run.index, now)
    assert_same(got, ref.compute(delivered, now, voice_params(cfg)))
    assert_same(samples(run.rebuilt().index, now), got)


SMALL = dict(bucket_seconds=60, windows=(3600, 6 * 3600, 86400), min_responses=5)
# The property logs' grace covers the whole log: nothing is too late or expired, so any arrival
# order gives the same index at any ``now``. Lateness and expiry have their own tests above.
LOG_GRACE = 200 * DAY


@given(event_logs(span=2 * DAY))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_index_matches_reference_small_windows(case):
    _check(VoiceConfig(**SMALL, grace_seconds=LOG_GRACE), *case)


@given(event_logs(span=120 * DAY))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_index_matches_reference_default_windows(case):
    _check(VoiceConfig(grace_seconds=LOG_GRACE), *case)


def test_random_orderings_give_identical_index():
    cfg = VoiceConfig()
    evs = scenario() + [nps("fix1", NOW - 0.5 * DAY, "N6", 10), csat("fix2", NOW - 30 * DAY, "C1", 1)]
    expected = samples(engine(cfg).feed(evs).index, NOW)
    for shuffled in arrival_orders(evs, seed=7, runs=20, redelivered=4):
        assert_same(samples(engine(cfg).feed(shuffled).index, NOW), expected)


@pytest.mark.parametrize("seed", [1, 7, 23])
def test_generator_logs_match_reference(seed):
    from stream_app.events import EventRejected, decode_event
    from stream_app.tools.generator import Faults, Profile, generate

    start = 1_750_000_000.0
    log = generate(seed, start, 3 * H, 2.0, profile=Profile.fast(),
                   faults=Faults(duplicate=0.05, out_of_order=0.05, late=0.05, invalid=0.02, late_by=1800.0))
    decoded = []
    for g in log:
        if g.family != "survey":
            continue
        try:
            decoded.append(decode_event(g.value, expected_family="survey", now=start + 86400))
        except EventRejected:
            assert g.is_invalid
    assert len(decoded) > 50 and {e.type for e in decoded} == {"survey.nps", "survey.csat", "survey.ces"}
    dicts = [plain(e) for e in decoded]
    for cfg, now in ((VoiceConfig(), start + 4 * H), (VoiceConfig(**SMALL), start + 3 * H + 60)):
        run = engine(cfg).feed(decoded)
        assert run.duplicates == len(decoded) - len({e.id for e in decoded})
        got = samples(run.index, now)
        assert_same(got, ref.compute(dicts, now, voice_params(cfg)))
        assert got[(P + "responses_tracked", lab())] == len({e.subject for e in decoded})


# ----------------------------------------------------------------------------- documented PromQL

NPS_EXPR = """
100 * (
    sum by (window) (stream_app_voice_responses{kind="nps",category="promoter"})
  - sum by (window) (stream_app_voice_responses{kind="nps",category="detractor"})
) / sum by (window) (stream_app_voice_responses{kind="nps"})
"""
GATE = (' and on (window) (sum by (window) (stream_app_voice_responses{kind="nps"})'
        ' >= scalar(max(stream_app_voice_min_responses)))')
CSAT_EXPR = ('100 * sum by (window) (stream_app_voice_responses{kind="csat",category="satisfied"})'
             ' / sum by (window) (stream_app_voice_responses{kind="csat"})')
MEAN_EXPR = ('sum by (kind, window) (stream_app_voice_score_gsum)'
             ' / sum by (kind, window) (stream_app_voice_score_gcount)')


def test_documented_promql_aggregates_two_workers_exactly(promtool, tmp_path):
    """Split the scenario over two workers, feed their exposed samples to Prometheus (promtool)
    and check the documented expressions give the single-log values."""
    cfg = VoiceConfig(min_responses=4)
    evs = scenario()
    workers = [engine(cfg).feed(evs[0::2]), engine(cfg).feed(evs[1::2])]
    series = []
    for i, w in enumerate(workers):
        for fam in w.index.collect(NOW):
            for smp in fam.samples:
                labels = {**smp.labels, "instance": f"w{i}"}
                sel = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
                series.append({"series": f"{smp.name}{{{sel}}}", "values": f"{smp.value!r}"})
    whole = ref.compute([e.as_reference() for e in evs], NOW, voice_params(cfg))
    tot = lambda kind, w, cat=None: sum(  # noqa: E731
        v for (n, lb), v in whole.items() if n == P + "responses" and dict(lb)["kind"] == kind
        and dict(lb)["window"] == w and (cat is None or dict(lb)["category"] == cat))
    def mean(kind, w):
        return whole[(P + "score_gsum", lab(kind=kind, window=w))] / whole[(P + "score_gcount", lab(kind=kind, window=w))]

    exprs = [
        # nps 7d has 3 responses < min 4: the gate drops it
        (NPS_EXPR + GATE, [{"labels": f'{{window="{w}"}}', "value": ref.nps(whole, w)} for w in ("30d", "90d")]),
        (NPS_EXPR, [{"labels": f'{{window="{w}"}}', "value": ref.nps(whole, w)} for w in ("7d", "30d", "90d")]),
        (CSAT_EXPR, [{"labels": f'{{window="{w}"}}', "value": 100 * tot("csat", w, "satisfied") / tot("csat", w)}
                     for w in ("7d", "30d", "90d")]),
        (MEAN_EXPR, [{"labels": f'{{kind="{k}", window="{w}"}}', "value": mean(k, w)}
                     for k in ("nps", "csat", "ces") for w in ("7d", "30d", "90d")]),
    ]
    test = {"rule_files": [], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": series,
        "promql_expr_test": [{"expr": e, "eval_time": "0m", "exp_samples": x} for e, x in exprs],
    }]}
    path = tmp_path / "voice_test.yml"
    path.write_text(json.dumps(test))  # JSON is YAML
    res = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
