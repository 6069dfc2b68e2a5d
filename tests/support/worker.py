"""Real ``stream-app worker`` processes for integration tests: their environment, start/stop/kill,
their /metrics, and polling helpers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from stream_app.config import Settings
from stream_app.events import TOPIC_SETTINGS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_env(stack, app_id: str, *, topics: Mapping[str, str] | None = None, **overrides: object) -> dict[str, str]:
    """STREAM_APP_* variables for one test's worker: its own app id and topics (named after the app
    id, or ``topics``: event family -> topic), plus ``overrides`` (setting name -> value)."""
    env = {
        "STREAM_APP_KAFKA_BOOTSTRAP": stack.bootstrap,
        "STREAM_APP_REDIS_URL": stack.redis_url,
        "STREAM_APP_APP_ID": app_id,
        "STREAM_APP_TOPIC_TICKETS": f"{app_id}.tickets",
        "STREAM_APP_TOPIC_ACTIVITY": f"{app_id}.activity",
        "STREAM_APP_TOPIC_SUBSCRIPTIONS": f"{app_id}.subscriptions",
        "STREAM_APP_TOPIC_SURVEYS": f"{app_id}.surveys",
        "STREAM_APP_TOPIC_DEADLETTER": f"{app_id}.deadletter",
        "STREAM_APP_TOPIC_PARTITIONS": "4",
    }
    for family, topic in (topics or {}).items():
        env[f"STREAM_APP_{TOPIC_SETTINGS[family].upper()}"] = topic
    env.update({f"STREAM_APP_{k.upper()}": str(v) for k, v in overrides.items()})
    return env


def settings_of(env: dict[str, str]) -> Settings:
    """The Settings a worker started with ``env`` reads (parsed as from the environment: JSON
    values such as STREAM_APP_SUPPORT_SLA_TARGETS included)."""
    from unittest import mock

    mine = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_APP_")}
    with mock.patch.dict(os.environ, {**mine, **{k: v for k, v in env.items() if k.startswith("STREAM_APP_")}},
                         clear=True):  # fmt: skip
        return Settings()


class WorkerProcess:
    """One worker subprocess with its own web port, data dir and log file."""

    def __init__(self, env: dict[str, str], workdir: Path, name: str = "worker") -> None:
        self.port = free_port()
        self.workdir = workdir / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "worker.log"
        self.env = {
            **os.environ,
            **env,
            "STREAM_APP_WEB_PORT": str(self.port),
            "STREAM_APP_ADVERTISED_URL": f"http://127.0.0.1:{self.port}",
        }
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_timeout: float = 90.0, *, wait: bool = True) -> WorkerProcess:
        """Start the process; with ``wait`` (default) return once it answers /readyz."""
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stream_app.cli", "worker"],
            env=self.env,
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        if wait:
            self.wait_ready(ready_timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.http_status("/readyz") == 200:
                return
            time.sleep(0.3)
        raise AssertionError(f"worker not ready after {timeout}s:\n{self.log_tail()}")

    def http_status(self, path: str) -> int | None:
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return None

    def metrics_text(self) -> str:
        with urllib.request.urlopen(self.base_url + "/metrics", timeout=5) as r:
            return r.read().decode()

    def samples(self) -> dict[str, dict[tuple, float]]:
        """Sample name -> {sorted label items: value}."""
        out: dict[str, dict[tuple, float]] = defaultdict(dict)
        for family in text_string_to_metric_families(self.metrics_text()):
            for s in family.samples:
                out[s.name][tuple(sorted(s.labels.items()))] = s.value
        return out

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def kill(self) -> None:
        """kill -9: no shutdown hooks, no final flush or commit."""
        self.stop(signal.SIGKILL)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def wait_for(predicate, timeout: float, interval: float = 0.3, message: str = "condition"):
    """Poll until predicate() returns a truthy value; return it."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")


def total(samples: dict[str, dict[tuple, float]], name: str, **labels: str) -> float:
    """Sum of a sample's values over series matching the given labels."""
    want = set(labels.items())
    return sum(v for k, v in samples.get(name, {}).items() if want <= set(k))


def caught_up(worker: WorkerProcess) -> bool:
    """Committed offset == end offset on every input partition (counters restart with a process;
    Kafka's offsets do not)."""
    s = worker.samples()
    ends = s.get("stream_app_faust_topic_partition_end_offset", {})
    committed = s.get("stream_app_faust_topic_partition_offset_commited", {})
    inputs = {k: v for k, v in ends.items() if not dict(k)["topic"].endswith("changelog")}
    return bool(inputs) and all(committed.get(k, -1) >= v - 1 for k, v in inputs.items())
