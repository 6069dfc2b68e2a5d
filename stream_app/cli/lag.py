"""``stream-app lag``: how far an app id (consumer group) is behind on the input topics."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence

from ..kafka.lag import PartitionLag, group_lag
from .startup import validated_settings, wait_for_kafka

BEHIND = 3  # exit code with --max-lag when the lag is larger


def lag_lines(app_id: str, lags: Sequence[PartitionLag]) -> list[str]:
    """One line per topic, then the total (the last line)."""
    lines = []
    for topic in sorted({p.topic for p in lags}):
        mine = [p for p in lags if p.topic == topic]
        uncommitted = sum(p.committed is None for p in mine)
        note = f", {uncommitted} of {len(mine)} partitions never committed" if uncommitted else ""
        lines.append(f"{topic}: lag {sum(p.lag for p in mine)} (end offsets {sum(p.end for p in mine)}{note})")
    lines.append(f"app id {app_id}: total lag {sum(p.lag for p in lags)} messages on {len(lags)} partitions")
    return lines


def main_lag(argv: list[str]) -> int:
    from ..kafka.security import kafka_client_kwargs

    parser = argparse.ArgumentParser(
        prog="stream-app lag",
        description="Messages an app id (Kafka consumer group) still has to process on the input topics: "
        "end offset minus committed offset per partition (minus the log start where it never committed), "
        "read from Kafka, so it works while the app's workers are down. Use it to tell when an app rebuilding "
        "under a new app id has caught up (docs/operations.md, 'Reprocessing after a definition change'). "
        f"Exit 0; with --max-lag N, exit {BEHIND} while the total lag is above N.",
    )
    parser.add_argument("--app-id", help="the app id (consumer group); default STREAM_APP_APP_ID")
    parser.add_argument("--max-lag", type=int, default=None, metavar="N",
                        help=f"exit {BEHIND} when the total lag is above N (e.g. 0: caught up)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="one JSON object per partition instead of the summary")
    args = parser.parse_args(argv)
    settings = validated_settings()
    app_id = args.app_id or settings.app_id
    wait_for_kafka(settings)
    topics = list(settings.input_topics().values())
    lags = asyncio.run(group_lag(settings.kafka_bootstrap, app_id, topics, **kafka_client_kwargs(settings)))
    if args.json:
        for p in lags:
            print(json.dumps({"topic": p.topic, "partition": p.partition, "committed": p.committed,
                              "start": p.start, "end": p.end, "lag": p.lag}))  # fmt: skip
    else:
        print("\n".join(lag_lines(app_id, lags)))
    total = sum(p.lag for p in lags)
    return BEHIND if args.max_lag is not None and total > args.max_lag else 0
