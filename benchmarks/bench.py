"""One benchmark run: stream_app next to a ceiling, Faust's own floor, a Faust baseline and a Quix Streams peer.

    .venv/bin/python -m benchmarks.bench --events 200000 --entities 100000 [--doc]

Everything runs on the local real stack (stream_app.stack: Kafka KRaft + redis-server), started
here unless --bootstrap/--redis-url point at running ones. Definitions of every figure are in
benchmarks/README.md; the table printed at the end is also written (with all raw figures) to
benchmarks/results/<UTC timestamp>.json, and with --doc into docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
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
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from stream_app.tools.generator import FAMILIES, GeneratedEvent, iter_generate, rfc3339
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
    freshness_rate: float = 2000.0  # the goal's fixed rate; 0: a quarter of the settled 1-worker throughput
    freshness_poll: float = 0.25  # seconds between /metrics scrapes (each costs the worker a render)
    freshness_seconds: float = 20.0
    # The search for the highest steady rate that keeps p99 under the goal: from the fixed rate,
    # up this ladder while it holds, or down it until it holds; each step this many seconds.
    freshness_ladder: tuple[float, ...] = (250.0, 500.0, 1000.0, 1500.0, 2000.0, 3000.0, 4000.0, 6000.0, 8000.0)
    freshness_ladder_seconds: float = 10.0
    freshness_p99_goal: float = 1.0
    voice_share: float = 0.1  # survey responses loaded after the entity mix, as a share of --entities
    metrics_scrapes: int = 5  # back-to-back /metrics scrapes per cost measurement (median reported)
    partitions: int = 4
    seed: int = 20261123
    poll_interval: float = 0.2
    profile_seconds: float = 0.0  # >0: py-spy the 1-worker throughput run for this long
    timeout_scale: float = 1.0
    stall_seconds: float = 300.0  # a burst fails when the processed count has not moved for this long
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


_WINDOW = re.compile(rb'window="([0-9]+)([smhd])"')
_UNIT = {b"s": 1, b"m": 60, b"h": 3600, b"d": 86400}


def longest_window(text: bytes, name: str) -> dict[str, str]:
    """``{"window": label}`` of the longest window among the series of ``name`` ({} if they
    have no window label)."""
    prefix = name.encode() + b"{"
    windows = {m.group(1) + m.group(2): int(m.group(1)) * _UNIT[m.group(2)]
               for line in text.splitlines() if line.startswith(prefix) for m in [_WINDOW.search(line)] if m}  # fmt: skip
    if not windows:
        return {}
    return {"window": max(windows, key=windows.get).decode()}


def polite(check: Callable[[WorkerProcess], bool], worker: WorkerProcess) -> bool:
    """``check(worker)`` (it scrapes /metrics); when false, wait 4x as long as it took, so a large
    worker's renders take at most a fifth of its time."""
    t = _now()
    done = check(worker)
    if not done:
        time.sleep(min(10.0, 4 * (_now() - t)))
    return done


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


def redis_tables(client, app_id: str) -> dict[str, dict]:
    """The worker store's Redis memory by table: ``MEMORY USAGE <key> SAMPLES 0`` (exact) of every
    key with the app id in it, grouped by the table name among the key's ``:``-separated parts
    (``stream_app.engine.catalogue.TABLES``; else the part before the last, e.g. a partition)."""
    try:
        from stream_app.engine.catalogue import TABLES
    except ImportError:  # pragma: no cover - the catalogue moved
        TABLES = ()
    out: dict[str, dict] = {}
    for key in client.scan_iter(match=f"*{app_id}*", count=1000):
        parts = key.decode(errors="replace").split(":")
        table = next((p for p in parts if p in TABLES), parts[-2] if len(parts) > 1 else "other")
        entry = out.setdefault(table, {"bytes": 0, "keys": 0, "fields": 0})
        entry["bytes"] += client.memory_usage(key, samples=0) or 0
        entry["keys"] += 1
        if client.type(key) == b"hash":
            entry["fields"] += client.hlen(key)
    return out


def _table_bytes(measured: dict) -> int:
    return sum(t["bytes"] for t in measured.get("tables", {}).values())


def family_figures(stage, load: dict, before: dict, after: dict) -> dict:
    """Per-entity cost of one family's stage of the recovery phase: worker RSS growth, Redis
    ``used_memory`` growth and the growth of each table's keys (its own table and the
    account_health rows its entities cause), divided by the stage's entities."""
    k = len(stage.events)
    out = {
        "what": stage.what,
        "event_type": stage.event_type,
        "table": stage.table,
        "entities": k,
        "load_events_per_s": load["events_per_s"],
        "rss_bytes_per_entity": round((after["rss"] - before["rss"]) / k, 1),
    }
    if "redis" in after:
        tables = {}
        for name in sorted(set(after["tables"]) | set(before["tables"])):
            grown = after["tables"].get(name, {}).get("bytes", 0) - before["tables"].get(name, {}).get("bytes", 0)
            if grown:
                tables[name] = round(grown / k, 1)
        out["redis_bytes_per_entity"] = round((after["redis"] - before["redis"]) / k, 1)
        out["redis_store_bytes_per_entity"] = round(sum(tables.values()), 1)
        out["redis_table_bytes_per_entity"] = tables
    return out


# Series groups of an exposition, by name prefix (first match).
SERIES_GROUPS = (
    ("support", "stream_app_support_"),
    ("usage", "stream_app_usage_"),
    ("revenue", "stream_app_revenue_"),
    ("voice", "stream_app_voice_"),
    ("health", "stream_app_health_"),
    ("faust", "stream_app_faust_"),
    ("store", "stream_app_store_"),
    ("pipeline and worker", "stream_app_"),
    ("other", ""),
)
BOARD_DIR, RULES_DIR = "deploy/grafana/dashboards", "deploy/prometheus/rules"
_METRIC_NAME = re.compile(r"\b(stream_app_\w+)\b")


def board_rule_names() -> set[str]:
    """Every stream_app_* name in the queries of the Grafana boards (targets, variables) and the
    expressions of the Prometheus rules (not titles or descriptions)."""
    import yaml

    exprs: list[str] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("expr", "query", "definition") and isinstance(v, str):
                    exprs.append(v)
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for path in sorted((ROOT / BOARD_DIR).glob("*.json")):
        walk(json.loads(path.read_text()))
    for path in sorted((ROOT / RULES_DIR).glob("*.y*ml")):
        walk(yaml.safe_load(path.read_text()) or {})
    return {name for e in exprs for name in _METRIC_NAME.findall(e)}


# Sample names of a family declared by a ``# TYPE name type`` line of the text format, even with
# no samples yet. Counters are declared with their _total name; a gauge histogram is declared as
# a histogram (its _gsum/_gcount follow as gauges when it has samples).
_TYPE_SUFFIXES = {
    "histogram": ("_bucket", "_sum", "_count", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count"),
}


def describe_exposition(body: bytes) -> dict:
    """Series (sample lines), metric families (``# TYPE`` lines), bytes and series per group of
    one /metrics body, and the names the boards and rules query that it does not expose (neither
    as samples nor as a declared family). A missing name leaves a panel or a rule without data;
    present is not proof the panel is right: tests/integration/test_prometheus_e2e.py runs them."""
    series = families = 0
    groups: Counter = Counter()
    names: set[str] = set()
    for line in body.splitlines():
        if not line:
            continue
        if line.startswith(b"#"):
            if line.startswith(b"# TYPE "):
                families += 1
                _, _, family, typ = line.decode().split(" ", 3)
                names.update(family + sfx for sfx in _TYPE_SUFFIXES.get(typ.strip(), ("",)))
            continue
        series += 1
        name = line.split(b"{", 1)[0].split(b" ", 1)[0].decode()
        names.add(name)
        groups[next(g for g, prefix in SERIES_GROUPS if name.startswith(prefix))] += 1
    wanted = board_rule_names()
    return {
        "series": series,
        "bytes": len(body),
        "families": families,
        "series_by_group": {g: groups[g] for g, _ in SERIES_GROUPS if groups[g]},
        "board_rule_names": len(wanted),
        "board_rule_names_missing": sorted(wanted - names),
    }


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
    return GeneratedEvent(family, subject, _compact(orjson.dumps(doc)), t, t, typ, ev_id)


def _compact(value: bytes) -> bytes:
    """An exact-size copy: orjson (3.13) returns bytes that keep a ~4 KB buffer each, which made a
    1M-entity log cost the harness ~4.5 GB of RAM (the copy: ~0.4 KB)."""
    return bytes(memoryview(value))


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


def survey_nps(response_id: str, t: float, account_id: str | None = None, score: int = 9) -> GeneratedEvent:
    data = {"response_id": response_id, "score": score, "comment": None, "account_id": account_id,
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


@dataclass(frozen=True)
class EntityStage:
    """One family's share of the recovery phase's entities, loaded (and measured) on its own."""

    family: str  # metric family: support, usage, revenue, voice
    what: str  # what one entity is
    table: str  # the table its states live in (the health rows they cause go to account_health)
    event_type: str
    events: list[GeneratedEvent]
    in_mix: bool  # part of --entities (the headline per-entity figures); False: voice, loaded after


def entity_stages(n: int, seed: int, now: float, voice: int = 0) -> list[EntityStage]:
    """The recovery phase's entities, one family at a time: n entities = 20 % paying accounts
    (``subscription.started``), then 40 % open tickets (``ticket.created``) and 40 % users
    (``activity.login``) of those accounts; then ``voice`` NPS responses of those accounts (not
    part of n). Event times spread over the last hour, so every entity is inside the metric
    windows. Each stage's events are shuffled."""
    rng = random.Random(seed)
    n_tickets, n_users = int(n * 0.4), int(n * 0.4)
    n_accounts = max(n - n_tickets - n_users, 1)
    accounts = [f"acc_{seed}_{i}" for i in range(n_accounts)]
    teams = ("technical", "billing", "onboarding")

    def ago() -> float:
        return now - rng.random() * 3600

    stages = [
        EntityStage("revenue", "paying account", "accounts", "subscription.started",
                    [subscription_started(a, ago()) for a in accounts], True),
        EntityStage("support", "open ticket", "tickets", "ticket.created",
                    [ticket_created(f"tkt_{seed}_{i}", accounts[i % n_accounts], ago(), team=teams[i % 3])
                     for i in range(n_tickets)], True),
        EntityStage("usage", "user", "users", "activity.login",
                    [user_login(f"usr_{seed}_{i}", accounts[i % n_accounts], ago()) for i in range(n_users)], True),
        EntityStage("voice", "survey response", "survey_responses", "survey.nps",
                    [survey_nps(f"rsp_{seed}_{i}", ago(), accounts[i % n_accounts], score=i % 11) for i in range(voice)],
                    False),
    ]  # fmt: skip
    for st in stages:
        rng.shuffle(st.events)
    return [st for st in stages if st.events]


def make_log(n: int, seed: int) -> tuple[list[GeneratedEvent], dict]:
    """The mixed log: the seeded generator (all four families), ending 15 minutes ago."""
    rate = 200.0
    span = max(n / rate, 5.0) * 1.02
    start = time.time() - span - 900
    events = [replace(e, value=_compact(e.value)) for e in itertools.islice(iter_generate(seed, start, span, rate), n)]
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


class Stalled(RuntimeError):
    """A system stopped making progress (its processed count did not move for a long while)."""


class Runner:
    """A comparison process (benchmarks.ceiling / faust_baseline / quix_peer) with its /count page."""

    def __init__(self, module: str, cfg: RunnerConfig, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.module, self.cfg, self.extra_env = module, cfg, env or {}
        self.workdir = workdir / f"{module}-{cfg.group}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "runner.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> Runner:
        log = open(self.log_path, "ab")
        env = {**os.environ, **self.cfg.env(), **self.extra_env, "BENCH_STATE_DIR": str(self.workdir)}
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

    def runner(self, module: str, topics: dict[str, str], label: str, group: str | None = None,
               env: dict[str, str] | None = None) -> Runner:  # fmt: skip
        cfg = RunnerConfig(self.stack.bootstrap, topics, group or self.group(label), free_port(), str(self.workdir))
        r = Runner(module, cfg, self.workdir, env)
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
              target: float, interval: float | None = None, done_at: Callable[[], float] | None = None,
              rate_floor: float = 100.0) -> dict:  # fmt: skip
        """Produce the log as fast as possible; time until ``count()`` reaches ``target``.

        ``done_at``: the system's own wall-clock time of its last message, read once the target is
        reached (more precise than the poll that saw it). ``rate_floor``: slowest rate (events/s)
        waited for before giving up; the wait also ends (``Stalled``) when the count has not moved
        for ``stall_seconds``, e.g. a worker that stopped consuming.
        """
        interval = interval or self.opts.poll_interval
        produced: dict = {}
        seen = {"count": -1.0, "at": _now()}
        stall = self.opts.stall_seconds * self.opts.timeout_scale

        def reached() -> bool:
            if "error" in produced:
                return True  # raised below
            n = count()
            if n > seen["count"]:
                seen["count"], seen["at"] = n, _now()
            elif _now() - seen["at"] > stall:
                raise Stalled(f"no progress for {stall:.0f} s at {n:.0f} of {target:.0f} processed")
            return n >= target

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
        wait_for(reached, self.timeout(len(events), rate_floor), interval, f"{target:.0f} processed")
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

    def runner_throughput(self, module: str, log_events, log_t: float, label: str | None = None,
                          env: dict[str, str] | None = None) -> dict:  # fmt: skip
        """A comparison process over its own fresh topics and group: warm-up, then the log as a
        burst, timed until its /count reaches the count. ``label`` names topics and group
        (default: the module), ``env`` goes to the process (e.g. BENCH_FLOOR_MODE)."""
        label = label or module
        topics = self.topics(label)
        group = self.group(label)
        if module == "faust_baseline":
            # Faust sometimes misses a changelog it created moments before the first assignment
            # ("has 0 partitions"); created beforehand, they are in its first metadata.
            self.stack.create_topics([f"{group}-{t}-changelog" for t in FAUST_BASELINE_TABLES],
                                     partitions=self.opts.partitions, config={"cleanup.policy": "compact"})  # fmt: skip
        t = _now()
        r = self.runner(module, topics, label, group=group, env=env)
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

    def metrics_cost(self, worker: WorkerProcess, scrapes: int | None = None) -> dict:
        """What one plain scrape of /metrics costs: ``scrapes`` GETs one after the other (a pause
        as long as the scrape between them, so the worker is not kept busy rendering), the
        median and min wall time of a GET from here (render + transfer on loopback), and what the
        last one held: series (sample lines), metric families, bytes, series per group, and which
        stream_app_* names that the boards and rules query are missing from it."""
        n = max(1, scrapes or self.opts.metrics_scrapes)
        times, body = [], b""
        for _ in range(n):
            t = _now()
            body = http_get(worker.base_url + "/metrics", timeout=600)
            took = _now() - t
            times.append(took)
            time.sleep(min(2.0, max(0.05, took)))
        times.sort()
        return {
            **describe_exposition(body),
            "render_p50_s": round(quantile(times, 0.5), 4),
            "render_min_s": round(times[0], 4),
            "render_max_s": round(times[-1], 4),
            "scrapes": n,
        }

    def freshness(self, worker: WorkerProcess, topics: dict[str, str], rate: float = 0.0,
                  seconds: float | None = None, stop_when_missed: bool = False) -> dict:  # fmt: skip
        """Send ticket.created at a steady rate (event time = send time); poll /metrics as fast as
        the interval allows; an event's delay = first scrape showing the 5m created count reach its
        rank minus its send time.

        ``stop_when_missed``: stop sending once so many events are already known to be later than
        the p99 goal (sent more than the goal before a scrape that did not show them yet) that
        the p99 of the whole run must miss it; the figures are then those of the events sent."""
        rate = rate or self.opts.freshness_rate
        seconds = seconds or self.opts.freshness_seconds
        m = max(1, int(rate * seconds))
        goal = self.opts.freshness_p99_goal
        late_enough = m - math.ceil(0.99 * m) + 1  # this many delays > goal => p99 > goal
        name = "stream_app_support_tickets_created"
        text0 = http_get(worker.base_url + "/metrics", timeout=60)
        # The longest window: nothing of this run leaves it while the markers are counted (in the
        # 5-minute one, an earlier step's tickets expiring would hide this step's new ones).
        labels = longest_window(text0, name)
        c0 = sample_sum(text0, name, **labels)
        buckets0 = delay_buckets(text0, topics["ticket"])
        samples: list[tuple[float, float]] = []
        scrape_times: list[float] = []
        stop = threading.Event()

        def poll() -> None:
            while not stop.is_set():
                t = _now()
                try:
                    text = http_get(worker.base_url + "/metrics", timeout=60)
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
                    if stop_when_missed and i % 50 == 49 and samples and known_late() >= late_enough:
                        stopped["at"] = i + 1
                        break

        def known_late() -> int:
            at, visible = samples[-1]
            return bisect.bisect_left(send_times, at - goal) - int(visible)

        stopped: dict[str, int] = {}

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        try:
            asyncio.run(produce())
            # An overloaded worker drains the backlog after the last send: allow for that.
            m = len(send_times)
            # An overloaded worker drains its backlog after the last send (allow >= 50 events/s).
            wait_for(lambda: samples and samples[-1][1] >= m, (60 + m / 50) * self.opts.timeout_scale, 0.05,
                     f"{m} markers visible")  # fmt: skip
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
        buckets1 = delay_buckets(http_get(worker.base_url + "/metrics", timeout=60), topics["ticket"])
        diff = {le: buckets1[le] - buckets0.get(le, 0.0) for le in buckets1}
        scrape_times.sort()
        send_span = send_times[-1] - send_times[0] if len(send_times) > 1 else 0.0
        return {
            "markers": m,
            "rate": rate,
            "sent_rate": round((m - 1) / send_span, 1) if send_span > 0 else rate,
            "seconds": seconds,
            "stopped_early": "at" in stopped,  # p99 could no longer meet the goal: stopped sending
            "p50_s": round(quantile(delays, 0.5), 4),
            "p99_s": round(quantile(delays, 0.99), 4),
            "max_s": round(delays[-1], 4),
            "mean_s": round(sum(delays) / len(delays), 4),
            "arrival_p50_s": round(histogram_quantile(diff, 0.5), 4),
            "arrival_p99_s": round(histogram_quantile(diff, 0.99), 4),
            "scrape_p50_s": round(quantile(scrape_times, 0.5), 4),
            "scrapes": len(scrape_times),
            "window": labels.get("window"),
            "poll_interval_s": self.opts.freshness_poll,
            "poll_mean_interval_s": round((samples[-1][0] - samples[0][0]) / max(len(samples) - 1, 1), 4),
        }

    def freshness_search(self, worker: WorkerProcess, topics: dict[str, str], fixed: dict) -> dict:
        """The highest steady rate whose p99 (produce -> visible) stays under the goal, on the
        ladder of rates: from the fixed-rate run, up the ladder while the goal holds (stop at the
        first miss), or down it until it holds (stop at the first hold). Each step is a freshness
        run of ``freshness_ladder_seconds`` on the same worker."""
        goal = self.opts.freshness_p99_goal
        holds = fixed["p99_s"] < goal
        keys = ("rate", "sent_rate", "markers", "stopped_early", "p50_s", "p99_s", "max_s", "arrival_p99_s",
                "scrape_p50_s")  # fmt: skip
        steps = [{**{k: fixed[k] for k in keys}, "holds": holds, "fixed": True}]
        ladder = sorted(set(self.opts.freshness_ladder))
        if holds:
            best: float | None = fixed["rate"]
            candidates = [r for r in ladder if r > fixed["rate"]]
        else:
            best = None
            candidates = [r for r in reversed(ladder) if r < fixed["rate"]]
        aborted = None
        for rate in candidates:
            try:
                r = self.freshness(worker, topics, rate, self.opts.freshness_ladder_seconds, stop_when_missed=True)
            except TimeoutError as exc:
                # The worker did not show this step's events in time: its backlog would skew every
                # further step, so the search ends here (reported, not raised).
                aborted = f"{rate:.0f} ev/s: {exc}"
                self.log(f"  freshness ladder aborted at {aborted}")
                break
            ok = r["p99_s"] < goal
            steps.append({**{k: r[k] for k in keys}, "holds": ok, "fixed": False})
            self.log(f"  freshness ladder: {rate:.0f} ev/s p99 {r['p99_s']:.3f} s ({'holds' if ok else 'misses'})")
            if holds and not ok:
                break
            if ok:
                best = rate
                if not holds:
                    break
        tried = [st["rate"] for st in steps]
        return {
            "p99_goal_s": goal,
            "highest_rate": best,
            # True: the highest ladder rate still held (the real limit is above it);
            # highest_rate None: even the lowest rate tried missed.
            "at_ladder_top": bool(holds and best is not None and best >= max(tried)),
            "ladder": ladder,
            "aborted": aborted,  # a step whose events did not all become visible in time
            "step_seconds": self.opts.freshness_ladder_seconds,
            "steps": steps,
        }

    def recovery(self, store: str, n: int) -> dict:
        """Load n entities one family at a time (then the survey responses), measuring RSS and
        Redis after each family; kill -9 the worker, restart it; time until /metrics (evaluated
        at one fixed instant) equals what it showed before the kill; then what a scrape costs."""
        topics = self.topics(f"rec-{store}")
        app_id = self.group(f"rec-{store}")
        flush = 0.2 if self.opts.quick else 1.0
        w = self.worker(topics, app_id, f"{app_id}-w", store=store, worker_instance_id=f"{app_id}-w",
                        store_flush_interval=flush)  # fmt: skip
        t = _now()
        w.start(ready_timeout=120 * self.opts.timeout_scale)
        startup_ready = _now() - t
        count = PoliteCounter([w])
        warm = self.warm_up(topics, count, time.time())
        startup = _now() - t
        redis_client = None
        if store == "redis":
            import redis

            redis_client = redis.Redis.from_url(self.stack.redis_url)

        def measure() -> dict:
            time.sleep(2.5 * flush)  # the Redis store's background flush has run
            out = {"rss": rss_bytes(w.proc.pid)}
            if redis_client is not None:
                out["redis"] = redis_client.info("memory")["used_memory"]
                out["tables"] = redis_tables(redis_client, app_id)
            return out

        before = measure()
        stages = entity_stages(n, self.opts.seed, time.time(), voice=int(n * self.opts.voice_share))
        loaded = warm
        load_seconds = 0.0
        families: dict[str, dict] = {}
        prev, mixed = before, before
        for st in stages:
            loaded += len(st.events)
            # A 1M-entity load on a shared machine may run far below the usual 100 events/s floor.
            load = self.burst(topics, st.events, count, loaded, interval=0.01, done_at=lambda: count.last_at,
                              rate_floor=25)  # fmt: skip
            load_seconds += load["seconds"]
            # Everything consumed and committed, health signals included (second hop).
            wait_for(lambda: polite(offsets_done, w), self.timeout(0) + 600 * self.opts.timeout_scale, 0.2,
                     f"{st.family} offsets committed")  # fmt: skip
            after = measure()
            families[st.family] = family_figures(st, load, prev, after)
            self.log(f"  {store} store, {st.family}: {families[st.family]}")
            prev = after
            if st.in_mix:
                mixed = after
        n_all = loaded - warm
        by_family = {st.family: st for st in stages}
        _, at, snap = self.settle([w], _now(), interval=0.3 if self.opts.quick else 1.0)
        tracked = {k: sum(v for (name, _), v in snap.items() if name == f"stream_app_{k}")
                   for k in ("support_tickets_tracked", "usage_users_tracked", "revenue_accounts_tracked",
                             "voice_responses_tracked", "health_accounts_tracked")}  # fmt: skip
        w.kill()
        t_kill = _now()
        w.proc = None
        ready = {}

        def start() -> None:
            try:
                w.start(ready_timeout=self.timeout(n, 500))
                ready.setdefault("t", _now())
            except BaseException as exc:  # noqa: BLE001
                ready["error"] = exc

        starter = threading.Thread(target=start, daemon=True)
        starter.start()

        last_diff: list = []

        def correct() -> bool:
            if "error" in ready:
                raise RuntimeError(f"restart failed: {ready['error']}")
            status = w.http_status("/readyz")
            if status is None:
                return False
            if status == 200:
                ready.setdefault("t", _now())  # polled more often than WorkerProcess.start does
            got = business_snapshot(w, at)
            last_diff[:] = snapshot_diff(got, snap)
            return not last_diff

        try:
            wait_for(correct, self.timeout(n, 500), 0.1, "metrics equal to before the kill")
        except TimeoutError as exc:
            raise TimeoutError(f"{store} store: {exc}; differences (series, now, before): {last_diff}") from None
        t_correct = _now() - t_kill
        starter.join()
        rss2 = rss_bytes(w.proc.pid)
        scrape = self.metrics_cost(w)
        w.stop()
        if redis_client is not None:
            redis_client.close()
        entities = n + warm
        rss0, rss1 = before["rss"], mixed["rss"]
        result = {
            "store": store,
            "entities": n,
            "mix": {k: len(by_family[f].events) if f in by_family else 0
                    for k, f in (("open_tickets", "support"), ("users", "usage"), ("accounts", "revenue"),
                                 ("voice_responses", "voice"))},  # fmt: skip
            "tracked": tracked,
            "series_compared": len(snap),
            "load_events_per_s": round(n_all / max(load_seconds, 1e-6), 1),
            "startup_empty_s": round(startup, 2),
            "startup_empty_ready_s": round(startup_ready, 2),
            "ready_after_kill_s": round(ready["t"] - t_kill, 2),
            "correct_after_kill_s": round(t_correct, 2),
            "rss_before_mib": round(rss0 / 2**20, 1),
            "rss_loaded_mib": round(rss1 / 2**20, 1),
            "rss_all_loaded_mib": round(prev["rss"] / 2**20, 1),
            "rss_recovered_mib": round(rss2 / 2**20, 1),
            "rss_bytes_per_entity": round((rss1 - rss0) / entities, 1),
            "rss_recovered_bytes_per_entity": round((rss2 - rss0) / (n_all + warm), 1),
            "redis_bytes_per_entity": round((mixed["redis"] - before["redis"]) / entities, 1) if redis_client else None,
            "redis_store_bytes_per_entity": (round((_table_bytes(mixed) - _table_bytes(before)) / entities, 1)
                                             if redis_client else None),  # fmt: skip
            "redis_tables": prev.get("tables"),
            "families": families,
            "metrics_after_recovery": scrape,
        }
        return result

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


@dataclass(frozen=True)
class Component:
    """One row of the profile's component table.

    A sample counts for the row when a frame on its stack contains one of ``markers`` (a
    substring of ``function (path)``, e.g. a qualified name ``"Ingest.ingest_one"`` or a module
    path ``"(stream_app/store/"``), and also:
    - ``within``: the sample counted for that (earlier) row; the row is part of it;
    - ``outside``: it counted for none of these (earlier) rows;
    - ``not_calling``: the first frame below the innermost marked frame is none of these (e.g. our
      agent loop awaiting Faust's stream is Faust's time, not our handler's).
    Rows overlap where they nest. Module-path markers keep a row meaningful when functions are
    renamed or moved within a module; keep a row per new piece rather than editing old ones away.
    """

    key: str
    label: str
    markers: tuple[str, ...]
    within: str | None = None
    outside: tuple[str, ...] = ()
    not_calling: tuple[str, ...] = ()


_FAUST_STREAM = ("(faust/streams.py", "(faust/agents/", "(faust/channels.py")

# Where a worker's time goes, by component (evaluated in this order; indentation = nesting).
PROFILE_COMPONENTS: tuple[Component, ...] = (
    Component("ingest", "ingest path, total: our handler per message or batch (stream_app/worker/ingest.py)",
              ("(stream_app/worker/ingest.py",), not_calling=_FAUST_STREAM),
    Component("decode", "  decode + validate (stream_app/events/, pydantic)", ("(stream_app/events/",), within="ingest"),
    Component("counters", "  pipeline counters (prometheus_client)",
              ("observe_consumed", "observe_valid", "(prometheus_client/"), within="ingest"),
    Component("processing", "  family processing (stream_app/worker/processing.py)",
              ("(stream_app/worker/processing.py",), within="ingest"),
    Component("engine", "    engine step (stream_app/engine/)", ("(stream_app/engine/",), within="processing"),
    Component("apply", "      apply event to entity state", ("apply (stream_app/engine/",), within="engine"),
    Component("index", "      contributions + index update",
              ("contributions (stream_app/engine/", "(stream_app/engine/index.py"), within="engine"),
    Component("expiry", "      entity expiry", ("_expire (stream_app/engine/",), within="engine"),
    Component("codec", "    state to / from its stored form",
              ("from_stored (", "to_stored (", "from_dict (stream_app/", "to_dict (stream_app/", "(msgspec/", "(msgpack/"),
              within="processing"),
    Component("table", "    Faust table access (a write sends a changelog record)",
              ("Table.__setitem__", "on_key_set", "ManagedUserDict.__setitem__", "(faust/tables/"), within="processing"),
    Component("signals", "    health signals out (sent, or queued for the checkpoint)",
              ("signal (stream_app/worker/", "signals (stream_app/worker/", "(stream_app/worker/signals", "Outbox."),
              within="processing"),
    Component("store_inline", "  state store inside the handler (stream_app/store/)", ("(stream_app/store/",),
              within="ingest"),
    Component("render", "/metrics rendering (web)",
              ("generate_latest", "(stream_app/worker/exposition.py", "(prometheus_client/exposition.py"),
              outside=("ingest",)),
    Component("health", "health stage (signals topic)", ("HealthProcessor.", "(stream_app/engine/health/"),
              outside=("ingest", "render"), not_calling=_FAUST_STREAM),
    Component("checkpoint", "checkpoint per interval: states to the store, signals out (stream_app/worker/checkpoint.py)",
              ("(stream_app/worker/checkpoint.py",), outside=("ingest", "render")),
    Component("assignment", "partitions assigned: load and rebuild (stream_app/worker/assignment.py, rebuilds)",
              ("(stream_app/worker/assignment.py", "rebuild_async (stream_app/", "rebuild_steps (stream_app/"),
              outside=("ingest", "render")),
    Component("store", "state store outside the handler: flush, load, checkpoint writes (stream_app/store/)",
              ("(stream_app/store/",), outside=("ingest", "render")),
    Component("faust", "Faust stream/agent/consumer machinery outside our handlers",
              (*_FAUST_STREAM, "(faust/transport/consumer.py", "(faust/transport/conductor.py", "(faust/events.py"),
              outside=("ingest", "health")),
    Component("producer", "aiokafka producer (changelogs, signals)", ("(aiokafka/producer/",)),
    Component("fetch", "consumer fetch (Faust consumer thread)",
              ("Fetcher.", "(aiokafka/consumer/fetcher.py", "AIOKafkaConsumerThread", "ConsumerThread")),
    Component("commit", "offset commit",
              ("Consumer.commit", "Consumer._commit", "maybe_wait_for_commit_to_finish",
               "(aiokafka/consumer/group_coordinator.py")),
    Component("sensors", "Faust sensors (per-message monitor)", ("(faust/sensors/",)),
)  # fmt: skip
_GENERIC = re.compile(r"\((asyncio|selectors|threading|runpy|<frozen|mode/worker|mode/services|mode/threads|stream_app/cli)")
# Not owners of a sample in the by-module table: the standard library and the process' entry points.
_STDLIB = frozenset(sys.stdlib_module_names)
_ENTRY = ("mode/worker.py", "mode/services.py", "mode/threads.py", "stream_app/cli.py", "faust/cli/", "click/")


def _components(frames: list[str]) -> set[str]:
    hit: set[str] = set()
    for c in PROFILE_COMPONENTS:
        if (c.within and c.within not in hit) or any(o in hit for o in c.outside):
            continue
        inner = max((i for i, f in enumerate(frames) if any(m in f for m in c.markers)), default=None)
        if inner is None:
            continue
        if c.not_calling:
            below = next((f for f in frames[inner + 1 :] if not _GENERIC.search(f)), "")
            if any(m in below for m in c.not_calling):
                continue
        hit.add(c.key)
    return hit


def _module(frame: str) -> str | None:
    """The module file of a frame that can own a sample (not stdlib, not an entry point)."""
    m = _FRAME.match(frame)
    file = m.group("file") if m else ""
    top = file.split("/", 1)[0].removesuffix(".py")
    if not file or file.startswith("<") or top in _STDLIB or file.startswith(_ENTRY):
        return None
    return file


def _package(module: str) -> str:
    parts = module.split("/")
    if parts[0] == "stream_app" and len(parts) > 2:
        return "/".join(parts[:2]) + "/"
    return parts[0].removesuffix(".py") + ("/" if len(parts) > 1 else "")


def summarize_profile(raw: str, events_per_s: float, top: int = 25) -> dict:
    """py-spy raw (collapsed) stacks -> components, and self / inclusive share per function, and
    an exclusive split by module and package.

    ``share`` = part of the sampled active thread-time; ``us_per_event`` = share x the run's
    wall time per event, i.e. the cost per event if the worker's one busy core were all there is.
    By module: each sample goes to the innermost frame that is neither the standard library nor
    an entry point (so asyncio time is charged to the module that scheduled it); samples idle in
    epoll to "idle", the rest to "(event loop, no library frame)". Function names may change;
    this split still adds up to 100 %.
    """
    self_t: Counter = Counter()
    incl: Counter = Counter()
    comp: Counter = Counter()
    by_module: Counter = Counter()
    total = idle = 0
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        n = int(n)
        frames = [_short(f) for f in stack.split(";")]
        total += n
        is_idle = any("EpollSelector.select" in f or "select (selectors" in f for f in frames[-2:])
        if is_idle:
            idle += n
        self_t[frames[-1]] += n
        for f in set(frames):
            if not _GENERIC.search(f):
                incl[f] += n
        for key in _components(frames):
            comp[key] += n
        owner = "idle (epoll)" if is_idle else next(
            (m for m in map(_module, reversed(frames)) if m is not None), "(event loop, no library frame)")
        by_module[owner] += n
    if not total:
        return {"samples": 0}
    us_per_event = 1e6 / events_per_s if events_per_s else float("nan")

    def row(f: str, v: int) -> dict:
        return {"function": f, "share": round(v / total, 4), "us_per_event": round(v / total * us_per_event, 2)}

    by_package: Counter = Counter()
    for module, v in by_module.items():
        by_package[module if module.startswith(("idle", "(")) else _package(module)] += v
    return {
        "samples": total,
        "idle_share": round(idle / total, 4),
        "components": [row(c.label, comp[c.key]) for c in PROFILE_COMPONENTS],
        "by_package": [row(p, v) for p, v in by_package.most_common()],
        "by_module": [row(m, v) for m, v in by_module.most_common(top)],
        "self": [row(f, v) for f, v in self_t.most_common(top)],
        "inclusive": [row(f, v) for f, v in incl.most_common(top)],
    }


def _short(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    file = m.group("file")
    for marker in ("site-packages/", f"{ROOT}/", "/work/main/", "lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
            if marker == "lib/python3":  # a stdlib path: drop the ".11/" left of the module
                file = file.split("/", 1)[-1]
            break
    return f"{m.group('func')} ({file})"


# --------------------------------------------------------------------------- run + report


def run(stack, opts: Options, workdir: Path, log: Callable[[str], None] = print) -> dict:
    """All measurements in one go; returns the result document (see benchmarks/README.md)."""
    bench = Bench(stack, opts, workdir, log)
    t_start = _now()
    # Other work on the machine skews every figure: keep the 1-minute load average per phase.
    load: dict[str, float] = {"start": round(os.getloadavg()[0], 2)}
    seconds: dict[str, float] = {}  # wall time of each phase (sequential runs)
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
                # The 4-team demo world: the settled state of the whole log, before any marker.
                results["metrics_demo_world"] = bench.metrics_cost(workers[0])
                log(f"  /metrics, demo world: {results['metrics_demo_world']}")
                rate = opts.freshness_rate or max(10.0, round(one["settled_events_per_s"] / 4, -1))
                results["freshness"] = bench.freshness(workers[0], topics, rate)
                log(f"  freshness: {results['freshness']}")
                results["freshness_search"] = bench.freshness_search(workers[0], topics, results["freshness"])
                log(f"  freshness search: highest rate {results['freshness_search']['highest_rate']}")
            finally:
                workers[0].stop()

        def two_workers() -> None:
            log("stream_app, 2 workers ...")
            results["ours_2"] = bench.ours_throughput(2, events, log_t)
            log(f"  2 workers: {_brief(results['ours_2'])}")

        def runner(module: str, label: str | None = None, env: dict[str, str] | None = None) -> Callable[[], None]:
            name = label or module

            def go() -> None:
                log(f"{name} ...")
                results[name] = bench.runner_throughput(module, events, log_t, label=name, env=env)
                log(f"  {name}: {results[name]}")

            go.__name__ = name
            return go

        floors = [runner("faust_floor", f"faust_floor_{mode}", {"BENCH_FLOOR_MODE": mode}) for mode in FLOOR_MODES]
        return [ceiling, one_worker, two_workers, runner("faust_baseline"), *floors, runner("quix_peer")]

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
                t = _now()
                phase()
                load[phase.__name__] = round(os.getloadavg()[0], 2)
                seconds[phase.__name__] = round(_now() - t, 1)
        if "throughput" in opts.phases:
            results["ratios"] = ratios(results)
            results["ratio_denominators"] = ratio_denominators(results)
    finally:
        bench.cleanup()
    results["load_average_1m"] = load
    results["phase_seconds"] = seconds
    results["duration_s"] = round(_now() - t_start, 1)
    results["goals"] = goals(results)
    return results


def _brief(r: dict) -> dict:
    return {k: v for k, v in r.items() if k != "profile"}


FLOOR_MODES = ("event", "take")  # benchmarks/faust_floor.py, one row each
FLOOR_ROWS = {
    "event": "Faust floor: no-op agent per event, no decode",
    "take": "Faust floor: no-op agent, stream.take(1000, within=0.05), no decode",
}


def faust_floor_reference(r: dict) -> str | None:
    """The faster of the Faust floor rows of this run (the denominator of ours_vs_faust_floor)."""
    rows = [f"faust_floor_{m}" for m in FLOOR_MODES if f"faust_floor_{m}" in r]
    return max(rows, key=lambda k: r[k]["events_per_s"]) if rows else None


def ratios(r: dict) -> dict:
    """Ratios of this run's rows (keys are stable: the lead and the docs read them)."""
    ours = r["ours_1"]["events_per_s"]

    def div(a, b):
        return round(a / b, 3) if b else None

    floor = faust_floor_reference(r)
    out = {
        "ours_vs_ceiling": div(ours, r["ceiling"]["drain"]["events_per_s"]),
        "ours_vs_ceiling_burst": div(ours, r["ceiling"]["burst"]["events_per_s"]),
        "ours_vs_faust_floor": div(ours, r[floor]["events_per_s"]) if floor else None,
        "ours_vs_faust_baseline": div(ours, r["faust_baseline"]["events_per_s"]),
        "ours_vs_quix_peer": div(ours, r["quix_peer"]["events_per_s"]),
        "two_workers_vs_one": div(r["ours_2"]["events_per_s"], ours),
    }
    for mode in FLOOR_MODES:
        if f"faust_floor_{mode}" in r:
            out[f"ours_vs_faust_floor_{mode}"] = div(ours, r[f"faust_floor_{mode}"]["events_per_s"])
    return out


def ratio_denominators(r: dict) -> dict:
    return {
        "ours_vs_ceiling": "ceiling.drain",
        "ours_vs_ceiling_burst": "ceiling.burst",
        "ours_vs_faust_floor": faust_floor_reference(r),
        "ours_vs_faust_baseline": "faust_baseline",
        "ours_vs_quix_peer": "quix_peer",
        "two_workers_vs_one": "ours_1 (numerator ours_2)",
    }


# --------------------------------------------------------------------------- goals (issue #11)

ONE_MILLION = 1_000_000


@dataclass(frozen=True)
class Goal:
    """One goal of issue #11: today's figure (the issue's), the goal, and how this run measures it.

    ``measure(results)`` returns (value, what was measured as text, met, moonshot met, note);
    met None = this run cannot say (not measured, or at another scale than the goal's)."""

    id: str
    figure: str
    today: str
    goal: str
    moonshot: str | None
    measure: Callable[[dict], tuple]


def _recovery(r: dict) -> dict | None:
    return r.get("recovery_redis") or r.get("recovery_memory")


def _scale_note(rc: dict) -> str | None:
    if rc["entities"] >= ONE_MILLION:
        return None
    return f"measured at {rc['entities']:,} entities; the goal is at 1M (--entities 1000000 --stores redis)"


def _goal_floor(r):
    v = r.get("ratios", {}).get("ours_vs_faust_floor")
    if v is None:
        return None, None, None, None, "throughput phase not run"
    ref = r["ratio_denominators"]["ours_vs_faust_floor"]
    text = f"{v:.3f} ({_f(r['ours_1']['events_per_s'])} / {_f(r[ref]['events_per_s'])} ev/s, {ref})"
    return v, text, v >= 0.6, None, None


def _goal_ratio(key: str, limit: float, moon: float | None = None):
    def measure(r):
        v = r.get("ratios", {}).get(key)
        if v is None:
            return None, None, None, None, "throughput phase not run"
        return v, f"{v:.3f}", v >= limit, (v >= moon if moon is not None else None), None

    return measure


def _goal_freshness(r):
    fr, fs = r.get("freshness"), r.get("freshness_search")
    if fr is None:
        return None, None, None, None, "throughput phase not run"
    text = f"p99 {fr['p99_s']:.2f} s at {fr['rate']:,.0f} ev/s (sent {fr['sent_rate']:,.0f}/s)"
    if fs is not None:
        hi = fs["highest_rate"]
        text += ("; p99 < 1 s at no ladder rate" if hi is None
                 else f"; p99 < 1 s up to {hi:,.0f} ev/s" + (" (ladder top)" if fs["at_ladder_top"] else ""))  # fmt: skip
    note = None if fr["rate"] == 2000 else f"fixed rate {fr['rate']:,.0f} ev/s; the goal is at 2,000"
    return fr["p99_s"], text, (fr["p99_s"] < 1.0 if note is None else None), None, note


def _goal_rss(r):
    rc = _recovery(r)
    if rc is None:
        return None, None, None, None, "recovery phase not run"
    v, note = rc["rss_bytes_per_entity"], _scale_note(rc)
    text = f"{_f(v, ' B')} ({rc['store']} store, {rc['entities']:,} entities)"
    return v, text, (v <= 1000 if note is None else None), (v <= 200 if note is None else None), note


def _goal_redis(r):
    rc = r.get("recovery_redis")
    if rc is None:
        return None, None, None, None, "recovery phase with the Redis store not run"
    v = rc["redis_bytes_per_entity"]
    text = (f"{_f(v, ' B')} (used_memory; the store's keys {_f(rc['redis_store_bytes_per_entity'], ' B')}; "
            f"{rc['entities']:,} entities)")  # fmt: skip
    return v, text, v <= 300, None, None


def _goal_recovery(r):
    rc = _recovery(r)
    if rc is None:
        return None, None, None, None, "recovery phase not run"
    v, note = max(rc["ready_after_kill_s"], rc["correct_after_kill_s"]), _scale_note(rc)
    text = (f"ready {rc['ready_after_kill_s']:.1f} s, correct {rc['correct_after_kill_s']:.1f} s "
            f"({rc['store']} store, {rc['entities']:,} entities)")  # fmt: skip
    return v, text, (v <= 10 if note is None else None), (v <= 5 if note is None else None), note


def _goal_start(r):
    rc = _recovery(r)
    if rc is None:
        return None, None, None, None, "recovery phase not run"
    v = rc["startup_empty_s"]
    text = f"{v:.1f} s to ready and warm-up consumed ({rc['startup_empty_ready_s']:.1f} s to /readyz 200)"
    return v, text, v <= 3, None, None


def _goal_series(r):
    m = r.get("metrics_demo_world")
    if m is None:
        return None, None, None, None, "throughput phase not run"
    missing = m["board_rule_names_missing"]
    text = (f"{m['series']:,} series, {m['bytes'] / 1e6:.2f} MB, render {m['render_p50_s'] * 1000:.0f} ms; "
            f"{m['board_rule_names'] - len(missing)} of {m['board_rule_names']} board/rule names present")  # fmt: skip
    return m["series"], text, m["series"] <= 5000 and not missing, None, None


def _goal_render(r):
    rc = _recovery(r)
    if rc is None:
        return None, None, None, None, "recovery phase not run"
    m, note = rc["metrics_after_recovery"], _scale_note(rc)
    v = m["render_p50_s"]
    text = f"{v * 1000:.0f} ms ({m['series']:,} series, {m['bytes'] / 1e6:.2f} MB; {rc['entities']:,} entities)"
    return v, text, (v <= 0.030 if note is None else None), None, note


GOALS: tuple[Goal, ...] = (
    Goal("faust_floor", "1 worker, every metric on, vs Faust no-op agent floor", "~0.17", ">= 0.6", None, _goal_floor),
    Goal("faust_baseline", "1 worker vs naive Faust baseline", "0.26", ">= 1.5", None,
         _goal_ratio("ours_vs_faust_baseline", 1.5)),
    Goal("two_workers", "2 workers / 1 worker", "1.78", ">= 1.8", None, _goal_ratio("two_workers_vs_one", 1.8)),
    Goal("freshness", "p99 produce -> visible on /metrics, 1 worker at 2,000 ev/s", "2.4 s at 450 ev/s",
         "< 1 s (and the highest rate that holds it)", None, _goal_freshness),
    Goal("rss_per_entity", "RSS per tracked entity at 1M entities", "4,316 B", "<= 1,000 B", "200 B", _goal_rss),
    Goal("redis_per_entity", "Redis bytes per entity", "~595 B", "<= 300 B", None, _goal_redis),
    Goal("recovery", "kill -9 -> ready and correct, 1M entities, 1 worker", "84.3 s", "<= 10 s", "5 s",
         _goal_recovery),
    Goal("empty_start", "empty-worker start", "5.4 s (6.6 s in the 1M run)", "<= 3 s", None, _goal_start),
    Goal("metrics_series", "/metrics of the 4-team demo world, every board panel and rule answered",
         "~14k series, 1.7 MB, 123 ms", "<= 5k series", None, _goal_series),
    Goal("metrics_render", "/metrics render at 1M entities", "123 ms (demo world)", "<= 30 ms", None, _goal_render),
    Goal("quix_peer", "moonshot: 1 worker vs Quix Streams peer", "0.115", ">= 1", None,
         _goal_ratio("ours_vs_quix_peer", 1.0)),
)  # fmt: skip


def goals(r: dict) -> list[dict]:
    out = []
    for g in GOALS:
        value, text, met, moon_met, note = g.measure(r)
        out.append({"id": g.id, "figure": g.figure, "today": g.today, "goal": g.goal, "moonshot": g.moonshot,
                    "value": value, "measured": text, "met": met, "moonshot_met": moon_met, "note": note})  # fmt: skip
    return out


def format_goals(gs: list[dict], only_measured: bool = False) -> str:
    """The goals as a markdown table (``only_measured``: leave out what this run did not measure)."""
    gs = [g for g in gs if g["measured"] is not None or not only_measured]
    if not gs:
        return ""
    def met(g: dict) -> str:
        if g["met"] is None:
            return "n/a"
        out = "met" if g["met"] else "missed"
        if g["moonshot"] and g["moonshot_met"] is not None:
            out += f" (moonshot {g['moonshot']}: {'met' if g['moonshot_met'] else 'missed'})"
        return out

    lines = ["| goal (issue #11) | today | goal | this run | met |", "| --- | --- | --- | --- | --- |"]
    for g in gs:
        goal = g["goal"] + (f" (moonshot {g['moonshot']})" if g["moonshot"] else "")
        measured = g["measured"] or "not measured"
        if g["note"]:
            measured += f" [{g['note']}]"
        lines.append(f"| {g['figure']} | {g['today']} | {goal} | {measured} | {met(g)} |")
    return "\n".join(lines) + "\n"


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
    if r.get("phase_seconds"):
        rows.append(("wall time of each phase",
                     ", ".join(f"{k} {v:.0f} s" for k, v in r["phase_seconds"].items())
                     + f"; whole run {r['duration_s']:.0f} s"))  # fmt: skip
    width = max(len(k) for k, _ in rows)
    lines = [f"| {'measure'.ljust(width)} | result |", f"| {'-' * width} | --- |"]
    lines += [f"| {k.ljust(width)} | {v} |" for k, v in rows]
    return "\n".join(lines) + "\n"


def _metrics_text(m: dict) -> str:
    missing = m["board_rule_names_missing"]
    groups = ", ".join(f"{g} {n:,}" for g, n in m["series_by_group"].items())
    return (f"{m['series']:,} series ({groups}), {m['bytes'] / 1e6:.2f} MB, render p50 {m['render_p50_s'] * 1000:,.1f} ms "
            f"(min {m['render_min_s'] * 1000:,.1f}, {m['scrapes']} scrapes); board/rule names present "
            f"{m['board_rule_names'] - len(missing)} / {m['board_rule_names']}"
            + (f", missing: {', '.join(missing)}" if missing else ""))  # fmt: skip


def _throughput_rows(r: dict) -> list[tuple[str, str]]:
    lg, c, one, two = r["log"], r["ceiling"], r["ours_1"], r["ours_2"]
    bl, qx, fr, ra = r["faust_baseline"], r["quix_peer"], r["freshness"], r["ratios"]
    fam = ", ".join(f"{f} {v['messages']:,} x {v['avg_bytes']:.0f} B" for f, v in lg["families"].items())
    floor_ref = r.get("ratio_denominators", {}).get("ours_vs_faust_floor")
    rows = [
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
    ]
    rows += [(FLOOR_ROWS[m], f"{_f(r[f'faust_floor_{m}']['events_per_s'])} ev/s")
             for m in FLOOR_MODES if f"faust_floor_{m}" in r]  # fmt: skip
    rows += [
        ("Quix Streams peer, 1 process (RocksDB, windows)", f"{_f(qx['events_per_s'])} ev/s"),
        ("ratio ours / ceiling (drain; end to end)",
         f"{_f(ra['ours_vs_ceiling'], digits=3)}; {_f(ra['ours_vs_ceiling_burst'], digits=3)}"),
        (f"ratio ours / Faust floor (the faster row: {floor_ref})", _f(ra.get("ours_vs_faust_floor"), digits=3)),
        ("ratio ours / Faust baseline", _f(ra["ours_vs_faust_baseline"], digits=3)),
        ("ratio ours / Quix peer", _f(ra["ours_vs_quix_peer"], digits=3)),
        ("ratio 2 workers / 1 worker", _f(ra["two_workers_vs_one"], digits=3)),
    ]
    if "metrics_demo_world" in r:
        rows.append(("/metrics, 4-team demo world (1 worker after the log)", _metrics_text(r["metrics_demo_world"])))
    rows += [
        (f"freshness at {fr['rate']:,.0f} ev/s, produce -> /metrics (p50 / p99 / max)",
         f"{_f(fr['p50_s'] * 1000)} / {_f(fr['p99_s'] * 1000)} / {_f(fr['max_s'] * 1000)} ms "
         f"({fr['markers']:,} events sent at {_f(fr['sent_rate'])}/s, scrape p50 {_f(fr['scrape_p50_s'] * 1000, digits=1)} ms)"),
        ("  of which produce -> consumed (delay histogram p50 / p99)",
         f"{_f(fr['arrival_p50_s'] * 1000)} / {_f(fr['arrival_p99_s'] * 1000)} ms"),
    ]  # fmt: skip
    fs = r.get("freshness_search")
    if fs is not None:
        hi = fs["highest_rate"]
        best = ("none of the rates tried" if hi is None
                else f"{hi:,.0f} ev/s" + (" (the top of the ladder: the limit is higher)" if fs["at_ladder_top"] else ""))
        steps = ", ".join(f"{st['rate']:,.0f}: {st['p99_s']:.2f} s" + (" (stopped early)" if st["stopped_early"] else "")
                          for st in fs["steps"])  # fmt: skip
        aborted = f"; aborted at {fs['aborted']}" if fs.get("aborted") else ""
        rows.append((f"freshness: highest steady rate with p99 < {fs['p99_goal_s']:g} s",
                     f"{best} (p99 per rate tried: {steps}; {fs['step_seconds']:g} s per ladder step{aborted})"))  # fmt: skip
    return rows


def _recovery_rows(r: dict) -> list[tuple[str, str]]:
    rows = []
    for store in ("redis", "memory"):
        rc = r.get(f"recovery_{store}")
        if rc is None:
            continue
        rows += [
            (f"recovery, {store} store, {rc['entities']:,} entities: kill -9 -> ready / correct",
             f"{_f(rc['ready_after_kill_s'], ' s', 1)} / {_f(rc['correct_after_kill_s'], ' s', 1)} "
             f"(empty worker starts in {_f(rc['startup_empty_s'], ' s', 1)}, ready in {_f(rc['startup_empty_ready_s'], ' s', 1)}; "
             f"{rc['series_compared']} series compared)"),
            (f"memory, {store} store: worker RSS per entity",
             f"{_f(rc['rss_bytes_per_entity'], ' B')} loaded, {_f(rc['rss_recovered_bytes_per_entity'], ' B')} after recovery "
             f"(RSS {rc['rss_before_mib']} -> {rc['rss_loaded_mib']} MiB)"
             + (f"; Redis {_f(rc['redis_bytes_per_entity'], ' B')} per entity (the store's keys "
                f"{_f(rc['redis_store_bytes_per_entity'], ' B')})" if rc["redis_bytes_per_entity"] is not None else "")),
            (f"entity load rate, {store} store (simple create events)", f"{_f(rc['load_events_per_s'])} ev/s"),
        ]  # fmt: skip
        for family, fm in rc.get("families", {}).items():
            text = f"RSS {_f(fm['rss_bytes_per_entity'], ' B')}"
            if "redis_bytes_per_entity" in fm:
                tables = " + ".join(f"{t} {_f(v)}" for t, v in fm["redis_table_bytes_per_entity"].items())
                text += (f"; Redis {_f(fm['redis_bytes_per_entity'], ' B')} used_memory, "
                         f"{_f(fm['redis_store_bytes_per_entity'], ' B')} in the store's keys ({tables or 'none'})")  # fmt: skip
            rows.append((f"  per {fm['what']} ({family}, {fm['entities']:,} x {fm['event_type']})", text))
        if "metrics_after_recovery" in rc:
            rows.append((f"/metrics after recovery, {store} store, {rc['entities']:,} entities",
                         _metrics_text(rc["metrics_after_recovery"])))  # fmt: skip
    return rows


def format_profile(p: dict | None) -> str:
    if not p or not p.get("samples"):
        return ""
    out = [f"py-spy, 1 worker during the throughput run: {p['samples']} active thread samples, "
           f"idle in epoll {p['idle_share']:.1%}", "",
           "| component (overlapping) | share | µs/event |", "| --- | --- | --- |"]  # fmt: skip
    out += [f"| {r['function']} | {r['share']:.1%} | {r['us_per_event']} |" for r in p.get("components", [])]
    if "by_package" in p:
        out += ["", "| exclusive, by package (innermost non-stdlib frame) | share | µs/event |", "| --- | --- | --- |"]
        out += [f"| `{r['function']}` | {r['share']:.1%} | {r['us_per_event']} |" for r in p["by_package"][:15]]
        out += ["", "| exclusive, by module | share | µs/event |", "| --- | --- | --- |"]
        out += [f"| `{r['function']}` | {r['share']:.1%} | {r['us_per_event']} |" for r in p["by_module"][:20]]
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
    goal_table = format_goals(results.get("goals", []), only_measured=name != "bench")
    block = (f"{begin}\nRun {results['started_at']}: `{command}`, {results['duration_s']:.0f} s.\n\n"
             f"{table}" + (f"\n{goal_table}" if goal_table else "") + (f"\n{profile}" if profile else "") + end)  # fmt: skip
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
    p.add_argument("--freshness-rate", type=float, default=d.freshness_rate,
                   help="events/s of the fixed-rate freshness run (default %(default)s; 0: a quarter of the "
                        "settled 1-worker throughput)")  # fmt: skip
    p.add_argument("--freshness-seconds", type=float, default=d.freshness_seconds, help="default %(default)s")
    p.add_argument("--freshness-ladder", default=",".join(f"{r:g}" for r in d.freshness_ladder),
                   help="rates (events/s) searched for the highest p99 < 1 s (default %(default)s)")
    p.add_argument("--freshness-ladder-seconds", type=float, default=d.freshness_ladder_seconds,
                   help="seconds per ladder step (default %(default)s)")  # fmt: skip
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
                   freshness_ladder=tuple(float(x) for x in args.freshness_ladder.split(",") if x.strip()),
                   freshness_ladder_seconds=args.freshness_ladder_seconds,
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
    print(format_goals(results["goals"]))
    print(format_profile(results.get("ours_1", {}).get("profile")))
    print(f"results: {path}")
    if args.doc:
        shutil.copyfile(path, args.out_dir / ("latest.json" if "log" in results else "latest-recovery.json"))
        write_doc(results, table, command.strip())
        print(f"table written to {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
