"""Everything the worker exposes to Prometheus, on one registry per worker.

Pipeline health metrics are defined here; business metrics come from the
metric processors as collectors registered on the same registry. Each worker
exposes only the partitions it owns; queries sum across instances.

Rendering is cheap where it can be: the family indexes return the very same metric family
objects while nothing they show changed (``stream_app.engine.index``), and :func:`family_text`
keeps each family object's text, so an unchanged family costs a byte copy; a changed one is
written by a formatter that caches the label part of every series line (the same bytes as
``prometheus_client.generate_latest``; tests/unit/worker/test_exposition.py).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from .. import __version__

PREFIX = "stream_app"

# `_created` series double the page size and no dashboard or rule uses them.
disable_created_metrics()

# Delay from event time to arrival; upper edges cover backfills of a day.
_DELAY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400)


class PipelineMetrics:
    """Counters and gauges of the ingest path, labelled by topic (bounded: our own topics)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.consumed = Counter(
            f"{PREFIX}_events_consumed",
            "Messages read from an input topic, valid or not.",
            ["topic"],
            registry=registry,
        )
        self.valid = Counter(
            f"{PREFIX}_events_valid",
            "Events that passed decoding and validation, by event type.",
            ["topic", "type"],
            registry=registry,
        )
        self.invalid = Counter(
            f"{PREFIX}_events_invalid",
            "Events rejected by decoding or validation, by reason.",
            ["topic", "reason"],
            registry=registry,
        )
        self.deadlettered = Counter(
            f"{PREFIX}_events_deadlettered",
            "Rejected events written to the dead-letter topic, by reason.",
            ["topic", "reason"],
            registry=registry,
        )
        self.duplicates = Counter(
            f"{PREFIX}_events_duplicate",
            "Valid events that changed no entity state: redeliveries of an applied event id, "
            "or activity that repeats facts already recorded. Counted here, applied once.",
            ["topic"],
            registry=registry,
        )
        self.too_late = Counter(
            f"{PREFIX}_events_too_late",
            "Valid events older than the watermark minus window and grace: entity state "
            "updated, windowed aggregates no longer hold their time.",
            ["topic"],
            registry=registry,
        )
        self.last_event_time = Gauge(
            f"{PREFIX}_last_event_timestamp_seconds",
            "Event time of the newest valid event seen (watermark), per topic.",
            ["topic"],
            registry=registry,
        )
        self.last_consumed_time = Gauge(
            f"{PREFIX}_last_consumed_timestamp_seconds",
            "Wall-clock time this worker last read a message, per topic.",
            ["topic"],
            registry=registry,
        )
        self.event_delay = Histogram(
            f"{PREFIX}_event_delay_seconds",
            "Arrival wall-clock time minus event time of valid events (event-time lag).",
            ["topic"],
            buckets=_DELAY_BUCKETS,
            registry=registry,
        )
        self._watermarks: dict[str, float] = {}
        # Labelled children resolved once (``labels()`` validates and hashes on every call):
        # topic -> (consumed, last consumed time, last event time, delay); (topic, type) -> valid.
        self._per_topic: dict[str, tuple] = {}
        self._valid: dict[tuple[str, str], Any] = {}

    def _topic_children(self, topic: str) -> tuple:
        children = self._per_topic.get(topic)
        if children is None:
            children = self._per_topic[topic] = (
                self.consumed.labels(topic),
                self.last_consumed_time.labels(topic),
                self.last_event_time.labels(topic),
                self.event_delay.labels(topic),
            )
        return children

    def observe_consumed(self, topic: str, now: float, n: int = 1) -> None:
        consumed, last_consumed, _, _ = self._topic_children(topic)
        consumed.inc(n)
        last_consumed.set(now)

    def observe_valid_batch(
        self, topic: str, types: dict[str, int], newest_ts: float, delays: Iterable[float]
    ) -> None:
        """A batch's valid events at once: counts by type, the newest event time, each delay
        (every per-event metric update takes a lock: one per batch instead)."""
        for event_type, n in types.items():
            valid = self._valid.get((topic, event_type))
            if valid is None:
                # Event types are validated (a closed set), so this stays small.
                valid = self._valid[(topic, event_type)] = self.valid.labels(topic, event_type)
            valid.inc(n)
        children = self._topic_children(topic)
        if newest_ts > self._watermarks.get(topic, 0.0):
            self._watermarks[topic] = newest_ts
            children[2].set(newest_ts)
        observe = children[3].observe
        for delay in delays:
            observe(delay)

    def prime(self, topics: Iterable[str]) -> None:
        """Create the unlabelled-by-outcome series at zero so rates work from the first scrape."""
        for topic in topics:
            self.consumed.labels(topic)
            self.duplicates.labels(topic)
            self.too_late.labels(topic)


class CallbackCollector(Collector):
    """Adapts a zero-argument callable returning metric families to the registry."""

    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Metric]:
        return self._collect()


def worker_state_families(
    app_id: str, ready: bool, assigned: dict[str, int], started_at: float
) -> list[Metric]:
    info = InfoMetricFamily(f"{PREFIX}_build", "Version of the running worker.")
    info.add_metric([], {"version": __version__, "app_id": app_id})
    ready_g = GaugeMetricFamily(
        f"{PREFIX}_worker_ready",
        "1 when this worker has recovered its assigned partitions and is processing.",
    )
    ready_g.add_metric([], 1.0 if ready else 0.0)
    parts = GaugeMetricFamily(
        f"{PREFIX}_assigned_partitions",
        "Input-topic partitions currently assigned to this worker.",
        labels=["topic"],
    )
    for topic, count in sorted(assigned.items()):
        parts.add_metric([topic], float(count))
    start = GaugeMetricFamily(
        f"{PREFIX}_worker_start_timestamp_seconds", "Wall-clock time the worker started."
    )
    start.add_metric([], started_at)
    return [info, ready_g, parts, start]


# --------------------------------------------------------------------------- text


_TEXT = "_stream_app_text"  # attribute holding a family object's rendered text
_LEGACY_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LEGACY_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_PREFIX_CACHE_MAX = 200_000
_prefixes: dict[tuple, str] = {}  # (sample name, label items) -> 'name{a="x",b="y"} '


class _NotPlain(Exception):
    """A family the fast formatter does not handle: written by generate_latest instead."""


class _One:
    def __init__(self, metric: Metric) -> None:
        self.metric = metric

    def collect(self) -> list[Metric]:
        return [self.metric]


def _prefix(name: str, labels: dict[str, str]) -> str:
    key = (name, tuple(labels.items()))
    p = _prefixes.get(key)
    if p is None:
        if not _LEGACY_NAME.fullmatch(name) or not all(_LEGACY_LABEL.fullmatch(k) for k in labels):
            raise _NotPlain(name)
        if labels:
            inner = ",".join(
                '{}="{}"'.format(k, v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"'))
                for k, v in sorted(labels.items())
            )
            p = f"{name}{{{inner}}} "
        else:
            p = f"{name} "
        if len(_prefixes) >= _PREFIX_CACHE_MAX:
            _prefixes.clear()
        _prefixes[key] = p
    return p


def _format(metric: Metric) -> bytes:
    """The classic text format of one family, as generate_latest writes it (zero as 0.0)."""
    mname, mtype = metric.name, metric.type
    if mtype == "counter":
        mname += "_total"
    elif mtype == "info":
        mname, mtype = mname + "_info", "gauge"
    elif mtype == "stateset":
        mtype = "gauge"
    elif mtype == "gaugehistogram":
        mtype = "histogram"
    elif mtype == "unknown":
        mtype = "untyped"
    if not _LEGACY_NAME.fullmatch(mname):
        raise _NotPlain(mname)
    doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
    out = [f"# HELP {mname} {doc}\n# TYPE {mname} {mtype}\n"]
    special = {metric.name + suffix: suffix for suffix in ("_created", "_gsum", "_gcount")}
    om: dict[str, list[str]] = {}
    for s in metric.samples:
        if s.timestamp is not None or s.native_histogram is not None:
            raise _NotPlain(s.name)
        v = s.value
        line = _prefix(s.name, s.labels) + ("0.0" if v == 0 else floatToGoString(v)) + "\n"
        suffix = special.get(s.name)
        if suffix is None:
            out.append(line)
        else:
            om.setdefault(suffix, []).append(line)
    for suffix, lines in sorted(om.items()):
        name = metric.name + suffix
        out.append(f"# HELP {name} {doc}\n# TYPE {name} gauge\n")
        out.extend(lines)
    return "".join(out).encode("utf-8")


def family_text(metric: Metric) -> bytes:
    """The text exposition of one family, kept on the family object: a family object returned
    again (unchanged, see ``stream_app.engine.index``) costs a byte copy. Families must not be
    changed after they were rendered."""
    text = getattr(metric, _TEXT, None)
    if text is None:
        try:
            text = _format(metric)
        except _NotPlain:
            text = generate_latest(_One(metric))  # type: ignore[arg-type]
        try:
            setattr(metric, _TEXT, text)
        except AttributeError:  # a family class with slots: render it each time
            pass
    return text


class Exposition:
    """What one worker exposes: its ``prometheus_client`` registry (pipeline counters, Faust's
    engine metrics, worker and store state) plus the collectors whose values depend on the time
    they are read at (every family's windows, customer health).

    The read time travels with the call: :meth:`at` is a per-request view (as client_python's
    ``restricted_registry``), so ``/metrics?at=T`` never changes what a concurrent read sees.
    """

    def __init__(self, registry: CollectorRegistry, clock: Callable[[], float] = time.time) -> None:
        self.registry = registry
        self.clock = clock
        self._timed: list[Callable[[float], Iterable[Metric]]] = []

    def add(self, collect: Callable[[float], Iterable[Metric]]) -> None:
        """Add a collector read at the scrape's time."""
        self._timed.append(collect)

    def at(self, now: float | None = None) -> ScrapeView:
        return ScrapeView(self, self.clock() if now is None else now)

    def render(self, now: float | None = None) -> bytes:
        """The text exposition read at ``now`` (default: the wall clock): what
        ``generate_latest(self.at(now))`` writes, unchanged families copied from their cache (the
        registry's families are new objects every time: written by the fast formatter)."""
        at = self.clock() if now is None else now
        parts = [family_text(m) for m in self.registry.collect()]
        for collect in self._timed:
            parts.extend(family_text(m) for m in collect(at))
        return b"".join(parts)


class ScrapeView:
    """Everything a worker exposes, read at one time (what ``generate_latest`` collects)."""

    def __init__(self, exposition: Exposition, now: float) -> None:
        self.exposition = exposition
        self.now = now

    def collect(self) -> Iterator[Metric]:
        yield from self.exposition.registry.collect()
        for collect in self.exposition._timed:
            yield from collect(self.now)
