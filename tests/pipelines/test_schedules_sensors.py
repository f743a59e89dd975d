"""Every schedule and sensor of the code location, ticked against a PostgreSQL-backed Dagster instance.

The instance is the production ``deploy/dagster.yaml`` with ``GRIDLAKE_PG_*`` pointing at a database
created for this module (dropped afterwards). Schedules are evaluated at chosen local times with
``build_schedule_context(instance=...)``; the landing sensor polls a real local folder and a real S3
endpoint (moto server) with ``build_sensor_context(instance=...)``; the run-failure sensor reacts to a
real failed run stored in PostgreSQL (``build_run_status_sensor_context``).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
import uuid
from zoneinfo import ZoneInfo

import pytest
from dagster import (
    DagsterInstance,
    Definitions,
    RunRequest,
    build_run_status_sensor_context,
    build_schedule_context,
    build_sensor_context,
)
from dagster_postgres import PostgresRunStorage

from assets.resources import (
    AlertingResource,
    AlertSinkResource,
    CatalogResource,
    GridSettings,
    LakeResource,
    LandingResource,
    MlflowResource,
)
from contracts import DEFAULT_TIMEZONE
from pipelines.definitions import ALL_ASSETS, defs
from pipelines.jobs import ALL_JOBS

TZ = ZoneInfo("America/New_York")
REPO = defs.get_repository_def()
SCHEDULES = {s.name: s for s in REPO.schedule_defs}
SENSORS = {s.name: s for s in REPO.sensor_defs}

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg_instance(tmp_path_factory, pg_params):
    """A Dagster instance from deploy/dagster.yaml on a fresh PostgreSQL database (dropped at the end)."""
    import psycopg2

    from tests.conftest import REPO as ROOT

    db = f"gridlake_sched_{uuid.uuid4().hex[:12]}"  # generated here: a safe identifier
    admin = psycopg2.connect(dbname="postgres", **pg_params)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{db}"')
    home = tmp_path_factory.mktemp("dagster_home_sched")
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    env = {"DAGSTER_HOME": str(home), "GRIDLAKE_PG_HOST": pg_params["host"], "GRIDLAKE_PG_PORT": pg_params["port"],
           "GRIDLAKE_PG_USER": pg_params["user"], "GRIDLAKE_PG_PASSWORD": pg_params["password"], "GRIDLAKE_PG_DB": db}  # fmt: skip
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    instance = DagsterInstance.get()
    try:
        assert isinstance(instance.run_storage, PostgresRunStorage)  # deploy/dagster.yaml: the pooled subclass
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        yield instance
    finally:
        instance.dispose()
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        admin.close()


def _local(y, m, d, hh, mm=0) -> dt.datetime:
    return dt.datetime(y, m, d, hh, mm, tzinfo=TZ)


def _tick(instance, name: str, at: dt.datetime, resources: dict | None = None):
    """Evaluate schedule ``name`` as the daemon would at ``at``; returns its run requests or skip message."""
    sched = SCHEDULES[name]
    ctx = build_schedule_context(
        instance=instance, scheduled_execution_time=at, resources=resources, repository_def=REPO
    )
    data = sched.evaluate_tick(ctx)
    return data.run_requests, data.skip_message


def _ticks(name: str, start: dt.datetime, n: int) -> list[dt.datetime]:
    """The daemon's own tick times (dagster._utils.schedules: what the scheduler iterates over)."""
    from dagster._utils.schedules import schedule_execution_time_iterator

    sched = SCHEDULES[name]
    it = schedule_execution_time_iterator(start.timestamp(), sched.cron_schedule, sched.execution_timezone)
    return [next(it).astimezone(TZ) for _ in range(n)]


def _valid_for_job(req: RunRequest, job_name: str):
    job = REPO.get_job(job_name)
    if req.partition_key is not None:
        assert job.partitions_def is not None, f"{job_name} is not partitioned but got {req.partition_key}"
        assert req.partition_key in job.partitions_def.get_partition_keys(
            current_time=dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc)
        )


# ------------------------------------------------------------------------------------ schedules
def test_nightly_training_runs_at_two_local_across_both_dst_changes(pg_instance):
    for name, job in (
        ("nightly_forecast_training", "forecast_training"),
        ("grid_ml_training_nightly", "grid_ml_training"),
    ):
        assert SCHEDULES[name].job_name == job and SCHEDULES[name].execution_timezone == "America/New_York"
        # the fall-back night (2026-11-01): 02:00 EST is 07:00 UTC, the night before 06:00 UTC
        fall = _ticks(name, _local(2026, 10, 30, 12), 3)
        assert [(t.date().isoformat(), t.hour, t.minute) for t in fall] == [
            ("2026-10-31", 2, 0),
            ("2026-11-01", 2, 0),
            ("2026-11-02", 2, 0),
        ]
        assert [t.astimezone(dt.timezone.utc).hour for t in fall] == [6, 7, 7]
        # the spring-forward night (2026-03-08) has no 02:00: the run happens once, at 03:00 EDT
        spring = _ticks(name, _local(2026, 3, 6, 12), 3)
        assert [(t.day, t.hour) for t in spring] == [(7, 2), (8, 3), (9, 2)]
    reqs, skip = _tick(pg_instance, "nightly_forecast_training", _local(2026, 11, 1, 2))
    assert skip is None and [r.run_key for r in reqs] == ["train@2026-11-01"]
    reqs, _ = _tick(pg_instance, "grid_ml_training_nightly", _local(2026, 11, 1, 2))
    assert len(reqs) == 1 and reqs[0].partition_key is None


def test_hourly_scoring_targets_the_local_day_not_the_utc_day(pg_instance):
    ticks = _ticks("hourly_forecast_scoring", _local(2026, 11, 1, 0), 26)
    assert all(t.minute == 10 for t in ticks)
    # 25 distinct local hours on the fall-back day, then the next day starts
    assert sum(t.date() == dt.date(2026, 11, 1) for t in ticks) == 25
    # 21:10 EST is 02:10 UTC of the *next* UTC day: the partition is still the local day
    at = _local(2026, 11, 1, 21, 10)
    assert at.astimezone(dt.timezone.utc).date() == dt.date(2026, 11, 2)
    reqs, _ = _tick(pg_instance, "hourly_forecast_scoring", at)
    assert [(r.partition_key, r.run_key) for r in reqs] == [("2026-11-01", "score@2026-11-01T21")]
    _valid_for_job(reqs[0], "forecast_scoring")
    # the hour after has its own run key (a run per hour, none dropped as a duplicate)
    nxt, _ = _tick(pg_instance, "hourly_forecast_scoring", _local(2026, 11, 1, 22, 10))
    assert nxt[0].run_key != reqs[0].run_key and nxt[0].partition_key == "2026-11-01"


def test_grid_ml_scoring_skips_until_the_day_has_readings(pg_instance, lake_and_landing, small_sim):
    from contracts import SOURCES
    from lake.ingest import ingest_partition
    from simulator import write_landing_day

    lake, zone = lake_and_landing
    res = {"lake": LakeResource(root=str(lake.root))}
    at = _local(2026, 11, 1, 23, 20)  # 04:20 UTC on 2 November
    reqs, skip = _tick(pg_instance, "grid_ml_scoring_hourly", at, res)
    assert reqs == [] and "no rows for 2026-11-01" in skip
    day = dt.date(2026, 11, 1)
    write_landing_day(small_sim, day, zone, formats="parquet", sources=("meter_readings",))
    src = SOURCES["meter_readings"]
    ingest_partition(
        zone, lake, src, day, lake.read("ref_meters", columns=["meter_id"])["meter_id"], tz=DEFAULT_TIMEZONE
    )
    reqs, skip = _tick(pg_instance, "grid_ml_scoring_hourly", at, res)
    assert skip is None and [r.partition_key for r in reqs] == ["2026-11-01"]
    _valid_for_job(reqs[0], "grid_ml_scoring")
    # the next local day has no readings yet: skip again
    _, skip = _tick(pg_instance, "grid_ml_scoring_hourly", _local(2026, 11, 2, 0, 20), res)
    assert "no rows for 2026-11-02" in skip


def test_daily_optimisation_schedules_the_current_local_day_at_four(pg_instance):
    ticks = _ticks("daily_optimization", _local(2026, 10, 31, 12), 2)
    assert [(t.day, t.hour, t.minute) for t in ticks] == [(1, 4, 0), (2, 4, 0)]
    reqs, _ = _tick(pg_instance, "daily_optimization", ticks[0])
    assert [(r.partition_key, r.run_key) for r in reqs] == [("2026-11-01", "opt@2026-11-01")]
    _valid_for_job(reqs[0], "optimization_daily")


def test_ingest_and_monthly_schedules_request_the_finished_period(pg_instance):
    ticks = _ticks("daily_ingest_schedule", _local(2026, 10, 31, 12), 2)
    assert [(t.day, t.hour, t.minute) for t in ticks] == [(1, 1, 15), (2, 1, 15)]
    reqs, _ = _tick(pg_instance, "daily_ingest_schedule", ticks[1])
    assert [r.partition_key for r in reqs] == ["2026-11-01"]  # at 01:15 on the 2nd: yesterday, now complete
    _valid_for_job(reqs[0], "daily_ingest")
    month = _ticks("monthly_rollup_schedule", _local(2026, 10, 15, 0), 1)[0]
    assert (month.month, month.day, month.hour) == (11, 1, 3)
    reqs, _ = _tick(pg_instance, "monthly_rollup_schedule", month)
    assert [r.partition_key for r in reqs] == ["2026-10-01"]


def test_every_schedule_and_sensor_is_covered_here():
    assert set(SCHEDULES) == {"daily_ingest_schedule", "monthly_rollup_schedule", "nightly_forecast_training", "hourly_forecast_scoring",
                              "grid_ml_training_nightly", "grid_ml_scoring_hourly", "daily_optimization"}  # fmt: skip
    # post_alerts_after_scoring and critical_alert_sensor are ticked in tests/streaming_bridge/delivery/test_bridge_batch.py,
    # gold_for_readable_days in tests/pipelines/test_held_day_range.py
    assert set(SENSORS) == {
        "landing_sensor",
        "refresh_catalog_after_ingest",
        "alert_on_run_failure",
        "gold_for_readable_days",
        "post_alerts_after_scoring",
        "critical_alert_sensor",
    }


# ------------------------------------------------------------------------------- landing sensor
def _poll(instance, cursor, res):
    ctx = build_sensor_context(
        instance=instance, cursor=cursor, resources=res, sensor_name="landing_sensor", repository_def=REPO
    )
    data = SENSORS["landing_sensor"].evaluate_tick(ctx)
    for r in data.run_requests:
        _valid_for_job(r, "daily_ingest")
    return data.run_requests, data.cursor, data.skip_message


def test_landing_sensor_local_folder_same_mtime_as_cursor(pg_instance, tmp_path):
    from lake.landing import LandingCursor, LocalLanding

    zone = LocalLanding(tmp_path / "landing")
    res = {"landing": LandingResource(uri=str(tmp_path / "landing"))}
    zone.put_bytes("meter_readings/2026-11-01/a.csv", b"x\n")
    zone.put_bytes("weather/2026-10-31/w.csv", b"x\n")
    zone.put_bytes("meter_readings/README.txt", b"not a day folder\n")
    reqs, cursor, _ = _poll(pg_instance, None, res)
    assert sorted(r.partition_key for r in reqs) == ["2026-10-31", "2026-11-01"]
    assert all(r.tags["gridlake/trigger"] == "landing" for r in reqs)
    reqs2, cursor2, skip = _poll(pg_instance, cursor, res)
    assert reqs2 == [] and skip and cursor2 == cursor  # nothing new: cursor unchanged
    # a late file lands with exactly the cursor's modification time (coarse clocks, copies that keep mtimes)
    t = LandingCursor.parse(cursor).modified
    zone.put_bytes("meter_readings/2026-11-01/b.csv", b"y\n")
    os.utime(zone.local_path("meter_readings/2026-11-01/b.csv"), (t, t))
    assert zone.list("meter_readings/2026-11-01")[1].modified == t
    reqs3, cursor3, _ = _poll(pg_instance, cursor, res)
    assert [r.partition_key for r in reqs3] == ["2026-11-01"]
    assert reqs3[0].run_key != next(r.run_key for r in reqs if r.partition_key == "2026-11-01")
    assert _poll(pg_instance, cursor3, res)[0] == []


@pytest.mark.s3
def test_landing_sensor_s3_object_in_the_same_second_as_the_cursor(pg_instance, moto_s3):
    """S3 LastModified has one-second resolution: an object put after a poll but within the cursor's
    second has LastModified == cursor and must still trigger its day."""
    import boto3

    from lake.landing import LandingCursor, S3Landing

    s3 = boto3.client("s3", endpoint_url=moto_s3)
    bucket = f"landing-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    zone = S3Landing(f"s3://{bucket}/raw", endpoint_url=moto_s3)
    res = {"landing": LandingResource(uri=f"s3://{bucket}/raw", endpoint_url=moto_s3)}

    for attempt in range(8):  # the poll and the second put must fall in one wall-clock second
        while time.time() % 1 > 0.3:
            time.sleep(0.02)
        zone.put_bytes(f"scada/2026-11-01/first-{attempt}.parquet", b"a")
        reqs, cursor, _ = _poll(pg_instance, None if attempt == 0 else cursor, res)  # noqa: F821 (set in the first pass)
        zone.put_bytes(f"scada/2026-11-01/second-{attempt}.parquet", b"b")
        c = LandingCursor.parse(cursor)
        second = next(f for f in zone.list("scada") if f.key.endswith(f"second-{attempt}.parquet"))
        if second.modified == c.modified:
            break
        cursor = c.advance([second]).serialize()  # crossed a second: consume it and try again
    else:
        pytest.fail("could not land two objects in the same second in 8 attempts")
    assert [r.partition_key for r in reqs] == ["2026-11-01"]
    assert f"scada/2026-11-01/first-{attempt}.parquet" in c.keys_at_modified
    # the old rule ("modified > cursor time") would skip this object; the sensor does not
    assert not second.modified > c.modified
    late, cursor2, _ = _poll(pg_instance, cursor, res)
    assert [r.partition_key for r in late] == ["2026-11-01"] and late[0].run_key != reqs[0].run_key
    assert int(late[0].tags["gridlake/new_files"]) == 1
    assert _poll(pg_instance, cursor2, res)[0] == []


# --------------------------------------------------------------------------- run-failure alert
def test_a_failed_run_raises_an_alert_in_alertmanager_through_the_outbox(pg_instance, tmp_path):
    # the main job on an empty lake: the ingest step fails (no reference tables), stored in PostgreSQL
    res = {
        "lake": LakeResource(root=str(tmp_path / "lake")), "landing": LandingResource(uri=str(tmp_path / "landing")),
        "catalog": CatalogResource(path=str(tmp_path / "c.duckdb")), "grid": GridSettings(),
        "mlflow": MlflowResource(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db"),
        "alerting": AlertingResource(outbox_path=str(tmp_path / "batch_outbox.db")),
    }  # fmt: skip
    from dagster._core.storage.defs_state.base import set_defs_state_storage

    # resolving a job reads "the current" defs-state storage, a context variable another test module's
    # instance may have left pointing at a disposed instance: make it this test's instance
    with set_defs_state_storage(pg_instance.defs_state_storage):
        job = Definitions(assets=ALL_ASSETS, jobs=ALL_JOBS, resources=res).resolve_job_def("daily_ingest")
        result = job.execute_in_process(instance=pg_instance, partition_key="2026-11-01", raise_on_error=False)
    assert not result.success
    stored = pg_instance.get_run_by_id(result.run_id)
    assert stored.is_failure
    failure = result.get_run_failure_event()

    # through the bridge's delivery path: the durable outbox drained to a real (private) Alertmanager
    from streaming_bridge.am_client import AlertmanagerClient
    from streaming_bridge.amproc import AlertmanagerProcess, write_config

    cfg = write_config({"route": {"receiver": "void"}, "receivers": [{"name": "void"}]}, tmp_path / "am.yml")
    with AlertmanagerProcess(cfg, storage_dir=tmp_path / "am") as am:
        am.start()
        sink_res = AlertSinkResource(
            alertmanager_url=am.url, outbox_path=str(tmp_path / "outbox.db"), ui_url="http://dagster.example:3000/"
        )
        ctx = build_run_status_sensor_context(
            sensor_name="alert_on_run_failure", dagster_event=failure, dagster_instance=pg_instance, dagster_run=stored,
            resources={"alert_sink": sink_res},
        ).for_run_failure()  # fmt: skip
        SENSORS["alert_on_run_failure"](ctx)
        sent = AlertmanagerClient(am.url).alerts()
    assert len(sent) == 1
    a = sent[0]
    assert a["labels"] == {"alertname": "PipelineRunFailed", "severity": "critical", "asset_type": "pipeline_job",
                           "asset_id": "daily_ingest", "job": "daily_ingest", "partition": "2026-11-01"}  # fmt: skip
    assert a["annotations"]["run_id"] == result.run_id
    steps = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert steps and a["annotations"]["failed_steps"] == ", ".join(steps)
    step_error = next(
        e for e in result.all_events if e.event_type_value == "STEP_FAILURE"
    ).event_specific_data.error.message.strip()
    assert step_error.splitlines()[0] in a["annotations"]["description"]
    assert a["generatorURL"] == f"http://dagster.example:3000/runs/{result.run_id}"
    # startsAt is the run's end time as PostgreSQL recorded it; Alertmanager holds it firing (endsAt in the future)
    record = pg_instance.get_run_record_by_id(result.run_id)
    starts = dt.datetime.fromisoformat(a["startsAt"].replace("Z", "+00:00"))
    assert abs(starts.timestamp() - record.end_time) < 0.001
    assert a["status"]["state"] == "active"
    assert dt.datetime.fromisoformat(a["endsAt"].replace("Z", "+00:00")) > dt.datetime.now(dt.UTC)
