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

    opts = bench.Options(events=600, entities=300, freshness_rate=50, freshness_seconds=1.0, poll_interval=0.1,
                         freshness_ladder=(25, 50, 100), freshness_ladder_seconds=1.0, metrics_scrapes=2,
                         quick=True)  # fmt: skip
    results = bench.run(stack, opts, tmp_path / "work", log=print)
    path = bench.write_results(results, tmp_path / "results")
    table = bench.format_table(results)
    goal_table = bench.format_goals(results["goals"])
    print(table)
    print(goal_table)

    saved = json.loads(path.read_text())
    assert saved == json.loads(json.dumps(results))
    assert saved["log"]["messages"] == 600
    assert all(saved["log"]["families"][f]["messages"] > 0 for f in ("ticket", "activity", "subscription", "survey"))
    systems = [saved["ceiling"]["burst"], saved["ceiling"]["drain"], saved["ours_1"], saved["ours_2"],
               saved["faust_baseline"], saved["faust_floor_event"], saved["faust_floor_take"], saved["quix_peer"]]  # fmt: skip
    assert all(s["events_per_s"] > 0 for s in systems)
    assert saved["ours_2"]["workers"] == 2 and all(share > 0 for share in saved["ours_2"]["shares"])
    # The keys the lead and the docs read stay; every ratio is a positive number.
    assert {"ours_vs_faust_floor", "ours_vs_faust_baseline", "ours_vs_quix_peer", "two_workers_vs_one"} <= set(saved["ratios"])
    assert all(v is not None and v > 0 for v in saved["ratios"].values())
    floor = saved["ratio_denominators"]["ours_vs_faust_floor"]
    assert floor in ("faust_floor_event", "faust_floor_take")
    assert saved["ratios"]["ours_vs_faust_floor"] == min(saved["ratios"]["ours_vs_faust_floor_event"],
                                                         saved["ratios"]["ours_vs_faust_floor_take"])  # fmt: skip

    fresh = saved["freshness"]
    assert fresh["markers"] == 50 and 0 <= fresh["p50_s"] <= fresh["p99_s"] <= fresh["max_s"]
    search = saved["freshness_search"]
    assert search["steps"][0]["fixed"] and search["steps"][0]["rate"] == 50
    rates = [st["rate"] for st in search["steps"]]
    assert len(rates) == len(set(rates)) and all(st["markers"] > 0 for st in search["steps"])
    holding = [st["rate"] for st in search["steps"] if st["holds"]]
    assert search["highest_rate"] == (max(holding) if holding else None)

    world = saved["metrics_demo_world"]
    assert world["series"] > 0 and world["bytes"] > 0 and world["render_p50_s"] > 0 and world["board_rule_names"] > 50
    assert world["series"] == sum(world["series_by_group"].values())

    for store in ("redis", "memory"):
        rec = saved[f"recovery_{store}"]
        assert rec["entities"] == 300 and rec["series_compared"] > 0
        # Every loaded entity is tracked by its family (the warm-up adds one of each per partition).
        assert rec["tracked"]["support_tickets_tracked"] >= rec["mix"]["open_tickets"]
        assert rec["tracked"]["usage_users_tracked"] >= rec["mix"]["users"]
        assert rec["tracked"]["revenue_accounts_tracked"] >= rec["mix"]["accounts"]
        assert rec["tracked"]["voice_responses_tracked"] >= rec["mix"]["voice_responses"] == 30
        assert rec["correct_after_kill_s"] > 0 and rec["rss_loaded_mib"] > 0
        assert 0 < rec["startup_empty_ready_s"] <= rec["startup_empty_s"]
        # One measurement per family, each over that family's entities alone.
        fams = rec["families"]
        assert set(fams) == {"support", "usage", "revenue", "voice"}
        assert sum(f["entities"] for f in fams.values()) == 330
        assert rec["metrics_after_recovery"]["series"] > 0
    assert saved["recovery_redis"]["redis_bytes_per_entity"] is not None
    for family, fam in saved["recovery_redis"]["families"].items():
        # Measured per table with MEMORY USAGE: the family's own table grew with its entities.
        assert fam["redis_table_bytes_per_entity"].get(fam["table"], 0) > 0, (family, fam)
    numbers = dict(_numbers(saved))
    assert not [p for p, v in numbers.items() if isinstance(v, float) and math.isnan(v)]

    # Goals: every one is reported; those defined at 1M entities are not judged at 300.
    goals = {g["id"]: g for g in saved["goals"]}
    assert set(goals) == {g.id for g in bench.GOALS}
    assert all(g["measured"] for g in goals.values())
    for key in ("rss_per_entity", "recovery", "metrics_render"):
        assert goals[key]["met"] is None and "1M" in goals[key]["note"]
    assert goals["faust_floor"]["value"] == saved["ratios"]["ours_vs_faust_floor"]
    assert goals["freshness"]["met"] is None  # measured at 50 ev/s, the goal is at 2,000

    # The table has a row for every measure, and no figure is missing.
    for row in ("ceiling", "stream_app, 1 worker", "stream_app, 2 workers", "Faust baseline", "Quix Streams peer",
                "Faust floor: no-op agent per event", "Faust floor: no-op agent, stream.take",
                "ours / ceiling", "ours / Faust floor", "ours / Faust baseline", "ours / Quix peer",
                "2 workers / 1 worker", "/metrics, 4-team demo world", "freshness", "highest steady rate",
                "recovery, redis store", "recovery, memory store", "RSS per entity", "per open ticket", "per user",
                "per paying account", "per survey response", "/metrics after recovery", "machine", "event log"):  # fmt: skip
        assert row in table, row
    assert "n/a" not in table
    for g in bench.GOALS:
        assert g.figure in goal_table
