"""Kafka client credentials from Settings: SASL (PLAIN / SCRAM) and TLS for every Kafka client
(Faust's consumer, producer and admin, ``ensure_topics``, the producer helper).

Secrets live in ``SecretStr`` settings and leave them only here, into client constructors:
never into a log line, an error message or a repr. See docs/security.md.
"""

from __future__ import annotations

import ssl
from typing import Any

from ..config import Settings

__all__ = ["faust_broker_credentials", "kafka_auth_failure", "kafka_client_kwargs", "kafka_ssl_context"]

_SSL_PROTOCOLS = {"SSL", "SASL_SSL"}
_SASL_PROTOCOLS = {"SASL_PLAINTEXT", "SASL_SSL"}


def kafka_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """TLS context for SSL / SASL_SSL listeners (None for plaintext ones)."""
    if settings.kafka_security_protocol not in _SSL_PROTOCOLS:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.kafka_ssl_cafile or None)
    ctx.check_hostname = settings.kafka_ssl_check_hostname
    if settings.kafka_ssl_certfile:
        ctx.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile or None)
    return ctx


def _sasl_user(settings: Settings) -> tuple[str, str]:
    user = settings.kafka_sasl_username
    password = settings.kafka_sasl_password.get_secret_value()
    if not user or not password:
        raise ValueError(
            f"STREAM_APP_KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol} needs "
            "STREAM_APP_KAFKA_SASL_USERNAME and STREAM_APP_KAFKA_SASL_PASSWORD"
        )
    return user, password


def kafka_client_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client (producer, consumer, admin); {} for PLAINTEXT."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    kwargs: dict[str, Any] = {"security_protocol": protocol}
    ctx = kafka_ssl_context(settings)
    if ctx is not None:
        kwargs["ssl_context"] = ctx
    if protocol in _SASL_PROTOCOLS:
        user, password = _sasl_user(settings)
        kwargs.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=user,
            sasl_plain_password=password,
        )
    return kwargs


def faust_broker_credentials(settings: Settings) -> Any:
    """``broker_credentials`` for ``faust.App`` (None for PLAINTEXT).

    Faust hands them to its consumer, producer and the client it creates topics with; its
    ``SASLCredentials`` repr shows the user name only.
    """
    import faust

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    ctx = kafka_ssl_context(settings)
    if protocol == "SSL":
        return faust.SSLCredentials(ctx)
    user, password = _sasl_user(settings)
    # With a context Faust speaks SASL_SSL, without one SASL_PLAINTEXT.
    return faust.SASLCredentials(
        username=user, password=password, mechanism=settings.kafka_sasl_mechanism, ssl_context=ctx
    )


async def kafka_auth_failure(settings: Settings, timeout: float = 10.0) -> str | None:
    """Why the first reachable bootstrap broker refuses our credentials, or None.

    aiokafka's clients turn an authentication failure into a generic "Unable to bootstrap"
    connection error (and callers retry those); this names the real cause, without secrets.
    """
    if settings.kafka_security_protocol == "PLAINTEXT":
        return None
    import asyncio

    from aiokafka.conn import create_conn
    from aiokafka.errors import KafkaError

    try:
        kwargs = kafka_client_kwargs(settings)
    except ValueError as exc:
        return str(exc)
    for server in settings.kafka_bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            conn = await asyncio.wait_for(create_conn(host, int(port), **kwargs), timeout)
        except ssl.SSLError as exc:
            return f"TLS handshake with Kafka at {host}:{port} failed: {exc.reason or type(exc).__name__}"
        except KafkaError as exc:
            # SaslAuthenticationFailed, UnsupportedSaslMechanismError, ...: a broker answered no.
            return (
                f"Kafka at {host}:{port} refused the {settings.kafka_sasl_mechanism} credentials of user "
                f"{settings.kafka_sasl_username!r} ({type(exc).__name__}); check "
                "STREAM_APP_KAFKA_SASL_USERNAME / STREAM_APP_KAFKA_SASL_PASSWORD / _MECHANISM"
            )
        except (OSError, asyncio.TimeoutError, ValueError):
            continue  # unreachable: not an answer about credentials
        conn.close()
        return None
    return None
