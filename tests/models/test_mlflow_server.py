"""The registry path against a real multi-user MLflow deployment: an ``mlflow server`` process with its backend
store in PostgreSQL (a database of its own) and its artifacts in an S3 bucket (the moto endpoint), proxied by the
server (``--artifacts-destination``), so clients need no S3 credentials. The embedded default stays SQLite."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from models.forecast import DAY, WEEK, SeasonalNaive, rolling_origin, score_backtest
from models.registry import ModelRegistry
from tests.conftest import _free_port

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.s3]
BUCKET = "gridlake-mlflow"


@pytest.fixture()
def mlflow_server(moto_s3, pg_params, tmp_path):
    import boto3
    import psycopg2

    boto3.client("s3", endpoint_url=moto_s3).create_bucket(Bucket=BUCKET)
    db = f"gridlake_scale_mlflow_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(dbname="postgres", **pg_params)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{db}"')  # a fixed prefix + hex
    port = _free_port()
    backend = f"postgresql+psycopg2://{pg_params['user']}@{pg_params['host']}:{pg_params['port']}/{db}"
    env = {**os.environ, "MLFLOW_S3_ENDPOINT_URL": moto_s3}  # the server reaches the bucket; AWS_* come from moto_s3
    log = tmp_path / "mlflow-server.log"
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", backend, "--artifacts-destination", f"s3://{BUCKET}/artifacts",
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if requests.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not up in 120 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, db
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        admin.close()


def test_log_register_alias_and_load_through_an_mlflow_server(mlflow_server, moto_s3, taylor, pg_params, monkeypatch):
    import boto3
    import pandas as pd
    import psycopg2

    url, db = mlflow_server
    # the client holds no S3 credentials: artefacts travel through the server
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(k, raising=False)
    reg = ModelRegistry(url, experiment="gridlake-scale")
    origins = list(pd.date_range("2000-07-31", periods=3, freq="D", tz="UTC"))
    name = "load-server-e2e"
    results = []
    for make in (lambda: SeasonalNaive(WEEK), lambda: SeasonalNaive(DAY)):
        m = score_backtest(rolling_origin(make, taylor, origins, 48)).row(0, named=True)
        model = make().fit(taylor.head(48 * 56))
        metrics = {k: m[k] for k in ("mape", "rmse", "mae")}
        results.append(
            (
                model,
                metrics,
                reg.train_register_promote(
                    name, params=model.params(), metrics=metrics, backtest_id="bt-server", model=model
                ),
            )
        )
    (weekly, wm, r1), (daily, dm, r2) = results
    assert r1["promoted"] and r1["version"] == "1"
    assert dm["mape"] > wm["mape"] and not r2["promoted"] and r2["alias"] == "challenger"
    assert str(reg.champion(name).version) == "1"

    # load the champion back through the server: the same forecasts as the model that was logged
    loaded = reg.load(name)
    assert type(loaded) is type(weekly) and loaded.params() == weekly.params()
    assert loaded.predict(pd.Timedelta(hours=24)).equals(weekly.predict(pd.Timedelta(hours=24)))

    # where things are: runs, versions and aliases in PostgreSQL, the model files in the S3 bucket
    with psycopg2.connect(dbname=db, **pg_params) as conn, conn.cursor() as cur:
        cur.execute("SELECT version FROM model_versions WHERE name = %s ORDER BY version", (name,))
        assert [v for (v,) in cur.fetchall()] == [1, 2]
        cur.execute("SELECT alias, version FROM registered_model_aliases WHERE name = %s ORDER BY alias", (name,))
        assert cur.fetchall() == [("challenger", 2), ("champion", 1)]
        cur.execute("SELECT count(*) FROM runs WHERE run_uuid = ANY(%s)", ([r1["run_id"], r2["run_id"]],))
        assert cur.fetchone()[0] == 2
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_s3,
        aws_access_key_id="gridlake-test",
        aws_secret_access_key="gridlake-test-secret",
        region_name="us-east-1",
    )
    keys = [
        o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET) for o in p.get("Contents", [])
    ]
    assert any(r1["run_id"] in k and k.endswith("MLmodel") for k in keys), keys[:20]
