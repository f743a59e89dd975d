"""A Dagster user's first commands, in the repo root, from a clean environment (no DAGSTER_HOME, no
GRIDLAKE_* variables): `dagster definitions validate` and `dagster dev -w workspace.yaml` work with
Dagster's temporary SQLite instance and the root dagster.yaml, the embedded default (the production PostgreSQL instance config lives in
deploy/dagster.yaml and is only used when DAGSTER_HOME points at a copy of it)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import _free_port

ROOT = Path(__file__).resolve().parents[2]
DAGSTER = str(Path(sys.executable).parent / "dagster")


def _clean_env() -> dict[str, str]:
    """The environment of a fresh shell: none of the project's or Dagster's variables."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "GRIDLAKE_", "MLFLOW_", "AWS_"))}


def test_root_instance_config_is_the_embedded_default():
    """`dagster dev` without DAGSTER_HOME reads the dagster.yaml in the current folder: the root one must be
    the embedded default (no storage settings, so no PostgreSQL variables needed); the production one, with
    PostgreSQL storage, is deploy/dagster.yaml, copied into DAGSTER_HOME."""
    import yaml

    root = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    assert not {"storage", "run_storage", "event_log_storage", "schedule_storage"} & set(root)
    assert "GRIDLAKE_PG" not in json.dumps(root)
    deploy = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    # each storage is PostgreSQL (run and event log through the pooled subclasses of pipelines/pg_storage.py)
    for key in ("run_storage", "event_log_storage", "schedule_storage"):
        assert "postgres" in json.dumps(deploy[key]).lower(), key
        assert deploy[key]["config"]["postgres_db"]["password"] == {"env": "GRIDLAKE_PG_PASSWORD"}, key


def test_definitions_validate_without_dagster_home():
    p = subprocess.run(
        [DAGSTER, "definitions", "validate"], cwd=ROOT, env=_clean_env(), capture_output=True, text=True, timeout=300
    )
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    assert "Validation successful for code location gridlake" in out
    assert "GRIDLAKE_PG" not in out


def _get(url: str, data: bytes | None = None) -> dict:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


@pytest.mark.slow
def test_dagster_dev_serves_the_code_location_without_dagster_home():
    port = _free_port()
    env = _clean_env()
    proc = subprocess.Popen(
        [DAGSTER, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, info = time.time() + 240, None
        while time.time() < deadline and proc.poll() is None:
            try:
                info = _get(f"{base}/server_info")
                break
            except OSError:
                time.sleep(1)
        assert info is not None, f"dagster dev did not answer on {base} (exit code {proc.poll()})"
        assert "dagster_webserver_version" in info
        # the code location loads (it is served by a separate code server: wait for it)
        query = json.dumps({"query": "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
                                     "locationOrLoadError { __typename ... on PythonError { message } "
                                     "... on RepositoryLocation { repositories { jobs { name } } } } } } } }"}).encode()  # fmt: skip
        while True:
            entries = _get(f"{base}/graphql", query)["data"]["workspaceOrError"]["locationEntries"]
            if entries and entries[0]["loadStatus"] == "LOADED" or time.time() > deadline:
                break
            time.sleep(1)
        (entry,) = entries
        assert entry["name"] == "gridlake" and entry["loadStatus"] == "LOADED", entry
        loaded = entry["locationOrLoadError"]
        assert loaded["__typename"] == "RepositoryLocation", loaded
        jobs = {j["name"] for r in loaded["repositories"] for j in r["jobs"]}
        assert {"daily_ingest", "forecast_training", "grid_ml_scoring", "optimization_daily"} <= jobs
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # dagster dev shuts its webserver, daemon and code server down
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the process group this test started
                proc.wait()
        out = proc.stdout.read() if proc.stdout else ""
    assert "GRIDLAKE_PG" not in out, out[-3000:]
    tmp_home = re.search(r"Using temporary directory (\S+) for storage", out)
    assert tmp_home, out[-3000:]  # Dagster's own default without DAGSTER_HOME, and it says how to persist
    assert not Path(tmp_home[1]).exists(), "dagster dev left its temporary instance behind"
