"""Selection, parsing and planning of ``stream-app replay-deadletters`` (no Kafka): which dead
letters are chosen, what a corrections file may hold, and what is sent for each."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stream_app.events.deadletter import DLQ_DETAIL, DLQ_OFFSET, DLQ_PARTITION, DLQ_REASON, DLQ_TOPIC
from stream_app.tools.replay import (
    LEFT_OVER,
    OK,
    Corrections,
    DeadLetter,
    ReplayUsageError,
    Selection,
    exit_code_of,
    export_line,
    load_corrections,
    parse_time,
    plan,
    selection_of,
    summary,
)

EXAMPLE = json.loads((Path(__file__).resolve().parents[3] / "schemas" / "examples" / "ticket.created.json").read_text())
NOW = datetime(2025, 3, 5, 12, 0, tzinfo=UTC).timestamp()
FAMILIES = {"cs.tickets": "ticket", "cs.surveys": "survey"}


def dead_letter(value: bytes | None, reason: str = "invalid", *, offset: int = 0, ts: float = NOW - 60,
                topic: str = "cs.tickets", source_offset: int | None = None, key: bytes | None = b"TCK-48213") -> DeadLetter:  # fmt: skip
    headers = [(DLQ_REASON, reason.encode()), (DLQ_DETAIL, b"data.priority: Input should be ..."),
               (DLQ_TOPIC, topic.encode()), (DLQ_PARTITION, b"2"),
               (DLQ_OFFSET, str(100 + offset if source_offset is None else source_offset).encode())]  # fmt: skip
    return DeadLetter.from_record(0, offset, int(ts * 1000), key, value, headers)


def broken(**data_changes) -> dict:
    event = json.loads(json.dumps(EXAMPLE))
    event["data"].update(data_changes)
    return event


def wire(event: dict) -> bytes:
    return json.dumps(event).encode()


def run_plan(dls, corrections=Corrections()):
    return plan(dls, corrections, FAMILIES, now=NOW, max_bytes=65536, max_future_skew=300.0)


# --------------------------------------------------------------------------- records and selection


def test_a_record_reads_back_its_headers():
    dl = dead_letter(wire(broken(priority="URGENT")), offset=7)
    assert (dl.reason, dl.source, dl.position, dl.timestamp) == ("invalid", ("cs.tickets", 2, 107), (0, 7), NOW - 60)
    assert dl.event_id == EXAMPLE["id"]


@pytest.mark.parametrize("value", [b"{not json", b"[1, 2]", b"\xff\xfe", None, b'{"id": 5}'])
def test_no_event_id_when_the_bytes_do_not_hold_one(value):
    assert dead_letter(value).event_id is None


def test_export_line_holds_the_original_event_or_its_bytes():
    line = export_line(dead_letter(wire(broken(priority="URGENT")), offset=3))
    assert line["deadletter"] == {"partition": 0, "offset": 3}
    assert line["event"]["data"]["priority"] == "URGENT" and line["id"] == EXAMPLE["id"]
    assert line["source"] == {"topic": "cs.tickets", "partition": 2, "offset": 103}
    assert line["dead_lettered_at"] == "2025-03-05T11:59:00Z"
    assert export_line(dead_letter(b"{oops"))["value"] == "{oops"
    assert export_line(dead_letter(b"\xff"))["value_base64"] == "/w=="


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90s", NOW - 90), ("15m", NOW - 900), ("2h", NOW - 7200), ("1.5d", NOW - 129600),
     ("2025-03-05T10:00:00Z", NOW - 7200), ("2025-03-05T11:00:00+01:00", NOW - 7200)],
)  # fmt: skip
def test_parse_time(text, expected):
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "2025-03-05T10:00:00", "10x", ""])
def test_parse_time_refuses(text):
    with pytest.raises(ReplayUsageError):
        parse_time(text, NOW)


def test_selection_by_reason_time_and_topic():
    dls = [
        dead_letter(b"{}", "invalid", offset=0, ts=NOW - 7200),
        dead_letter(b"{}", "invalid", offset=1, ts=NOW - 60),
        dead_letter(b"{}", "future_time", offset=2, ts=NOW - 60),
        dead_letter(b"{}", "invalid", offset=3, ts=NOW - 60, topic="cs.surveys"),
    ]
    sel = selection_of(["invalid"], "1h", None, ["cs.tickets"], NOW)
    assert [d.offset for d in dls if sel.matches(d)] == [1]
    assert [d.offset for d in dls if Selection().matches(d)] == [0, 1, 2, 3]
    until = selection_of([], None, "1h", [], NOW)
    assert [d.offset for d in dls if until.matches(d)] == [0]


@pytest.mark.parametrize(
    ("reasons", "since", "until"), [(["bogus"], None, None), ([], "1h", "2h"), ([], "soon", None)]
)
def test_selection_refuses(reasons, since, until):
    with pytest.raises(ReplayUsageError):
        selection_of(reasons, since, until, [], NOW)


# --------------------------------------------------------------------------- corrections file


def test_corrections_by_position_or_id():
    fixed = broken()
    text = [json.dumps({"deadletter": {"partition": 0, "offset": 4}, "event": fixed}), "",
            json.dumps({"id": "evt-x", "event": fixed})]  # fmt: skip
    c = load_corrections(text)
    assert c.lines == 2 and c.by_position == {(0, 4): fixed} and c.by_id == {"evt-x": fixed}
    assert c.for_(dead_letter(b"{oops", offset=4)) == fixed
    assert c.for_(dead_letter(wire({**broken(), "id": "evt-x"}), offset=9)) == fixed
    assert c.for_(dead_letter(wire(broken()), offset=9)) is None


@pytest.mark.parametrize(
    ("line", "message"),
    [("{nope", "line 1: not JSON"), ('{"id": "a"}', "needs an 'event' object"),
     ('{"event": {}}', "needs 'deadletter'"), ('{"event": {}, "deadletter": {"partition": "0", "offset": 1}}', "needs 'deadletter'")],
)  # fmt: skip
def test_corrections_file_errors_name_the_line(line, message):
    with pytest.raises(ReplayUsageError, match=message):
        load_corrections([line])


# --------------------------------------------------------------------------- plan


def test_a_corrected_event_is_sent_keyed_by_its_subject_with_its_id():
    dl = dead_letter(wire(broken(priority="URGENT")), key=b"wrong-key")
    [step] = run_plan([dl], load_corrections([json.dumps({**export_line(dl), "event": broken()})]))
    assert (step.action, step.topic, step.key) == ("corrected", "cs.tickets", b"TCK-48213")
    assert json.loads(step.value) == broken() and exit_code_of([step]) == OK


def test_a_correction_must_keep_the_id():
    dl = dead_letter(wire(broken(priority="URGENT")))
    [step] = run_plan([dl], load_corrections([json.dumps({"deadletter": {"partition": 0, "offset": 0},
                                                          "event": {**broken(), "id": "evt-new"}})]))  # fmt: skip
    assert step.action == "still_invalid" and "different id" in step.why and exit_code_of([step]) == LEFT_OVER


def test_a_correction_that_is_still_invalid_is_not_sent():
    dl = dead_letter(wire(broken(priority="URGENT")))
    [step] = run_plan([dl], load_corrections([json.dumps({"id": EXAMPLE["id"], "event": broken(priority="LOW")})]))
    assert step.action == "still_invalid" and step.why.startswith("invalid: data.priority")
    assert not step.sends


def test_transient_reasons_resend_the_bytes_unchanged_others_need_a_correction():
    original = wire(broken())
    steps = run_plan([dead_letter(original, "processing_error", offset=0),
                      dead_letter(original.replace(b"TCK", b"TKT"), "future_time", offset=1, key=b"TKT-48213"),
                      dead_letter(wire(broken(priority="URGENT")), "invalid", offset=2)])  # fmt: skip
    assert [s.action for s in steps] == ["as_is", "as_is", "no_correction"]
    assert steps[0].value == original and steps[0].key == b"TCK-48213"
    assert exit_code_of(steps) == LEFT_OVER


def test_future_time_still_in_the_future_stays():
    event = {**broken(), "time": "2025-03-05T13:00:00Z"}  # an hour after NOW, beyond the 300 s skew
    [step] = run_plan([dead_letter(wire(event), "future_time")])
    assert step.action == "still_invalid" and step.why.startswith("future_time")


def test_a_message_dead_lettered_twice_is_sent_once():
    original = wire(broken())
    steps = run_plan([dead_letter(original, "processing_error", offset=0, source_offset=50),
                      dead_letter(original, "processing_error", offset=1, source_offset=50)])  # fmt: skip
    assert [s.action for s in steps] == ["as_is", "repeat"] and exit_code_of(steps) == OK


def test_a_dead_letter_from_an_unknown_topic_is_left():
    [step] = run_plan([dead_letter(wire(broken()), "processing_error", topic="old.tickets")])
    assert step.action == "still_invalid" and "not an input topic" in step.why


def test_a_survey_correction_goes_to_the_survey_topic_only_when_it_is_a_survey():
    dl = dead_letter(wire(broken()), "processing_error", topic="cs.surveys")  # a ticket on the surveys topic
    [step] = run_plan([dl])
    assert step.action == "still_invalid" and step.why.startswith("wrong_topic")


def test_summary_counts_every_kind():
    original = wire(broken())
    steps = run_plan([dead_letter(original, "processing_error", offset=0, source_offset=1),
                      dead_letter(original, "processing_error", offset=1, source_offset=1),
                      dead_letter(wire(broken(priority="URGENT")), "invalid", offset=2)])  # fmt: skip
    assert summary(steps, 10, dry_run=True) == (
        "replay-deadletters: 10 dead letters read, 3 selected; would replay 1 (0 corrected, 1 as they were); "
        "left 1 (1 without a correction, 0 still invalid); 1 repeated dead letters of the same message"
    )
