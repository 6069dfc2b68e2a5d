"""The worker's /metrics text: the cached, fast rendering writes what prometheus_client's
generate_latest writes, family by family and for a whole worker."""

from __future__ import annotations

import math
import time

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)

from stream_app.worker.exposition import family_text


class _One:
    def __init__(self, metric: Metric) -> None:
        self.metric = metric

    def collect(self):
        return [self.metric]


def reference(metric: Metric) -> bytes:
    return generate_latest(_One(metric))  # type: ignore[arg-type]


label_names = st.sampled_from(["team", "channel", "window", "le_x", "kind", "a_b"])
label_values = st.text(max_size=12)  # quotes, backslashes, newlines, any unicode
values = st.one_of(
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True).filter(lambda v: not (v == 0 and math.copysign(1, v) < 0)),
)


@st.composite
def families(draw) -> Metric:
    kind = draw(st.sampled_from(["gauge", "counter", "gaugehistogram", "info", "unlabelled"]))
    name = "stream_app_test_" + draw(st.sampled_from(["a", "b_seconds", "c_total_x"]))
    doc = draw(st.text(max_size=30))
    names = draw(st.lists(label_names, unique=True, max_size=3))
    if kind == "unlabelled":
        return GaugeMetricFamily(name, doc, value=draw(values))
    if kind == "info":
        fam = InfoMetricFamily(name, doc, labels=names)
        for _ in range(draw(st.integers(0, 3))):
            fam.add_metric([draw(label_values) for _ in names], {"version": draw(label_values)})
        return fam
    cls = {"gauge": GaugeMetricFamily, "counter": CounterMetricFamily}.get(kind)
    if cls is not None:
        fam = cls(name, doc, labels=names)
        for _ in range(draw(st.integers(0, 4))):
            fam.add_metric([draw(label_values) for _ in names], draw(values))
        return fam
    fam = GaugeHistogramMetricFamily(name, doc, labels=names)
    for _ in range(draw(st.integers(0, 3))):
        counts = draw(st.lists(st.integers(0, 50), min_size=1, max_size=4))
        acc, buckets = 0, []
        for edge, c in zip((0.5, 1.0, 60.0), counts):
            acc += c
            buckets.append((str(edge), acc))
        buckets.append(("+Inf", acc + counts[-1]))
        fam.add_metric([draw(label_values) for _ in names], buckets, draw(values))
    return fam


@given(families())
@settings(max_examples=300, deadline=None)
def test_family_text_is_what_generate_latest_writes(fam):
    assert family_text(fam) == reference(fam)
    assert family_text(fam) == reference(fam)  # from the kept text


def test_negative_zero_is_written_as_zero():
    """The one difference: a float sum that cancels out to -0.0 reads 0.0, so families equal by
    value always have the same text."""
    fam = GaugeMetricFamily("stream_app_test_zero", "z", value=-0.0)
    assert family_text(fam).endswith(b"stream_app_test_zero 0.0\n")


def test_a_whole_worker_renders_as_generate_latest_does():
    worker = _small_worker()
    now = time.time()
    expected = generate_latest(worker.exposition.at(now))  # type: ignore[arg-type]
    assert len(expected) > 100_000
    assert worker.exposition.render(now) == expected
    assert worker.exposition.render(now) == expected  # the cached families again
    later = now + 3600  # every window moved: recomputed families
    assert worker.exposition.render(later) == generate_latest(worker.exposition.at(later))  # type: ignore[arg-type]


def _small_worker():
    """A worker whose family engines hold a generated log (as tests/unit/tools/test_dashboards.py)."""
    from stream_app.config import Settings
    from stream_app.events import EventRejected, decode_event
    from stream_app.tools.generator import generate
    from stream_app.worker.app import StreamWorker
    from tests.support.engine import EngineRunner

    now = time.time()
    worker = StreamWorker(Settings(store="memory"))
    engines = {p.family.event_family: EngineRunner(p.family) for p in worker.processors}
    for p in worker.processors:
        p.engine = engines[p.family.event_family].engine
    for raw in generate(seed=3, start=now - 3 * 3600, duration_seconds=3 * 3600 - 60, rate=0.3):
        try:
            event = decode_event(raw.value, expected_family=raw.family, now=now)
        except EventRejected:
            continue
        run = engines[raw.family]
        run.process(event)
        for change in run.signals:
            worker.health.stage.apply(change.account_id, change.message())
        run.signals.clear()
    return worker


def test_registry_families_are_rendered_by_prometheus_client():
    reg = CollectorRegistry()
    from stream_app.worker.exposition import Exposition

    exp = Exposition(reg, clock=lambda: 1000.0)
    exp.add(lambda now: [GaugeMetricFamily("stream_app_test_now", "read time", value=now)])
    assert exp.render() == b"# HELP stream_app_test_now read time\n# TYPE stream_app_test_now gauge\nstream_app_test_now 1000.0\n"
    assert exp.render(2000.0).endswith(b"stream_app_test_now 2000.0\n")
