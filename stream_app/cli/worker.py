"""``stream-app worker``: settings checked, Redis and Kafka waited for (bounded), topics
declared, then the Faust worker, whose start ends with one line: ``ready at http://…``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os

from ..config import Settings
from .failures import StartupFailure
from .logs import setup_logging
from .startup import validated_settings, wait_for_kafka, wait_for_redis

log = logging.getLogger("stream_app.cli")

DESCRIPTION = """Run one metrics worker: consume the input topics, keep per-entity state, serve
/metrics, /healthz, /readyz, /accounts/... and POST /events on one HTTP port.

Workers with the same STREAM_APP_APP_ID share the partitions: start more to scale out."""

EPILOG = """settings: STREAM_APP_* environment variables, every one documented in
docs/configuration.md; `stream-app config` prints the values in effect (secrets masked).
The most common: STREAM_APP_KAFKA_BOOTSTRAP (host:port,...), STREAM_APP_REDIS_URL,
STREAM_APP_STORE (redis|memory), STREAM_APP_WEB_PORT, STREAM_APP_LOG_LEVEL, STREAM_APP_LOG_FORMAT.

exit codes: 0 stopped by SIGINT/SIGTERM; 1 Kafka or Redis did not answer within
STREAM_APP_STARTUP_TIMEOUT_SECONDS (or refused us); 2 a setting that cannot be used."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stream-app worker",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--web-port", type=int, metavar="PORT", help="HTTP port (overrides STREAM_APP_WEB_PORT)")
    return p


def ready_url(settings: Settings) -> str:
    """Where this worker answers, as a URL to paste: the advertised one, else the bound address
    (loopback when it binds every interface)."""
    if settings.advertised_url:
        return settings.advertised_url.rstrip("/")
    host = settings.web_host if settings.web_host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    return f"http://{host}:{settings.web_port}"


def kafka_problem(settings: Settings, exc: BaseException) -> str:
    text = str(exc)
    return text if text.startswith("Kafka at") else f"Kafka at {settings.kafka_bootstrap}: {text}"


def main_worker(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    overrides = {"web_port": args.web_port} if args.web_port is not None else {}
    settings = validated_settings(**overrides)
    logging_config = setup_logging(settings)
    wait_for_redis(settings)
    wait_for_kafka(settings)
    return run_worker(settings, logging_config)


def run_worker(settings: Settings, logging_config: dict) -> int:
    import faust

    from ..kafka.topics import ensure_topics
    from ..worker.app import StreamWorker

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        # Topics must exist with the right partition count before Faust subscribes.
        loop.run_until_complete(ensure_topics(settings))
    except RuntimeError as exc:  # a partition-count mismatch, refused credentials, a refused create
        raise StartupFailure(kafka_problem(settings, exc)) from exc
    # Faust reads its bind address from WEB_BIND (default every interface): bind where
    # STREAM_APP_WEB_HOST says, as that setting documents.
    os.environ.setdefault("WEB_BIND", settings.web_host)
    worker = StreamWorker(settings)
    url = ready_url(settings)

    class Worker(faust.Worker):
        async def on_startup_finished(self) -> None:
            await super().on_startup_finished()
            log.info("ready at %s (/metrics /healthz /readyz)", url)

        def carp(self, msg: str) -> None:  # mode prints "-INT- -INT- ..." on Ctrl-C: a log line instead
            log.info("stopping (SIGINT)" if "-INT-" in msg else msg)

    runner = Worker(worker.app, loop=loop, loglevel=settings.log_level, logging_config=logging_config)
    runner.spinner = None  # log lines only, no terminal animation
    runner.execute_from_commandline()
    return 0
