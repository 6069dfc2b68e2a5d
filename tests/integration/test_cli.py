"""`stream-app worker` against the real stack: a quiet start in one log format that ends with
"ready at http://...", no spurious ERROR; POST /events warns about an event older than every
window; and the startup checks against real servers that are not what the settings say
(Kafka's address pointing at Redis, Redis' at Kafka): one line, exit 1, within the bound."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.support.worker import WorkerProcess, worker_env

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"
PLAIN = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+[\w.]+: ")


def _cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_APP_")}
    return subprocess.run([sys.executable, "-m", "stream_app.cli", *args], env={**clean, **env},
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def _post(url: str, event: dict) -> dict:
    request = urllib.request.Request(url + "/events", json.dumps(event).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read())


def _nps(when: datetime) -> dict:
    event = json.loads((EXAMPLES / "survey.nps.json").read_text())
    event.update(id=str(uuid.uuid4()), time=when.isoformat())
    return event


@pytest.mark.parametrize("log_format", ["plain", "json"])
def test_a_worker_starts_quietly_in_one_format_and_says_where_it_is_ready(stack, tmp_path, log_format):
    app = f"cli-{log_format}-{uuid.uuid4().hex[:6]}"
    worker = WorkerProcess(worker_env(stack, app, log_format=log_format), tmp_path)
    try:
        worker.start()
        deadline = time.monotonic() + 30
        while "ready at http://" not in worker.log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.3)
        lines = [ln for ln in worker.log_path.read_text().splitlines() if ln.strip()]
        ready = [ln for ln in lines if "ready at http://" in ln]
        assert len(ready) == 1 and worker.base_url in ready[0], "\n".join(lines[-20:])
        if log_format == "json":
            docs = [json.loads(ln) for ln in lines]  # every line is one JSON object
            levels = {d["level"] for d in docs}
        else:
            odd = [ln for ln in lines if not PLAIN.match(ln)]
            assert not odd, "lines in another format:\n" + "\n".join(odd[:10])
            levels = {PLAIN.match(ln).group(1).lower() for ln in lines}
        assert not levels & {"error", "critical"}, "a first start logs no ERROR"
        assert len(lines) <= 60, f"{len(lines)} lines for a start:\n" + "\n".join(lines)

        # POST /events on this worker: a year-old event is accepted with a warning.
        now = datetime.now(timezone.utc)
        fresh, old = _post(worker.base_url, _nps(now)), _post(worker.base_url, _nps(now - timedelta(days=365)))
        assert fresh["accepted"] == 1 and "warning" not in fresh["results"][0]
        assert old["accepted"] == 1 and "older than every survey window" in old["results"][0]["warning"]
    finally:
        worker.stop()
    assert worker.proc.returncode == 0


def _fails_in_one_line(env: dict[str, str]) -> tuple[str, float]:
    """Runs a worker that must not start: its one error line and how long it took."""
    t0 = time.monotonic()
    proc = _cli(env, "worker")
    took = time.monotonic() - t0
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("stream-app worker:")]
    return line, took


def test_kafka_address_of_a_redis_server_fails_within_the_bound(stack):
    redis_port = stack.redis_url.rsplit(":", 1)[1].split("/")[0]
    line, took = _fails_in_one_line({"STREAM_APP_KAFKA_BOOTSTRAP": f"127.0.0.1:{redis_port}",
                                     "STREAM_APP_STORE": "memory", "STREAM_APP_STARTUP_TIMEOUT_SECONDS": "10"})  # fmt: skip
    assert f"Kafka at 127.0.0.1:{redis_port}" in line and "not Kafka" in line, line
    assert took < 20, f"{took:.1f}s"


def test_redis_url_of_a_kafka_broker_fails_within_the_bound(stack):
    line, took = _fails_in_one_line({"STREAM_APP_KAFKA_BOOTSTRAP": stack.bootstrap,
                                     "STREAM_APP_REDIS_URL": f"redis://{stack.bootstrap}/0",
                                     "STREAM_APP_STARTUP_TIMEOUT_SECONDS": "5"})  # fmt: skip
    assert f"Redis at {stack.bootstrap}" in line, line
    assert 5 <= took < 20, f"{took:.1f}s"
