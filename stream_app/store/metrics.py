"""``stream_app_store_*``: the state backend's side of each table, for alerts (not readiness).

A worker whose Redis is unreachable keeps processing from memory, so it stays ready; these say
that the durable checkpoint is behind.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .backend import TableStats


def store_metric_families(
    tables: Iterable[tuple[TableStats, int]], available: bool, prefix: str = "stream_app"
) -> list[Metric]:
    """``tables``: each table's backend stats and its count of states not yet checkpointed."""
    up = GaugeMetricFamily(
        f"{prefix}_store_redis_up", "1 when the state backend's last call succeeded.", labels=["table"]
    )
    dirty = GaugeMetricFamily(
        f"{prefix}_store_dirty_keys", "States changed in memory but not yet checkpointed.", labels=["table"]
    )
    last = GaugeMetricFamily(
        f"{prefix}_store_last_flush_timestamp_seconds",
        "Wall-clock time of the last successful checkpoint write.",
        labels=["table"],
    )
    errors = CounterMetricFamily(
        f"{prefix}_store_flush_errors", "Checkpoint writes that failed (retried with back-off).", labels=["table"]
    )
    fallbacks = CounterMetricFamily(
        f"{prefix}_store_load_fallbacks",
        "Partitions rebuilt from their source topic's start because the backend was unreachable when "
        "they were assigned.",
        labels=["table"],
    )
    for st, dirty_keys in tables:
        up.add_metric([st.table], 1.0 if available else 0.0)
        dirty.add_metric([st.table], float(dirty_keys))
        last.add_metric([st.table], st.last_write_at or 0.0)
        errors.add_metric([st.table], float(st.write_errors))
        fallbacks.add_metric([st.table], float(st.load_fallbacks))
    return [up, dirty, last, errors, fallbacks]
