"""One log format for every command and library: plain text by default, one JSON object per
line with ``STREAM_APP_LOG_FORMAT=json``, on stderr.

At the default level the start is quiet: Faust's, mode's and aiokafka's INFO chatter (service
trees, subscription tables, "[^--Service]: Starting..." lines, also those mode logs under
stream_app's module names) is left out, stream_app's own lines stay; ``debug`` shows all.
"""

from __future__ import annotations

import json
import logging
import logging.config
import time
from typing import Any

from ..config import Settings

PLAIN = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# Libraries whose INFO lines narrate their internals; their warnings and errors still show.
CHATTY = ("faust", "mode", "aiokafka", "kafka")
# aiokafka logs these at ERROR while a new cluster creates its offsets topic: on a first start
# they are expected and resolve within seconds, so they are dropped for that long.
FIRST_START_NOISE = ("GroupCoordinatorNotAvailableError", "Marking the coordinator dead")


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message"[, "exception"]}``, one object per line."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


JsonFormatter.converter = time.gmtime


class QuietStart(logging.Filter):
    """Drops mode's service-tree INFO lines ("[^---Name]: Starting..."), and FIRST_START_NOISE
    during the first ``grace`` seconds of the process."""

    def __init__(self, grace: float = 30.0) -> None:
        super().__init__()
        self.until = time.monotonic() + grace

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.levelno <= logging.INFO and message.startswith("[^"):
            return False
        if record.name.startswith("aiokafka") and time.monotonic() < self.until:
            return not any(noise in message for noise in FIRST_START_NOISE)
        return True


def logging_config(settings: Settings) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict (also what Faust's worker is given)."""
    level = settings.log_level.upper()
    quiet = settings.log_level != "debug"
    plain = {"format": PLAIN, "datefmt": "%Y-%m-%d %H:%M:%S"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": plain, "json": {"()": JsonFormatter}},
        "filters": {"quiet_start": {"()": QuietStart, "grace": settings.startup_timeout_seconds}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": settings.log_format,
                "filters": ["quiet_start"] if quiet else [],
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {name: {"level": "WARNING" if quiet else level} for name in CHATTY},
    }


def setup_logging(settings: Settings) -> dict[str, Any]:
    config = logging_config(settings)
    logging.config.dictConfig(config)
    return config
