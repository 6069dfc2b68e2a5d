"""HTTP ingest request handling without a server: splitting bodies, limits, auth, statuses."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from stream_app.events import EventRejected, decode_event
from stream_app.worker.api_guard import check_bearer
from stream_app.worker.http_ingest import (
    NOT_DELIVERED,
    IngestError,
    content_length_error,
    event_id_hint,
    http_status,
    parse_body,
    result_of,
    validate_all,
)
from tests.support.paths import EXAMPLES_DIR

EXAMPLES = EXAMPLES_DIR
JSON = "application/json"
NDJSON = "application/x-ndjson"


def _example(event_type: str) -> dict:
    ev = json.loads((EXAMPLES / f"{event_type}.json").read_text())
    ev["id"] = str(uuid.uuid4())
    return ev


def test_array_elements_keep_their_exact_source_bytes():
    elements = [
        '{"a": [1, 2, {"b": "],[,"}], "c": "\\u00e9 \\"q\\""}',
        '{\n  "x": 1.50,\n  "y": null\n}',
        "5",
        '"text, with ] brackets"',
        '{"ü": "ß"}',
    ]
    body = ("  [\n" + " ,\r\n\t".join(elements) + "\n]\n").encode()
    assert parse_body(body, JSON, 10) == [e.encode() for e in elements]


def test_single_value_and_charset_parameter():
    body = b'{"id": "x"}'
    assert parse_body(body, "application/json; charset=utf-8", 1) == [body]
    # Not JSON at all: still one event, judged (and rejected) per event by decode_event.
    assert parse_body(b"garbage", JSON, 1) == [b"garbage"]
    assert parse_body(b'{"a":1}', "application/cloudevents+json", 1) == [b'{"a":1}']


def test_ndjson_lines_skip_blank_and_strip_cr():
    body = b'{"a":1}\r\n\n   \n{"b":2}\nnot json\n'
    assert parse_body(body, NDJSON, 10) == [b'{"a":1}', b'{"b":2}', b"not json"]
    assert parse_body(body, "application/jsonl", 10) == [b'{"a":1}', b'{"b":2}', b"not json"]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "reason"),
    [
        (b"[]", JSON, 400, "no_events"),
        (b"  ", JSON, 400, "no_events"),
        (b"\n\n", NDJSON, 400, "no_events"),
        (b"[1, 2", JSON, 400, "malformed_json"),
        (b"[1 2]", JSON, 400, "malformed_json"),
        (b"[1, ]", JSON, 400, "malformed_json"),
        (b"[1] [2]", JSON, 400, "malformed_json"),
        (b"[\xff]", JSON, 400, "not_utf8"),
        (b"[1,2,3,4]", JSON, 413, "too_many_events"),
        (b"1\n2\n3\n4\n", NDJSON, 413, "too_many_events"),
        (b'{"a":1}', "text/plain", 415, "unsupported_media_type"),
        (b'{"a":1}', "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (b'{"a":1}', None, 415, "unsupported_media_type"),
    ],
)
def test_request_level_refusals(body, content_type, status, reason):
    with pytest.raises(IngestError) as info:
        parse_body(body, content_type, 3)
    assert (info.value.status, info.value.reason) == (status, reason)


def test_content_length_checked_before_reading():
    assert content_length_error(None, 100) is None
    assert content_length_error("100", 100) is None
    too_big = content_length_error("101", 100)
    assert (too_big.status, too_big.reason) == (413, "too_large")
    assert content_length_error("ten", 100).status == 400


def test_bearer_token():
    assert check_bearer(None, "")  # no token configured: open
    assert check_bearer("Bearer s3cret", "s3cret")
    assert check_bearer("bearer s3cret", "s3cret")
    assert not check_bearer(None, "s3cret")
    assert not check_bearer("Bearer wrong", "s3cret")
    assert not check_bearer("Bearer s3cret-and-more", "s3cret")
    assert not check_bearer("Basic s3cret", "s3cret")
    assert not check_bearer("s3cret", "s3cret")


def test_per_event_results_use_the_decoder_reasons():
    ok = _example("ticket.created")
    bad = _example("ticket.created")
    bad["data"]["priority"] = "whenever"
    items = [json.dumps(ok).encode(), json.dumps(bad).encode(), b"[1]", b"{"]
    checked = validate_all(items, max_event_bytes=65536, max_future_skew=300.0, now=time.time())
    assert [c.event is not None for c in checked] == [True, False, False, False]
    expected = []
    for raw in items[1:]:
        with pytest.raises(EventRejected) as info:
            decode_event(raw)
        expected.append((info.value.reason, info.value.detail))
    got = [(c.reason, c.detail) for c in checked[1:]]
    assert got == expected
    assert "data.priority" in checked[1].detail

    class Meta:
        topic, partition, offset = "cs.tickets", 2, 17

    accepted = result_of(checked[0], delivery=Meta)
    assert accepted == {
        "index": 0, "id": ok["id"], "status": "accepted", "reason": None, "detail": None,
        "topic": "cs.tickets", "partition": 2, "offset": 17,
    }
    rejected = result_of(checked[1])
    assert (rejected["index"], rejected["id"], rejected["status"]) == (1, bad["id"], "rejected")
    assert result_of(checked[2])["id"] is None
    failed = result_of(checked[0], error=TimeoutError("x"))
    assert (failed["status"], failed["reason"]) == ("rejected", NOT_DELIVERED)


def test_event_id_hint_only_plausible_ids():
    assert event_id_hint(b'{"id": "e-1"}') == "e-1"
    assert event_id_hint(b'{"id": 5}') is None
    assert event_id_hint(b'{"id": "' + b"x" * 200 + b'"}') is None
    assert event_id_hint(b"[1]") is None
    assert event_id_hint(b"{") is None


def test_http_status():
    acc = {"status": "accepted", "reason": None}
    rej = {"status": "rejected", "reason": "invalid"}
    lost = {"status": "rejected", "reason": NOT_DELIVERED}
    assert http_status([acc, acc]) == 200
    assert http_status([acc, rej]) == 207
    assert http_status([acc, lost]) == 207
    assert http_status([rej, rej]) == 400
    assert http_status([rej, lost]) == 503
