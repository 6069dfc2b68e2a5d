"""Faust's own floor: agents that consume every input topic and do nothing with the messages.

What a Faust worker costs per message before any work of ours: the consumer thread, the
conductor, the stream and the agent, acks and offset commits. Nothing is decoded (the value
stays raw bytes, never parsed), nothing is stored, nothing is sent. One agent per input topic,
concurrency 1, like the worker's ingest agents. ``BENCH_FLOOR_MODE`` picks the loop:

- ``event``: ``async for value in stream`` (one pass of Faust's per-message path per event; the
  "no-op" mode of ../shared/tools/faust_floor.py without its ``json.loads``)
- ``take``: ``async for batch in stream.take(1000, within=0.05)`` (Faust's batching of the same
  stream; the "take" mode of that tool, again without parsing)

``python -m benchmarks.faust_floor`` with the BENCH_* environment (benchmarks/common.py); the
``/count`` page also gives the wall-clock times of the first and the latest message seen.
"""

from __future__ import annotations

import os
import sys
import time

import faust

from .common import RunnerConfig

MODES = ("event", "take")
TAKE_MAX, TAKE_WITHIN = 1000, 0.05

cfg = RunnerConfig.from_env()
mode = os.environ.get("BENCH_FLOOR_MODE", "event")
if mode not in MODES:
    raise SystemExit(f"BENCH_FLOOR_MODE must be one of {MODES}, not {mode!r}")

app = faust.App(
    cfg.group,
    broker=f"kafka://{cfg.bootstrap}",
    store="memory://",
    web_port=cfg.port,
    web_host="127.0.0.1",
    topic_partitions=4,
    consumer_auto_offset_reset="earliest",
    table_standby_replicas=0,
    datadir=f"{cfg.state_dir}/faust-data",
)

progress = {"processed": 0, "first_at": None, "last_at": None}


def _seen(n: int) -> None:
    now = time.time()
    if progress["first_at"] is None:
        progress["first_at"] = now
    progress["processed"] += n
    progress["last_at"] = now


def _agent(family: str, topic_name: str) -> None:
    topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw")

    if mode == "take":

        async def consume(stream):
            async for batch in stream.take(TAKE_MAX, within=TAKE_WITHIN):
                _seen(len(batch))

    else:

        async def consume(stream):
            async for _value in stream:
                _seen(1)

    app.agent(topic, name=f"floor.{mode}.{family}", concurrency=1)(consume)


for _family, _topic in cfg.topics.items():
    _agent(_family, _topic)


@app.page("/count")
async def count(web, request):
    return web.json(progress)


if __name__ == "__main__":
    sys.argv = [sys.argv[0], "worker", "-l", "warn", "--web-port", str(cfg.port), "--web-host", "127.0.0.1"]
    app.main()
