"""The failures a command expects, and the exit code of each: 2 for settings that cannot be
used (fix the configuration), 1 for a service that does not answer as it should."""

from __future__ import annotations

from ..config import SettingsProblem
from ..kafka.topics import KafkaUnreachable
from ..store.connection import RedisUnreachable


class StartupFailure(RuntimeError):
    """A command could not start for a reason outside the configuration's syntax (exit 1)."""


EXPECTED: tuple[type[BaseException], ...] = (SettingsProblem, KafkaUnreachable, RedisUnreachable, StartupFailure)


def exit_code(exc: BaseException) -> int:
    return 2 if isinstance(exc, SettingsProblem) else 1
