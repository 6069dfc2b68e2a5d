"""The reference computations' side of a comparison (tests/reference): their parameters, taken
from the same configuration the code under test runs with, their input events, and the
comparison of a worker's /metrics with them.

Used by the family unit tests, the reference integration test, the bad-input flood test and
the fault harness.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from stream_app.config import Settings
from stream_app.events import decode_event
from stream_app.tools.generator import GeneratedEvent
from stream_app.worker.families import build_families, health_config

from ..reference import health_reference, revenue_reference, support_reference, usage_reference, voice_reference
from .kafka import read_topic
from .samples import Samples

DAY = 86400.0
TOO_LATE_AGE = 3 * DAY  # older than every window + grace: must be counted as too late

# Metric family -> (reference module, event family).
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


# ----------------------------------------------------------------------------- parameters


def support_params(cfg: Any, calendars: Mapping[str, tuple] | None = None) -> dict:
    """``calendars``: team -> (timezone, weekdays, open, close), the reference's own form."""
    return dict(
        bucket=cfg.bucket_seconds, volume_windows=cfg.volume_windows, windows=cfg.windows,
        edges_first_response=cfg.first_response_edges, edges_resolution=cfg.full_resolution_edges,
        edges_handle=cfg.handle_time_edges, at_risk=cfg.at_risk_fraction, calendars=dict(calendars or {}),
        targets={p: (t.first_reply_seconds, t.resolution_seconds) for p, t in cfg.sla_targets.items()},
        ticket_retention=cfg.ticket_retention_seconds, horizon=cfg.horizon,
        edges_touches=cfg.touch_edges, edges_reassignments=cfg.reassignment_edges,
        edges_status_time=cfg.status_time_edges, backlog_age=cfg.backlog_age_seconds,
    )  # fmt: skip


def usage_params(cfg: Any) -> dict:
    return dict(
        bucket=cfg.bucket_seconds, active_windows=cfg.active_windows, session_windows=cfg.session_windows,
        feature_windows=cfg.feature_windows, known_seconds=cfg.known_seconds, idle=cfg.idle_timeout_seconds,
        adoption=cfg.adoption_seconds, edges=cfg.session_edges, horizon=cfg.horizon,
    )  # fmt: skip


def revenue_params(cfg: Any) -> dict:
    return dict(
        bucket=cfg.bucket_seconds, windows=cfg.windows, reporting=cfg.reporting_currency, fx=dict(cfg.fx_rates),
        minor=dict(cfg.minor_units), default_minor=cfg.default_minor_unit,
        trial_grace=cfg.trial_conversion_grace_seconds,
    )  # fmt: skip


def voice_params(cfg: Any) -> dict:
    return dict(
        bucket=cfg.bucket_seconds, windows=cfg.windows, min_responses=cfg.min_responses, horizon=cfg.horizon,
        themes={k: list(v) for k, v in cfg.themes.items()},
    )


def health_params(cfg: Any) -> dict:
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


FAMILY_PARAMS = {"support": support_params, "usage": usage_params, "revenue": revenue_params, "voice": voice_params}


def reference_params(settings: Settings) -> dict[str, dict]:
    """Reference parameters per metric family, from the same settings the workers use."""
    return {f.name: FAMILY_PARAMS[f.name](f.config) for f in build_families(settings)}


# ----------------------------------------------------------------------------- events


def plain(decoded: Any) -> dict:
    """A decoded event as the reference computations take it: plain values, datetimes as epoch
    seconds."""
    data = {k: v.timestamp() if isinstance(v, datetime) else v for k, v in decoded.data.model_dump().items()}
    return {"id": decoded.id, "type": decoded.type, "time": decoded.ts, "family": decoded.family, "data": data}


def reference_events(events: Iterable[GeneratedEvent], now: float) -> list[dict]:
    """The valid events of a generated log in the references' plain form (invalid ones are the
    dead-letter topic's business)."""
    return [plain(decode_event(ev.value, now=now + 600)) for ev in events if not ev.is_invalid]


def too_late_events(now: float) -> list[GeneratedEvent]:
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
        out.append(GeneratedEvent(
            family="ticket", key=ticket, value=json.dumps(ev).encode(), time=t + offset,
            emit_time=now, type=event_type, id=ev["id"], is_late=True,
        ))  # fmt: skip
    return out


async def read_signals(bootstrap: str, topic: str, partitions: int) -> list[dict]:
    """Every health signal message, in partition order (an account lives in one partition)."""
    return [{"account_id": m.key.decode(), **json.loads(m.value)} for m in await read_topic(bootstrap, topic, partitions)]


# ----------------------------------------------------------------------------- comparison


def scrape_at(workers: Iterable[Any], at: float) -> Samples:
    """Samples aggregated across workers as dashboards do (sum; min for timestamps), every worker
    evaluated at the same instant (``/metrics?at=``)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    out: Samples = {}
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


def compare_with_reference(workers: list, valid: list[dict], settings: Settings, bootstrap: str,
                           at: float | None = None) -> dict:
    """Every worker's /metrics at one instant vs the batch references: counts of samples checked,
    missing, below (lost effect) and above (double counted) the reference, non-zero samples the
    reference does not have (extra), and a few examples. Customer health is compared with the
    reference over exactly the signal messages the families sent, read back from Kafka."""
    at = time.time() if at is None else at
    got = scrape_at(workers, at)
    params = reference_params(settings)
    expected_by = {name: module.compute([e for e in valid if e["family"] == family], at, params[name])
                   for name, (module, family) in REFERENCES.items()}  # fmt: skip
    signals = asyncio.run(read_signals(bootstrap, settings.health_signals_topic(), settings.topic_partitions))
    expected_by["health"] = health_reference.compute(signals, at, health_params(health_config(settings)))
    out: dict = {"checked": 0, "missing": 0, "lost": 0, "double": 0, "extra": 0}
    examples = []
    for name, expected in expected_by.items():
        prefix = f"stream_app_{name}_"
        mine = {k: v for k, v in got.items() if k[0].startswith(prefix) and not INTERNAL.search(k[0])}
        for k, v in expected.items():
            out["checked"] += 1
            if k not in mine:
                out["missing"] += 1
                examples.append(("missing", k, v))
            elif not math.isclose(mine[k], v, rel_tol=1e-9, abs_tol=1e-6):
                out["lost" if mine[k] < v else "double"] += 1
                examples.append(("differs", k, mine[k], v))
        for k, v in mine.items():
            if k not in expected and v != 0:
                out["extra"] += 1
                examples.append(("extra", k, v))
    print(f"{out['checked']} samples compared with the references at {at:.0f} ({len(signals)} signal messages)")
    out["examples"] = sorted(examples, key=str)[:8]
    return out


def assert_equals_reference(workers: list, valid: list[dict], settings: Settings, bootstrap: str,
                            at: float | None = None, settle: float = 0.0) -> int:
    """``compare_with_reference`` finds nothing missing, lost, double counted or extra; returns
    how many samples it checked. ``settle``: seconds to keep comparing until it does (the health
    stage applies the last checkpoint's signals after the inputs' offsets are committed)."""
    deadline = time.monotonic() + settle
    while True:
        diff = compare_with_reference(workers, valid, settings, bootstrap, at)
        clean = diff["missing"] == diff["lost"] == diff["double"] == diff["extra"] == 0
        if clean or time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    assert clean, diff
    return diff["checked"]
