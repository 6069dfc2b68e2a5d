"""docker-compose.yml cannot run here (no Docker engine); check everything that can be
checked without one: it parses, every file and service it references exists, and its
settings are ones the worker understands."""

from __future__ import annotations

import json

import yaml

from stream_app.config import Settings
from tests.support.paths import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_expected_services_exist():
    assert {"kafka", "redis", "worker", "generator", "prometheus", "grafana"} <= set(SERVICES)


def test_depends_on_names_existing_services():
    for name, svc in SERVICES.items():
        deps = svc.get("depends_on", {})
        for dep in deps if isinstance(deps, list) else deps.keys():
            assert dep in SERVICES, f"{name} depends on unknown service {dep}"


def test_bind_mounts_exist_and_named_volumes_declared():
    for name, svc in SERVICES.items():
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in COMPOSE.get("volumes", {}), f"{name} uses undeclared volume {source}"


def test_build_context_has_dockerfile_and_copied_paths():
    dockerfile = ROOT / "Dockerfile"
    assert dockerfile.is_file()
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (ROOT / src).exists(), f"Dockerfile copies missing {src}"
    for svc in SERVICES.values():
        if "build" in svc:
            assert svc["build"] == "."


def test_environment_names_are_settings():
    fields = {f"STREAM_APP_{name.upper()}" for name in Settings.model_fields}
    for name, svc in SERVICES.items():
        for var in svc.get("environment", {}):
            if var.startswith("STREAM_APP_"):
                assert var in fields, f"{name}: {var} is not a setting"


def test_worker_commands_exist():
    from stream_app.cli import USAGE

    for name in ("worker", "generator"):
        command = SERVICES[name]["command"][0]
        assert f"  {command} " in USAGE, f"{name} runs unknown command {command}"


def test_kafka_listener_matches_bootstrap():
    bootstrap = SERVICES["worker"]["environment"]["STREAM_APP_KAFKA_BOOTSTRAP"]
    assert bootstrap in SERVICES["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert SERVICES["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_prometheus_scrapes_worker_port():
    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    (job,) = [j for j in prom["scrape_configs"] if j["job_name"] == "stream_app"]
    sd = job["dns_sd_configs"][0]
    assert sd["names"] == ["worker"]
    assert sd["port"] == Settings.model_fields["web_port"].default
    assert "6066" in SERVICES["worker"]["expose"]


def test_grafana_provisioning_points_at_prometheus_and_dashboards():
    ds = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    (source,) = ds["datasources"]
    assert source["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/stream_app.yml").read_text())
    mount = next(
        v for v in SERVICES["grafana"]["volumes"] if v.endswith(provider["providers"][0]["options"]["path"] + ":ro")
    )
    dash_dir = ROOT / mount.split(":")[0]
    boards = list(dash_dir.glob("*.json"))
    assert boards, "no dashboards provisioned"
    uids = [json.loads(b.read_text())["uid"] for b in boards]
    assert len(uids) == len(set(uids))
