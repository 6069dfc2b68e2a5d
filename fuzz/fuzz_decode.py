"""Coverage-guided fuzzing of the event decoder and the metric cores behind it (atheris).

    pip install atheris            # wheels for CPython 3.11 on Linux x86_64
    python fuzz/fuzz_decode.py -runs=200000            # or -max_total_time=300
    python fuzz/fuzz_decode.py fuzz/corpus -runs=...   # keep and grow a corpus

Seeds are the schema examples. Each input is decoded as it would be read from every topic;
anything but ``EventRejected`` from the decoder, or any exception from the metric core fed an
accepted event, is a crash that atheris reports with the input. The test suite runs a bounded
hypothesis equivalent (tests/security/test_bad_input.py) on every run; this is for long runs.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from stream_app.config import Settings
    from stream_app.events import EventRejected, decode_event
    from stream_app.events.decode import REASONS
    from stream_app.worker.families import build_families

NOW = time.time()
FAMILIES = {f.event_family: f for f in build_families(Settings())}
EXAMPLES = Path(__file__).resolve().parents[1] / "schemas" / "examples"


def test_one_input(data: bytes) -> None:
    for family, fam in FAMILIES.items():
        try:
            event = decode_event(data, expected_family=family, now=NOW)
        except EventRejected as exc:
            if exc.reason not in REASONS:
                raise AssertionError(f"unknown reason {exc.reason!r}") from None
            continue
        state, applied = fam.apply(None, event)
        index = fam.make_index(fam.config)
        index.update((), fam.contributions(state, fam.config))
        list(index.collect(NOW))
        json.loads(json.dumps(state.to_dict()))


def seed_corpus(directory: Path) -> None:
    """Write the schema examples as seeds into an empty corpus directory."""
    directory.mkdir(parents=True, exist_ok=True)
    if not any(directory.iterdir()):
        for path in EXAMPLES.glob("*.json"):
            (directory / path.name).write_bytes(json.dumps(json.loads(path.read_text())).encode())


def main(argv: list[str]) -> None:
    corpus = [a for a in argv[1:] if not a.startswith("-")]
    if not corpus:  # default corpus: the schema examples, in a scratch directory
        default = Path(tempfile.gettempdir()) / "stream_app_fuzz_corpus"
        seed_corpus(default)
        argv = [*argv, str(default)]
    else:
        for c in corpus:
            seed_corpus(Path(c))
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
