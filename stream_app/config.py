"""Configuration from environment variables (prefix ``STREAM_APP_``).

One place for every setting; docs/configuration.md documents each field and
tests/unit/test_config_doc.py keeps that reference in step with this class.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from functools import lru_cache
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from .vocabulary import DEFAULT_COMMENT_THEMES, DEFAULT_SLA_TARGETS, OTHER_THEME


LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STREAM_APP_", extra="ignore")

    # --- Kafka -----------------------------------------------------------
    kafka_bootstrap: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, comma separated host:port."
    )
    app_id: str = Field(
        "stream-app",
        description="Consumer group and Faust app id; workers sharing it split the partitions.",
    )
    topic_tickets: str = Field("cs.tickets", description="Ticket events topic (key: ticket id).")
    topic_activity: str = Field(
        "cs.activity", description="Login/session/feature activity topic (key: user id)."
    )
    topic_subscriptions: str = Field(
        "cs.subscriptions", description="Subscription and payment events topic (key: account id)."
    )
    topic_surveys: str = Field(
        "cs.surveys", description="Survey response events topic (key: response id)."
    )
    topic_deadletter: str = Field(
        "cs.deadletter",
        description="Dead-letter topic: original bytes of rejected events, reason in headers.",
    )
    topic_health_signals: str = Field(
        "",
        description="Internal topic of per-entity account signals feeding customer health "
        "(key: account id); empty = '<app_id>.health-signals'.",
    )
    topic_partitions: int = Field(
        4, ge=1, description="Partitions of every input topic and of the health signals topic."
    )
    topic_replication: int = Field(
        1,
        ge=1,
        description="Replication factor of the topics the app creates (input, dead-letter, health signals) "
        "and of Faust's leader topic; production: 3 (docs/operations.md).",
    )
    session_timeout_seconds: float = Field(
        10.0,
        ge=6,
        description="Consumer group session timeout: how long a crashed worker keeps its partitions "
        "before the group reassigns them (broker minimum 6 s).",
    )
    producer_linger_seconds: float = Field(
        0.005,
        ge=0,
        le=1,
        description="How long the worker's Kafka producer waits to fill a batch (health signals, dead "
        "letters): fewer, larger produce requests for at most this much latency.",
    )
    producer_max_batch_size: int = Field(
        256 * 1024,
        ge=1024,
        description="Largest producer batch per partition, in bytes (Faust's default is 16 KiB).",
    )
    worker_instance_id: str = Field(
        "",
        description="Optional stable id per worker (e.g. the pod name) for Kafka static membership: "
        "a restarted worker with the same id takes its partitions back without a rebalance.",
    )

    # --- Redis / state ---------------------------------------------------
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL of the state store.")
    store: Literal["redis", "memory"] = Field(
        "redis",
        description="State store: 'redis' (states and their source offsets in Redis at redis_url, the "
        "system of record) or 'memory' (in-process only: every partition a worker is assigned is rebuilt "
        "from its topic's start; for tests and demos).",
    )

    store_flush_interval: float = Field(
        1.0,
        gt=0,
        description="Seconds between checkpoints: changed states and the source offsets they reflect are "
        "written to Redis (after the health signals they caused are produced), then offsets committed.",
    )
    ingest_batch_max: int = Field(
        1000, ge=1, description="Most messages an ingest agent takes from Faust at once (stream.take_events)."
    )
    ingest_batch_seconds: float = Field(
        0.02,
        gt=0,
        le=1,
        description="Longest an ingest agent waits to fill a batch: at most this much latency added per event.",
    )

    # --- Replication: Redis Cluster, replicated Kafka (docs/state-store.md, docs/operations.md) ---
    redis_cluster: bool = Field(
        False,
        description="redis_url is a node of a Redis Cluster: the store uses redis-py's cluster client, "
        "which finds the other nodes from it and follows failovers (every key of a partition's "
        "checkpoint shares one hash slot). The cluster has a single database: use /0 or no path.",
    )
    redis_cluster_nodes: str = Field(
        "",
        description="More Redis Cluster nodes (host:port, comma separated) to discover the cluster from "
        "when redis_url's node does not answer, e.g. at a start during a failover; credentials and TLS "
        "as in redis_url.",
    )
    topic_min_insync_replicas: int = Field(
        0,
        ge=0,
        description="min.insync.replicas of the topics the app creates (with producers' acks=all, a write "
        "needs this many replicas); 0 = the broker's default. Production: 2 with topic_replication 3.",
    )

    # --- Metrics engine ----------------------------------------------------
    support_bucket_seconds: int = Field(
        60, ge=1, description="Width of the support event-time buckets; every support window is a multiple."
    )
    support_grace_seconds: int = Field(
        3600,
        ge=0,
        description="Support buckets are kept this long beyond the longest window (relative to the "
        "watermark); older events are counted as too late. Must exceed max_future_skew_seconds.",
    )
    support_volume_windows: list[int] = Field(
        [300, 3600, 86400], description="Windows (s) of ticket created/solved/reopened counts (JSON list)."
    )
    support_windows: list[int] = Field(
        [3600, 86400],
        description="Windows (s) of response/resolution durations, FCR, handle time and SLA breaches.",
    )
    support_sla_targets: dict[str, list[float | None]] = Field(
        {p: list(targets) for p, targets in DEFAULT_SLA_TARGETS.items()},
        description="Priority -> [first reply target s, resolution target s] (JSON; null = no target).",
    )
    support_sla_at_risk_fraction: float = Field(
        0.8, gt=0, lt=1, description="An open SLA clock past this fraction of its target is 'at risk'."
    )
    support_calendars: dict[str, dict] = Field(
        {},
        description='Business hours per team, "*" for all (JSON: {"*": {"timezone": "Europe/Berlin", '
        '"weekdays": [0,1,2,3,4], "open": "09:00", "close": "17:00", "holidays": ["2026-12-25"]}}).',
    )
    usage_active_windows: list[int] = Field(
        [86400, 604800, 2592000],
        description="Windows (s) of active users (DAU/WAU/MAU), active users by client, signups and adoption.",
    )
    usage_session_windows: list[int] = Field(
        [3600, 86400, 604800], description="Windows (s) of sessions started and session duration."
    )
    usage_feature_windows: list[int] = Field(
        [3600, 86400, 604800], description="Windows (s) of users per feature and user-feature pairs."
    )
    usage_known_seconds: int = Field(
        7776000, ge=1, description="Known-users window, and how long a quiet user's state is kept (90 d)."
    )
    usage_idle_timeout_seconds: float = Field(
        1800.0, gt=0, description="A session without logout ends after this much idle time."
    )
    usage_adoption_seconds: float = Field(
        604800.0, gt=0, description="A new user counts as adopted if active within this time of signup."
    )
    usage_max_features_per_user: int = Field(
        32, ge=1, description="Most recent distinct features remembered per user."
    )
    usage_bucket_seconds: int = Field(60, ge=1, description="Width of the usage event-time buckets.")
    usage_grace_seconds: int = Field(
        3600, ge=0, description="Usage buckets kept beyond the longest window; older events are too late."
    )
    revenue_windows: list[int] = Field(
        [604800, 2592000], description="Windows (s) of MRR movements (7d, 30d)."
    )
    revenue_bucket_seconds: int = Field(3600, ge=1, description="Width of the revenue event-time buckets.")
    revenue_grace_seconds: int = Field(
        86400, ge=0, description="Revenue buckets kept beyond the longest window (billing webhooks retry)."
    )
    revenue_reporting_currency: str = Field(
        "USD", pattern=r"^[A-Z]{3}$", description="Currency of the reporting MRR and movement amounts."
    )
    revenue_fx_rates: dict[str, float] = Field(
        {},
        description="Static FX table, merged over the built-in one: value of one unit of each currency "
        'in a common base (JSON, e.g. {"USD": 1.0, "EUR": 1.08}).',
    )
    revenue_minor_units: dict[str, int] = Field(
        {}, description="ISO 4217 minor-unit exponents that differ from 2, merged over the built-in table."
    )
    revenue_trial_conversion_grace_seconds: float = Field(
        259200.0, ge=0, description="A trial converts if the account pays by trial end plus this."
    )
    voice_windows: list[int] = Field(
        [604800, 2592000, 7776000], description="Windows (s) of every survey metric (JSON list): 7d, 30d, 90d."
    )
    voice_bucket_seconds: int = Field(3600, ge=1, description="Width of the survey event-time buckets.")
    voice_grace_seconds: int = Field(
        86400, ge=0, description="Survey buckets kept beyond the longest window (survey tools deliver late)."
    )
    voice_min_responses: int = Field(
        30, ge=0, description="Responses below which a survey score is marked as a small sample."
    )
    voice_comment_themes: dict[str, list[str]] = Field(
        {k: list(v) for k, v in DEFAULT_COMMENT_THEMES.items()},
        description="Survey comment themes (JSON): theme -> words or phrases; a comment containing one "
        "(whole words, any case) is about that theme, one naming none is about 'other'. Theme names are "
        "label values: at most 20, lower-case [a-z0-9_].",
    )
    voice_keep_comment_text: bool = Field(
        False,
        description="Keep survey comment text in the response state (Redis) and pass it to customer "
        "health, so /accounts/{id}/health shows the lowest-sentiment comments' text. Off: only their "
        "sentiment and themes are kept; the text is read once, when its event is applied.",
    )
    health_voice_comments_shown: int = Field(
        3, ge=0, le=50, description="Lowest-sentiment comments an account's health facts list (voice window)."
    )
    health_weights: dict[str, float] = Field(
        {"usage": 0.35, "support": 0.25, "voice": 0.2, "revenue": 0.2},
        description="Customer health component weights (JSON); missing components are left out and "
        "the rest renormalised.",
    )
    health_at_risk_below: float = Field(0.4, ge=0, le=1, description="Health score below this: band at_risk.")
    health_healthy_from: float = Field(0.7, ge=0, le=1, description="Health score from this up: band healthy.")
    health_lowest_limit: int = Field(
        20, ge=1, le=1000, description="Default number of accounts /accounts/lowest answers."
    )
    label_team_allow: list[str] = Field(
        [], description="Team label allow-list (JSON list); empty = keep the first label_team_cap teams."
    )
    label_team_cap: int = Field(20, ge=1, description="Distinct team label values kept; others -> 'other'.")
    label_plan_allow: list[str] = Field(
        [], description="Plan label allow-list (JSON list); empty = keep the first label_plan_cap plans."
    )
    label_plan_cap: int = Field(20, ge=1, description="Distinct plan label values kept; others -> 'other'.")
    label_currency_allow: list[str] = Field(
        [], description="Currency label allow-list (JSON list); empty = keep the first label_currency_cap."
    )
    label_currency_cap: int = Field(20, ge=1, description="Distinct currency label values kept.")
    label_feature_allow: list[str] = Field(
        [], description="Feature label allow-list (JSON list); empty = keep the first label_feature_cap."
    )
    label_feature_cap: int = Field(50, ge=1, description="Distinct feature label values kept.")

    # --- Bounded state and recovery policies (docs/state-store.md, Memory model) ---------------
    support_ticket_retention_seconds: int = Field(
        30 * 86400,
        ge=0,
        description="A solved, closed or incomplete ticket's life ends this long after its newest event: "
        "a later event (e.g. a reopen) starts a new, incomplete ticket, and the state is deleted once the "
        "watermark passes that point plus the longest window and grace. 0 = keep every ticket for good. At "
        "least the longest support window + grace; 30 d covers customer health's look at solved tickets.",
    )
    revenue_account_retention_seconds: int = Field(
        730 * 86400,
        ge=0,
        description="An account not paying at the end of its timeline (churned, or purchases only) is forgotten "
        "this long after its newest fact: a later event starts a new life (a return counts as new, not as a "
        "reactivation) and the lifetime purchase gauges drop it. Paying accounts are always kept. 0 = keep every "
        "account that ever paid or purchased. At least the previous month plus the revenue horizon (64 d with "
        "the defaults).",
    )
    redis_eviction_policy: Literal["refuse", "warn"] = Field(
        "refuse",
        description="What a worker does at start when Redis' maxmemory-policy may evict keys (anything but "
        "noeviction): 'refuse' exits with an error; 'warn' runs, logging an ERROR every 10 minutes. Evicted "
        "checkpoints mean lost states; stream_app_store_redis_evicting_policy shows it either way.",
    )
    log_start_policy: Literal["earliest", "fail"] = Field(
        "earliest",
        description="When a partition's checkpoint (or read position) is older than the start of its log "
        "(retention deleted the events after it): 'earliest' resumes from the first offset still there, "
        "logging the partition and the offsets lost and counting them "
        "(stream_app_events_lost_to_retention_total); 'fail' stops the worker instead.",
    )
    debug_offsets_log: str = Field(
        "",
        description="Debug: file to which the worker appends every source offset its agents receive, as "
        "'topic partition first last' runs (the fault suite checks there is no gap). Empty = off.",
    )
    debug_recovery_pause_seconds: float = Field(
        0.0,
        ge=0,
        le=60,
        description="Debug: pause this long per table while taking partitions over, so tests can kill or "
        "join a worker during its recovery. 0 = off.",
    )

    # --- Web / exposition --------------------------------------------------
    web_host: str = Field("0.0.0.0", description="Address the worker's HTTP server binds.")
    web_port: int = Field(
        6066, ge=0, le=65535, description="Worker HTTP port: /metrics, /healthz, /readyz, /accounts/..."
    )
    advertised_url: str = Field(
        "",
        description="URL other workers use to reach this one (requests for accounts they do not own "
        "are routed there); empty = http://<hostname>:<web_port>.",
    )

    # --- Security (stream_app/security.py, docs/security.md) -------------------
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT",
        description="Kafka listener protocol of every client (workers, topics, generator): "
        "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.",
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-256", description="SASL mechanism for SASL_PLAINTEXT / SASL_SSL."
    )
    kafka_sasl_username: str = Field("", description="SASL user name.")
    kafka_sasl_password: SecretStr = Field(SecretStr(""), description="SASL password. Never logged.")
    kafka_ssl_cafile: str = Field(
        "", description="PEM file of the CA(s) that signed the brokers' certificates; empty = system CAs."
    )
    kafka_ssl_certfile: str = Field("", description="Client certificate (PEM) for mutual TLS; empty = none.")
    kafka_ssl_keyfile: str = Field("", description="Private key (PEM) of kafka_ssl_certfile.")
    kafka_ssl_check_hostname: bool = Field(
        True, description="Verify that the broker certificate matches the host name (keep on in production)."
    )
    redis_username: str = Field(
        "", description="Redis ACL user (AUTH user password); empty = from redis_url, or 'default'."
    )
    redis_password: SecretStr = Field(
        SecretStr(""),
        description="Redis password (ACL user or requirepass); overrides one in redis_url. Never logged. "
        "Use a rediss:// redis_url for TLS.",
    )
    redis_ssl_cafile: str = Field(
        "", description="PEM CA file that signed the Redis server certificate (rediss://); empty = system CAs."
    )
    api_token: SecretStr = Field(
        SecretStr(""),
        description="Bearer token the /accounts/... endpoints require (Authorization: Bearer ...); "
        "empty = no auth. Never logged.",
    )
    api_rate_limit: float = Field(
        0.0,
        ge=0,
        description="Requests per second per client address on /accounts/... and POST /events (429 "
        "beyond it); 0 = unlimited.",
    )
    api_rate_burst: int = Field(
        20, ge=1, description="Requests a client may make at once before api_rate_limit applies (429)."
    )

    # --- Ingest ----------------------------------------------------------
    max_event_bytes: int = Field(
        64 * 1024, ge=256, description="Events larger than this are dead-lettered unread."
    )
    max_future_skew_seconds: float = Field(
        300.0,
        ge=0,
        description="Events timestamped further than this in the future are rejected.",
    )

    # --- HTTP ingest (POST /events, stream_app/http_ingest.py) -------------
    http_ingest_enabled: bool = Field(
        True, description="Serve POST /events on the worker's HTTP port (docs/producing.md)."
    )
    http_ingest_max_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest POST /events body; bigger requests get 413 unread."
    )
    http_ingest_max_events: int = Field(
        1000, ge=1, description="Most events in one POST /events request; more get 413."
    )
    ingest_token: SecretStr = Field(
        SecretStr(""),
        description="Bearer token POST /events requires (Authorization: Bearer ...); empty = no auth. "
        "Never logged.",
    )
    log_level: str = Field(
        "info", description="Log level: critical, error, warning, info (a quiet start) or debug (everything)."
    )

    # --- Command line, startup and operations (stream_app/cli/, docs/operations.md) ---------
    startup_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="How long a command waits at start for Kafka (and Redis) to answer before it exits "
        "with one line naming the address and what answered (exit 1).",
    )
    redis_required_at_start: bool = Field(
        True,
        description="A worker whose Redis does not answer within startup_timeout_seconds exits (1). "
        "false: it starts anyway, rebuilds its partitions from the topics and checkpoints to Redis once "
        "it is back (docs/state-store.md). Wrong credentials or a server that is not Redis always stop it.",
    )
    log_format: Literal["plain", "json"] = Field(
        "plain", description="Log lines: 'plain' text, or 'json' (one JSON object per line)."
    )
    runbook_base_url: str = Field(
        "",
        description="Where docs/alerts.md is served (e.g. https://git.example.com/stream_app/blob/main/docs/alerts.md); "
        "Prometheus gets it as the external label runbook_base_url, which the alerts' runbook_url "
        "annotations use. Empty = the repository-relative docs/alerts.md.",
    )

    @field_validator("voice_comment_themes")
    @classmethod
    def _theme_labels(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        if len(value) > 20:
            raise ValueError("at most 20 themes (they are label values)")
        for name in value:
            if name == OTHER_THEME or not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", name):
                raise ValueError(f"theme names are [a-z][a-z0-9_]{{0,31}} and not {OTHER_THEME!r}")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        if value.lower() not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return value.lower()

    def health_signals_topic(self) -> str:
        return self.topic_health_signals or f"{self.app_id}.health-signals"

    def input_topics(self) -> dict[str, str]:
        """Event family name -> topic name."""
        return {
            "ticket": self.topic_tickets,
            "activity": self.topic_activity,
            "subscription": self.topic_subscriptions,
            "survey": self.topic_surveys,
        }


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def env_name(field: str) -> str:
    """The environment variable of a setting: ``topic_partitions`` -> ``STREAM_APP_TOPIC_PARTITIONS``."""
    return f"STREAM_APP_{field.upper()}"


def env_text(value: Any) -> str:
    """A value as it is written in the environment: JSON for lists and dicts (what the settings
    parse), the plain value otherwise; secrets as their (empty) default."""
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def reference_table() -> str:
    """The settings table of docs/configuration.md (``python -m stream_app.config``)."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        rows.append(f"| `{env_name(name)}` | `{env_text(field.default)}` | {field.description} |")
    return "\n".join(rows) + "\n"


# --- Settings that cannot be used: one line per variable, what is wrong and an example ------


class SettingsProblem(ValueError):
    """The environment holds settings that cannot be used; ``lines`` says which and why."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("; ".join(lines))
        self.lines = lines


def load_settings() -> Settings:
    """``Settings()`` from the environment; SettingsProblem names each bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsProblem(validation_lines(exc)) from exc
    except SettingsError as exc:  # a list or dict value that is not JSON
        match = re.search(r'field "(\w+)"', str(exc))
        if match is None or match.group(1) not in Settings.model_fields:
            raise SettingsProblem([f"settings: {exc}"]) from exc
        name = match.group(1)
        kind = "a JSON list" if isinstance(Settings.model_fields[name].default, list) else "a JSON object"
        raise SettingsProblem([_problem(name, f"must be {kind}")]) from exc


_MESSAGES = {
    "int_parsing": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "bool_parsing": "must be true or false",
    "list_type": "must be a JSON list",
    "dict_type": "must be a JSON object",
    "json_invalid": "must be valid JSON",
}


def validation_lines(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors():
        name, *inner = (str(part) for part in err["loc"])
        ctx = err.get("ctx") or {}
        kind = err["type"]
        if kind in _MESSAGES:
            what = _MESSAGES[kind]
        elif kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
            op = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
            what = f"must be {op} {next(iter(ctx.values()))}"
        elif kind == "literal_error":
            what = f"must be one of {ctx.get('expected', '').replace(chr(39), '')}"
        elif kind == "string_pattern_mismatch":
            what = f"must match {ctx.get('pattern')}"
        else:
            what = str(err["msg"]).removeprefix("Value error, ")
        if inner:
            what = f"entry {'.'.join(inner)} {what}"
        lines.append(_problem(name, what) if name in Settings.model_fields else f"settings: {what}")
    return lines


def _problem(name: str, what: str) -> str:
    field = Settings.model_fields[name]
    line = f"{env_name(name)}: {what}"
    raw = os.environ.get(env_name(name)) or os.environ.get(env_name(name).lower())
    if raw is not None and field.annotation is not SecretStr:  # never echo a secret
        line += f" (got {raw[:60]!r})"
    return line + f", e.g. {env_name(name)}={example(name)}"


def example(name: str) -> str:
    """A value that works, shell-quoted for pasting: the default, or one of the right shape."""
    default = Settings.model_fields[name].default
    annotation = str(Settings.model_fields[name].annotation)
    if default not in ("", [], {}) and not isinstance(default, SecretStr):
        text = env_text(default)
    elif annotation.startswith("list"):
        text = '["a","b"]'
    elif annotation.startswith("dict"):
        text = '{"key":1}'
    else:
        text = "value"
    return shlex.quote(text)


if __name__ == "__main__":
    print(reference_table(), end="")


def secret_values(settings: Settings) -> list[str]:
    """Every non-empty secret in the settings (for log scrubbing checks)."""
    out = []
    for name, info in type(settings).model_fields.items():
        value = getattr(settings, name)
        if hasattr(value, "get_secret_value") and value.get_secret_value():
            out.append(value.get_secret_value())
    return out
