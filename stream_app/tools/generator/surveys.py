"""Survey responses: CSAT and CES after a solved ticket, NPS from any user."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .world import DRAW_NPS_CW, SCORES_0_10, Account, Proc, comment, wchoice

if TYPE_CHECKING:
    from .simulation import Simulation


def csat(sim: Simulation, t: float, tid: str, acc: Account, who: str, quality: float) -> Proc:
    r = sim.rng
    t += sim.delay(2400.0, 1.2)
    x = quality + r.gauss(0.0, 0.25)
    score = 5 if x > 0.85 else 4 if x > 0.65 else 3 if x > 0.45 else 2 if x > 0.3 else 1
    mood = "good" if score >= 4 else "mid" if score == 3 else "bad"
    yield t, "survey.csat", {
        "response_id": sim.new_id("rsp"),
        "score": score,
        "scale_min": 1,
        "scale_max": 5,
        "comment": comment(r, mood, 0.25),
        "account_id": acc.id,
        "ticket_id": tid,
        "respondent_id": who,
    }


def ces(sim: Simulation, t: float, tid: str, acc: Account, who: str, quality: float) -> Proc:
    r = sim.rng
    t += sim.delay(3600.0, 1.2)
    score = max(1, min(7, round(1 + 6 * quality + r.gauss(0.0, 1.0))))
    mood = "good" if score >= 5 else "mid" if score >= 4 else "bad"
    yield t, "survey.ces", {
        "response_id": sim.new_id("rsp"),
        "score": score,
        "scale_min": 1,
        "scale_max": 7,
        "comment": comment(r, mood, 0.15),
        "account_id": acc.id,
        "ticket_id": tid,
        "respondent_id": who,
    }


def nps(sim: Simulation, t: float) -> Proc:
    r = sim.rng
    who, acc = sim.pick_user()
    score = wchoice(r, SCORES_0_10, DRAW_NPS_CW)
    if acc.state == "churned":
        score = max(0, score - 4)
    mood = "good" if score >= 9 else "mid" if score >= 7 else "bad"
    yield t, "survey.nps", {
        "response_id": sim.new_id("rsp"),
        "score": score,
        "comment": comment(r, mood, 0.3),
        "account_id": acc.id,
        "ticket_id": None,
        "respondent_id": who,
    }
