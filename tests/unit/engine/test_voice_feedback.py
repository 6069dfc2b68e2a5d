"""Qualitative feedback: comment sentiment and themes (docs/metrics.md, Qualitative feedback),
hand-worked through the real engine step, and the lowest-sentiment comments on an account's
health facts. Sentiments are the VADER model's own scores (the model the definition names); the
theme matches, bucket placements and sums are worked here."""

from __future__ import annotations

import json
import logging

import pytest
from pydantic import ValidationError
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from stream_app.config import Settings
from stream_app.engine import feedback
from stream_app.engine.health import HealthConfig, HealthIndex
from stream_app.engine.labels import LabelGuard
from stream_app.engine.voice import VoiceConfig, VoiceFamily
from stream_app.worker.families import build_families, health_config
from tests.reference import voice_reference as ref
from tests.support.engine import EngineRunner
from tests.support.references import voice_params
from tests.support.samples import assert_same, lab, samples
from tests.unit.engine.test_voice import DAY, NOW, csat, nps

P = "stream_app_voice_"
V = SentimentIntensityAnalyzer().polarity_scores
THEMES = {"billing": ("invoice", "charged twice"), "speed": ("slow",)}

C_N1 = "I was charged twice and the invoice is wrong"  # billing (both phrases: counted once)
C_N2 = "So slow, and charged  Twice!"  # billing (case, double space) and speed
C_N3 = "Love it"  # other
C_N4 = "slowness"  # other: themes match whole words
C_C1 = "slow"  # speed


def scenario():
    a = lambda days: NOW - days * DAY  # noqa: E731
    return [
        nps("n1", a(1), "N1", 2, comment=C_N1),
        nps("n2", a(2), "N2", 3, comment=C_N2),
        nps("n3", a(3), "N3", 10, comment=C_N3),
        nps("n4", a(10), "N4", 5, comment=C_N4),
        nps("n5", a(1), "N5", 0),  # no comment: no sentiment, no theme
        csat("c1", a(1), "C1", 1, comment=C_C1),
    ]


def run(events, **cfg):
    return EngineRunner(VoiceFamily(VoiceConfig(themes=THEMES, **cfg))).feed(events)


def test_the_model_scores_the_scenario_comments_where_the_hand_work_assumes():
    """Preconditions of the bucket placements below (VADER's lexicon, not our code)."""
    assert V(C_N1)["compound"] <= -0.5
    assert -0.5 < V(C_N2)["compound"] <= -0.05
    assert V(C_N3)["compound"] > 0.5
    assert V(C_N4)["compound"] == 0.0 and V(C_C1)["compound"] == 0.0


def test_themes_whole_words_phrases_and_other():
    m = feedback.ThemeMap(THEMES)
    assert m.labels == ("billing", "speed", "other")
    assert [m.themes(c) for c in (C_N1, C_N2, C_N3, C_N4, C_C1)] == [
        ("billing",), ("billing", "speed"), ("other",), ("other",), ("speed",)]
    assert m.themes("CHARGED\ntwice") == ("billing",)
    assert m.themes("charged, twice") == ("billing",)  # punctuation is no word
    assert m.themes("twice charged") == ("other",)  # a phrase is its words in order
    with pytest.raises(ValueError):
        feedback.ThemeMap({"other": ("x",)})


def test_hand_worked_sentiment_and_themes():
    cfg_prm = voice_params(VoiceConfig(themes=THEMES))
    e = run(scenario())
    s = samples(e.index, NOW)

    def th(kind, cat, theme, w):
        return s.get((P + "comment_themes", lab(kind=kind, category=cat, theme=theme, window=w)), 0)

    def sent(part, kind, cat, w, **extra):
        return s.get((P + "comment_sentiment_" + part, lab(kind=kind, category=cat, window=w, **extra)), 0)

    # 7d: detractors n1 (billing), n2 (billing, speed); n5 has no comment; promoter n3 (other)
    assert [th("nps", "detractor", t, "7d") for t in ("billing", "speed", "other")] == [2, 1, 0]
    assert th("nps", "promoter", "other", "7d") == 1
    # 30d adds n4 (detractor, "slowness": other)
    assert [th("nps", "detractor", t, "30d") for t in ("billing", "speed", "other")] == [2, 1, 1]
    assert th("csat", "dissatisfied", "speed", "7d") == 1
    # sentiment of the 7d detractor comments: n1 <= -0.5, n2 in (-0.5, -0.05]
    assert sent("gcount", "nps", "detractor", "7d") == 2
    assert sent("gsum", "nps", "detractor", "7d") == pytest.approx(V(C_N1)["compound"] + V(C_N2)["compound"])
    assert [sent("bucket", "nps", "detractor", "7d", le=le) for le in ("-0.5", "-0.05", "0.05", "0.5", "+Inf")] == [
        1, 2, 2, 2, 2]
    # 30d: n4's 0.0 is neutral (-0.05, 0.05]
    assert [sent("bucket", "nps", "detractor", "30d", le=le) for le in ("-0.5", "-0.05", "0.05", "0.5", "+Inf")] == [
        1, 2, 3, 3, 3]
    # the promoter's 'Love it' is strongly positive: only in +Inf
    assert [sent("bucket", "nps", "promoter", "7d", le=le) for le in ("0.5", "+Inf")] == [0, 1]
    # passives and the csat neutral/satisfied cells are published at zero (the kinds have data)
    z = samples(e.index, NOW, zeros=True)
    assert z[(P + "comment_themes", lab(kind="nps", category="passive", theme="billing", window="90d"))] == 0
    assert z[(P + "comment_sentiment_gcount", lab(kind="csat", category="satisfied", window="7d"))] == 0
    assert (P + "comment_themes", lab(kind="ces", category="easy", theme="other", window="7d")) not in z
    assert_same(s, ref.compute([x.as_reference() for x in scenario()], NOW, cfg_prm))


def test_a_correction_moves_its_comment_and_a_redelivery_counts_once():
    e = run(scenario())
    before = samples(e.index, NOW)
    e.feed(scenario())  # redelivered: nothing changes
    assert samples(e.index, NOW) == before
    # N2 corrected to a promoter without a comment: its billing/speed detractor themes leave
    e.feed([nps("n2b", NOW - 2 * DAY + 60, "N2", 9)])
    s = samples(e.index, NOW)
    assert s[(P + "comment_themes", lab(kind="nps", category="detractor", theme="billing", window="7d"))] == 1
    assert (P + "comment_themes", lab(kind="nps", category="detractor", theme="speed", window="7d")) not in s
    assert s[(P + "comment_sentiment_gcount", lab(kind="nps", category="detractor", window="7d"))] == 1
    events = [*scenario(), nps("n2b", NOW - 2 * DAY + 60, "N2", 9)]
    assert_same(s, ref.compute([x.as_reference() for x in events], NOW, voice_params(VoiceConfig(themes=THEMES))))


def test_comment_text_stays_out_of_state_signals_and_logs_unless_kept(caplog):
    caplog.set_level(logging.DEBUG)
    e = run(scenario())
    stored = json.dumps(e.stored())
    signals = json.dumps([c.message() for c in e.signals])
    for text in (C_N1, C_N2, C_N3):
        assert text not in stored and text not in signals and text not in caplog.text
    kept = run(scenario(), keep_comment_text=True)
    assert C_N1 in json.dumps(kept.stored())
    assert C_N1 in json.dumps([c.message() for c in kept.signals])
    assert samples(kept.index, NOW) == samples(e.index, NOW)


def health_of(runner, cfg):
    idx = HealthIndex(cfg)
    for change in runner.signals:
        idx.apply(change.message(), change.account_id)
    return idx


def test_lowest_sentiment_comments_on_the_account_health_facts():
    cfg = HealthConfig(voice_comments_shown=2)
    _, facts = health_of(run(scenario()), cfg).evaluate("acc", NOW)
    # commented responses in the 90 d voice window by sentiment: n1 (<= -0.5), n2, then the
    # 0.0 ties n4 (10 d) and c1 (1 d): the newer first; two shown
    low = facts["lowest_sentiment_comments"]
    assert [c["response_id"] for c in low] == ["N1", "N2"]
    assert low[0] == {"response_id": "N1", "ts": NOW - DAY, "kind": "nps", "category": "detractor",
                      "sentiment": V(C_N1)["compound"], "themes": ["billing"]}
    _, facts4 = health_of(run(scenario()), HealthConfig(voice_comments_shown=4)).evaluate("acc", NOW)
    assert [c["response_id"] for c in facts4["lowest_sentiment_comments"]] == ["N1", "N2", "C1", "N4"]
    _, kept = health_of(run(scenario(), keep_comment_text=True), cfg).evaluate("acc", NOW)
    assert [c["comment"] for c in kept["lowest_sentiment_comments"]] == [C_N1, C_N2]
    # outside the voice window: gone
    _, later = health_of(run(scenario()), cfg).evaluate("acc", NOW + 89 * DAY)
    assert [c["response_id"] for c in later["lowest_sentiment_comments"]] == []


def test_settings_wire_themes_text_and_comments_shown():
    s = Settings(voice_comment_themes={"price": ["expensive"]}, voice_keep_comment_text=True,
                 health_voice_comments_shown=5)
    voice = next(f for f in build_families(s) if f.name == "voice")
    assert voice.config.theme_map.labels == ("price", "other") and voice.config.keep_comment_text
    assert health_config(s).voice_comments_shown == 5
    assert Settings().voice_comment_themes.keys() == {"billing", "performance", "onboarding", "bugs", "support"}
    for bad in ({"other": ["x"]}, {"Bad Label": ["x"]}, {f"t{i}": ["x"] for i in range(21)}):
        with pytest.raises(ValidationError):
            Settings(voice_comment_themes=bad)


def test_a_theme_no_longer_configured_counts_as_other():
    """A state analysed under an older map keeps its themes; the label guard bounds them."""
    old = run(scenario())
    fam = VoiceFamily(VoiceConfig(themes={"speed": ("slow",)}, labels=LabelGuard()))
    e = EngineRunner(fam)
    for key, state in old.entities.items():
        e.states.put(key, 0, state)
    s = samples(e.rebuilt().index, NOW)
    assert s[(P + "comment_themes", lab(kind="nps", category="detractor", theme="other", window="7d"))] == 2
