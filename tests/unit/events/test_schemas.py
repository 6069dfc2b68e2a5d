"""Published JSON Schemas stay in step with the models; examples validate against them; docs cover them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from stream_app.config import Settings
from stream_app.events import EVENT_TYPES, FAMILIES, REASONS, SUBJECT_FIELDS, TOPIC_SETTINGS
from stream_app.events.schema_export import (
    REGENERATE,
    check_schemas,
    main,
    render_schemas,
    write_schemas,
)
from tests.support.paths import ROOT

SCHEMAS = ROOT / "schemas"
EXAMPLES = SCHEMAS / "examples"
DOCS = ROOT / "docs" / "events.md"
ALL_TYPES = sorted(EVENT_TYPES)


def load(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_committed_schemas_match_models():
    problems = check_schemas(SCHEMAS)
    assert not problems, (
        "schemas/ is out of date with stream_app/events:\n  "
        + "\n  ".join(problems)
        + f"\nRegenerate from the repository root with:  {REGENERATE}"
    )


def test_render_is_deterministic_and_canonical():
    first, second = render_schemas(), render_schemas()
    assert first == second
    assert {f"{t}.json" for t in EVENT_TYPES} <= set(first)
    assert {"index.json", "envelope.json", "events.json"} <= set(first)
    for name, text in first.items():
        assert text.endswith("}\n"), name
        assert json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n" == text


def test_write_then_check(tmp_path):
    written = write_schemas(tmp_path / "out")
    assert sorted(p.name for p in written) == sorted(render_schemas())
    assert check_schemas(tmp_path / "out") == []
    assert main(["--check", str(tmp_path / "out")]) == 0
    (tmp_path / "out" / "ticket.created.json").write_text("{}\n")
    (tmp_path / "out" / "ticket.merged.json").write_text("{}\n")
    problems = check_schemas(tmp_path / "out")
    assert any(p.startswith("differs:") and "ticket.created.json" in p for p in problems)
    assert any(p.startswith("stale") and "ticket.merged.json" in p for p in problems)
    assert main(["--check", str(tmp_path / "out")]) == 1
    assert any(p.startswith("missing:") for p in check_schemas(tmp_path / "nothing"))


def test_index_describes_routing():
    index = load(SCHEMAS / "index.json")
    assert sorted(index["families"]) == sorted(FAMILIES)
    assert sorted(index["types"]) == ALL_TYPES
    for type_str, entry in index["types"].items():
        model = EVENT_TYPES[type_str]
        assert entry["family"] == model.FAMILY
        assert entry["subject_field"] == SUBJECT_FIELDS[model.FAMILY]
        assert entry["topic_setting"] == TOPIC_SETTINGS[model.FAMILY]
        assert (SCHEMAS / entry["schema"]).is_file()
        assert (SCHEMAS / entry["example"]).is_file()
    for family, entry in index["families"].items():
        assert entry["default_topic"] == Settings.model_fields[TOPIC_SETTINGS[family]].default


def test_schema_requires_type_and_forbids_extra_data():
    for type_str in ALL_TYPES:
        schema = load(SCHEMAS / f"{type_str}.json")
        assert schema["properties"]["type"]["const"] == type_str
        assert "type" in schema["required"]
        data_ref = schema["properties"]["data"]["$ref"].rsplit("/", 1)[-1]
        assert schema["$defs"][data_ref]["additionalProperties"] is False


# --- examples against the JSON Schemas (jsonschema is a test dependency) ---------


@pytest.fixture(scope="module")
def validator_for():
    import jsonschema

    def make(name: str):
        schema = load(SCHEMAS / name)
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        return cls(schema, format_checker=cls.FORMAT_CHECKER)

    return make


@pytest.mark.parametrize("type_str", ALL_TYPES)
def test_example_valid_against_json_schemas(validator_for, type_str):
    instance = load(EXAMPLES / f"{type_str}.json")
    for name in (f"{type_str}.json", "events.json", "envelope.json"):
        errors = [e.message for e in validator_for(name).iter_errors(instance)]
        assert not errors, f"{name}: {errors}"


INVALID_FOR_SCHEMA = [
    ("ticket.created", lambda o: o["data"].update(priority="HIGH")),
    ("ticket.replied", lambda o: o["data"].update(public="yes")),
    ("activity.feature_used", lambda o: o["data"].update(feature="Reports Export")),
    ("activity.login", lambda o: o["data"].update(typo_field=1)),
    ("subscription.started", lambda o: o["data"].update(amount_minor=-1)),
    ("subscription.payment", lambda o: o["data"].update(currency="eur")),
    ("survey.nps", lambda o: o["data"].update(score=11)),
    ("survey.nps", lambda o: o["data"].update(score="9")),
    ("survey.csat", lambda o: o.pop("type")),
    ("ticket.closed", lambda o: o.update(schemaversion=2)),
    ("ticket.closed", lambda o: o.pop("id")),
]


@pytest.mark.parametrize(("type_str", "mutate"), INVALID_FOR_SCHEMA)
def test_json_schema_rejects_what_decoder_rejects(validator_for, type_str, mutate):
    from stream_app.events import EventRejected, decode_event

    instance = load(EXAMPLES / f"{type_str}.json")
    mutate(instance)
    with pytest.raises(EventRejected):
        decode_event(json.dumps(instance).encode())
    assert list(validator_for(f"{type_str}.json").iter_errors(instance))
    assert list(validator_for("events.json").iter_errors(instance))


# --- docs ---------------------------------------------------------------------------------------


def test_docs_cover_every_type_field_and_reason():
    text = DOCS.read_text(encoding="utf-8")
    for type_str, model in EVENT_TYPES.items():
        section = re.search(rf"^### `{re.escape(type_str)}`$(.*?)(?=^#|\Z)", text, re.M | re.S)
        assert section, f"docs/events.md has no '### `{type_str}`' section"
        for field in model.model_fields["data"].annotation.model_fields:
            assert f"`{field}`" in section.group(1), f"{type_str}: field {field} not documented"
    for reason in REASONS:
        assert f"`{reason}`" in text, f"reason {reason} not documented"
    for family in FAMILIES:
        assert f"`{TOPIC_SETTINGS[family]}`" in text
    assert REGENERATE in text


def test_docs_examples_decode():
    from stream_app.events import decode_event

    blocks = re.findall(r"```json\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= len(FAMILIES)
    families = {decode_event(block.encode()).family for block in blocks}
    assert families == set(FAMILIES)
