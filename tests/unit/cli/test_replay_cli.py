"""``stream-app replay-deadletters`` and ``stream-app lag`` before any network call: --help says
everything, unusable options end with one line and exit 2."""

from __future__ import annotations

import pytest

from stream_app.cli import USAGE, main
from stream_app.cli.lag import lag_lines
from stream_app.kafka.lag import PartitionLag


def test_listed_in_the_usage():
    assert "replay-deadletters" in USAGE and "\n  lag " in USAGE


def test_help_is_complete(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["replay-deadletters", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for needle in ("--reason", "--since", "--until", "--topic", "--export", "--corrections", "--dry-run",
                   "exit codes: 0", "3 some selected", "processing_error", "future_time", "original id"):  # fmt: skip
        assert needle in text, needle


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--reason", "bogus"], "unknown reason(s) bogus"), (["--since", "yesterday"], "not a time"),
     (["--corrections", "/nonexistent/fix.jsonl"], "cannot read /nonexistent/fix.jsonl"),
     (["--topic", "not.an.input"], "not an input topic: not.an.input")],
)  # fmt: skip
def test_unusable_options_exit_2_with_one_line(args, message, capsys, monkeypatch):
    monkeypatch.setenv("STREAM_APP_KAFKA_BOOTSTRAP", "127.0.0.1:1")  # never reached
    assert main(["replay-deadletters", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_export_and_corrections_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["replay-deadletters", "--export", "-", "--corrections", "x"])
    assert exit_.value.code == 2


def test_lag_lines():
    lags = [PartitionLag("cs.tickets", 0, 10, 0, 25), PartitionLag("cs.tickets", 1, None, 5, 9),
            PartitionLag("cs.surveys", 0, 3, 7, 7)]  # fmt: skip
    assert [p.lag for p in lags] == [15, 4, 0]  # never committed: from the log start; commit below start: from it
    assert lag_lines("new-app", lags) == [
        "cs.surveys: lag 0 (end offsets 7)",
        "cs.tickets: lag 19 (end offsets 34, 1 of 2 partitions never committed)",
        "app id new-app: total lag 19 messages on 3 partitions",
    ]
