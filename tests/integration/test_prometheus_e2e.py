"""Every dashboard query and every recording rule returns data from a real Prometheus.

A real worker (Kafka + Redis of the `stack` fixture) consumes a generated log whose
event times end now; a real Prometheus process (Debian /usr/bin/prometheus, own temp
dir and port) scrapes it every second and evaluates deploy/prometheus/rules/. Then
each panel query of deploy/grafana/dashboards/*.json, with its variables resolved
through Prometheus like Grafana does (label_values) and `$__rate_interval` = 1m,
and each recorded series, must come back non-empty. Prometheus missing = failure.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from stream_app.events import EVENT_TYPES
from stream_app.tools.generator import Faults, GeneratedEvent, generate, rfc3339
from stream_app.tools.producer import produce_log
from stream_app.tools.promstack import PrometheusProcess, find_prometheus

from tests.support.dashboards import (
    LABEL_VALUES_RE,
    load_boards,
    log_profile,
    panel_queries,
    rule_files,
    substitute,
    variable_query,
)
from tests.support.worker import WorkerProcess, total, wait_for, worker_env

pytestmark = pytest.mark.integration

LOG_HOURS = 4.0
RATE = 0.3  # events/s of event time: ~4.3k events
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__interval_ms": "15000", "__range": "5m",
            "__range_s": "300", "__range_ms": "300000"}  # fmt: skip


OFFSET_RE = re.compile(r"\boffset\s+(?:\d+(?:ms|[smhdwy]))+")


def _time_compressed_rules(workdir: Path) -> tuple[list[Path], set[str]]:
    """Copies of the rule files with every `offset <duration>` shortened to 5s.

    A rule comparing with 30 minutes ago cannot have data in a two-minute test; with
    the offset shortened the same expression runs over the history the test has.
    Everything else (names, exprs, labels, alerts) is loaded unchanged. Returns the
    files and the names of the rules that were changed.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    files, changed = [], set()
    for path in rule_files():
        doc = yaml.safe_load(path.read_text()) or {}
        for group in doc.get("groups", []):
            for rule in group.get("rules", []):
                expr = str(rule["expr"])
                if OFFSET_RE.search(expr):
                    rule["expr"] = OFFSET_RE.sub("offset 5s", expr)
                    changed.add(rule.get("record") or rule.get("alert"))
        out = workdir / path.name
        out.write_text(yaml.safe_dump(doc, sort_keys=False))
        files.append(out)
    return files, changed


def _paying_history(now: float) -> list[GeneratedEvent]:
    """Accounts paying since before the previous month, so the monthly cohorts (churn,
    retention, NRR) have accounts at both period starts, with a churn in the previous
    month and an expansion and a churn in this one. The generated log covers hours only."""
    this_month = datetime.fromtimestamp(now, UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    previous_month = (this_month - timedelta(days=1)).replace(day=1)
    since = now - 64 * 86400  # before the previous month's start whatever today is
    events = []

    def add(ts: float, event_type: str, account: str, **data) -> None:
        model = EVENT_TYPES[event_type](
            id=f"hist-{uuid.uuid4().hex}", source="billing", type=event_type, time=rfc3339(ts),
            subject=account, data={"account_id": account, **data},
        )  # fmt: skip
        events.append(GeneratedEvent(family="subscription", key=account, value=model.model_dump_json().encode(),
                                     time=ts, emit_time=ts, type=event_type, id=model.id))  # fmt: skip

    terms = {"plan": "legacy", "currency": "USD", "interval": "month"}
    for n in range(6):
        add(since + n * 60, "subscription.started", f"A-hist-{n}", subscription_id=f"S-hist-{n}",
            amount_minor=4900 + 1000 * n, **terms)  # fmt: skip
    add(previous_month.timestamp() + 3 * 86400, "subscription.cancelled", "A-hist-0", subscription_id="S-hist-0",
        reason="voluntary", effective_at=None)  # fmt: skip
    add(now - 2 * 3600, "subscription.plan_changed", "A-hist-1", subscription_id="S-hist-1",
        amount_minor=19900, **terms)  # fmt: skip
    add(now - 3600, "subscription.cancelled", "A-hist-2", subscription_id="S-hist-2", reason="voluntary",
        effective_at=None)  # fmt: skip
    return sorted(events, key=lambda e: e.time)


def _resolve_variables(prom: PrometheusProcess, board: dict) -> dict[str, str]:
    """What Grafana would send: All (`.*`) for multi-value variables, else the board's
    default when Prometheus has it, else its first value. Each variable must have values."""
    values = dict(BUILTINS)
    for var in board["templating"]["list"]:
        metric, label = LABEL_VALUES_RE.match(variable_query(var)).groups()
        found = prom.label_values(label, match=metric)
        assert found, f"{board['uid']}: variable {var['name']} ({variable_query(var)}) has no values"
        if var.get("multi"):
            values[var["name"]] = var.get("allValue") or ".*"
        else:
            default = var["current"]["value"]
            values[var["name"]] = default if default in found else found[0]
    return values


def _finite(result: list[dict]) -> int:
    return sum(math.isfinite(float(r["value"][1])) for r in result)


def _poll(prom: PrometheusProcess, expr: str, deadline: float) -> list[dict]:
    """The query's result, retried until non-empty or the deadline (rules and rates need a few
    scrapes); a PromQL error fails at once."""
    while True:
        result = prom.query(expr)
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def test_dashboards_and_rules_return_data(stack, tmp_path):
    t_start = time.monotonic()
    find_prometheus()  # PrometheusError (a failure, never a skip) when it is not installed
    app_id = f"prom-{uuid.uuid4().hex[:8]}"
    env = worker_env(stack, app_id)
    topics = {
        "ticket": env["STREAM_APP_TOPIC_TICKETS"],
        "activity": env["STREAM_APP_TOPIC_ACTIVITY"],
        "subscription": env["STREAM_APP_TOPIC_SUBSCRIPTIONS"],
        "survey": env["STREAM_APP_TOPIC_SURVEYS"],
    }
    stack.create_topics(list(topics.values()), partitions=4)
    now = time.time()
    events = generate(
        seed=20261124, start=now - LOG_HOURS * 3600, duration_seconds=LOG_HOURS * 3600 - 60, rate=RATE,
        profile=log_profile(), faults=Faults(duplicate=0.01, out_of_order=0.01, late=0.01, invalid=0.01),
    )  # fmt: skip
    events = _paying_history(now) + events
    rule_paths, compressed = _time_compressed_rules(tmp_path / "rules")

    worker = WorkerProcess(env, tmp_path).start()
    prom = PrometheusProcess(
        tmp_path / "prometheus", [f"127.0.0.1:{worker.port}"], rule_files=rule_paths, scrape_interval=1.0
    )
    try:
        prom.start()
        # A first scrape before any event: otherwise a loaded machine can consume the whole
        # log before Prometheus's first sample, counters look flat and rates read 0.
        wait_for(lambda: prom.query("up == 1"), timeout=60, interval=0.5, message="a first scrape")
        # Produced after that scrape, so counters rise between Prometheus's samples.
        asyncio.run(produce_log(stack.bootstrap, topics, events))
        # Seconds on an idle machine; the margin is for a loaded CI runner.
        wait_for(lambda: total(worker.samples(), "stream_app_events_consumed_total") >= len(events),
                 timeout=120, interval=0.5, message=f"{len(events)} events consumed")  # fmt: skip
        # Prometheus has a scrape with everything consumed, then rules get a few evaluations.
        wait_for(lambda: prom.query(f"sum(stream_app_events_consumed_total) >= {len(events)}"),
                 timeout=20, message="a scrape after consumption")  # fmt: skip
        time.sleep(3)
        deadline = time.monotonic() + 20

        rows, empty = [], []
        for name, board in load_boards().items():
            values = _resolve_variables(prom, board)
            for title, t in panel_queries(board):
                expr = substitute(t["expr"], values)
                assert "$" not in expr, f"{name} / {title}: unresolved variable in {expr}"
                result = _poll(prom, expr, deadline)
                rows.append((f"{name} / {title} [{t['refId']}]", expr, len(result), _finite(result)))
                if not result:
                    empty.append((name, title, expr))
            for a in board["annotations"]["list"]:
                prom.query(a["expr"])  # must parse; firing alerts are not expected here

        rules = prom.rules()
        for rule in rules:
            assert rule["health"] != "err", f"rule {rule['name']} fails: {rule.get('lastError')}"
            if rule["type"] == "recording":
                result = _poll(prom, rule["name"], deadline)
                note = " (offset 5s)" if rule["name"] in compressed else ""
                rows.append((f"rule {rule['name']}{note}", rule["query"], len(result), _finite(result)))
                if not result:
                    empty.append(("rules", rule["name"], rule["query"]))

        width = max(len(r[0]) for r in rows)
        print(f"\n{len(events)} events, {len(rows)} queries, {len(rule_paths)} rule files, "
              f"{sum(r['type'] == 'alerting' for r in rules)} alerting rules "
              f"(not inactive: {[(r['name'], r['state']) for r in rules if r.get('state', 'inactive') != 'inactive']})")
        print("series (finite values) per query:")  # fmt: skip
        for label, expr, n, finite in rows:
            print(f"{n:5d} ({finite:3d})  {label:<{width}}  {' '.join(expr.split())[:150]}")
        print(f"took {time.monotonic() - t_start:.1f}s")
        assert not empty, "queries without data:\n" + "\n".join(f"{b} / {t}: {e}" for b, t, e in empty)
    finally:
        prom.stop()
        worker.stop()
