"""POST /events answers an accepted event that is older than every window of its family with a
warning (it updates state but no windowed metric counts it), and newer events without one."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from stream_app.config import Settings
from stream_app.events import decode_event
from stream_app.worker.http_ingest import family_horizons, result_of, too_old_warning, validate_all

EXAMPLES = Path(__file__).resolve().parents[3] / "schemas" / "examples"
DAY = 86400.0
NOW = time.time()


def _event(event_type: str, age_seconds: float):
    doc = json.loads((EXAMPLES / f"{event_type}.json").read_text())
    doc["id"] = str(uuid.uuid4())
    doc["time"] = datetime.fromtimestamp(NOW - age_seconds, timezone.utc).isoformat()
    return decode_event(json.dumps(doc).encode(), now=NOW)


def test_horizons_follow_the_windows_and_grace_settings():
    default = family_horizons(Settings())
    # Longest window + grace of each family, read from the settings' documented defaults.
    assert default == {
        "ticket": 86400 + 3600,
        "activity": 7776000 + 3600,  # the known-users window is usage's longest (90 d)
        "subscription": 2592000 + 86400,
        "survey": 7776000 + 86400,
    }
    wider = family_horizons(Settings(support_windows=[3600, 604800], support_grace_seconds=7200))
    assert wider["ticket"] == 604800 + 7200


@pytest.mark.parametrize(
    ("event_type", "age_days", "warned"),
    [
        ("ticket.created", 0.5, False),
        ("ticket.created", 2, True),
        ("activity.login", 80, False),
        ("activity.login", 365, True),
        ("subscription.payment", 30, False),
        ("subscription.payment", 40, True),
        ("survey.nps", 90, False),
        ("survey.nps", 365, True),
    ],
)
def test_only_events_beyond_every_window_are_warned_about(event_type, age_days, warned):
    horizons = family_horizons(Settings())
    warning = too_old_warning(_event(event_type, age_days * DAY), NOW, horizons)
    assert (warning is not None) == warned, warning
    if warned:
        family = event_type.split(".")[0]
        assert f"older than every {family} window" in warning and f"{age_days:.0f} days old" in warning


def test_the_warning_rides_on_the_accepted_result_only():
    old = json.loads((EXAMPLES / "survey.nps.json").read_text())
    old.update(id=str(uuid.uuid4()), time="2025-01-01T00:00:00Z")
    (checked,) = validate_all([json.dumps(old).encode()], max_event_bytes=65536, max_future_skew=300, now=NOW)

    class Meta:
        topic, partition, offset = "cs.surveys", 0, 7

    warning = too_old_warning(checked.event, NOW, family_horizons(Settings()))
    accepted = result_of(checked, delivery=Meta, warning=warning)
    assert accepted["status"] == "accepted" and "no windowed metric" in accepted["warning"]
    assert "warning" not in result_of(checked, delivery=Meta)
