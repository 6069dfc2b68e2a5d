"""Usage configuration: windows, idle timeout, adoption period, and the activity vocabulary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from stream_app.engine.labels import LabelGuard
from stream_app.engine.windows import DEFAULT_BUCKET_SECONDS, check_windows


PREFIX = "stream_app_usage_"
DAY = 86400
#: Fixed windows of the per-user facts handed to the customer-health work (account_signal).
SIGNAL_SESSION_SECONDS = 7 * DAY
SIGNAL_FEATURE_SECONDS = 30 * DAY
DEFAULT_SESSION_EDGES = (60, 300, 600, 1800, 3600, 7200, 14400, 28800)
#: Usage lifecycle (Amplitude) per UTC calendar day and ISO week (Monday start), and the
#: power-user curve over the last 7 / 28 UTC days: statuses, periods, curves.
LIFECYCLE_STATUSES = ("new", "current", "resurrected", "dormant")
LIFECYCLE_PERIODS = ("current_day", "previous_day", "current_week", "previous_week")
POWER_DAYS = (7, 28)
ACTIVE_DAYS_KEPT = max(POWER_DAYS)  # active days kept per user, counting its newest event's day

SIGNED_UP = "activity.signed_up"
LOGIN = "activity.login"
LOGOUT = "activity.logout"
FEATURE_USED = "activity.feature_used"
ACTIVITY_TYPES = frozenset({SIGNED_UP, LOGIN, LOGOUT, "activity.heartbeat", FEATURE_USED})

# one letter per client in the session code; "x" marks a session closed by a logout
_CLIENT_CODE = {"web": "w", "desktop": "d", "ios": "i", "android": "a", "api": "p"}
_CODE_CLIENT = {v: k for k, v in _CLIENT_CODE.items()}  # "o" (unknown value) -> None -> other
_ENDED = "x"

Contribution = tuple[str, tuple[str, ...], float | None, Any]


# --------------------------------------------------------------------------- configuration


@dataclass
class UsageConfig:
    """Everything the usage metrics need. ``labels`` is stateful (feature cap): one per worker.

    The state limits (how long sessions, features and per-client facts are kept behind a user's
    newest event) are derived from the windows, so ``apply`` must get the same config.
    """

    bucket_seconds: int = DEFAULT_BUCKET_SECONDS
    active_windows: tuple[int, ...] = (DAY, 7 * DAY, 30 * DAY)  # DAU/WAU/MAU, per client, signups
    session_windows: tuple[int, ...] = (3600, DAY, 7 * DAY)  # sessions started, durations
    feature_windows: tuple[int, ...] = (3600, DAY, 7 * DAY)  # users per feature, user-feature pairs
    known_seconds: int = 90 * DAY  # "known users" window, and how long a quiet user's state lives
    grace_seconds: int = 3600
    idle_timeout_seconds: float = 1800.0
    adoption_seconds: float = 7 * DAY
    max_features_per_user: int = 32
    recent_ids: int = 2  # ids of the user's newest events kept to recognise redeliveries
    labels: LabelGuard = field(default_factory=LabelGuard)
    session_edges: tuple[float, ...] = DEFAULT_SESSION_EDGES

    def __post_init__(self) -> None:
        g = self.bucket_seconds
        self.active_windows = check_windows(self.active_windows, g)
        self.session_windows = check_windows(self.session_windows, g)
        self.feature_windows = check_windows(self.feature_windows, g)
        (self.known_seconds,) = check_windows((self.known_seconds,), g)
        if self.grace_seconds < 0:
            raise ValueError("grace_seconds must be >= 0")
        if self.idle_timeout_seconds <= 0:
            raise ValueError("idle_timeout_seconds must be > 0")
        if self.adoption_seconds < 0:
            raise ValueError("adoption_seconds must be >= 0")
        if self.max_features_per_user < 1 or self.recent_ids < 1:
            raise ValueError("max_features_per_user and recent_ids must be >= 1")
        for name in ("client", "feature"):
            if name not in self.labels.rules:
                raise ValueError(f"label guard has no rule for {name!r}")

    @property
    def max_window(self) -> int:
        return max(self.active_windows + self.session_windows + self.feature_windows + (self.known_seconds,))

    @property
    def horizon(self) -> int:
        """max window + grace: what WatermarkTracker needs (the known-users window, 90 d by
        default). Each store of the index evicts on its own, shorter horizon."""
        return self.max_window + self.grace_seconds

    # how long facts are kept behind the user's newest event time
    @property
    def session_keep(self) -> int:
        return max(max(self.session_windows), SIGNAL_SESSION_SECONDS) + self.grace_seconds

    @property
    def feature_keep(self) -> int:
        return max(max(self.feature_windows), SIGNAL_FEATURE_SECONDS) + self.grace_seconds

    @property
    def client_keep(self) -> int:
        return max(self.active_windows) + self.grace_seconds


_DEFAULT_CFG: UsageConfig | None = None


def _default_cfg() -> UsageConfig:
    global _DEFAULT_CFG
    if _DEFAULT_CFG is None:
        _DEFAULT_CFG = UsageConfig()
    return _DEFAULT_CFG
