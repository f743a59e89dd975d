"""Real Dagster runs: on the PostgreSQL instance from deploy/dagster.yaml, on a real S3 endpoint, and the
blocking quality gate."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, SkipReason, materialize
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

from assets.resources import (
    AlertingResource,
    CatalogResource,
    GridSettings,
    LakeResource,
    LandingResource,
    MlflowResource,
)
from pipelines.definitions import ALL_ASSETS

DAY = "2026-11-01"  # the fall-back day
INGEST_AND_GOLD = [
    "bronze_meter_readings_files", "silver_meter_readings", "quarantine_meter_readings", "ingest_manifest_meter_readings",
    "bronze_scada_files", "silver_scada", "quarantine_scada", "ingest_manifest_scada",
    "gold_load_hourly", "gold_load_daily", "gold_grid_health_daily",
]  # fmt: skip


def _resources(lake_root: str, landing_uri: str, tmp_path) -> dict:
    return {
        "lake": LakeResource(root=lake_root),
        "landing": LandingResource(uri=landing_uri),
        "catalog": CatalogResource(path=str(tmp_path / "gridlake.duckdb")),
        "grid": GridSettings(timezone="America/New_York"),
        "mlflow": MlflowResource(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db"),
        "alerting": AlertingResource(outbox_path=str(tmp_path / "batch_outbox.db")),
    }


def _land(sim, zone, day: dt.date, bad=None, rows_per_file=20):
    from simulator import write_landing_day, write_landing_reference

    write_landing_reference(sim, zone)
    return write_landing_day(
        sim,
        day,
        zone,
        formats={"meter_readings": ("csv", "parquet"), "scada": "parquet", "weather": "csv"},
        bad=bad,
        rows_per_file=rows_per_file,
    )


def _events(instance, run_id, kind):
    return [e.dagster_event for e in instance.all_logs(run_id, of_type=kind)]


@pytest.mark.postgres
@pytest.mark.slow
def test_materialisation_on_the_postgres_instance(pg_dagster_home, pg_database, pg_params, small_sim, tmp_path):
    import psycopg2

    from lake.delta import Lake
    from lake.landing import LocalLanding

    instance = DagsterInstance.get()
    assert isinstance(instance.run_storage, PostgresRunStorage)  # deploy/dagster.yaml: the pooled subclass
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    zone = LocalLanding(tmp_path / "landing")
    man = _land(small_sim, zone, dt.date.fromisoformat(DAY))
    res = _resources(str(tmp_path / "lake"), str(tmp_path / "landing"), tmp_path)

    ref = materialize(
        ALL_ASSETS,
        selection=["ref_meters", "ref_transformers", "ref_weather_stations"],
        instance=instance,
        resources=res,
    )
    assert ref.success
    run = materialize(ALL_ASSETS, selection=INGEST_AND_GOLD, instance=instance, resources=res, partition_key=DAY)
    assert run.success

    # read the run and its events back from Postgres through the instance ...
    stored = instance.get_run_by_id(run.run_id)
    assert stored.is_success and stored.tags["dagster/partition"] == DAY
    mats = {
        e.asset_key.to_user_string(): e for e in _events(instance, run.run_id, DagsterEventType.ASSET_MATERIALIZATION)
    }
    assert set(INGEST_AND_GOLD) <= set(mats)
    meta = mats["silver_meter_readings"].event_specific_data.materialization.metadata
    checks = [e.event_specific_data for e in _events(instance, run.run_id, DagsterEventType.ASSET_CHECK_EVALUATION)]
    by_name = {(c.asset_key.to_user_string(), c.check_name): c for c in checks}
    assert by_name[("silver_meter_readings", "reconciles")].passed
    assert by_name[("silver_meter_readings", "expectations")].passed
    assert by_name[("gold_load_hourly", "expectations")].passed

    # ... and directly with SQL, as an operator would
    with psycopg2.connect(dbname=pg_database, **pg_params) as conn, conn.cursor() as cur:
        cur.execute("SELECT status FROM runs WHERE run_id = %s", (run.run_id,))
        assert cur.fetchone()[0] == "SUCCESS"
        cur.execute(
            "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
            (run.run_id,),
        )
        assert cur.fetchone()[0] == len(mats)
        cur.execute("SELECT count(*) FROM asset_keys WHERE asset_key = %s", ('["silver_meter_readings"]',))
        assert cur.fetchone()[0] == 1

    # what the metadata says is what the lake holds
    lake = Lake(tmp_path / "lake")
    silver = lake.read("silver_meter_readings", dt.date.fromisoformat(DAY))
    assert silver.height == meta["dagster/row_count"].value == man.rows_written("meter_readings")
    hourly = lake.read("gold_load_hourly", dt.date.fromisoformat(DAY))
    feeder_kwh = hourly.filter(pl.col("level") == "feeder")["energy_kwh"].sum()
    assert feeder_kwh == pytest.approx(silver["consumption_kwh"].sum(), rel=1e-9)
    # 25 local hours on the fall-back day
    assert hourly.filter(pl.col("level") == "feeder")["period_start"].n_unique() == 25


@pytest.mark.slow
def test_a_mostly_rejected_partition_blocks_the_gold_assets(small_sim, tmp_path):
    from lake.delta import Lake
    from lake.landing import LocalLanding
    from simulator import BadRecordRates

    instance = DagsterInstance.ephemeral()
    zone = LocalLanding(tmp_path / "landing")
    day = dt.date.fromisoformat(DAY)
    # the day's single meter file arrives with a renamed column: the whole day is unusable
    man = _land(small_sim, zone, day, bad=BadRecordRates(renamed_column_files=1), rows_per_file=10**6)
    assert man.counts("meter_readings")["missing_column_files"] == 1 == len(man.for_source("meter_readings"))
    res = _resources(str(tmp_path / "lake"), str(tmp_path / "landing"), tmp_path)
    assert materialize(
        ALL_ASSETS,
        selection=["ref_meters", "ref_transformers", "ref_weather_stations"],
        instance=instance,
        resources=res,
    ).success
    run = materialize(
        ALL_ASSETS, selection=INGEST_AND_GOLD, instance=instance, resources=res, partition_key=DAY, raise_on_error=False
    )
    checks = {
        (c.asset_key.to_user_string(), c.check_name): c
        for c in (e.event_specific_data for e in _events(instance, run.run_id, DagsterEventType.ASSET_CHECK_EVALUATION))
    }
    gate = checks[("silver_meter_readings", "quarantine_rate")]
    assert not gate.passed and gate.severity.value == "ERROR"
    assert gate.metadata["share"].value > 0.5
    mats = {e.asset_key.to_user_string() for e in _events(instance, run.run_id, DagsterEventType.ASSET_MATERIALIZATION)}
    assert "silver_meter_readings" in mats and "quarantine_meter_readings" in mats
    assert "gold_load_hourly" not in mats and "gold_load_daily" not in mats
    assert not Lake(tmp_path / "lake").exists("gold_load_hourly")


@pytest.mark.s3
@pytest.mark.slow
def test_landing_and_delta_tables_on_an_s3_endpoint(moto_s3, small_sim, tmp_path):
    import boto3

    from lake.delta import Lake
    from lake.landing import S3Landing

    s3 = boto3.client("s3", endpoint_url=moto_s3)
    for b in ("gridlake-landing", "gridlake-lake"):
        s3.create_bucket(Bucket=b)
    zone = S3Landing("s3://gridlake-landing/raw", endpoint_url=moto_s3)
    day = dt.date.fromisoformat(DAY)
    man = _land(small_sim, zone, day)
    res = _resources("s3://gridlake-lake/lake", "s3://gridlake-landing/raw", tmp_path)
    instance = DagsterInstance.ephemeral()
    assert materialize(
        ALL_ASSETS,
        selection=["ref_meters", "ref_transformers", "ref_weather_stations"],
        instance=instance,
        resources=res,
    ).success
    run = materialize(ALL_ASSETS, selection=INGEST_AND_GOLD[:8], instance=instance, resources=res, partition_key=DAY)
    assert run.success
    keys = [
        o["Key"]
        for p in s3.get_paginator("list_objects_v2").paginate(Bucket="gridlake-lake")
        for o in p.get("Contents", [])
    ]
    assert any(k.startswith("lake/silver_meter_readings/_delta_log/") for k in keys)
    assert any(k.startswith("lake/silver_meter_readings/date=2026-11-01/") and k.endswith(".parquet") for k in keys)
    archived = [k for k in keys if k.startswith("lake/bronze_archive/meter_readings/2026-11-01/")]
    assert len(archived) == len(man.for_source("meter_readings"))
    lake = Lake("s3://gridlake-lake/lake")
    silver = lake.read("silver_meter_readings", day)
    assert silver.height == man.rows_written("meter_readings")
    assert lake.read("silver_scada", day).height == man.rows_written("scada")
    # byte-exact archive
    one = archived[0][len("lake/") :]
    assert lake.get_object(one) == zone.get_bytes(one[len("bronze_archive/") :])


def test_definitions_load_with_jobs_schedules_and_sensors():
    from pipelines.definitions import defs

    repo = defs.get_repository_def()
    assert {"daily_ingest", "load_reference", "monthly_rollup", "refresh_catalog"} <= {
        j.name for j in repo.get_all_jobs()
    }
    sched = {s.name: s for s in repo.schedule_defs}
    daily = sched["daily_ingest_schedule"]
    assert daily.cron_schedule == "15 1 * * *" and daily.execution_timezone == "America/New_York"
    assert {s.name for s in repo.sensor_defs} == {
        "landing_sensor",
        "refresh_catalog_after_ingest",
        "post_alerts_after_scoring",
        "critical_alert_sensor",
        "alert_on_run_failure",
        "gold_for_readable_days",
    }
    graph = repo.asset_graph
    # every table declared in contracts has a producer in the code location, one hop away
    # (stream_dead_letters is written by the streaming bridge service, outside Dagster)
    from contracts import STREAM_TABLES, TABLES

    producers = {k for k in graph.get_all_asset_keys() if graph.get(k).is_materializable}
    missing = sorted(n for n in TABLES if AssetKey(n) not in producers and n not in STREAM_TABLES)
    assert not missing, f"declared tables without a producing asset: {missing}"


def test_landing_sensor_requests_each_new_day_once(small_sim, tmp_path):
    from dagster import build_sensor_context

    from lake.landing import LocalLanding
    from pipelines.sensors import landing_sensor

    zone = LocalLanding(tmp_path / "landing")
    from simulator import write_landing_day

    for d in (dt.date(2026, 10, 31), dt.date(2026, 11, 1)):
        write_landing_day(small_sim, d, zone, sources=("weather",))
    res = {"landing": LandingResource(uri=str(tmp_path / "landing"))}
    ctx = build_sensor_context(resources=res)
    reqs = list(landing_sensor(ctx))
    assert sorted(r.partition_key for r in reqs) == ["2026-10-31", "2026-11-01"]
    again = landing_sensor(build_sensor_context(cursor=ctx.cursor, resources=res))
    assert isinstance(again, SkipReason)
    # a late file for an earlier day triggers that day only
    import time

    time.sleep(0.02)
    zone.put_bytes("weather/2026-10-31/late.csv", b"station_id,observation_time\n")
    late = list(landing_sensor(build_sensor_context(cursor=ctx.cursor, resources=res)))
    assert [r.partition_key for r in late] == ["2026-10-31"]


@pytest.mark.slow
def test_a_backfill_range_runs_in_one_run_with_every_day_replaced(small_sim, tmp_path):
    from lake.delta import Lake
    from lake.landing import LocalLanding
    from simulator import write_landing_day, write_landing_reference

    zone = LocalLanding(tmp_path / "landing")
    write_landing_reference(small_sim, zone)
    days = ["2026-10-31", "2026-11-01", "2026-11-02"]
    for d in days:
        write_landing_day(
            small_sim, dt.date.fromisoformat(d), zone, formats="parquet", sources=("meter_readings", "scada")
        )
    res = _resources(str(tmp_path / "lake"), str(tmp_path / "landing"), tmp_path)
    instance = DagsterInstance.ephemeral()
    assert materialize(
        ALL_ASSETS,
        selection=["ref_meters", "ref_transformers", "ref_weather_stations"],
        instance=instance,
        resources=res,
    ).success
    run = materialize(
        ALL_ASSETS,
        selection=INGEST_AND_GOLD,
        instance=instance,
        resources=res,
        tags={"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]},
    )
    assert run.success
    lake = Lake(tmp_path / "lake")
    for d in days:
        day = dt.date.fromisoformat(d)
        assert lake.read("silver_meter_readings", day).height > 0
        assert lake.read("gold_load_daily", day).height > 0
    # Dagster knows all three partitions as materialised by that one run
    for key in ("silver_meter_readings", "gold_load_hourly"):
        assert instance.get_materialized_partitions(AssetKey(key)) == set(days)
    checks = [e.event_specific_data for e in _events(instance, run.run_id, DagsterEventType.ASSET_CHECK_EVALUATION)]
    assert all(c.passed for c in checks if c.check_name in ("reconciles", "expectations"))
