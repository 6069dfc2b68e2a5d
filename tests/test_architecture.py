"""The layout docs/architecture.md describes stays true: the import-linter contracts in
pyproject.toml (layers, a pure engine, no cycles) and modules small enough to read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.paths import ROOT

MAX_MODULE_LINES = 600


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_no_module_is_too_long_to_read():
    long = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / "stream_app").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"
