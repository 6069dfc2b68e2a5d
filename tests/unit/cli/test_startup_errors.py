"""The command line's one way to fail, run as a user runs it (the real `stream-app` process):
a setting that cannot be used is one line naming the variable, with an example, exit 2; a Kafka
address that refuses or is not Kafka is one line naming it, exit 1, within the startup bound.
No servers of the project are needed: every check here happens before or instead of them."""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.upper().startswith("STREAM_APP_")}


def stream_app(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60):
    return subprocess.run(
        [sys.executable, "-m", "stream_app.cli", *args],
        env={**CLEAN_ENV, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# (variable, bad value): each is wrong in a different way (type, JSON shape, choice, range,
# pattern, the engine's own rule, a missing companion setting).
BAD_SETTINGS = [
    ("STREAM_APP_TOPIC_PARTITIONS", "four"),
    ("STREAM_APP_TOPIC_PARTITIONS", "0"),
    ("STREAM_APP_SUPPORT_WINDOWS", "3600,86400"),
    ("STREAM_APP_SUPPORT_WINDOWS", "[90]"),
    ("STREAM_APP_LOG_LEVEL", "verbose"),
    ("STREAM_APP_LOG_FORMAT", "xml"),
    ("STREAM_APP_STORE", "postgres"),
    ("STREAM_APP_KAFKA_SSL_CHECK_HOSTNAME", "maybe"),
    ("STREAM_APP_REVENUE_REPORTING_CURRENCY", "usd"),
    ("STREAM_APP_HEALTH_WEIGHTS", '{"karma": 1}'),
    ("STREAM_APP_KAFKA_SECURITY_PROTOCOL", "TLS"),
    ("STREAM_APP_STARTUP_TIMEOUT_SECONDS", "-1"),
]


# Every bad setting with the worker; a few with every other command that reads settings.
CASES = [("worker", *bad) for bad in BAD_SETTINGS] + [
    (command, *bad) for command in ("generate", "topics", "config", "demo") for bad in BAD_SETTINGS[::4]
]


@pytest.mark.parametrize(("command", "variable", "value"), CASES)
def test_a_bad_setting_is_one_line_naming_the_variable_exit_2(command, variable, value):
    # Kafka and Redis point at closed ports: the process must stop before it tries them.
    env = {
        variable: value,
        "STREAM_APP_KAFKA_BOOTSTRAP": f"127.0.0.1:{closed_port()}",
        "STREAM_APP_REDIS_URL": f"redis://127.0.0.1:{closed_port()}/0",
    }
    t0 = time.monotonic()
    proc = stream_app(command, env=env)
    took = time.monotonic() - t0
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"stream-app {command}: {variable}"), lines[0]
    assert took < 20, f"{took:.1f}s: no network wait before the settings are checked"


@pytest.mark.parametrize(("variable", "value"), BAD_SETTINGS)
def test_the_line_gives_an_example_that_is_accepted(variable, value, monkeypatch):
    """The example after "e.g." is itself a good value: pasting it (shell-quoted) fixes that
    variable. In-process: the same checks the commands run before anything else."""
    from stream_app.cli.startup import validated_settings
    from stream_app.config import SettingsProblem

    for name in [k for k in os.environ if k.upper().startswith("STREAM_APP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsProblem) as info:
        validated_settings()
    (line,) = info.value.lines
    match = re.search(rf"e\.g\. {variable}=(.+)$", line)
    assert match, line
    (pasted,) = shlex.split(f"{variable}={match.group(1)}")
    monkeypatch.setenv(variable, pasted.split("=", 1)[1])
    validated_settings()


def test_a_secret_is_never_echoed_in_the_error():
    proc = stream_app("config", env={"STREAM_APP_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "STREAM_APP_KAFKA_SASL_PASSWORD": "hunter2-x"})
    assert proc.returncode == 2
    assert "STREAM_APP_KAFKA_SASL_USERNAME" in proc.stderr and "hunter2-x" not in proc.stderr


def test_a_closed_kafka_port_fails_within_the_bound_naming_the_address():
    port = closed_port()
    env = {"STREAM_APP_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}", "STREAM_APP_STORE": "memory",
           "STREAM_APP_STARTUP_TIMEOUT_SECONDS": "3"}  # fmt: skip
    for command in ("worker", "topics", "generate"):
        t0 = time.monotonic()
        proc = stream_app(command, env=env)
        took = time.monotonic() - t0
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr
        (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith(f"stream-app {command}:")]
        assert f"127.0.0.1:{port}" in line and "refused" in line and "within 3s" in line, line
        assert 3 <= took < 15, f"{command}: {took:.1f}s"


@pytest.fixture
def http_port():
    """A real HTTP server: something that listens and answers, but not Kafka."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_a_port_that_is_not_kafka_fails_within_the_bound(http_port):
    env = {"STREAM_APP_KAFKA_BOOTSTRAP": f"127.0.0.1:{http_port}", "STREAM_APP_STORE": "memory",
           "STREAM_APP_STARTUP_TIMEOUT_SECONDS": "4"}  # fmt: skip
    t0 = time.monotonic()
    proc = stream_app("worker", env=env)
    took = time.monotonic() - t0
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("stream-app worker:")]
    assert f"127.0.0.1:{http_port}" in line and "not Kafka" in line, line
    assert took < 15, f"{took:.1f}s"


def test_debug_shows_the_traceback_of_an_expected_failure():
    env = {"STREAM_APP_KAFKA_BOOTSTRAP": f"127.0.0.1:{closed_port()}", "STREAM_APP_STARTUP_TIMEOUT_SECONDS": "1"}
    proc = stream_app("--debug", "topics", env=env)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "KafkaUnreachable" in proc.stderr


def test_json_log_format_while_waiting_for_kafka():
    env = {"STREAM_APP_KAFKA_BOOTSTRAP": f"127.0.0.1:{closed_port()}", "STREAM_APP_STORE": "memory",
           "STREAM_APP_STARTUP_TIMEOUT_SECONDS": "2", "STREAM_APP_LOG_FORMAT": "json"}  # fmt: skip
    proc = stream_app("worker", env=env)
    logs = [ln for ln in proc.stderr.splitlines() if not ln.startswith("stream-app worker:")]
    assert logs, proc.stderr
    for line in logs:
        doc = json.loads(line)
        assert {"time", "level", "logger", "message"} <= set(doc)
    assert any("waiting for Kafka" in json.loads(ln)["message"] for ln in logs)


# --- conventions ------------------------------------------------------------------------------


def test_no_command_prints_usage_and_exits_2():
    proc = stream_app()
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: stream-app") and "commands:" in proc.stderr


def test_version_is_the_package_version():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    proc = stream_app("--version")
    assert (proc.returncode, proc.stdout.strip()) == (0, f"stream-app {version}")


@pytest.mark.parametrize("command", ["demo", "worker", "generate", "stack", "topics", "schemas", "top", "config"])
def test_every_command_has_help(command):
    proc = stream_app(command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: stream-app {command}")
    assert len(proc.stdout.splitlines()) >= 4


def test_worker_help_points_to_the_settings():
    text = stream_app("worker", "--help").stdout
    assert "docs/configuration.md" in text and "stream-app config" in text and "STREAM_APP_KAFKA_BOOTSTRAP" in text


def test_config_prints_effective_settings_with_secrets_masked():
    env = {"STREAM_APP_API_TOKEN": "tok-9f2c", "STREAM_APP_TOPIC_PARTITIONS": "8"}
    proc = stream_app("config", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "tok-9f2c" not in proc.stdout
    assert "STREAM_APP_API_TOKEN='***'  # from the environment" in proc.stdout
    assert "STREAM_APP_TOPIC_PARTITIONS=8  # from the environment" in proc.stdout
    assert "STREAM_APP_KAFKA_BOOTSTRAP=127.0.0.1:9092\n" in proc.stdout  # a default, unmarked
    changed = stream_app("config", "--changed", env=env).stdout.splitlines()
    assert [ln.split("=")[0] for ln in changed] == ["STREAM_APP_TOPIC_PARTITIONS", "STREAM_APP_API_TOKEN"]


def test_a_closed_pipe_is_not_a_traceback():
    # The reader is gone before anything is written (what `| head` does, deterministically).
    proc = subprocess.Popen([sys.executable, "-m", "stream_app.cli", "config"], env=CLEAN_ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err


def test_schemas_check_works_outside_the_repository(tmp_path):
    proc = stream_app("schemas", "--check", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "up to date" in proc.stdout
    elsewhere = stream_app("schemas", "--check", "--out", str(tmp_path / "nothing"), cwd=tmp_path)
    assert elsewhere.returncode == 2 and "no folder" in elsewhere.stderr
