"""The benchmark harness runs end to end at a tiny size and reports every figure.

No timing assertions: figures on a shared CI machine mean nothing; this only proves that
`python -m benchmarks.bench` works against the real stack and its outputs are complete.
"""

from __future__ import annotations

import json
import math

import pytest

pytestmark = pytest.mark.integration


def _numbers(doc, path=""):
    """Every leaf number of a JSON document with its path."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _numbers(v, f"{path}.{k}")
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _numbers(v, f"{path}[{i}]")
    elif isinstance(doc, (int, float)) and not isinstance(doc, bool):
        yield path, doc


def test_bench_tiny_run_produces_table_and_json(stack, tmp_path):
    from benchmarks import bench

    opts = bench.Options(events=600, entities=300, freshness_rate=50, freshness_seconds=1.0, poll_interval=0.1, quick=True)
    results = bench.run(stack, opts, tmp_path / "work", log=print)
    path = bench.write_results(results, tmp_path / "results")
    table = bench.format_table(results)
    print(table)

    saved = json.loads(path.read_text())
    assert saved == json.loads(json.dumps(results))
    assert saved["log"]["messages"] == 600
    assert all(saved["log"]["families"][f]["messages"] > 0 for f in ("ticket", "activity", "subscription", "survey"))
    systems = [saved["ceiling"]["burst"], saved["ceiling"]["drain"], saved["ours_1"], saved["ours_2"],
               saved["faust_baseline"], saved["quix_peer"]]  # fmt: skip
    assert all(s["events_per_s"] > 0 for s in systems)
    assert saved["ours_2"]["workers"] == 2 and all(share > 0 for share in saved["ours_2"]["shares"])
    assert all(v is not None and v > 0 for v in saved["ratios"].values())
    fresh = saved["freshness"]
    assert fresh["markers"] == 50 and 0 <= fresh["p50_s"] <= fresh["p99_s"] <= fresh["max_s"]
    for store in ("redis", "memory"):
        rec = saved[f"recovery_{store}"]
        assert rec["entities"] == 300 and rec["series_compared"] > 0
        # Every loaded entity is tracked by its family (the warm-up adds one of each per partition).
        assert rec["tracked"]["support_tickets_tracked"] >= rec["mix"]["open_tickets"]
        assert rec["tracked"]["usage_users_tracked"] >= rec["mix"]["users"]
        assert rec["tracked"]["revenue_accounts_tracked"] >= rec["mix"]["accounts"]
        assert rec["correct_after_kill_s"] > 0 and rec["rss_loaded_mib"] > 0
    assert saved["recovery_redis"]["redis_bytes_per_entity"] is not None
    numbers = dict(_numbers(saved))
    assert not [p for p, v in numbers.items() if isinstance(v, float) and math.isnan(v)]

    # The table has a row for every measure, and no figure is missing.
    for row in ("ceiling", "stream_app, 1 worker", "stream_app, 2 workers", "Faust baseline", "Quix Streams peer",
                "ours / ceiling", "ours / Faust baseline", "ours / Quix peer", "2 workers / 1 worker", "freshness",
                "recovery, redis store", "recovery, memory store", "RSS per entity", "machine", "event log"):  # fmt: skip
        assert row in table, row
    assert "n/a" not in table
