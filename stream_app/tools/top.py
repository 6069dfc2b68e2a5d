"""``stream-app top``: a live terminal view of headline metrics and pipeline health.

Reads the Prometheus text of one or more workers' ``/metrics`` (no Prometheus server needed),
sums across workers the way the dashboards do, and redraws every ``--interval`` seconds with
plain ANSI escapes. Rates (events/s) are the counter increase between two scrapes, per worker,
then summed; ``--once`` scrapes twice ``--interval`` apart, prints one frame and exits.

Pure parts (``parse``, ``summarize``, ``rates``, ``render``, ``histogram_quantile``) take
metric text and numbers; only ``scrape`` and ``main_top`` touch the network and the terminal.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from prometheus_client.parser import text_string_to_metric_families

DEFAULT_URL = "http://127.0.0.1:6066"

Series = dict[tuple[tuple[str, str], ...], float]  # sorted label items -> value


@dataclass
class Scrape:
    """One worker's /metrics at one moment: ``samples`` is sample name -> Series."""

    url: str
    at: float  # wall clock of the scrape, epoch seconds
    samples: dict[str, Series] = field(default_factory=dict)
    error: str | None = None


def parse(text: str) -> dict[str, Series]:
    out: dict[str, Series] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name][tuple(sorted(s.labels.items()))] = s.value
    return dict(out)


def scrape(url: str, timeout: float = 3.0) -> Scrape:
    base = url.rstrip("/")
    target = base if base.endswith("/metrics") else base + "/metrics"
    at = time.time()
    try:
        with urllib.request.urlopen(target, timeout=timeout) as response:
            text = response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return Scrape(url, at, error=f"HTTP {exc.code}")
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Scrape(url, at, error=str(reason) or type(exc).__name__)
    try:
        return Scrape(url, at, parse(text))
    except ValueError as exc:
        return Scrape(url, at, error=f"unparsable metrics: {exc}")


# --------------------------------------------------------------------------- aggregation


def _match(key: tuple[tuple[str, str], ...], want: dict[str, str]) -> bool:
    labels = dict(key)
    return all(labels.get(k) == v for k, v in want.items())


def total(scrapes: Iterable[Scrape], name: str, **want: str) -> float | None:
    """Sum over workers and series matching ``want``; None when no worker has the series."""
    found, acc = False, 0.0
    for s in scrapes:
        for key, value in s.samples.get(name, {}).items():
            if _match(key, want):
                found, acc = True, acc + value
    return acc if found else None


def by_label(scrapes: Iterable[Scrape], name: str, label: str, reduce=sum, **want: str) -> dict[str, float]:
    """``reduce`` (sum, max, ...) by one label over workers and series matching ``want``."""
    groups: dict[str, list[float]] = defaultdict(list)
    for s in scrapes:
        for key, value in s.samples.get(name, {}).items():
            labels = dict(key)
            if label in labels and _match(key, want):
                groups[labels[label]].append(value)
    return {k: reduce(v) for k, v in groups.items()}


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus' histogram_quantile over cumulative bucket counts {upper bound: count}.

    Linear interpolation inside the bucket holding the rank; the lowest bucket starts at 0; a
    rank in the +Inf bucket answers the highest finite bound. None without observations.
    """
    edges = sorted(buckets)
    if not edges or not math.isinf(edges[-1]):
        return None
    count = buckets[edges[-1]]
    if count <= 0:
        return None
    rank = q * count
    prev_edge, prev_count = 0.0, 0.0
    for edge in edges:
        c = buckets[edge]
        if c >= rank:
            if math.isinf(edge):
                return prev_edge if len(edges) > 1 else None
            if c == prev_count:
                return edge
            lower = prev_edge if edge > 0 else edge
            return lower + (edge - lower) * (rank - prev_count) / (c - prev_count)
        prev_edge, prev_count = edge, c
    return None


def _buckets(scrapes: Iterable[Scrape], name: str, **want: str) -> dict[float, float]:
    return {float(le): v for le, v in by_label(scrapes, name + "_bucket", "le", **want).items()}


def _pick_window(available: Iterable[str], preferred: str) -> str | None:
    windows = sorted(set(available))
    return preferred if preferred in windows else (windows[0] if windows else None)


@dataclass
class Summary:
    """Headline numbers at one moment, summed over the reachable workers."""

    at: float
    workers: list[tuple[str, str]]  # (url, 'ready' | 'not ready' | error text)
    backlog: float | None = None
    at_risk: dict[str, float] = field(default_factory=dict)  # SLA target -> tickets
    breached_now: float | None = None
    first_response_p90: dict[str, float | None] = field(default_factory=dict)  # window -> seconds
    dau: float | None = None
    mau: float | None = None
    mrr: float | None = None
    currency: str = ""
    nps: float | None = None
    nps_responses: float | None = None
    nps_window: str | None = None
    health: dict[str, float] = field(default_factory=dict)  # band -> accounts
    watermark: dict[str, float] = field(default_factory=dict)  # topic -> newest event time
    consumer_lag: dict[str, float] = field(default_factory=dict)  # topic -> messages
    topics: list[str] = field(default_factory=list)

    @property
    def ready_workers(self) -> int:
        return sum(state == "ready" for _, state in self.workers)


def summarize(scrapes: list[Scrape]) -> Summary:
    ok = [s for s in scrapes if s.error is None]
    at = max((s.at for s in scrapes), default=time.time())
    workers = []
    for s in scrapes:
        if s.error is not None:
            workers.append((s.url, s.error))
        else:
            ready = total([s], "stream_app_worker_ready")
            workers.append((s.url, "ready" if ready == 1 else "not ready"))
    out = Summary(at=at, workers=workers)
    out.backlog = total(ok, "stream_app_support_backlog_tickets")
    out.at_risk = by_label(ok, "stream_app_support_sla_at_risk_tickets", "target")
    out.breached_now = total(ok, "stream_app_support_sla_breached_tickets")
    frt = "stream_app_support_first_response_seconds"
    for window in sorted(by_label(ok, frt + "_gcount", "window"), key=_window_seconds):
        out.first_response_p90[window] = histogram_quantile(0.9, _buckets(ok, frt, window=window))
    active = by_label(ok, "stream_app_usage_active_users", "window")
    out.dau, out.mau = active.get("24h"), active.get("30d")
    out.mrr = total(ok, "stream_app_revenue_mrr_reporting")
    out.currency = ",".join(sorted(by_label(ok, "stream_app_revenue_reporting_currency_info", "currency")))
    nps = by_label(ok, "stream_app_voice_responses", "window", kind="nps")
    out.nps_window = _pick_window(nps, "30d")
    if out.nps_window is not None:
        n = nps[out.nps_window]
        cats = by_label(ok, "stream_app_voice_responses", "category", kind="nps", window=out.nps_window)
        out.nps_responses = n
        if n > 0:
            out.nps = 100.0 * (cats.get("promoter", 0.0) - cats.get("detractor", 0.0)) / n
    out.health = by_label(ok, "stream_app_health_accounts", "band")
    out.watermark = by_label(ok, "stream_app_last_event_timestamp_seconds", "topic", reduce=max)
    out.topics = sorted(by_label(ok, "stream_app_events_consumed_total", "topic"))
    # Faust's per-partition offsets; each partition is reported by the worker owning it.
    end = _per_partition(ok, "stream_app_faust_topic_partition_end_offset")
    committed = _per_partition(ok, "stream_app_faust_topic_partition_offset_commited")
    for topic in out.topics:
        parts = [(tp, off) for tp, off in end.items() if tp[0] == topic]
        if parts:
            out.consumer_lag[topic] = sum(max(0.0, off - committed.get(tp, 0.0)) for tp, off in parts)
    return out


def _per_partition(scrapes: Iterable[Scrape], name: str) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for s in scrapes:
        for key, value in s.samples.get(name, {}).items():
            labels = dict(key)
            if "topic" in labels and "partition" in labels:
                tp = (labels["topic"], labels["partition"])
                out[tp] = max(out.get(tp, value), value)
    return out


_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _window_seconds(label: str) -> float:
    try:
        return float(label[:-1]) * _UNIT_SECONDS[label[-1]]
    except (KeyError, ValueError, IndexError):
        return math.inf


@dataclass
class Rates:
    """Per-second counter increases between two scrapes (summed over workers)."""

    seconds: float
    consumed: dict[str, float] = field(default_factory=dict)  # topic -> events/s
    rejected: dict[str, float] = field(default_factory=dict)  # topic -> events/s
    http_accepted: float | None = None
    http_rejected: float | None = None


def _increase(prev: Series, cur: Series, want: dict[str, str], group: str | None) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for key, value in cur.items():
        if not _match(key, want):
            continue
        before = prev.get(key, 0.0)
        # A counter that went down was reset (worker restart): count from zero, as Prometheus does.
        delta = value - before if value >= before else value
        out[dict(key).get(group, "") if group else ""] += delta
    return out


def rates(prev: list[Scrape], cur: list[Scrape]) -> Rates | None:
    """Counter rates between matching scrapes of the same URLs; None without a usable pair."""
    before = {s.url: s for s in prev if s.error is None}
    pairs = [(before[s.url], s) for s in cur if s.error is None and s.url in before]
    if not pairs:
        return None
    seconds = max(c.at - p.at for p, c in pairs)
    if seconds <= 0:
        return None
    out = Rates(seconds)
    consumed: dict[str, float] = defaultdict(float)
    rejected: dict[str, float] = defaultdict(float)
    http: dict[str, float] = defaultdict(float)
    seen_http = False
    for p, c in pairs:
        dt = c.at - p.at
        if dt <= 0:
            continue
        for name, acc in (("stream_app_events_consumed_total", consumed), ("stream_app_events_invalid_total", rejected)):
            for topic, inc in _increase(p.samples.get(name, {}), c.samples.get(name, {}), {}, "topic").items():
                acc[topic] += inc / dt
        if "stream_app_http_ingest_events_total" in c.samples:
            seen_http = True
            name = "stream_app_http_ingest_events_total"
            for outcome, inc in _increase(p.samples.get(name, {}), c.samples[name], {}, "outcome").items():
                http[outcome] += inc / dt
    out.consumed, out.rejected = dict(consumed), dict(rejected)
    if seen_http:
        out.http_accepted = http.get("accepted", 0.0)
        out.http_rejected = http.get("rejected", 0.0)
    return out


# --------------------------------------------------------------------------- rendering

BOLD, DIM, RED, GREEN, YELLOW, RESET = "\x1b[1m", "\x1b[2m", "\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[0m"
CLEAR = "\x1b[H\x1b[2J"


def fmt_count(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if float(value).is_integer() or abs(value) >= 100 else f"{value:,.1f}"


def fmt_rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = float(seconds)
    if s < 60:
        return f"{s:.1f}s" if s < 10 else f"{s:.0f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    if s < 86400:
        return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"
    return f"{int(s // 86400)}d{int(s % 86400 // 3600):02d}h"


def fmt_money(value: float | None, currency: str) -> str:
    return "-" if value is None else f"{value:,.2f} {currency}".rstrip()


def render(summary: Summary, rate: Rates | None = None, *, color: bool = False, interval: float | None = None) -> str:
    """One frame of plain text (ANSI colours only when ``color``)."""

    def c(code: str, text: str) -> str:
        return f"{code}{text}{RESET}" if color else text

    lines: list[str] = []
    stamp = datetime.fromtimestamp(summary.at, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    n = len(summary.workers)
    ready = summary.ready_workers
    ready_txt = c(GREEN if ready == n else RED, f"{ready}/{n} ready")
    every = f"  every {interval:g}s" if interval else ""
    lines.append(c(BOLD, "stream-app top") + f"  {stamp}  workers {ready_txt}{every}")
    lines.append("")

    at_risk = sum(summary.at_risk.values()) if summary.at_risk else None
    detail = ", ".join(f"{k} {fmt_count(v)}" for k, v in sorted(summary.at_risk.items()))
    # "over 1h: 9m54s": a window label next to a duration must not read as part of it.
    frt = ", ".join(f"over {w}: {fmt_duration(v)}" for w, v in summary.first_response_p90.items()) or "-"
    lines.append(
        f"{c(BOLD, 'SUPPORT ')}  backlog {fmt_count(summary.backlog)}   at risk {fmt_count(at_risk)}"
        + (f" ({detail})" if detail else "")
        + f"   breached now {fmt_count(summary.breached_now)}   first response p90 {frt}"
    )
    stick = (
        f"{100.0 * summary.dau / summary.mau:.1f}%"
        if summary.dau is not None and summary.mau
        else "-"
    )
    lines.append(
        f"{c(BOLD, 'USAGE   ')}  DAU {fmt_count(summary.dau)}   MAU {fmt_count(summary.mau)}   DAU/MAU {stick}"
    )
    lines.append(f"{c(BOLD, 'REVENUE ')}  MRR {fmt_money(summary.mrr, summary.currency)}")
    nps = "-" if summary.nps is None else f"{summary.nps:+.1f}"
    nps_n = f" (n={fmt_count(summary.nps_responses)} over {summary.nps_window})" if summary.nps_window else ""
    lines.append(f"{c(BOLD, 'VOICE   ')}  NPS {nps}{nps_n}")
    band_color = {"healthy": GREEN, "neutral": YELLOW, "at_risk": RED}
    bands = "   ".join(
        c(band_color.get(b, ""), f"{b} {fmt_count(summary.health[b])}")
        for b in sorted(summary.health, key=lambda b: list(band_color).index(b) if b in band_color else 9)
    ) or "-"
    lines.append(f"{c(BOLD, 'HEALTH  ')}  {bands}")
    lines.append("")

    width = max([len("topic"), *(len(t) for t in summary.topics)])
    lines.append(
        c(BOLD, "PIPELINE")
        + f"  {'topic':<{width}}  {'events/s':>9}  {'rejected/s':>10}  {'event-time lag':>14}  {'consumer lag':>12}"
    )
    for topic in summary.topics:
        wm = summary.watermark.get(topic)
        lag = None if wm is None else max(0.0, summary.at - wm)
        ev = None if rate is None else rate.consumed.get(topic, 0.0)
        rj = None if rate is None else rate.rejected.get(topic, 0.0)
        rj_txt = fmt_rate(rj)
        if rj:
            rj_txt = c(RED, f"{rj_txt:>10}")
        lines.append(
            f"{'':8}  {topic:<{width}}  {fmt_rate(ev):>9}  {rj_txt:>10}  {fmt_duration(lag):>14}  "
            f"{fmt_count(summary.consumer_lag.get(topic)):>12}"
        )
    if rate is not None:
        lines.append(
            f"{'':8}  {'total':<{width}}  {fmt_rate(sum(rate.consumed.values())):>9}  "
            f"{fmt_rate(sum(rate.rejected.values())):>10}"
        )
        if rate.http_accepted is not None:
            lines.append(
                f"{'':8}  HTTP ingest: accepted/s {fmt_rate(rate.http_accepted)}   "
                f"rejected/s {fmt_rate(rate.http_rejected)}"
            )
    else:
        lines.append(f"{'':8}  (rates appear from the second scrape)")
    lines.append("")
    for url, state in summary.workers:
        tone = GREEN if state == "ready" else (YELLOW if state == "not ready" else RED)
        lines.append(f"{c(BOLD, 'WORKER  ')}  {url}  {c(tone, state)}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- command


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stream-app top",
        description="Live terminal view of headline metrics and pipeline health from workers' /metrics.",
    )
    p.add_argument(
        "--url",
        action="append",
        type=worker_url,
        help=f"a worker: http://host:port, host:port or a port (repeatable; default {DEFAULT_URL}); "
        "/metrics is appended",
    )
    p.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes (default 2)")
    p.add_argument("--once", action="store_true", help="print one frame (two scrapes --interval apart) and exit")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    p.add_argument("--timeout", type=float, default=3.0, help="HTTP timeout per scrape (s)")
    return p


def worker_url(text: str) -> str:
    """``http://host:port`` from what people type: a URL, ``host:port``, ``:port`` or a port."""
    text = text.strip()
    if "://" in text:
        return text
    if text.isdigit():
        return f"http://127.0.0.1:{text}"
    if text.startswith(":"):
        return f"http://127.0.0.1{text}"
    return f"http://{text}"


def scrape_all(urls: list[str], timeout: float) -> list[Scrape]:
    return [scrape(u, timeout) for u in urls]


def main_top(argv: list[str] | None = None, out=None) -> int:
    args = _parser().parse_args(argv)
    out = out or sys.stdout
    if args.interval <= 0:
        print("top: --interval must be > 0", file=sys.stderr)
        return 2
    urls = args.url or [DEFAULT_URL]
    color = args.color == "always" or (args.color == "auto" and out.isatty())
    prev = scrape_all(urls, args.timeout)
    if args.once:
        time.sleep(args.interval)
        cur = scrape_all(urls, args.timeout)
        out.write(render(summarize(cur), rates(prev, cur), color=color))
        out.flush()
        return 0 if any(s.error is None for s in cur) else 1
    try:
        out.write(CLEAR + render(summarize(prev), None, color=color, interval=args.interval))
        out.flush()
        while True:
            time.sleep(args.interval)
            cur = scrape_all(urls, args.timeout)
            out.write(CLEAR + render(summarize(cur), rates(prev, cur), color=color, interval=args.interval))
            out.flush()
            prev = cur
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main_top(sys.argv[1:]))
