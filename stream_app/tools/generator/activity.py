"""Product activity: sessions (login, feature use, heartbeats, logout), API calls without a
session, and sign-ups of new users of existing accounts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .world import DRAW_CLIENTS, DRAW_CLIENTS_CW, DRAW_FEATURES_CW, FEATURES, Account, Proc, wchoice

if TYPE_CHECKING:
    from .simulation import Simulation


def session(sim: Simulation, t: float, user: tuple[str, Account] | None = None) -> Proc:
    r = sim.rng
    uid, acc = user or sim.pick_active_user()
    sid = sim.new_id("ses")
    yield t, "activity.login", {
        "user_id": uid,
        "account_id": acc.id,
        "session_id": sid,
        "client": wchoice(r, DRAW_CLIENTS, DRAW_CLIENTS_CW),
    }
    end = t + min(4 * 3600.0, sim.delay(sim.profile.session_median_seconds, 1.0, paced=False))
    hb_every = r.uniform(*sim.profile.heartbeat_seconds)
    feat_mean = r.uniform(*sim.profile.feature_mean_seconds)
    next_hb = t + hb_every
    next_feat = t + r.uniform(2.0, 30.0)  # something is used right after login
    last = t
    while True:
        nxt = min(next_hb, next_feat)
        if nxt > end:
            break
        last = nxt
        if nxt == next_feat:
            yield nxt, "activity.feature_used", {
                "user_id": uid,
                "account_id": acc.id,
                "session_id": sid,
                "feature": wchoice(r, FEATURES, DRAW_FEATURES_CW),
            }
            next_feat += r.expovariate(1.0 / feat_mean)
        else:
            yield nxt, "activity.heartbeat", {"user_id": uid, "session_id": sid}
            next_hb += hb_every
    if r.random() < 0.7:  # otherwise the session just goes idle
        yield max(last, end) + r.uniform(0.5, 10.0), "activity.logout", {"user_id": uid, "session_id": sid}


def api_call(sim: Simulation, t: float) -> Proc:
    uid, acc = sim.pick_active_user()
    yield t, "activity.feature_used", {
        "user_id": uid,
        "account_id": acc.id,
        "session_id": None,
        "feature": "api.call",
    }


def signup(sim: Simulation, t: float, acc: Account | None = None) -> Proc:
    r = sim.rng
    if acc is None:
        acc = r.choice(sim.accounts)
    uid = sim.new_id("usr")
    yield t, "activity.signed_up", {"user_id": uid, "account_id": acc.id}
    sim.add_user(acc, uid)  # only now can other lifecycles pick this user
    sim.spawn(first_session(sim, t + r.uniform(5.0, 120.0), (uid, acc)))


def first_session(sim: Simulation, t: float, user: tuple[str, Account]) -> Proc:
    """A new user's first session; before a warm start's end only its trace (last_activity)."""
    if t < sim.start and sim.profile.history_seconds:
        return last_activity(sim, t, user)
    return session(sim, t, user)


def last_activity(sim: Simulation, t: float, user: tuple[str, Account]) -> Proc:
    """A warm start's summary of a user's past: their last use of the product, one event."""
    uid, acc = user
    yield t, "activity.feature_used", {
        "user_id": uid,
        "account_id": acc.id,
        "session_id": None,
        "feature": wchoice(sim.rng, FEATURES, DRAW_FEATURES_CW),
    }
