"""Shared fixtures.

Integration tests get the real local stack (Kafka + Redis processes, see
stream_app/tools/stack/ and docs/local-stack.md) through the session-scoped
``stack`` fixture: it starts on first request, so a run of unit tests alone
starts nothing and needs no server. If the stack cannot start, every test
that requested it errors with the service's log tail: never skipped.
"""

from __future__ import annotations

import itertools
import re
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping

import pytest

_STACK_FIXTURES = {"stack", "redis_client", "create_topics", "new_topic", "redis_cluster", "kafka_cluster"}


def pytest_collection_modifyitems(config, items) -> None:
    # A test that uses the stack is an integration test even if its author forgot the
    # marker, so `-m "not integration"` reliably runs server-free tests only.
    for item in items:
        if _STACK_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
    # Soak tests run for an hour: only when the marker expression names them
    # (`bash scripts/test.sh -m soak`), never in the default command or `-m integration`.
    if "soak" not in (config.getoption("markexpr") or ""):
        soak = [item for item in items if item.get_closest_marker("soak")]
        if soak:
            config.hook.pytest_deselected(items=soak)
            items[:] = [item for item in items if not item.get_closest_marker("soak")]


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Iterator["LocalStack"]:  # noqa: F821
    """A started ``stream_app.stack.LocalStack`` shared by the session.

    ``.bootstrap``, ``.redis_url``, ``.env()``, ``.kafka`` / ``.redis``
    (``restart()``, ``kill()``), ``.create_topics(...)``. Its work dir (configs,
    data, ``kafka/kafka.log``, ``redis/redis.log``) stays under pytest's basetemp
    for inspection after a failure. Tests share it: use unique topic names,
    consumer groups and Redis keys (see ``new_topic`` / ``redis_client``), and
    leave it running if you restart a service.
    """
    from stream_app.tools.stack import LocalStack

    local = LocalStack(tmp_path_factory.mktemp("stack"))
    local.start()  # StackError (with log tails) -> setup error, cached for the session
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture
def redis_client(stack):
    """Synchronous ``redis.Redis`` on the stack's db 0, flushed before each test."""
    import redis

    client = redis.Redis.from_url(stack.redis_url)
    client.flushdb()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def create_topics(stack) -> Callable[..., list[str]]:
    """``create_topics(names, partitions=1, config=None) -> names``: exact names, waits for leaders."""

    def create(names, *, partitions: int = 1, config: Mapping[str, object] | None = None) -> list[str]:
        if isinstance(names, str):
            names = [names]
        return stack.create_topics(names, partitions=partitions, config=config)

    return create


@pytest.fixture
def new_topic(request, stack) -> Callable[..., str]:
    """``new_topic(prefix="t", partitions=1, config=None) -> name``: a topic unique to this call."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:80]
    counter = itertools.count()

    def make(prefix: str = "t", *, partitions: int = 1, config: Mapping[str, object] | None = None) -> str:
        name = f"{prefix}.{base}.{next(counter)}.{uuid.uuid4().hex[:8]}"
        stack.create_topics([name], partitions=partitions, config=config)
        return name

    return make


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of Prometheus's promtool (Debian's `prometheus` package, installed by
    scripts/bootstrap.sh). Missing fails the test that needs it: never skipped."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: install Debian's `prometheus` package (scripts/bootstrap.sh does)")
    return path


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory) -> Iterator["LocalRedisCluster"]:  # noqa: F821
    """A started ``LocalRedisCluster`` (3 masters + 3 replicas on loopback) shared by the session.

    ``.redis_url`` (one node; cluster clients find the rest), ``.env()`` (with
    ``STREAM_APP_REDIS_CLUSTER=true``), ``.master_for(key)``, ``.wait_promoted(node)``,
    ``.wait_healthy()``, ``.nodes`` (each ``kill()``/``start()``). A test that kills a node
    starts it again and waits until the cluster is healthy. Errors (never skips) if it cannot start.
    """
    from stream_app.tools.stack import LocalRedisCluster

    cluster = LocalRedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory) -> Iterator["KafkaCluster"]:  # noqa: F821
    """A started 3-node ``KafkaCluster`` (KRaft, each node broker + controller; replication 3 and
    ``min.insync.replicas`` 2 by default) shared by the session. ``.bootstrap`` (every node),
    ``.env()``, ``.create_topics(...)`` (replication 3), ``.leader_of(topic, partition)``,
    ``.wait_new_leader(topics, node)``, ``.wait_in_sync(topics)``, ``.nodes`` (each
    ``kill()``/``start()``). A test that kills a node starts it again. Three JVMs: only the
    replicated-Kafka scenarios ask for it. Errors (never skips) if it cannot start.
    """
    from stream_app.tools.stack import KafkaCluster

    cluster = KafkaCluster(tmp_path_factory.mktemp("kafka-cluster"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
