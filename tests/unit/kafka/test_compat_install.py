"""stream_app.kafka.compat.install: every patch on a real Faust app, only for the versions read;
the guard's counters as Prometheus families, on the worker's /metrics registry."""

from __future__ import annotations

import asyncio

import faust
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from stream_app.kafka import compat
from stream_app.kafka.compat import drain, positions


def _app(name: str) -> faust.App:
    return faust.App(name, broker="kafka://127.0.0.1:1", store="memory://", web_enabled=False)


def test_install_puts_the_guard_and_the_inline_hand_over_on_the_consumer():
    async def scenario():
        app = _app("compat-install")
        guard = compat.install(app, {"app.ticket"})
        consumer = app.consumer
        assert isinstance(guard, positions.PositionGuard) and guard.sources == {"app.ticket"}
        assert consumer.perform_seek == guard.perform_seek and consumer.getmany == guard.getmany
        assert consumer.wait_first == consumer._stream_app_fast_hand_over.wait_first
        assert isinstance(consumer._stream_app_fast_hand_over, drain.FastHandOver)
        assert compat.install(app, {"app.ticket"}) is guard  # a second install changes nothing

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("dist", "have"),
    [("mode-streaming", "0.8.0"), ("mode-streaming", "0.5.9"), ("faust-streaming", "0.16.0"), ("aiokafka", "0.13.0")],
)
def test_install_refuses_versions_it_was_not_written_for(monkeypatch, dist, have):
    real = compat.version
    monkeypatch.setattr(compat, "version", lambda d: have if d == dist else real(d))
    with pytest.raises(compat.CompatError, match=f"{dist} {have} is not supported"):
        compat.install(_app(f"compat-refuse-{dist}"), {"app.ticket"})


def test_the_installed_versions_are_supported():
    compat.check_versions()


def test_guard_counters_are_exposed():
    async def scenario():
        guard = positions.PositionGuard(_app("compat-metrics").consumer, {"app.ticket"})
        guard.discarded, guard.epoch = 7, 2
        registry = CollectorRegistry()

        class Collector:
            def collect(self):
                return compat.guard_metric_families(guard)

        registry.register(Collector())
        return generate_latest(registry).decode()

    text = asyncio.run(scenario())
    assert "stream_app_consumer_prefetch_discarded_total 7.0" in text
    assert "stream_app_consumer_seeks_total 2.0" in text


def test_the_worker_exposes_the_guard_counters():
    from stream_app.config import Settings
    from stream_app.worker.app import StreamWorker

    async def scenario():
        worker = StreamWorker(Settings(app_id="compat-worker", store="memory"))
        worker.app.consumer._stream_app_position_guard.discarded = 3
        return generate_latest(worker.registry).decode()

    text = asyncio.run(scenario())
    assert "stream_app_consumer_prefetch_discarded_total 3.0" in text
    assert "stream_app_consumer_seeks_total 0.0" in text
