"""The Faust worker: one ingest agent per input topic, dead-lettering, HTTP endpoints.

This module is the thin shell. Decoding and validation live in
``stream_app.events``; metric state and math live in ``stream_app.core``;
what is exposed lives in ``stream_app.exposition``.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import faust
from aiokafka.partitioner import DefaultPartitioner
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from yarl import URL
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from .config import Settings
from .events import EventRejected, decode_event
from .exposition import CallbackCollector, PipelineMetrics, render, worker_state_families
from . import positions
from .families import build_families, health_config
from .processing import FamilyProcessor, HealthProcessor
from .security import ApiGuard, faust_broker_credentials, redis_url

log = logging.getLogger(__name__)

# Header names on dead-lettered messages (values are UTF-8 bytes).
DLQ_REASON = "x-reject-reason"
DLQ_DETAIL = "x-reject-detail"
DLQ_TOPIC = "x-source-topic"
DLQ_PARTITION = "x-source-partition"
DLQ_OFFSET = "x-source-offset"

# Called with each valid event and the partition it came from.
EventHandler = Callable[[Any, int], Any]


class StreamWorker:
    """Builds the Faust app for one worker process from Settings."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self.pipeline = PipelineMetrics(self.registry)
        # Bearer token and rate limit of the /accounts/... read API (off unless configured).
        self.api_guard = ApiGuard.from_settings(settings)
        self.started_at = time.time()
        # /metrics?at=<epoch s> reads the windows at that time instead of now.
        self._eval_time: float | None = None
        self.app = self._make_app()
        self._install_faust_sensors()
        self._coalesce_produce_requests()
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
                store=self._store_url(),
                topic=settings.input_topics()[family.event_family],
                pipeline=self.pipeline,
                signals=self.signals,
            )
            for family in build_families(settings)
        ]
        self.health = HealthProcessor(
            self.app,
            partitions=settings.topic_partitions,
            store=self._store_url(),
            config=health_config(settings),
        )
        self._add_health_agent()
        self.handlers: dict[str, EventHandler] = {p.family.event_family: p.handle for p in self.processors}
        for processor in [*self.processors, self.health]:
            self.registry.register(CallbackCollector(lambda p=processor: p.collect(self._eval_time)))
        self.deadletter = self.app.topic(
            settings.topic_deadletter,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.topic_partitions,
        )
        self.input_topics = settings.input_topics()
        for family, topic_name in self.input_topics.items():
            self._add_ingest_agent(family, topic_name)
        self.pipeline.prime(self.input_topics.values())
        self.registry.register(CallbackCollector(self._worker_families))
        self.registry.register(CallbackCollector(self._store_families))
        # Before the consumer's fetcher first hands messages over (it starts in
        # the first recovery): Faust's read offsets must only see post-seek data.
        positions.install(self.app.consumer, {*self.input_topics.values(), settings.health_signals_topic()})
        self._add_pages()
        from .http_ingest import HttpIngest  # POST /events for apps that cannot speak Kafka

        self.http_ingest = HttpIngest.for_worker(self)

    # --- construction -----------------------------------------------------

    def _make_app(self) -> faust.App:
        s = self.settings
        app = faust.App(
            s.app_id,
            broker=f"kafka://{s.kafka_bootstrap.replace(',', ';kafka://')}",
            store="memory://",
            web_host=s.web_host,
            web_port=s.web_port,
            canonical_url=s.advertised_url or f"http://{socket.gethostname()}:{s.web_port}",
            web_enabled=True,
            topic_partitions=s.topic_partitions,
            topic_replication_factor=s.topic_replication,
            # Input topics are declared by stream_app.topics with the right
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
        return app

    def _coalesce_produce_requests(self) -> None:
        # Every partition batch for the broker leaves together once one is ready (as in the
        # Java producer): one produce request per linger instead of one per partition batch.
        from .kafka_batching import drain_node_batches_together

        producer = self.app.producer
        new_producer = producer._new_producer

        def _new_producer(*args: Any, **kwargs: Any) -> Any:
            aio = new_producer(*args, **kwargs)
            drain_node_batches_together(aio)
            return aio

        producer._new_producer = _new_producer

    def _store_url(self) -> str:
        s = self.settings
        if s.store == "memory":
            return "memory://"
        if s.store != "redis":
            raise ValueError(f"STREAM_APP_STORE must be 'redis' or 'memory', not {s.store!r}")
        from .store import register

        register()
        register("rediss")  # TLS: same store, redis-py picks SSL from the scheme
        url = redis_url(s)  # with the ACL user/password and TLS CA from their settings
        sep = "&" if "?" in url else "?"
        return f"{url}{sep}flush_interval={s.store_flush_interval}"

    def _install_faust_sensors(self) -> None:
        # Faust's own engine metrics (messages, commit latency, per-partition end
        # and committed offsets for consumer lag) on our registry, without
        # setup_prometheus_sensors' page: /metrics is served below.
        metrics = FaustMetrics.create(self.registry, "stream_app_faust")
        self.app.monitor = PrometheusMonitor(metrics=metrics)

    def _add_ingest_agent(self, family: str, topic_name: str) -> None:
        topic = self.app.topic(
            topic_name,
            key_serializer="raw",
            value_serializer="raw",
            partitions=self.settings.topic_partitions,
        )
        handler = self.handlers.get(family)

        async def ingest(stream: faust.StreamT) -> None:
            async for event in stream.events():
                await self._ingest_one(event, family, topic_name, handler)

        # One agent per topic, concurrency 1: faust #606 commits past in-flight
        # messages with concurrency > 1. Scale with partitions and workers instead.
        self.app.agent(topic, name=f"stream_app.ingest.{family}", concurrency=1)(ingest)

    def _add_health_agent(self) -> None:
        health = self.health

        async def account_health(stream: faust.StreamT) -> None:
            async for event in stream.events():
                try:
                    await health.handle(event.key.decode(), event.value, event.message.partition)
                except Exception:  # noqa: BLE001 - our own topic; log, never stop the worker
                    log.exception("health signal at offset %s could not be applied", event.message.offset)

        self.app.agent(self.signals, name="stream_app.health", concurrency=1)(account_health)

    # --- the hot path -----------------------------------------------------

    async def _ingest_one(
        self, event: faust.EventT, family: str, topic_name: str, handler: EventHandler | None
    ) -> None:
        now = time.time()
        self.pipeline.observe_consumed(topic_name, now)
        raw = event.value if isinstance(event.value, bytes | bytearray) else b""
        s = self.settings
        try:
            decoded = decode_event(
                bytes(raw),
                max_bytes=s.max_event_bytes,
                expected_family=family,
                now=now,
                max_future_skew=s.max_future_skew_seconds,
            )
            key = event.key
            if key is not None and key != decoded.subject.encode():
                # Events of one entity must share a partition, or per-entity
                # state splits across workers.
                raise EventRejected("key_mismatch", "message key differs from subject")
        except EventRejected as rejected:
            await self._dead_letter(event, topic_name, rejected.reason, rejected.detail)
            return
        self.pipeline.observe_valid(topic_name, decoded.type, decoded.ts, now)
        if handler is None:
            return
        try:
            await handler(decoded, event.message.partition)
        except Exception as exc:  # noqa: BLE001 - a bad event must never stop the worker
            log.exception("processing failed for %s event id=%s", decoded.type, decoded.id)
            await self._dead_letter(
                event, topic_name, "processing_error", f"{type(exc).__name__} while processing"
            )

    async def _dead_letter(
        self, event: faust.EventT, topic_name: str, reason: str, detail: str
    ) -> None:
        self.pipeline.invalid.labels(topic_name, reason).inc()
        msg = event.message
        headers = [
            (DLQ_REASON, reason.encode()),
            (DLQ_DETAIL, detail.encode()),
            (DLQ_TOPIC, topic_name.encode()),
            (DLQ_PARTITION, str(msg.partition).encode()),
            (DLQ_OFFSET, str(msg.offset).encode()),
        ]
        raw = event.value if isinstance(event.value, bytes | bytearray) else None
        await self.deadletter.send(key=event.key, value=raw, headers=headers)
        self.pipeline.deadlettered.labels(topic_name, reason).inc()
        log.info(
            "dead-lettered %s[%s]@%s: %s (%s)", topic_name, msg.partition, msg.offset, reason, detail
        )

    # --- health and exposition ----------------------------------------------

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

    def _account_owner(self, account_id: str) -> URL | None:
        """The worker that holds this account's health state.

        Not Faust's router.key_store: it partitions the JSON-serialized key through
        the producer's metadata of the changelog topic (missing until this worker
        wrote to it), while health states live in the partition of the signals
        topic, where messages are keyed by the raw account id.
        """
        n = self.settings.topic_partitions
        partition = DefaultPartitioner()(account_id.encode(), list(range(n)), list(range(n)))
        changelog = self.health.table.changelog_topic.get_topic_name()
        for url, topics in self.app.router.table_metadata("account_health").items():
            if partition in topics.get(changelog, ()):
                return URL(url)
        return None

    async def _lowest_from_peers(self, limit: int) -> list[dict]:
        own = self.app.conf.canonical_url
        try:
            hosts = self.app.router.table_metadata("account_health")
        except KeyError:
            return []
        accounts: list[dict] = []
        for url in hosts:
            if URL(url) == own:
                continue
            peer = URL(url).with_path("/accounts/lowest").with_query(limit=limit, scope="local")
            try:
                headers = self.api_guard.auth_headers()
                async with self.app.http_client.get(peer, timeout=5, headers=headers) as response:
                    accounts += (await response.json())["accounts"]
            except Exception as exc:  # noqa: BLE001 - one slow peer must not fail the answer
                log.warning("lowest accounts from %s failed: %r", url, exc)
        return accounts

    def _store_families(self):
        # stream_app_store_*: Redis availability and backlog of the table stores (docs/reliability.md).
        from .store.redis_store import RedisStore, store_metric_families

        stores = [t._data for t in self.app.tables.values() if isinstance(t._data, RedisStore)]
        return store_metric_families(stores)

    def _worker_families(self):
        return worker_state_families(
            self.settings.app_id, self.is_ready(), self.assigned_partitions(), self.started_at
        )

    def _add_pages(self) -> None:
        worker = self

        @self.app.page("/metrics")
        async def metrics(web_view: faust.web.View, request: faust.web.Request) -> faust.web.Response:
            at = request.query.get("at")
            try:
                worker._eval_time = float(at) if at is not None else None
            except ValueError:
                return web_view.json({"error": "at must be epoch seconds"}, status=400)
            try:
                body = render(worker.registry)
            finally:
                worker._eval_time = None
            # aiohttp refuses a charset in content_type=, so set the header itself.
            return web_view.bytes(body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        @self.app.page("/accounts/lowest")
        async def lowest(web_view: faust.web.View, request: faust.web.Request) -> faust.web.Response:
            denied = worker.api_guard.check(request.headers.get("Authorization"), request.remote)
            if denied is not None:
                return web_view.json(denied.body, status=denied.status, headers=denied.headers)
            try:
                limit = int(request.query.get("limit", worker.settings.health_lowest_limit))
            except ValueError:
                return web_view.json({"error": "limit must be an integer"}, status=400)
            limit = max(1, min(limit, 1000))
            now = time.time()
            accounts = worker.health.index.lowest(now, limit)
            if request.query.get("scope") != "local":
                # Every worker owns a share of the accounts: ask the others for theirs.
                accounts += await worker._lowest_from_peers(limit)
                accounts.sort(key=lambda a: (a["total"], a["account_id"]))
            return web_view.json({"evaluated_at": now, "accounts": accounts[:limit]})

        @self.app.page("/accounts/{account_id}/health")
        async def account_health(
            web_view: faust.web.View, request: faust.web.Request, account_id: str
        ) -> faust.web.Response:
            denied = worker.api_guard.check(request.headers.get("Authorization"), request.remote)
            if denied is not None:
                return web_view.json(denied.body, status=denied.status, headers=denied.headers)
            owner = worker._account_owner(account_id)
            if owner is None:
                return web_view.json({"error": "no worker owns this account right now"}, status=503)
            if owner != URL(str(worker.app.conf.canonical_url)):
                # Forwarded with the caller's Authorization: the owner checks the same token.
                auth = request.headers.get("Authorization")
                async with worker.app.http_client.get(
                    owner.with_path(request.path), timeout=10, headers={"Authorization": auth} if auth else {}
                ) as response:
                    return web_view.json(await response.json(), status=response.status)
            now = time.time()
            found = worker.health.index.evaluate(account_id, now)
            if found is None:
                return web_view.json({"error": "unknown account"}, status=404)
            score, facts = found
            return web_view.json(
                {
                    "account_id": account_id,
                    "evaluated_at": now,
                    "total": score.total,
                    "band": score.band,
                    "components": score.components,
                    "facts": facts,
                }
            )

        @self.app.page("/healthz")
        async def healthz(web_view: faust.web.View, request: faust.web.Request) -> faust.web.Response:
            ok = worker.is_healthy()
            return web_view.json({"status": "ok" if ok else "failing"}, status=200 if ok else 503)

        @self.app.page("/readyz")
        async def readyz(web_view: faust.web.View, request: faust.web.Request) -> faust.web.Response:
            ready = worker.is_ready()
            body = {
                "status": "ready" if ready else "not ready",
                "assigned_partitions": worker.assigned_partitions(),
                "rebalancing": bool(worker.app.rebalancing),
            }
            return web_view.json(body, status=200 if ready else 503)
