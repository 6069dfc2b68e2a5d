"""Security plumbing: Kafka and Redis client credentials from Settings, secret-safe URLs,
bearer-token auth and per-client rate limiting for the worker's HTTP API.

Pure functions and small classes; the app, topics and producer modules call them so that every
Kafka client (Faust's consumer/producer/admin, ``ensure_topics``, the generator) and the Redis
table store are configured from the same settings. Secrets live in ``SecretStr`` settings and
leave them only here, into client constructors: never into a log line, an error message or a
repr. See docs/security.md.
"""

from __future__ import annotations

import hmac
import math
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from .config import Settings

__all__ = [
    "ApiGuard",
    "Denial",
    "RateLimiter",
    "check_bearer",
    "faust_broker_credentials",
    "kafka_auth_failure",
    "kafka_client_kwargs",
    "kafka_ssl_context",
    "redact_url",
    "redis_url",
    "secret_values",
]

_SSL_PROTOCOLS = {"SSL", "SASL_SSL"}
_SASL_PROTOCOLS = {"SASL_PLAINTEXT", "SASL_SSL"}


# --------------------------------------------------------------------------- Kafka


def kafka_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """TLS context for SSL / SASL_SSL listeners (None for plaintext ones)."""
    if settings.kafka_security_protocol not in _SSL_PROTOCOLS:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.kafka_ssl_cafile or None)
    ctx.check_hostname = settings.kafka_ssl_check_hostname
    if settings.kafka_ssl_certfile:
        ctx.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile or None)
    return ctx


def _sasl_user(settings: Settings) -> tuple[str, str]:
    user = settings.kafka_sasl_username
    password = settings.kafka_sasl_password.get_secret_value()
    if not user or not password:
        raise ValueError(
            f"STREAM_APP_KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol} needs "
            "STREAM_APP_KAFKA_SASL_USERNAME and STREAM_APP_KAFKA_SASL_PASSWORD"
        )
    return user, password


def kafka_client_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client (producer, consumer, admin); {} for PLAINTEXT."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    kwargs: dict[str, Any] = {"security_protocol": protocol}
    ctx = kafka_ssl_context(settings)
    if ctx is not None:
        kwargs["ssl_context"] = ctx
    if protocol in _SASL_PROTOCOLS:
        user, password = _sasl_user(settings)
        kwargs.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=user,
            sasl_plain_password=password,
        )
    return kwargs


def faust_broker_credentials(settings: Settings) -> Any:
    """``broker_credentials`` for ``faust.App`` (None for PLAINTEXT).

    Faust hands them to its consumer, producer and the client it creates topics with; its
    ``SASLCredentials`` repr shows the user name only.
    """
    import faust

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    ctx = kafka_ssl_context(settings)
    if protocol == "SSL":
        return faust.SSLCredentials(ctx)
    user, password = _sasl_user(settings)
    # With a context Faust speaks SASL_SSL, without one SASL_PLAINTEXT.
    return faust.SASLCredentials(
        username=user, password=password, mechanism=settings.kafka_sasl_mechanism, ssl_context=ctx
    )


async def kafka_auth_failure(settings: Settings, timeout: float = 10.0) -> str | None:
    """Why the first reachable bootstrap broker refuses our credentials, or None.

    aiokafka's clients turn an authentication failure into a generic "Unable to bootstrap"
    connection error (and callers retry those); this names the real cause, without secrets.
    """
    if settings.kafka_security_protocol == "PLAINTEXT":
        return None
    import asyncio

    from aiokafka.conn import create_conn
    from aiokafka.errors import KafkaError

    try:
        kwargs = kafka_client_kwargs(settings)
    except ValueError as exc:
        return str(exc)
    for server in settings.kafka_bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            conn = await asyncio.wait_for(create_conn(host, int(port), **kwargs), timeout)
        except ssl.SSLError as exc:
            return f"TLS handshake with Kafka at {host}:{port} failed: {exc.reason or type(exc).__name__}"
        except KafkaError as exc:
            # SaslAuthenticationFailed, UnsupportedSaslMechanismError, ...: a broker answered no.
            return (
                f"Kafka at {host}:{port} refused the {settings.kafka_sasl_mechanism} credentials of user "
                f"{settings.kafka_sasl_username!r} ({type(exc).__name__}); check "
                "STREAM_APP_KAFKA_SASL_USERNAME / STREAM_APP_KAFKA_SASL_PASSWORD / _MECHANISM"
            )
        except (OSError, asyncio.TimeoutError, ValueError):
            continue  # unreachable: not an answer about credentials
        conn.close()
        return None
    return None


# --------------------------------------------------------------------------- Redis


def redis_url(settings: Settings) -> str:
    """``settings.redis_url`` with ``redis_username`` / ``redis_password`` and, for rediss://,
    ``redis_ssl_cafile`` (as redis-py's ``ssl_ca_certs`` query option) filled in.

    The result holds the password: give it to clients only; log :func:`redact_url` of it.
    """
    parts = urlsplit(settings.redis_url)
    user = settings.redis_username or unquote(parts.username or "")
    password = settings.redis_password.get_secret_value() or unquote(parts.password or "")
    host = parts.hostname or "127.0.0.1"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    if user or password:
        auth = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
        netloc = f"{auth}@{netloc}"
    query = parse_qsl(parts.query, keep_blank_values=True)
    if parts.scheme == "rediss" and settings.redis_ssl_cafile and not any(k == "ssl_ca_certs" for k, _ in query):
        query.append(("ssl_ca_certs", settings.redis_ssl_cafile))
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), parts.fragment))


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (safe to log)."""
    parts = urlsplit(str(url))
    if parts.password is None:
        return str(url)
    netloc = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{netloc}", parts.path, parts.query, parts.fragment))


def secret_values(settings: Settings) -> list[str]:
    """Every non-empty secret in the settings (for log scrubbing checks)."""
    out = []
    for name, info in type(settings).model_fields.items():
        value = getattr(settings, name)
        if hasattr(value, "get_secret_value") and value.get_secret_value():
            out.append(value.get_secret_value())
    return out


# --------------------------------------------------------------------------- HTTP API


def check_bearer(authorization: str | None, token: str) -> bool:
    """True if the ``Authorization`` header carries ``Bearer <token>`` (constant-time compare).

    An empty ``token`` means auth is off: always True.
    """
    if not token:
        return True
    if not authorization:
        return False
    scheme, _, given = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Bytes compare: constant time in the length of the expected value, any characters.
    return hmac.compare_digest(given.strip().encode(), token.encode())


class RateLimiter:
    """Token bucket per client: ``rate`` tokens/s refill up to ``burst``; one request = one token.

    Memory is bounded by ``max_clients`` (least recently seen clients are forgotten, which only
    ever gives a forgotten client a full bucket again).
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst, self.clock, self.max_clients = rate, burst, clock, max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, client: str) -> tuple[bool, float]:
        """(allowed, seconds until the next token when refused)."""
        now = self.clock()
        tokens, last = self._buckets.pop(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[client] = (tokens, now)  # most recent at the end
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return allowed, 0.0 if allowed else (1.0 - tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)


@dataclass(frozen=True)
class Denial:
    """An HTTP answer refusing a request."""

    status: int
    body: dict
    headers: dict[str, str] = field(default_factory=dict)


class ApiGuard:
    """Rate limit (per client address) then bearer auth, for the read API.

    Rate limiting comes first so that guessing the token is throttled too.
    """

    def __init__(self, token: str = "", rate: float = 0.0, burst: int = 20, **limiter: Any) -> None:
        self._token = token
        self.limiter = RateLimiter(rate, burst, **limiter) if rate > 0 else None

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiGuard:
        return cls(settings.api_token.get_secret_value(), settings.api_rate_limit, settings.api_rate_burst)

    @property
    def enabled(self) -> bool:
        return bool(self._token) or self.limiter is not None

    def auth_headers(self) -> Mapping[str, str]:
        """Headers for this worker's own calls to its peers (they check the same token)."""
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def check(self, authorization: str | None, client: str | None) -> Denial | None:
        if self.limiter is not None:
            allowed, retry_after = self.limiter.allow(client or "?")
            if not allowed:
                return Denial(
                    429, {"error": "too many requests"}, {"Retry-After": str(max(1, math.ceil(retry_after)))}
                )
        if not check_bearer(authorization, self._token):
            return Denial(401, {"error": "unauthorized"}, {"WWW-Authenticate": 'Bearer realm="stream_app"'})
        return None

    def __repr__(self) -> str:  # never the token
        return f"<ApiGuard auth={'on' if self._token else 'off'} rate_limit={self.limiter is not None}>"
