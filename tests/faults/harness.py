"""Fault-injection harness: a generated event log fed to real workers while faults happen.

A ``Feeder`` thread produces the log to fresh topics at a steady rate, so
events keep flowing while the main thread kills workers, scales them, restarts
Redis or Kafka. A ``FaultRun`` owns one scenario's topics, consumer group and
worker processes; it tallies the pipeline counters of every worker
incarnation (a killed process takes its counters with it, so they are read
just before each fault), measures recovery times from Kafka's own view of the
group (committed vs end offsets), and at the end compares every metric with
the batch reference (tests/support/references.py).

Services are restarted only from the main (test) thread and left running.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from stream_app.tools.generator import Faults, GeneratedEvent, generate
from stream_app.tools.producer import EventProducer

from stream_app.worker.offsets import read_offsets_log
from tests.support.kafka import read_topic
from tests.support.references import compare_with_reference, reference_events, too_late_events
from tests.support.worker import WorkerProcess, settings_of, total, wait_for, worker_env

DAY = 86400.0
# STREAM_APP_SOAK=1: a longer, denser log and more faults per scenario.
SOAK = os.environ.get("STREAM_APP_SOAK", "") not in ("", "0")
LOG_DAYS = 3.0 if SOAK else 1.0
RATE = 0.15 if SOAK else 0.1  # events per second of event time: ~39k (soak) or ~8.6k messages
# Messages per wall-clock second while a scenario runs: below one worker's
# throughput on 2 shared cores (~300/s), so lag before a fault is small and the
# recovery times measure the fault, not a backlog the worker never had time for.
FEED_RATE = 250.0
PARTITIONS = 4

# Log lines that mean an event's effect was dropped (the worker survives them).
BAD_LOG_LINES = ("could not be applied", "processing failed for")

COUNTERS = {
    "consumed": "stream_app_events_consumed_total",
    "duplicates": "stream_app_events_duplicate_total",
    "deadlettered": "stream_app_events_deadlettered_total",
    "too_late": "stream_app_events_too_late_total",
    "lost_to_retention": "stream_app_events_lost_to_retention_total",
}
# Every worker appends the source offsets its agents receive here (in its own work dir):
# STREAM_APP_DEBUG_OFFSETS_LOG, checked by FaultRun.offset_gaps.
OFFSETS_LOG = "offsets.log"


@dataclass
class EventLog:
    events: list[GeneratedEvent]
    valid: list[dict]  # decoded valid events in the references' plain form
    too_late: int
    invalid: int
    duplicates: int


def make_event_log(seed: int = 20261124, days: float = LOG_DAYS, rate: float = RATE) -> EventLog:
    """``days`` of event time ending now, ``rate`` generator events per second of event time
    (about ``rate * days * 86400`` messages), with every kind of fault."""
    now = time.time()
    faults = Faults(duplicate=0.02, out_of_order=0.02, late=0.01, invalid=0.005)
    events = generate(seed=seed, start=now - days * DAY, duration_seconds=days * DAY - 120, rate=rate,
                      faults=faults)  # fmt: skip
    too_late = too_late_events(now)
    events += too_late
    valid = reference_events(events, now)
    return EventLog(events, valid, len(too_late), sum(e.is_invalid for e in events),
                    sum(e.is_duplicate for e in events))  # fmt: skip


class Feeder:
    """Produces events from a background thread at ``rate`` messages/s; ``acked`` counts confirmations.

    ``pause()``/``resume()`` hold production between sends (e.g. around a
    broker restart, when the test wants traffic before and after only).
    """

    def __init__(self, bootstrap: str, topics: dict[str, str], events: list[GeneratedEvent], rate: float) -> None:
        self.bootstrap, self.topics, self.events, self.rate = bootstrap, topics, events, rate
        self.acked = 0
        self.error: BaseException | None = None
        self._go = threading.Event()
        self._go.set()
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)

    def start(self) -> Feeder:
        self._thread.start()
        return self

    def pause(self) -> None:
        self._go.clear()

    def resume(self) -> None:
        self._go.set()

    def _run(self) -> None:
        try:
            asyncio.run(self._produce())
        except BaseException as exc:  # noqa: BLE001 - reported by wait_*/join
            self.error = exc

    async def _produce(self) -> None:
        # Long request timeout: a send may wait out a broker restart; the
        # idempotent producer retries without writing duplicates.
        async with EventProducer(self.bootstrap, self.topics, request_timeout_ms=120000) as producer:
            t0 = time.monotonic()
            sent_paused = 0.0
            for i, ev in enumerate(self.events):
                if not self._go.is_set():
                    p0 = time.monotonic()
                    while not self._go.is_set():
                        await asyncio.sleep(0.05)
                    sent_paused += time.monotonic() - p0
                ahead = t0 + sent_paused + i / self.rate - time.monotonic()
                if ahead > 0.002:
                    await asyncio.sleep(ahead)
                fut = await producer.send_generated(ev)
                fut.add_done_callback(self._on_ack)
            await producer.flush()

    def _on_ack(self, fut: asyncio.Future) -> None:
        if not fut.cancelled() and fut.exception() is None:
            self.acked += 1

    def wait_acked(self, n: int, timeout: float = 300) -> None:
        n = min(n, len(self.events))
        wait_for(lambda: self.acked >= n or self.error, timeout=timeout, interval=0.1, message=f"{n} events produced")
        if self.error:
            raise self.error

    def join(self, timeout: float = 300) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "feeder did not finish"
        if self.error:
            raise self.error
        assert self.acked == len(self.events), f"only {self.acked} of {len(self.events)} events acknowledged"


# --------------------------------------------------------------------------
# Kafka's view of the group (survives worker deaths)
# --------------------------------------------------------------------------


async def _group_positions(bootstrap: str, group: str, topics: list[str]) -> tuple[dict, dict]:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    tps = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=5000)
    try:
        async with asyncio.timeout(10):
            await admin.start()
            await consumer.start()
            ends = await consumer.end_offsets(tps)
            committed = await admin.list_consumer_group_offsets(group, partitions=tps)
    finally:
        await consumer.stop()
        await admin.close()
    return ({(tp.topic, tp.partition): v for tp, v in ends.items()},
            {(tp.topic, tp.partition): m.offset for tp, m in committed.items()})  # fmt: skip


# --------------------------------------------------------------------------
# One scenario
# --------------------------------------------------------------------------


@dataclass
class Recovery:
    fault: str
    t0: float  # monotonic time of the fault
    target: dict  # end offsets when the fault happened
    ready_seconds: float | None = None  # fault -> every live worker ready again (last time regained)
    caught_up_seconds: float | None = None  # fault -> everything produced before the fault committed
    unready: bool = True  # not (yet) seen ready since the last not-ready observation

    @property
    def done(self) -> bool:
        return not self.unready and self.caught_up_seconds is not None


@dataclass
class FaultRun:
    """Topics, consumer group, workers and counters of one scenario."""

    stack: object
    log: EventLog
    tmp_path: Path
    name: str
    settings: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        run = f"flt-{self.name}-{uuid.uuid4().hex[:6]}"
        self.app_id = run
        self.topics = {f: f"{run}.{f}" for f in ("ticket", "activity", "subscription", "survey")}
        self.stack.create_topics(list(self.topics.values()), partitions=PARTITIONS)
        self.env = worker_env(self.stack, run, topics=self.topics, store="redis", session_timeout_seconds=6,
                              debug_offsets_log=OFFSETS_LOG, **self.settings)  # fmt: skip
        self.workers: list[WorkerProcess] = []
        self.tallies: dict[int, dict[str, float]] = {}  # pid -> last counters seen
        self.recoveries: list[Recovery] = []
        self.feeder: Feeder | None = None
        self.started = time.monotonic()
        self.committed = 0
        self._last_check = 0.0
        self._acked_before = 0
        self._down: set[Path] = set()

    @property
    def signals_topic(self) -> str:
        return settings_of(self.env).health_signals_topic()

    # -- workers -----------------------------------------------------------
    def worker(self, name: str = "w0", **env: str) -> WorkerProcess:
        w = WorkerProcess({**self.env, **env}, self.tmp_path, name=name)
        self.workers.append(w)
        return w

    def live(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.proc is not None and w.proc.poll() is None]

    def observe(self) -> None:
        """Advance the pending recovery clocks and tally the counters."""
        self._check_recoveries()
        self._tally()

    def _tally(self) -> None:
        """Remember each live incarnation's counters (they die with a kill -9)."""
        for w in self.live():
            try:
                s = w.samples()
            except OSError:
                continue
            self.tallies[w.proc.pid] = {k: total(s, name) for k, name in COUNTERS.items()}

    def counter(self, key: str) -> float:
        return sum(t.get(key, 0.0) for t in self.tallies.values())

    def start(self, w: WorkerProcess, *, wait: bool = True) -> WorkerProcess:
        """Start ``w``; with ``wait`` (default) return once it is ready."""
        self._down.discard(w.workdir)
        w.start(ready_timeout=180, wait=wait)
        return w

    def kill(self, w: WorkerProcess) -> None:
        self._tally()
        self._down.add(w.workdir)
        w.kill()

    def stop(self, w: WorkerProcess) -> None:
        self._tally()
        self._down.add(w.workdir)
        w.stop()

    def assert_alive(self) -> None:
        """No worker died on its own (a crash is a failure even if the numbers end right)."""
        for w in self.workers:
            if w.workdir not in self._down and w.proc is not None:
                assert w.proc.poll() is None, f"{w.workdir.name} exited with {w.proc.returncode}:\n{w.log_tail()}"

    # -- traffic -------------------------------------------------------------
    def feed(self, rate: float = FEED_RATE, events: list[GeneratedEvent] | None = None) -> Feeder:
        """Produce ``events`` (default: the whole log) in the background; a later call goes on with
        another part of the log (``at_fraction`` counts what the earlier ones sent)."""
        if self.feeder is not None:
            self.feeder.join()
            self._acked_before += self.feeder.acked
        self.feeder = Feeder(self.stack.bootstrap, self.topics, self.log.events if events is None else events,
                             rate).start()  # fmt: skip
        return self.feeder

    def at_fraction(self, fraction: float) -> None:
        """Block until this fraction of the log is acknowledged by Kafka (observing meanwhile)."""
        n = int(len(self.log.events) * fraction)
        deadline = time.monotonic() + 300
        while self._acked_before + self.feeder.acked < n and not self.feeder.error:
            assert time.monotonic() < deadline, f"feeder stuck at {self.feeder.acked}/{n}"
            self.observe()
            time.sleep(0.2)
        if self.feeder.error:
            raise self.feeder.error

    # -- Kafka's view ----------------------------------------------------------
    def positions(self, with_signals: bool = False) -> tuple[dict, dict] | None:
        topics = list(self.topics.values()) + ([self.signals_topic] if with_signals else [])
        try:
            return asyncio.run(_group_positions(self.stack.bootstrap, self.app_id, topics))
        except Exception:  # noqa: BLE001 - broker restarting: no answer yet
            return None

    def ends(self) -> dict:
        pos = wait_for(self.positions, timeout=60, interval=0.5, message="end offsets")
        return pos[0]

    def fault(self, name: str, target: dict | None = None) -> Recovery:
        """Start a recovery clock now; ``target`` = end offsets the fault must not lose."""
        rec = Recovery(name, time.monotonic(), self.ends() if target is None else target)
        self.recoveries.append(rec)
        return rec

    def _check_recoveries(self) -> None:
        self.assert_alive()
        pending = [r for r in self.recoveries if not r.done]
        now = time.monotonic()
        if not pending or now - self._last_check < 0.5:
            return
        self._last_check = now
        live = self.live()
        ready = bool(live) and all(w.http_status("/readyz") == 200 for w in live)
        pos = self.positions()
        for rec in pending:
            # A worker may turn unready late (e.g. it notices a broker restart only on its
            # next request): the clock stops when readiness is regained for good.
            if ready and rec.unready:
                rec.ready_seconds, rec.unready = now - rec.t0, False
            elif not ready:
                rec.unready = True
            if rec.caught_up_seconds is None and pos is not None:
                if all(pos[1].get(tp, -1) >= end for tp, end in rec.target.items()):
                    rec.caught_up_seconds = now - rec.t0
            if rec.done:
                print(f"  {rec.fault}: ready after {rec.ready_seconds:.1f}s, caught up after {rec.caught_up_seconds:.1f}s")

    def settle(self, timeout: float = 180) -> None:
        """Wait until every recovery clock has stopped."""
        try:
            wait_for(lambda: self.observe() or all(r.done for r in self.recoveries), timeout=timeout, interval=0.25,
                     message=f"{self.name}: recovery of {[r.fault for r in self.recoveries if not r.done]}")  # fmt: skip
        except AssertionError as exc:
            raise AssertionError(f"{exc}; {self._stuck()}") from None

    def _stuck(self) -> str:
        """What a recovery still waits for: readiness, or the partitions not committed that far."""
        pos = self.positions()
        out = []
        for rec in (r for r in self.recoveries if not r.done):
            behind = {f"{tp[0]}[{tp[1]}]": (pos[1].get(tp, -1) if pos else None, end)
                      for tp, end in rec.target.items() if pos is None or pos[1].get(tp, -1) < end}  # fmt: skip
            out.append(f"{rec.fault}: {'unready' if rec.unready else 'ready'}, (committed, needed) {behind}")
        return "; ".join(out)

    def finish(self, timeout: float = 300) -> None:
        """Everything produced, consumed and committed (inputs and health signals), workers ready."""
        self.feeder.join()
        self.settle(timeout)
        ends = self.ends()

        def done() -> bool:
            self.observe()
            pos = self.positions(with_signals=True)
            if pos is None:
                return False
            e, c = pos
            self.committed = sum(c.get(tp, 0) for tp in ends)
            return (
                all(c.get(tp, -1) >= v for tp, v in ends.items())
                and all(c.get(tp, -1) >= v for tp, v in e.items() if tp[0] == self.signals_topic)
                and all(w.http_status("/readyz") == 200 for w in self.live())
            )

        wait_for(done, timeout=timeout, interval=1.0, message=f"{self.name}: all events processed")
        self.observe()

    # -- verdict -----------------------------------------------------------------
    def deadletters(self) -> tuple[int, int, dict[str, int]]:
        """(messages on the dead-letter topic, distinct source offsets, by reason)."""
        topic = self.env["STREAM_APP_TOPIC_DEADLETTER"]
        headers = [dict(m.headers) for m in asyncio.run(read_topic(self.stack.bootstrap, topic, PARTITIONS))]
        sources = {(h["x-source-topic"], h["x-source-partition"], h["x-source-offset"]) for h in headers}
        reasons: dict[str, int] = {}
        for h in headers:
            r = h["x-reject-reason"].decode()
            reasons[r] = reasons.get(r, 0) + 1
        return len(headers), len(sources), reasons

    def offset_gaps(self) -> list[tuple[str, int, int, int]]:
        """(topic, partition, first, last) of every source offset, inputs and health signals,
        that no worker incarnation's agents received (the workers' debug offsets logs)."""
        seen: dict[tuple[str, int], list[tuple[int, int]]] = {}
        for w in self.workers:
            path = w.workdir / OFFSETS_LOG
            if path.exists():
                for key, ranges in read_offsets_log(str(path)).items():
                    seen.setdefault(key, []).extend(ranges)
        ends = wait_for(lambda: self.positions(with_signals=True), timeout=60, message="end offsets")[0]
        gaps = []
        for (topic, partition), end in sorted(ends.items()):
            nxt = 0
            for a, b in sorted(seen.get((topic, partition), [])):
                if a > nxt:
                    gaps.append((topic, partition, nxt, a - 1))
                nxt = max(nxt, b + 1)
            if nxt < end:
                gaps.append((topic, partition, nxt, end - 1))
        return gaps

    def compare(self, at: float | None = None, valid: list[dict] | None = None) -> dict:
        """Every live worker's /metrics at one instant vs the batch reference over ``valid`` (default:
        the whole log): counts of samples missing, lost, double counted, extra
        (``compare_with_reference``)."""
        valid = self.log.valid if valid is None else valid
        return compare_with_reference(self.live(), valid, settings_of(self.env), self.stack.bootstrap, at)

    def verdict(self) -> dict:
        """Compare with the reference, print the scenario's figures, assert nothing lost or doubled."""
        self.assert_alive()
        diff = self.compare()
        gaps = self.offset_gaps()
        dlq_messages, dlq_sources, reasons = self.deadletters()
        figures = {
            "produced": len(self.log.events),
            "processed": self.committed,  # committed input offsets: each message handled (at least once)
            "reads": int(self.counter("consumed")),  # incl. redeliveries; a lower bound (see observe)
            "deduplicated": int(self.counter("duplicates")),
            "dead_lettered": dlq_sources,
            "dead_letter_messages": dlq_messages,
            "samples_checked": diff["checked"],
            "lost": diff["missing"] + diff["lost"],
            "double_counted": diff["double"] + diff["extra"],
            "offsets_not_received": sum(b - a + 1 for _, _, a, b in gaps),
            "recoveries": [(r.fault, round(r.ready_seconds, 1), round(r.caught_up_seconds, 1)) for r in self.recoveries],
            "seconds": time.monotonic() - self.started,
        }
        rec = "; ".join(f"{f}: ready {a:.1f}s, caught up {b:.1f}s" for f, a, b in figures["recoveries"]) or "-"
        print(
            f"\n[{self.name}] produced {figures['produced']}, processed {figures['processed']} "
            f"(reads seen incl. redeliveries {figures['reads']}), deduplicated {figures['deduplicated']} (log duplicates {self.log.duplicates}), "
            f"dead-lettered {dlq_sources} ({dlq_messages} DLQ messages, log invalid {self.log.invalid}), "
            f"lost {figures['lost']}, double counted {figures['double_counted']} "
            f"({diff['checked']} samples checked); source offsets not received by an agent "
            f"{figures['offsets_not_received']}; recovery: {rec}; {figures['seconds']:.0f}s"
        )
        assert diff["missing"] == diff["lost"] == diff["double"] == diff["extra"] == 0, diff
        assert not gaps, f"source offsets no agent received: {gaps[:5]}"
        assert self.counter("lost_to_retention") == 0
        assert dlq_sources == self.log.invalid, (dlq_sources, self.log.invalid, reasons)
        assert "processing_error" not in reasons, reasons
        self.assert_clean_logs()
        assert figures["processed"] == figures["produced"], figures
        return figures

    def assert_clean_logs(self) -> None:
        """No event or signal was dropped by an exception inside a worker."""
        for w in self.workers:
            text = w.log_path.read_text(errors="replace") if w.log_path.exists() else ""
            bad = [ln for ln in text.splitlines() if any(p in ln for p in BAD_LOG_LINES)]
            assert not bad, f"{w.workdir.name}: {len(bad)} failures logged, e.g. {bad[:3]}"

    def close(self) -> None:
        if self.feeder is not None:
            self.feeder.resume()
        for w in self.workers:
            w.stop()


def wait_ready(workers: Iterable[WorkerProcess], timeout: float = 120) -> None:
    wait_for(lambda: all(w.http_status("/readyz") == 200 for w in workers), timeout=timeout, message="workers ready")
