"""Independent batch computation of the voice-of-the-customer metrics, written from docs/metrics.md.

No code shared with stream_app.engine: it sees the whole log at once, dedupes by event id, keeps for
each response the version with the latest (time, event id), and recomputes every sample at ``now``
as ``{(sample_name, frozenset(labels.items())): value}`` with zero samples left out.

Events are dicts: {"id", "type", "time" (epoch seconds), "data": {...}}.
Params (plain dict): bucket (s), windows (s), min_responses, themes (theme -> phrases).

Comments: the sentiment is the VADER model's compound score (vaderSentiment is the model the
definition names, so the reference calls it too) of the first 2000 characters; themes are matched
here on their own, on the comment's text with everything but letters, digits and apostrophes
turned into single spaces.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from .common import Samples, first_deliveries, window_name, window_test

P = "stream_app_voice_"
SCALES = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}  # canonical (and default) scales


SENTIMENT_EDGES = (-0.5, -0.05, 0.05, 0.5)
_VADER = SentimentIntensityAnalyzer()


def _spaced(text):
    return " " + " ".join(re.sub(r"[^a-z0-9']+", " ", text.lower()).split()) + " "


def comment_themes(text, themes):
    """Themes whose phrase appears in the comment as whole words; ("other",) for none."""
    t = _spaced(text[:2000])
    found = sorted(name for name, phrases in themes.items()
                   if any(_spaced(p).strip() and _spaced(p) in t for p in phrases))
    return found or ["other"]


def _le(x):
    return f"{float(x)}"


def classify(kind, score, lo, hi):
    """NPS: promoters 9-10, passives 7-8, detractors 0-6. CSAT: satisfied if the score sits in the
    top quarter of its scale (4-5 of 1-5), dissatisfied in the bottom quarter (1-2). CES: easy in
    the top third (5-7 of 1-7), difficult in the bottom third (1-3). Anything between: neutral."""
    if kind == "nps":
        if score in (9, 10):
            return "promoter"
        if score in (7, 8):
            return "passive"
        return "detractor"
    p = Fraction(score - lo, hi - lo)
    cut = Fraction(3, 4) if kind == "csat" else Fraction(2, 3)
    names = ("satisfied", "neutral", "dissatisfied") if kind == "csat" else ("easy", "neutral", "difficult")
    if p >= cut:
        return names[0]
    if p <= 1 - cut:
        return names[2]
    return names[1]


def normalise(kind, score, lo, hi):
    clo, chi = SCALES[kind]
    return clo + (chi - clo) * Fraction(score - lo, hi - lo)


def compute(events, now, prm):
    latest = {}
    for e in first_deliveries(events):
        rid = e["data"]["response_id"]
        cur = latest.get(rid)
        if cur is None or (e["time"], e["id"]) > (cur["time"], cur["id"]):
            latest[rid] = e

    out = Samples()
    put = out.put
    in_window = window_test(now, prm["bucket"])

    put(P + "min_responses", {}, prm["min_responses"])
    # retained at now: until the cutoff a watermark at now gives passes the latest version's time
    kept_from = math.floor((now - prm.get("horizon", math.inf)) / prm["bucket"]) * prm["bucket"]
    put(P + "responses_tracked", {}, sum(1 for e in latest.values() if e["time"] >= kept_from))
    for e in latest.values():
        kind = e["type"].split(".")[1]
        d = e["data"]
        lo, hi = SCALES[kind]  # NPS: always 0-10; CSAT/CES: the declared scale, contract defaults
        if kind != "nps":
            lo, hi = d.get("scale_min", lo), d.get("scale_max", hi)
        score = d["score"]
        cat = classify(kind, score, lo, hi)
        commented = isinstance(d.get("comment"), str) and d["comment"].strip() != ""
        if commented:
            sent = _VADER.polarity_scores(d["comment"][:2000])["compound"]
            themes = comment_themes(d["comment"], prm["themes"])
        v = float(normalise(kind, score, lo, hi))
        clo, chi = SCALES[kind]
        for w in prm["windows"]:
            if not in_window(e["time"], w):
                continue
            wl = window_name(w)
            put(P + "responses", dict(kind=kind, category=cat, window=wl), 1)
            if commented:
                put(P + "commented_responses", dict(kind=kind, category=cat, window=wl), 1)
                lab = dict(kind=kind, category=cat, window=wl)
                for edge in SENTIMENT_EDGES:
                    if sent <= edge:
                        put(P + "comment_sentiment_bucket", {**lab, "le": _le(edge)}, 1)
                put(P + "comment_sentiment_bucket", {**lab, "le": "+Inf"}, 1)
                put(P + "comment_sentiment_gcount", lab, 1)
                put(P + "comment_sentiment_gsum", lab, sent)
                for theme in themes:
                    put(P + "comment_themes", {**lab, "theme": theme}, 1)
            for edge in range(clo, chi + 1):
                if v <= edge:
                    put(P + "score_bucket", dict(kind=kind, window=wl, le=_le(edge)), 1)
            put(P + "score_bucket", dict(kind=kind, window=wl, le="+Inf"), 1)
            put(P + "score_gcount", dict(kind=kind, window=wl), 1)
            put(P + "score_gsum", dict(kind=kind, window=wl), v)
    return out


def nps(samples, window):
    """NPS from samples, the way the documented PromQL computes it (None without responses)."""
    def total(cat=None):
        return sum(
            v for (n, lab), v in samples.items()
            if n == P + "responses" and dict(lab)["kind"] == "nps" and dict(lab)["window"] == window
            and (cat is None or dict(lab)["category"] == cat)
        )
    n = total()
    return None if not n else 100 * (total("promoter") - total("detractor")) / n


def lowest_comments(events, account, now, n, window):
    """The account's commented responses (winning versions) with event time in (now - window,
    now], by VADER sentiment, then the newer first, then response id: [(response_id, sentiment)]
    of the first ``n`` (docs/metrics.md, Qualitative feedback, account health API)."""
    latest = {}
    for e in first_deliveries(events):
        if not e["type"].startswith("survey."):
            continue
        rid = e["data"]["response_id"]
        cur = latest.get(rid)
        if cur is None or (e["time"], e["id"]) > (cur["time"], cur["id"]):
            latest[rid] = e
    rows = []
    for rid, e in latest.items():
        c = e["data"].get("comment")
        if e["data"].get("account_id") != account or not (isinstance(c, str) and c.strip()):
            continue
        if now - window < e["time"] <= now:
            rows.append((_VADER.polarity_scores(c[:2000])["compound"], -e["time"], rid))
    return [(rid, s) for s, _, rid in sorted(rows)[:n]]
