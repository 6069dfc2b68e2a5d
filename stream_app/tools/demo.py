"""``stream-app demo``: local Kafka + Redis, worker(s) and the generator, in one command.

Installs what is missing (Debian redis-server, Kafka jars from Maven Central),
starts everything on loopback, prints where to look, then a headline summary
every few seconds until Ctrl-C (or ``--duration``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from .stack import LocalStack, cache_dir, ensure_debian_packages, ensure_kafka_jars

# Terminal summary lines: (label, sample name, label filter), summed over workers.
PIPELINE = [
    ("events consumed", "stream_app_events_consumed_total", {}),
    ("valid", "stream_app_events_valid_total", {}),
    ("rejected (dead-lettered)", "stream_app_events_invalid_total", {}),
    ("duplicates ignored", "stream_app_events_duplicate_total", {}),
]
HEADLINES = [
    ("backlog", "stream_app_support_backlog_tickets", {}),
    ("tickets created 1h", "stream_app_support_tickets_created", {"window": "1h"}),
    ("active users 24h", "stream_app_usage_active_users", {"window": "24h"}),
    ("MRR", "stream_app_revenue_mrr_reporting", {}),
    ("NPS responses 7d", "stream_app_voice_responses", {"kind": "nps", "window": "7d"}),
]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick_port(preferred: int) -> int:
    if _port_free(preferred):
        return preferred
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int | None, str]:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError:
        return None, ""


def _summary(texts: list[str], lines: list[tuple[str, str, dict]]) -> str:
    totals = dict.fromkeys((label for label, _, _ in lines), 0.0)
    for text in texts:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                for label, name, want in lines:
                    if s.name == name and want.items() <= s.labels.items():
                        totals[label] += s.value
    return ", ".join(f"{label}: {value:.0f}" for label, value in totals.items())


def main_demo(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="stream-app demo", description=__doc__)
    parser.add_argument("--rate", type=float, default=50.0, help="generated events/s (default 50)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=0, help="stop after N seconds (0: until Ctrl-C)")
    parser.add_argument("--web-port", type=int, default=6066, help="first worker's HTTP port")
    parser.add_argument("--store", choices=["redis", "memory"], default="redis")
    args = parser.parse_args(argv)

    print("stream_app demo: checking Redis and Kafka are installed ...", flush=True)
    ensure_debian_packages(["redis-server"])
    ensure_kafka_jars()
    workdir = cache_dir() / "demo" / str(os.getpid())
    workdir.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen] = []
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)

    with LocalStack(workdir / "stack") as stack:
        env = {**os.environ, **stack.env(), "STREAM_APP_STORE": args.store}
        ports = []
        for i in range(args.workers):
            port = _pick_port(args.web_port + i)
            ports.append(port)
            log = open(workdir / f"worker-{i}.log", "ab")
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "stream_app.cli", "worker"],
                    env={**env, "STREAM_APP_WEB_PORT": str(port), "STREAM_APP_ADVERTISED_URL": f"http://127.0.0.1:{port}"},
                    cwd=workdir,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        deadline = time.monotonic() + 120
        while not all(_get(u + "/readyz")[0] == 200 for u in urls):
            if stopping or time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                print(f"worker did not become ready; see logs in {workdir}", file=sys.stderr)
                _terminate(procs)
                return 1
            time.sleep(0.5)
        gen_log = open(workdir / "generator.log", "ab")
        procs.append(
            subprocess.Popen(
                # The fast profile compresses trials and billing months into minutes so
                # conversions, renewals and churn show up while you watch; a few
                # duplicates and bad events show the dead-letter path.
                [sys.executable, "-m", "stream_app.cli", "generate", "--rate", str(args.rate),
                 "--seed", str(args.seed), "--profile", "fast", "--faults", "duplicate=0.01,invalid=0.005"],
                env=env,
                cwd=workdir,
                stdout=gen_log,
                stderr=subprocess.STDOUT,
            )
        )
        _print_where_to_look(stack, urls, workdir)
        started = time.monotonic()
        try:
            while not stopping:
                time.sleep(5)
                if args.duration and time.monotonic() - started >= args.duration:
                    break
                if any(p.poll() is not None for p in procs):
                    print(f"a process exited unexpectedly; see logs in {workdir}", file=sys.stderr)
                    return 1
                texts = [_get(u + "/metrics")[1] for u in urls]
                stamp = time.strftime("%H:%M:%S")
                print(f"[{stamp}] {_summary(texts, PIPELINE)}", flush=True)
                print(f"           {_summary(texts, HEADLINES)}", flush=True)
        finally:
            _terminate(procs)
    # Logs are kept only when something went wrong (the early returns above).
    shutil.rmtree(workdir, ignore_errors=True)
    print("stream_app demo stopped.")
    return 0


def _print_where_to_look(stack: LocalStack, urls: list[str], workdir: Path) -> None:
    print(
        "\nstream_app is running.\n"
        f"  Kafka bootstrap   {stack.bootstrap}\n"
        f"  Redis             {stack.redis_url}\n"
        + "".join(f"  worker {i}          {u}/metrics   {u}/healthz   {u}/readyz\n" for i, u in enumerate(urls))
        + f"  logs              {workdir}\n\n"
        "Look at: stream_app_support_* (backlog, first response, SLA), stream_app_usage_* (DAU/WAU/MAU,\n"
        "sessions), stream_app_revenue_* (MRR, movements), stream_app_voice_* (NPS/CSAT/CES) — see\n"
        "docs/metrics.md — and pipeline health: stream_app_events_*_total, stream_app_event_delay_seconds.\n"
        "Ctrl-C stops everything.\n",
        flush=True,
    )


def _terminate(procs: list[subprocess.Popen]) -> None:
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
