"""POST /events answers 429 past the per-client rate limit and 401 without the token,
before reading the body (the same guard as the /accounts API)."""

import asyncio

from prometheus_client import CollectorRegistry

from stream_app.worker.http_ingest import HttpIngest


class _Request:
    def __init__(self, remote: str, authorization: str | None = None) -> None:
        self.remote = remote
        self.headers = {"Authorization": authorization} if authorization else {}

    async def read(self):  # the guard must answer before the body is touched
        raise AssertionError("body read before the guard decided")


def _ingest(**kw) -> HttpIngest:
    return HttpIngest(None, {"ticket": "t"}, CollectorRegistry(), **kw)


def test_rate_limit_per_client_then_retry_after():
    ingest = _ingest(rate_limit=0.001, rate_burst=2, token="s3cret")
    answers = [asyncio.run(ingest.handle(_Request("10.0.0.1"))) for _ in range(3)]
    assert [a[0] for a in answers] == [401, 401, 429]  # burst of 2, then limited
    assert int(answers[2][2]["Retry-After"]) >= 1
    # another client has its own bucket
    assert asyncio.run(ingest.handle(_Request("10.0.0.2")))[0] == 401


def test_wrong_token_is_refused_without_reading_the_body():
    ingest = _ingest(token="s3cret")
    status, body, headers = asyncio.run(ingest.handle(_Request("10.0.0.1", "Bearer wrong")))
    assert status == 401 and body["error"] == "unauthorized"
    assert headers["WWW-Authenticate"].startswith("Bearer")
