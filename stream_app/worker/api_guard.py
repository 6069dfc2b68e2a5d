"""Bearer-token auth and per-client rate limiting for the worker's HTTP API
(``/accounts/...`` reads and ``POST /events``). See docs/security.md.
"""

from __future__ import annotations

import hmac
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import Settings

__all__ = ["ApiGuard", "Denial", "RateLimiter", "check_bearer"]


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
