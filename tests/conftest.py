"""Shared fixtures: real PostgreSQL-backed Dagster instance, real S3-protocol endpoint (moto server),
a small simulated utility. Nothing here is mocked."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PG = {
    "host": "127.0.0.1",
    "port": "5432",
    "user": os.environ.get("GRIDLAKE_PG_USER", "postgres"),
    "password": os.environ.get("GRIDLAKE_PG_PASSWORD", ""),
}


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pg_params() -> dict:
    return dict(PG)


@pytest.fixture(scope="session")
def pg_database():
    """The local PostgreSQL database ``test`` (the issue's instance database).

    Runs are told apart by run id, so sessions sharing the database do not interfere.
    """
    if not _port_open(5432):
        pytest.fail("PostgreSQL is not answering on 127.0.0.1:5432 (run `bash .ci/services.sh`)")
    import psycopg2

    with psycopg2.connect(dbname=os.environ.get("GRIDLAKE_PG_DB", "test"), **PG):
        pass
    return os.environ.get("GRIDLAKE_PG_DB", "test")


@pytest.fixture(scope="session")
def pg_dagster_home(tmp_path_factory, pg_database):
    """A DAGSTER_HOME holding the repository's production deploy/dagster.yaml, pointed at the session database."""
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    env = {
        "DAGSTER_HOME": str(home),
        "GRIDLAKE_PG_HOST": PG["host"],
        "GRIDLAKE_PG_PORT": PG["port"],
        "GRIDLAKE_PG_USER": PG["user"],
        "GRIDLAKE_PG_PASSWORD": PG["password"],
        "GRIDLAKE_PG_DB": pg_database,
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield home
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def moto_s3():
    """A real S3-protocol HTTP endpoint on 127.0.0.1 (moto's threaded server)."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ACCESS_KEY_ID": "gridlake-test",
        "AWS_SECRET_ACCESS_KEY": "gridlake-test-secret",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env["AWS_ENDPOINT_URL"]
    server.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


# -------------------------------------------------------------------- a small simulated utility
SIM_START = dt.date(2026, 10, 31)  # spans the US fall-back day 2026-11-01
SIM_DAYS = 3


@pytest.fixture(scope="session")
def small_sim():
    from simulator import SimConfig, Simulator

    return Simulator(SimConfig(n_meters=60, start=SIM_START, days=SIM_DAYS, seed=11))


@pytest.fixture()
def lake_and_landing(tmp_path, small_sim):
    """A local landing zone with the simulator's reference data, and a lake holding the reference tables."""
    import polars as pl

    from contracts import TABLES
    from lake.delta import Lake
    from lake.landing import LocalLanding
    from simulator import write_landing_reference

    zone = LocalLanding(tmp_path / "landing")
    lake = Lake(tmp_path / "lake")
    write_landing_reference(small_sim, zone)
    for n in ("ref_meters", "ref_transformers", "ref_weather_stations"):
        df = pl.read_parquet(zone.local_path(f"reference/{n}.parquet"))
        lake.write_partition(TABLES[n], TABLES[n].conform(df), None)
    return lake, zone


@pytest.fixture(autouse=True)
def _no_leftover_dagster_defs_state():
    """Dagster keeps "the current" defs-state storage in a context variable that some of its APIs set and never
    reset: a later test resolving a job would read a disposed instance (e.g. another module's dropped PostgreSQL
    database). Each test starts without one."""
    from dagster._core.storage.defs_state.base import _current_storage

    _current_storage.set(None)
    yield
