"""LocalStack: a Kafka broker and a Redis server in one work dir, started and stopped together."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from .install import KAFKA_VERSION
from .kafka_broker import KafkaBroker
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
    ) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="stream-app-stack-")).resolve()
        self.kafka = KafkaBroker(
            self.workdir / "kafka",
            port=kafka_port,
            controller_port=controller_port,
            version=kafka_version,
            heap=kafka_heap,
            extra_config=kafka_config,
        )
        self.redis = RedisServer(self.workdir / "redis", port=redis_port, persist=redis_persist)

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap

    @property
    def redis_url(self) -> str:
        return self.redis.redis_url

    def env(self) -> dict[str, str]:
        """Settings environment (``STREAM_APP_*``) pointing the app at this stack."""
        return {"STREAM_APP_KAFKA_BOOTSTRAP": self.bootstrap, "STREAM_APP_REDIS_URL": self.redis_url}

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
