"""The README's first command: `stream-app demo` starts everything, says where to look,
and live metrics move. Runs the real command (its own Kafka + Redis) for a short while."""

import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_demo_starts_the_stack_and_shows_live_metrics():
    proc = subprocess.run(
        [sys.executable, "-m", "stream_app.cli", "demo", "--duration", "25", "--rate", "100", "--web-port", "16566"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert re.search(r"http://127\.0\.0\.1:\d+/metrics", out), out[-3000:]
    assert "Kafka bootstrap" in out and "Redis" in out
    consumed = [float(n) for n in re.findall(r"events consumed: (\d+)", out)]
    assert consumed and consumed[-1] > 0, f"no live numbers in the summary lines:\n{out[-3000:]}"
    assert consumed == sorted(consumed), "the summary counts grow"
    assert "stream_app demo stopped." in out

