"""Baseline: the straightforward Faust app for the same job, written as the Faust docs teach it.

In-memory tables with changelogs, Faust's own windowed tables relative to event time, one agent
per input topic, the same ``decode_event``. No Redis, no derived indexes, no health signals, no
rolling windows over many buckets: what a team would write first. Tables keyed by something other
than the message key (team, day, plan) are written directly from the entity-keyed stream (no
``group_by`` repartition): cheaper than correct multi-worker code, so a generous baseline.

- tickets: ticket -> [team, open]; created per team, tumbling(60) windowed; backlog per team
- activity: user -> last active day; DAU as a set of users per day (``SetTable``)
- subscriptions: account -> MRR; MRR per plan; revenue per plan, tumbling(3600) windowed
- surveys: responses and score sum per survey type, tumbling(3600) windowed

``python -m benchmarks.faust_baseline`` with the BENCH_* environment (benchmarks/common.py).
"""

from __future__ import annotations

import sys

import faust

from stream_app.events import EventRejected, decode_event

from .common import RunnerConfig

cfg = RunnerConfig.from_env()
app = faust.App(
    cfg.group,
    broker=f"kafka://{cfg.bootstrap}",
    store="memory://",
    web_port=cfg.port,
    web_host="127.0.0.1",
    topic_partitions=4,
    consumer_auto_offset_reset="earliest",
    table_standby_replicas=0,
    datadir=f"{cfg.state_dir}/faust-data",
)

# Windowed tables read the event time of the event being processed (set before each write).
_current = {"ts": 0.0}


def _event_time(event=None) -> float:
    return _current["ts"]


processed = {"n": 0}

tickets = app.Table("bl_tickets", default=None)
created_by_team = app.Table("bl_created_by_team", default=int).tumbling(60, expires=3600).relative_to(_event_time)
backlog = app.Table("bl_backlog_by_team", default=int)
last_day = app.Table("bl_user_last_day", default=int)
dau = app.SetTable("bl_dau")
mrr = app.Table("bl_account_mrr", default=None)
mrr_by_plan = app.Table("bl_mrr_by_plan", default=int)
revenue_by_plan = app.Table("bl_revenue_by_plan", default=int).tumbling(3600, expires=7200).relative_to(_event_time)
responses = app.Table("bl_responses", default=int).tumbling(3600, expires=7200).relative_to(_event_time)
score_sum = app.Table("bl_score_sum", default=int).tumbling(3600, expires=7200).relative_to(_event_time)


def _ticket(ev) -> None:
    d, key = ev.data, ev.subject
    cur = tickets.get(key)
    if ev.type == "ticket.created":
        created_by_team[d.team] += 1
        backlog[d.team] += 1
        tickets[key] = [d.team, True]
    elif cur is not None:
        team, open_ = cur
        if ev.type == "ticket.assigned" and d.team != team:
            if open_:
                backlog[team] -= 1
                backlog[d.team] += 1
            tickets[key] = [d.team, open_]
        elif ev.type in ("ticket.solved", "ticket.closed") and open_:
            backlog[team] -= 1
            tickets[key] = [team, False]
        elif ev.type == "ticket.reopened" and not open_:
            backlog[team] += 1
            tickets[key] = [team, True]


def _activity(ev) -> None:
    day = int(ev.ts // 86400)
    if last_day[ev.subject] != day:
        last_day[ev.subject] = day
        dau[day].add(ev.subject)


def _subscription(ev) -> None:
    d, key = ev.data, ev.subject
    if ev.type in ("subscription.started", "subscription.plan_changed"):
        monthly = d.amount_minor * d.quantity // (12 if d.interval == "year" else 1)
        old = mrr.get(key)
        if old is not None:
            mrr_by_plan[old[0]] -= old[1]
        mrr[key] = [d.plan, monthly]
        mrr_by_plan[d.plan] += monthly
    elif ev.type in ("subscription.cancelled", "subscription.ended"):
        old = mrr.get(key)
        if old is not None:
            mrr_by_plan[old[0]] -= old[1]
            mrr[key] = None
    elif ev.type in ("subscription.payment", "subscription.renewed"):
        plan = (mrr.get(key) or ["none"])[0]
        revenue_by_plan[plan] += d.amount_minor


def _survey(ev) -> None:
    responses[ev.type] += 1
    score_sum[ev.type] += ev.data.score


HANDLERS = {"ticket": _ticket, "activity": _activity, "subscription": _subscription, "survey": _survey}


def _agent(family: str, topic_name: str) -> None:
    topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw")
    handle = HANDLERS[family]

    async def consume(stream):
        async for value in stream:
            try:
                ev = decode_event(value, expected_family=family)
            except EventRejected:
                processed["n"] += 1
                continue
            _current["ts"] = ev.ts
            handle(ev)
            processed["n"] += 1

    app.agent(topic, name=f"baseline.{family}")(consume)


for _family, _topic in cfg.topics.items():
    _agent(_family, _topic)


@app.page("/count")
async def count(web, request):
    return web.json({"processed": processed["n"]})


if __name__ == "__main__":
    sys.argv = [sys.argv[0], "worker", "-l", "warn", "--web-port", str(cfg.port), "--web-host", "127.0.0.1"]
    app.main()
