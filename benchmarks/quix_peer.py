"""Peer: Quix Streams (confluent-kafka + RocksDB state, changelog topics) doing an equivalent job.

Same decoding (``decode_event``), event time from the envelope, and per family the idiomatic Quix
shape of what the worker keeps: stateful per-entity functions plus tumbling windows with count/sum,
re-keyed with ``group_by`` (an internal repartition topic) where the aggregate is not per entity:

- tickets: per-ticket state (team, open?) -> created and backlog deltas -> group_by team ->
  tumbling 60 s reduce (created count, backlog sum)
- activity: per-user last active day (DAU contribution) -> tumbling 60 s count per user
- subscriptions: tumbling 1 h sum of amounts per account
- surveys: group_by survey type -> tumbling 1 h count and score sum

``python -m benchmarks.quix_peer`` with the BENCH_* environment (benchmarks/common.py).
"""

from __future__ import annotations

import logging
import os

from quixstreams import Application
from quixstreams.models.serializers.base import Deserializer

from stream_app.events import decode_event

from .common import Progress, RunnerConfig

HOUR_MS = 3_600_000


class EventDeserializer(Deserializer):
    """``decode_event`` -> a small JSON-able dict (values cross a repartition topic)."""

    def __init__(self, family: str) -> None:
        super().__init__()
        self.family = family

    def __call__(self, value: bytes, ctx) -> dict:
        ev = decode_event(value, expected_family=self.family)
        d = ev.data
        return {
            "type": ev.type,
            "ts": ev.ts,
            "team": getattr(d, "team", None),
            "amount": getattr(d, "amount_minor", 0) or 0,
            "score": getattr(d, "score", None),
        }


def _event_time(value, headers, timestamp, timestamp_type) -> int:
    return int(value["ts"] * 1000)


def _quiet_late(*args, **kwargs) -> bool:
    return False  # do not log every late record


def build(cfg: RunnerConfig, progress: Progress) -> Application:
    app = Application(
        broker_address=cfg.bootstrap,
        consumer_group=cfg.group,
        auto_offset_reset="earliest",
        state_dir=os.path.join(cfg.state_dir, "quix-state"),
        loglevel="WARNING",
    )

    def topic(family: str):
        return app.topic(
            cfg.topics[family],
            key_deserializer="bytes",
            value_deserializer=EventDeserializer(family),
            timestamp_extractor=_event_time,
        )

    def done(value) -> None:
        # Counted right before the window step of the same message (Quix runs a message's
        # whole pipeline synchronously), so late-dropped records still count as processed.
        progress.processed += 1

    # tickets
    def ticket_delta(value: dict, state) -> dict:
        typ = value["type"]
        current = state.get("t")  # [team, open]
        created = backlog = 0
        if typ == "ticket.created":
            created, backlog = 1, 1
            current = [value["team"], True]
        elif current is not None:
            if typ == "ticket.assigned" and value["team"] and current[0] != value["team"]:
                current = [value["team"], current[1]]
            elif typ in ("ticket.solved", "ticket.closed") and current[1]:
                current, backlog = [current[0], False], -1
            elif typ == "ticket.reopened" and not current[1]:
                current, backlog = [current[0], True], 1
        if current is not None:
            state.set("t", current)
        return {"team": current[0] if current else "unknown", "created": created, "backlog": backlog}

    tickets = app.dataframe(topic("ticket")).apply(ticket_delta, stateful=True)
    tickets = tickets.group_by(lambda v: v["team"], name="team").update(done)
    tickets.tumbling_window(60_000, grace_ms=HOUR_MS, on_late=_quiet_late).reduce(
        lambda agg, v: [agg[0] + v["created"], agg[1] + v["backlog"]],
        lambda v: [v["created"], v["backlog"]],
    ).current()

    # activity
    def active_day(value: dict, state) -> int:
        day = int(value["ts"] // 86400)
        if state.get("d") == day:
            return 0
        state.set("d", day)
        return 1

    activity = app.dataframe(topic("activity")).apply(active_day, stateful=True).update(done)
    activity.tumbling_window(60_000, grace_ms=HOUR_MS, on_late=_quiet_late).count().current()

    # subscriptions
    subs = app.dataframe(topic("subscription")).apply(lambda v: v["amount"]).update(done)
    subs.tumbling_window(HOUR_MS, grace_ms=HOUR_MS, on_late=_quiet_late).sum().current()

    # surveys
    surveys = app.dataframe(topic("survey")).group_by(lambda v: v["type"], name="survey_type").update(done)
    surveys.tumbling_window(HOUR_MS, grace_ms=HOUR_MS, on_late=_quiet_late).reduce(
        lambda agg, v: [agg[0] + 1, agg[1] + (v["score"] or 0)],
        lambda v: [1, v["score"] or 0],
    ).current()
    return app


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    cfg = RunnerConfig.from_env()
    progress = Progress(cfg.port)
    try:
        build(cfg, progress).run()
    except BaseException:
        logging.exception("quix peer failed")
        os._exit(1)  # librdkafka threads would keep a failed process alive


if __name__ == "__main__":
    main()
