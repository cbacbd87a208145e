"""The deployment files parse and agree with the code: services, commands, env, chart keys."""
from __future__ import annotations

from pathlib import Path

import yaml

from axiom_dagster.config.models import load_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _load(name: str) -> list:
    return [doc for doc in yaml.safe_load_all((DEPLOY / name).read_text()) if doc is not None]


def test_every_yaml_file_parses():
    files = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml"))
    assert len(files) >= 5
    for path in files:
        assert list(yaml.safe_load_all(path.read_text())), path


def test_compose_has_every_service_on_the_shared_volume():
    (compose,) = _load("docker-compose.yml")
    services = compose["services"]
    assert set(services) == {"postgres", "rabbitmq", "migrate", "dagster-webserver", "dagster-daemon",
                             "celery-worker", "realtime"}
    for name in ("dagster-webserver", "dagster-daemon", "celery-worker", "realtime", "migrate"):
        service = services[name]
        assert "data:/data" in service["volumes"]
        assert service["environment"]["AXIOM_EXECUTOR"] == "celery"
        assert service["environment"]["AXIOM_CELERY_BROKER"].startswith("amqp://")
    worker = services["celery-worker"]
    assert worker["command"][:3] == ["celery", "-A", "dagster_celery.app"] and "dagster" in worker["command"]
    assert worker["deploy"]["replicas"] == 2 and worker["cpus"] == 1.0
    assert services["dagster-daemon"]["command"][:2] == ["dagster-daemon", "run"]
    # No secret is written down: every password comes from the environment.
    text = (DEPLOY / "docker-compose.yml").read_text()
    assert "POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?" in text


def test_helm_values_use_the_k8s_run_launcher_and_production_settings():
    (values,) = _load("helm/values.yaml")
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["--module-name", "axiom_dagster.definitions"]
    daemon = values["dagsterDaemon"]
    assert daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert daemon["runMonitoring"]["enabled"] and daemon["runMonitoring"]["maxResumeRunAttempts"] >= 1
    assert daemon["runRetries"]["enabled"]
    assert values["concurrency"]["enabled"] and values["concurrency"]["pools"]["defaultLimit"] >= 1
    assert values["postgresql"]["enabled"] is False


def test_k8s_manifests_are_complete_objects():
    docs = _load("k8s/realtime.yaml") + _load("k8s/storage.yaml")
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["Deployment", "PersistentVolumeClaim", "Service", "Service"]
    for doc in docs:
        assert doc["apiVersion"] and doc["metadata"]["name"]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert {"name": "AXIOM_CLOSE_STALE_ASSOCIATIONS", "value": "0"} in container["env"]


def test_container_configuration_is_a_valid_axiom_config(monkeypatch):
    for key, value in {"AXIOM_DB_PASSWORD": "x", "AXIOM_JWT_SECRET": "y" * 32}.items():
        monkeypatch.setenv(key, value)
    config = load_config(DEPLOY / "axiom.yaml")
    assert config.state_store_url.startswith("postgresql+psycopg2://axiom:x@postgres:5432/axiom")
    assert config.pipeline.workers == 1 and config.listeners[0].port == 11112
