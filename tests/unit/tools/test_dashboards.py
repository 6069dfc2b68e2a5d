"""Structural checks of the Grafana boards (no server).

The boards are the committed output of deploy/grafana/build_dashboards.py. Every
metric a query names must be one the workers expose: the set is collected by
building a real StreamWorker in-process (its registry holds the pipeline, Faust,
worker and family collectors) and feeding a small generated log through the
family cores and the health index, so windowed and labelled series exist too.
"""

from __future__ import annotations

import importlib.util
import re
import time
from collections import defaultdict
from functools import cache

import pytest

from tests.support.dashboards import (
    BUILDER,
    DASHBOARD_DIR,
    DATASOURCE_UID,
    GRAFANA_BUILTINS,
    GROUPING_RE,
    LABEL_VALUES_RE,
    METRIC_RE,
    TARGET_LABELS,
    iter_panels,
    load_boards,
    log_profile,
    panel_queries,
    recorded_names,
    selector_labels,
    substitute,
    variable_query,
    variables_in,
)
from tests.support.engine import EngineRunner
from tests.support.paths import ROOT


def _sample_names(family) -> set[str]:
    """Sample names a family produces even when it has no samples yet (labelled, no children)."""
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
        "summary": ("_sum", "_count"),
        "info": ("_info",),
    }.get(family.type, ("",))
    return {family.name + s for s in suffixes}


@cache
def exposed() -> dict[str, dict[str, set[str]]]:
    """Sample name -> label name -> values seen, from a real worker registry fed in-process."""
    from prometheus_client.metrics import MetricWrapperBase

    from stream_app.worker.app import StreamWorker
    from stream_app.config import Settings
    from stream_app.events import EventRejected, decode_event
    from stream_app.tools.generator import Faults, generate

    now = time.time()
    worker = StreamWorker(Settings(store="memory"))
    engines = {p.family.event_family: EngineRunner(p.family) for p in worker.processors}
    for p in worker.processors:
        p.engine = engines[p.family.event_family].engine  # the worker exposes what the runners hold
    log = generate(seed=11, start=now - 4 * 3600, duration_seconds=4 * 3600 - 60, rate=0.3,
                   profile=log_profile(), faults=Faults(duplicate=0.01, invalid=0.01))  # fmt: skip
    for raw in log:
        topic = worker.input_topics[raw.family]
        worker.pipeline.observe_consumed(topic, now)
        try:
            event = decode_event(raw.value, expected_family=raw.family, now=now)
        except EventRejected as rejected:
            worker.pipeline.invalid.labels(topic, rejected.reason).inc()
            worker.pipeline.deadlettered.labels(topic, rejected.reason).inc()
            continue
        worker.pipeline.observe_valid_batch(topic, {event.type: 1}, event.ts, [max(0.0, now - event.ts)])
        # The engine step of the event's family (states in a dict instead of the Faust table),
        # its signals applied by the health stage as the health agent would.
        run = engines[raw.family]
        run.process(event)
        for change in run.signals:
            worker.health.stage.apply(change.account_id, change.message())
        run.signals.clear()
    out: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for family in worker.exposition.at(now).collect():
        for name in _sample_names(family):
            out[name]  # noqa: B018 - present even without samples
        for s in family.samples:
            for label, value in s.labels.items():
                out[s.name][label].add(value)
    # Labelled Faust metrics get children only while running: take their label names.
    for collector in list(worker.registry._collector_to_names):
        if isinstance(collector, MetricWrapperBase):
            for family in collector.describe():
                for name in _sample_names(family):
                    for label in collector._labelnames:
                        out[name][label]  # noqa: B018
    return {k: dict(v) for k, v in out.items()}


def _load_builder():
    spec = importlib.util.spec_from_file_location("build_dashboards", BUILDER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BOARDS = load_boards()
ALL_QUERIES = [(name, title, t) for name, b in BOARDS.items() for title, t in panel_queries(b)]


# --------------------------------------------------------------------------- tests


def test_committed_boards_are_the_generator_output():
    built = _load_builder().build()
    assert set(built) == {p.name for p in DASHBOARD_DIR.glob("*.json")}, "a board file is not generated"
    stale = [name for name, text in built.items() if (DASHBOARD_DIR / name).read_text() != text]
    assert not stale, f"run python deploy/grafana/build_dashboards.py: {stale} differ"


def test_boards_cover_the_ops_surface():
    assert {b["uid"] for b in BOARDS.values()} >= {
        "stream-app-pipeline", "stream-app-support", "stream-app-usage",
        "stream-app-revenue", "stream-app-voice", "stream-app-health",
    }  # fmt: skip


def test_uids_unique_stable_and_titled():
    uids = [b["uid"] for b in BOARDS.values()]
    assert len(uids) == len(set(uids))
    for name, board in BOARDS.items():
        # Grafana uids: at most 40 characters of [A-Za-z0-9_-]; the file is named after it.
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", board["uid"]), name
        assert board["uid"] == f"stream-app-{name.removesuffix('.json')}", name
        assert board["title"].startswith("stream_app / "), name
        assert "stream_app" in board["tags"]


def test_panels_have_unique_ids_and_fit_the_grid():
    for name, board in BOARDS.items():
        panels = list(iter_panels(board))
        assert panels, name
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        cells = set()
        for p in panels:
            g = p["gridPos"]
            assert p["title"], f"{name}: panel {p['id']} has no title"
            assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["y"] >= 0 and g["x"] + g["w"] <= 24, (name, p["title"])
            area = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not cells & area, f"{name}: {p['title']} overlaps another panel"
            cells |= area


def test_every_target_has_an_expr_on_our_datasource():
    assert ALL_QUERIES
    for name, title, t in ALL_QUERIES:
        assert t.get("expr", "").strip(), (name, title)
        assert t["datasource"]["uid"] == DATASOURCE_UID, (name, title)
    for name, board in BOARDS.items():
        for p in iter_panels(board):
            if p["type"] not in ("row", "text"):
                assert p["datasource"]["uid"] == DATASOURCE_UID, (name, p["title"])
                assert p.get("targets"), (name, p["title"])
            ref_ids = [t["refId"] for t in p.get("targets", [])]
            assert len(ref_ids) == len(set(ref_ids)), (name, p["title"])


def test_every_metric_used_is_exposed():
    known = set(exposed()) | recorded_names()
    missing = {
        (name, title, metric)
        for name, title, t in ALL_QUERIES
        for metric in METRIC_RE.findall(t["expr"])
        if metric not in known
    }
    assert not missing, sorted(missing)


def test_label_matchers_name_labels_and_edges_the_metric_has():
    """A typo in a label name, or an `le` that is not a bucket edge, silently matches nothing."""
    series = exposed()
    problems = []
    for name, title, t in ALL_QUERIES:
        for metric, label, value in selector_labels(t["expr"]):
            labels = series.get(metric, {})
            if label in TARGET_LABELS:
                continue
            if label not in labels:
                problems.append((name, title, metric, label))
            elif label == "le" and value not in labels["le"]:
                problems.append((name, title, metric, f"le={value} not an edge {sorted(labels['le'])}"))
            elif not variables_in(value) and "|" not in value and label != "le" and value not in labels[label]:
                # Literal values of enumerated labels (window, kind, band...) must exist.
                problems.append((name, title, metric, f"{label}={value} never exposed"))
    assert not problems, problems


def test_grouping_labels_exist_on_some_metric_of_the_query():
    series = exposed()
    problems = []
    for name, title, t in ALL_QUERIES:
        expr = t["expr"]
        available = set(TARGET_LABELS) | {"le"}
        for metric in METRIC_RE.findall(expr):
            available |= set(series.get(metric, {}))
        for group in GROUPING_RE.findall(expr):
            for label in filter(None, (g.strip() for g in group.split(","))):
                if label not in available:
                    problems.append((name, title, label))
    assert not problems, problems


def test_template_variables_query_existing_labels_and_are_used():
    series = exposed()
    for name, board in BOARDS.items():
        variables = board["templating"]["list"]
        defined = {v["name"] for v in variables}
        used = set()
        for _, t in panel_queries(board):
            used |= variables_in(t["expr"])
        for p in iter_panels(board):
            used |= variables_in(p["title"])
        assert used - GRAFANA_BUILTINS <= defined, f"{name}: undefined variables {used - defined - GRAFANA_BUILTINS}"
        for v in variables:
            assert v["name"] in used, f"{name}: variable {v['name']} is never used"
            assert v["datasource"]["uid"] == DATASOURCE_UID
            m = LABEL_VALUES_RE.match(variable_query(v))
            assert m, f"{name}: {v['name']} is not a label_values(metric, label) query"
            metric, label = m.groups()
            assert label in TARGET_LABELS or label in series.get(metric, {}), f"{name}: {metric} has no label {label}"
            if v.get("multi"):
                assert v.get("includeAll") and v.get("allValue") == ".*", (name, v["name"])
            else:
                default = v["current"]["value"]
                assert default in series[metric][label], f"{name}: default {v['name']}={default} never exposed"


DOCS = ROOT / "docs" / "metrics.md"
TABLE_ROW_RE = re.compile(r"^\| [^|]+ \| `(\w+)` \| (gauge histogram|gauge|counter) \| ([^|]+) \|")


def documented_labels() -> dict[str, set[str]]:
    """Sample name -> label names (without `le`), from the metric tables of docs/metrics.md
    ("All names start with `prefix`", abbreviations such as "`T` = `team, priority`")."""
    out: dict[str, set[str]] = {}
    prefix, abbrev = None, {}
    for line in DOCS.read_text().splitlines():
        m = re.search(r"All names start with `(stream_app_\w+_)`", line)
        if m:
            prefix, abbrev = m.group(1), {}
        for short, names in re.findall(r"`([A-Z])` = `([a-z_, ]+)`", line):
            abbrev[short] = {n.strip() for n in names.split(",")}
        m = TABLE_ROW_RE.match(line)
        if m and prefix:
            name, kind, column = m.groups()
            labels: set[str] = set()
            for part in (p.strip() for p in column.split(",")):
                if part != "-":
                    labels |= abbrev.get(part, {part})
            samples = [name + s for s in ("_bucket", "_gsum", "_gcount")] if kind == "gauge histogram" else [name]
            for sample in samples:
                out[prefix + sample] = labels
    return out


def test_documented_labels_are_the_exposed_labels():
    """The series budget as docs/metrics.md writes it is what a worker exposes: a label added to
    (or dropped from) a family without its table changing fails here."""
    documented = documented_labels()
    assert len(documented) > 60
    series = exposed()
    problems = []
    for sample, labels in documented.items():
        got = set(series.get(sample, {})) - {"le"}
        if sample in series and series[sample] is not None and (got or not labels) and got != labels:
            problems.append((sample, sorted(labels), sorted(got)))
    assert not problems, problems
    support = {s for s in documented if s.startswith("stream_app_support_")}
    assert all("channel" not in documented[s] for s in support if "tickets_" not in s and "reopens" not in s)


def test_filter_variables_cover_the_brief():
    names = {v["name"] for b in BOARDS.values() for v in b["templating"]["list"]}
    assert {"team", "channel", "priority", "plan", "window"} <= names


def test_every_board_annotates_firing_alerts():
    for name, board in BOARDS.items():
        alerts = [a for a in board["annotations"]["list"] if "ALERTS" in a.get("expr", "")]
        assert alerts, f"{name}: no alert annotation"
        for a in alerts:
            assert a["datasource"]["uid"] == DATASOURCE_UID and a["enable"]
            assert 'alertstate="firing"' in a["expr"]


@pytest.mark.parametrize("expr", [
    'sum by (team) (x{team=~"$team", window="${window}"}[$__rate_interval])',
    "[[team]] $__interval",
])  # fmt: skip
def test_substitute_replaces_every_variable_form(expr):
    out = substitute(expr, {"team": ".*", "window": "1h", "__rate_interval": "1m", "__interval": "15s"})
    assert "$" not in out and "[[" not in out
