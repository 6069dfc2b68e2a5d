"""Customer health: its vocabulary and the score's configuration (weights, bands, windows,
penalties, retention per source)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ...vocabulary import DEFAULT_SLA_TARGETS

PREFIX = "stream_app_health_"
DAY = 86400
SOURCES = ("usage", "support", "voice", "revenue")
BANDS = ("at_risk", "neutral", "healthy")
#: lowest voice category of each survey kind (see stream_app.engine.voice.CATEGORIES)
BOTTOM_CATEGORIES = frozenset({"detractor", "dissatisfied", "difficult"})
DEFAULT_SCORE_EDGES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
#: digits scores are rounded to, so a score that is an edge by hand arithmetic is one in floats
DIGITS = 12


def _default_weights() -> dict[str, float]:
    return {"usage": 0.35, "support": 0.25, "voice": 0.2, "revenue": 0.2}


def _default_targets() -> dict[str, float | None]:
    return {p: first_reply for p, (first_reply, _) in DEFAULT_SLA_TARGETS.items()}


def _default_retention() -> dict[str, float | None]:
    # >= the window each source is read over (usage known users 90 d, voice 90 d, support open
    # tickets: a ticket with no news for 90 d is forgotten); revenue: one entity, kept until deleted
    return {"usage": 90 * DAY, "support": 90 * DAY, "voice": 90 * DAY, "revenue": None}


# --------------------------------------------------------------------------- configuration


@dataclass
class HealthConfig:
    """Weights, band edges, recency windows and penalties of the health score."""

    weights: Mapping[str, float] = field(default_factory=_default_weights)
    at_risk_below: float = 0.4  # total < this: at_risk
    healthy_from: float = 0.7  # total >= this: healthy; between: neutral
    # usage
    usage_active_seconds: float = 7 * DAY  # a user is active if last active within this
    usage_known_seconds: float = 90 * DAY  # a user is known if its newest event is within this
    usage_session_cap: float = 5.0  # sessions per known user in 7 d that count as full intensity
    usage_intensity_weight: float = 0.3  # usage = (1 - w) * active share + w * intensity
    # support
    support_recent_seconds: float = 30 * DAY  # tickets considered: open, or created within this
    support_open_penalty: float = 0.1  # per open ticket
    support_breach_penalty: float = 0.2  # per considered ticket with a first-reply breach
    support_reopen_penalty: float = 0.15  # per considered ticket reopened within recent_seconds
    first_reply_targets: Mapping[str, float | None] = field(default_factory=_default_targets)
    # voice
    voice_window_seconds: float = 90 * DAY
    voice_max_responses: int = 20  # the latest N responses in the window
    voice_bottom_penalty: float = 0.2  # times the share of detractor/dissatisfied/difficult
    voice_comments_shown: int = 3  # lowest-sentiment commented responses in an account's facts
    # revenue
    revenue_recent_seconds: float = 30 * DAY  # a contraction signal older than this is ignored
    revenue_contraction_penalty: float = 0.3
    revenue_renewal_penalty: float = 0.2  # renewal due soon (or overdue), not renewed
    revenue_cancel_penalty: float = 0.4  # cancellation scheduled
    # state and exposition
    retention_seconds: Mapping[str, float | None] = field(default_factory=_default_retention)
    score_edges: tuple[float, ...] = DEFAULT_SCORE_EDGES

    def __post_init__(self) -> None:
        if set(self.weights) - set(SOURCES):
            raise ValueError(f"weights for unknown components: {sorted(set(self.weights) - set(SOURCES))}")
        if any(w < 0 for w in self.weights.values()) or not any(w > 0 for w in self.weights.values()):
            raise ValueError("weights must be >= 0 and at least one > 0")
        if not 0 < self.at_risk_below <= self.healthy_from <= 1:
            raise ValueError("band edges need 0 < at_risk_below <= healthy_from <= 1")
        if not 0 <= self.usage_intensity_weight <= 1:
            raise ValueError("usage_intensity_weight must be in [0, 1]")
        if self.usage_session_cap <= 0 or self.voice_max_responses < 1:
            raise ValueError("usage_session_cap must be > 0 and voice_max_responses >= 1")
        edges = tuple(float(e) for e in self.score_edges)
        if list(edges) != sorted(set(edges)):
            raise ValueError("score_edges must be strictly increasing")
        self.score_edges = edges
        self.retention_seconds = {s: self.retention_seconds.get(s) for s in SOURCES}
        need = {"usage": self.usage_known_seconds, "support": self.support_recent_seconds,
                "voice": self.voice_window_seconds}
        for s, w in need.items():
            r = self.retention_seconds[s]
            if r is not None and r < w:
                raise ValueError(f"retention of {s} ({r}) shorter than its window ({w})")

    def band(self, total: float | None) -> str | None:
        if total is None:
            return None
        if total < self.at_risk_below:
            return "at_risk"
        return "neutral" if total < self.healthy_from else "healthy"


DEFAULT_CONFIG = HealthConfig()
