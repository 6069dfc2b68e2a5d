"""Kafka admin from synchronous code: aiokafka's admin client behind blocking calls that work
inside or outside a running asyncio loop (cluster metadata, topic create/delete, leader waits)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, for_code

from .errors import StackError

_T = TypeVar("_T")


def _run_sync(coro: Coroutine[object, object, _T]) -> _T:
    """Run ``coro`` to completion from synchronous code.

    ``asyncio.run`` cannot nest, so a caller already inside a running loop (an
    async test, the app) gets it run in a short-lived helper thread instead.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1, thread_name_prefix="stream_app.tools.stack") as pool:
        return pool.submit(asyncio.run, coro).result()


def admin_call(
    bootstrap: str, fn: Callable[[AIOKafkaAdminClient], Awaitable[_T]], timeout: float
) -> _T:
    """``await fn(admin)`` on a fresh admin client, within ``timeout`` s; failures raise StackError."""

    async def session() -> _T:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap, client_id="stream_app.tools.stack", request_timeout_ms=int(timeout * 1000)
        )
        try:
            async with asyncio.timeout(timeout):
                await admin.start()
                return await fn(admin)
        finally:
            await admin.close()

    try:
        return _run_sync(session())
    except TimeoutError as exc:
        raise StackError(f"Kafka at {bootstrap} did not answer within {timeout:g}s") from exc
    except (KafkaError, OSError) as exc:
        raise StackError(f"Kafka at {bootstrap}: {exc}") from exc


def kafka_metadata(bootstrap: str, topics: Sequence[str] | None = (), timeout: float = 5.0) -> dict:
    """``{"brokers": [(id, host, port)], "cluster_id", "controller": id, "topics": {...}}``.

    ``topics=()`` asks for no topics, ``None`` for all. Per topic: ``error``
    (Kafka error code) and ``partitions`` ({index: leader id, -1 if none}).
    """

    async def fetch(admin: AIOKafkaAdminClient) -> tuple[dict, list]:
        return await admin.describe_cluster(), await admin.describe_topics(None if topics is None else list(topics))

    cluster, described = admin_call(bootstrap, fetch, timeout)
    return {
        "brokers": [(b["node_id"], b["host"], b["port"]) for b in cluster["brokers"]],
        "cluster_id": cluster["cluster_id"],
        "controller": cluster["controller_id"],
        "topics": {
            t["topic"]: {
                "error": t["error_code"],
                "partitions": {p["partition"]: -1 if p["error_code"] else p["leader"] for p in t["partitions"]},
            }
            for t in described
        },
    }


async def await_leaders(admin: AIOKafkaAdminClient, topics: Sequence[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        pending = [
            t["topic"] for t in await admin.describe_topics(list(topics))
            if t["error_code"] or not t["partitions"]
            or any(p["error_code"] or p["leader"] < 0 for p in t["partitions"])
        ]  # fmt: skip
        if not pending:
            return
        if time.monotonic() > deadline:
            raise StackError(f"topics without leaders after {timeout}s: {pending}")
        await asyncio.sleep(0.05)


def check_topic_errors(op: str, results: Iterable[tuple], ok: set[int]) -> None:
    """Raise for per-topic error codes of a Create/DeleteTopics response, except those in ``ok``."""
    bad = [
        f"{name}: {for_code(code).__name__}" + (f" ({msg[0]})" if msg and msg[0] else "")
        for name, code, *msg in results
        if code and code not in ok
    ]
    if bad:
        raise StackError(f"{op} failed: " + "; ".join(bad))
