"""The Redis URL the table store connects with: ACL user, password and TLS CA from Settings.

The URL it returns holds the password: give it to clients only, log :func:`redact_url` of it.
See docs/security.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from yarl import URL

from ..config import Settings

__all__ = ["STORE_OPTIONS", "redact_url", "redis_url", "store_options"]


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
