"""Render and write the published JSON Schemas (schemas/ at the repository root).

    python -m stream_app.events.schema_export [out_dir]          # write (default: ./schemas)
    python -m stream_app.events.schema_export --check [out_dir]  # exit 1 if out of date

Output is deterministic (sorted keys, 2-space indent, trailing newline) so the committed files
can be compared byte for byte with what the models produce (tests/unit/events/test_schemas.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict

from ..config import Settings
from .envelope import SUPPORTED_SCHEMAVERSION, Envelope
from .registry import EVENT_ADAPTER, EVENT_TYPES, FAMILIES, SUBJECT_FIELDS, TOPIC_SETTINGS

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
REGENERATE = "python -m stream_app.events.schema_export schemas"
_COMMENT = f"Generated from stream_app/events by `{REGENERATE}`; do not edit by hand."


class _GenericEnvelope(Envelope):
    """Any event: the envelope attributes, with ``data`` left to the per-type schema."""

    model_config = ConfigDict(title="Envelope")

    type: Literal[tuple(EVENT_TYPES)]  # type: ignore[valid-type]
    data: dict[str, Any]


def _dump(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _published(schema: dict[str, Any]) -> dict[str, Any]:
    return {"$schema": JSON_SCHEMA_DIALECT, "$comment": _COMMENT, **schema}


def _index() -> dict[str, Any]:
    defaults = Settings.model_fields
    return {
        "$comment": _COMMENT,
        "schemaversion": SUPPORTED_SCHEMAVERSION,
        "families": {
            family: {
                "topic_setting": TOPIC_SETTINGS[family],
                "default_topic": defaults[TOPIC_SETTINGS[family]].default,
                "subject_field": SUBJECT_FIELDS[family],
                "types": [t for t, m in EVENT_TYPES.items() if m.FAMILY == family],
            }
            for family in FAMILIES
        },
        "types": {
            type_str: {
                "family": model.FAMILY,
                "topic_setting": TOPIC_SETTINGS[model.FAMILY],
                "subject_field": model.SUBJECT_FIELD,
                "schema": f"{type_str}.json",
                "example": f"examples/{type_str}.json",
            }
            for type_str, model in EVENT_TYPES.items()
        },
    }


def render_schemas() -> dict[str, str]:
    """File name (relative to the schema directory) -> file text."""
    files = {
        "envelope.json": _dump(_published(_GenericEnvelope.model_json_schema())),
        "events.json": _dump(
            _published({"title": "Event", **EVENT_ADAPTER.json_schema()})
        ),
        "index.json": _dump(_index()),
    }
    for type_str, model in EVENT_TYPES.items():
        files[f"{type_str}.json"] = _dump(_published(model.model_json_schema()))
    return dict(sorted(files.items()))


def write_schemas(out_dir: Path) -> list[Path]:
    """Write every rendered schema under ``out_dir``; returns the paths written (sorted)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_schemas().items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8", newline="\n")
        written.append(path)
    return written


def check_schemas(out_dir: Path) -> list[str]:
    """Problems that make ``out_dir`` differ from render_schemas() (empty list: up to date).

    Stale generated files (top-level *.json not rendered any more) count as problems;
    the hand-written examples/ directory is not checked here.
    """
    out_dir = Path(out_dir)
    rendered = render_schemas()
    problems = []
    for name, text in rendered.items():
        path = out_dir / name
        if not path.is_file():
            problems.append(f"missing: {path}")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"differs: {path}")
    if out_dir.is_dir():
        for path in sorted(out_dir.glob("*.json")):
            if path.name not in rendered:
                problems.append(f"stale (delete it): {path}")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    args = [a for a in args if a != "--check"]
    out_dir = Path(args[0]) if args else Path("schemas")
    if check:
        problems = check_schemas(out_dir)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print(f"schemas out of date; run: {REGENERATE}", file=sys.stderr)
        return 1 if problems else 0
    for path in write_schemas(out_dir):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
