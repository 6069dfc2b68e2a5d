"""One benchmark run: stream_app next to a ceiling, a Faust baseline and a Quix Streams peer.

    .venv/bin/python -m benchmarks.bench --events 200000 --entities 100000 [--doc]

Everything runs on the local real stack (stream_app.stack: Kafka KRaft + redis-server), started
here unless --bootstrap/--redis-url point at running ones. Definitions of every figure are in
benchmarks/README.md; the table printed at the end is also written (with all raw figures) to
benchmarks/results/<UTC timestamp>.json, and with --doc into docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from stream_app.tools.generator import FAMILIES, GeneratedEvent, generate, rfc3339
from stream_app.tools.producer import produce_log
from tests.support.worker import WorkerProcess, free_port, worker_env

from .common import FAUST_BASELINE_TABLES, RunnerConfig

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "performance.md"
BUSINESS = re.compile(r"^stream_app_(support|usage|revenue|voice|health)_")
INTERNAL = re.compile(r"_watermark_timestamp_seconds$")


@dataclass
class Options:
    events: int = 200_000
    entities: int = 100_000
    freshness_rate: float = 0.0  # 0: a quarter of the measured 1-worker throughput
    freshness_poll: float = 0.25  # seconds between /metrics scrapes (each costs the worker a render)
    freshness_seconds: float = 20.0
    partitions: int = 4
    seed: int = 20261123
    poll_interval: float = 0.2
    profile_seconds: float = 0.0  # >0: py-spy the 1-worker throughput run for this long
    timeout_scale: float = 1.0
    phases: tuple[str, ...] = ("throughput", "recovery")  # throughput includes freshness
    stores: tuple[str, ...] = ("redis", "memory")  # recovery and memory phases, in this order
    # Smoke runs: independent phases at once and short waits. Figures are then meaningless.
    quick: bool = False


# --------------------------------------------------------------------------- small helpers


def _now() -> float:
    return time.perf_counter()


def http_get(url: str, timeout: float = 10.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def wait_for(predicate: Callable[[], object], timeout: float, interval: float, what: str):
    deadline = _now() + timeout
    last = None
    while _now() < deadline:
        try:
            last = predicate()
        except (OSError, urllib.error.URLError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


_CONSUMED = re.compile(rb"^stream_app_events_consumed_total\{[^}]*\} ([0-9.e+]+)$", re.M)


def consumed_total(worker: WorkerProcess) -> float:
    return sum(float(v) for v in _CONSUMED.findall(http_get(worker.base_url + "/metrics")))


_LAST_CONSUMED = re.compile(rb"^stream_app_last_consumed_timestamp_seconds\{[^}]*\} ([0-9.e+]+)$", re.M)


class PoliteCounter:
    """Messages consumed by a set of workers, read from their /metrics without hogging them.

    Rendering /metrics runs on the worker's event loop and grows with its state (hundreds of ms
    with a large support index), so polling it back to back would measure the scrapes. After
    each read this waits ``idle_factor`` times as long as the read took (the worker spends at
    most 1 / (1 + idle_factor) of its time rendering). The end time is taken from the workers'
    own wall clock (``stream_app_last_consumed_timestamp_seconds``), so the slower polling
    does not blur it.
    """

    def __init__(self, workers: list[WorkerProcess], idle_factor: float = 9.0, max_wait: float = 30.0) -> None:
        self.workers, self.idle_factor, self.max_wait = workers, idle_factor, max_wait
        self.last_at = 0.0
        self.scrape_seconds: list[float] = []

    def __call__(self) -> float:
        t = _now()
        total, last = 0.0, 0.0
        for w in self.workers:
            text = http_get(w.base_url + "/metrics", timeout=60)
            total += sum(float(v) for v in _CONSUMED.findall(text))
            last = max([last, *(float(v) for v in _LAST_CONSUMED.findall(text))])
        took = _now() - t
        self.scrape_seconds.append(took / len(self.workers))
        self.last_at = last
        time.sleep(min(self.max_wait, took * self.idle_factor))
        return total


def sample_sum(text: bytes, name: str, **labels: str) -> float:
    """Sum of one sample name's values over series whose labels include ``labels``."""
    want = [f'{k}="{v}"'.encode() for k, v in labels.items()]
    total = 0.0
    prefix = name.encode()
    for line in text.splitlines():
        if line.startswith(prefix) and line[len(prefix) : len(prefix) + 1] in (b"{", b" "):
            head, _, value = line.rpartition(b" ")
            if all(w in head for w in want):
                total += float(value)
    return total


def business_snapshot(worker: WorkerProcess, at: float) -> dict[tuple, float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = http_get(f"{worker.base_url}/metrics?at={at}", timeout=30).decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if BUSINESS.match(s.name) and not INTERNAL.search(s.name):
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def same_snapshot(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(math.isclose(a[k], b[k], rel_tol=1e-9, abs_tol=1e-9) for k in a)


_OFFSET = re.compile(rb'^stream_app_faust_topic_partition_(end_offset|offset_commited)\{([^}]*)\} ([0-9.e+-]+)$', re.M)


def offsets_done(worker: WorkerProcess) -> bool:
    """Every partition the worker consumes (inputs, health signals; not changelogs) committed to its end."""
    ends: dict[bytes, float] = {}
    committed: dict[bytes, float] = {}
    for kind, labels, value in _OFFSET.findall(http_get(worker.base_url + "/metrics", timeout=60)):
        if b"changelog" in labels:
            continue
        (ends if kind == b"end_offset" else committed)[labels] = float(value)
    return bool(ends) and all(committed.get(k, -1) >= v - 1 for k, v in ends.items())


def snapshot_diff(got: dict, want: dict, limit: int = 6) -> list:
    keys = sorted(set(got) | set(want), key=str)
    return [(k, got.get(k), want.get(k)) for k in keys
            if not (k in got and k in want and math.isclose(got[k], want[k], rel_tol=1e-9, abs_tol=1e-9))][:limit]  # fmt: skip


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[i]


def histogram_quantile(buckets: dict[float, float], q: float) -> float:
    """Prometheus' histogram_quantile over cumulative bucket counts {upper edge: count}."""
    edges = sorted(buckets)
    total = buckets[edges[-1]]
    if total <= 0:
        return float("nan")
    rank = q * total
    prev_edge, prev_count = 0.0, 0.0
    for edge in edges:
        count = buckets[edge]
        if count >= rank:
            if math.isinf(edge):
                return prev_edge
            return prev_edge + (edge - prev_edge) * (rank - prev_count) / max(count - prev_count, 1e-12)
        prev_edge, prev_count = edge, count
    return edges[-1]


def delay_buckets(text: bytes, topic: str) -> dict[float, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith(b"stream_app_event_delay_seconds_bucket{") and f'topic="{topic}"'.encode() in line:
            le = re.search(rb'le="([^"]+)"', line).group(1).decode()
            out[float(le)] = float(line.rpartition(b" ")[2])
    return out


def machine_info() -> dict:
    from stream_app.tools.stack import KAFKA_VERSION

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    import aiokafka
    import faust

    try:
        import quixstreams

        quix = quixstreams.__version__
    except ImportError:  # pragma: no cover - the bench extra is missing
        quix = None
    return {
        "nproc": os.cpu_count(),
        "ram_gib": round(mem / 2**30, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "kafka": KAFKA_VERSION,
        "faust_streaming": faust.__version__,
        "aiokafka": aiokafka.__version__,
        "quixstreams": quix,
        "platform": platform.platform(),
    }


# --------------------------------------------------------------------------- events


def envelope(family: str, typ: str, subject: str, data: dict, t: float) -> GeneratedEvent:
    ev_id = uuid.uuid4().hex
    doc = {
        "specversion": "1.0",
        "id": ev_id,
        "source": "bench",
        "type": typ,
        "time": rfc3339(t),
        "subject": subject,
        "schemaversion": 1,
        "data": data,
    }
    return GeneratedEvent(family, subject, orjson.dumps(doc), t, t, typ, ev_id)


def ticket_created(ticket_id: str, account_id: str, t: float, team: str = "technical") -> GeneratedEvent:
    data = {"ticket_id": ticket_id, "account_id": account_id, "requester_id": f"req_{account_id}",
            "channel": "email", "priority": "normal", "team": team}  # fmt: skip
    return envelope("ticket", "ticket.created", ticket_id, data, t)


def user_login(user_id: str, account_id: str, t: float) -> GeneratedEvent:
    data = {"user_id": user_id, "account_id": account_id, "session_id": f"s_{user_id}", "client": "web"}
    return envelope("activity", "activity.login", user_id, data, t)


def subscription_started(account_id: str, t: float) -> GeneratedEvent:
    data = {"account_id": account_id, "subscription_id": f"sub_{account_id}", "plan": "growth",
            "amount_minor": 9900, "currency": "USD", "interval": "month", "quantity": 1}  # fmt: skip
    return envelope("subscription", "subscription.started", account_id, data, t)


def survey_nps(response_id: str, t: float) -> GeneratedEvent:
    data = {"response_id": response_id, "score": 9, "comment": None, "account_id": None,
            "ticket_id": None, "respondent_id": None}  # fmt: skip
    return envelope("survey", "survey.nps", response_id, data, t)


def warmup_events(t: float) -> dict[str, GeneratedEvent]:
    tag = uuid.uuid4().hex[:8]
    return {
        "ticket": ticket_created(f"tkt_warm_{tag}", f"acc_warm_{tag}", t),
        "activity": user_login(f"usr_warm_{tag}", f"acc_warm_{tag}", t),
        "subscription": subscription_started(f"acc_warm_{tag}", t),
        "survey": survey_nps(f"rsp_warm_{tag}", t),
    }


def entity_events(n: int, seed: int, now: float) -> tuple[list[GeneratedEvent], dict[str, int]]:
    """n events, each creating one tracked entity: 40% open tickets, 40% users, 20% paying accounts.

    Event times spread over the last hour, so every entity is inside the metric windows.
    """
    rng = random.Random(seed)
    n_tickets, n_users = int(n * 0.4), int(n * 0.4)
    n_accounts = n - n_tickets - n_users
    accounts = [f"acc_{seed}_{i}" for i in range(n_accounts)]
    events = [subscription_started(a, now - rng.random() * 3600) for a in accounts]
    events += [ticket_created(f"tkt_{seed}_{i}", accounts[i % n_accounts], now - rng.random() * 3600,
                              team=("technical", "billing", "onboarding")[i % 3]) for i in range(n_tickets)]  # fmt: skip
    events += [user_login(f"usr_{seed}_{i}", accounts[i % n_accounts], now - rng.random() * 3600) for i in range(n_users)]
    rng.shuffle(events)
    return events, {"open_tickets": n_tickets, "users": n_users, "accounts": n_accounts}


def make_log(n: int, seed: int) -> tuple[list[GeneratedEvent], dict]:
    """The mixed log: the seeded generator (all four families), ending 15 minutes ago."""
    rate = 200.0
    span = max(n / rate, 5.0) * 1.02
    start = time.time() - span - 900
    events = generate(seed, start, span, rate)[:n]
    by_family = Counter(e.family for e in events)
    size = Counter()
    for e in events:
        size[e.family] += len(e.value)
    stats = {
        "messages": len(events),
        "avg_bytes": round(sum(size.values()) / max(len(events), 1), 1),
        "families": {f: {"messages": by_family[f], "avg_bytes": round(size[f] / max(by_family[f], 1), 1)} for f in FAMILIES},
        "event_types": len({e.type for e in events}),
        "event_time_span_s": round(span, 1),
    }
    return events, stats


async def _send_warmup(bootstrap: str, topics: dict[str, str], partitions: int, t: float) -> int:
    """One valid event on every partition of every input topic: consumed by a system = it owns them all."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        n = 0
        for p in range(partitions):
            for family, ev in warmup_events(t).items():
                await producer.send_and_wait(topics[family], ev.value, key=ev.key_bytes, partition=p)
                n += 1
        return n
    finally:
        await producer.stop()


# --------------------------------------------------------------------------- systems under test


class RunnerDied(RuntimeError):
    pass


class Runner:
    """A comparison process (benchmarks.ceiling / faust_baseline / quix_peer) with its /count page."""

    def __init__(self, module: str, cfg: RunnerConfig, workdir: Path) -> None:
        self.module, self.cfg = module, cfg
        self.workdir = workdir / f"{module}-{cfg.group}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "runner.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> Runner:
        log = open(self.log_path, "ab")
        env = {**os.environ, **self.cfg.env(), "BENCH_STATE_DIR": str(self.workdir)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"benchmarks.{self.module}"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        wait_for(lambda: self._alive() and self.processed() >= 0, timeout, 0.2, f"{self.module} /count")
        return self

    def _alive(self) -> bool:
        if self.proc.poll() is not None:
            raise RunnerDied(f"{self.module} exited {self.proc.returncode}:\n{self.log_tail()}")
        return True

    def state(self) -> dict:
        return json.loads(http_get(f"http://127.0.0.1:{self.cfg.port}/count", timeout=5))

    def processed(self) -> int:
        return self.state()["processed"]

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class Bench:
    def __init__(self, stack, opts: Options, workdir: Path, log: Callable[[str], None] = print) -> None:
        self.stack, self.opts, self.workdir, self.log = stack, opts, workdir, log
        self.run_id = uuid.uuid4().hex[:6]
        self._n = itertools.count(1)
        self._procs: list = []

    # --- plumbing ---------------------------------------------------------

    def topics(self, label: str) -> dict[str, str]:
        base = f"bench-{self.run_id}-{next(self._n)}-{label}"
        topics = {f: f"{base}.{f}" for f in FAMILIES}
        self.stack.create_topics(list(topics.values()), partitions=self.opts.partitions)
        return topics

    def group(self, label: str) -> str:
        return f"bench-{self.run_id}-{next(self._n)}-{label}"

    def worker(self, topics: dict[str, str], app_id: str, name: str, **settings) -> WorkerProcess:
        env = worker_env(self.stack, app_id, topic_partitions=self.opts.partitions, **settings)
        env.update({f"STREAM_APP_TOPIC_{k}": topics[f] for k, f in
                    (("TICKETS", "ticket"), ("ACTIVITY", "activity"), ("SUBSCRIPTIONS", "subscription"), ("SURVEYS", "survey"))})  # fmt: skip
        # The worker would create these itself; stream_app.kafka.topics.ensure_topics can read a topic
        # created a moment ago as having 0 partitions and exit (seen under load), so create them here.
        self.stack.create_topics([env["STREAM_APP_TOPIC_DEADLETTER"], f"{app_id}.health-signals"],
                                 partitions=self.opts.partitions)  # fmt: skip
        w = WorkerProcess(env, self.workdir, name=name)
        self._procs.append(w)
        return w

    def runner(self, module: str, topics: dict[str, str], label: str, group: str | None = None) -> Runner:
        cfg = RunnerConfig(self.stack.bootstrap, topics, group or self.group(label), free_port(), str(self.workdir))
        r = Runner(module, cfg, self.workdir)
        self._procs.append(r)
        return r

    def cleanup(self) -> None:
        for p in self._procs:
            try:
                p.stop()
            except Exception:  # noqa: BLE001 - best effort, never leave processes behind
                if p.proc is not None and p.proc.poll() is None:
                    p.proc.kill()

    def timeout(self, n: int, rate_floor: float = 100.0) -> float:
        return (90.0 + n / rate_floor) * self.opts.timeout_scale

    def warm_up(self, topics: dict[str, str], count: Callable[[], float], t: float) -> int:
        n = asyncio.run(_send_warmup(self.stack.bootstrap, topics, self.opts.partitions, t))
        wait_for(lambda: count() >= n, 120 * self.opts.timeout_scale, 0.1, f"{n} warm-up events")
        return n

    def burst(self, topics: dict[str, str], events: list[GeneratedEvent], count: Callable[[], float],
              target: float, interval: float | None = None, done_at: Callable[[], float] | None = None) -> dict:  # fmt: skip
        """Produce the log as fast as possible; time until ``count()`` reaches ``target``.

        ``done_at``: the system's own wall-clock time of its last message, read once the target is
        reached (more precise than the poll that saw it).
        """
        interval = interval or self.opts.poll_interval
        produced: dict = {}

        def produce() -> None:
            t = _now()
            try:
                asyncio.run(produce_log(self.stack.bootstrap, topics, events))
            except BaseException as exc:  # noqa: BLE001 - reported by the waiting thread
                produced["error"] = exc
            produced["seconds"] = _now() - t

        t0, wall0 = _now(), time.time()
        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        wait_for(lambda: "error" not in produced and count() >= target, self.timeout(len(events)), interval,
                 f"{target:.0f} processed")  # fmt: skip
        seconds = _now() - t0
        if done_at is not None:
            seconds = min(seconds, max(done_at() - wall0, 1e-3))
        thread.join()
        if "error" in produced:
            raise produced["error"]
        return {
            "events": len(events),
            "seconds": round(seconds, 3),
            "events_per_s": round(len(events) / seconds, 1),
            "produce_seconds": round(produced["seconds"], 3),
            "producer_events_per_s": round(len(events) / produced["seconds"], 1),
        }

    # --- phases -----------------------------------------------------------

    def ceiling(self, log_events: list[GeneratedEvent], log_t: float) -> dict:
        topics = self.topics("ceiling")
        r = self.runner("ceiling", topics, "ceiling").start()
        try:
            warm = self.warm_up(topics, r.processed, log_t)
            burst = self.burst(topics, log_events, r.processed, warm + len(log_events), interval=0.05,
                               done_at=lambda: r.state()["last_at"])  # fmt: skip
        finally:
            r.stop()
        # The same topics again, now full: how fast a fresh group drains them (no producer running),
        # timed by the consumer itself from its first to its last batch.
        total = warm + len(log_events)
        r2 = self.runner("ceiling", topics, "ceiling-drain").start()
        try:
            wait_for(lambda: r2.processed() >= total, self.timeout(total), 0.05, "drained")
            state = r2.state()
        finally:
            r2.stop()
        seconds = max(state["last_at"] - state["first_at"], 1e-6)
        drain = {"events": total, "seconds": round(seconds, 3), "events_per_s": round(total / seconds, 1)}
        return {"burst": burst, "drain": drain}

    def runner_throughput(self, module: str, log_events, log_t: float) -> dict:
        topics = self.topics(module)
        group = self.group(module)
        if module == "faust_baseline":
            # Faust sometimes misses a changelog it created moments before the first assignment
            # ("has 0 partitions"); created beforehand, they are in its first metadata.
            self.stack.create_topics([f"{group}-{t}-changelog" for t in FAUST_BASELINE_TABLES],
                                     partitions=self.opts.partitions, config={"cleanup.policy": "compact"})  # fmt: skip
        t = _now()
        r = self.runner(module, topics, module, group=group)
        warm = None
        for attempt in range(3):
            # Quix may not find an internal topic it has just created (metadata lag under load):
            # it exits, and a restart finds the topic. Warm-up events sent once are read again.
            try:
                r.start()
                count = lambda: r._alive() and r.processed()  # noqa: E731 - fail fast if it died
                if warm is None:
                    warm = self.warm_up(topics, count, log_t)
                else:
                    wait_for(lambda: count() >= warm, 120 * self.opts.timeout_scale, 0.1, "warm-up events")
                break
            except RunnerDied:
                self.log(f"{module} died during start (attempt {attempt + 1}):\n{r.log_tail(8)}")
                r.stop()
                if attempt == 2:
                    raise
        started = _now() - t
        try:
            result = self.burst(topics, log_events, count, warm + len(log_events))
        except BaseException:
            self.log(f"{module} log tail:\n{r.log_tail()}")
            raise
        finally:
            r.stop()
        result["startup_seconds"] = round(started, 2)
        return result

    def ours_throughput(self, n_workers: int, log_events, log_t: float, keep: bool = False):
        topics = self.topics(f"ours{n_workers}")
        app_id = self.group(f"ours{n_workers}")
        workers = [self.worker(topics, app_id, f"{app_id}-w{i}") for i in range(n_workers)]
        t = _now()
        # Start together (one rebalance) and before any event arrives.
        failed: list[BaseException] = []

        def start(w: WorkerProcess) -> None:
            try:
                w.start(ready_timeout=120 * self.opts.timeout_scale)
            except BaseException as exc:  # noqa: BLE001 - raised below
                failed.append(exc)

        threads = [threading.Thread(target=start, args=(w,)) for w in workers]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        if failed:
            raise RuntimeError(f"worker did not start: {failed[0]}")
        count = PoliteCounter(workers)
        # A worker that was ready alone goes through one more rebalance when the other joins.
        wait_for(lambda: all(w.http_status("/readyz") == 200 for w in workers) and _owned(workers) == 4 * self.opts.partitions,
                 120 * self.opts.timeout_scale, 0.2, "every partition assigned, workers ready")  # fmt: skip
        warm = self.warm_up(topics, count, log_t)
        started = _now() - t
        profile = None
        if self.opts.profile_seconds > 0 and n_workers == 1:
            profile = self._start_profile(workers[0])
        t0 = _now()
        result = self.burst(topics, log_events, count, warm + len(log_events), interval=0.01,
                            done_at=lambda: count.last_at)  # fmt: skip
        result["scrape_p50_s"] = round(quantile(sorted(count.scrape_seconds), 0.5), 4)
        settled, _, _ = self.settle(workers, t0, interval=0.2 if self.opts.quick else 0.5)
        result["settled_seconds"] = round(settled, 3)
        result["settled_events_per_s"] = round(len(log_events) / settled, 1)
        result["startup_seconds"] = round(started, 2)
        result["workers"] = n_workers
        result["events_per_s_per_worker"] = round(result["events_per_s"] / n_workers, 1)
        result["shares"] = [round(consumed_total(w) / (warm + len(log_events)), 3) for w in workers]
        if profile is not None:
            result["profile"] = self._finish_profile(*profile, events=result["events"], seconds=result["seconds"])
        if keep:
            return result, workers, topics
        for w in workers:
            w.stop()
        return result

    def settle(self, workers: list[WorkerProcess], t0: float, interval: float = 0.5) -> tuple[float, float, dict]:
        """Wait until every business metric is final; returns (seconds from t0, at, snapshot at ``at``).

        Final = every input and signals partition committed up to its end offset (customer health
        takes a second hop through the signals topic) and two reads at one instant ``at`` equal.
        Commits trail processing by up to Faust's commit interval, so the time reported is that of
        the earliest read already equal to the final one.
        """
        at = time.time()
        history: list[tuple[float, dict]] = []
        deadline = _now() + self.timeout(0) + 600 * self.opts.timeout_scale
        while _now() < deadline:
            t = _now()
            snap: dict = {}
            for w in workers:
                for k, v in business_snapshot(w, at).items():
                    snap[k] = snap.get(k, 0.0) + v
            done = all(offsets_done(w) for w in workers)
            history.append((t, snap))
            if done and len(history) > 1 and same_snapshot(history[-2][1], snap):
                first = len(history) - 1
                while first > 0 and same_snapshot(history[first - 1][1], snap):
                    first -= 1
                return history[first][0] - t0, at, snap
            took = _now() - t
            time.sleep(max(interval - took, 4 * took))  # leave the workers >= 80 % of their time
        raise TimeoutError("metrics did not settle")

    def freshness(self, worker: WorkerProcess, topics: dict[str, str], rate: float = 0.0) -> dict:
        """Send ticket.created at a steady rate (event time = send time); poll /metrics as fast as
        the interval allows; an event's delay = first scrape showing the 5m created count reach its
        rank minus its send time."""
        rate, seconds = rate or self.opts.freshness_rate, self.opts.freshness_seconds
        m = max(1, int(rate * seconds))
        name, labels = "stream_app_support_tickets_created", {"window": "5m"}
        text0 = http_get(worker.base_url + "/metrics")
        c0 = sample_sum(text0, name, **labels)
        buckets0 = delay_buckets(text0, topics["ticket"])
        samples: list[tuple[float, float]] = []
        scrape_times: list[float] = []
        stop = threading.Event()

        def poll() -> None:
            while not stop.is_set():
                t = _now()
                try:
                    text = http_get(worker.base_url + "/metrics")
                except OSError:
                    continue
                done = _now()
                samples.append((done, sample_sum(text, name, **labels) - c0))
                scrape_times.append(done - t)
                # At least 4x the scrape's own time between scrapes: the poller must not starve the worker.
                time.sleep(max(self.opts.freshness_poll - (done - t), 4 * (done - t)))

        send_times: list[float] = []

        async def produce() -> None:
            from stream_app.tools.producer import EventProducer

            tag = uuid.uuid4().hex[:6]
            async with EventProducer(self.stack.bootstrap, topics, linger_ms=0) as producer:
                t0 = _now()
                for i in range(m):
                    ahead = t0 + i / rate - _now()
                    if ahead > 0:
                        await asyncio.sleep(ahead)
                    ev = ticket_created(f"tkt_fresh_{tag}_{i}", f"acc_fresh_{i % 500}", time.time())
                    send_times.append(_now())
                    await producer.send_generated(ev)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        try:
            asyncio.run(produce())
            wait_for(lambda: samples and samples[-1][1] >= m, 60 * self.opts.timeout_scale, 0.05, f"{m} markers visible")
        finally:
            stop.set()
            poller.join()
        delays = []
        j = 0
        for k, sent in enumerate(send_times, start=1):
            while samples[j][1] < k:
                j += 1
            delays.append(max(0.0, samples[j][0] - sent))
        delays.sort()
        buckets1 = delay_buckets(http_get(worker.base_url + "/metrics"), topics["ticket"])
        diff = {le: buckets1[le] - buckets0.get(le, 0.0) for le in buckets1}
        scrape_times.sort()
        return {
            "markers": m,
            "rate": rate,
            "p50_s": round(quantile(delays, 0.5), 4),
            "p99_s": round(quantile(delays, 0.99), 4),
            "max_s": round(delays[-1], 4),
            "mean_s": round(sum(delays) / len(delays), 4),
            "arrival_p50_s": round(histogram_quantile(diff, 0.5), 4),
            "arrival_p99_s": round(histogram_quantile(diff, 0.99), 4),
            "scrape_p50_s": round(quantile(scrape_times, 0.5), 4),
            "scrapes": len(scrape_times),
            "poll_interval_s": self.opts.freshness_poll,
            "poll_mean_interval_s": round((samples[-1][0] - samples[0][0]) / max(len(samples) - 1, 1), 4),
        }

    def recovery(self, store: str, n: int) -> dict:
        """Load n entities, kill -9 the worker, restart it; time until /metrics (evaluated at one
        fixed instant) equals what it showed before the kill. RSS before/after the load."""
        topics = self.topics(f"rec-{store}")
        app_id = self.group(f"rec-{store}")
        flush = 0.2 if self.opts.quick else 1.0
        w = self.worker(topics, app_id, f"{app_id}-w", store=store, worker_instance_id=f"{app_id}-w",
                        store_flush_interval=flush)  # fmt: skip
        t = _now()
        w.start(ready_timeout=120 * self.opts.timeout_scale)
        count = PoliteCounter([w])
        warm = self.warm_up(topics, count, time.time())
        startup = _now() - t
        redis_client = None
        if store == "redis":
            import redis

            redis_client = redis.Redis.from_url(self.stack.redis_url)
        time.sleep(flush)
        rss0 = rss_bytes(w.proc.pid)
        redis0 = redis_client.info("memory")["used_memory"] if redis_client else None
        events, mix = entity_events(n, self.opts.seed, time.time())
        load = self.burst(topics, events, count, warm + n, interval=0.01, done_at=lambda: count.last_at)
        _, at, snap = self.settle([w], _now(), interval=0.3 if self.opts.quick else 1.0)
        tracked = {k: sum(v for (name, _), v in snap.items() if name == f"stream_app_{k}")
                   for k in ("support_tickets_tracked", "usage_users_tracked", "revenue_accounts_tracked",
                             "health_accounts_tracked")}  # fmt: skip
        time.sleep(2.5 * flush)  # the Redis store's background flush has run
        rss1 = rss_bytes(w.proc.pid)
        redis1 = redis_client.info("memory")["used_memory"] if redis_client else None
        w.kill()
        t_kill = _now()
        w.proc = None
        ready = {}

        def start() -> None:
            try:
                w.start(ready_timeout=self.timeout(n, 1000))
                ready["t"] = _now()
            except BaseException as exc:  # noqa: BLE001
                ready["error"] = exc

        starter = threading.Thread(target=start, daemon=True)
        starter.start()

        last_diff: list = []

        def correct() -> bool:
            if "error" in ready:
                raise RuntimeError(f"restart failed: {ready['error']}")
            if w.http_status("/readyz") is None:
                return False
            got = business_snapshot(w, at)
            last_diff[:] = snapshot_diff(got, snap)
            return not last_diff

        try:
            wait_for(correct, self.timeout(n, 1000), 0.2, "metrics equal to before the kill")
        except TimeoutError as exc:
            raise TimeoutError(f"{store} store: {exc}; differences (series, now, before): {last_diff}") from None
        t_correct = _now() - t_kill
        starter.join()
        rss2 = rss_bytes(w.proc.pid)
        w.stop()
        if redis_client is not None:
            redis_client.close()
        entities = n + warm
        return {
            "store": store,
            "entities": n,
            "mix": mix,
            "tracked": tracked,
            "series_compared": len(snap),
            "load_events_per_s": load["events_per_s"],
            "startup_empty_s": round(startup, 2),
            "ready_after_kill_s": round(ready["t"] - t_kill, 2),
            "correct_after_kill_s": round(t_correct, 2),
            "rss_before_mib": round(rss0 / 2**20, 1),
            "rss_loaded_mib": round(rss1 / 2**20, 1),
            "rss_recovered_mib": round(rss2 / 2**20, 1),
            "rss_bytes_per_entity": round((rss1 - rss0) / entities, 1),
            "rss_recovered_bytes_per_entity": round((rss2 - rss0) / entities, 1),
            "redis_bytes_per_entity": round((redis1 - redis0) / entities, 1) if redis_client else None,
        }

    # --- profiling ----------------------------------------------------------

    def _start_profile(self, worker: WorkerProcess):
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(spy).exists():
            self.log("py-spy not installed: no profile (pip install py-spy)")
            return None
        out = self.workdir / f"profile-{uuid.uuid4().hex[:6]}.txt"
        proc = subprocess.Popen(
            [spy, "record", "-p", str(worker.proc.pid), "-d", str(int(self.opts.profile_seconds)), "-r", "200",
             "-f", "raw", "-o", str(out), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        self._procs.append(_Spy(proc))
        return proc, out

    def _finish_profile(self, proc, out: Path, events: int, seconds: float) -> dict:
        try:
            proc.wait(self.opts.profile_seconds + 60)
        except subprocess.TimeoutExpired:
            proc.kill()
        if not out.exists():
            return {"error": (proc.stderr.read() or b"").decode()[-500:]}
        summary = summarize_profile(out.read_text(), events_per_s=events / seconds)
        summary["raw"] = out.read_text()  # collapsed stacks, for flame graphs (inferno, speedscope)
        return summary


class _Spy:
    def __init__(self, proc) -> None:
        self.proc = proc

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _owned(workers: list[WorkerProcess]) -> int:
    n = 0
    for w in workers:
        text = http_get(w.base_url + "/metrics")
        n += sample_sum(text, "stream_app_assigned_partitions")
    return int(n)


_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


# Where a worker's time goes, by component: a sample counts for every component whose marker
# (substring of a frame) is on its stack, so shares overlap where components nest.
PROFILE_COMPONENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ingest, total (agent loop per event)", ("StreamWorker._ingest_one",)),
    ("  decode_event (pydantic validation)", ("decode_event",)),
    ("  pipeline counters (prometheus_client labels/inc)", ("observe_valid", "observe_consumed")),
    ("  family handler (state, index, signals)", ("FamilyProcessor.handle",)),
    ("    apply event to entity state", ("apply (stream_app/engine",)),
    ("    state from_dict / to_dict", ("from_dict (stream_app", "to_dict (stream_app")),
    ("    contributions + index update", ("contributions (stream_app", "Index.update (stream_app", "ContributionIndex.update")),
    ("    table write (Faust changelog send)", ("Table.__setitem__", "on_key_set", "ManagedUserDict.__setitem__")),
    ("    health signal send", ("FamilyProcessor._signal", "FamilyProcessor._send_signal")),
    ("    entity expiry", ("FamilyProcessor._expire",)),
    ("health agent (signals topic)", ("HealthProcessor.handle", "account_health (stream_app")),
    ("Faust stream/agent machinery", ("Stream._c_aiter", "Stream.__aiter__", "Agent._execute_actor")),
    ("aiokafka producer sender (changelogs, signals)", ("Sender._send_produce_req", "Sender._sender_routine", "SendProduceReqHandler")),
    ("consumer fetch (Faust consumer thread)", ("Fetcher.", "AIOKafkaConsumerThread", "ConsumerThread")),
    ("offset commit", ("Consumer.commit", "Consumer._commit", "Consumer.maybe_wait_for_commit_to_finish")),
    ("Redis store flush", ("stream_app/store",)),
    ("/metrics rendering (web)", ("View.dispatch", "generate_latest", "render (stream_app")),
)
_GENERIC = re.compile(r"\((asyncio|selectors|threading|runpy|<frozen|mode/worker|mode/services|mode/threads|stream_app/cli)")


def summarize_profile(raw: str, events_per_s: float, top: int = 25) -> dict:
    """py-spy raw (collapsed) stacks -> components, and self / inclusive share per function.

    ``share`` = part of the sampled active thread-time; ``us_per_event`` = share x the run's
    wall time per event, i.e. the cost per event if the worker's one busy core were all there is.
    """
    self_t: Counter = Counter()
    incl: Counter = Counter()
    comp: Counter = Counter()
    total = idle = 0
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        n = int(n)
        frames = [_short(f) for f in stack.split(";")]
        total += n
        if any("EpollSelector.select" in f or "select (selectors" in f for f in frames[-2:]):
            idle += n
        self_t[frames[-1]] += n
        for f in set(frames):
            if not _GENERIC.search(f):
                incl[f] += n
        joined = ";".join(frames)
        for name, markers in PROFILE_COMPONENTS:
            if any(m in joined for m in markers):
                comp[name] += n
    if not total:
        return {"samples": 0}
    us_per_event = 1e6 / events_per_s if events_per_s else float("nan")

    def row(f: str, v: int) -> dict:
        return {"function": f, "share": round(v / total, 4), "us_per_event": round(v / total * us_per_event, 2)}

    return {
        "samples": total,
        "idle_share": round(idle / total, 4),
        "components": [row(name, comp[name]) for name, _ in PROFILE_COMPONENTS],
        "self": [row(f, v) for f, v in self_t.most_common(top)],
        "inclusive": [row(f, v) for f, v in incl.most_common(top)],
    }


def _short(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    file = m.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{m.group('func')} ({file})"


# --------------------------------------------------------------------------- run + report


def run(stack, opts: Options, workdir: Path, log: Callable[[str], None] = print) -> dict:
    """All measurements in one go; returns the result document (see benchmarks/README.md)."""
    bench = Bench(stack, opts, workdir, log)
    t_start = _now()
    # Other work on the machine skews every figure: keep the 1-minute load average per phase.
    load: dict[str, float] = {"start": round(os.getloadavg()[0], 2)}
    results: dict = {
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "options": asdict(opts),
        "machine": machine_info(),
    }
    def throughput_phases() -> list[Callable[[], None]]:
        log(f"generating a mixed log of {opts.events} events ...")
        events, stats = make_log(opts.events, opts.seed)
        results["log"] = stats
        log_t = events[0].time
        log(f"log: {stats['messages']} messages, {stats['avg_bytes']} bytes on average")

        def ceiling() -> None:
            log("ceiling (plain aiokafka consumer + decode_event) ...")
            results["ceiling"] = bench.ceiling(events, log_t)
            log(f"  ceiling: {results['ceiling']}")

        def one_worker() -> None:
            log("stream_app, 1 worker ...")
            one, workers, topics = bench.ours_throughput(1, events, log_t, keep=True)
            results["ours_1"] = one
            log(f"  1 worker: {_brief(one)}")
            load["ours_1"] = round(os.getloadavg()[0], 2)
            try:
                rate = opts.freshness_rate or max(10.0, round(one["settled_events_per_s"] / 4, -1))
                results["freshness"] = bench.freshness(workers[0], topics, rate)
            finally:
                workers[0].stop()
            log(f"  freshness: {results['freshness']}")

        def two_workers() -> None:
            log("stream_app, 2 workers ...")
            results["ours_2"] = bench.ours_throughput(2, events, log_t)
            log(f"  2 workers: {_brief(results['ours_2'])}")

        def runner(module: str) -> Callable[[], None]:
            def go() -> None:
                log(f"{module} ...")
                results[module] = bench.runner_throughput(module, events, log_t)
                log(f"  {module}: {results[module]}")

            go.__name__ = module
            return go

        return [ceiling, one_worker, two_workers, runner("faust_baseline"), runner("quix_peer")]

    def recovery(store: str) -> Callable[[], None]:
        def go() -> None:
            log(f"recovery and memory, {store} store, {opts.entities} entities ...")
            results[f"recovery_{store}"] = bench.recovery(store, opts.entities)
            log(f"  recovery {store}: {results[f'recovery_{store}']}")

        go.__name__ = f"recovery_{store}"
        return go

    try:
        phases = throughput_phases() if "throughput" in opts.phases else []
        if "recovery" in opts.phases:
            phases += [recovery(store) for store in opts.stores]
        if opts.quick:
            with ThreadPoolExecutor(len(phases)) as pool:
                for f in [pool.submit(phase) for phase in phases]:
                    f.result()
        else:
            for phase in phases:
                phase()
                load[phase.__name__] = round(os.getloadavg()[0], 2)
        if "throughput" in opts.phases:
            results["ratios"] = ratios(results)
    finally:
        bench.cleanup()
    results["load_average_1m"] = load
    results["duration_s"] = round(_now() - t_start, 1)
    return results


def _brief(r: dict) -> dict:
    return {k: v for k, v in r.items() if k != "profile"}


def ratios(r: dict) -> dict:
    ours = r["ours_1"]["events_per_s"]

    def div(a, b):
        return round(a / b, 3) if b else None

    return {
        "ours_vs_ceiling": div(ours, r["ceiling"]["drain"]["events_per_s"]),
        "ours_vs_ceiling_burst": div(ours, r["ceiling"]["burst"]["events_per_s"]),
        "ours_vs_faust_baseline": div(ours, r["faust_baseline"]["events_per_s"]),
        "ours_vs_quix_peer": div(ours, r["quix_peer"]["events_per_s"]),
        "two_workers_vs_one": div(r["ours_2"]["events_per_s"], ours),
    }


def _f(v, unit: str = "", digits: int = 0) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:,.{digits}f}{unit}"


def format_table(r: dict) -> str:
    m = r["machine"]
    rows = [
        ("machine", f"{m['nproc']} CPUs ({m['cpu']}), {m['ram_gib']} GiB RAM, Python {m['python']}, "
                    f"Kafka {m['kafka']}, faust-streaming {m['faust_streaming']}, quixstreams {m['quixstreams']}"),
    ]
    if "log" in r:
        rows += _throughput_rows(r)
    rows += _recovery_rows(r)
    if "load_average_1m" in r:
        rows.append(("load average (1 min) at start and after each phase",
                     ", ".join(f"{k} {v}" for k, v in r["load_average_1m"].items())))  # fmt: skip
    width = max(len(k) for k, _ in rows)
    lines = [f"| {'measure'.ljust(width)} | result |", f"| {'-' * width} | --- |"]
    lines += [f"| {k.ljust(width)} | {v} |" for k, v in rows]
    return "\n".join(lines) + "\n"


def _throughput_rows(r: dict) -> list[tuple[str, str]]:
    lg, c, one, two = r["log"], r["ceiling"], r["ours_1"], r["ours_2"]
    bl, qx, fr, ra = r["faust_baseline"], r["quix_peer"], r["freshness"], r["ratios"]
    fam = ", ".join(f"{f} {v['messages']:,} x {v['avg_bytes']:.0f} B" for f, v in lg["families"].items())
    return [
        ("event log", f"{lg['messages']:,} messages, {lg['avg_bytes']:.0f} B average, {lg['event_types']} event types: {fam}"),
        ("producer (burst, aiokafka)", f"{_f(one['producer_events_per_s'])} ev/s"),
        ("ceiling: aiokafka + decode_event, backlog drain", f"{_f(c['drain']['events_per_s'])} ev/s"),
        ("ceiling: same, end to end from first produced", f"{_f(c['burst']['events_per_s'])} ev/s"),
        ("stream_app, 1 worker: all consumed on /metrics; all metrics settled",
         f"{_f(one['events_per_s'])}; {_f(one['settled_events_per_s'])} ev/s"),
        ("stream_app, 2 workers: consumed, total / per worker; settled",
         f"{_f(two['events_per_s'])} / {_f(two['events_per_s_per_worker'])}; {_f(two['settled_events_per_s'])} ev/s "
         f"(shares {two['shares']})"),
        ("Faust baseline, 1 worker (memory tables, windowed)", f"{_f(bl['events_per_s'])} ev/s"),
        ("Quix Streams peer, 1 process (RocksDB, windows)", f"{_f(qx['events_per_s'])} ev/s"),
        ("ratio ours / ceiling (drain; end to end)",
         f"{_f(ra['ours_vs_ceiling'], digits=3)}; {_f(ra['ours_vs_ceiling_burst'], digits=3)}"),
        ("ratio ours / Faust baseline", _f(ra["ours_vs_faust_baseline"], digits=3)),
        ("ratio ours / Quix peer", _f(ra["ours_vs_quix_peer"], digits=3)),
        ("ratio 2 workers / 1 worker", _f(ra["two_workers_vs_one"], digits=3)),
        (f"freshness at {fr['rate']:.0f} ev/s, produce -> /metrics (p50 / p99 / max)",
         f"{_f(fr['p50_s'] * 1000)} / {_f(fr['p99_s'] * 1000)} / {_f(fr['max_s'] * 1000)} ms "
         f"({fr['markers']:,} events, scrape p50 {_f(fr['scrape_p50_s'] * 1000, digits=1)} ms)"),
        ("  of which produce -> consumed (delay histogram p50 / p99)",
         f"{_f(fr['arrival_p50_s'] * 1000)} / {_f(fr['arrival_p99_s'] * 1000)} ms"),
    ]


def _recovery_rows(r: dict) -> list[tuple[str, str]]:
    rows = []
    for store in ("redis", "memory"):
        rc = r.get(f"recovery_{store}")
        if rc is None:
            continue
        rows += [
            (f"recovery, {store} store, {rc['entities']:,} entities: kill -9 -> ready / correct",
             f"{_f(rc['ready_after_kill_s'], ' s', 1)} / {_f(rc['correct_after_kill_s'], ' s', 1)} "
             f"(empty worker starts in {_f(rc['startup_empty_s'], ' s', 1)}; {rc['series_compared']} series compared)"),
            (f"memory, {store} store: worker RSS per entity",
             f"{_f(rc['rss_bytes_per_entity'], ' B')} loaded, {_f(rc['rss_recovered_bytes_per_entity'], ' B')} after recovery "
             f"(RSS {rc['rss_before_mib']} -> {rc['rss_loaded_mib']} MiB)"
             + (f"; Redis {_f(rc['redis_bytes_per_entity'], ' B')} per entity" if rc["redis_bytes_per_entity"] is not None else "")),
            (f"entity load rate, {store} store (simple create events)", f"{_f(rc['load_events_per_s'])} ev/s"),
        ]  # fmt: skip
    return rows


def format_profile(p: dict | None) -> str:
    if not p or not p.get("samples"):
        return ""
    out = [f"py-spy, 1 worker during the throughput run: {p['samples']} active thread samples, "
           f"idle in epoll {p['idle_share']:.1%}", "",
           "| component (overlapping) | share | µs/event |", "| --- | --- | --- |"]  # fmt: skip
    out += [f"| {r['function']} | {r['share']:.1%} | {r['us_per_event']} |" for r in p.get("components", [])]
    out += ["", "| self time: function | share | µs/event |", "| --- | --- | --- |"]
    out += [f"| `{r['function']}` | {r['share']:.1%} | {r['us_per_event']} |" for r in p["self"][:15]]
    out += ["", "| inclusive: function | share | µs/event |", "| --- | --- | --- |"]
    out += [f"| `{r['function']}` | {r['share']:.1%} | {r['us_per_event']} |" for r in p["inclusive"][:25]]
    return "\n".join(out) + "\n"


def write_results(results: dict, out_dir: Path) -> Path:
    """``<stamp>.json``; a profile's raw stacks go next to it as ``<stamp>.profile.txt``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = out_dir / f"{stamp}.json"
    profile = results.get("ours_1", {}).get("profile") or {}
    if "raw" in profile:
        raw_path = out_dir / f"{stamp}.profile.txt"
        raw_path.write_text(profile.pop("raw"))
        profile["raw_file"] = raw_path.name
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return path


def write_doc(results: dict, table: str, command: str, doc: Path = DOC) -> None:
    """Replace the table between the markers in docs/performance.md: a full run goes into the
    ``bench`` block, a recovery-only run (``--phases recovery``, e.g. 1M entities) into ``bench-recovery``."""
    name = "bench" if "log" in results else "bench-recovery"
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    profile = format_profile(results.get("ours_1", {}).get("profile"))
    block = (f"{begin}\nRun {results['started_at']}: `{command}`, {results['duration_s']:.0f} s.\n\n"
             f"{table}" + (f"\n{profile}" if profile else "") + end)  # fmt: skip
    text = doc.read_text() if doc.exists() else "# Performance\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.write_text(text)


def _parser() -> argparse.ArgumentParser:
    d = Options()
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=d.events, help="messages in the mixed log (default %(default)s)")
    p.add_argument("--entities", type=int, default=d.entities,
                   help="tracked entities for recovery and memory (default %(default)s)")  # fmt: skip
    p.add_argument("--freshness-rate", type=float, default=d.freshness_rate, help="events/s (default %(default)s)")
    p.add_argument("--freshness-seconds", type=float, default=d.freshness_seconds, help="default %(default)s")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--phases", default=",".join(d.phases),
                   help="comma list of throughput (with freshness), recovery (with memory); default all")  # fmt: skip
    p.add_argument("--stores", default=",".join(d.stores),
                   help="stores for the recovery phase: redis, memory or both (default %(default)s)")
    p.add_argument("--profile", type=float, default=0.0, metavar="SECONDS",
                   help="py-spy the 1-worker throughput run for this many seconds (needs py-spy)")  # fmt: skip
    p.add_argument("--bootstrap", help="use this Kafka instead of starting the local stack (needs --redis-url)")
    p.add_argument("--redis-url", help="Redis for the worker store (with --bootstrap)")
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="JSON results directory")
    p.add_argument("--doc", action="store_true", help="write the table into docs/performance.md")
    return p


class _External:
    """A running Kafka + Redis given on the command line (LocalStack's interface, nothing started)."""

    def __init__(self, bootstrap: str, redis_url: str) -> None:
        self.bootstrap, self.redis_url = bootstrap, redis_url

    def create_topics(self, topics, *, partitions: int = 1, config=None) -> list[str]:
        from stream_app.tools.stack import KafkaBroker

        # KafkaBroker.create_topics only needs .bootstrap
        return KafkaBroker.create_topics(self, topics, partitions=partitions, config=config)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    opts = Options(events=args.events, entities=args.entities, freshness_rate=args.freshness_rate,
                   freshness_seconds=args.freshness_seconds, seed=args.seed, profile_seconds=args.profile,
                   phases=tuple(x.strip() for x in args.phases.split(",") if x.strip()),
                   stores=tuple(x.strip() for x in args.stores.split(",") if x.strip()))  # fmt: skip
    # SIGTERM/SIGHUP unwind like Ctrl-C, so the finally blocks stop workers and the stack.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    workdir = Path(tempfile.mkdtemp(prefix="stream-app-bench-"))
    command = "python -m benchmarks.bench " + " ".join(argv if argv is not None else sys.argv[1:])
    try:
        if args.bootstrap:
            if not args.redis_url:
                raise SystemExit("--bootstrap needs --redis-url")
            results = run(_External(args.bootstrap, args.redis_url), opts, workdir)
        else:
            from stream_app.tools.stack import LocalStack

            with LocalStack(workdir / "stack") as stack:
                print(f"local stack: Kafka {stack.bootstrap}, Redis {stack.redis_url}", flush=True)
                results = run(stack, opts, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    table = format_table(results)
    path = write_results(results, args.out_dir)
    print()
    print(table)
    print(format_profile(results.get("ours_1", {}).get("profile")))
    print(f"results: {path}")
    if args.doc:
        shutil.copyfile(path, args.out_dir / ("latest.json" if "log" in results else "latest-recovery.json"))
        write_doc(results, table, command.strip())
        print(f"table written to {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
