"""Events for tests: a light stand-in for a decoded event, and wire events built from the schema
examples (schemas/examples, one valid event per type)."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from stream_app.events import EVENT_TYPES, SUBJECT_FIELDS, family_of

from .paths import EXAMPLES_DIR

EXAMPLES = {t: json.loads((EXAMPLES_DIR / f"{t}.json").read_text()) for t in EVENT_TYPES}
NOW = time.time()  # when the tests were collected: built events default to 10 minutes before


@dataclass
class Ev:
    """Duck-typed stand-in for a decoded event: the attributes the families read. Its subject (the
    Kafka key) is its family's subject field in ``data``."""

    id: str
    type: str
    ts: float
    data: dict = field(default_factory=dict)

    @property
    def subject(self) -> str:
        return self.data[SUBJECT_FIELDS[self.type.split(".", 1)[0]]]

    def as_reference(self) -> dict[str, Any]:
        """The plain form the reference computations (tests/reference) take."""
        return dict(id=self.id, type=self.type, time=self.ts, data=self.data)


def iso(ts: float, tz: timezone = timezone.utc) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).astimezone(tz).isoformat()


def event(event_type: str, *, id: str | None = None, subject: str | None = None, ts: float | None = None, **data) -> dict:
    """A valid wire event (dict) of ``event_type`` from its schema example, with overrides."""
    ev = json.loads(json.dumps(EXAMPLES[event_type]))
    ev["id"] = id or f"evt-{uuid.uuid4().hex}"
    ev["time"] = iso(NOW - 600 if ts is None else ts)
    if subject is not None:
        ev["subject"] = ev["data"][SUBJECT_FIELDS[family_of(event_type)]] = subject
    ev["data"].update(data)
    return ev


def enc(ev: object) -> bytes:
    return json.dumps(ev).encode()


def at_path(obj: dict, path: str, sep: str = ".") -> tuple[dict, str]:
    """Where ``path`` points in a nested dict: (the dict holding its last key, that key).
    ``at_path(ev, "data.score")`` -> ``(ev["data"], "score")``."""
    *parents, last = path.split(sep)
    for key in parents:
        obj = obj[key]
    return obj, last


def arrival_orders(events: list, *, seed: int, runs: int, redelivered: int) -> Iterator[list]:
    """``runs`` arrival orders of ``events``, each shuffled with ``redelivered`` of them twice."""
    rnd = random.Random(seed)
    for _ in range(runs):
        shuffled = events + rnd.sample(events, redelivered)
        rnd.shuffle(shuffled)
        yield shuffled
