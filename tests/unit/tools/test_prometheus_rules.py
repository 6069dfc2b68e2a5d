"""Prometheus rules (deploy/prometheus/rules) checked and unit-tested with promtool.

`promtool check rules` validates every rules file; `promtool test rules` runs every
test file in tests/promtool (alerts firing and staying quiet, recording rules summing
two workers' shares). The rest checks conventions promtool cannot: names, labels,
runbook links into docs/alerts.md, and that every alert is tested in both directions.
promtool comes with Debian's `prometheus` package (scripts/bootstrap.sh installs it):
a missing promtool fails these tests rather than skipping them.
"""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from tests.support.dashboards import rule_files
from tests.support.paths import ROOT

TESTS_DIR = ROOT / "tests/promtool"
RUNBOOK = ROOT / "docs/alerts.md"
RUNBOOK_URL = "{{{{ with $externalLabels.runbook_base_url }}}}{{{{ . }}}}{{{{ else }}}}docs/alerts.md{{{{ end }}}}#{anchor}"
RULE_FILES = rule_files()
TEST_FILES = sorted(TESTS_DIR.glob("*.yml"))


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    print(res.stdout + res.stderr)  # promtool's summary, shown with -s or on failure
    return res


def _rules(kind: str) -> list[dict]:
    out = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            out += [r for r in group["rules"] if kind in r]
    return out


def test_files_exist():
    assert {p.name for p in RULE_FILES} >= {"recording.yml", "alerts.yml"}
    assert TEST_FILES


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(promtool, path):
    res = _run([promtool, "check", "rules", str(path)])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_promtool_test_rules(promtool, path):
    res = _run([promtool, "test", "rules", str(path)])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_recording_rule_names_follow_convention():
    names = {r["record"] for r in _rules("record")}
    bad = sorted(n for n in names if not re.fullmatch(r"stream_app:[a-z0-9_]+:[a-z0-9_]+", n))
    assert not bad, bad


def test_alerts_have_severity_annotations_and_runbook_section():
    headings = set(re.findall(r"^## (\S+)\s*$", RUNBOOK.read_text(), flags=re.M))
    alerts = _rules("alert")
    assert alerts
    for rule in alerts:
        name = rule["alert"]
        assert re.fullmatch(r"StreamApp(?:[A-Z][a-z0-9]*)+", name), name
        assert rule["labels"]["severity"] in {"page", "ticket"}, name
        ann = rule["annotations"]
        assert {"summary", "description", "runbook_url"} <= set(ann), name
        # GitHub anchors of "## StreamAppX" headings are the lowercased name; the base is the
        # runbook_base_url external label when set (tests/unit/tools/test_runbook_urls.py)
        assert ann["runbook_url"] == RUNBOOK_URL.format(anchor=name.lower()), name
        assert name in headings, f"docs/alerts.md has no '## {name}' section"
        assert "for" in rule, f"{name}: no `for:`, a single bad scrape would notify"


def test_every_alert_is_tested_firing_and_quiet():
    fired: set[str] = set()
    quiet: set[str] = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text()).get("tests", []):
            for t in case.get("alert_rule_test", []):
                (fired if t.get("exp_alerts") else quiet).add(t["alertname"])
    names = {r["alert"] for r in _rules("alert")}
    assert names - fired == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown staying quiet"


def test_test_files_evaluate_recording_groups_before_alerts():
    # Without an explicit order promtool may evaluate an alert group before the
    # recording rules it reads; every file lists every group, recordings first.
    groups: list[str] = []
    for path in RULE_FILES:
        groups += [g["name"] for g in yaml.safe_load(path.read_text())["groups"]]
    recording = {g for g in groups if not g.endswith("_alerts")}
    for path in TEST_FILES:
        doc = yaml.safe_load(path.read_text())
        if not any("alerts.yml" in f for f in doc["rule_files"]):
            continue
        order = doc.get("group_eval_order", [])
        assert sorted(order) == sorted(groups), path.name
        last_recording = max(order.index(g) for g in recording)
        first_alert = min(order.index(g) for g in groups if g not in recording)
        assert last_recording < first_alert, path.name
