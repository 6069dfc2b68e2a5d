"""The Faust worker, wired from Settings: one ingest agent per input topic, a processor per metric
family, the health stage behind the signals topic, the HTTP pages.

Wiring only. The per-message path is ``ingest``, table I/O around the engine step is
``processing``, pages are ``pages`` and ``http_ingest``, what is exposed is ``exposition``.
The walk of one event through them: docs/architecture.md.
"""

from __future__ import annotations

import logging
import socket
import time

import faust
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from prometheus_client import CollectorRegistry

from ..config import Settings
from ..kafka import compat
from ..kafka.security import faust_broker_credentials
from ..store.connection import redis_url
from .api_guard import ApiGuard
from .exposition import CallbackCollector, Exposition, PipelineMetrics, worker_state_families
from .families import build_families, health_config
from .ingest import Ingest
from .pages import add_pages
from .processing import FamilyProcessor, HealthProcessor

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
        self.app = self._make_app()
        # Faust's own engine metrics (messages, commit latency, per-partition end and committed
        # offsets for consumer lag) on our registry; /metrics is served by pages.
        self.app.monitor = PrometheusMonitor(metrics=FaustMetrics.create(self.registry, "stream_app_faust"))
        self.input_topics = settings.input_topics()
        store = self._store_url()

        self.signals = self.app.topic(
            settings.health_signals_topic(),
            key_serializer="raw",
            value_serializer="json",
            partitions=settings.topic_partitions,
        )
        self.processors = [
            FamilyProcessor(
                family,
                self.app,
                partitions=settings.topic_partitions,
                store=store,
                topic=self.input_topics[family.event_family],
                pipeline=self.pipeline,
                signals=self.signals,
            )
            for family in build_families(settings)
        ]
        self.health = HealthProcessor(
            self.app, partitions=settings.topic_partitions, store=store, config=health_config(settings)
        )
        self._add_health_agent()

        self.ingest = Ingest(self.app, settings, self.pipeline)
        self.handlers = {p.family.event_family: p.handle for p in self.processors}
        for family, topic_name in self.input_topics.items():
            self.ingest.add_agent(family, topic_name, self.handlers.get(family))
        self.pipeline.prime(self.input_topics.values())

        for processor in [*self.processors, self.health]:
            self.exposition.add(processor.collect)
        self.registry.register(CallbackCollector(self._worker_families))
        self.registry.register(CallbackCollector(self._store_families))
        # Before the consumer's fetcher first hands messages over (it starts in the first
        # recovery): every patch of Faust's and aiokafka's internals, version-checked.
        compat.install(self.app, {*self.input_topics.values(), settings.health_signals_topic()})
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
            # Input topics are declared by stream_app.kafka.topics with the right
            # partition count; Faust declares only its own changelogs.
            topic_allow_declare=True,
            # Redis (or the changelog) is the recovery path; a standby copy
            # would double memory for nothing.
            table_standby_replicas=0,
            processing_guarantee="at_least_once",
            consumer_auto_offset_reset="earliest",
            broker_session_timeout=s.session_timeout_seconds,
            broker_heartbeat_interval=min(3.0, s.session_timeout_seconds / 3),
            consumer_group_instance_id=s.worker_instance_id or None,
            producer_acks=-1,
            # Changelog records and signals leave in batches (Faust's default linger is 0: a
            # produce request per few records, most of a worker's CPU time). Offsets are still
            # committed only after the producer flushed.
            producer_linger=s.producer_linger_seconds,
            producer_max_batch_size=s.producer_max_batch_size,
            # SASL / TLS for the consumer, producer and topic creation (None = PLAINTEXT).
            broker_credentials=faust_broker_credentials(s),
        )

    def _store_url(self) -> str:
        s = self.settings
        if s.store == "memory":
            return "memory://"
        if s.store != "redis":
            raise ValueError(f"STREAM_APP_STORE must be 'redis' or 'memory', not {s.store!r}")
        from ..store import register

        register()
        register("rediss")  # TLS: same store, redis-py picks SSL from the scheme
        url = redis_url(s)  # with the ACL user/password and TLS CA from their settings
        sep = "&" if "?" in url else "?"
        return f"{url}{sep}flush_interval={s.store_flush_interval}"

    def _add_health_agent(self) -> None:
        health = self.health

        async def account_health(stream: faust.StreamT) -> None:
            async for event in stream.events():
                try:
                    await health.handle(event.key.decode(), event.value, event.message.partition)
                except Exception:  # noqa: BLE001 - our own topic; log, never stop the worker
                    log.exception("health signal at offset %s could not be applied", event.message.offset)

        self.app.agent(self.signals, name="stream_app.health", concurrency=1)(account_health)

    # --- state --------------------------------------------------------------

    def is_ready(self) -> bool:
        # Faust starts the web server only after the first table recovery, so
        # answering at all means the worker got that far; after that, ready
        # drops while a rebalance or its recovery runs.
        app = self.app
        return (
            not app.rebalancing
            and not getattr(app, "in_recovery", False)
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
        # stream_app_store_*: Redis availability and backlog of the table stores (docs/reliability.md).
        from ..store.faust_store import RedisStore
        from ..store.metrics import store_metric_families

        stores = [t._data for t in self.app.tables.values() if isinstance(t._data, RedisStore)]
        return store_metric_families(stores)

    def _worker_families(self):
        return worker_state_families(self.settings.app_id, self.is_ready(), self.assigned_partitions(), self.started_at)
