"""docker-compose.yml, checked without a Docker engine: validated against the Compose
specification (the compose-spec parser, after `<<` merges and `${VAR}` interpolation, as
`docker compose config` would), then the cross-references the spec cannot see."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import yaml
from compose_spec import PyCompose
from kafka import KafkaAdminClient

from llmtwin.bus.admin import all_topic_names
from llmtwin.settings import Settings

INTERPOLATION = re.compile(r"\$\{(\w+)(?::?[-?]([^}]*))?\}")
APP_SERVICES = {"crawler", "cleaner", "embedder", "dataset-builder", "trainer", "inference-api", "web"}
STATEFUL = {"kafka": "/var/lib/kafka/data", "mongo": "/data/db", "qdrant": "/qdrant/storage",
            "mlflow": "/mlflow", "prometheus": "/prometheus", "grafana": "/var/lib/grafana"}


def interpolate(value, variables: dict[str, str]):
    """`${VAR:-default}` as compose resolves it; `$$` stays a literal dollar."""
    if isinstance(value, str):
        return INTERPOLATION.sub(lambda m: variables.get(m.group(1)) or m.group(2) or "", value)
    if isinstance(value, dict):
        return {k: interpolate(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, variables) for v in value]
    return value


def merge(base: dict, override: dict) -> dict:
    """Compose's merge of an override file: mappings merge, everything else is replaced."""
    merged = dict(base)
    for key, value in override.items():
        merged[key] = merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else value
    return merged


def validate(model: dict) -> PyCompose:
    compose = PyCompose.from_json(json.dumps(model))
    compose.validate()
    return compose


@pytest.fixture(scope="module")
def raw(repo) -> str:
    return (repo / "docker-compose.yml").read_text()


@pytest.fixture(scope="module")
def compose(raw) -> dict:
    return interpolate(yaml.safe_load(raw), {})  # safe_load resolves the `<<` merge keys


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    return compose["services"]


@pytest.fixture(scope="module")
def env_example(repo) -> dict[str, str]:
    text = (repo / ".env.example").read_text()
    return dict(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", text, flags=re.MULTILINE))


def test_the_file_is_a_valid_compose_model(compose):
    assert set(validate(compose).service_names()) >= APP_SERVICES | set(STATEFUL) | {"kafka-init"}


def test_the_gpu_override_merges_into_a_valid_model(repo, compose):
    override = interpolate(yaml.safe_load((repo / "deploy/compose.gpu.yml").read_text()), {})
    merged = merge(compose, {"services": override["services"]})
    validate(merged)
    for name in override["services"]:
        spec = merged["services"][name]
        assert spec["build"]["args"]["SERVICE"] == name and "cu" in spec["build"]["args"]["TORCH_INDEX"]
        assert spec["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
        assert spec["healthcheck"] == compose["services"][name]["healthcheck"], "the override keeps the rest"


@pytest.mark.parametrize("broken, complaint", [
    (("condition: service_healthy", "condition: service_ready"), "service_ready"),
    (("retries: 8", "retrys: 8"), "retrys"),
    (("interval: 15s", "interval: 15 parsecs"), "duration"),
    (("  twin-data:\n", ""), "twin-data"),
])
def test_the_validation_rejects_a_broken_file(raw, broken, complaint):
    model = interpolate(yaml.safe_load(raw.replace(*broken)), {})
    with pytest.raises(ValueError, match=complaint):
        validate(model)


def test_every_service_has_an_image_and_a_healthcheck_or_is_a_one_shot(services):
    for name, spec in services.items():
        assert "image" in spec or "build" in spec, name
        one_shot = spec.get("restart") == "no"
        assert one_shot or spec.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert one_shot or spec.get("restart") == "unless-stopped", f"{name} is not restarted"
    assert [name for name, spec in services.items() if spec.get("restart") == "no"] == ["kafka-init"]


def test_depends_on_names_real_services_with_conditions_they_can_meet(services):
    for name, spec in services.items():
        for dependency, rule in spec.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            target = services[dependency]
            condition = rule["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in target, f"{name} waits for {dependency} to be healthy; it has no check"
            if condition == "service_completed_successfully":
                assert target.get("restart") == "no", f"{name} waits for {dependency} to finish; it never does"
    for name in APP_SERVICES:
        deps = services[name]["depends_on"]
        assert deps["kafka-init"]["condition"] == "service_completed_successfully", name
        assert {"mongo", "qdrant", "mlflow"} <= {d for d, r in deps.items() if r["condition"] == "service_healthy"}


def test_topics_are_created_before_any_service_starts(services):
    init = services["kafka-init"]
    assert init["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    assert init["environment"]["TWIN_TOPIC_PARTITIONS"] == services["cleaner"]["environment"]["TWIN_TOPIC_PARTITIONS"]
    assert services["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_the_topic_init_command_creates_every_topic_on_a_real_broker(services, broker_bootstrap):
    """kafka-init's own command, run here against a real (Tansu) broker instead of the kafka service."""
    init = services["kafka-init"]
    env = {**os.environ, **init["environment"], "TWIN_KAFKA_BOOTSTRAP": broker_bootstrap}
    interpreter, *args = init["entrypoint"]
    assert interpreter == "python"  # the image's venv python; here, the one running the tests
    subprocess.run([sys.executable, *args], env=env, check=True, timeout=120, capture_output=True)
    admin = KafkaAdminClient(bootstrap_servers=broker_bootstrap)
    try:
        topics = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(all_topic_names())}
    finally:
        admin.close()
    assert topics == {name: int(init["environment"]["TWIN_TOPIC_PARTITIONS"]) for name in all_topic_names()}


def test_every_stateful_part_keeps_its_data_in_a_declared_volume(compose, services, repo):
    declared = set(compose["volumes"])
    used = set()
    for name, spec in services.items():
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith(("./", "/")):
                assert (repo / source).exists(), f"{name} mounts {source}, which is not in the repository"
            else:
                assert source in declared, f"{name} uses undeclared volume {source}"
                used.add(source)
    assert used == declared, f"declared but unused: {declared - used}"
    for name, path in STATEFUL.items():
        named = {v.split(":")[1] for v in services[name]["volumes"] if not v.startswith(("./", "/"))}
        assert path in named, f"{name} keeps {path} outside a volume"


def test_each_service_is_probed_and_published_on_its_settings_port(services, service_ports):
    assert set(service_ports) == APP_SERVICES, "a service folder without its compose service"
    for name, port in service_ports.items():
        probe = " ".join(services[name]["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/healthz" in probe, name
        for mapping in services[name].get("ports", []):
            assert mapping.split(":")[-1] == str(port), name


def test_every_twin_variable_is_a_settings_field(raw, services):
    fields = {f"TWIN_{name.upper()}" for name in Settings.model_fields}
    used = {key for spec in services.values() for key in spec.get("environment", {}) if key.startswith("TWIN_")}
    used |= {name for name, _ in INTERPOLATION.findall(raw) if name.startswith("TWIN_")}
    assert used, "no TWIN_ settings found in the compose file"
    assert used <= fields, f"not settings fields: {sorted(used - fields)}"


def test_env_example_documents_every_setting_and_every_compose_variable(repo, raw, env_example):
    fields = {f"TWIN_{name.upper()}" for name in Settings.model_fields}
    documented = set(env_example)
    assert fields - documented == set(), f"settings missing from .env.example: {sorted(fields - documented)}"
    stale = {name for name in documented if name.startswith("TWIN_")} - fields
    assert not stale, f".env.example names settings that do not exist: {sorted(stale)}"
    gpu = (repo / "deploy/compose.gpu.yml").read_text()
    interpolated = {name for name, _ in INTERPOLATION.findall(raw + gpu)}
    assert interpolated - documented == set(), f"compose variables missing: {sorted(interpolated - documented)}"


def test_env_example_values_are_accepted_by_settings(env_example, tmp_path, monkeypatch):
    """Every example value, uncommented into a .env, is read by Settings as its type wants."""
    values = {k: v for k, v in env_example.items() if k.startswith("TWIN_") and v}
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    for name in list(os.environ):
        if name.startswith("TWIN_"):
            monkeypatch.delenv(name)
    settings = Settings(_env_file=env_file)
    assert settings.topic_partitions == int(values["TWIN_TOPIC_PARTITIONS"])
    assert [key.get_secret_value() for key in settings.api_keys] == ["change-me"]
