"""The same Definitions on a distributed executor: dagster-celery over the local RabbitMQ, two Celery workers
(separate processes, one per group of queues), a PostgreSQL Dagster instance in its own database.

The Celery runs are orchestrated by ``dagster job execute`` in a subprocess (a run worker, as the daemon would
launch it) with ``GRIDLAKE_EXECUTOR=celery``; the reference is an in-process run of the same jobs, same data,
same run config, into a second lake. Queue names carry a per-test prefix (``GRIDLAKE_CELERY_QUEUE_PREFIX``), so
nothing else on the shared broker can take these tasks, nor these workers anyone else's.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import polars as pl
import pytest
import yaml
from dagster import DagsterEventType, DagsterInstance, RunsFilter
from polars.testing import assert_frame_equal

from contracts import SOURCES
from tests.conftest import REPO, _port_open

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

DAYS = ["2026-10-31", "2026-11-01", "2026-11-02"]
SCORE_DAY = "2026-11-03"  # the day after the last ingested one: forecasts issued at its start (as the hourly run does)
RANGE = {"dagster/asset_partition_range_start": DAYS[0], "dagster/asset_partition_range_end": DAYS[-1]}
#: (job, tags, kind of queue its steps must run on)
JOBS = [
    ("load_reference", {}, "ingest"),
    ("daily_ingest", RANGE, "ingest"),
    ("forecast_scoring", {"dagster/partition": SCORE_DAY}, "score"),
]
INGEST_TABLES = [t for s in SOURCES for t in (f"bronze_{s}_files", f"silver_{s}", f"quarantine_{s}")]
DAY_TABLES = [*INGEST_TABLES, "gold_load_hourly", "gold_load_daily", "gold_grid_health_daily"]
SCORE_TABLES = ["gold_load_forecast", "gold_solar_forecast", "gold_peak_demand"]
#: columns that record when or by which run a row was written, not what it holds
RUN_IDENTITY = {"ingested_at", "published_at", "run_id"}


@pytest.fixture()
def celery_instance(tmp_path, pg_params, monkeypatch):
    """A DAGSTER_HOME with deploy/dagster.yaml on a database of its own (created here, dropped after)."""
    import psycopg2

    if not _port_open(5672):
        pytest.fail("RabbitMQ is not answering on 127.0.0.1:5672 (run `bash .ci/services.sh`)")
    db = f"gridlake_scale_celery_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(dbname="postgres", **pg_params)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{db}"')  # db: a fixed prefix + hex, nothing from outside
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    env = {
        "DAGSTER_HOME": str(home),
        "GRIDLAKE_PG_HOST": pg_params["host"],
        "GRIDLAKE_PG_PORT": pg_params["port"],
        "GRIDLAKE_PG_USER": pg_params["user"],
        "GRIDLAKE_PG_PASSWORD": pg_params["password"],
        "GRIDLAKE_PG_DB": db,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    instance = DagsterInstance.from_config(str(home))
    yield instance, env, db
    instance.dispose()
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    admin.close()


def _run_config(root: Path) -> dict:
    return {
        "resources": {
            "lake": {"config": {"root": str(root / "lake")}},
            "landing": {"config": {"uri": str(root.parent / "landing")}},
            "catalog": {"config": {"path": str(root / "gridlake.duckdb")}},
            "mlflow": {"config": {"tracking_uri": f"sqlite:///{root}/mlflow.db"}},
        }
    }


def _start_worker(name: str, queues: list[str], env: dict, log: Path) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "celery", "-A", "pipelines.celery_app", "worker", "-Q", ",".join(queues), "-n", f"{name}@%h",
        "--concurrency", "1", "--prefetch-multiplier", "1", "--without-gossip", "--without-mingle", "-l", "INFO",
    ]  # fmt: skip
    return subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )


def _wait_ready(procs: dict[str, tuple[subprocess.Popen, Path]], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    pending = set(procs)
    while pending and time.monotonic() < deadline:
        for name in list(pending):
            proc, log = procs[name]
            if proc.poll() is not None:
                pytest.fail(f"celery worker {name} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            if " ready." in log.read_text(errors="replace"):
                pending.discard(name)
        time.sleep(0.3)
    if pending:
        pytest.fail(f"celery workers {sorted(pending)} not ready in {timeout} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()  # warm shutdown
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def _comparable(df: pl.DataFrame, lake_root: str) -> pl.DataFrame:
    """Without the run's identity columns, archive paths relative to the lake root, in one row order."""
    df = df.drop([c for c in df.columns if c in RUN_IDENTITY])
    if "archive_path" in df.columns:
        assert df["archive_path"].str.starts_with(lake_root + "/").all()
        df = df.with_columns(pl.col("archive_path").str.slice(len(lake_root)))
    return df.sort(df.columns)


def test_jobs_on_two_celery_workers_equal_an_in_process_run(celery_instance, small_sim, tmp_path, pg_params):
    import psycopg2

    from lake.delta import Lake
    from lake.landing import LocalLanding
    from pipelines.definitions import defs
    from simulator import BadRecordRates, write_landing_day, write_landing_reference

    instance, pg_env, db = celery_instance
    zone = LocalLanding(tmp_path / "landing")
    write_landing_reference(small_sim, zone)
    bad = BadRecordRates(out_of_range=0.002, duplicate=0.002, unknown_entity=0.001)
    for d in DAYS:
        write_landing_day(
            small_sim,
            dt.date.fromisoformat(d),
            zone,
            formats={"meter_readings": ("csv", "parquet"), "scada": "parquet", "weather": "csv"},
            bad=bad,
            rows_per_file=25,
        )

    # -- the reference: in-process runs of the same jobs on the same instance
    ref_root, cel_root = tmp_path / "inprocess", tmp_path / "celery"
    ref_root.mkdir()
    cel_root.mkdir()
    for job, tags, _ in JOBS:
        res = defs.get_job_def(job).execute_in_process(
            run_config=_run_config(ref_root), instance=instance, tags={**tags, "gridlake/test": "inprocess"}
        )
        assert res.success, job

    # -- two Celery workers: one for ingestion (and optimisation), one for training and scoring
    prefix = f"scale-{uuid.uuid4().hex[:10]}"
    env = {
        **os.environ,
        **pg_env,
        "PYTHONPATH": str(REPO),
        "GRIDLAKE_EXECUTOR": "celery",
        "GRIDLAKE_CELERY_QUEUE_PREFIX": prefix,
    }
    workers = {
        f"ingest-{prefix}": [f"{prefix}-ingest", f"{prefix}-optimise"],
        f"score-{prefix}": [f"{prefix}-train", f"{prefix}-score"],
    }
    procs = {n: (_start_worker(n, q, env, tmp_path / f"{n}.log"), tmp_path / f"{n}.log") for n, q in workers.items()}
    try:
        _wait_ready(procs)
        cfg = tmp_path / "celery_run.yaml"
        cfg.write_text(yaml.safe_dump(_run_config(cel_root)))
        dagster = str(Path(sys.executable).parent / "dagster")
        for job, tags, _ in JOBS:
            p = subprocess.run(
                [dagster, "job", "execute", "-m", "pipelines.definitions", "-a", "defs", "-j", job, "-c", str(cfg), "--tags", json.dumps({**tags, "gridlake/test": "celery"})],
                cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
            )  # fmt: skip
            assert p.returncode == 0, f"{job} via celery failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    finally:
        for proc, _ in procs.values():
            _stop(proc)

    # -- the runs and their events are in PostgreSQL, and each step ran on the worker of its queue
    runs = {r.job_name: r for r in instance.get_runs(RunsFilter(tags={"gridlake/test": "celery"}))}
    assert set(runs) == {j for j, _, _ in JOBS}
    for job, _, kind in JOBS:
        run = runs[job]
        assert run.is_success, job
        executed = [
            e
            for e in instance.all_logs(run.run_id, of_type=DagsterEventType.ENGINE_EVENT)
            if "in celery worker" in (e.message or "")
        ]
        assert executed, f"{job}: no step ran in a celery worker"
        hosts = {e.dagster_event.event_specific_data.metadata["Celery worker"].value.split("@")[0] for e in executed}
        assert hosts == {f"{kind if kind == 'ingest' else 'score'}-{prefix}"}, (job, hosts)
        queued = [
            e.message
            for e in instance.all_logs(run.run_id, of_type=DagsterEventType.ENGINE_EVENT)
            if "Submitting celery task" in (e.message or "")
        ]
        assert queued and all(f'to queue "{prefix}-{kind}"' in m for m in queued), (job, queued)
    with psycopg2.connect(dbname=db, **pg_params) as conn, conn.cursor() as cur:
        cur.execute("SELECT run_id, status FROM runs WHERE run_id = ANY(%s)", ([r.run_id for r in runs.values()],))
        assert dict(cur.fetchall()) == {r.run_id: "SUCCESS" for r in runs.values()}
        # every asset of the job materialised for every day of the range, as in the in-process run
        inproc = {r.job_name: r for r in instance.get_runs(RunsFilter(tags={"gridlake/test": "inprocess"}))}
        n = {}
        for label, run in (("celery", runs["daily_ingest"]), ("inprocess", inproc["daily_ingest"])):
            cur.execute(
                "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
                (run.run_id,),
            )
            n[label] = cur.fetchone()[0]
        assert n["celery"] == n["inprocess"] >= len(DAY_TABLES) * len(DAYS)

    # -- the tables: equal to the in-process run, partition by partition
    ref, cel = Lake(ref_root / "lake"), Lake(cel_root / "lake")
    compared = 0
    for name, days in [(t, DAYS) for t in DAY_TABLES] + [(t, [SCORE_DAY]) for t in SCORE_TABLES]:
        for d in days:
            a, b = ref.read(name, dt.date.fromisoformat(d)), cel.read(name, dt.date.fromisoformat(d))
            if name in ("silver_meter_readings", "silver_scada", "gold_load_hourly", "gold_load_forecast"):
                assert a.height > 0, (name, d)
            try:
                # floats to 1e-12 relative (gold_load_hourly's energy_kwh differed in the last bits: a float sum's
                # order is not fixed by a multi-threaded group-by); every other value exactly
                assert_frame_equal(
                    _comparable(a, ref.root), _comparable(b, cel.root), check_exact=False, rel_tol=1e-12, abs_tol=1e-12
                )
            except AssertionError as e:
                raise AssertionError(
                    f"{name} {d}: the Celery run's partition differs from the in-process run's: {e}"
                ) from e
            compared += a.height
    for name in ("ref_meters", "ref_transformers"):
        assert_frame_equal(ref.read(name), cel.read(name), check_exact=True)
    assert compared > 10_000


def test_every_step_of_every_job_has_a_queue():
    """A step without the queue tag would go to dagster-celery's default queue, which no gridlake worker serves."""
    from assets.queues import KINDS, QUEUE_TAG, queue_name
    from pipelines.definitions import defs

    queues = {queue_name(k) for k in KINDS}
    untagged = sorted(
        (job.name, node.name)
        for job in defs.get_repository_def().get_all_jobs()
        for node in job.graph.node_dict.values()
        if node.tags.get(QUEUE_TAG) not in queues
    )
    assert not untagged, f"give these assets op_tags=queue_tags(kind) (assets/queues.py): {untagged}"
