"""Alert runbook links from a base URL: with Prometheus' external label runbook_base_url (from
STREAM_APP_RUNBOOK_BASE_URL: the demo's --prometheus, docker-compose.yml), every alert's
runbook_url is that base plus the alert's anchor, an absolute link Alertmanager and Grafana can
open; without it, the repository-relative docs/alerts.md#anchor. Shown by promtool on the
project's own alert tests (tests/promtool), re-run with the label set."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
BASE = "https://git.example.com/acme/stream_app/blob/main/docs/alerts.md"


@pytest.mark.parametrize("path", sorted((ROOT / "tests/promtool").glob("*alerts_test.yml")), ids=lambda p: p.name)
def test_every_alert_links_its_runbook_under_the_base_url(path, tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with Debian's prometheus package (scripts/bootstrap.sh)"
    spec = yaml.safe_load(path.read_text())
    spec["rule_files"] = [str((path.parent / f).resolve()) for f in spec["rule_files"]]
    links = 0
    for case in spec["tests"]:
        case["external_labels"] = {"runbook_base_url": BASE}
        for check in case.get("alert_rule_test", []):
            for alert in check.get("exp_alerts") or []:
                annotations = alert.get("exp_annotations", {})
                if "runbook_url" in annotations:
                    anchor = annotations["runbook_url"].split("#", 1)[1]
                    annotations["runbook_url"] = f"{BASE}#{anchor}"
                    links += 1
    assert links, f"{path.name} checks no runbook link"
    (tmp_path / path.name).write_text(yaml.safe_dump(spec, sort_keys=False))
    res = subprocess.run([promtool, "test", "rules", path.name], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
