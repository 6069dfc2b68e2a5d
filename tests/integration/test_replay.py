"""Dead letters replayed against the real stack: a real worker dead-letters bad events (invalid
ones and one from the future), they are exported, corrected by hand (here: by the test), replayed
with ``stream-app replay-deadletters``, and every metric then equals the batch reference over
the corrected log. Replaying again changes nothing: the copies are duplicates by id.

And ``stream-app lag`` reads an app id's lag from Kafka while its worker runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import replace

import pytest

from stream_app.tools.generator import generate
from stream_app.tools.generator.message import GeneratedEvent, rfc3339

from tests.faults.harness import DAY, EventLog, FaultRun
from tests.support.references import reference_events
from tests.support.worker import total, wait_for

pytestmark = pytest.mark.integration

FUTURE_BY = 45.0  # seconds: the worker's skew is 5 s, so it dead-letters the event as future_time


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_APP_")}
    return subprocess.run([sys.executable, "-m", "stream_app.cli", *args], env={**clean, **env},
                          capture_output=True, text=True, timeout=180)  # fmt: skip


def _future_survey(now: float) -> GeneratedEvent:
    rid = f"rsp-future-{uuid.uuid4().hex[:6]}"
    event = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "surveys", "type": "survey.csat",
             "time": rfc3339(now + FUTURE_BY), "subject": rid, "schemaversion": 1,
             "data": {"response_id": rid, "score": 4, "scale_min": 1, "scale_max": 5, "comment": None,
                      "account_id": "A-future", "ticket_id": None, "respondent_id": None}}  # fmt: skip
    return GeneratedEvent(family="survey", key=rid, value=json.dumps(event).encode(), time=now + FUTURE_BY,
                          emit_time=now, type="survey.csat", id=event["id"])  # fmt: skip


def _broken(ev: GeneratedEvent) -> GeneratedEvent:
    """The event with a field its schema does not have: dead-lettered as ``invalid``."""
    doc = json.loads(ev.value)
    doc["data"]["unexpected_field"] = 1
    return replace(ev, value=json.dumps(doc).encode(), is_invalid=True, invalid_kind="extra_field")


def test_replay_corrected_deadletters_then_again(stack, tmp_path):
    now = time.time()
    future = _future_survey(now)
    good = generate(seed=1405, start=now - DAY / 2, duration_seconds=DAY / 2 - 120, rate=0.04)
    # Recent events of every family (well inside every window): their absence shows in the metrics.
    recent = [i for i, ev in enumerate(good) if ev.time > now - 4 * 3600]
    picked: list[int] = []
    for family in ("ticket", "activity", "subscription", "survey"):
        picked += [i for i in recent if good[i].family == family][:3]
    assert len(picked) >= 8, "the generated log has too few recent events"
    originals = {good[i].id: json.loads(good[i].value) for i in picked}
    sent = [future] + [(_broken(ev) if i in picked else ev) for i, ev in enumerate(good)]
    valid = reference_events([future] + good, now)
    log = EventLog(sent, valid, too_late=0, invalid=len(picked) + 1, duplicates=0)

    run = FaultRun(stack, log, tmp_path, "replay", {"max_future_skew_seconds": 5})
    env = run.env
    try:
        w = run.start(run.worker())
        run.feed()
        run.finish()
        messages, sources, reasons = run.deadletters()
        assert reasons == {"invalid": len(picked), "future_time": 1}, reasons
        before = run.compare()
        assert before["missing"] + before["lost"] > 0, "the dead-lettered events must be missing from the metrics"

        lag = _cli(env, "lag", "--app-id", run.app_id, "--max-lag", "0")
        assert lag.returncode == 0 and "total lag 0 messages on 16 partitions" in lag.stdout, lag

        # Export the invalid ones, correct them (here: the event as it should have been sent).
        exported = tmp_path / "deadletters.jsonl"
        out = _cli(env, "replay-deadletters", "--reason", "invalid", "--export", str(exported))
        assert out.returncode == 0, out.stderr
        lines = [json.loads(t) for t in exported.read_text().splitlines()]
        assert sorted(line["id"] for line in lines) == sorted(originals)
        corrections = tmp_path / "corrections.jsonl"
        corrections.write_text("".join(json.dumps({**line, "event": originals[line["id"]]}) + "\n" for line in lines))

        # Without a correction an invalid dead letter is left: exit 3.
        partial = _cli(env, "replay-deadletters", "--reason", "invalid", "--dry-run", "--quiet")
        assert partial.returncode == 3 and f"left {len(picked)} ({len(picked)} without a correction" in partial.stdout

        wait_for(lambda: time.time() > future.time + 1, timeout=FUTURE_BY + 30, message="the future event's time")
        args = ["replay-deadletters", "--reason", "invalid", "--reason", "future_time", "--since", "1h",
                "--corrections", str(corrections)]  # fmt: skip
        ends = run.ends()
        dry = _cli(env, *args, "--dry-run")
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert f"would replay {len(picked) + 1} ({len(picked)} corrected, 1 as they were)" in dry.stdout.splitlines()[-1]
        assert run.ends() == ends, "a dry run sends nothing"

        for attempt in (1, 2):
            duplicates = total(w.samples(), "stream_app_events_duplicate_total")
            done = _cli(env, *args, "--quiet")
            assert done.returncode == 0, done.stdout + done.stderr
            assert done.stdout.strip().splitlines() == [
                f"replay-deadletters: {messages} dead letters read, {messages} selected; replayed {len(picked) + 1} "
                f"({len(picked)} corrected, 1 as they were); left 0 (0 without a correction, 0 still invalid); "
                f"0 repeated dead letters of the same message"
            ]
            run.finish()
            diff = run.compare()
            assert diff["missing"] == diff["lost"] == diff["double"] == diff["extra"] == 0, (attempt, diff)
            assert run.deadletters()[0] == messages, "nothing replayed was dead-lettered again"
            if attempt == 2:
                assert total(w.samples(), "stream_app_events_duplicate_total") - duplicates == len(picked) + 1
        print(f"\nreplayed {len(picked) + 1} dead letters twice; {diff['checked']} samples equal the reference")
    finally:
        run.close()
