"""redis:// table store against real Kafka + Redis, with real Faust worker processes.

Each test writes a tiny Faust app (a Table on the redis store counting events per
key, deduplicated by event id as our processors do) into its tmp dir, runs it as
``python store_worker.py worker``, produces events, kills/stops/restarts it and
compares Redis and the recovered table with a reference computed from the events.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import redis

from stream_app.store.redis_flush import FLUSH_FENCED, FLUSH_OK, FLUSH_SCRIPT, FLUSH_WIPED, RedisKeys

pytestmark = pytest.mark.integration

PARTITIONS = 3
TABLE = "counts"

WORKER_SOURCE = '''
import os

import faust

from stream_app.store import register

register()

E = os.environ
PARTITIONS = int(E["RS_PARTITIONS"])
app = faust.App(
    E["RS_APP_ID"],
    broker="kafka://" + E["RS_BOOTSTRAP"],
    table_standby_replicas=0,
    processing_guarantee="at_least_once",
    topic_partitions=PARTITIONS,
    web_enabled=False,
    broker_session_timeout=10.0,
    broker_heartbeat_interval=1.0,
    broker_commit_interval=1.0,
    consumer_auto_offset_reset="earliest",
)
source = app.topic(E["RS_TOPIC"], key_type=bytes, value_serializer="json", partitions=PARTITIONS)
counts = app.Table("counts", default=dict, store=E["RS_STORE_URL"], partitions=PARTITIONS)


@app.agent(source)
async def process(stream):
    async for event in stream.events():
        body = event.value
        if body.get("control") == "flush":  # test hook: flush now (flush_interval is long)
            await counts.data.flush(reason="control")
            continue
        key = event.key.decode()
        state = counts[key]
        ids = state.get("ids", [])
        if body["id"] in ids:  # redelivered after a crash: already counted
            continue
        counts[key] = {"ids": ids + [body["id"]], "n": len(ids) + 1}


if __name__ == "__main__":
    app.main()
'''

REPLAY_RE = re.compile(r"RedisStore\[counts\]: recovery applied (\d+) changelog records per partition (\{[^}]*\})")


# -- helpers ---------------------------------------------------------------------------


class Worker:
    def __init__(self, script: Path, workdir: Path, env: dict[str, str], name: str) -> None:
        self.script = script
        self.workdir = workdir / name  # own data dir per worker
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> "Worker":
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(self.script), "worker", "-l", "info",
                 "--web-host", "127.0.0.1", "--web-port", str(free_port())],
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(lambda: "[^Worker]: Ready" in self.log() or self.proc.poll() is not None, timeout, self.log)
        assert self.proc.poll() is None, f"worker exited:\n{self.log()[-4000:]}"
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self, timeout: float = 60.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def replay(self) -> tuple[int, dict[int, int]]:
        found = REPLAY_RE.findall(self.log())
        assert found, f"no recovery line in worker log:\n{self.log()[-4000:]}"
        total, per = found[-1]
        return int(total), ast.literal_eval(per)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout: float, describe=lambda: "", interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s\n{str(describe())[-4000:]}")


def produce(bootstrap: str, topic: str, messages: list[tuple[str, dict]]) -> None:
    from aiokafka import AIOKafkaProducer

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for key, body in messages:
                await producer.send(topic, key=key.encode(), value=json.dumps(body).encode())
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(run())


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def run() -> dict[int, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            ends = await consumer.end_offsets(tps)
            return {tp.partition: off for tp, off in ends.items()}
        finally:
            await consumer.stop()

    return asyncio.run(run())


def events(start: int, n: int, keys: int = 9) -> list[tuple[str, dict]]:
    return [(f"acct-{i % keys}", {"id": f"ev-{i}"}) for i in range(start, start + n)]


def reference(all_events: list[tuple[str, dict]]) -> dict[str, int]:
    seen: dict[str, set] = {}
    for key, body in all_events:
        seen.setdefault(key, set()).add(body["id"])
    return {k: len(v) for k, v in seen.items()}


def redis_table(client: redis.Redis, keys: RedisKeys) -> tuple[dict[str, int], dict[int, int]]:
    """Table contents (key -> count, checked against its id list) and offsets, as stored in Redis."""
    table: dict[str, int] = {}
    for p in range(PARTITIONS):
        for k, v in client.hgetall(keys.data(p)).items():
            key, value = json.loads(k), json.loads(v)
            assert key not in table, f"{key} stored in two partitions"
            assert value["n"] == len(set(value["ids"])), value
            table[key] = value["n"]
    offsets = {int(p): int(o) for p, o in client.hgetall(keys.offsets).items()}
    return table, offsets


@pytest.fixture
def harness(stack, new_topic, redis_client, tmp_path):
    """A fresh app id, source topic and Redis prefix per test; workers are always reaped."""
    app_id = f"rs-{uuid.uuid4().hex[:10]}"
    topic = new_topic("rs", partitions=PARTITIONS)
    (tmp_path / "store_worker.py").write_text(WORKER_SOURCE)
    workers: list[Worker] = []

    class H:
        keys = RedisKeys(app_id, TABLE)
        changelog = f"{app_id}-{TABLE}-changelog"

        def __init__(self) -> None:
            self.app_id, self.topic, self.client = app_id, topic, redis_client

        def worker(self, flush_interval: float, **options) -> Worker:
            query = "".join(f"&{k}={v}" for k, v in options.items())
            url = f"{stack.redis_url}?prefix={app_id}&flush_interval={flush_interval}{query}"
            env = {
                "RS_APP_ID": app_id,
                "RS_BOOTSTRAP": stack.bootstrap,
                "RS_TOPIC": topic,
                "RS_PARTITIONS": str(PARTITIONS),
                "RS_STORE_URL": url,
            }
            w = Worker(tmp_path / "store_worker.py", tmp_path, env, f"worker{len(workers) + 1}")
            workers.append(w)
            return w

        def produce(self, msgs) -> None:
            produce(stack.bootstrap, topic, msgs)

        def changelog_ends(self) -> dict[int, int]:
            return end_offsets(stack.bootstrap, self.changelog)

        def table(self):
            return redis_table(redis_client, self.keys)

        def flush_until(self, expected: dict[str, int], timeout: float = 60.0) -> None:
            """Ask the worker to flush (control event) until Redis holds ``expected``."""
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                produce(stack.bootstrap, topic, [("control", {"control": "flush"})])
                try:
                    wait_until(lambda: self.table()[0] == expected, 3.0)
                    return
                except AssertionError:
                    continue
            raise AssertionError(f"redis never held the expected table: {self.table()[0]} != {expected}")

    yield H()
    for w in workers:
        if w.proc is not None and w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait(30)


# -- tests -------------------------------------------------------------------------------


def test_kill9_restart_replays_only_the_changelog_tail(harness):
    h = harness
    sent = events(0, 90)
    h.produce(sent)
    w1 = h.worker(flush_interval=3600).start()  # flushes only when told to
    h.flush_until(reference(sent))

    table1, offsets1 = h.table()
    ends1 = h.changelog_ends()
    assert table1 == reference(sent)
    # Redis holds a (data, offset) pair that covers the whole changelog so far.
    assert offsets1 == {p: end - 1 for p, end in ends1.items() if end > 0}

    more = events(90, 60)
    h.produce(more)
    sent += more
    wait_until(lambda: sum(h.changelog_ends().values()) == len(sent), 60, w1.log)
    w1.kill9()
    ends2 = h.changelog_ends()
    assert h.table() == (table1, offsets1)  # the tail never reached Redis

    w2 = h.worker(flush_interval=3600).start()
    wait_until(lambda: h.table()[0] == reference(sent), 60, w2.log)  # flushed after recovery
    replayed_total, replayed = w2.replay()
    tail = {p: ends2[p] - 1 - offsets1.get(p, -1) for p in range(PARTITIONS)}
    print(
        f"\n[kill -9] changelog records={sum(ends2.values())} per partition={ends2}; "
        f"redis offsets before restart={offsets1}; expected tail={tail}; "
        f"replayed={replayed_total} per partition={replayed}"
    )
    assert replayed == tail
    assert replayed_total == len(more) < sum(ends2.values())
    assert h.table()[1] == {p: end - 1 for p, end in ends2.items() if end > 0}

    # It keeps processing on top of the recovered state (events after the restart).
    last = events(150, 30)
    h.produce(last)
    sent += last
    h.flush_until(reference(sent))
    assert w2.terminate() == 0


def test_graceful_stop_flushes_and_wiped_redis_means_full_replay(harness):
    h = harness
    sent = events(0, 80)
    h.produce(sent)
    w1 = h.worker(flush_interval=0.5).start()
    wait_until(lambda: h.table()[0] == reference(sent), 60, w1.log)  # timer flush

    more = events(80, 40)
    h.produce(more)
    sent += more
    wait_until(lambda: sum(h.changelog_ends().values()) == len(sent), 60, w1.log)
    assert w1.terminate() == 0
    ends = h.changelog_ends()
    table, offsets = h.table()
    assert table == reference(sent)  # nothing lost on a clean stop
    assert offsets == {p: end - 1 for p, end in ends.items() if end > 0}

    # Redis loses everything while the worker is down: the full changelog is replayed.
    wiped = list(h.client.scan_iter(match=h.keys.pattern))
    assert wiped and h.client.delete(*wiped) == len(wiped)
    # Small write calls: the full rewrite spans several script calls per partition.
    w2 = h.worker(flush_interval=0.5, max_fields_per_call=2).start()
    wait_until(lambda: h.table()[0] == reference(sent), 60, w2.log)
    replayed_total, replayed = w2.replay()
    print(
        f"\n[wiped redis] changelog records={sum(ends.values())} per partition={ends}; "
        f"replayed={replayed_total} per partition={replayed}"
    )
    assert replayed == {p: ends[p] for p in range(PARTITIONS)}
    assert replayed_total == len(sent)

    # Redis wiped under a running worker: the next flush notices and rewrites everything.
    wiped = list(h.client.scan_iter(match=h.keys.pattern))
    h.client.delete(*wiped)
    last = events(120, 9)  # one new event per key
    h.produce(last)
    sent += last
    wait_until(lambda: h.table()[0] == reference(sent), 60, w2.log)
    assert "missing in redis; full rewrite" in w2.log()
    assert w2.terminate() == 0


def test_flush_script_fences_other_owners_and_detects_wipes(redis_client):
    keys = RedisKeys(f"rs-{uuid.uuid4().hex[:8]}", "t")
    script = redis_client.register_script(FLUSH_SCRIPT)
    k = [keys.data(0), keys.offsets, keys.owners]

    def call(token, mode, offset, sets=(), dels=()):
        args = ["0", token, mode, "" if offset is None else str(offset), str(len(sets))]
        for kk, vv in sets:
            args += [kk, vv]
        return int(script(keys=k, args=args + list(dels)))

    redis_client.hset(keys.data(0), "stale", "x")
    assert call("A", "f", 5, [("a", "1")]) == FLUSH_OK  # full rewrite drops stale fields
    assert redis_client.hgetall(keys.data(0)) == {b"a": b"1"}
    assert redis_client.hget(keys.offsets, "0") == b"5"

    redis_client.hset(keys.owners, "0", "B")  # another worker claimed the partition
    assert call("A", "n", 9, [("a", "2")], ["x"]) == FLUSH_FENCED
    assert redis_client.hget(keys.data(0), "a") == b"1" and redis_client.hget(keys.offsets, "0") == b"5"

    assert call("B", "n", 7, [("b", "1")], ["a"]) == FLUSH_OK
    assert redis_client.hgetall(keys.data(0)) == {b"b": b"1"}

    redis_client.delete(keys.owners)  # wiped
    assert call("B", "n", 8, [("c", "1")]) == FLUSH_WIPED
    assert redis_client.hget(keys.data(0), "c") is None
    assert Counter(redis_client.hgetall(keys.offsets).values()) == Counter({b"7": 1})

    # 'c': the claim a load could not make (Redis was unreachable) takes over from any owner.
    redis_client.hset(keys.owners, "0", "B")
    assert call("C", "c", 11, [("d", "1")]) == FLUSH_OK
    assert redis_client.hgetall(keys.data(0)) == {b"d": b"1"}
    assert redis_client.hget(keys.owners, "0") == b"C" and redis_client.hget(keys.offsets, "0") == b"11"
    assert call("B", "n", 12, [("e", "1")]) == FLUSH_FENCED


LOADED_RE = re.compile(r"RedisStore\[counts\]: loaded partition (\d+): (\d+) keys, persisted offset (\S+)")


def test_partitions_move_between_two_workers_without_losing_counts(harness):
    h = harness
    sent = events(0, 60)
    h.produce(sent)
    a = h.worker(flush_interval=0.5).start()
    wait_until(lambda: h.table()[0] == reference(sent), 60, a.log)

    b = h.worker(flush_interval=0.5).start()  # rebalance: A flushes on revoke, B loads from Redis
    moved = [(int(p), int(n), o) for p, n, o in LOADED_RE.findall(b.log())]
    print(f"\n[rebalance] worker B loaded (partition, keys, offset): {moved}")
    assert moved and all(o != "None" for _, _, o in moved)
    assert sum(n for _, n, _ in moved) > 0

    more = events(60, 45)
    h.produce(more)
    sent += more
    wait_until(lambda: h.table()[0] == reference(sent), 60, lambda: a.log()[-3000:] + b.log()[-3000:])

    assert b.terminate() == 0  # A takes everything back, loading B's flushed partitions
    last = events(105, 27)
    h.produce(last)
    sent += last
    wait_until(lambda: h.table()[0] == reference(sent), 90, a.log)
    ends = h.changelog_ends()
    wait_until(lambda: h.table()[1] == {p: e - 1 for p, e in ends.items() if e > 0}, 30, a.log)
    assert a.terminate() == 0
