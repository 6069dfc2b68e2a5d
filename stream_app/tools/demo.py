"""``stream-app demo``: local Kafka + Redis, worker(s), the generator's SaaS world and, with
``--prometheus``, a Prometheus with the project's rules, in one command.

Installs what is missing, starts everything on loopback, prints where to look and what to
paste next, then a summary every few seconds until Ctrl-C or ``--duration``. Stopping (either
way) stops every process it started, in order, and removes their data and logs unless
``--keep``; exit 0. Every child runs in its own session, so the terminal's Ctrl-C reaches only
the demo, which then stops them. A failure keeps the logs and says where.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from .demo_screen import Running, banner, summary
from .generator import DEMO_RATE, SAAS_USERS_PER_RATE
from .promstack import PrometheusError, PrometheusProcess
from .stack import (
    LocalStack,
    StackError,
    cache_dir,
    die_with_parent,
    ensure_debian_packages,
    ensure_kafka_jars,
    pick_port,
)

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "rules"
SUMMARY_EVERY = 5.0


class DemoFailed(RuntimeError):
    """Something the demo started did not come up or died; the message says what and where."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stream-app demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=DEMO_RATE,
                   help=f"events/s; the company's size follows (default {DEMO_RATE:g}: "
                   f"about {DEMO_RATE * SAAS_USERS_PER_RATE:,.0f} users)")
    p.add_argument("--workers", type=int, default=1, help="worker processes in one consumer group (default 1)")
    p.add_argument("--seed", type=int, default=1, help="the generated world (default 1)")
    p.add_argument("--duration", type=float, default=0, help="stop after N seconds (default 0: until Ctrl-C)")
    p.add_argument("--web-port", type=int, default=6066, help="first worker's HTTP port, if free (default 6066)")
    p.add_argument("--store", choices=["redis", "memory"], default="redis", help="table store (default redis)")
    p.add_argument("--prometheus", action="store_true", help="also run Prometheus with deploy/prometheus/rules")
    p.add_argument("--prometheus-port", type=int, default=9090, help="Prometheus port, if free (default 9090)")
    p.add_argument("--keep", action="store_true", help="keep data and logs when stopping (default: remove them)")
    return p  # fmt: skip


class Demo:
    """The processes of one demo run and their order of stopping."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = cache_dir() / "demo" / str(os.getpid())
        self.stack: LocalStack | None = None
        self.workers: list[subprocess.Popen] = []
        self.urls: list[str] = []
        self.generator: subprocess.Popen | None = None
        self.prometheus: PrometheusProcess | None = None
        self.stopping = False

    def say(self, text: str) -> None:
        print(f"stream_app demo: {text}", flush=True)

    # --- starting ---------------------------------------------------------------------------

    def start(self) -> None:
        self.say("checking what it needs is installed (redis-server, Kafka jars) ...")
        ensure_debian_packages(["redis-server", *(["prometheus"] if self.args.prometheus else [])])
        ensure_kafka_jars()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.say("starting Kafka and Redis ...")
        self.stack = LocalStack(self.workdir / "stack").start()
        if self.stopping:
            return
        self.say(f"starting {self.args.workers} worker(s) ...")
        self._start_workers()
        self._wait_ready()
        if self.stopping:
            return
        if self.args.prometheus:
            self._start_prometheus()
        users = round(self.args.rate * SAAS_USERS_PER_RATE)
        self.say(f"sending events: a SaaS company of about {users:,} users, {self.args.rate:g} events/s, "
                 "its last 30 days first ...")  # fmt: skip
        self._start_generator()

    def _env(self) -> dict[str, str]:
        assert self.stack is not None
        return {**os.environ, **self.stack.env(), "STREAM_APP_STORE": self.args.store}

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        cwd = self.workdir / name
        cwd.mkdir(parents=True, exist_ok=True)  # the process's own files (Faust's data dir) stay here
        with open(self.workdir / f"{name}.log", "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "stream_app.cli", *args],
                env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the demo only; it stops its children in order
                preexec_fn=die_with_parent(os.getpid()),  # and a killed demo takes them along
            )  # fmt: skip

    def _start_workers(self) -> None:
        for i in range(self.args.workers):
            port = pick_port(self.args.web_port + i)
            url = f"http://127.0.0.1:{port}"
            env = {**self._env(), "STREAM_APP_WEB_PORT": str(port), "STREAM_APP_WEB_HOST": "127.0.0.1",
                   "STREAM_APP_ADVERTISED_URL": url}  # fmt: skip
            self.workers.append(self._spawn(f"worker-{i}", ["worker"], env))
            self.urls.append(url)

    def _wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.stopping:
            if all(_get(u + "/readyz")[0] == 200 for u in self.urls):
                return
            for i, p in enumerate(self.workers):
                if p.poll() is not None:
                    raise DemoFailed(f"worker {i} exited with {p.returncode}:\n{_tail(self.workdir / f'worker-{i}.log')}")
            if time.monotonic() > deadline:
                raise DemoFailed(f"the worker(s) were not ready after {timeout:.0f}s; logs in {self.workdir}")
            time.sleep(0.3)

    def _start_prometheus(self) -> None:
        from ..config import get_settings

        rules = sorted(RULES.glob("*.yml")) if RULES.is_dir() else []
        if not rules:
            self.say(f"no rule files at {RULES} (not a checkout): Prometheus runs without rules")
        base = get_settings().runbook_base_url or (f"file://{REPO}/docs/alerts.md" if (REPO / "docs").is_dir() else "")
        self.prometheus = PrometheusProcess(
            self.workdir / "prometheus",
            [u.removeprefix("http://") for u in self.urls],
            rule_files=rules,
            scrape_interval=5.0,
            port=pick_port(self.args.prometheus_port),
            external_labels={"runbook_base_url": base} if base else None,
        )
        self.say("starting Prometheus ...")
        self.prometheus.start()

    def _start_generator(self) -> None:
        args = ["generate", "--profile", "saas", "--rate", f"{self.args.rate:g}", "--seed", str(self.args.seed),
                # a few duplicates and bad events show the dead-letter path
                "--faults", "duplicate=0.01,invalid=0.005"]  # fmt: skip
        self.generator = self._spawn("generator", args, self._env())

    # --- running ----------------------------------------------------------------------------

    def show(self) -> None:
        assert self.stack is not None
        command = _command_name()
        running = Running(
            workers=self.urls,
            kafka=self.stack.bootstrap,
            redis=self.stack.redis_url,
            prometheus=self.prometheus.url if self.prometheus else None,
            logs=str(self.workdir),
            keep=self.args.keep,
            command=command,
        )
        print(banner(running, datetime.now(timezone.utc)), flush=True)

    def run(self) -> None:
        started = time.monotonic()
        next_summary = started + SUMMARY_EVERY
        while not self.stopping:
            time.sleep(0.2)  # short: a Ctrl-C is acted on at once
            if self.args.duration and time.monotonic() - started >= self.args.duration:
                return
            for name, proc in [*(("worker", p) for p in self.workers), ("generator", self.generator)]:
                if proc is not None and proc.poll() is not None and not self.stopping:
                    raise DemoFailed(f"the {name} exited with {proc.returncode}; logs in {self.workdir}")
            if time.monotonic() >= next_summary:
                next_summary += SUMMARY_EVERY
                texts = [_get(u + "/metrics")[1] for u in self.urls]
                if self.stopping:  # Ctrl-C while reading: the last word is "stopping"
                    return
                pipeline, business = summary(texts)
                print(f"[{time.strftime('%H:%M:%S')}] {pipeline}\n           {business}", flush=True)

    # --- stopping ---------------------------------------------------------------------------

    def stop(self, *, keep: bool) -> None:
        """Generator first (it flushes), then the workers, Prometheus, Kafka and Redis."""
        _terminate([self.generator] if self.generator else [])
        _terminate(self.workers)
        if self.prometheus is not None:
            self.prometheus.stop()
        if self.stack is not None:
            self.stack.stop()
        if not keep:
            shutil.rmtree(self.workdir, ignore_errors=True)


def main_demo(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.rate <= 0 or args.workers < 1:
        print("stream-app demo: --rate must be > 0 and --workers >= 1", file=sys.stderr)
        return 2
    demo = Demo(args)

    def on_signal(signum: int, frame: object) -> None:
        if not demo.stopping:
            demo.stopping = True
            print("\nstream_app demo: stopping ...", flush=True)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    failed: DemoFailed | None = None
    try:
        demo.start()
        if not demo.stopping:
            demo.show()
            demo.run()
    except (DemoFailed, StackError, PrometheusError) as exc:
        failed = DemoFailed(str(exc))
    finally:
        demo.stopping = True
        demo.stop(keep=args.keep or failed is not None)
        for s, h in old.items():
            signal.signal(s, h)
    if failed is not None:
        print(f"stream-app demo: {failed}\nstream-app demo: logs kept in {demo.workdir}", file=sys.stderr)
        return 1
    print("stream_app demo stopped." + (f" Data and logs kept in {demo.workdir}" if args.keep else ""), flush=True)
    return 0


def _command_name() -> str:
    """How the user runs stream-app: the name on PATH, else this interpreter's script."""
    script = Path(sys.executable).with_name("stream-app")
    on_path = shutil.which("stream-app")
    if on_path and Path(on_path).resolve() == script.resolve():
        return "stream-app"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def _get(url: str) -> tuple[int | None, str]:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError:
        return None, ""


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def _terminate(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)
