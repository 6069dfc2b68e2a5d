"""The generated world: its catalogue (teams, features, plans, prices), the draw tables of every
choice, the timing profile, and the accounts and users lifecycles pick from."""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Generator

from ...vocabulary import CHANNELS, CLIENTS

TEAMS = ("technical", "billing", "onboarding", "enterprise")
FEATURES = (
    "dashboard.view",
    "report.export",
    "search",
    "integration.sync",
    "automation.run",
    "invite.sent",
    "billing.view",
    "comment.add",
    "file.upload",
    "api.call",
)
PLANS = ("starter", "growth", "business", "enterprise")
#: Monthly list price in minor units per currency; yearly = 10 x monthly (two months free).
PRICES: dict[str, dict[str, int]] = {
    "USD": {"starter": 2900, "growth": 9900, "business": 29900, "enterprise": 99900},
    "EUR": {"starter": 2700, "growth": 8900, "business": 27900, "enterprise": 92900},
    "GBP": {"starter": 2300, "growth": 7900, "business": 23900, "enterprise": 79900},
}


@dataclass(frozen=True, slots=True)
class Profile:
    """Timing and mix knobs. Defaults are realistic; ``Profile.fast()`` compresses slow lifecycles."""

    initial_accounts: int = 150  # accounts (with users) that exist before the log starts
    pace: float = 1.0  # multiplies human delays in tickets and surveys (0.1 = ten times faster)
    trial_seconds: float = 14 * 86400.0
    month_seconds: float = 30 * 86400.0  # billing month; a year is 12 of them
    close_after_seconds: float = 3 * 86400.0  # solved -> closed when not reopened
    # weights of lifecycles started when traffic is below the target rate
    mix: tuple[tuple[str, float], ...] = (
        ("session", 0.36),
        ("ticket", 0.34),
        ("nps", 0.05),
        ("api_call", 0.12),
        ("signup", 0.05),
        ("new_account", 0.045),
        ("purchase", 0.035),
    )

    @classmethod
    def fast(cls) -> Profile:
        """Minutes instead of days, so trials convert and subscriptions renew within a demo."""
        return cls(pace=0.1, trial_seconds=600.0, month_seconds=1200.0, close_after_seconds=900.0)

    @classmethod
    def named(cls, name: str) -> Profile:
        if name == "realistic":
            return cls()
        if name == "fast":
            return cls.fast()
        raise ValueError(f"unknown profile {name!r} (realistic|fast)")


def wchoice(rng: random.Random, items: tuple[Any, ...], cum: list[float]) -> Any:
    # what rng.choices(k=1) does, without its per-call overhead (hot path)
    return items[bisect.bisect(cum, rng.random() * cum[-1], 0, len(cum) - 1)]


def cum(weights: Iterable[float]) -> list[float]:
    out, s = [], 0.0
    for w in weights:
        s += w
        out.append(s)
    return out


# Draw tables (value, weight); the order is part of a seed's output, the values are the contract's.
DRAW_CHANNELS = ("email", "chat", "web", "phone", "api", "social")
DRAW_CHANNELS_CW = cum((0.40, 0.25, 0.15, 0.10, 0.05, 0.05))
DRAW_PRIORITIES_CW = cum((0.20, 0.55, 0.20, 0.05))
DRAW_TEAMS_STD = ("technical", "billing", "onboarding")
DRAW_TEAMS_STD_CW = cum((0.5, 0.3, 0.2))
#: median first agent reply delay (s) per priority, before pace
FIRST_REPLY_MEDIAN = {"urgent": 240.0, "high": 720.0, "normal": 2400.0, "low": 7200.0}
DRAW_CLIENTS = ("web", "desktop", "ios", "android", "api")
DRAW_CLIENTS_CW = cum((0.60, 0.15, 0.10, 0.10, 0.05))
assert set(DRAW_CHANNELS) == set(CHANNELS) and set(DRAW_CLIENTS) == set(CLIENTS)
DRAW_FEATURES_CW = cum((0.25, 0.08, 0.15, 0.06, 0.08, 0.04, 0.03, 0.15, 0.08, 0.08))
DRAW_CURRENCIES = ("USD", "EUR", "GBP")
DRAW_CURRENCIES_CW = cum((0.80, 0.12, 0.08))
DRAW_PLANS_CW = cum((0.40, 0.35, 0.18, 0.07))
DRAW_NPS_CW = cum((2, 1, 1, 2, 2, 4, 6, 12, 18, 26, 26))  # scores 0..10: ~45% promoters
SCORES_0_10 = tuple(range(11))

COMMENTS = {
    "good": ("Quick and helpful, thanks!", "Great support.", "Solved my problem fast.", "Love the product."),
    "mid": ("Fine, but took a while.", "OK.", "Answer was a bit generic.", "Works, mostly."),
    "bad": ("Still broken.", "Too slow to respond.", "Had to explain it three times.", "Considering other tools."),
}


def comment(rng: random.Random, mood: str, p: float) -> str | None:
    return rng.choice(COMMENTS[mood]) if rng.random() < p else None


class Account:
    __slots__ = ("id", "users", "state", "enterprise", "trial_end")

    def __init__(self, acc_id: str, enterprise: bool = False) -> None:
        self.id = acc_id
        self.users: list[str] = []
        self.state = "free"  # free | trial | paying | churned (as far as this log knows)
        self.enterprise = enterprise
        self.trial_end = 0.0


#: A lifecycle: yields (event time, event type, data) and may spawn others through the simulation.
Proc = Generator[tuple[float, str, dict[str, Any]], None, None]

