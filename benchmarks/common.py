"""What the comparison processes (ceiling, Faust baseline, Quix peer) share with the harness.

Each runs as its own process, configured by environment variables, and reports progress the
same way: ``GET /count`` on ``BENCH_PORT`` answers ``{"processed": n, ...}``, n = input
messages whose processing (decode + state update) has finished. The harness never looks inside them.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


# Tables of benchmarks/faust_baseline.py (the harness creates their changelog topics).
FAUST_BASELINE_TABLES = (
    "bl_tickets", "bl_created_by_team", "bl_backlog_by_team", "bl_user_last_day", "bl_dau",
    "bl_account_mrr", "bl_mrr_by_plan", "bl_revenue_by_plan", "bl_responses", "bl_score_sum",
)  # fmt: skip


@dataclass(frozen=True)
class RunnerConfig:
    bootstrap: str
    topics: dict[str, str]  # event family -> topic
    group: str
    port: int
    state_dir: str

    @classmethod
    def from_env(cls) -> RunnerConfig:
        return cls(
            bootstrap=os.environ["BENCH_BOOTSTRAP"],
            topics=json.loads(os.environ["BENCH_TOPICS"]),
            group=os.environ["BENCH_GROUP"],
            port=int(os.environ["BENCH_PORT"]),
            state_dir=os.environ.get("BENCH_STATE_DIR", "."),
        )

    def env(self) -> dict[str, str]:
        return {
            "BENCH_BOOTSTRAP": self.bootstrap,
            "BENCH_TOPICS": json.dumps(self.topics),
            "BENCH_GROUP": self.group,
            "BENCH_PORT": str(self.port),
            "BENCH_STATE_DIR": self.state_dir,
        }

    @property
    def family_of_topic(self) -> dict[str, str]:
        return {t: f for f, t in self.topics.items()}


class Progress:
    """A processed-message counter served over HTTP from a daemon thread.

    Increments happen on one thread (the runner's loop); reading an int is atomic under the GIL.
    """

    def __init__(self, port: int) -> None:
        self.processed = 0
        # Wall-clock times of the first and the latest progress, when the runner records them.
        self.first_at: float | None = None
        self.last_at: float | None = None
        progress = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                body = json.dumps(
                    {"processed": progress.processed, "first_at": progress.first_at, "last_at": progress.last_at}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # keep runner logs quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
