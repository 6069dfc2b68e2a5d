"""``stream-app top`` from metric text: aggregation over workers, quantiles, rates, the frame."""

from __future__ import annotations

import math
import re

import pytest

from stream_app.tools.top import Scrape, histogram_quantile, parse, rates, render, summarize

NOW = 1_800_000_000.0
FRT = "stream_app_support_first_response_seconds"


def worker_text(*, ready, backlog, at_risk, breached, frt, dau, mau, mrr, nps, bands, consumed, invalid, watermark, offsets):
    lines = [
        "# TYPE stream_app_worker_ready gauge",
        f"stream_app_worker_ready {ready}",
        "# TYPE stream_app_support_backlog_tickets gauge",
    ]
    for i, n in enumerate(backlog):
        lines.append(f'stream_app_support_backlog_tickets{{channel="email",priority="high",status="open",team="t{i}"}} {n}')
    lines.append("# TYPE stream_app_support_sla_at_risk_tickets gauge")
    for target, n in at_risk.items():
        lines.append(f'stream_app_support_sla_at_risk_tickets{{channel="web",priority="low",target="{target}",team="t0"}} {n}')
    lines += [
        "# TYPE stream_app_support_sla_breached_tickets gauge",
        f'stream_app_support_sla_breached_tickets{{channel="web",priority="low",target="first_reply",team="t0"}} {breached}',
        f"# TYPE {FRT} histogram",
    ]
    for le, n in frt:
        lines.append(f'{FRT}_bucket{{channel="email",le="{le}",priority="high",team="t0",window="1h"}} {n}')
    lines += [
        f"# TYPE {FRT}_gcount gauge",
        f'{FRT}_gcount{{channel="email",priority="high",team="t0",window="1h"}} {frt[-1][1]}',
        "# TYPE stream_app_usage_active_users gauge",
        f'stream_app_usage_active_users{{window="24h"}} {dau}',
        f'stream_app_usage_active_users{{window="7d"}} {dau + 1}',
        f'stream_app_usage_active_users{{window="30d"}} {mau}',
        "# TYPE stream_app_revenue_mrr_reporting gauge",
        f'stream_app_revenue_mrr_reporting{{plan="team"}} {mrr}',
        "# TYPE stream_app_revenue_reporting_currency_info gauge",
        'stream_app_revenue_reporting_currency_info{currency="EUR"} 1',
        "# TYPE stream_app_voice_responses gauge",
    ]
    for window in ("7d", "30d"):
        for category, n in nps.items():
            # 7d differs from 30d so picking the wrong window shows
            lines.append(
                f'stream_app_voice_responses{{category="{category}",kind="nps",window="{window}"}} '
                f"{n if window == '30d' else 0}"
            )
    lines.append('stream_app_voice_responses{category="satisfied",kind="csat",window="30d"} 50')
    lines.append("# TYPE stream_app_health_accounts gauge")
    for band, n in bands.items():
        lines.append(f'stream_app_health_accounts{{band="{band}"}} {n}')
    lines.append("# TYPE stream_app_events_consumed_total counter")
    for topic, n in consumed.items():
        lines.append(f'stream_app_events_consumed_total{{topic="{topic}"}} {n}')
    lines.append("# TYPE stream_app_events_invalid_total counter")
    for topic, n in invalid.items():
        lines.append(f'stream_app_events_invalid_total{{reason="invalid",topic="{topic}"}} {n}')
    lines.append("# TYPE stream_app_last_event_timestamp_seconds gauge")
    for topic, ts in watermark.items():
        lines.append(f'stream_app_last_event_timestamp_seconds{{topic="{topic}"}} {ts}')
    lines.append("# TYPE stream_app_faust_topic_partition_end_offset gauge")
    for (topic, p), (end, _) in offsets.items():
        lines.append(f'stream_app_faust_topic_partition_end_offset{{partition="{p}",topic="{topic}"}} {end}')
    lines.append("# TYPE stream_app_faust_topic_partition_offset_commited gauge")
    for (topic, p), (_, committed) in offsets.items():
        lines.append(f'stream_app_faust_topic_partition_offset_commited{{partition="{p}",topic="{topic}"}} {committed}')
    return "\n".join(lines) + "\n"


A = dict(
    ready=1, backlog=[3, 4], at_risk={"first_reply": 1, "resolution": 2}, breached=1,
    frt=[("60.0", 2), ("300.0", 6), ("900.0", 10), ("+Inf", 10)], dau=40, mau=100, mrr=1000.5,
    nps={"promoter": 6, "passive": 2, "detractor": 2}, bands={"healthy": 5, "neutral": 2, "at_risk": 1},
    consumed={"cs.tickets": 100, "cs.activity": 50}, invalid={"cs.tickets": 4},
    watermark={"cs.tickets": NOW - 5, "cs.activity": NOW - 2},
    offsets={("cs.tickets", 0): (120, 100), ("cs.activity", 0): (50, 50)},
)
B = dict(
    ready=0, backlog=[2], at_risk={"first_reply": 3}, breached=2,
    frt=[("60.0", 0), ("300.0", 4), ("900.0", 10), ("+Inf", 10)], dau=10, mau=20, mrr=99.5,
    nps={"promoter": 1, "passive": 3, "detractor": 6}, bands={"healthy": 1, "at_risk": 4},
    consumed={"cs.tickets": 80}, invalid={"cs.tickets": 0},
    watermark={"cs.tickets": NOW - 1},
    offsets={("cs.tickets", 1): (30, 27)},
)


def scrapes(at: float, a: dict, b: dict) -> list[Scrape]:
    return [
        Scrape("http://a:6066", at, parse(worker_text(**a))),
        Scrape("http://b:6066", at, parse(worker_text(**b))),
        Scrape("http://c:6066", at, error="Connection refused"),
    ]


def test_histogram_quantile_like_prometheus():
    # 2 obs <= 60, 8 in (60, 300], 10 in (300, 900]: rank 18 of 20 is the 8th of 10 in the last bucket.
    assert histogram_quantile(0.9, {60.0: 2, 300.0: 10, 900.0: 20, math.inf: 20}) == pytest.approx(300 + 600 * 8 / 10)
    # rank in the first bucket interpolates from 0
    assert histogram_quantile(0.5, {60.0: 10, math.inf: 10}) == pytest.approx(30.0)
    # rank in +Inf: the highest finite bound
    assert histogram_quantile(0.99, {60.0: 1, math.inf: 10}) == 60.0
    assert histogram_quantile(0.9, {60.0: 0, math.inf: 0}) is None
    assert histogram_quantile(0.9, {}) is None


def test_summary_sums_over_reachable_workers():
    s = summarize(scrapes(NOW, A, B))
    assert s.backlog == 3 + 4 + 2
    assert s.at_risk == {"first_reply": 1 + 3, "resolution": 2}
    assert s.breached_now == 1 + 2
    # buckets summed by le before the quantile: 60: 2, 300: 10, 900: 20
    assert s.first_response_p90["1h"] == pytest.approx(300 + 600 * (18 - 10) / (20 - 10))
    assert (s.dau, s.mau) == (40 + 10, 100 + 20)
    assert s.mrr == pytest.approx(1000.5 + 99.5) and s.currency == "EUR"
    # NPS over both workers' 30d responses: (7 promoters - 8 detractors) / 20
    assert s.nps_window == "30d" and s.nps_responses == 20
    assert s.nps == pytest.approx(100 * (7 - 8) / 20)
    assert s.health == {"healthy": 6, "neutral": 2, "at_risk": 5}
    assert s.watermark == {"cs.tickets": NOW - 1, "cs.activity": NOW - 2}
    assert s.consumer_lag == {"cs.tickets": (120 - 100) + (30 - 27), "cs.activity": 0}
    assert s.ready_workers == 1
    assert [state for _, state in s.workers] == ["ready", "not ready", "Connection refused"]


def test_rates_per_worker_with_counter_reset():
    a2 = {**A, "consumed": {"cs.tickets": 150, "cs.activity": 70}, "invalid": {"cs.tickets": 6}}
    b2 = {**B, "consumed": {"cs.tickets": 30}}  # went down: worker B restarted
    r = rates(scrapes(NOW - 10, A, B), scrapes(NOW, a2, b2))
    assert r.seconds == 10
    assert r.consumed == {"cs.tickets": pytest.approx((150 - 100 + 30) / 10), "cs.activity": pytest.approx(2.0)}
    assert r.rejected == {"cs.tickets": pytest.approx(0.2)}
    assert rates([], scrapes(NOW, A, B)) is None


def test_render_shows_the_numbers():
    s = summarize(scrapes(NOW, A, B))
    a2 = {**A, "consumed": {"cs.tickets": 150, "cs.activity": 70}, "invalid": {"cs.tickets": 6}}
    frame = render(s, rates(scrapes(NOW - 10, A, B), scrapes(NOW, a2, B)))
    assert "\x1b[" not in frame  # no colour unless asked
    assert "backlog 9 " in frame
    assert "at risk 6 (first_reply 4, resolution 2)" in frame
    assert "breached now 3" in frame
    assert "first response p90 over 1h: 13m00s" in frame  # 780 s
    assert re.search(r"DAU 50\s+MAU 120\s+DAU/MAU 41\.7%", frame)
    assert "MRR 1,100.00 EUR" in frame
    assert "NPS -5.0 (n=20 over 30d)" in frame
    assert re.search(r"healthy 6\s+neutral 2\s+at_risk 5", frame)
    row = next(line for line in frame.splitlines() if "cs.tickets" in line).split()
    assert row == ["cs.tickets", "5.0", "0.2", "1.0s", "23"]
    assert "workers 1/3 ready" in frame
    assert "Connection refused" in frame
    assert "\x1b[" in render(s, None, color=True)
    assert "rates appear from the second scrape" in render(s, None)
