"""The small commands: ``topics``, ``schemas`` and ``config``."""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
from pathlib import Path

from pydantic import SecretStr

from ..config import Settings, env_name, env_text
from .failures import StartupFailure
from .startup import validated_settings, wait_for_kafka
from .worker import kafka_problem


def main_topics(argv: list[str]) -> int:
    from ..kafka.topics import ensure_topics

    argparse.ArgumentParser(
        prog="stream-app topics",
        description="Create the missing topics (input, dead-letter, health signals) with "
        "STREAM_APP_TOPIC_PARTITIONS partitions and print each topic's partition count. Settings: "
        "STREAM_APP_KAFKA_BOOTSTRAP, STREAM_APP_TOPIC_*, docs/configuration.md.",
    ).parse_args(argv)
    settings = validated_settings()
    wait_for_kafka(settings)
    try:
        partitions = asyncio.run(ensure_topics(settings))
    except RuntimeError as exc:
        raise StartupFailure(kafka_problem(settings, exc)) from exc
    for name, count in sorted(partitions.items()):
        print(f"{name}: {count} partitions")
    return 0


def default_schemas_dir() -> Path:
    """The checkout's ``schemas/`` when running from one (an editable install), wherever the
    command is started; else ``schemas`` under the current directory."""
    checkout = Path(__file__).resolve().parents[2] / "schemas"
    return checkout if checkout.is_dir() else Path("schemas")


def main_schemas(argv: list[str]) -> int:
    from ..events.schema_export import render_schemas, write_schemas

    default = default_schemas_dir()
    parser = argparse.ArgumentParser(
        prog="stream-app schemas",
        description="Write the JSON Schema of every event type and an example per type, generated from "
        "the pydantic models, or --check that a folder holds exactly what would be written.",
    )
    parser.add_argument("--out", type=Path, default=default, help=f"folder (default: {default})")
    parser.add_argument("--check", action="store_true", help="exit 1 if the folder differs from the models")
    args = parser.parse_args(argv)
    out: Path = args.out
    if args.check:
        if not out.is_dir():
            print(f"stream-app schemas: no folder {out} (pass --out DIR)", file=sys.stderr)
            return 2
        stale = [
            name
            for name, text in render_schemas().items()
            if not (out / name).is_file() or (out / name).read_text() != text
        ]
        if stale:
            print(f"out of date in {out}: " + ", ".join(stale), file=sys.stderr)
            return 1
        print(f"schemas up to date ({out})")
        return 0
    for path in write_schemas(out):
        print(path)
    return 0


def effective_settings(settings: Settings, environ: dict[str, str]) -> list[str]:
    """``VAR=value`` lines, shell-quoted; secrets that are set show as ``***``; values from the
    environment are marked."""
    lines = []
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            text = "***" if value.get_secret_value() else ""
        else:
            text = env_text(value)
        var = env_name(name)
        source = "  # from the environment" if var in environ or var.lower() in environ else ""
        lines.append(f"{var}={shlex.quote(text)}{source}")
    return lines


def main_config(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="stream-app config",
        description="Print the settings in effect (defaults plus STREAM_APP_* environment variables) as "
        "VAR=value lines, secrets masked. Exit 2, one line per variable, when a setting cannot be used. "
        "Every setting is explained in docs/configuration.md.",
    )
    parser.add_argument("--changed", action="store_true", help="only the settings set in the environment")
    args = parser.parse_args(argv)
    settings = validated_settings()
    for line in effective_settings(settings, dict(os.environ)):
        if not args.changed or line.endswith("# from the environment"):
            print(line)
    return 0
