"""The streaming metrics equal an independent batch reference, through real Kafka + Redis.

One generated multi-day event log (all four families, with duplicates, late,
out-of-order, too-late and invalid events) is produced once. Each test runs its
own consumer group over it — one worker, two workers, a worker killed with -9
mid-stream and restarted — then reads every worker's /metrics at one instant
(``?at=``) and compares the sum across workers with the reference computed from
the same events at that instant.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
import uuid
from datetime import datetime

import pytest

from stream_app.config import Settings
from stream_app.events import decode_event
from stream_app.worker.families import build_families, health_config
from stream_app.tools.generator import Faults, GeneratedEvent, generate
from stream_app.tools.producer import produce_log

from ..reference import health_reference, revenue_reference, support_reference, usage_reference, voice_reference
from .worker_process import WorkerProcess, total, wait_for, worker_env

pytestmark = pytest.mark.integration

DAY = 86400.0
LOG_DAYS = 2.0
RATE = 0.25  # events/s of event time: ~43k events over two days
TOO_LATE_AGE = 3 * DAY  # older than every window + grace: must be counted as too late


def _reference_params(settings: Settings) -> dict[str, dict]:
    """Reference parameters per family, from the same settings the workers use."""
    configs = {f.name: f.config for f in build_families(settings)}
    support, voice, usage, revenue = (configs[n] for n in ("support", "voice", "usage", "revenue"))
    return {
        "support": dict(
            bucket=support.bucket_seconds,
            volume_windows=support.volume_windows,
            windows=support.windows,
            edges_first_response=support.first_response_edges,
            edges_resolution=support.full_resolution_edges,
            edges_handle=support.handle_time_edges,
            targets={p: (t.first_reply_seconds, t.resolution_seconds) for p, t in support.sla_targets.items()},
            at_risk=support.at_risk_fraction,
            calendars={},
        ),
        "voice": dict(bucket=voice.bucket_seconds, windows=voice.windows, min_responses=voice.min_responses),
        "usage": dict(
            bucket=usage.bucket_seconds,
            active_windows=usage.active_windows,
            session_windows=usage.session_windows,
            feature_windows=usage.feature_windows,
            known_seconds=usage.known_seconds,
            idle=usage.idle_timeout_seconds,
            adoption=usage.adoption_seconds,
            edges=usage.session_edges,
        ),
        "revenue": dict(
            bucket=revenue.bucket_seconds,
            windows=revenue.windows,
            reporting=revenue.reporting_currency,
            fx=dict(revenue.fx_rates),
            minor=dict(revenue.minor_units),
            default_minor=revenue.default_minor_unit,
            trial_grace=revenue.trial_conversion_grace_seconds,
        ),
    }


REFERENCES = {
    "support": (support_reference, "ticket"),
    "voice": (voice_reference, "survey"),
    "usage": (usage_reference, "activity"),
    "revenue": (revenue_reference, "subscription"),
}
# Configuration published as a gauge: every worker shows the same value (PromQL: max).
SAME_ON_EVERY_WORKER = {"stream_app_voice_min_responses", "stream_app_revenue_reporting_currency_info"}
# Worker-internal series the reference has no notion of.
INTERNAL = re.compile(r"_watermark_timestamp_seconds$|_dropped_contributions_total$")


def _reference_events(events: list[GeneratedEvent], now: float) -> list[dict]:
    """The valid events as the reference computations take them: plain values, datetimes as epoch
    seconds (invalid ones are the dead-letter topic's business)."""
    valid = []
    for ev in events:
        if ev.is_invalid:
            continue
        decoded = decode_event(ev.value, now=now + 600)
        data = {k: v.timestamp() if isinstance(v, datetime) else v for k, v in decoded.data.model_dump().items()}
        valid.append({"id": decoded.id, "type": decoded.type, "time": decoded.ts, "family": decoded.family, "data": data})
    return valid


def _too_late_events(now: float) -> list[GeneratedEvent]:
    """A ticket lifecycle three days old, delivered last: too late for every window."""
    t = now - TOO_LATE_AGE
    ticket = f"T-old-{uuid.uuid4().hex[:6]}"
    base = {"specversion": "1.0", "source": "helpdesk", "subject": ticket, "schemaversion": 1}
    bodies = [
        ("ticket.created", 0, {"account_id": "A-old", "requester_id": "R-old", "channel": "email",
                               "priority": "normal", "team": "billing"}),
        ("ticket.replied", 600, {"author_role": "agent", "public": True, "author_id": None,
                                 "time_spent_seconds": 120.0}),
        ("ticket.solved", 1200, {"agent_id": None, "time_spent_seconds": 60.0}),
    ]  # fmt: skip
    out = []
    for event_type, offset, data in bodies:
        ev = {**base, "id": str(uuid.uuid4()), "type": event_type,
              "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t + offset)),
              "data": {"ticket_id": ticket, **data}}  # fmt: skip
        value = json.dumps(ev).encode()
        out.append(GeneratedEvent(
            family="ticket", key=ticket, value=value, time=t + offset,
            emit_time=now, type=event_type, id=ev["id"], is_late=True,
        ))  # fmt: skip
    return out


@pytest.fixture(scope="module")
def event_log(stack):
    """(topics, events, valid event dicts for the reference, expected too-late count)."""
    run = f"ref-{uuid.uuid4().hex[:6]}"
    topics = {
        "ticket": f"{run}.tickets",
        "activity": f"{run}.activity",
        "subscription": f"{run}.subscriptions",
        "survey": f"{run}.surveys",
    }
    stack.create_topics(list(topics.values()), partitions=4)
    now = time.time()
    start = now - LOG_DAYS * DAY
    faults = Faults(duplicate=0.02, out_of_order=0.02, late=0.01, invalid=0.005)
    events = generate(seed=20261123, start=start, duration_seconds=LOG_DAYS * DAY - 120, rate=RATE, faults=faults)
    too_late = _too_late_events(now)
    events = events + too_late
    t0 = time.monotonic()
    asyncio.run(produce_log(stack.bootstrap, topics, events))
    valid = _reference_events(events, now)
    print(
        f"\nevent log: {len(events)} messages ({len(valid)} valid, "
        f"{sum(e.is_invalid for e in events)} invalid, {sum(e.is_duplicate for e in events)} duplicates, "
        f"{sum(e.is_out_of_order for e in events)} out of order, {sum(e.is_late for e in events)} late) "
        f"over {LOG_DAYS:.0f} days, produced in {time.monotonic() - t0:.1f}s"
    )
    return topics, events, valid, len(too_late)


def _env(stack, topics, **overrides):
    app_id = f"ref-{uuid.uuid4().hex[:8]}"
    env = worker_env(stack, app_id, **overrides)
    env.update(
        STREAM_APP_TOPIC_TICKETS=topics["ticket"],
        STREAM_APP_TOPIC_ACTIVITY=topics["activity"],
        STREAM_APP_TOPIC_SUBSCRIPTIONS=topics["subscription"],
        STREAM_APP_TOPIC_SURVEYS=topics["survey"],
    )
    return env


def _wait_consumed(workers, n: int, timeout: float = 300) -> None:
    def consumed():
        return sum(total(w.samples(), "stream_app_events_consumed_total") for w in workers if w.proc.poll() is None)

    wait_for(lambda: consumed() >= n, timeout=timeout, interval=1.0, message=f"{n} events consumed")


def _scrape_at(workers, at: float) -> dict[tuple, float]:
    """Samples aggregated across workers as dashboards do (sum; min for timestamps),
    every worker evaluated at the same instant."""
    from prometheus_client.parser import text_string_to_metric_families
    import urllib.request

    out: dict[tuple, float] = {}
    for w in workers:
        with urllib.request.urlopen(f"{w.base_url}/metrics?at={at}", timeout=10) as r:
            text = r.read().decode()
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                key = (s.name, frozenset(s.labels.items()))
                if key not in out:
                    out[key] = s.value
                elif s.name.endswith("_timestamp_seconds"):
                    out[key] = min(out[key], s.value)
                elif s.name in SAME_ON_EVERY_WORKER:
                    assert out[key] == s.value, f"{s.name} differs between workers"
                else:
                    out[key] += s.value
    return out


def _health_params(settings: Settings) -> dict:
    cfg = health_config(settings)
    return dict(
        weights=dict(cfg.weights), at_risk_below=cfg.at_risk_below, healthy_from=cfg.healthy_from,
        usage_active=cfg.usage_active_seconds, usage_known=cfg.usage_known_seconds,
        session_cap=cfg.usage_session_cap, intensity_weight=cfg.usage_intensity_weight,
        support_recent=cfg.support_recent_seconds, pen_open=cfg.support_open_penalty,
        pen_breach=cfg.support_breach_penalty, pen_reopen=cfg.support_reopen_penalty,
        targets=dict(cfg.first_reply_targets), voice_window=cfg.voice_window_seconds,
        voice_n=cfg.voice_max_responses, pen_bottom=cfg.voice_bottom_penalty,
        revenue_recent=cfg.revenue_recent_seconds, pen_contraction=cfg.revenue_contraction_penalty,
        pen_renewal=cfg.revenue_renewal_penalty, pen_cancel=cfg.revenue_cancel_penalty,
        retention=dict(cfg.retention_seconds), edges=cfg.score_edges,
    )  # fmt: skip


async def _read_signals(bootstrap: str, topic: str, partitions: int) -> list[dict]:
    """Every health signal message, in partition order (an account lives in one partition)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        out = []
        pending = {tp for tp in parts if ends[tp] > 0}
        while pending:
            for tp, msgs in (await consumer.getmany(*pending, timeout_ms=1000)).items():
                out += [{"account_id": m.key.decode(), **json.loads(m.value)} for m in msgs]
                if msgs and msgs[-1].offset >= ends[tp] - 1:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return out


def _assert_matches_reference(
    workers, valid, settings: Settings, bootstrap: str | None = None, at: float | None = None
) -> int:
    at = time.time() if at is None else at
    got = _scrape_at(workers, at)
    params = _reference_params(settings)
    checked = 0
    references = {name: (module.compute([e for e in valid if e["family"] == family], at, params[name]))
                  for name, (module, family) in REFERENCES.items()}  # fmt: skip
    if bootstrap is not None:
        # Health is computed from the signals the families sent: compare with the
        # batch reference over exactly those messages, read back from Kafka.
        signals = asyncio.run(_read_signals(bootstrap, settings.health_signals_topic(), settings.topic_partitions))
        references["health"] = health_reference.compute(signals, at, _health_params(settings))
        print(f"health: {len(signals)} signal messages")
    for name, expected in references.items():
        prefix = f"stream_app_{name}_"
        mine = {k: v for k, v in got.items() if k[0].startswith(prefix) and not INTERNAL.search(k[0])}
        missing = [k for k in expected if k not in mine]
        assert not missing, f"{name}: series missing from /metrics: {sorted(missing, key=str)[:5]}"
        wrong = [(k, mine[k], v) for k, v in expected.items() if not math.isclose(mine[k], v, rel_tol=1e-9, abs_tol=1e-6)]
        assert not wrong, f"{name}: {len(wrong)} samples differ, e.g. {sorted(wrong, key=str)[:5]}"
        extra = [(k, v) for k, v in mine.items() if k not in expected and v != 0]
        assert not extra, f"{name}: non-zero samples the reference does not have: {sorted(extra, key=str)[:5]}"
        print(f"{name}: {len(expected)} non-zero samples equal the reference at {at:.0f}")
        checked += len(expected)
    return checked


def _settings_of(env) -> Settings:
    return Settings(**{k.removeprefix("STREAM_APP_").lower(): v for k, v in env.items()})


def test_one_worker_equals_reference(stack, event_log, tmp_path):
    topics, events, valid, too_late = event_log
    env = _env(stack, topics, store="redis")
    worker = WorkerProcess(env, tmp_path).start()
    try:
        _wait_consumed([worker], len(events))
        samples = worker.samples()
        assert total(samples, "stream_app_events_too_late_total") == too_late
        duplicates = total(samples, "stream_app_events_duplicate_total")
        print(f"consumed {len(events)}, duplicates ignored {duplicates:.0f}, too late {too_late}")
        wait_for(lambda: _consumed_offsets_done(worker), timeout=120, interval=1.0, message="signals consumed")
        assert _assert_matches_reference([worker], valid, _settings_of(env), stack.bootstrap) > 100
        # Quiet period: no event arrives, yet windows read two hours later have moved on
        # (the 5m and 1h windows empty out, SLA clocks run on) exactly as the reference says.
        later = time.time() + 2 * 3600
        _assert_matches_reference([worker], valid, _settings_of(env), stack.bootstrap, at=later)
    finally:
        worker.stop()


def test_two_workers_sum_to_reference(stack, event_log, tmp_path):
    topics, events, valid, _ = event_log
    env = _env(stack, topics, store="redis")
    workers = [WorkerProcess(env, tmp_path, name=f"w{i}") for i in range(2)]
    try:
        for w in workers:
            w.start()
        _wait_consumed(workers, len(events))
        wait_for(lambda: all(w.http_status("/readyz") == 200 for w in workers), timeout=60, message="both ready")
        shares = [total(w.samples(), "stream_app_assigned_partitions") for w in workers]
        assert all(s > 0 for s in shares), f"both workers own partitions: {shares}"
        wait_for(lambda: all(_consumed_offsets_done(w) for w in workers), timeout=120, interval=1.0,
                 message="signals consumed")  # fmt: skip
        _assert_matches_reference(workers, valid, _settings_of(env), stack.bootstrap)
        _assert_lowest_accounts_answered_by_any_worker(workers, _settings_of(env), stack.bootstrap)
    finally:
        for w in workers:
            w.stop()


def test_kill_and_restart_mid_stream_equals_reference(stack, event_log, tmp_path):
    topics, events, valid, _ = event_log
    env = _env(stack, topics, store="redis", worker_instance_id="ref-w1")
    worker = WorkerProcess(env, tmp_path).start()
    try:
        _wait_consumed([worker], len(events) // 3)
        time.sleep(2)  # let at least one background flush land in Redis
        worker.kill()
        t0 = time.monotonic()
        worker.start()
        ready_after = time.monotonic() - t0
        # Counters restart with the process: wait on committed offsets instead.
        wait_for(
            lambda: _consumed_offsets_done(worker),
            timeout=300, interval=1.0, message="restarted worker caught up",
        )  # fmt: skip
        log = worker.log_path.read_text()
        loaded = [int(n) for n in re.findall(r"loaded partition \d+: (\d+) keys", log)]
        resumed = [int(n) for line in re.findall(r"resumes at offsets \{([^}]*)\}", log)
                   for n in re.findall(r": (\d+)", line)]  # fmt: skip
        print(f"restart: ready after {ready_after:.1f}s; keys loaded from Redis: {sum(loaded)}; "
              f"source partitions resumed at offsets {resumed}")  # fmt: skip
        assert sum(loaded) > 0, "the restarted worker loaded its state from Redis"
        assert resumed and max(resumed) > 0, "it resumed from its checkpoints, not from the topics' start"
        _assert_matches_reference([worker], valid, _settings_of(env), stack.bootstrap)
    finally:
        worker.stop()


def _get_json(url: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def _assert_lowest_accounts_answered_by_any_worker(workers, settings: Settings, bootstrap: str) -> None:
    signals = asyncio.run(_read_signals(bootstrap, settings.health_signals_topic(), settings.topic_partitions))
    answers = [_get_json(f"{w.base_url}/accounts/lowest?limit=15") for w in workers]
    local = [_get_json(f"{w.base_url}/accounts/lowest?limit=15&scope=local") for w in workers]
    for answer in answers:
        expected = health_reference.scores(signals, answer["evaluated_at"], _health_params(settings))
        ranked = sorted((t, a) for a, (t, _, _) in expected.items() if t is not None)[:15]
        assert [(a["total"], a["account_id"]) for a in answer["accounts"]] == ranked
    own = [{a["account_id"] for a in answer["accounts"]} for answer in local]
    assert own[0] and own[1] and not own[0] & own[1], "each worker scores only the accounts it owns"
    # A request for one account answers on every worker, routed to its owner.
    account = answers[0]["accounts"][0]["account_id"]
    views = [_get_json(f"{w.base_url}/accounts/{account}/health") for w in workers]
    assert views[0]["total"] == views[1]["total"] == answers[0]["accounts"][0]["total"]
    assert set(views[0]["components"]) == {"usage", "support", "voice", "revenue"}
    print(f"lowest accounts: {[(a['account_id'], a['total']) for a in answers[0]['accounts'][:5]]}")


def _consumed_offsets_done(worker) -> bool:
    """Caught up: committed offset == end offset on every input partition."""
    s = worker.samples()
    ends = s.get("stream_app_faust_topic_partition_end_offset", {})
    committed = s.get("stream_app_faust_topic_partition_offset_commited", {})
    inputs = {k: v for k, v in ends.items() if not dict(k)["topic"].endswith("changelog")}
    return bool(inputs) and all(committed.get(k, -1) >= v - 1 for k, v in inputs.items())
