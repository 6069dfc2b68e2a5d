"""Ceiling: a plain aiokafka consumer that only reads and decodes (``decode_event``) the input topics.

No state, no output, no Faust: the most any Python consumer on this stack can do with our
event contract. ``python -m benchmarks.ceiling`` with the BENCH_* environment (benchmarks/common.py).
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer

from stream_app.events import EventRejected, decode_event

from .common import Progress, RunnerConfig


async def run(cfg: RunnerConfig) -> None:
    progress = Progress(cfg.port)
    family_of = cfg.family_of_topic
    consumer = AIOKafkaConsumer(
        *cfg.topics.values(),
        bootstrap_servers=cfg.bootstrap,
        group_id=cfg.group,
        auto_offset_reset="earliest",
        enable_auto_commit=True,
    )
    await consumer.start()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=2000)
            if batches and progress.first_at is None:
                progress.first_at = time.time()
            for tp, messages in batches.items():
                family = family_of[tp.topic]
                for msg in messages:
                    try:
                        decode_event(msg.value, expected_family=family)
                    except EventRejected:
                        pass
                    progress.processed += 1
            if batches:
                progress.last_at = time.time()
    finally:
        await consumer.stop()


if __name__ == "__main__":
    asyncio.run(run(RunnerConfig.from_env()))
