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
    """Timing, mix and world knobs.

    ``Profile()`` is the dense world the tests and benchmarks use: a fixed 150 accounts and every
    family busy within minutes (a third of the lifecycles are tickets). ``Profile.saas()`` is the
    believable one the demo and ``stream-app generate`` use: a world sized from the rate, users
    who come back daily, weekly or monthly, a few tickets per hundred active users a day, and a
    warm start with the recent past already in place. ``Profile.fast()`` compresses time.
    """

    initial_accounts: int = 150  # accounts (with users) that exist before the log starts
    pace: float = 1.0  # multiplies human delays in tickets and surveys (0.1 = ten times faster)
    trial_seconds: float = 14 * 86400.0
    month_seconds: float = 30 * 86400.0  # billing month; a year is 12 of them
    close_after_seconds: float = 3 * 86400.0  # solved -> closed when not reopened
    # Dense world: weights of the lifecycles started when traffic is below the target rate.
    # Sized world (users_per_rate > 0): lifecycles started per user per day.
    mix: tuple[tuple[str, float], ...] = (
        ("session", 0.36),
        ("ticket", 0.34),
        ("nps", 0.05),
        ("api_call", 0.12),
        ("signup", 0.05),
        ("new_account", 0.045),
        ("purchase", 0.035),
    )
    # --- the sized world (Profile.saas()); the defaults keep the dense world unchanged -------
    # > 0: rate x users_per_rate users, lifecycles start as Poisson processes at their ``mix``
    # rate per user per day (the event rate follows from the world, about ``rate``).
    users_per_rate: float = 0.0
    # (share of users, relative session frequency): who comes back daily, weekly, monthly.
    # Sessions, API calls and tickets pick their user by it; () picks uniformly.
    activity_classes: tuple[tuple[float, float], ...] = ()
    # Warm start: the log begins with the recent past (each user's last activity within 30
    # days, tickets still under way, subscriptions, trials and surveys) as backdated events.
    history_seconds: float = 0.0
    ticket_history_seconds: float = 6 * 86400.0  # how far back the warm start opens tickets (covers auto-solve)
    session_median_seconds: float = 600.0  # session length, log-normal, at most 4 h
    heartbeat_seconds: tuple[float, float] = (60.0, 300.0)  # a session's heartbeat interval range
    feature_mean_seconds: tuple[float, float] = (60.0, 600.0)  # mean time between feature uses
    never_picked_up: float = 0.03  # share of tickets no agent ever answers
    first_reply_sigma: float = 0.8  # spread of first-reply delays around the priority's median
    escalated: float = 0.0  # share of on-hold waits that are escalations of about a day
    pending_auto_solve_seconds: float = 0.0  # > 0: unanswered pending tickets are solved after this
    tickets_per_agent_day: float = 0.0  # > 0: agents per team sized from the ticket volume

    @classmethod
    def fast(cls) -> Profile:
        """Minutes instead of days, so trials convert and subscriptions renew within a demo."""
        return cls(pace=0.1, trial_seconds=600.0, month_seconds=1200.0, close_after_seconds=900.0)

    @classmethod
    def saas(cls) -> Profile:
        """A B2B SaaS company of the size the rate implies (docs/generator.md, "The SaaS world")."""
        return cls(
            users_per_rate=SAAS_USERS_PER_RATE,
            mix=(
                ("session", 0.5),  # sessions per user per day (the classes spread them)
                ("api_call", 0.25),
                ("ticket", 0.016),  # about 5 per hundred daily active users
                ("nps", 0.0006),
                ("signup", 0.0015),  # a new teammate in an existing account
                ("new_account", 0.0002),
                ("purchase", 0.0001),
            ),
            activity_classes=((0.15, 5.0), (0.35, 0.6), (0.50, 0.08)),
            history_seconds=30 * 86400.0,
            session_median_seconds=1200.0,
            heartbeat_seconds=(15.0, 30.0),
            feature_mean_seconds=(5.0, 20.0),
            never_picked_up=0.0,
            first_reply_sigma=1.1,
            escalated=0.6,
            pending_auto_solve_seconds=2 * 86400.0,
            tickets_per_agent_day=25.0,
        )

    @classmethod
    def named(cls, name: str) -> Profile:
        """By command-line name: saas, dense (``realistic`` is its old name) or fast."""
        if name == "saas":
            return cls.saas()
        if name in ("dense", "realistic"):
            return cls()
        if name == "fast":
            return cls.fast()
        raise ValueError(f"unknown profile {name!r} (saas|dense|fast)")


#: Events per second of the demo's SaaS world unless told otherwise (`stream-app demo --rate`).
DEMO_RATE = 10.0

#: Users in the SaaS world per event/s of rate: what makes its users produce about ``rate`` events/s
#: (measured on the generator's own output; tests/unit/tools/test_generator_world.py checks it).
SAAS_USERS_PER_RATE = 650.0


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

#: Comments by mood, written to exercise the qualitative-feedback metrics: each names one or two
#: of the default themes (vocabulary.DEFAULT_COMMENT_THEMES) or none (other), with the sentiment
#: its mood implies (VADER scores the good ones positive, the bad ones negative).
COMMENTS = {
    "good": (
        "Quick and helpful, thanks!", "Great support, the agent solved my problem fast.", "Love the product.",
        "Setup was easy and the tutorial is excellent.", "Great performance, really fast dashboards.",
        "Clear invoice and fair pricing, happy to pay.", "Excellent onboarding, thank you!", "Awesome, keep it up.",
    ),
    "mid": (
        "Fine, but took a while.", "OK.", "Answer was a bit generic.", "Works, mostly.",
        "Good tool, but the docs are confusing.", "Pricing is a little expensive for us.",
        "Nice features, loading is sometimes slow.", "Support was fine.",
    ),
    "bad": (
        "Still broken, this bug is terrible.", "Too slow to respond, very disappointing support.",
        "Had to explain it three times. Frustrating.", "Considering other tools, awful experience.",
        "We were charged twice and nobody fixed the invoice. Unacceptable.",
        "The app is painfully slow and freezes constantly.", "Crashes every day, errors everywhere. Horrible.",
        "Onboarding was a mess, the setup is confusing and useless.",
    ),
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

