"""What ``stream-app demo`` prints: the banner with paste-ready next steps and the summary lines
(pure text from URLs, times and /metrics text; stream_app/tools/demo.py runs the processes)."""

from __future__ import annotations

import json
import shlex
import urllib.parse
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Running:
    """Where the demo's pieces answer."""

    workers: list[str]  # base URLs
    kafka: str
    redis: str
    prometheus: str | None
    logs: str
    keep: bool
    command: str  # how to run stream-app from the user's shell


def example_event(now: datetime, ticket: str | None = None) -> dict:
    """A valid ticket.created at ``now`` (a copied example with an old time would change no
    windowed metric)."""
    ticket = ticket or f"T-demo-{uuid.uuid4().hex[:6]}"
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "curl",
        "type": "ticket.created",
        "time": now.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "subject": ticket,
        "schemaversion": 1,
        "data": {
            "ticket_id": ticket,
            "account_id": "A-demo",
            "requester_id": "U-demo",
            "channel": "email",
            "priority": "urgent",
            "team": "billing",
        },
    }


def curl_post(base_url: str, event: dict) -> str:
    body = json.dumps(event, separators=(",", ":"))
    return f"curl -s -X POST {base_url}/events -H 'Content-Type: application/json' -d {shlex.quote(body)}"


def prometheus_graph(base_url: str, expr: str) -> str:
    return f"{base_url}/graph?" + urllib.parse.urlencode({"g0.expr": expr, "g0.tab": "0", "g0.range_input": "15m"})


def banner(run: Running, now: datetime) -> str:
    first = run.workers[0]
    hostport = first.removeprefix("http://")
    lines = [
        "",
        "stream_app demo is running. Ctrl-C stops it"
        + (" (data and logs are kept: --keep)." if run.keep else " and removes what it started (--keep keeps it)."),
        "",
    ]
    for i, url in enumerate(run.workers):
        lines.append(f"  worker {i}     {url}/metrics   {url}/healthz   {url}/readyz")
    lines += [f"  Kafka        {run.kafka}", f"  Redis        {run.redis}"]
    if run.prometheus:
        lines.append(f"  Prometheus   {run.prometheus}   (rules and alerts: {run.prometheus}/alerts)")
    lines += [f"  logs         {run.logs}", "", "Next, in another terminal:"]
    lines.append(f"  {run.command} top --url {hostport}")
    lines.append(f"  curl -s {first}/metrics | grep -E '^stream_app_(support_backlog|usage_active_users)'")
    lines.append(f"  {curl_post(first, example_event(now))}")
    if run.prometheus:
        lines.append(f"  {prometheus_graph(run.prometheus, 'sum by (team) (stream_app_support_backlog_tickets)')}")
    else:
        lines.append("  (stream-app demo --prometheus also runs Prometheus with the project's rules and alerts)")
    lines += [
        "",
        "Read: docs/metrics.md (what each number means), docs/producing.md (send your own events),",
        "      docs/alerts.md (what fires and what to do). A summary follows every 5 seconds.",
        "",
    ]
    return "\n".join(lines)


# --- the summary lines: sums over the workers' /metrics --------------------------------------

PIPELINE = [
    ("events consumed", "stream_app_events_consumed_total", {}),
    ("valid", "stream_app_events_valid_total", {}),
    ("rejected (dead-lettered)", "stream_app_events_invalid_total", {}),
    ("duplicates ignored", "stream_app_events_duplicate_total", {}),
]
SUPPORT = [
    ("backlog", "stream_app_support_backlog_tickets", {}),
    ("tickets created 24h", "stream_app_support_tickets_created", {"window": "24h"}),
]
SLA = [("at SLA risk", "stream_app_support_sla_at_risk_tickets"), ("past SLA", "stream_app_support_sla_breached_tickets")]


def sums(texts: Iterable[str]) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value summed over the workers."""
    out: dict[tuple[str, tuple], float] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                out[key] = out.get(key, 0.0) + s.value
    return out


def total(samples: dict, name: str, **want: str) -> float:
    return sum(v for (n, labels), v in samples.items() if n == name and want.items() <= dict(labels).items())


def summary(texts: list[str]) -> list[str]:
    """Two lines: the pipeline, then the business (support, usage, revenue)."""
    samples = sums(texts)
    pipeline = ", ".join(f"{label}: {total(samples, name, **want):.0f}" for label, name, want in PIPELINE)
    parts = [f"{label}: {total(samples, name, **want):.0f}" for label, name, want in SUPPORT]
    for label, name in SLA:  # per SLA target: a ticket can be at risk for both
        reply, resolution = (total(samples, name, target=t) for t in ("first_reply", "resolution"))
        parts.append(f"{label} (reply/resolution): {reply:.0f}/{resolution:.0f}")
    dau = total(samples, "stream_app_usage_active_users", window="24h")
    mau = total(samples, "stream_app_usage_active_users", window="30d")
    parts.append(f"active users 24h: {dau:.0f}")
    parts.append(f"DAU/MAU: {100 * dau / mau:.1f}%" if mau else "DAU/MAU: -")
    currency = sorted({dict(labels).get("currency", "") for (n, labels) in samples
                       if n == "stream_app_revenue_reporting_currency_info"})  # fmt: skip
    mrr = total(samples, "stream_app_revenue_mrr_reporting")
    parts.append(f"MRR: {mrr:,.0f} {','.join(currency)}".rstrip())
    return [pipeline, ", ".join(parts)]
