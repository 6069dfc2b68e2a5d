"""Reprocessing after a definition change (docs/operations.md): a worker under a new app id,
with a changed definition (one more ticket-volume window), rebuilds its state from the retained
input topics from scratch while the old app keeps serving; ``stream-app lag`` tells when it has
caught up; then both equal their own batch reference over the same events (the new one with
the new definition)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.faults.harness import FaultRun, make_event_log
from tests.support.references import compare_with_reference
from tests.support.worker import WorkerProcess, settings_of, wait_for

pytestmark = pytest.mark.integration

NEW_VOLUME_WINDOWS = [300, 3600, 7200, 86400]


def _lag(env: dict[str, str], app_id: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_APP_")}
    return subprocess.run([sys.executable, "-m", "stream_app.cli", "lag", "--app-id", app_id, "--max-lag", "0"],
                          env={**clean, **env}, capture_output=True, text=True, timeout=120)  # fmt: skip


def test_new_app_id_rebuilds_from_the_retained_topics_while_the_old_one_serves(stack, tmp_path):
    log = make_event_log(seed=20261205)
    run = FaultRun(stack, log, tmp_path, "reprocess-old")
    new_app = f"{run.app_id}-v2"
    new_env = {**run.env, "STREAM_APP_APP_ID": new_app,
               # its own dead-letter topic: the rebuild dead-letters every invalid event once more
               "STREAM_APP_TOPIC_DEADLETTER": f"{new_app}.deadletter",
               # the definition change: a 2-hour ticket volume window besides the old ones
               "STREAM_APP_SUPPORT_VOLUME_WINDOWS": json.dumps(NEW_VOLUME_WINDOWS)}  # fmt: skip
    new = WorkerProcess(new_env, tmp_path, name="new")
    try:
        old = run.start(run.worker("old"))
        run.feed()
        run.at_fraction(0.5)
        behind = _lag(new_env, new_app)  # never committed: all retained messages are still to do
        assert behind.returncode == 3 and "never committed" in behind.stdout, behind
        new.start(ready_timeout=180)  # from the earliest offset, while traffic goes on
        run.finish()
        assert old.http_status("/readyz") == 200, "the old app serves throughout"
        caught_up = wait_for(lambda: _lag(new_env, new_app).returncode == 0 or None, timeout=300, interval=2,
                             message="the new app id caught up")  # fmt: skip
        assert caught_up
        # The health signals of the new app must be in too: they are its own topic.
        wait_for(lambda: new.http_status("/readyz") == 200, timeout=60, message="new worker ready")
        # settings_of takes values as they are, not as JSON: the list is given as one
        new_settings = settings_of({k: v for k, v in new_env.items() if k != "STREAM_APP_SUPPORT_VOLUME_WINDOWS"})
        new_settings = new_settings.model_copy(update={"support_volume_windows": NEW_VOLUME_WINDOWS})
        for workers, settings in (([old], settings_of(run.env)), ([new], new_settings)):
            diff = compare_with_reference(workers, log.valid, settings, stack.bootstrap)
            assert diff["missing"] == diff["lost"] == diff["double"] == diff["extra"] == 0, (settings.app_id, diff)
        new_series = [line for line in new.metrics_text().splitlines() if 'window="2h"' in line]
        old_series = [line for line in old.metrics_text().splitlines() if 'window="2h"' in line]
        assert new_series and not old_series, "only the new definition has the 2-hour window"
    finally:
        new.stop()
        run.close()
