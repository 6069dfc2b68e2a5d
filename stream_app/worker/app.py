"""The Faust worker, wired from Settings: one ingest agent per input topic, a processor per metric
family, the health stage behind the signals topic, the HTTP pages.

Wiring only. The per-message path is ``ingest``, table I/O around the engine step is
``processing``, pages are ``pages`` and ``http_ingest``, what is exposed is ``exposition``.
The walk of one event through them: docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import faust
import orjson
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from prometheus_client import CollectorRegistry

from ..config import Settings
from ..kafka import compat
from ..kafka.security import faust_broker_credentials
from ..store.backend import Backend, MemoryBackend
from ..store.connection import redact_url, redis_url
from ..store.redis_memory import EvictingRedis, RedisMemoryWatch
from ..store.metrics import store_metric_families
from ..store.redis_store import RedisBackend
from .api_guard import ApiGuard
from .assignment import Assignment
from .checkpoint import Checkpointer
from .exposition import CallbackCollector, Exposition, PipelineMetrics, worker_state_families
from .families import build_families, health_config
from .ingest import Ingest
from .offsets import LogStartError, OffsetAudit
from .pages import add_pages
from .processing import FamilyProcessor, HealthProcessor, Outbox, PartitionNotHeld

log = logging.getLogger(__name__)


class StreamWorker:
    """Builds the Faust app for one worker process from Settings."""

    def __init__(self, settings: Settings, *, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self.exposition = Exposition(self.registry)
        self.pipeline = PipelineMetrics(self.registry)
        # Bearer token and rate limit of the /accounts/... read API (off unless configured).
        self.api_guard = ApiGuard.from_settings(settings)
        self.started_at = time.time()
        self.backend = self._backend()  # checks STREAM_APP_STORE before anything connects
        # Redis' maxmemory-policy and memory: judged before the first partition is taken.
        self.redis_memory = (
            RedisMemoryWatch.for_url(
                redis_url(settings), on_evicting=settings.redis_eviction_policy,
                address=redact_url(settings.redis_url),
            )
            if settings.store == "redis" else None
        )  # fmt: skip
        self.app = self._make_app()
        # Faust's own engine metrics (messages, commit latency, per-partition end and committed
        # offsets for consumer lag) on our registry; /metrics is served by pages.
        self.app.monitor = PrometheusMonitor(metrics=FaustMetrics.create(self.registry, "stream_app_faust"))
        self.input_topics = settings.input_topics()
        signals_topic = settings.health_signals_topic()

        # The engine on this worker: a processor per family, the health stage behind the signals
        # topic; their states are checkpointed together and reassigned together.
        self.outbox = Outbox()
        self.processors = [
            FamilyProcessor(
                family, topic=self.input_topics[family.event_family], pipeline=self.pipeline, outbox=self.outbox
            )
            for family in build_families(settings)
        ]
        self.health = HealthProcessor(health_config(settings), topic=signals_topic)
        state_lock = asyncio.Lock()
        self.assignment = Assignment(
            self.processors, self.health, self.backend, state_lock, debug_pause=settings.debug_recovery_pause_seconds
        )
        self.assignment.processing.set()
        producer = self.app.producer
        self.checkpointer = Checkpointer(
            [*self.processors, self.health],
            self.outbox,
            self.backend,
            signals_topic=signals_topic,
            send=lambda topic, key, value: producer.send(topic, key, value, None, None, None),
            flush_producer=producer.flush,
            lock=state_lock,
        )

        # Source positions checked against the log start (retention), every offset audited.
        self.offsets = OffsetAudit(
            self.registry, self._log_starts, policy=settings.log_start_policy, debug_path=settings.debug_offsets_log
        )
        self.ingest = Ingest(self.app, settings, self.pipeline, self.assignment.processing, self.offsets)
        self.handlers = {p.family.event_family: p for p in self.processors}
        for family, topic_name in self.input_topics.items():
            self.ingest.add_agent(family, topic_name, self.handlers.get(family))
        self.signals = self.app.topic(
            signals_topic, key_serializer="raw", value_serializer="raw", partitions=settings.topic_partitions
        )
        self._add_health_agent()
        self.pipeline.prime(self.input_topics.values())

        for processor in [*self.processors, self.health]:
            self.exposition.add(processor.collect)
        self.registry.register(CallbackCollector(self._worker_families))
        self.registry.register(CallbackCollector(self._store_families))
        if self.redis_memory is not None:
            self.registry.register(CallbackCollector(self.redis_memory.families))
            self.app.timer(15.0, name="stream_app.redis_memory")(self._redis_memory_timer)
        # Before the consumer's fetcher first hands messages over (it starts in the first
        # recovery): every patch of Faust's and aiokafka's internals, version-checked. Assigned
        # partitions are read from the worker's checkpoints; each offset commit checkpoints first.
        sources = {*self.input_topics.values(), signals_topic}
        guard = compat.install(self.app, sources, positions_from=self._positions, before_commit=self.checkpointer.run)
        self.registry.register(CallbackCollector(lambda: compat.guard_metric_families(guard)))
        # Commits checkpoint first, but Faust commits only offsets beyond its last commit: events
        # read again after a restart (behind the commit) are checkpointed by this timer.
        self.app.timer(settings.store_flush_interval, name="stream_app.checkpoint")(self._checkpoint_timer)
        self.app.on_partitions_assigned.connect(self._on_partitions_assigned)
        self.app.on_partitions_revoked.connect(self._on_partitions_revoked)
        self.app.on_before_shutdown.connect(self._on_before_shutdown)
        add_pages(self)
        from .http_ingest import HttpIngest  # POST /events for apps that cannot speak Kafka

        self.http_ingest = HttpIngest.for_worker(self)

    # --- construction -----------------------------------------------------

    def _make_app(self) -> faust.App:
        s = self.settings
        return faust.App(
            s.app_id,
            broker=f"kafka://{s.kafka_bootstrap.replace(',', ';kafka://')}",
            store="memory://",
            web_host=s.web_host,
            web_port=s.web_port,
            canonical_url=s.advertised_url or f"http://{socket.gethostname()}:{s.web_port}",
            web_enabled=True,
            topic_partitions=s.topic_partitions,
            topic_replication_factor=s.topic_replication,
            # Our topics are declared by stream_app.kafka.topics with the right partition count;
            # Faust declares only its leader-election topic.
            topic_allow_declare=True,
            # No Faust tables: states live in the worker's processors, checkpointed to Redis. A
            # non-zero value keeps Faust's own partition assignor (without tables it falls back to
            # round robin): it gives partition N of every topic to one worker and publishes who
            # holds what, which routes /accounts/{id}/health. Standbys apply to tables only.
            table_standby_replicas=1,
            processing_guarantee="at_least_once",
            # Every offset commit runs a checkpoint first (kafka.compat.commits): this is its cadence.
            broker_commit_interval=s.store_flush_interval,
            consumer_auto_offset_reset="earliest",
            broker_session_timeout=s.session_timeout_seconds,
            broker_heartbeat_interval=min(3.0, s.session_timeout_seconds / 3),
            consumer_group_instance_id=s.worker_instance_id or None,
            producer_acks=-1,
            # Signals and dead letters leave in batches (Faust's default linger is 0: a produce
            # request per few records).
            producer_linger=s.producer_linger_seconds,
            producer_max_batch_size=s.producer_max_batch_size,
            # SASL / TLS for the consumer, producer and topic creation (None = PLAINTEXT).
            broker_credentials=faust_broker_credentials(s),
        )

    def _backend(self) -> Backend:
        s = self.settings
        if s.store == "memory":
            return MemoryBackend()
        if s.store != "redis":
            raise ValueError(f"STREAM_APP_STORE must be 'redis' or 'memory', not {s.store!r}")
        # With the ACL user/password and TLS CA from their settings.
        return RedisBackend(
            redis_url(s),
            prefix=f"stream_app:{s.app_id}",
            cluster=s.redis_cluster,
            cluster_nodes=[n.strip() for n in s.redis_cluster_nodes.split(",") if n.strip()],
        )

    def _add_health_agent(self) -> None:
        health, processing = self.health, self.assignment.processing
        audit_batch, topic = self.ingest.audit_batch, self.health.topic
        size, within = self.settings.ingest_batch_max, self.settings.ingest_batch_seconds

        async def account_health(stream: faust.StreamT) -> None:
            async for events in stream.take_events(size, within=within):
                if not processing.is_set():
                    await processing.wait()
                await audit_batch(events, topic)
                for event in events:
                    msg = event.message
                    if not health.holds(msg.partition):
                        continue  # moved to another worker before it was processed
                    try:
                        health.process(event.key.decode(), orjson.loads(event.value), msg.partition, msg.offset)
                    except PartitionNotHeld:
                        raise
                    except Exception:  # noqa: BLE001 - our own topic; log, never stop the worker
                        log.exception("health signal at offset %s could not be applied", msg.offset)

        self.app.agent(self.signals, name="stream_app.health", concurrency=1)(account_health)

    async def _positions(self, assigned: set) -> dict:
        """Where each assigned source partition is read from: after its checkpoint, or from its
        log start when retention deleted that (``offsets``, STREAM_APP_LOG_START_POLICY)."""
        await self._redis_preflight()
        positions = await self.assignment.positions(assigned)
        try:
            return await self.offsets.check_positions(positions)
        except LogStartError as exc:  # STREAM_APP_LOG_START_POLICY=fail: the worker stops
            await self.app.crash(exc)
            raise

    async def _redis_preflight(self) -> None:
        """Before the first partition is taken: refuse an evicting Redis (store/redis_memory.py)."""
        if self.redis_memory is None or self.redis_memory.checked:
            return
        try:
            await self.redis_memory.check()
        except EvictingRedis as exc:
            await self.app.crash(exc)
            raise

    async def _redis_memory_timer(self) -> None:
        try:
            await self.redis_memory.check()
        except EvictingRedis as exc:  # Redis answered for the first time after the start
            await self.app.crash(exc)

    async def _log_starts(self, partitions: list) -> dict:
        return dict(await self.app.consumer.earliest_offsets(*partitions))

    async def _on_partitions_assigned(self, sender: object, assigned: set, **kwargs: object) -> None:
        # The consumer seeks (and so takes partitions over) only when it has any: a worker left
        # with none of ours must still drop what it held and be ready.
        if not any(tp.topic in self.assignment_sources() for tp in assigned):
            await self.assignment.positions(set())

    async def _checkpoint_timer(self) -> None:
        if self.checkpointer.pending():
            await self.checkpointer.run()

    async def _on_partitions_revoked(self, sender: object, revoked: set, **kwargs: object) -> None:
        self.assignment.begin()

    async def _on_before_shutdown(self, sender: object, **kwargs: object) -> None:
        try:
            await self.checkpointer.run()
        finally:
            await self.backend.close()
            if self.redis_memory is not None:
                await self.redis_memory.close()

    def assignment_sources(self) -> set[str]:
        return {*self.input_topics.values(), self.health.topic}

    # --- state --------------------------------------------------------------

    def is_ready(self) -> bool:
        # Faust starts the web server only after the first table recovery, so
        # answering at all means the worker got that far; after that, ready
        # drops while a rebalance or its recovery runs.
        app = self.app
        return (
            not app.rebalancing
            and app.tables.recovery.completed.is_set()
            and all(p.ready for p in [*self.processors, self.health])
        )

    def is_healthy(self) -> bool:
        # The web server only answers from a running event loop; the worker is
        # unhealthy once it crashed or is shutting down.
        return not self.app.should_stop

    def assigned_partitions(self) -> dict[str, int]:
        counts = {topic: 0 for topic in self.input_topics.values()}
        try:
            assignment = self.app.consumer.assignment()
        except Exception:  # consumer not started yet
            return counts
        for tp in assignment:
            if tp.topic in counts:
                counts[tp.topic] += 1
        return counts

    def _store_families(self):
        # stream_app_store_*: the backend's availability and what is not yet checkpointed.
        if not self.backend.durable:
            return []
        tables = [(self.backend.stats(p.table), p.states.dirty_count()) for p in [*self.processors, self.health]]
        return store_metric_families(tables, self.backend.available)

    def _worker_families(self):
        return worker_state_families(self.settings.app_id, self.is_ready(), self.assigned_partitions(), self.started_at)
