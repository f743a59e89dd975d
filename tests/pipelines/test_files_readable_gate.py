"""A landing file that cannot be read holds its day in a real Dagster run (the blocking files_readable
check stops the gold assets), and an audited waiver (lake.waiver) releases it."""

from __future__ import annotations

import datetime as dt

import pytest
from dagster import DagsterEventType, DagsterInstance, materialize

from lake.delta import Lake
from lake.landing import LocalLanding
from lake.waiver import waive_file
from pipelines.definitions import ALL_ASSETS
from tests.pipelines.test_dagster_runs import INGEST_AND_GOLD, _events, _land, _resources

DAY = "2026-11-02"


def _run(instance, res):
    run = materialize(
        ALL_ASSETS, selection=INGEST_AND_GOLD, instance=instance, resources=res, partition_key=DAY, raise_on_error=False
    )
    checks = {
        (c.asset_key.to_user_string(), c.check_name): c
        for c in (e.event_specific_data for e in _events(instance, run.run_id, DagsterEventType.ASSET_CHECK_EVALUATION))
    }
    mats = {
        e.asset_key.to_user_string(): e.event_specific_data.materialization
        for e in _events(instance, run.run_id, DagsterEventType.ASSET_MATERIALIZATION)
    }
    return run, checks, mats


@pytest.mark.slow
def test_an_unreadable_file_blocks_the_gold_assets_until_it_is_waived(small_sim, tmp_path):
    instance = DagsterInstance.ephemeral()
    zone = LocalLanding(tmp_path / "landing")
    day = dt.date.fromisoformat(DAY)
    _land(small_sim, zone, day)
    bad = f"meter_readings/{DAY}/part-999.csv.gz"
    zone.put_bytes(bad, b"\x1f\x8b\x08\x00 truncated in transfer\nline\nline\n")
    res = _resources(str(tmp_path / "lake"), str(tmp_path / "landing"), tmp_path)
    assert materialize(
        ALL_ASSETS,
        selection=["ref_meters", "ref_transformers", "ref_weather_stations"],
        instance=instance,
        resources=res,
    ).success

    run, checks, mats = _run(instance, res)
    gate = checks[("silver_meter_readings", "files_readable")]
    assert not gate.passed and gate.severity.value == "ERROR"
    assert bad in gate.description and "unreadable_file" in gate.description
    assert gate.metadata["unreadable_files"].value[DAY][bad]["bytes"] == len(zone.get_bytes(bad))
    assert checks[("silver_meter_readings", "reconciles")].passed  # the readable records all reconcile
    assert "silver_meter_readings" in mats and "gold_load_hourly" not in mats and "gold_load_daily" not in mats
    lake = Lake(tmp_path / "lake")
    assert not lake.exists("gold_load_hourly")
    # the day is written but held out of the manifest: no reader sees it, and a later run that reads
    # silver (here the gold rollup alone, without the ingestion's checks) finds nothing to read
    assert lake.read("silver_meter_readings", day, published=False).height > 0
    assert (
        lake.read("silver_meter_readings", day).height == 0
        and lake.read("bronze_meter_readings_files", day).height == 0
    )
    assert mats["ingest_manifest_meter_readings"].metadata["held"].value[DAY] == {bad: "unreadable_file"}
    later = materialize(
        ALL_ASSETS,
        selection=["gold_load_hourly"],
        instance=instance,
        resources=res,
        partition_key=DAY,
        raise_on_error=False,
    )
    assert not later.success and not lake.exists("gold_load_hourly")
    failure = next(e for e in instance.all_logs(later.run_id, of_type=DagsterEventType.STEP_FAILURE))
    assert "silver_meter_readings has no rows for 2026-11-02" in str(failure.dagster_event.event_specific_data.error)

    waive_file(zone, bad, "transfer truncated; head-end re-sent the readings in part-000", "ops-oncall")
    run, checks, mats = _run(instance, res)
    gate = checks[("silver_meter_readings", "files_readable")]
    assert run.success and gate.passed
    waived = gate.metadata["waived_and_skipped_files"].value[DAY]["waived"]
    assert list(waived) == [bad] and "ops-oncall" in waived[bad]
    assert "gold_load_hourly" in mats and "gold_load_daily" in mats
    assert (
        lake.read("silver_meter_readings", day).height > 0 and lake.read("gold_load_hourly", day).height > 0
    )  # published


def test_a_waiver_makes_the_landing_sensor_re_run_its_day(tmp_path):
    import time

    from dagster import SkipReason, build_sensor_context

    from assets.resources import LandingResource
    from pipelines.sensors import landing_sensor

    zone = LocalLanding(tmp_path / "landing")
    zone.put_bytes("weather/2026-11-02/good.csv", b"station_id,observation_time\n")
    zone.put_bytes("weather/2026-11-03/broken.csv.gz", b"\x1f\x8b\x08 truncated")
    res = {"landing": LandingResource(uri=str(tmp_path / "landing"))}
    ctx = build_sensor_context(resources=res)
    assert sorted(r.partition_key for r in landing_sensor(ctx)) == ["2026-11-02", "2026-11-03"]
    assert isinstance(landing_sensor(build_sensor_context(cursor=ctx.cursor, resources=res)), SkipReason)
    time.sleep(0.02)
    waive_file(zone, "weather/2026-11-03/broken.csv.gz", "station logger fault, readings lost at source", "ops")
    again = list(landing_sensor(build_sensor_context(cursor=ctx.cursor, resources=res)))
    assert [r.partition_key for r in again] == ["2026-11-03"]
