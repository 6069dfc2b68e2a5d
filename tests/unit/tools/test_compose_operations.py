"""docker-compose.yml as operated (no Docker engine here, so structurally): Kafka's data on its
volume as the image's user can write it, restarts, one image built once for a non-root user
with pinned dependencies, the worker published, the generator started after the topics exist
with the fast profile, the runbook base URL reaching Prometheus."""

from __future__ import annotations

import importlib.metadata as md
import re
from pathlib import Path

import yaml
from packaging.requirements import Requirement

from stream_app.config import Settings

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_kafka_writes_its_log_dirs_on_the_mounted_volume():
    kafka = SERVICES["kafka"]
    (mount,) = [v for v in kafka["volumes"] if v.startswith("kafka-data:")]
    volume_path = mount.split(":")[1]
    log_dirs = kafka["environment"]["KAFKA_LOG_DIRS"].split(",")
    assert all(d == volume_path or d.startswith(volume_path + "/") for d in log_dirs), log_dirs
    # The apache/kafka image runs as appuser and creates /var/lib/kafka/data for it (a fresh
    # named volume takes the directory's owner); a path elsewhere would be root's.
    assert kafka["image"].startswith("apache/kafka:") and volume_path == "/var/lib/kafka/data"


def test_every_service_restarts_unless_stopped():
    assert {name: svc.get("restart") for name, svc in SERVICES.items()} == dict.fromkeys(SERVICES, "unless-stopped")


def test_one_image_built_once():
    builders = [name for name, svc in SERVICES.items() if "build" in svc]
    assert builders == ["worker"]
    image = SERVICES["worker"]["image"]
    users = [name for name, svc in SERVICES.items() if svc.get("image") == image]
    assert users == ["worker", "generator"]
    assert SERVICES["generator"].get("pull_policy") == "never", "the generator uses the built image, never a pull"


def test_the_image_runs_as_a_non_root_user_with_pinned_dependencies():
    users = re.findall(r"^USER\s+(\S+)", DOCKERFILE, flags=re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"pip install [^\n]*-c constraints\.txt", DOCKERFILE)
    assert "COPY pyproject.toml README.md constraints.txt" in DOCKERFILE


def _runtime_closure() -> dict[str, str]:
    """Every distribution stream_app needs at run time (transitively), name -> installed version."""
    out: dict[str, str] = {}

    def walk(name: str, extras: frozenset[str] = frozenset()) -> None:
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in out:
            return
        dist = md.distribution(name)
        out[key] = dist.version
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker and not any(req.marker.evaluate({"extra": e}) for e in (extras or {""})):
                continue
            walk(req.name, frozenset(req.extras))

    walk("stream_app")
    out.pop("stream-app")
    return out


def test_constraints_pin_exactly_the_runtime_dependencies_within_pyproject_ranges():
    pins = dict(
        line.split("==")
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    closure = _runtime_closure()
    expected = "\n".join(f"{k}=={v}" for k, v in sorted(closure.items()))
    assert set(pins) == set(closure), f"constraints.txt should list:\n{expected}"
    assert pins == closure, f"constraints.txt differs from what the tests run with:\n{expected}"
    for spec in md.requires("stream_app") or []:
        req = Requirement(spec)
        if req.marker is None:  # a runtime dependency, not an extra
            name = re.sub(r"[-_.]+", "-", req.name).lower()
            assert req.specifier.contains(pins[name]), f"{name}=={pins[name]} outside {req.specifier}"


def test_the_worker_port_is_published_for_every_replica():
    worker = SERVICES["worker"]
    port = Settings.model_fields["web_port"].default
    (published,) = worker["ports"]
    host, host_ports, container = published.rsplit(":", 2)
    first, _, last = host_ports.partition("-")
    assert int(container) == port and int(first) == port and int(last) > port, published
    assert host == "127.0.0.1", "published on the host's loopback only"


def test_the_generator_starts_after_the_topics_exist_with_the_fast_profile():
    generator = SERVICES["generator"]
    assert generator["depends_on"] == {"worker": {"condition": "service_healthy"}}
    assert "healthcheck" in SERVICES["worker"], "a healthy worker has created its topics"
    command = generator["command"]
    assert command[0] == "generate" and "--create-topics" in command
    assert command[command.index("--profile") + 1] == "fast"


def test_prometheus_gets_the_runbook_base_url():
    prom = SERVICES["prometheus"]
    assert "--enable-feature=expand-external-labels" in prom["command"]
    assert "STREAM_APP_RUNBOOK_BASE_URL" in prom["environment"]
    assert "runbook_base_url" in Settings.model_fields
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    assert config["global"]["external_labels"]["runbook_base_url"] == "${STREAM_APP_RUNBOOK_BASE_URL}"
