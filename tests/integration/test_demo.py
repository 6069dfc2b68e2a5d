"""The README's first command, run as a user runs it: `stream-app demo` starts everything, says
where to look and what to paste, live numbers move; Ctrl-C (SIGINT to its process group, what a
terminal sends) stops it with exit 0 and nothing left running or on disk; a second run right
after lands on the same port; --prometheus runs a real Prometheus with the project's rules."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from stream_app.tools.stack import free_ports

pytestmark = pytest.mark.integration


class DemoRun:
    """A `stream-app demo` process in its own process group, its output collected as it comes."""

    def __init__(self, cache: Path, *args: str) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stream_app.cli", "demo", *args],
            env={**os.environ, "STREAM_APP_CACHE": str(cache), "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,  # its own process group, as in a terminal
        )  # fmt: skip
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.output)
            if match:
                return match
            if self.proc.poll() is not None:
                self.reader.join(5)
                match = re.search(pattern, self.output)
                if match:
                    return match
                break
            time.sleep(0.5)
        raise AssertionError(f"no {pattern!r} in the demo's output:\n{self.output[-4000:]}")

    def consumed(self) -> list[int]:
        return [int(n) for n in re.findall(r"events consumed: (\d+)", self.output)]

    def finish(self, timeout: float = 180) -> int:
        code = self.proc.wait(timeout)
        self.reader.join(10)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


def processes_using(path: Path) -> list[str]:
    """Processes whose command line or working directory is under ``path``."""
    found = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if str(path) in cmdline or cwd.startswith(str(path)):
            found.append(f"{pid}: {cmdline[:200]} (cwd {cwd})")
    return found


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def test_ctrl_c_stops_cleanly_and_a_second_run_gets_the_same_port(tmp_path):
    cache = tmp_path / "cache"
    (port,) = free_ports(1)

    first = DemoRun(cache, "--web-port", str(port))
    try:
        url = first.wait_for(r"worker 0\s+(http://127\.0\.0\.1:\d+)/metrics", timeout=300).group(1)
        assert url == f"http://127.0.0.1:{port}"
        for step in ("top --url 127.0.0.1:", "curl -s -X POST", "docs/metrics.md"):
            assert step in first.output, step
        first.wait_for(r"events consumed: [1-9]", timeout=120)
        os.killpg(first.proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        t0 = time.monotonic()
        code = first.finish()
        stop_took = time.monotonic() - t0
    finally:
        first.kill()
    assert code == 0, first.output[-3000:]
    assert first.output.rstrip().endswith("stream_app demo stopped."), first.output[-2000:]
    assert "Traceback" not in first.output and "unexpectedly" not in first.output
    assert processes_using(tmp_path) == []
    assert not any((cache / "demo").iterdir()), "the demo's data and logs are removed"
    print(f"\nfirst demo: stopped {stop_took:.1f}s after SIGINT; nothing left running or on disk")

    # At once again, with Prometheus: the port the first run just let go of is free again.
    second = DemoRun(cache, "--web-port", str(port), "--duration", "45", "--prometheus")
    try:
        url = second.wait_for(r"worker 0\s+(http://127\.0\.0\.1:\d+)/metrics", timeout=300).group(1)
        assert url == f"http://127.0.0.1:{port}", "a second demo right after the first lands on the same port"
        prometheus = second.wait_for(r"Prometheus\s+(http://127\.0\.0\.1:\d+)", timeout=5).group(1)
        rules = get_json(prometheus + "/api/v1/rules")["data"]["groups"]
        names = {rule["name"] for group in rules for rule in group["rules"]}
        assert "StreamAppWorkerDown" in names and any(n.startswith("stream_app:") for n in names)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            targets = get_json(prometheus + "/api/v1/targets")["data"]["activeTargets"]
            if targets and all(t["health"] == "up" for t in targets):
                break
            time.sleep(1)
        assert [t["scrapeUrl"] for t in targets] == [f"{url}/metrics"] and targets[0]["health"] == "up"
        code = second.finish()
    finally:
        second.kill()
    assert code == 0, second.output[-3000:]
    consumed = second.consumed()
    assert consumed and consumed[-1] > consumed[0] > 0, "live numbers move"
    assert re.search(r"MRR: [\d,]+ [A-Z]{3}", second.output), "MRR comes with its currency"
    assert "stream_app demo stopped." in second.output
    assert processes_using(tmp_path) == []
