"""A held day in a range (backfill) run blocks only its own day's gold (pipelines.sensors.gold_for_readable_days).

A 4-day range run, on the PostgreSQL instance of deploy/dagster.yaml, with a landing file on day 2 that cannot be
read: the blocking files_readable check stops the run's gold steps for the whole range; the sensor, ticked on the
run's failure, requests gold for days 1 and 3-4 only; day 2 stays held with no gold; after the file is re-sent
and day 2 re-run, all four days are published, reconcile and have gold.
"""

from __future__ import annotations

import datetime as dt
import gzip

import pytest
from dagster import (
    DagsterEventType,
    DagsterInstance,
    RunRequest,
    SkipReason,
    build_run_status_sensor_context,
    materialize,
)
from dagster_postgres import PostgresRunStorage

from contracts import SOURCES
from lake.delta import Lake
from lake.landing import LocalLanding
from lake.manifest import verify_day, verify_report
from pipelines.definitions import ALL_ASSETS
from pipelines.sensors import gold_for_readable_days, readable_subranges
from tests.pipelines.test_dagster_runs import INGEST_AND_GOLD, _events, _land, _resources

START = dt.date(2026, 11, 9)  # days of their own: the PostgreSQL event log is shared with other sessions
DAYS = [START + dt.timedelta(days=i) for i in range(4)]
KEYS = [d.isoformat() for d in DAYS]
GOLD = ("gold_load_hourly", "gold_load_daily", "gold_grid_health_daily")
RANGE = {"dagster/asset_partition_range_start": KEYS[0], "dagster/asset_partition_range_end": KEYS[-1]}


def test_readable_subranges():
    k = ["a", "b", "c", "d", "e"]
    assert readable_subranges(k, {"b"}) == [("a", "a"), ("c", "e")]
    assert readable_subranges(k, {"a", "e"}) == [("b", "d")]
    assert readable_subranges(k, {"b", "c", "d"}) == [("a", "a"), ("e", "e")]
    assert readable_subranges(k, set(k)) == [] and readable_subranges(k, set()) == [("a", "e")]


def _materialized(instance, run_id) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for e in _events(instance, run_id, DagsterEventType.ASSET_MATERIALIZATION):
        out.setdefault(e.asset_key.to_user_string(), set()).add(e.partition)
    return out


def _tick(instance, run):
    stored = instance.get_run_by_id(run.run_id)
    ctx = build_run_status_sensor_context(
        sensor_name="gold_for_readable_days",
        dagster_event=run.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=stored,
    ).for_run_failure()
    out = gold_for_readable_days(ctx)
    return out if isinstance(out, SkipReason) else list(out)


@pytest.mark.postgres
@pytest.mark.slow
def test_a_held_day_blocks_only_its_own_days_gold_in_a_range(pg_dagster_home, pg_database, tmp_path):
    from simulator import BadRecordRates, SimConfig, Simulator

    sim = Simulator(SimConfig(n_meters=40, start=START, days=len(DAYS), seed=23))
    instance = DagsterInstance.get()
    assert isinstance(instance.run_storage, PostgresRunStorage)  # deploy/dagster.yaml: the pooled subclass
    zone = LocalLanding(tmp_path / "landing")
    for d in DAYS:
        _land(sim, zone, d, bad=BadRecordRates(out_of_range=0.01))  # some quarantined records every day
    bad = f"meter_readings/{KEYS[1]}/part-999.csv.gz"
    zone.put_bytes(bad, b"\x1f\x8b\x08\x00 truncated in transfer\nline\nline\n")
    res = _resources(str(tmp_path / "lake"), str(tmp_path / "landing"), tmp_path)
    lake = Lake(tmp_path / "lake")
    refs = ["ref_meters", "ref_transformers", "ref_weather_stations"]
    assert materialize(ALL_ASSETS, selection=refs, instance=instance, resources=res).success

    # the range run, as a single-run backfill runs it: the blocking check holds the whole range's gold
    run = materialize(
        ALL_ASSETS, selection=INGEST_AND_GOLD, instance=instance, resources=res, tags=RANGE, raise_on_error=False
    )
    assert not run.success
    mats = _materialized(instance, run.run_id)
    assert mats["silver_meter_readings"] == set(KEYS) and mats["silver_scada"] == set(KEYS)
    assert not any(g in mats for g in GOLD) and not lake.exists("gold_load_hourly")
    assert {d: bool(lake.read("silver_meter_readings", d).height) for d in DAYS} == {
        DAYS[0]: True, DAYS[1]: False, DAYS[2]: True, DAYS[3]: True,
    }  # fmt: skip

    # the sensor on the run's failure: gold for the readable sub-ranges, nothing for the held day
    requests = _tick(instance, run)
    assert all(isinstance(r, RunRequest) for r in requests)
    assert [(r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"]) for r in requests] == [
        (KEYS[0], KEYS[0]), (KEYS[2], KEYS[3]),
    ]  # fmt: skip
    assert all({k.to_user_string() for k in r.asset_selection} == set(GOLD) for r in requests)
    assert all(r.tags["gridlake/held_days"] == KEYS[1] and r.run_key.startswith(run.run_id) for r in requests)
    gold_mats: dict[str, set[str]] = {}
    from dagster import Definitions
    from dagster._core.storage.defs_state.base import set_defs_state_storage

    from pipelines.jobs import ALL_JOBS

    for r in requests:
        # as the daemon launches it: the sensor's request job (daily_ingest) with the request's selection and tags
        # (resolving the job reads the current defs-state storage: this test's instance, see test_schedules_sensors)
        with set_defs_state_storage(instance.defs_state_storage):
            job = Definitions(assets=ALL_ASSETS, jobs=ALL_JOBS, resources=res).resolve_job_def(
                gold_for_readable_days.targets[0].job_name
            )
            done = job.execute_in_process(instance=instance, asset_selection=r.asset_selection, tags=r.tags)
        assert done.success and job.name == "daily_ingest"
        for k, v in _materialized(instance, done.run_id).items():
            gold_mats.setdefault(k, set()).update(v)
    readable = {KEYS[0], KEYS[2], KEYS[3]}
    assert gold_mats == dict.fromkeys(GOLD, readable)
    for g in GOLD:
        assert {d: lake.read(g, d).height > 0 for d in DAYS} == {
            DAYS[0]: True, DAYS[1]: False, DAYS[2]: True, DAYS[3]: True,
        }  # fmt: skip
    # day 2 stays held: written, not published, its manifest row absent, no reader sees it
    src = SOURCES["meter_readings"]
    held = verify_day(lake, src, DAYS[1])
    assert not held["ok"] and not held["published"]
    assert lake.read("silver_meter_readings", DAYS[1], published=False).height > 0
    # a second tick on the same failure asks for the same run keys (the daemon launches a run key once)
    assert [r.run_key for r in _tick(instance, run)] == [r.run_key for r in requests]

    # the nightly path: day 2 run alone is still held, its gold with it; the sensor has no range to release
    alone = materialize(
        ALL_ASSETS,
        selection=INGEST_AND_GOLD,
        instance=instance,
        resources=res,
        partition_key=KEYS[1],
        raise_on_error=False,
    )
    assert not alone.success and not any(g in _materialized(instance, alone.run_id) for g in GOLD)
    assert "not a range run" in _tick(instance, alone).skip_message
    # a range blocked by more than the held day (here quarantine_rate over a zero threshold): nothing is released
    strict = {"ops": {"ingest_meter_readings": {"config": {"warn_quarantine_share": 0.0, "max_quarantine_share": 0.0}}}}
    other = materialize(
        ALL_ASSETS, selection=INGEST_AND_GOLD, instance=instance, resources=res, tags=RANGE, run_config=strict,
        raise_on_error=False,
    )  # fmt: skip
    assert not other.success
    skip = _tick(instance, other)
    assert isinstance(skip, SkipReason) and "silver_meter_readings:quarantine_rate" in skip.skip_message
    assert not lake.read("gold_load_hourly", DAYS[1]).height

    # the head-end re-sends the file (a readable copy of a delivered part) and day 2 is re-run on its own
    good = sorted(f.key for f in zone.list(f"meter_readings/{KEYS[1]}") if f.key.endswith(".csv"))[0]
    zone.put_bytes(bad, gzip.compress(zone.get_bytes(good)))
    again = materialize(ALL_ASSETS, selection=INGEST_AND_GOLD, instance=instance, resources=res, partition_key=KEYS[1])
    assert again.success
    mats = _materialized(instance, again.run_id)
    assert all(mats[g] == {KEYS[1]} for g in GOLD)
    # everything reconciles: every day of both sources published and counted equal, gold for all four days
    for s in ("meter_readings", "scada"):
        for d in DAYS:
            v = verify_day(lake, SOURCES[s], d)
            assert v["ok"] and v["published"] and not v["unreadable_files"], (s, d, v)
    assert verify_day(lake, src, DAYS[1])["duplicate_rows"] > 0  # the re-sent copy's records, counted once
    ok, report = verify_report(lake)  # `python -m lake.catalog reconcile`'s check of every published day
    assert ok, report
    for g in GOLD:
        assert all(lake.read(g, d).height > 0 for d in DAYS)
