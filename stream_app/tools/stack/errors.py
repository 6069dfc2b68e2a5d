"""What a failed local service reports: StackError, and the log lines that explain a failure."""

from __future__ import annotations

import os
import re
from pathlib import Path

TAIL_LINES = 40


class StackError(RuntimeError):
    """A local service could not be fetched, installed, started or queried."""



def tail(path: Path, lines: int = TAIL_LINES) -> str:
    """Last ``lines`` lines of a (log) file, or a note that it is missing."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 256 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return f"(no log file at {path})"
    return "\n".join(data.splitlines()[-lines:])


_ERROR_LINE = re.compile(r"\b(ERROR|FATAL)\b|Exception|Address already in use|^\d+:[CM] .* # ")


def log_excerpt(path: Path, lines: int = 25) -> str:
    """What explains a failed start: error lines of the latest run, then its last lines.

    Kafka logs its cause (bad config, port in use) well before the shutdown chatter
    that ends the log, so a plain tail would miss it.
    """
    text = tail(path, 5000)
    run = text.rsplit("\n===== ", 1)[-1].splitlines()
    errors = [ln for ln in run if _ERROR_LINE.search(ln)][:12]
    last = run[-lines:]
    out = f"log {path}"
    if errors:
        out += "\n-- error lines:\n" + "\n".join(errors)
    return out + f"\n-- last {len(last)} lines:\n" + "\n".join(last)
