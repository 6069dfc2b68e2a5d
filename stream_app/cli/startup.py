"""What every command does before it does its work: settings checked completely (syntax, then
what the engine and the Kafka clients will make of them) before any network call, then the
services waited for within the startup bound."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from ..config import Settings, SettingsProblem, env_name, example, load_settings


def validated_settings(**overrides: Any) -> Settings:
    """The settings from the environment (plus command-line ``overrides``), checked; raises
    SettingsProblem with one line per variable that cannot be used."""
    settings = load_settings()
    if overrides:
        # Re-validated: a command-line value gets the same checks as the variable.
        settings = _revalidate(settings, overrides)
    problems = [line for check in _CHECKS for line in check(settings)]
    if problems:
        raise SettingsProblem(problems)
    return settings


def _revalidate(settings: Settings, overrides: dict[str, Any]) -> Settings:
    from pydantic import ValidationError

    from ..config import validation_lines

    try:
        return Settings.model_validate({**settings.model_dump(), **overrides})
    except ValidationError as exc:
        raise SettingsProblem(validation_lines(exc)) from exc


def _family_problems(settings: Settings) -> list[str]:
    """The engine's own checks of its configuration (windows, buckets, SLA targets, weights)."""
    from ..worker import families

    labels = None
    out = []
    for prefix, build in (
        ("label", lambda: families.label_guard(settings)),
        ("support", lambda: families.support_config(settings, labels)),
        ("usage", lambda: families.usage_config(settings, labels)),
        ("revenue", lambda: families.revenue_config(settings, labels)),
        ("voice", lambda: families.voice_config(settings, labels)),
        ("health", lambda: families.health_config(settings)),
    ):
        try:
            built = build()
        except (ValueError, TypeError) as exc:
            variable = _variable_named_in(prefix, str(exc))
            line = f"{variable}: {exc}"
            if not variable.endswith("*"):
                line += f", e.g. {variable}={example(variable.removeprefix('STREAM_APP_').lower())}"
            out.append(line)
            continue
        if prefix == "label":
            labels = built
    return out


def _variable_named_in(prefix: str, message: str) -> str:
    """The setting of a family an engine message is about: of the family's variables, one set in
    the environment whose name (``windows``, or ``window``) the message uses, else any set one,
    else the family's variables as a pattern."""
    names = [name for name in Settings.model_fields if name.startswith(prefix + "_")]
    in_env = [name for name in names if env_name(name) in os.environ]

    def mentioned(name: str) -> bool:
        suffix = name.removeprefix(prefix + "_")
        return suffix in message or suffix.removesuffix("s") in message

    for candidates in ([n for n in in_env if mentioned(n)], in_env, [n for n in names if mentioned(n)]):
        if len(candidates) == 1:
            return env_name(candidates[0])
    return f"STREAM_APP_{prefix.upper()}_*"


def _kafka_client_problems(settings: Settings) -> list[str]:
    from ..kafka.security import kafka_client_kwargs

    try:
        kafka_client_kwargs(settings)  # SASL needs a user and a password; TLS files must load
    except (ValueError, OSError) as exc:
        return [str(exc)]
    return []


_CHECKS: tuple[Callable[[Settings], list[str]], ...] = (_family_problems, _kafka_client_problems)


def wait_for_kafka(settings: Settings) -> None:
    """Kafka answers as Kafka within the startup bound, or KafkaUnreachable."""
    from ..kafka.topics import check_kafka

    asyncio.run(check_kafka(settings))


def wait_for_redis(settings: Settings) -> None:
    """Redis answers PING within the startup bound, or RedisUnreachable (a Redis-backed store
    only; with STREAM_APP_REDIS_REQUIRED_AT_START=false an unreachable Redis is only logged)."""
    if settings.store != "redis":
        return
    import logging

    from ..store.connection import RedisUnreachable, check_redis

    try:
        check_redis(settings)
    except RedisUnreachable as exc:
        if settings.redis_required_at_start or exc.answered:
            raise
        logging.getLogger("stream_app.cli").warning("%s; starting without it (the store retries)", exc)
