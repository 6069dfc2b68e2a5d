"""``stream-app`` command line: worker, generator, local stack, demo, schemas, topics."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from .config import Settings

USAGE = """stream-app <command> [options]

commands:
  demo       start local Kafka + Redis, a worker and the generator; print where to look
  worker     run a metrics worker (settings from STREAM_APP_* environment variables)
  generate   send synthetic events to Kafka (see: stream-app generate --help)
  stack      run the local Kafka + Redis stack by hand (see: stream-app stack --help)
  topics     create the topics (input, dead-letter, health signals, table changelogs) if missing
  schemas    write the JSON Schema files (or --check that schemas/ is up to date)
  top        live terminal view of headline metrics and pipeline health (see: stream-app top --help)
"""


def run_worker(settings: Settings) -> int:
    import faust

    from .worker.app import StreamWorker
    from .kafka.topics import ensure_topics

    logging.basicConfig(level=settings.log_level.upper())
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    # Topics must exist with the right partition count before Faust subscribes.
    loop.run_until_complete(ensure_topics(settings))
    worker = StreamWorker(settings)
    faust.Worker(worker.app, loop=loop, loglevel=settings.log_level).execute_from_commandline()
    return 0


def _worker_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="stream-app worker")
    parser.add_argument("--web-port", type=int, help="overrides STREAM_APP_WEB_PORT")
    args = parser.parse_args(argv)
    settings = Settings()
    if args.web_port is not None:
        settings = settings.model_copy(update={"web_port": args.web_port})
    return run_worker(settings)


def _topics_main(argv: list[str]) -> int:
    from .kafka.topics import ensure_topics

    argparse.ArgumentParser(prog="stream-app topics").parse_args(argv)
    partitions = asyncio.run(ensure_topics(Settings()))
    for name, count in sorted(partitions.items()):
        print(f"{name}: {count} partitions")
    return 0


def _schemas_main(argv: list[str]) -> int:
    from pathlib import Path

    from .events.schema_export import render_schemas, write_schemas

    parser = argparse.ArgumentParser(prog="stream-app schemas")
    parser.add_argument("--out", default="schemas", help="output folder (default: schemas)")
    parser.add_argument("--check", action="store_true", help="fail if the folder differs")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.check:
        stale = [
            name
            for name, text in render_schemas().items()
            if not (out / name).is_file() or (out / name).read_text() != text
        ]
        if stale:
            print("out of date: " + ", ".join(stale), file=sys.stderr)
            return 1
        print("schemas up to date")
        return 0
    for path in write_schemas(out):
        print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "worker":
        return _worker_main(rest)
    if command == "generate":
        from .tools.producer import main_generate

        return main_generate(rest)
    if command == "stack":
        from .tools.stack import main_stack

        return main_stack(rest)
    if command == "demo":
        from .tools.demo import main_demo

        return main_demo(rest)
    if command == "topics":
        return _topics_main(rest)
    if command == "schemas":
        return _schemas_main(rest)
    if command == "top":
        from .tools.top import main_top

        return main_top(rest)
    print(f"unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
