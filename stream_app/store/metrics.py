"""What a table store reports about its Redis side (``RedisStoreStats``), and the
``stream_app_store_*`` families made of it, for alerts (not readiness)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RedisStoreStats:
    table: str
    partitions: list[int]
    keys_per_partition: dict[int, int]
    dirty_keys: int
    flush_count: int
    flush_errors: int
    last_flush_seconds: float
    last_flush_keys: int
    last_flush_at: float | None
    offsets: dict[int, int | None]  # offset last written to Redis per owned partition
    loaded_keys: dict[int, int]  # keys read from Redis at the last assignment
    replayed_records: dict[int, int]  # changelog records applied since the last assignment
    fenced_partitions: list[int] = field(default_factory=list)
    redis_available: bool = True  # the last flush (or load) reached Redis
    consecutive_flush_errors: int = 0
    unreachable_since: float | None = None  # wall-clock time of the first failure in a row
    load_fallbacks: int = 0  # partitions replayed from the changelog because Redis was unreachable


def store_metric_families(stores: Iterable[Any], prefix: str = "stream_app") -> list:
    """Prometheus families describing each store's Redis side (for alerts, not readiness).

    A worker whose Redis is unreachable keeps processing from memory and the
    changelog, so it stays ready; these say that the durable snapshot is behind.
    """
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    up = GaugeMetricFamily(f"{prefix}_store_redis_up", "1 when the table store's last Redis call succeeded.", labels=["table"])
    dirty = GaugeMetricFamily(f"{prefix}_store_dirty_keys", "Table keys changed in memory but not yet written to Redis.", labels=["table"])
    last = GaugeMetricFamily(f"{prefix}_store_last_flush_timestamp_seconds", "Wall-clock time of the last successful flush to Redis.", labels=["table"])
    errors = CounterMetricFamily(f"{prefix}_store_flush_errors", "Flushes to Redis that failed (retried with backoff).", labels=["table"])
    fallbacks = CounterMetricFamily(
        f"{prefix}_store_load_fallbacks",
        "Partitions replayed from the whole changelog because Redis was unreachable when they were assigned.",
        labels=["table"],
    )
    for store in stores:
        st = store.stats()
        up.add_metric([st.table], 1.0 if st.redis_available else 0.0)
        dirty.add_metric([st.table], float(st.dirty_keys))
        last.add_metric([st.table], st.last_flush_at or 0.0)
        errors.add_metric([st.table], float(st.flush_errors))
        fallbacks.add_metric([st.table], float(st.load_fallbacks))
    return [up, dirty, last, errors, fallbacks]
