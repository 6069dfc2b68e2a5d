"""Declares the project's Kafka topics before any worker or producer uses them, after checking
that the bootstrap servers are Kafka at all (``check_kafka``).

Brokers should run with auto topic creation off: an auto-created topic gets the
broker's default partition count, not STREAM_APP_TOPIC_PARTITIONS. The worker
declares no topic itself (Faust's topic_allow_declare is off).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import struct
import time

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError

from ..config import Settings
from .security import kafka_auth_failure, kafka_client_kwargs, kafka_ssl_context

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


# --- Is it Kafka? One ApiVersions request per bootstrap address, bounded in time -------------


class KafkaUnreachable(RuntimeError):
    """No bootstrap server answered as Kafka within the startup bound; the message says what did."""


_API_VERSIONS_KEY = 18
_PROBE_CORRELATION_ID = 0x5A17


def api_versions_request(correlation_id: int = _PROBE_CORRELATION_ID) -> bytes:
    """A Kafka ApiVersions v0 request (every broker answers it, before any SASL handshake)."""
    client_id = b"stream-app-check"
    body = struct.pack(">hhih", _API_VERSIONS_KEY, 0, correlation_id, len(client_id)) + client_id
    return struct.pack(">i", len(body)) + body


def kafka_answer_problem(answer: bytes, correlation_id: int = _PROBE_CORRELATION_ID) -> str | None:
    """None when ``answer`` starts a Kafka response to our request, else what answered instead."""
    if len(answer) >= 8:
        size, correlation = struct.unpack(">ii", answer[:8])
        if 4 <= size <= 1 << 20 and correlation == correlation_id:
            return None
    if not answer:
        return "closed the connection without answering the Kafka ApiVersions request"
    first = answer.split(b"\n", 1)[0].strip()[:60].decode("ascii", "replace")
    if first.startswith("HTTP/"):
        return f"answered HTTP ({first!r}), not Kafka"
    if first[:1] in ("-", "+"):
        return f"answered {first!r} (Redis?), not Kafka"
    return f"answered {first!r}, not Kafka"


async def _probe_kafka(host: str, port: int, ctx: ssl.SSLContext | None, timeout: float) -> str | None:
    """None if host:port answers as Kafka; else why not. OSError/TimeoutError: not reachable (yet)."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=ctx, server_hostname=host if ctx else None), timeout
    )
    try:
        writer.write(api_versions_request())
        await writer.drain()
        answer = await _read_some(reader, 8, timeout)
        if not answer:
            # Silence: not Kafka, which answers at once. Text servers (HTTP, Redis) wait for a
            # line end; give them one, so the message can say what listens there.
            writer.write(b"\r\n\r\n")
            await writer.drain()
            answer = await _read_some(reader, 64, 2.0)
            if not answer:
                return f"something listens there but sent no answer to a Kafka request within {timeout:.0f}s (not Kafka?)"
        return kafka_answer_problem(answer)
    finally:
        writer.close()


async def _read_some(reader: asyncio.StreamReader, want: int, timeout: float) -> bytes:
    """Up to ``want`` bytes, whatever arrived within ``timeout`` s (b"" for silence or EOF)."""
    answer = b""
    try:
        async with asyncio.timeout(timeout):
            while len(answer) < want:
                chunk = await reader.read(want - len(answer))
                if not chunk:
                    break
                answer += chunk
    except TimeoutError:
        pass
    return answer


async def check_kafka(settings: Settings, timeout: float | None = None) -> None:
    """Wait until a bootstrap server answers as Kafka, at most ``timeout`` s (the
    startup_timeout_seconds setting); KafkaUnreachable names every address and what it did.

    Unreachable addresses are retried (a broker starting alongside, as in compose); an address
    that answers something else fails at once: it will not turn into Kafka.
    """
    bound = settings.startup_timeout_seconds if timeout is None else timeout
    deadline = time.monotonic() + bound
    ctx = kafka_ssl_context(settings)
    servers = [s.strip() for s in settings.kafka_bootstrap.split(",") if s.strip()]
    outcome: dict[str, str] = {}
    waited = False
    while True:
        for server in servers:
            host, _, port = server.rpartition(":")
            left = max(0.1, min(5.0, deadline - time.monotonic()))
            try:
                problem = await _probe_kafka(host.strip("[]") or server, int(port or 9092), ctx, left)
            except ssl.SSLError as exc:
                raise KafkaUnreachable(f"Kafka at {server}: TLS handshake failed ({exc.reason or exc})") from None
            except (OSError, TimeoutError) as exc:
                outcome[server] = _unreachable(exc)
                continue
            if problem is None:
                return
            raise KafkaUnreachable(f"Kafka at {server}: {problem} (STREAM_APP_KAFKA_BOOTSTRAP)")
        if time.monotonic() >= deadline:
            detail = "; ".join(f"{s} {why}" for s, why in outcome.items())
            raise KafkaUnreachable(f"Kafka not reachable within {bound:g}s: {detail} (STREAM_APP_KAFKA_BOOTSTRAP)")
        if not waited:
            log.info("waiting for Kafka at %s ...", settings.kafka_bootstrap)
            waited = True
        await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


def _unreachable(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "did not accept a connection in time"
    if isinstance(exc, ConnectionRefusedError):
        return "refused the connection (nothing listening)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return type(exc).__name__
