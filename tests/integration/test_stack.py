"""The local stack itself: a real Kafka broker and Redis, their restarts, and the
helpers' failure reporting. Uses aiokafka and redis-py as the app does."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from stream_app.tools.stack import (
    KafkaBroker,
    RedisServer,
    StackError,
    kafka_metadata,
    kafka_server_properties,
)
from tests.support.paths import ROOT

pytestmark = pytest.mark.integration


async def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()


async def _consume(
    bootstrap: str, topic: str, n: int, *, group: str | None = None, commit: bool = False, timeout: float = 30.0
) -> list[tuple[bytes, bytes]]:
    """Read exactly ``n`` records (fails on timeout); with ``commit``, commit what was read."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    out: list[tuple[bytes, bytes]] = []
    try:
        async with asyncio.timeout(timeout):
            while len(out) < n:
                batch = await consumer.getmany(timeout_ms=500, max_records=n - len(out))
                for records in batch.values():
                    out.extend((r.key, r.value) for r in records)
        if commit:
            await consumer.commit()
    finally:
        await consumer.stop()
    return out


def _records(n: int, tag: str) -> list[tuple[bytes, bytes]]:
    return [(f"k{i % 3}".encode(), f"{tag}-{i}-{uuid.uuid4().hex}".encode()) for i in range(n)]


def test_produce_and_consume_through_real_broker(stack, new_topic):
    topic = new_topic("roundtrip")
    sent = _records(20, "rt")
    asyncio.run(_produce(stack.bootstrap, topic, sent))
    got = asyncio.run(_consume(stack.bootstrap, topic, len(sent)))
    # Single partition: order preserved end to end.
    assert got == sent


def test_topics_are_created_with_requested_partitions(stack, new_topic):
    topic = new_topic("parts", partitions=4)
    assert stack.kafka.list_topics()[topic] == 4
    md = kafka_metadata(stack.bootstrap, [topic])
    assert sorted(md["topics"][topic]["partitions"]) == [0, 1, 2, 3]
    assert all(leader >= 0 for leader in md["topics"][topic]["partitions"].values())


def test_auto_topic_creation_is_disabled(stack):
    missing = f"never-created.{uuid.uuid4().hex}"

    async def produce_to_missing() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, request_timeout_ms=3000)
        await producer.start()
        try:
            await producer.send_and_wait(missing, b"x")
        finally:
            await producer.stop()

    with pytest.raises(Exception):
        asyncio.run(asyncio.wait_for(produce_to_missing(), 20))
    assert missing not in stack.kafka.list_topics()


def test_redis_set_get(redis_client):
    redis_client.set("stack:probe", "value-1")
    assert redis_client.get("stack:probe") == b"value-1"
    assert redis_client.dbsize() == 1  # flushed before the test


def test_redis_restart_keeps_port_and_data(stack, redis_client):
    port = stack.redis.port
    key, value = f"stack:{uuid.uuid4().hex}", uuid.uuid4().hex
    redis_client.set(key, value)
    old_pid = stack.redis.pid
    stack.redis.restart()
    assert stack.redis.pid != old_pid
    assert stack.redis.port == port
    # The same client reconnects to the restarted server; the AOF kept the key.
    assert redis_client.get(key) == value.encode()
    redis_client.set(key, "after")
    assert redis_client.get(key) == b"after"


def test_kafka_restart_keeps_messages_and_committed_offsets(stack, new_topic):
    topic = new_topic("restart")
    group = f"g-{uuid.uuid4().hex}"
    first, second = _records(10, "before"), _records(5, "before2")
    asyncio.run(_produce(stack.bootstrap, topic, first + second))
    # The group reads and commits the first batch only.
    assert asyncio.run(_consume(stack.bootstrap, topic, len(first), group=group, commit=True)) == first

    port, old_pid = stack.kafka.port, stack.kafka.pid
    stack.kafka.restart()
    assert stack.kafka.pid != old_pid
    assert stack.bootstrap == f"127.0.0.1:{port}"

    # Data and the group's committed offset survived: the group resumes at `second`.
    assert asyncio.run(_consume(stack.bootstrap, topic, len(second), group=group, commit=True)) == second
    # The broker takes writes after the restart, and a fresh reader sees everything.
    third = _records(3, "after")
    asyncio.run(_produce(stack.bootstrap, topic, third))
    assert asyncio.run(_consume(stack.bootstrap, topic, len(first + second + third))) == first + second + third
    assert asyncio.run(_consume(stack.bootstrap, topic, len(third), group=group)) == third


def test_kafka_hard_kill_then_restart_recovers(stack, new_topic):
    topic = new_topic("crash", partitions=2)
    sent = _records(8, "crash")
    asyncio.run(_produce(stack.bootstrap, topic, sent))  # acks=all: on the log before the kill
    stack.kafka.restart(hard=True)
    got = asyncio.run(_consume(stack.bootstrap, topic, len(sent)))
    assert sorted(got) == sorted(sent)

    async def end_offsets() -> dict[int, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap)
        await consumer.start()
        try:
            ends = await consumer.end_offsets([TopicPartition(topic, p) for p in (0, 1)])
            return {tp.partition: off for tp, off in ends.items()}
        finally:
            await consumer.stop()

    assert sum(asyncio.run(end_offsets()).values()) == len(sent)


# --- failure reporting and installation (own processes, not the shared stack) ---


def test_kafka_start_failure_reports_log_tail(tmp_path):
    broker = KafkaBroker(tmp_path / "bad", extra_config={"num.io.threads": "not-a-number"}, start_timeout=60)
    with pytest.raises(StackError) as info:
        broker.start()
    message = str(info.value)
    assert "num.io.threads" in message  # Kafka's own complaint, taken from the log file
    assert str(broker.log_path) in message
    assert not broker.running


def test_redis_on_a_taken_port_fails_instead_of_trusting_the_other_server(stack, tmp_path):
    # The stack's Redis answers PING on that port; the new server must still be reported failed.
    clash = RedisServer(tmp_path / "r", port=stack.redis.port, start_timeout=10)
    with pytest.raises(StackError) as info:
        clash.start()
    assert "exited with code" in str(info.value)
    assert "Address already in use" in str(info.value)  # redis-server's own log line
    assert not clash.running


def test_kafka_on_a_taken_port_fails_instead_of_trusting_the_other_broker(stack, tmp_path):
    clash = KafkaBroker(tmp_path / "k", port=stack.kafka.port, start_timeout=60)
    with pytest.raises(StackError):
        clash.start()
    assert not clash.running


def test_server_properties_single_node_defaults(tmp_path):
    text = kafka_server_properties(port=1111, controller_port=2222, data_dir=tmp_path)
    props = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert props["auto.create.topics.enable"] == "false"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:2222"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:1111"
    assert props["log.dirs"] == str(tmp_path)


def test_concurrent_jar_fetches_share_one_cache(tmp_path):
    """Two processes racing on an empty cache both succeed and leave one complete libs dir."""
    env = {**os.environ, "STREAM_APP_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "stream_app.stack", "ensure", "-q", "--packages"]
    procs = [
        subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    version_dirs = [d for d in (tmp_path / "cache").glob("kafka-*") if d.is_dir()]
    assert len(version_dirs) == 1
    libs = version_dirs[0] / "libs"
    listed = (libs / ".complete").read_text().split()
    assert listed and sorted(p.name for p in libs.glob("*.jar")) == listed
    assert not list(version_dirs[0].glob("libs.tmp-*"))  # no staging leftovers


def test_stack_up_command_serves_until_interrupted(tmp_path):
    """`python -m stream_app.stack up` (what `stream-app stack up` runs): prints exports,
    serves real Kafka and Redis, creates the app's topics, and stops both on Ctrl-C."""
    import re
    import signal

    import redis

    env = {**os.environ, "STREAM_APP_TOPIC_PARTITIONS": "3", "STREAM_APP_TOPIC_TICKETS": "up.tickets"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream_app.stack", "up", "--random-ports", "--workdir", str(tmp_path / "w")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Ctrl-C"):
                break
        exports = dict(re.findall(r"^export (\w+)=(\S+)$", "".join(lines), re.M))
        assert set(exports) == {"STREAM_APP_KAFKA_BOOTSTRAP", "STREAM_APP_REDIS_URL"}, lines
        bootstrap, redis_url = exports["STREAM_APP_KAFKA_BOOTSTRAP"], exports["STREAM_APP_REDIS_URL"]
        topics = kafka_metadata(bootstrap, None)["topics"]
        assert len(topics["up.tickets"]["partitions"]) == 3
        client = redis.Redis.from_url(redis_url)
        assert client.ping()
        client.close()
    finally:
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, "".join(lines) + rest
    # Both servers are gone: nothing answers on their ports any more.
    for port in (int(bootstrap.rpartition(":")[2]), int(redis_url.rsplit(":", 1)[1].split("/")[0])):
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
