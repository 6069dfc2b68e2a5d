"""docs/configuration.md must list every setting, with its default, and nothing else."""

import re

from stream_app.config import Settings, env_text
from tests.support.paths import ROOT

DOC = (ROOT / "docs" / "configuration.md").read_text()


def test_every_setting_is_documented_with_its_default():
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(STREAM_APP_\w+)` \| `([^`]*)` \|", DOC, re.M)}
    for name, field in Settings.model_fields.items():
        env = f"STREAM_APP_{name.upper()}"
        assert env in rows, f"{env} missing from docs/configuration.md"
        # As written in the environment (JSON for lists and dicts), so a default can be pasted.
        assert rows[env] == env_text(field.default), f"{env}: doc says {rows[env]!r}, code {field.default!r}"
    documented = set(rows) - {f"STREAM_APP_{n.upper()}" for n in Settings.model_fields}
    assert not documented, f"documented but not settings: {sorted(documented)}"


def test_settings_read_from_environment(monkeypatch):
    monkeypatch.setenv("STREAM_APP_TOPIC_PARTITIONS", "8")
    monkeypatch.setenv("STREAM_APP_KAFKA_BOOTSTRAP", "k1:9092,k2:9092")
    s = Settings()
    assert s.topic_partitions == 8
    assert s.kafka_bootstrap == "k1:9092,k2:9092"
