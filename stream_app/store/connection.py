"""The Redis URL the table store connects with: ACL user, password and TLS CA from Settings.

The URL it returns holds the password: give it to clients only, log :func:`redact_url` of it.
See docs/security.md.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from yarl import URL

from ..config import Settings

__all__ = ["STORE_OPTIONS", "RedisUnreachable", "check_redis", "redact_url", "redis_url", "startup_nodes", "store_options"]


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


# The store's own options, read from its URL's query (and a table's ``options=``, with or without
# a ``redis_`` prefix) and removed before the URL reaches redis-py.
STORE_OPTIONS = {
    "prefix": str,
    "flush_interval": float,
    "scan_count": int,
    "max_fields_per_call": int,
    "producer_flush_timeout": float,
    "max_backoff": float,
    "load_timeout": float,
    "socket_timeout": float,
}


def store_options(url: URL, options: Mapping[str, Any]) -> dict[str, Any]:
    """The store options set in ``url`` or ``options``, converted."""
    out: dict[str, Any] = {}
    for name, conv in STORE_OPTIONS.items():
        for src in (url.query.get(name), options.get(name), options.get(f"redis_{name}")):
            if src is not None:
                out[name] = conv(src)
    return out


class RedisUnreachable(RuntimeError):
    """Redis did not answer PING within the startup bound; the message names the address.
    ``answered``: something answered, but refused us or is not Redis (waiting will not help)."""

    def __init__(self, message: str, *, answered: bool = False) -> None:
        super().__init__(message)
        self.answered = answered


def startup_nodes(settings: Settings) -> list[tuple[str, str]]:
    """(``host:port``, URL with credentials) of each node to reach Redis through at a start: the
    URL's node, and with ``redis_cluster`` every node of ``redis_cluster_nodes`` too (the URL's
    node may be the master a failover is replacing)."""
    url = redis_url(settings)
    parts = urlsplit(url)
    nodes = [f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}"]
    if settings.redis_cluster:
        nodes += [n.strip() for n in settings.redis_cluster_nodes.split(",") if n.strip() and n.strip() not in nodes]
    userinfo = parts.netloc.rpartition("@")[0]
    return [(node, urlunsplit(parts._replace(netloc=f"{userinfo}@{node}" if userinfo else node))) for node in nodes]


def check_redis(settings: Settings, timeout: float | None = None) -> None:
    """Wait until the Redis at ``redis_url`` (or, for a Redis Cluster, any of its known nodes)
    answers PING, at most ``timeout`` s (the startup_timeout_seconds setting); RedisUnreachable
    says where and what happened.

    Refused connections are retried until the bound (a server starting alongside); refused
    credentials and answers that are not Redis fail at once.
    """
    import redis

    bound = settings.startup_timeout_seconds if timeout is None else timeout
    deadline = time.monotonic() + bound
    nodes = startup_nodes(settings)
    last = "no answer"
    while True:
        for node, url in nodes:
            where = f"Redis at {node}"
            left = max(0.1, min(5.0, deadline - time.monotonic()))
            client = redis.Redis.from_url(url, socket_connect_timeout=left, socket_timeout=left)
            try:
                client.ping()
                return
            except redis.AuthenticationError as exc:
                raise RedisUnreachable(
                    f"{where} refused the credentials ({type(exc).__name__}: {exc}); check STREAM_APP_REDIS_URL, "
                    "STREAM_APP_REDIS_USERNAME and STREAM_APP_REDIS_PASSWORD",
                    answered=True,
                ) from None
            except redis.ResponseError as exc:
                if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
                    raise RedisUnreachable(
                        f"{where} wants credentials ({exc}); set STREAM_APP_REDIS_PASSWORD", answered=True
                    ) from None
                raise RedisUnreachable(f"{where} answered an error to PING: {exc}", answered=True) from None
            except redis.exceptions.InvalidResponse as exc:
                raise RedisUnreachable(
                    f"{where} answered something that is not Redis ({exc}) (STREAM_APP_REDIS_URL)", answered=True
                ) from None
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                last = str(exc).rstrip(".") or type(exc).__name__
            finally:
                client.close()
        if time.monotonic() >= deadline:
            where = f"Redis at {nodes[0][0]}" if len(nodes) == 1 else f"Redis Cluster at {', '.join(n for n, _ in nodes)}"
            source = "STREAM_APP_REDIS_URL" if len(nodes) == 1 else "STREAM_APP_REDIS_URL, STREAM_APP_REDIS_CLUSTER_NODES"
            raise RedisUnreachable(f"{where} not reachable within {bound:g}s: {last} ({source})")
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
