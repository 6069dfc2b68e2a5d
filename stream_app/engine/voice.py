"""Voice of the customer (survey) metrics: per-response state, its contributions, and the index.

Same engine pattern as ``stream_app.engine.support`` (read its module docstring): the state of one
survey response (a Faust table keyed by ``response_id``) is the single source of truth,
``contributions(state, cfg)`` derives what it adds to the aggregates, ``VoiceIndex`` holds them.

A response is one answer; the same ``response_id`` sent again with a new event id is a
**correction**: the version with the latest event time wins (ties: the greater event id), whatever
the arrival order, and the response counts once, in the window of the winning version's time.
Only the winning version is kept (plus the ids of the others, to recognise redeliveries), so a
state is a few dozen bytes. A comment is analysed when its event is applied (``feedback``: its
sentiment and themes are kept); its text is kept only with ``keep_comment_text`` (off by default:
the text then never reaches Redis or the health topic).

Scores are put on each kind's canonical scale so responses on other declared scales mix:
NPS is fixed 0-10; CSAT is normalised to 1-5 and CES to 1-7 linearly from the declared
``scale_min..scale_max``. Definitions: docs/metrics.md (Voice of the customer).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)

from stream_app.engine import feedback
from stream_app.engine.expiry import count_retained, retention_bucket
from stream_app.engine.index import ContributionIndex
from stream_app.engine.family import Family
from stream_app.engine.labels import LabelGuard, LabelRule
from stream_app.engine.windows import RollingCounter, RollingHistogram, check_windows, window_label
from stream_app.engine.fields import field as _field

PREFIX = "stream_app_voice_"
KINDS = ("nps", "csat", "ces")
TYPE_KIND = {"survey.nps": "nps", "survey.csat": "csat", "survey.ces": "ces"}
#: categories per kind, best first
CATEGORIES: dict[str, tuple[str, str, str]] = {
    "nps": ("promoter", "passive", "detractor"),
    "csat": ("satisfied", "neutral", "dissatisfied"),
    "ces": ("easy", "neutral", "difficult"),
}
#: canonical scale of each kind (also the default declared scale of the contract)
CANONICAL: dict[str, tuple[int, int]] = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}
#: top category threshold as a fraction of the scale, (num, den): position p = (score - min) /
#: (max - min) >= num/den is top (4-5 of 1-5, 5-7 of 1-7); p <= 1 - num/den is bottom (1-2, 1-3).
TOP_FRACTION: dict[str, tuple[int, int]] = {"csat": (3, 4), "ces": (2, 3)}
#: score histogram edges per kind: every point of the canonical scale
SCORE_EDGES: dict[str, tuple[int, ...]] = {k: tuple(range(lo, hi + 1)) for k, (lo, hi) in CANONICAL.items()}
LABELS = ("kind", "category")
#: comment sentiment histogram edges (VADER compound, -1..1): negative <= -0.05 < neutral <= 0.05
#: < positive (VADER's own cut-offs), and the strong ends beyond +-0.5
SENTIMENT_EDGES = (-0.5, -0.05, 0.05, 0.5)
DAY = 86400

Contribution = tuple[str, tuple[str, ...], float | None, Any]


def voice_label_rules() -> dict[str, LabelRule]:
    """Both labels are computed here from closed sets; allow-lists make that a checked fact."""
    return {
        "kind": LabelRule(allow=frozenset(KINDS)),
        "category": LabelRule(allow=frozenset(c for cs in CATEGORIES.values() for c in cs)),
    }


# --------------------------------------------------------------------------- scoring


def category(kind: str, score: int, scale_min: int, scale_max: int) -> str:
    """Category of a score on its declared scale (NPS: the scale is always 0-10)."""
    if kind == "nps":
        return "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"
    num, den = TOP_FRACTION[kind]
    pos, span = score - scale_min, scale_max - scale_min
    # integer arithmetic: p >= num/den  <=>  pos*den >= num*span (no float edge cases)
    if pos * den >= num * span:
        return CATEGORIES[kind][0]
    if pos * den <= (den - num) * span:
        return CATEGORIES[kind][2]
    return CATEGORIES[kind][1]


def unit_score(kind: str, score: int, scale_min: int, scale_max: int) -> float:
    """Score as a position on its scale, 0 (worst) .. 1 (best)."""
    return (score - scale_min) / (scale_max - scale_min)


def normalized_score(kind: str, score: int, scale_min: int, scale_max: int) -> float:
    """Score on the kind's canonical scale: NPS as is, CSAT on 1-5, CES on 1-7 (linear)."""
    if kind == "nps":
        return float(score)
    lo, hi = CANONICAL[kind]
    if (scale_min, scale_max) == (lo, hi):
        return float(score)  # exact on the usual scale
    return lo + (hi - lo) * (score - scale_min) / (scale_max - scale_min)


# --------------------------------------------------------------------------- configuration


@dataclass
class VoiceConfig:
    """Everything the voice metrics need. Hourly buckets: the windows are days long, so a
    minute grid would only cost memory (90 d = 2160 hourly buckets per store)."""

    bucket_seconds: int = 3600
    windows: tuple[int, ...] = (7 * DAY, 30 * DAY, 90 * DAY)
    grace_seconds: int = DAY  # survey tools deliver late; must cover future skew + one bucket
    min_responses: int = 30
    #: theme -> keywords/phrases (feedback.ThemeMap); comments about none are about ``other``
    themes: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(feedback.DEFAULT_THEMES))
    #: keep the comment text in the response state and its account signal (Redis, health topic)
    keep_comment_text: bool = False
    labels: LabelGuard = field(default_factory=lambda: LabelGuard(voice_label_rules()))

    def __post_init__(self) -> None:
        self.windows = check_windows(self.windows, self.bucket_seconds)
        if self.grace_seconds < 0:
            raise ValueError("grace_seconds must be >= 0")
        if self.min_responses < 0:
            raise ValueError("min_responses must be >= 0")
        # a worker-wide guard without our rules gets them (allow-lists are stateless, so adding
        # them to a shared guard changes nothing for other families)
        for name, rule in voice_label_rules().items():
            self.labels.rules.setdefault(name, rule)
        self.theme_map = feedback.ThemeMap(self.themes)
        self.labels.rules.setdefault("theme", LabelRule(allow=frozenset(self.theme_map.labels)))

    @property
    def max_window(self) -> int:
        return max(self.windows)

    @property
    def horizon(self) -> int:
        """max window + grace: what WatermarkTracker needs."""
        return self.max_window + self.grace_seconds


# --------------------------------------------------------------------------- state


class ResponseFacts(NamedTuple):
    """The winning version of a response."""

    event_id: str
    ts: float
    kind: str
    score: int
    scale_min: int
    scale_max: int
    has_comment: bool
    account_id: str | None
    sentiment: float | None  # VADER compound of the comment, None without one
    themes: tuple[str, ...]  # themes of the comment, () without one
    text: str | None  # the comment, only with keep_comment_text

    @property
    def category(self) -> str:
        return category(self.kind, self.score, self.scale_min, self.scale_max)

    @property
    def normalized(self) -> float:
        return normalized_score(self.kind, self.score, self.scale_min, self.scale_max)


@dataclass(slots=True)
class ResponseState:
    """One survey response: its winning version and the ids of the versions it beat.

    current:    [event_id, ts, kind, score, scale_min, scale_max, has_comment, account_id,
                 sentiment, themes, text]  (states written before comments were analysed have
                 the first 8: no sentiment, no themes)
    superseded: sorted ids of the other versions seen (corrections that lost, or were overtaken)
    """

    response_id: str
    current: list
    superseded: tuple[str, ...] = ()

    def has_event(self, event_id: str) -> bool:
        return event_id == self.current[0] or event_id in self.superseded

    def facts(self) -> ResponseFacts:
        eid, ts, kind, score, lo, hi, com, acc, *rest = self.current
        sent, themes, text = (*rest, None, None, None)[:3]
        return ResponseFacts(eid, ts, kind, score, lo, hi, bool(com), acc, sent, tuple(themes or ()), text)

    def max_ts(self) -> float:
        """Latest event time recorded: the winner's (it has the latest time by definition)."""
        return self.current[1]

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"v": 1, "r": self.response_id, "c": self.current}
        if self.superseded:
            out["x"] = list(self.superseded)
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> ResponseState:
        if d.get("v") != 1:
            raise ValueError(f"unsupported survey response state version {d.get('v')!r}")
        return cls(d["r"], list(d["c"]), tuple(d.get("x", ())))


def _fact(event: Any, cfg: VoiceConfig) -> list:
    kind = TYPE_KIND.get(event.type)
    if kind is None:
        raise ValueError(f"not a survey event type: {event.type!r}")
    data = event.data
    score = int(_field(data, "score"))
    if kind == "nps":
        lo, hi = CANONICAL["nps"]  # fixed scale: the contract has no scale fields for NPS
    else:
        dlo, dhi = CANONICAL[kind]
        lo = int(_field(data, "scale_min", dlo))
        hi = int(_field(data, "scale_max", dhi))
    if not (lo < hi and lo <= score <= hi):
        raise ValueError(f"survey score outside its scale ({kind})")  # no values: personal data
    comment = _field(data, "comment")
    has_comment = 1 if isinstance(comment, str) and comment.strip() else 0
    acc = _field(data, "account_id")
    fact = [str(event.id), float(event.ts), kind, score, lo, hi, has_comment, None if acc is None else str(acc)]
    if has_comment:
        fact += [feedback.sentiment(comment), list(cfg.theme_map.themes(comment)),
                 comment if cfg.keep_comment_text else None]
    return fact


def apply(state: ResponseState | None, event: Any, cfg: VoiceConfig | None = None) -> tuple[ResponseState, bool]:
    """Record a survey event. Pure: never mutates ``state``.

    ``event`` needs ``.id``, ``.type``, ``.ts`` and ``.data`` (model or dict), as produced by
    ``stream_app.events.decode_event``. A new event id for a known response is a correction:
    the version with the latest ``(ts, event id)`` wins. Returns ``(state, False)`` for a
    redelivery (an event id already seen, winning or not). Raises ValueError for non-survey types
    and for a score outside its scale (the decoder rejects those; dicts are not validated).
    """
    fact = _fact(event, cfg or _default_config())
    eid = fact[0]
    if state is None:
        rid = _field(event.data, "response_id") or getattr(event, "subject", None)
        if not rid:
            raise ValueError("survey event without response_id")
        return ResponseState(str(rid), fact), True
    if state.has_event(eid):
        return state, False
    cur = state.current
    if (fact[1], eid) > (cur[1], cur[0]):
        return ResponseState(state.response_id, fact, tuple(sorted((*state.superseded, cur[0])))), True
    return ResponseState(state.response_id, cur, tuple(sorted((*state.superseded, eid)))), True


@lru_cache(maxsize=1)
def _default_config() -> VoiceConfig:
    """The configuration :func:`apply` analyses comments with when called without one (tests)."""
    return VoiceConfig()


def contributions(state: ResponseState, cfg: VoiceConfig) -> list[Contribution]:
    """Everything one response adds to the voice aggregates, at the winning version's time."""
    f = state.facts()
    lab = cfg.labels.labels(LABELS, (f.kind, f.category))
    out: list[Contribution] = [
        ("tracked", (retention_bucket(retention_until(state, cfg), cfg.bucket_seconds),), None, 1),
        ("responses", lab, f.ts, 1),
        ("score", lab[:1], f.ts, f.normalized),
    ]
    if f.has_comment:
        out.append(("commented", lab, f.ts, 1))
        if f.sentiment is not None:
            out.append(("sentiment", lab, f.ts, f.sentiment))
            out.extend(("themes", (*lab, cfg.labels.value("theme", t)), f.ts, 1) for t in f.themes)
    return out


def retention_until(state: ResponseState, cfg: VoiceConfig) -> float:
    """Event time of the winning version: once the eviction cutoff (watermark - longest window -
    grace) passes it, the response is outside every window and its state may be deleted. A
    correction arriving after that starts a fresh state and counts at its own time, which is what
    a kept state would have done too (it would have won)."""
    return state.current[1]


def account_signal(state: ResponseState) -> dict | None:
    """What the customer-health work needs from a response (never the comment text), or None
    if the response names no account. ``score`` is 0 (worst) .. 1 (best) on the declared scale."""
    f = state.facts()
    if f.account_id is None:
        return None
    out = {
        "account_id": f.account_id,
        "kind": f.kind,
        "score": unit_score(f.kind, f.score, f.scale_min, f.scale_max),
        "category": f.category,
        "ts": f.ts,
        "has_comment": f.has_comment,
        "response_id": state.response_id,
    }
    if f.sentiment is not None:
        out.update(sentiment=f.sentiment, themes=list(f.themes))
        if f.text is not None:
            out["comment"] = f.text
    return out


class VoiceFamily(Family[ResponseState, VoiceConfig]):
    """Survey responses (docs/metrics.md, Voice of the customer). Keyed by response id."""

    name = "voice"
    event_family = "survey"
    table = "survey_responses"

    def from_stored(self, stored: Mapping) -> ResponseState:
        return ResponseState.from_dict(stored)

    def to_stored(self, state: ResponseState) -> dict:
        return state.to_dict()

    def apply(self, state: ResponseState | None, event: Any) -> tuple[ResponseState, bool]:
        return apply(state, event, self.config)

    def contributions(self, state: ResponseState) -> list[Contribution]:
        return contributions(state, self.config)

    def new_index(self) -> VoiceIndex:
        return VoiceIndex(self.config)

    def max_ts(self, state: ResponseState) -> float | None:
        return state.max_ts()

    def account_signal(self, state: ResponseState) -> dict | None:
        return account_signal(state)

    def retention_until(self, state: ResponseState) -> float:
        return retention_until(state, self.config)


# --------------------------------------------------------------------------- index

_COUNTS = {
    "responses": (
        "responses",
        "Survey responses in the window by kind and category (latest version of each response, by "
        "its event time). NPS = (promoter - detractor) / all nps responses.",
    ),
    "commented": (
        "commented_responses",
        "Responses in the window with a non-empty comment (the text is never exposed).",
    ),
}


class VoiceIndex(ContributionIndex):
    """Voice aggregates derived from response states. Not thread-safe (use the event loop)."""

    def _reset(self) -> None:
        cfg = self.cfg
        g = cfg.bucket_seconds
        self._counts = {k: RollingCounter(cfg.windows, g) for k in _COUNTS}
        self._scores = {k: RollingHistogram(SCORE_EDGES[k], cfg.windows, g) for k in KINDS}
        self._sentiment = RollingHistogram(SENTIMENT_EDGES, cfg.windows, g)  # by kind, category
        self._themes = RollingCounter(cfg.windows, g)  # by kind, category, theme
        self._tracked: dict[tuple, int] = {}  # (retention bucket,) -> responses
        self.dropped = 0  # contributions refused because their bucket was already evicted

    # -- updates ----------------------------------------------------------
    def _apply(self, c: Contribution, k: int) -> int:
        """Add (k > 0) or retract (k < 0) a contribution k times; returns adds dropped."""
        name, labels, ts, value = c
        store = self._counts.get(name)
        if store is not None:
            return 0 if store.add(labels, ts, k * value) or k < 0 else k
        if name == "themes":
            return 0 if self._themes.add(labels, ts, k * value) or k < 0 else k
        if name in ("score", "sentiment"):
            hist = self._scores[labels[0]] if name == "score" else self._sentiment
            sign = 1 if k > 0 else -1
            ok = True
            for _ in range(abs(k)):
                ok = hist.observe(labels, ts, value, sign)
            return 0 if ok or k < 0 else k
        if name == "tracked":
            n = self._tracked.get(labels, 0) + k * value
            if n:
                self._tracked[labels] = n
            else:
                self._tracked.pop(labels, None)
            return 0
        raise ValueError(f"unknown voice contribution {name!r}")

    def _contributions(self, state: ResponseState) -> list[Contribution]:
        return contributions(state, self.cfg)

    def _evict(self, cutoff_ts: float) -> int:
        stores = (*self._counts.values(), *self._scores.values(), self._sentiment, self._themes)
        return sum(s.evict(cutoff_ts) for s in stores)

    # -- exposition -------------------------------------------------------
    def _valid_until(self, now: float) -> float:
        return self._counts["responses"].next_edge(now)

    def _collect(self, now: float) -> list[Metric]:
        """Prometheus metric families read at wall-clock ``now`` (epoch seconds)."""
        cfg = self.cfg
        ws = cfg.windows
        wmax = cfg.max_window
        views = {k: s.windows_at(now) for k, s in self._counts.items()}
        # a kind is published (every category, every window, zeros included) while it has any
        # response in the longest window, so numerators and denominators always coexist
        present = {labels[0] for labels in views["responses"][wmax]}
        kinds = [k for k in KINDS if k in present]
        out: list[Metric] = []
        for key, (suffix, doc) in _COUNTS.items():
            fam = GaugeMetricFamily(PREFIX + suffix, doc, labels=(*LABELS, "window"))
            v = views[key]
            for kind in kinds:
                for cat in CATEGORIES[kind]:
                    for w in ws:
                        fam.add_metric([kind, cat, window_label(w)], v[w].get((kind, cat), 0))
            out.append(fam)

        fam = GaugeHistogramMetricFamily(
            PREFIX + "score",
            "Scores of the responses in the window on the kind's canonical scale (nps 0-10, csat "
            "normalised to 1-5, ces to 1-7). Mean = _gsum / _gcount.",
            labels=("kind", "window"),
        )
        for kind in kinds:
            h = self._scores[kind]
            per_w = h.windows_at(now)
            for w in ws:
                buckets, s, _ = h.cumulative(per_w[w].get((kind,)))
                fam.add_metric([kind, window_label(w)], buckets, s)
        out.append(fam)

        out += self._collect_comments(now, kinds)
        out.append(GaugeMetricFamily(
            PREFIX + "min_responses",
            "Configured minimum number of responses for a score to be trusted; dashboards and rules "
            "mark scores computed over fewer responses.",
            value=cfg.min_responses,
        ))
        out.append(GaugeMetricFamily(
            PREFIX + "responses_tracked", "Survey responses retained by this worker (until their latest version "
            "leaves the longest window + grace).",
            value=count_retained(self._tracked, now, self.cfg.horizon, self.cfg.bucket_seconds),
        ))
        dropped = CounterMetricFamily(
            PREFIX + "window_dropped_contributions",
            "Window contributions refused because their bucket was already evicted (too late).",
        )
        dropped.add_metric([], self.dropped)
        out.append(dropped)
        return out

    def _collect_comments(self, now: float, kinds: list[str]) -> list[Metric]:
        """Sentiment and themes of the commented responses, published for the same kinds as the
        response counts (every category, theme and window, zeros included)."""
        ws = self.cfg.windows
        sent = GaugeHistogramMetricFamily(
            PREFIX + "comment_sentiment",
            "Sentiment (VADER compound, -1..1) of the commented responses in the window by kind and "
            "category: negative <= -0.05 < neutral <= 0.05 < positive. Mean = _gsum / _gcount.",
            labels=(*LABELS, "window"),
        )
        per_w = self._sentiment.windows_at(now)
        for kind in kinds:
            for cat in CATEGORIES[kind]:
                for w in ws:
                    buckets, total, _ = self._sentiment.cumulative(per_w[w].get((kind, cat)))
                    sent.add_metric([kind, cat, window_label(w)], buckets, total)
        themes = GaugeMetricFamily(
            PREFIX + "comment_themes",
            "Commented responses in the window about each theme, by kind and category (a comment "
            "about two themes counts in both; about none: theme other).",
            labels=(*LABELS, "theme", "window"),
        )
        views = self._themes.windows_at(now)
        names = sorted(self.cfg.labels.kept("theme") | set(self.cfg.theme_map.labels))
        for kind in kinds:
            for cat in CATEGORIES[kind]:
                for theme in names:
                    for w in ws:
                        themes.add_metric([kind, cat, theme, window_label(w)], views[w].get((kind, cat, theme), 0))
        return [sent, themes]
