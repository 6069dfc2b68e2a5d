"""Declares the project's Kafka topics before any worker or producer uses them.

Brokers should run with auto topic creation off: an auto-created topic gets the
broker's default partition count, not STREAM_APP_TOPIC_PARTITIONS. The worker
declares no topic itself (Faust's topic_allow_declare is off).
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError

from ..config import Settings
from .security import kafka_auth_failure, kafka_client_kwargs

log = logging.getLogger(__name__)

# Kafka error codes in CreateTopics responses.
_TOPIC_ALREADY_EXISTS = 36


def topic_names(settings: Settings) -> list[str]:
    return [*settings.input_topics().values(), settings.topic_deadletter, settings.health_signals_topic()]


def topic_configs(settings: Settings) -> dict[str, str]:
    """Per-topic configs of the topics the app creates: min.insync.replicas when set, else the
    broker's default applies. Raises when no write could ever be acknowledged with acks=all."""
    if not settings.topic_min_insync_replicas:
        return {}
    if settings.topic_min_insync_replicas > settings.topic_replication:
        raise RuntimeError(
            f"STREAM_APP_TOPIC_MIN_INSYNC_REPLICAS={settings.topic_min_insync_replicas} exceeds "
            f"STREAM_APP_TOPIC_REPLICATION={settings.topic_replication}: no write could be acknowledged"
        )
    return {"min.insync.replicas": str(settings.topic_min_insync_replicas)}


def replication_warnings(described: list[dict], settings: Settings) -> list[str]:
    """What to tell operators about existing topics replicated less than the settings ask (the
    worker creates missing topics only; it never changes existing ones)."""
    out = []
    for d in described:
        factors = {len(p["replicas"]) for p in d["partitions"]}
        if factors and min(factors) < settings.topic_replication:
            out.append(
                f"topic {d['topic']!r} has replication factor {min(factors)}, less than "
                f"STREAM_APP_TOPIC_REPLICATION={settings.topic_replication}: losing a broker can lose its "
                "records; reassign its partitions to more brokers (docs/operations.md)"
            )
    return out


async def ensure_topics(settings: Settings, *, attempts: int = 30) -> dict[str, int]:
    """Create missing topics; return topic -> partition count as the broker has them.

    Retries the connection for a while, so a worker started together with its
    broker (compose, the demo) waits for it instead of crash-looping.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, **kafka_client_kwargs(settings))
    for attempt in range(attempts):
        try:
            await admin.start()
            break
        except KafkaConnectionError:
            # Wrong credentials look like an unreachable broker to aiokafka: fail at once, saying so.
            refused = await kafka_auth_failure(settings)
            if refused is not None:
                await admin.close()
                raise RuntimeError(refused) from None
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(1.0)
    try:
        existing = set(await admin.list_topics())
        configs = topic_configs(settings)
        wanted = [
            NewTopic(name, settings.topic_partitions, settings.topic_replication, topic_configs=configs)
            for name in topic_names(settings)
            if name not in existing
        ]
        if wanted:
            response = await admin.create_topics(wanted)
            for name, code, *_ in response.topic_errors:
                if code not in (0, _TOPIC_ALREADY_EXISTS):
                    raise RuntimeError(f"cannot create topic {name!r}: Kafka error code {code}")
            log.info("created topics %s", ", ".join(t.name for t in wanted))
        # Wait until every topic is described with its partitions and their
        # leaders: a just-created topic can be described with no partitions at
        # all for a while, and producing before the leaders are elected logs
        # NotLeaderForPartition retries.
        names = topic_names(settings)
        for _ in range(600):
            described = await admin.describe_topics(names)
            if len(described) == len(names) and all(
                d["partitions"] and all(p["leader"] >= 0 for p in d["partitions"]) for d in described
            ):
                break
            await asyncio.sleep(0.1)
        partitions = {d["topic"]: len(d["partitions"]) for d in described}
        for warning in replication_warnings(described, settings):
            log.warning("%s", warning)
    finally:
        await admin.close()
    for name in [*settings.input_topics().values(), settings.health_signals_topic()]:
        if partitions.get(name) != settings.topic_partitions:
            # Faust would stop with PartitionsMismatch later; say why now.
            raise RuntimeError(
                f"topic {name!r} has {partitions.get(name)} partitions but "
                f"STREAM_APP_TOPIC_PARTITIONS={settings.topic_partitions}"
            )
    return partitions
