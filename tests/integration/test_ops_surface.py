"""What upstream teams and operators touch, against the real stack and a real worker process:
the producer helper (sync and async), HTTP ingest (POST /events) and ``stream-app top --once``."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream_app.client import AsyncEventClient, EventClient, EventRejected
from stream_app.config import Settings

from tests.support.worker import WorkerProcess, settings_of, total, wait_for, worker_env

pytestmark = pytest.mark.integration

TOKEN = "t0ken-" + uuid.uuid4().hex
MAX_BYTES = 100_000
MAX_EVENTS = 50


class Worker:
    def __init__(self, proc: WorkerProcess, settings: Settings, bootstrap: str) -> None:
        self.proc, self.settings, self.bootstrap = proc, settings, bootstrap
        self.topics = settings.input_topics()

    def counts(self) -> dict[str, float]:
        """valid events by (topic, type), invalid by topic, consumed by topic, flattened."""
        s = self.proc.samples()
        out: dict[str, float] = {}
        for key, v in s.get("stream_app_events_valid_total", {}).items():
            labels = dict(key)
            out[f"valid:{labels['type']}"] = out.get(f"valid:{labels['type']}", 0.0) + v
        out["invalid"] = total(s, "stream_app_events_invalid_total")
        out["consumed"] = total(s, "stream_app_events_consumed_total")
        return out

    def wait_counted(self, before: dict[str, float], expected_types: dict[str, int]) -> dict[str, float]:
        """Wait until the worker counted exactly ``expected_types`` more valid events."""

        def delta() -> dict[str, float] | None:
            now = self.counts()
            got = {t: now.get(f"valid:{t}", 0.0) - before.get(f"valid:{t}", 0.0) for t in expected_types}
            return now if got == expected_types else None

        return wait_for(delta, 60, message=f"worker counts {expected_types}")


@pytest.fixture(scope="module")
def worker(stack, tmp_path_factory) -> Iterator[Worker]:
    app_id = f"ops-{uuid.uuid4().hex[:8]}"
    env = worker_env(
        stack,
        app_id,
        store="memory",
        ingest_token=TOKEN,
        http_ingest_max_bytes=MAX_BYTES,
        http_ingest_max_events=MAX_EVENTS,
    )
    settings = settings_of(env)
    proc = WorkerProcess(env, tmp_path_factory.mktemp("ops")).start()
    try:
        yield Worker(proc, settings, stack.bootstrap)
    finally:
        proc.stop()
        assert TOKEN not in proc.log_path.read_text(errors="replace"), "the ingest token was logged"


def _post(worker: Worker, body, *, content_type="application/json", token: str | None = TOKEN, headers=None):
    hdrs = {"Content-Type": content_type, **(headers or {})}
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(worker.proc.base_url + "/events", data=body, headers=hdrs, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null"), dict(e.headers)


async def _read_at(bootstrap: str, topic: str, partition: int, offset: int):
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        records = await consumer.getmany(tp, timeout_ms=10_000, max_records=1)
        return records[tp][0]
    finally:
        await consumer.stop()


async def _count_all(bootstrap: str, topic: str, seconds: float = 3.0) -> int:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    n = 0
    try:
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                n += len(msgs)
    finally:
        await consumer.stop()
    return n


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


# --------------------------------------------------------------------------- producer helper


def test_client_sync_and_async_deliver_events_the_worker_counts(worker):
    before = worker.counts()
    kw = dict(source="ops-test", settings=worker.settings)
    with EventClient(**kw) as client:
        created = client.ticket_created(
            ticket_id="T-ops-1", account_id="A-1", requester_id="U-1", channel="email", priority="urgent", team="ops"
        )
        # Invalid input raises before anything is sent.
        with pytest.raises(EventRejected) as info:
            client.ticket_created(ticket_id="T-bad", account_id="A-1", requester_id="U-1", channel="fax",
                                  priority="urgent", team="ops")
        assert info.value.reason == "invalid" and "data.channel" in info.value.detail
        with pytest.raises(EventRejected) as info:
            # a model whose subject was changed behind validation's back; the first one is fine
            tampered = client.build("ticket.reopened", ticket_id="T").event.model_copy(update={"subject": "other"})
            client.send_many([client.build("activity.login", user_id="u-ops-1", account_id="A-1", session_id="s1"),
                              tampered])
        assert info.value.reason == "subject_mismatch" and "[1]" in info.value.detail
        batch = client.send_many(
            [
                client.build("activity.login", user_id="u-ops-1", account_id="A-1", session_id="s1"),
                client.build("survey.nps", response_id="r-ops-1", score=10, account_id="A-1"),
            ]
        )

    async def async_part():
        async with AsyncEventClient(**kw) as aclient:
            started = await aclient.subscription_started(
                account_id="A-1", subscription_id="S-1", plan="team", amount_minor=4900, currency="EUR", interval="month"
            )
            with pytest.raises(EventRejected) as ainfo:
                await aclient.survey_nps(response_id="r-bad", score=11)
            assert ainfo.value.reason == "invalid" and "data.score" in ainfo.value.detail
            feature = await aclient.send("activity.feature_used", user_id="u-ops-1", account_id="A-1", feature="reports.export")
            return started, feature

    started, feature = asyncio.run(async_part())

    deliveries = [created, *batch, started, feature]
    assert [d.topic for d in deliveries] == [
        worker.topics["ticket"], worker.topics["activity"], worker.topics["survey"],
        worker.topics["subscription"], worker.topics["activity"],
    ]
    assert [d.key for d in deliveries] == ["T-ops-1", "u-ops-1", "r-ops-1", "A-1", "u-ops-1"]
    # Key = subject on the wire, and the stored value is the validated event.
    record = asyncio.run(_read_at(worker.bootstrap, created.topic, created.partition, created.offset))
    assert record.key == b"T-ops-1" and json.loads(record.value)["id"] == created.id

    expected = {"ticket.created": 1, "activity.login": 1, "survey.nps": 1, "subscription.started": 1,
                "activity.feature_used": 1}
    after = worker.wait_counted(before, expected)
    # Nothing else arrived: the invalid ones never left the client.
    assert after["consumed"] - before["consumed"] == sum(expected.values())
    assert after["invalid"] == before["invalid"]


# --------------------------------------------------------------------------- HTTP ingest


def _ticket(ticket_id: str, **data) -> dict:
    return {
        "id": str(uuid.uuid4()), "source": "http-test", "type": "ticket.created", "time": _now_iso(),
        "subject": ticket_id,
        "data": {"ticket_id": ticket_id, "account_id": "A-2", "requester_id": "U-2", "channel": "web",
                 "priority": "high", "team": "ops", **data},
    }


def test_http_ingest_single_batch_and_ndjson(worker):
    before = worker.counts()
    ingest_before = worker.proc.samples()

    # single event
    single = _ticket("T-http-1")
    status, body, _ = _post(worker, json.dumps(single).encode())
    assert status == 200, body
    assert body["accepted"] == 1 and body["results"][0]["id"] == single["id"]

    # batch mixing valid and invalid events
    nps = {"id": str(uuid.uuid4()), "source": "http-test", "type": "survey.nps", "time": _now_iso(),
           "subject": "r-http-1", "data": {"response_id": "r-http-1", "score": 3}, "traceparent": "00-ab-01"}
    login = {"id": str(uuid.uuid4()), "source": "http-test", "type": "activity.login", "time": _now_iso(),
             "subject": "u-http-1", "data": {"user_id": "u-http-1", "account_id": "A-2", "session_id": "s"}}
    bad_priority = _ticket("T-http-2", priority="whenever")
    future = _ticket("T-http-3")
    future["time"] = (datetime.now(timezone.utc) + timedelta(hours=3)).isoformat()
    elements = [
        json.dumps(nps, indent=2),
        json.dumps(bad_priority),
        "42",
        json.dumps(login),
        json.dumps(future),
    ]
    status, body, _ = _post(worker, ("[" + ",\n ".join(elements) + "]").encode())
    assert status == 207, body
    results = body["results"]
    assert [r["index"] for r in results] == [0, 1, 2, 3, 4]
    assert [r["status"] for r in results] == ["accepted", "rejected", "rejected", "accepted", "rejected"]
    assert [r["id"] for r in results] == [nps["id"], bad_priority["id"], None, login["id"], future["id"]]
    assert [r["reason"] for r in results] == [None, "invalid", "not_an_object", None, "future_time"]
    assert "data.priority" in results[1]["detail"]
    assert "whenever" not in results[1]["detail"]  # field paths and error kinds only
    assert (body["accepted"], body["rejected"]) == (2, 3)

    # accepted events are stored byte for byte, keyed by subject, on their family's topic
    stored = asyncio.run(_read_at(worker.bootstrap, results[0]["topic"], results[0]["partition"], results[0]["offset"]))
    assert results[0]["topic"] == worker.topics["survey"]
    assert stored.key == b"r-http-1" and stored.value == elements[0].encode()
    assert ("x-ingested-via", b"http") in list(stored.headers)

    # NDJSON: one valid, one malformed line
    ticket4 = _ticket("T-http-4")
    status, body, _ = _post(
        worker, (json.dumps(ticket4) + "\n{oops\n").encode(), content_type="application/x-ndjson"
    )
    assert status == 207
    assert [(r["status"], r["reason"]) for r in body["results"]] == [("accepted", None), ("rejected", "malformed_json")]

    # all rejected -> 400 with the per-event results
    status, body, _ = _post(worker, json.dumps([bad_priority]).encode())
    assert status == 400 and body["results"][0]["reason"] == "invalid"

    expected = {"ticket.created": 2, "survey.nps": 1, "activity.login": 1}
    after = worker.wait_counted(before, expected)
    # Rejected at the door: the worker never saw them, the dead-letter topic stays empty.
    assert after["consumed"] - before["consumed"] == sum(expected.values())
    assert after["invalid"] == before["invalid"]
    assert asyncio.run(_count_all(worker.bootstrap, worker.settings.topic_deadletter)) == 0

    s = worker.proc.samples()
    name = "stream_app_http_ingest_events_total"

    def inc(**labels):
        return total(s, name, **labels) - total(ingest_before, name, **labels)

    assert inc(outcome="accepted") == 4
    assert inc(outcome="rejected", reason="invalid") == 2
    assert inc(outcome="rejected", reason="not_an_object") == 1
    assert inc(outcome="rejected", reason="future_time") == 1
    assert inc(outcome="rejected", reason="malformed_json") == 1


def test_http_ingest_limits_and_token(worker):
    one = json.dumps(_ticket("T-http-limits")).encode()
    # no token, wrong token -> 401 before anything is read
    status, body, headers = _post(worker, one, token=None)
    assert status == 401 and body["error"] == "unauthorized"
    assert headers.get("WWW-Authenticate", "").startswith("Bearer")
    assert _post(worker, one, token="wrong")[0] == 401
    # oversize: by Content-Length, and chunked without one
    big = b"[" + b" " * MAX_BYTES + b"]"
    status, body, _ = _post(worker, big)
    assert status == 413 and body["error"] == "too_large"
    status, body, _ = _post(worker, iter([b" " * 60_000] * 3), headers={"Transfer-Encoding": "chunked"})
    assert status == 413 and body["error"] == "too_large"
    # too many events
    status, body, _ = _post(worker, b"\n".join([one] * (MAX_EVENTS + 1)), content_type="application/x-ndjson")
    assert status == 413 and body["error"] == "too_many_events"
    # not JSON media type
    assert _post(worker, one, content_type="text/plain")[0] == 415
    # right token -> accepted
    status, body, _ = _post(worker, one)
    assert status == 200 and body["accepted"] == 1
    s = worker.proc.samples()
    assert total(s, "stream_app_http_ingest_requests_total", code="401") >= 2
    assert total(s, "stream_app_http_ingest_requests_total", code="413") >= 3


# --------------------------------------------------------------------------- stream-app top


def test_top_once_shows_the_workers_numbers(worker):
    # One event per family, so every headline has a number, then wait until they are counted.
    before = worker.counts()
    with EventClient(source="top-test", settings=worker.settings) as client:
        client.ticket_created(ticket_id="T-top-1", account_id="A-3", requester_id="U-3", channel="chat",
                              priority="low", team="ops")
        client.activity_login(user_id="u-top-1", account_id="A-3", session_id="s-top")
        client.subscription_started(account_id="A-3", subscription_id="S-3", plan="pro", amount_minor=9900,
                                    currency="USD", interval="month")
        client.survey_nps(response_id="r-top-1", score=9, account_id="A-3")
    worker.wait_counted(before, {"ticket.created": 1, "activity.login": 1, "subscription.started": 1, "survey.nps": 1})
    proc = subprocess.run(
        [sys.executable, "-m", "stream_app.cli", "top", "--url", worker.proc.base_url, "--once",
         "--interval", "0.5", "--color", "never"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    frame = proc.stdout
    s = worker.proc.samples()

    backlog = total(s, "stream_app_support_backlog_tickets")
    dau = total(s, "stream_app_usage_active_users", window="24h")
    mau = total(s, "stream_app_usage_active_users", window="30d")
    mrr = total(s, "stream_app_revenue_mrr_reporting")
    promoters = total(s, "stream_app_voice_responses", kind="nps", category="promoter", window="30d")
    detractors = total(s, "stream_app_voice_responses", kind="nps", category="detractor", window="30d")
    responses = total(s, "stream_app_voice_responses", kind="nps", window="30d")
    assert backlog >= 1 and dau >= 1 and mrr > 0 and responses >= 1
    assert re.search(rf"backlog {backlog:,.0f} ", frame), frame
    assert re.search(rf"DAU {dau:,.0f}\s+MAU {mau:,.0f}", frame), frame
    assert f"MRR {mrr:,.2f} " in frame, frame
    assert f"NPS {100 * (promoters - detractors) / responses:+.1f} (n={responses:,.0f} over 30d)" in frame, frame
    for band in ("healthy", "neutral", "at_risk"):
        assert re.search(rf"{band} {total(s, 'stream_app_health_accounts', band=band):,.0f}\b", frame), frame
    assert "workers 1/1 ready" in frame
    for topic in worker.topics.values():
        assert topic in frame
