"""``stream-app`` command line: one entry point, one way to fail.

Every command reads its settings the same way (``STREAM_APP_*``, validated before any network
call) and ends the same way: a setting that cannot be used prints one line per variable and
exits 2, a service that does not answer within ``STREAM_APP_STARTUP_TIMEOUT_SECONDS`` prints one
line naming the address and exits 1. Tracebacks are for unexpected failures, or with
``--debug`` / ``STREAM_APP_LOG_LEVEL=debug``.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable

from .failures import EXPECTED, exit_code

USAGE = """usage: stream-app [--version] [--debug] <command> [options]

commands:
  demo       start local Kafka + Redis, a worker and the generator; print where to look
  worker     run a metrics worker (settings from STREAM_APP_* environment variables)
  generate   send synthetic events to Kafka (see: stream-app generate --help)
  stack      run the local Kafka + Redis stack by hand (see: stream-app stack --help)
  topics     create the topics (input, dead-letter, health signals) if missing
  schemas    write the JSON Schema files (or --check that schemas/ is up to date)
  top        live terminal view of headline metrics and pipeline health (see: stream-app top --help)
  config     print the effective settings (secrets masked)
  lag        how far an app id is behind on the input topics (see: stream-app lag --help)
  replay-deadletters
             send dead-lettered events (corrected, or unchanged for transient reasons) back
             to their input topic (see: stream-app replay-deadletters --help)

options:
  --version  print the version and exit
  --debug    show the full traceback of a failure
  -h, --help this text; `stream-app <command> --help` for a command's options

Settings are STREAM_APP_* environment variables: every one is in docs/configuration.md,
and `stream-app config` prints the values in effect.
"""


# Commands that read STREAM_APP_* settings: checked before the command runs (and before any
# network call), so a bad value ends the same way everywhere.
SETTINGS_COMMANDS = frozenset({"worker", "generate", "topics", "config", "demo", "lag", "replay-deadletters"})


def _command(name: str) -> Callable[[list[str]], int] | None:
    # Imported on use: `stream-app top` should not pay for Faust's import.
    if name == "worker":
        from .worker import main_worker

        return main_worker
    if name == "generate":
        from ..tools.producer import main_generate

        return main_generate
    if name == "stack":
        from ..tools.stack import main_stack

        return main_stack
    if name == "demo":
        from ..tools.demo import main_demo

        return main_demo
    if name == "top":
        from ..tools.top import main_top

        return main_top
    if name == "replay-deadletters":
        from .replay import main_replay

        return main_replay
    if name == "lag":
        from .lag import main_lag

        return main_lag
    if name in ("topics", "schemas", "config"):
        from . import commands

        return getattr(commands, f"main_{name}")
    return None


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("stream_app")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = False
    while argv and argv[0].startswith("-"):
        flag = argv.pop(0)
        if flag in ("-h", "--help"):
            print(USAGE, end="")
            return 0
        if flag == "--version":
            print(f"stream-app {version()}")
            return 0
        if flag == "--debug":
            debug = True
            continue
        print(f"stream-app: unknown option {flag}\n\n{USAGE}", end="", file=sys.stderr)
        return 2
    if not argv:
        print(USAGE, end="", file=sys.stderr)
        return 2
    name, rest = argv[0], argv[1:]
    command = _command(name)
    if command is None:
        print(f"stream-app: unknown command {name!r}\n\n{USAGE}", end="", file=sys.stderr)
        return 2
    debug = debug or os.environ.get("STREAM_APP_LOG_LEVEL", "").lower() == "debug"
    try:
        if name in SETTINGS_COMMANDS and not {"-h", "--help"} & set(rest):
            from .startup import validated_settings

            validated_settings()
        code = command(rest)
        sys.stdout.flush()  # here, where a closed pipe is caught below, not at interpreter exit
        return code
    except EXPECTED as exc:
        if debug:
            traceback.print_exc()
        for line in getattr(exc, "lines", None) or [str(exc)]:
            print(f"stream-app {name}: {line}", file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`stream-app config | head`): no traceback, and none from the
        # interpreter flushing stdout at exit either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
