"""LocalStack: Kafka and Redis in one work dir, started and stopped together: one broker and one
Redis server by default, or a replicated Kafka (``kafka_nodes=3``) and a Redis Cluster
(``redis_cluster=True``)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from .install import KAFKA_VERSION
from .kafka_broker import KafkaBroker
from .kafka_cluster import KafkaCluster
from .redis_cluster import LocalRedisCluster
from .redis_server import RedisServer


class LocalStack:
    """Kafka + Redis in one work dir: ``.bootstrap``, ``.redis_url``, ``.env()``.

    >>> with LocalStack() as stack:                      # doctest: +SKIP
    ...     stack.create_topics(["cs.tickets"], partitions=4)
    ...     print(stack.bootstrap, stack.redis_url)
    """

    def __init__(
        self,
        workdir: str | os.PathLike | None = None,
        *,
        kafka_port: int = 0,
        controller_port: int = 0,
        redis_port: int = 0,
        redis_persist: bool = True,
        kafka_version: str = KAFKA_VERSION,
        kafka_heap: str = "512m",
        kafka_config: Mapping[str, object] | None = None,
        kafka_nodes: int = 1,
        redis_cluster: bool = False,
    ) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="stream-app-stack-")).resolve()
        self.kafka: KafkaBroker | KafkaCluster
        self.redis: RedisServer | LocalRedisCluster
        if kafka_nodes > 1:  # free ports: a cluster's ports are its own
            self.kafka = KafkaCluster(
                self.workdir / "kafka", size=kafka_nodes, version=kafka_version, extra_config=kafka_config
            )
        else:
            self.kafka = KafkaBroker(
                self.workdir / "kafka",
                port=kafka_port,
                controller_port=controller_port,
                version=kafka_version,
                heap=kafka_heap,
                extra_config=kafka_config,
            )
        if redis_cluster:
            self.redis = LocalRedisCluster(self.workdir / "redis", persist=redis_persist)
        else:
            self.redis = RedisServer(self.workdir / "redis", port=redis_port, persist=redis_persist)

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap

    @property
    def redis_url(self) -> str:
        return self.redis.redis_url

    def env(self) -> dict[str, str]:
        """Settings environment (``STREAM_APP_*``) pointing the app at this stack."""
        env = {"STREAM_APP_KAFKA_BOOTSTRAP": self.bootstrap, "STREAM_APP_REDIS_URL": self.redis_url}
        for service in (self.kafka, self.redis):
            if isinstance(service, KafkaCluster | LocalRedisCluster):
                env.update(service.env())  # replication settings, the cluster client
        return env

    def start(self) -> "LocalStack":
        try:
            # Redis is up in milliseconds; start it while the JVM boots.
            self.kafka.launch()
            self.redis.start()
            self.kafka.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        # Kafka first: clients see the broker go before their state store.
        try:
            self.kafka.stop()
        finally:
            self.redis.stop()

    def close(self) -> None:
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def create_topics(self, topics: Iterable[str], **kw) -> list[str]:
        return self.kafka.create_topics(topics, **kw)

    def __enter__(self) -> "LocalStack":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()
