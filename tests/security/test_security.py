"""Security: Kafka SASL/TLS and Redis ACL/TLS through every client, no secrets or personal data
in logs, errors or metric labels, and bearer-token auth plus rate limiting on the read API.

Unit tests cover stream_app/kafka/security.py, stream_app/store/connection.py and stream_app/worker/api_guard.py. The integration tests run their own broker with
SASL_PLAINTEXT and SASL_SSL listeners (SCRAM and PLAIN users; a throwaway CA made with openssl)
and a Redis with an ACL user (default user off) and a TLS port, then real workers against them.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest

from stream_app.config import Settings, secret_values
from stream_app.kafka.security import faust_broker_credentials, kafka_client_kwargs
from stream_app.store.connection import redact_url, redis_url
from stream_app.worker.api_guard import ApiGuard, RateLimiter, check_bearer
from tests.support.events import enc, event
from tests.support.worker import WorkerProcess, settings_of, total, wait_for, worker_env

KAFKA_USER, KAFKA_PW = "stream-app", "kafka-Pw-9c1e55f0"
REDIS_USER, REDIS_PW = "app", "redis-Pw-3b7d2a91"
API_TOKEN = "api-Tok-5e0c8f47d2"
SECRETS = (KAFKA_PW, REDIS_PW, API_TOKEN)


# ----------------------------------------------------------------------------- unit: settings -> clients


def test_plaintext_needs_nothing():
    s = Settings()
    assert kafka_client_kwargs(s) == {} and faust_broker_credentials(s) is None
    assert redis_url(s) == s.redis_url


def test_sasl_ssl_reaches_aiokafka_and_faust(tmp_path):
    from stream_app.tools.stack import self_signed_tls

    tls = self_signed_tls(tmp_path)
    s = Settings(
        kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username=KAFKA_USER, kafka_sasl_password=KAFKA_PW, kafka_ssl_cafile=str(tls.ca),
    )  # fmt: skip
    kw = kafka_client_kwargs(s)
    assert kw["security_protocol"] == "SASL_SSL" and kw["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (kw["sasl_plain_username"], kw["sasl_plain_password"]) == (KAFKA_USER, KAFKA_PW)
    assert kw["ssl_context"].check_hostname
    creds = faust_broker_credentials(s)
    assert creds.protocol.value == "SASL_SSL" and creds.mechanism.value == "SCRAM-SHA-512"
    assert KAFKA_PW not in repr(creds)
    plain = Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN",
                     kafka_sasl_username=KAFKA_USER, kafka_sasl_password=KAFKA_PW)  # fmt: skip
    assert "ssl_context" not in kafka_client_kwargs(plain)
    assert faust_broker_credentials(plain).protocol.value == "SASL_PLAINTEXT"
    ssl_only = Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=str(tls.ca))
    assert set(kafka_client_kwargs(ssl_only)) == {"security_protocol", "ssl_context"}


def test_sasl_without_credentials_is_a_clear_error():
    with pytest.raises(ValueError, match="KAFKA_SASL_USERNAME"):
        kafka_client_kwargs(Settings(kafka_security_protocol="SASL_PLAINTEXT"))
    with pytest.raises(ValueError, match="KAFKA_SASL_PASSWORD"):
        faust_broker_credentials(Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="u"))


def test_settings_never_show_secrets():
    s = Settings(kafka_sasl_password=KAFKA_PW, redis_password=REDIS_PW, api_token=API_TOKEN)
    for text in (repr(s), str(s), s.model_dump_json(), json.dumps(s.model_dump(), default=str)):
        assert not any(secret in text for secret in SECRETS)
    assert sorted(secret_values(s)) == sorted(SECRETS)


def test_redis_url_gets_user_password_and_ca():
    s = Settings(redis_url="rediss://cache.internal:6380/2", redis_username="app",
                 redis_password="p@ss:w/rd", redis_ssl_cafile="/etc/ca.pem")  # fmt: skip
    url = redis_url(s)
    assert url == "rediss://app:p%40ss%3Aw%2Frd@cache.internal:6380/2?ssl_ca_certs=%2Fetc%2Fca.pem"
    from redis.connection import parse_url

    parsed = parse_url(url)
    assert (parsed["username"], parsed["password"], parsed["ssl_ca_certs"]) == ("app", "p@ss:w/rd", "/etc/ca.pem")
    assert redact_url(url) == "rediss://app:***@cache.internal:6380/2?ssl_ca_certs=%2Fetc%2Fca.pem"
    # A password in the URL itself still works; the setting overrides it.
    assert parse_url(redis_url(Settings(redis_url="redis://:old@h:1/0")))["password"] == "old"
    assert parse_url(redis_url(Settings(redis_url="redis://:old@h:1/0", redis_password="new")))["password"] == "new"
    assert redact_url("redis://h:1/0") == "redis://h:1/0"


def test_redis_backend_names_its_address_without_the_password():
    from stream_app.store.redis_store import RedisBackend

    backend = RedisBackend(f"rediss://app:{REDIS_PW}@h:1/0?ssl_ca_certs=%2Fca.pem", prefix="p")
    # The address is what every log line about Redis names.
    assert REDIS_PW not in backend.address and "***" in backend.address and "h:1" in backend.address
    assert REDIS_PW in backend.url  # the client still gets it


# ----------------------------------------------------------------------------- unit: API guard


def test_bearer_check_is_exact():
    assert check_bearer(None, "") and check_bearer("anything", "")  # auth off
    assert check_bearer(f"Bearer {API_TOKEN}", API_TOKEN)
    assert check_bearer(f"bearer   {API_TOKEN} ", API_TOKEN)
    for header in (None, "", API_TOKEN, f"Basic {API_TOKEN}", f"Bearer {API_TOKEN}x", f"Bearer {API_TOKEN[:-1]}",
                   "Bearer ", f"Bearer {API_TOKEN.upper()}", "Bearer \u00e9"):  # fmt: skip
        assert not check_bearer(header, API_TOKEN), header


def test_token_bucket_per_client():
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.allow("a")[0] for _ in range(4)] == [True, True, True, False]
    allowed, retry = limiter.allow("a")
    assert not allowed and retry == pytest.approx(0.5)
    assert limiter.allow("b")[0], "clients have their own buckets"
    now[0] += 0.5  # one token back
    assert limiter.allow("a")[0] and not limiter.allow("a")[0]
    now[0] += 100  # refills only up to the burst
    assert [limiter.allow("a")[0] for _ in range(4)] == [True, True, True, False]


def test_token_bucket_memory_is_bounded():
    limiter = RateLimiter(rate=1.0, burst=1, max_clients=100, clock=lambda: 0.0)
    for i in range(10_000):
        limiter.allow(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter) == 100


def test_api_guard_limits_before_it_authenticates():
    now = [0.0]
    guard = ApiGuard(API_TOKEN, rate=1.0, burst=2, clock=lambda: now[0])
    assert guard.check(f"Bearer {API_TOKEN}", "c1") is None
    denied = guard.check("Bearer guess", "c1")
    assert denied.status == 401 and "WWW-Authenticate" in denied.headers
    denied = guard.check(f"Bearer {API_TOKEN}", "c1")  # bucket empty: even the right token waits
    assert denied.status == 429 and denied.headers["Retry-After"] == "1"
    assert API_TOKEN not in repr(guard) and API_TOKEN not in json.dumps(denied.body)
    assert guard.auth_headers() == {"Authorization": f"Bearer {API_TOKEN}"}
    off = ApiGuard()
    assert not off.enabled and off.check(None, None) is None and off.auth_headers() == {}


# ----------------------------------------------------------------------------- integration: secure stack


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    """Kafka with SASL_PLAINTEXT + SASL_SSL listeners and Redis with an ACL user and TLS."""
    from stream_app.tools.stack import KafkaBroker, RedisServer, self_signed_tls

    work = tmp_path_factory.mktemp("secure")
    tls = self_signed_tls(work / "tls")
    kafka = KafkaBroker(work / "kafka", sasl_users={KAFKA_USER: KAFKA_PW}, tls=tls)
    redis = RedisServer(work / "redis", users={REDIS_USER: REDIS_PW}, tls=tls, persist=False)
    try:
        kafka.launch()
        redis.start()
        kafka.wait_ready()
        yield kafka, redis, tls
    finally:
        kafka.stop()
        redis.stop()


def _secure_env(kafka, redis, tls, app_id: str, **overrides) -> dict[str, str]:
    stack = type("S", (), {"bootstrap": kafka.sasl_ssl_bootstrap, "redis_url": redis.rediss_url})()
    env = worker_env(stack, app_id)
    env.update({
        "STREAM_APP_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "STREAM_APP_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "STREAM_APP_KAFKA_SASL_USERNAME": KAFKA_USER,
        "STREAM_APP_KAFKA_SASL_PASSWORD": KAFKA_PW,
        "STREAM_APP_KAFKA_SSL_CAFILE": str(tls.ca),
        "STREAM_APP_REDIS_USERNAME": REDIS_USER,
        "STREAM_APP_REDIS_PASSWORD": REDIS_PW,
        "STREAM_APP_REDIS_SSL_CAFILE": str(tls.ca),
        "STREAM_APP_STORE": "redis",
    })  # fmt: skip
    env.update({f"STREAM_APP_{k.upper()}": str(v) for k, v in overrides.items()})
    return env


def _pii_events(now: float):
    """Events whose ids are e-mail addresses and whose comments are personal, for the leak check."""
    from stream_app.tools.generator import GeneratedEvent

    out = []
    for i in range(12):
        email = f"jane.doe+{i}@example.com"
        acct = f"acct-{email}"
        comment = f"My name is Jane Doe {i}, call me on +44 7700 900{i:03d}"
        for ev in (
            event("activity.login", subject=email, ts=now - 300 + i, account_id=acct, session_id=f"sess-{email}"),
            event("survey.nps", subject=f"resp-{email}", ts=now - 200 + i, score=i % 11, comment=comment,
                  account_id=acct, respondent_id=email),
            event("ticket.created", subject=f"ticket-{email}", ts=now - 100 + i, account_id=acct, requester_id=email),
        ):  # fmt: skip
            fam = {"activity": "activity", "survey": "survey", "ticket": "ticket"}[ev["type"].split(".")[0]]
            out.append(GeneratedEvent(family=fam, key=ev["subject"], value=enc(ev), time=now, emit_time=now,
                                      type=ev["type"], id=ev["id"]))  # fmt: skip
    return out


_PERSONAL_FIELDS = ("_id", "comment")


def _forbidden_values(events) -> set[str]:
    """Personal data and entity ids of the events: ids, e-mails, comment text (>= 6 chars)."""
    out = set()
    for ev in events:
        body = json.loads(ev.value)
        out.add(body["subject"])
        for k, v in body["data"].items():
            if isinstance(v, str) and (k.endswith("_id") or k == "comment") and len(v) >= 6:
                out.add(v)
    return out


def _http(url: str, token: str | None = None) -> tuple[int, dict, dict]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read() or b"{}")


@pytest.mark.integration
def test_secure_worker_counts_and_leaks_neither_secrets_nor_personal_data(secure, tmp_path):
    """SASL_SSL (SCRAM-SHA-256) to Kafka for topics, the worker and the generator; Redis store
    over TLS as an ACL user; API token and rate limit; then grep logs and /metrics."""
    import redis as redis_py
    from prometheus_client.parser import text_string_to_metric_families

    from stream_app.tools.generator import generate
    from stream_app.tools.producer import produce_log


    kafka, redis, tls = secure
    app_id = f"sec-{uuid.uuid4().hex[:8]}"
    env = _secure_env(kafka, redis, tls, app_id, api_token=API_TOKEN, api_rate_limit=2, api_rate_burst=5)
    settings = settings_of(env)
    now = time.time()
    events = generate(seed=99, start=now - 4 * 3600, duration_seconds=4 * 3600 - 120, rate=0.05) + _pii_events(now)
    worker = WorkerProcess(env, tmp_path).start()  # creates its topics through SASL_SSL (ensure_topics)
    try:
        # Our producer with the same settings, then the `stream-app generate` command.
        asyncio.run(produce_log(settings.kafka_bootstrap, settings.input_topics(), events, **kafka_client_kwargs(settings)))
        gen = subprocess.run(
            [sys.executable, "-m", "stream_app.cli", "generate", "--rate", "40", "--duration", "2", "--seed", "1",
             "--progress-interval", "60"],
            env=worker.env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert gen.returncode == 0, gen.stderr + gen.stdout
        generated = int(re.findall(r"sent=(\d+)", gen.stdout)[-1])
        assert generated > 0
        expected = len(events) + generated
        wait_for(lambda: total(worker.samples(), "stream_app_events_consumed_total") >= expected,
                 timeout=180, interval=1.0, message=f"{expected} consumed over SASL_SSL")  # fmt: skip
        samples = worker.samples()
        assert total(samples, "stream_app_events_consumed_total") == expected
        assert total(samples, "stream_app_events_valid_total") == expected
        print(f"\nsecure worker: {expected} events over SASL_SSL ({len(events)} produced, {generated} from "
              f"`stream-app generate`), store in Redis over TLS as ACL user {REDIS_USER!r}")  # fmt: skip

        # The Redis store wrote through TLS as the ACL user; the default user is off.
        client = redis_py.Redis.from_url(redis.rediss_url, username=REDIS_USER, password=REDIS_PW,
                                         ssl_ca_certs=str(tls.ca))  # fmt: skip
        wait_for(lambda: list(client.scan_iter(match=f"{{stream_app:{app_id}:*", count=1000)), timeout=30,
                 message="store keys in Redis")  # fmt: skip
        assert client.acl_whoami() == REDIS_USER
        with pytest.raises(redis_py.AuthenticationError):
            redis_py.Redis.from_url(redis.redis_url).ping()

        # API: bearer token, constant-time compared, and a per-client rate limit.
        base = worker.base_url
        assert _http(f"{base}/accounts/lowest")[0] == 401
        assert _http(f"{base}/accounts/lowest", "wrong-token")[0] == 401
        time.sleep(3)  # let the bucket refill
        status, _, body = _http(f"{base}/accounts/lowest?limit=3", API_TOKEN)
        assert status == 200 and body["accounts"]
        account = body["accounts"][0]["account_id"]
        assert _http(f"{base}/accounts/{account}/health", API_TOKEN)[0] == 200
        assert _http(f"{base}/accounts/{account}/health")[0] == 401
        statuses = [_http(f"{base}/accounts/lowest", API_TOKEN) for _ in range(12)]
        limited = [h for s, h, _ in statuses if s == 429]
        assert limited and all(int(h["Retry-After"]) >= 1 for h in limited)
        assert all(worker.http_status("/metrics") == 200 for _ in range(20)), "scrapes are not limited"

        # No secrets anywhere in the log; no personal data in the log or in metric labels.
        metrics_text = worker.metrics_text()
        log = worker.log_path.read_text(errors="replace") + gen.stdout + gen.stderr
        for secret in SECRETS:
            assert secret not in log and secret not in metrics_text
        forbidden = _forbidden_values(events)
        label_values = {v for fam in text_string_to_metric_families(metrics_text) for s in fam.samples
                        for v in s.labels.values()}  # fmt: skip
        assert not forbidden & label_values, sorted(forbidden & label_values)[:5]
        assert not [f for f in forbidden if f in metrics_text][:1]
        leaked = [f for f in forbidden if f in log]
        assert not leaked, leaked[:5]
        print(f"checked {len(forbidden)} personal values and ids, {len(label_values)} label values, "
              f"{len(log.splitlines())} log lines: no secret or personal value found")  # fmt: skip
    finally:
        worker.stop()


@pytest.mark.integration
def test_sasl_plaintext_with_plain_mechanism(secure):
    """The other listener and mechanism, through ensure_topics and a producer/consumer pair."""
    from aiokafka import AIOKafkaConsumer

    from stream_app.tools.producer import EventProducer
    from stream_app.kafka.topics import ensure_topics

    kafka, _, _ = secure
    app_id = f"plain-{uuid.uuid4().hex[:6]}"
    s = Settings(kafka_bootstrap=kafka.sasl_bootstrap, app_id=app_id, topic_tickets=f"{app_id}.tickets",
                 kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN",
                 kafka_sasl_username=KAFKA_USER, kafka_sasl_password=KAFKA_PW)  # fmt: skip

    async def roundtrip() -> bytes:
        await ensure_topics(s)
        async with EventProducer(s.kafka_bootstrap, s.input_topics(), **kafka_client_kwargs(s)) as p:
            await p.send_raw(s.topic_tickets, b"k", b"hello")
        consumer = AIOKafkaConsumer(s.topic_tickets, bootstrap_servers=s.kafka_bootstrap,
                                    auto_offset_reset="earliest", **kafka_client_kwargs(s))  # fmt: skip
        await consumer.start()
        try:
            return (await asyncio.wait_for(consumer.getone(), 30)).value
        finally:
            await consumer.stop()

    assert asyncio.run(roundtrip()) == b"hello"


@pytest.mark.integration
def test_wrong_kafka_password_fails_fast_and_clearly_without_the_password(secure, tmp_path):

    kafka, redis, tls = secure
    wrong = "wrong-Pw-a41f9e"
    env = _secure_env(kafka, redis, tls, f"bad-{uuid.uuid4().hex[:6]}", kafka_sasl_password=wrong)
    worker = WorkerProcess(env, tmp_path)
    t0 = time.monotonic()
    with pytest.raises(AssertionError, match="worker exited"):
        worker.start(ready_timeout=60)
    took = time.monotonic() - t0
    log = worker.log_path.read_text(errors="replace")
    assert "refused the SCRAM-SHA-256 credentials" in log and KAFKA_USER in log
    assert wrong not in log and KAFKA_PW not in log and REDIS_PW not in log
    print(f"\nwrong Kafka password: worker exited after {took:.1f}s with: "
          f"{[ln for ln in log.splitlines() if 'refused' in ln][-1].strip()}")  # fmt: skip


@pytest.mark.integration
def test_wrong_redis_password_is_named_in_the_log_without_the_password(secure, tmp_path):
    """The store treats a refused Redis like an unreachable one (it keeps processing from memory
    and retries, see docs/state-store.md); the log names the cause, never the password."""

    kafka, redis, tls = secure
    wrong = "wrong-Redis-77c3d0"
    env = _secure_env(kafka, redis, tls, f"badr-{uuid.uuid4().hex[:6]}", redis_password=wrong)
    worker = WorkerProcess(env, tmp_path)
    try:
        try:
            worker.start(ready_timeout=1)  # readiness does not matter here, the log does
        except AssertionError:
            pass
        def log_naming_the_cause() -> str:
            text = worker.log_path.read_text(errors="replace")
            return text if "AuthenticationError" in text else ""

        log = wait_for(log_naming_the_cause, timeout=30, message="the Redis authentication failure in the log")
        assert wrong not in log and REDIS_PW not in log and KAFKA_PW not in log
        print("\nwrong Redis password:", next(ln for ln in log.splitlines() if "AuthenticationError" in ln).strip()[:160])
    finally:
        worker.stop()
