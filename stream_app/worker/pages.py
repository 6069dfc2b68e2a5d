"""The worker's HTTP pages: ``/metrics``, ``/healthz``, ``/readyz`` and the account health API
(``/accounts/lowest`` asks every peer; ``/accounts/{id}/health`` is forwarded to the worker that
owns the account). ``POST /events`` is ``http_ingest``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import faust
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import CONTENT_TYPE_LATEST
from yarl import URL

if TYPE_CHECKING:
    from .app import StreamWorker

log = logging.getLogger(__name__)


class Peers:
    """Which worker holds an account's health state, and the other workers' lowest accounts."""

    def __init__(self, worker: StreamWorker) -> None:
        self.worker = worker

    def account_owner(self, account_id: str) -> URL | None:
        """The worker that holds this account's health state.

        Health states live in the partition of the signals topic their account id is keyed to
        (the producer's default partitioner); Faust's assignor knows which worker holds it.
        """
        worker = self.worker
        n = worker.settings.topic_partitions
        partition = DefaultPartitioner()(account_id.encode(), list(range(n)), list(range(n)))
        topic = worker.health.topic
        for url, topics in worker.app.router.external_topics_metadata().items():
            if partition in topics.get(topic, ()):
                return URL(url)
        return None

    async def lowest(self, limit: int) -> list[dict]:
        worker = self.worker
        own = worker.app.conf.canonical_url
        try:
            hosts = worker.app.router.external_topics_metadata()
        except KeyError:
            return []
        accounts: list[dict] = []
        for url in hosts:
            if URL(url) == own:
                continue
            peer = URL(url).with_path("/accounts/lowest").with_query(limit=limit, scope="local")
            try:
                headers = worker.api_guard.auth_headers()
                async with worker.app.http_client.get(peer, timeout=5, headers=headers) as response:
                    accounts += (await response.json())["accounts"]
            except Exception as exc:  # noqa: BLE001 - one slow peer must not fail the answer
                log.warning("lowest accounts from %s failed: %r", url, exc)
        return accounts


def add_pages(worker: StreamWorker) -> None:
    app = worker.app
    peers = Peers(worker)

    @app.page("/metrics")
    async def metrics(web_view: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        # ?at=<epoch s> reads the windows at that time instead of now (tests, benchmarks).
        at = request.query.get("at")
        try:
            now = float(at) if at is not None else None
        except ValueError:
            return web_view.json({"error": "at must be epoch seconds"}, status=400)
        body = worker.exposition.render(now)
        # aiohttp refuses a charset in content_type=, so set the header itself.
        return web_view.bytes(body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/accounts/lowest")
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
            accounts += await peers.lowest(limit)
            accounts.sort(key=lambda a: (a["total"], a["account_id"]))
        return web_view.json({"evaluated_at": now, "accounts": accounts[:limit]})

    @app.page("/accounts/{account_id}/health")
    async def account_health(
        web_view: faust.web.View, request: faust.web.Request, account_id: str
    ) -> faust.web.Response:
        denied = worker.api_guard.check(request.headers.get("Authorization"), request.remote)
        if denied is not None:
            return web_view.json(denied.body, status=denied.status, headers=denied.headers)
        owner = peers.account_owner(account_id)
        if owner is None:
            return web_view.json({"error": "no worker owns this account right now"}, status=503)
        if owner != URL(str(app.conf.canonical_url)):
            # Forwarded with the caller's Authorization: the owner checks the same token.
            auth = request.headers.get("Authorization")
            async with app.http_client.get(
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

    @app.page("/healthz")
    async def healthz(web_view: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        ok = worker.is_healthy()
        return web_view.json({"status": "ok" if ok else "failing"}, status=200 if ok else 503)

    @app.page("/readyz")
    async def readyz(web_view: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        ready = worker.is_ready()
        body = {
            "status": "ready" if ready else "not ready",
            "assigned_partitions": worker.assigned_partitions(),
            "rebalancing": bool(app.rebalancing),
        }
        return web_view.json(body, status=200 if ready else 503)
