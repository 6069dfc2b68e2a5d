"""A replicated Kafka on loopback: ``size`` KRaft nodes, each broker and controller (combined
mode), one cluster id, production-like replication (factor 3, ``min.insync.replicas`` 2); who
leads which partition, and waits for leaders and in-sync replicas (the fault tests kill leaders)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from .errors import StackError
from .install import KAFKA_VERSION
from .kafka_admin import admin_call
from .kafka_broker import KafkaBroker, kafka_cluster_id
from .service import free_ports


def kafka_cluster_properties(size: int, voters: str) -> dict[str, object]:
    """server.properties every node of a ``size``-node cluster shares (beyond the single-node ones):
    the controller quorum, and replication 3 / min ISR 2 for every topic and internal topic, as in
    production (docs/operations.md)."""
    replication, min_isr = min(3, size), min(2, size)
    return {
        "controller.quorum.voters": voters,
        "default.replication.factor": replication,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": replication,
        "transaction.state.log.replication.factor": replication,
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": replication,
        "share.coordinator.state.topic.min.isr": min_isr,
        # Never elect a replica that is not in sync: acknowledged records would be lost.
        "unclean.leader.election.enable": "false",
        # A returning broker gets its preferred leaderships back within seconds (default 5 min):
        # the tests see that second leader move too.
        "leader.imbalance.check.interval.seconds": 10,
    }


@dataclass(frozen=True)
class PartitionView:
    leader: int  # node id; -1 while there is none
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


class KafkaCluster:
    """``size`` KRaft nodes (broker + controller each) on loopback ports, in one work dir.

    ``.bootstrap`` lists every node; ``create_topics`` defaults to replication 3. ``leader_of``
    names the node leading a partition; kill it (``node.kill()``), ``wait_new_leader`` returns
    once another replica leads, ``node.start()`` brings it back and ``wait_in_sync`` waits until
    it has caught up.
    """

    name = "kafka-cluster"

    def __init__(
        self,
        workdir: str | os.PathLike | None = None,
        *,
        size: int = 3,
        version: str = KAFKA_VERSION,
        heap: str = "384m",
        extra_config: Mapping[str, object] | None = None,
        start_timeout: float = 180.0,
    ) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="stream-app-kafka-cluster-")).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.size, self.version = size, version
        ports = free_ports(2 * size)
        voters = ",".join(f"{i + 1}@127.0.0.1:{ports[size + i]}" for i in range(size))
        config = {**kafka_cluster_properties(size, voters), **(extra_config or {})}
        cluster_id = kafka_cluster_id()
        self.nodes = [
            KafkaBroker(
                self.workdir / f"node-{i + 1}",
                port=ports[i],
                controller_port=ports[size + i],
                node_id=i + 1,
                version=version,
                heap=heap,
                extra_config=config,
                start_timeout=start_timeout,
                cluster_id=cluster_id,
            )
            for i in range(size)
        ]

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    @property
    def replication(self) -> int:
        return min(3, self.size)

    @property
    def running(self) -> bool:
        return all(n.running for n in self.nodes)

    def env(self) -> dict[str, str]:
        """Settings environment pointing the app at this cluster, its topics replicated like it."""
        return {
            "STREAM_APP_KAFKA_BOOTSTRAP": self.bootstrap,
            "STREAM_APP_TOPIC_REPLICATION": str(self.replication),
            "STREAM_APP_TOPIC_MIN_INSYNC_REPLICAS": str(min(2, self.size)),
        }

    def node(self, node_id: int) -> KafkaBroker:
        return next(n for n in self.nodes if n.node_id == node_id)

    # -- lifecycle ------------------------------------------------------------------
    def launch(self) -> None:
        """Start every node without waiting (see :meth:`wait_ready`)."""
        for node in self.nodes:
            node.launch()

    def wait_ready(self) -> None:
        for node in self.nodes:
            node.wait_ready()

    def start(self) -> KafkaCluster:
        try:
            # Each node waits for a quorum of controllers: start all, then wait for each.
            self.launch()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def close(self) -> None:
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> KafkaCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- topics ----------------------------------------------------------------------
    def _live(self) -> KafkaBroker:
        for node in self.nodes:
            if node.running:
                return node
        raise StackError("no Kafka node is running")

    def create_topics(
        self, topics: Iterable[str], *, partitions: int = 1, replication: int | None = None, **kw
    ) -> list[str]:
        """Create topics (replication 3 unless told) and wait until every partition has a leader."""
        return self._live().create_topics(
            topics, partitions=partitions, replication=replication or self.replication, **kw
        )

    def delete_topics(self, topics: Iterable[str], **kw) -> None:
        self._live().delete_topics(topics, **kw)

    def list_topics(self) -> dict[str, int]:
        return self._live().list_topics()

    def partitions(self, topics: Sequence[str], timeout: float = 10.0) -> dict[tuple[str, int], PartitionView]:
        """(topic, partition) -> leader, replicas and in-sync replicas, as the cluster says now."""

        async def describe(admin: AIOKafkaAdminClient) -> list:
            return await admin.describe_topics(list(topics))

        live = ",".join(n.bootstrap for n in self.nodes if n.running)
        out = {}
        for t in admin_call(live, describe, timeout):
            for p in t["partitions"]:
                leader = -1 if p["error_code"] not in (0, 9) else p["leader"]  # 9: a replica is offline
                out[(t["topic"], p["partition"])] = PartitionView(leader, tuple(p["replicas"]), tuple(p["isr"]))
        return out

    def leader_of(self, topic: str, partition: int) -> KafkaBroker:
        view = self.partitions([topic])[(topic, partition)]
        if view.leader < 0:
            raise StackError(f"{topic}[{partition}] has no leader now")
        return self.node(view.leader)

    def start_node(
        self, node: KafkaBroker, timeout: float | None = None, tick: Callable[[], object] | None = None
    ) -> float:
        """Start a stopped node and block until it answers (``node.start()``, with ``tick`` called
        while the JVM boots); returns the seconds it took."""
        t0 = time.monotonic()
        node.launch()
        limit = node.start_timeout if timeout is None else timeout
        while True:
            if not node.running or time.monotonic() - t0 > limit:
                node.wait_ready(0)  # raises StackError with the log's explanation
            try:
                if node._probe():
                    return time.monotonic() - t0
            except (OSError, ValueError, StackError):
                pass
            if tick is not None:
                tick()
            time.sleep(0.2)

    # -- waits ---------------------------------------------------------------------------
    def wait_new_leader(
        self, topics: Sequence[str], old: KafkaBroker, timeout: float = 60.0, tick: Callable[[], object] | None = None
    ) -> float:
        """Block until no partition of ``topics`` is led by ``old`` or has no leader; seconds taken."""

        def moved() -> bool:
            views = self.partitions(topics)
            return all(v.leader >= 0 and v.leader != old.node_id for v in views.values())

        return self._wait(moved, timeout, f"partitions of {list(topics)} still led by node {old.node_id}", tick)

    def wait_in_sync(
        self, topics: Sequence[str], timeout: float = 120.0, tick: Callable[[], object] | None = None
    ) -> float:
        """Block until every replica of every partition of ``topics`` is in sync; seconds taken."""

        def in_sync() -> bool:
            views = self.partitions(topics)
            return all(v.leader >= 0 and set(v.isr) == set(v.replicas) for v in views.values())

        return self._wait(in_sync, timeout, f"replicas of {list(topics)} not in sync", tick)

    def wait_preferred_leaders(
        self, topics: Sequence[str], timeout: float = 120.0, tick: Callable[[], object] | None = None
    ) -> float:
        """Block until every partition of ``topics`` is led by its preferred (first) replica, as
        the controller restores after a node returns; seconds taken."""

        def preferred() -> bool:
            views = self.partitions(topics)
            return all(v.replicas and v.leader == v.replicas[0] for v in views.values())

        return self._wait(preferred, timeout, f"partitions of {list(topics)} not led by their preferred replica", tick)

    @staticmethod
    def _wait(done: Callable[[], bool], timeout: float, why: str, tick: Callable[[], object] | None) -> float:
        t0 = time.monotonic()
        while True:
            try:
                if done():
                    return time.monotonic() - t0
            except StackError:
                pass  # the cluster is between leaders: ask again
            if time.monotonic() - t0 > timeout:
                raise StackError(f"Kafka cluster: {why} after {timeout:.0f}s")
            if tick is not None:
                tick()
            time.sleep(0.2)
