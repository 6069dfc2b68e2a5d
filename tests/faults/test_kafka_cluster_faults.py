"""Fault injection on a replicated Kafka (3 KRaft nodes, topics with replication 3 and
min.insync.replicas 2, tests/conftest.py ``kafka_cluster``): the leader of the busiest partition
is killed under traffic (another replica takes over; producers with acks=all lose nothing), then
restarted (it catches up and gets its leaderships back). Same harness and verdict as
test_faults.py; docs/reliability.md explains the fault.
"""

from __future__ import annotations

import asyncio

import pytest

from .harness import FaultRun, make_event_log
from .services import Services

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def event_log():
    return make_event_log()


@pytest.fixture
def kafka_scenario(stack, kafka_cluster, event_log, tmp_path):
    runs: list[FaultRun] = []

    def make(name: str, **settings) -> FaultRun:
        env = kafka_cluster.env()
        settings = {"topic_replication": env["STREAM_APP_TOPIC_REPLICATION"],
                    "topic_min_insync_replicas": env["STREAM_APP_TOPIC_MIN_INSYNC_REPLICAS"], **settings}  # fmt: skip
        run = FaultRun(Services(kafka_cluster, stack.redis_url), event_log, tmp_path, name, settings)
        runs.append(run)
        return run

    yield make
    for run in runs:
        run.close()
    for node in kafka_cluster.nodes:  # shared by the session: leave every node up
        if not node.running:
            node.start()


def _controller(bootstrap: str) -> int:
    from aiokafka.admin import AIOKafkaAdminClient

    async def ask() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        await admin.start()
        try:
            return (await admin.describe_cluster())["controller_id"]
        finally:
            await admin.close()

    return asyncio.run(ask())


def _min_isr(bootstrap: str, topics: list[str]) -> dict[str, tuple[str, bool]]:
    """min.insync.replicas of each topic as the brokers apply it, and whether the topic sets it."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    async def ask() -> dict[str, tuple[str, bool]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        await admin.start()
        try:
            resources = [ConfigResource(ConfigResourceType.TOPIC, t, {"min.insync.replicas": None}) for t in topics]
            out = {}
            for response in await admin.describe_configs(resources):
                for _, _, _, name, entries in response.resources:
                    # (name, value, read only, source, ...); source 1: set on the topic itself
                    out[name] = next((value, source == 1) for key, value, _, source, *_ in entries
                                     if key == "min.insync.replicas")  # fmt: skip
            return out
        finally:
            await admin.close()

    return asyncio.run(ask())


def test_kafka_partition_leader_killed_under_traffic_and_restarted(kafka_scenario, kafka_cluster):
    run = kafka_scenario("kafka-cluster", worker_instance_id="fault-kc-w0")
    run.start(run.worker())
    run.feed()
    run.at_fraction(0.35)
    topics = [*run.topics.values(), run.signals_topic, run.env["STREAM_APP_TOPIC_DEADLETTER"]]
    views = kafka_cluster.partitions(topics)
    assert all(len(v.replicas) == 3 for v in views.values()), "every topic of the app has 3 replicas"
    # The dead-letter and signals topics are the worker's own (STREAM_APP_TOPIC_*REPLICA* settings).
    created = [run.signals_topic, run.env["STREAM_APP_TOPIC_DEADLETTER"]]
    assert _min_isr(kafka_cluster.bootstrap, created) == dict.fromkeys(created, ("2", True))
    ends = run.ends()
    busiest = max(ends, key=ends.get)
    victim = kafka_cluster.leader_of(*busiest)
    led = sum(v.leader == victim.node_id for v in kafka_cluster.partitions(topics).values())
    role = " (the active controller)" if _controller(kafka_cluster.bootstrap) == victim.node_id else ""
    rec = run.fault(f"kill -9 of node {victim.node_id}{role}, leader of {busiest[0]}[{busiest[1]}] "
                    f"and {led - 1} more partitions")  # fmt: skip
    victim.kill()
    moved = kafka_cluster.wait_new_leader(topics, victim, tick=run.observe)
    rec.fault += f"; new leaders after {moved:.1f}s"
    run.settle()
    run.at_fraction(0.6)
    back = run.fault(f"node {victim.node_id} restarted (catches up, takes its leaderships back)")
    started = kafka_cluster.start_node(victim, tick=run.observe)
    synced = kafka_cluster.wait_in_sync(topics, tick=run.observe)
    preferred = kafka_cluster.wait_preferred_leaders(topics, tick=run.observe)
    back.fault += (f"; answers after {started:.1f}s, in sync {started + synced:.1f}s, "
                   f"leads again {started + synced + preferred:.1f}s")  # fmt: skip
    run.finish()
    run.verdict()
