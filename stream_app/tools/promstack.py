"""A real Prometheus server as a local process (tests, local runs without Docker).

Uses the Prometheus binary on PATH (Debian package `prometheus`, installed by
scripts/test.sh) with its own config, data directory and free port under a work
directory, scraping static targets. Thin shell: start, stop, and the HTTP API
calls a test needs (query, rules, targets).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


class PrometheusError(RuntimeError):
    """Prometheus missing, not starting, or an API call that did not succeed."""


def find_prometheus(binary: str | None = None) -> str:
    """Path of the Prometheus server binary; PrometheusError if it is not installed."""
    for candidate in (binary, shutil.which("prometheus"), "/usr/bin/prometheus"):
        if candidate and Path(candidate).is_file():
            return candidate
    raise PrometheusError(
        "prometheus not found: install the Debian package `prometheus` (scripts/test.sh does)"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _yaml_list(items: Iterable[str]) -> str:
    # JSON strings are valid YAML scalars: no YAML library needed to write the config.
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


class PrometheusProcess:
    """One Prometheus server scraping ``targets`` (host:port) every ``scrape_interval`` s."""

    def __init__(
        self,
        workdir: Path,
        targets: Sequence[str],
        *,
        rule_files: Sequence[str | Path] = (),
        scrape_interval: float = 1.0,
        evaluation_interval: float | None = None,
        job: str = "stream_app",
        binary: str | None = None,
        port: int | None = None,
        external_labels: dict[str, str] | None = None,
    ) -> None:
        self.binary = find_prometheus(binary)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or _free_port()
        self.config_path = self.workdir / "prometheus.yml"
        self.log_path = self.workdir / "prometheus.log"
        interval = f"{int(scrape_interval * 1000)}ms"
        evaluation = f"{int((evaluation_interval or scrape_interval) * 1000)}ms"
        self.config_path.write_text(
            "global:\n"
            f"  scrape_interval: {interval}\n"
            f"  scrape_timeout: {interval}\n"
            f"  evaluation_interval: {evaluation}\n"
            + (f"  external_labels: {json.dumps(external_labels)}\n" if external_labels else "")
            + f"rule_files: {_yaml_list(str(Path(r).resolve()) for r in rule_files)}\n"
            "scrape_configs:\n"
            f"  - job_name: {json.dumps(job)}\n"
            f"    static_configs:\n"
            f"      - targets: {_yaml_list(targets)}\n"
        )
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> PrometheusProcess:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1d",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,  # a Ctrl-C in the terminal reaches its owner, which stops it
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PrometheusError(f"prometheus exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise PrometheusError(f"prometheus not ready after {timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> PrometheusProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # --- HTTP API -----------------------------------------------------------------

    def api(self, path: str, **params: Any) -> Any:
        """GET /api/v1/<path>; the `data` of a successful answer, else PrometheusError."""
        query = urllib.parse.urlencode(params, doseq=True)
        url = f"{self.url}/api/v1/{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as e:  # 400/422 carry the PromQL error
            body = json.loads(e.read() or b"{}")
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        """Instant query; the result vector (a scalar result becomes one unlabelled sample)."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = at
        data = self.api("query", **params)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def label_values(self, label: str, match: str | None = None) -> list[str]:
        return self.api(f"label/{label}/values", **({"match[]": match} if match else {}))

    def rules(self) -> list[dict]:
        """Every loaded rule (recording and alerting) with its group's evaluation state."""
        return [rule for group in self.api("rules")["groups"] for rule in group["rules"]]

    def active_targets(self) -> list[dict]:
        return self.api("targets")["activeTargets"]
