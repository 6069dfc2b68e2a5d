"""``stream-app replay-deadletters``: the command line of ``stream_app.tools.replay``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from ..tools.replay import (
    ALL_REASONS,
    FAILED,
    OK,
    USAGE,
    Corrections,
    DeadLetter,
    ReplayUsageError,
    Step,
    exit_code_of,
    export_line,
    iso,
    load_corrections,
    plan,
    read_deadletters,
    selection_of,
    send,
    summary,
)
from .startup import validated_settings, wait_for_kafka

DESCRIPTION = """\
Send dead-lettered events back to the input topic they came from, with their original id and
keyed by their subject, so that the engine counts each once however often it is replayed.

Reads the dead-letter topic (STREAM_APP_TOPIC_DEADLETTER) up to its end now and selects by
--reason, --since/--until (when the record was dead-lettered) and --topic (the input topic).
A selected dead letter is replayed with its corrected event from --corrections, or, for the
transient reasons processing_error and future_time, with its bytes unchanged; otherwise it is
left. Every event is decoded as the worker will decode it first: one that would be dead-lettered
again is not sent. --export writes the selection as JSON lines to fix by hand: edit each line's
"event" (keep its "id") and pass the file back as --corrections. Nothing is committed or deleted
on the dead-letter topic; running the command twice sends the events twice, and the engine
counts the second copies as duplicates.
"""

EPILOG = """\
exit codes: 0 everything selected was replayed (or would be, with --dry-run; or nothing matched);
1 Kafka unreachable or a send failed; 2 bad option, corrections file or settings;
3 some selected dead letters were left (no correction, or still invalid: see the lines above).
The last line of output is a summary. Procedure: docs/operations.md, "Replaying dead letters".
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stream-app replay-deadletters",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--reason", action="append", default=[], metavar="REASON",
                   help="select this reason (repeatable; default: every reason). Known: "
                   + ", ".join(sorted(ALL_REASONS)))  # fmt: skip
    p.add_argument("--since", help="dead-lettered at or after: RFC 3339 with offset, or a duration ago (90s, 15m, 2h, 3d)")
    p.add_argument("--until", help="dead-lettered before: RFC 3339 with offset, or a duration ago")
    p.add_argument("--topic", action="append", default=[], metavar="TOPIC",
                   help="only dead letters from this input topic (repeatable)")  # fmt: skip
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--export", metavar="FILE", help="write the selection as JSON lines ('-' = stdout); send nothing")
    mode.add_argument("--corrections", metavar="FILE", type=Path,
                      help="JSON lines, each with the corrected 'event' and the 'deadletter' {partition, offset} "
                      "or original 'id' it corrects (the --export format)")  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="print what would be sent; send nothing")
    p.add_argument("--quiet", action="store_true", help="no line per dead letter; only the summary")
    return p


def _step_line(s: Step, dry_run: bool) -> str:
    dl = s.dead_letter
    where = f"{dl.source_topic}[{dl.source_partition}]@{dl.source_offset}"
    head = f"dead letter {dl.partition}:{dl.offset} ({dl.reason}, {iso(dl.timestamp)}) from {where}"
    if s.sends:
        verb = "would send" if dry_run else "sent"
        kind = "corrected" if s.action == "corrected" else "unchanged"
        return f"{head}: {verb} {kind} event id={dl.event_id or '?'} to {s.topic}"
    return f"{head}: left, {s.why}"


def main_replay(argv: list[str]) -> int:
    from ..kafka.security import kafka_client_kwargs

    args = _parser().parse_args(argv)
    try:
        selection = selection_of(args.reason, args.since, args.until, args.topic, time.time())
        corrections = Corrections()
        if args.corrections is not None:
            try:
                text = args.corrections.read_text(encoding="utf-8")
            except OSError as exc:
                raise ReplayUsageError(f"cannot read {args.corrections}: {exc.strerror}") from None
            corrections = load_corrections(text.splitlines())
    except ReplayUsageError as exc:
        print(f"stream-app replay-deadletters: {exc}", file=sys.stderr)
        return USAGE
    settings = validated_settings()
    families = {topic: family for family, topic in settings.input_topics().items()}
    unknown_topics = sorted(set(args.topic) - set(families))
    if unknown_topics:
        print(f"stream-app replay-deadletters: not an input topic: {', '.join(unknown_topics)}", file=sys.stderr)
        return USAGE
    wait_for_kafka(settings)  # KafkaUnreachable: one line, exit 1 (stream_app.cli)
    auth = kafka_client_kwargs(settings)
    try:
        records = asyncio.run(read_deadletters(settings.kafka_bootstrap, settings.topic_deadletter,
                                               since=selection.since, **auth))  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - any Kafka failure: one line, exit 1
        print(f"stream-app replay-deadletters: reading {settings.topic_deadletter}: {type(exc).__name__}: {exc}",
              file=sys.stderr)  # fmt: skip
        return FAILED
    selected = [dl for dl in records if selection.matches(dl)]
    if args.export is not None:
        return _export(selected, args.export, len(records))
    steps = plan(selected, corrections, families, now=time.time(), max_bytes=settings.max_event_bytes,
                 max_future_skew=settings.max_future_skew_seconds)  # fmt: skip
    if not args.quiet:
        for s in steps:
            print(_step_line(s, args.dry_run))
    wanted = sum(s.sends for s in steps)
    if not args.dry_run and wanted:
        try:
            acked = asyncio.run(send(settings.kafka_bootstrap, steps, **auth))
        except Exception as exc:  # noqa: BLE001 - report any Kafka failure as a clean exit code
            print(f"stream-app replay-deadletters: sending failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return FAILED
        if acked != wanted:
            print(f"stream-app replay-deadletters: only {acked} of {wanted} sends acknowledged", file=sys.stderr)
            return FAILED
    print(summary(steps, len(records), dry_run=args.dry_run))
    return exit_code_of(steps)


def _export(selected: Sequence[DeadLetter], target: str, read: int) -> int:
    lines = [json.dumps(export_line(dl), ensure_ascii=False) + "\n" for dl in selected]
    out: TextIO
    if target == "-":
        sys.stdout.writelines(lines)
        out = sys.stderr  # the summary must not end up among the exported lines
    else:
        try:
            Path(target).write_text("".join(lines), encoding="utf-8")
        except OSError as exc:
            print(f"stream-app replay-deadletters: cannot write {target}: {exc.strerror}", file=sys.stderr)
            return USAGE
        out = sys.stdout
    print(f"replay-deadletters: {read} dead letters read, {len(selected)} selected; exported to {target}", file=out)
    return OK
