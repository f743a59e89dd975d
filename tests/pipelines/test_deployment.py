"""deploy/docker-compose.yml: the production topology of docs/DEPLOYMENT.md, checked without starting it."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import yaml

from assets.queues import KINDS
from tests.conftest import REPO

COMPOSE = REPO / "deploy" / "docker-compose.yml"
DUMMY_SECRETS = {
    "GRIDLAKE_PG_PASSWORD": "x",
    "RABBITMQ_PASSWORD": "x",
    "AWS_ACCESS_KEY_ID": "x",
    "AWS_SECRET_ACCESS_KEY": "x",
}


def _compose() -> list[str] | None:
    """``docker compose`` (v2 plugin), else the standalone ``docker-compose`` (Debian's 1.29), else None."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def test_every_queue_has_workers_and_every_component_a_service():
    spec = yaml.safe_load(COMPOSE.read_text())
    services = spec["services"]
    assert {
        "postgres",
        "rabbitmq",
        "code-location",
        "dagster-webserver",
        "dagster-daemon",
        "mlflow",
        "mqtt",
        "bridge",
    } <= set(services)
    # one worker service per queue kind, listening on exactly that queue, with the app the executor submits to
    for kind in KINDS:
        cmd = services[f"worker-{kind}"]["command"]
        assert cmd[:4] == ["celery", "-A", "pipelines.celery_app", "worker"]
        assert cmd[cmd.index("-Q") + 1] == f"gridlake-{kind}"
    # Alertmanager as a cluster: each peer names the other
    peers = {n: s["command"] for n, s in services.items() if n.startswith("alertmanager-")}
    assert len(peers) == 2 and all(any(a.startswith("--cluster.peer=") for a in c) for c in peers.values())
    # no secret in the file: passwords and keys are required variables
    text = COMPOSE.read_text()
    for var in DUMMY_SECRETS:
        assert f"${{{var}:?" in text


@pytest.mark.skipif(_compose() is None, reason="neither `docker compose` nor `docker-compose` is installed here")
def test_docker_compose_config_validates():
    compose = _compose()
    p = subprocess.run(
        [*compose, "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        env={**os.environ, **DUMMY_SECRETS},
    )
    assert p.returncode == 0, p.stderr
    # and it refuses to start without the secrets
    env = {k: v for k, v in os.environ.items() if k not in DUMMY_SECRETS}
    assert (
        subprocess.run([*compose, "-f", str(COMPOSE), "config", "--quiet"], capture_output=True, env=env).returncode
        != 0
    )
