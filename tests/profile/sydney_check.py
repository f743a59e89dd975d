"""Run by test_profile.py in a fresh interpreter with GRIDLAKE_TIMEZONE=Australia/Sydney (partitions and
schedules are built at import, as in a deployment). Prints one JSON line of what it saw."""

import datetime as dt
import json
import sys
import tempfile

import polars as pl
from dagster import build_schedule_context, materialize

from assets.optimization import gold_ev
from assets.partitions import TIMEZONE, daily, daily_open
from assets.resources import AlertingResource, GridSettings, LakeResource
from contracts import day_bounds_utc, load_profile
from models.grid.demand_response import customer_peak_kw
from pipelines.schedules import daily_optimization

tz = load_profile().timezone
out: dict = {"profile": tz, "partitions": TIMEZONE, "grid": GridSettings().timezone}
try:
    GridSettings(timezone="America/New_York")
    out["other_zone_refused"] = False
except Exception as e:  # noqa: BLE001 - the refusal is what is checked
    out["other_zone_refused"] = "differs from the utility profile" in str(e)

days = {}
for day in (dt.date(2026, 4, 5), dt.date(2026, 10, 4), dt.date(2026, 7, 1)):  # DST ends, DST starts, winter
    w = daily.time_window_for_partition_key(day.isoformat())
    b0, b1 = day_bounds_utc(day, tz)
    # the optimisation schedule's tick at 04:00 local that day asks for that day's partition
    tick = dt.datetime.combine(day, dt.time(4), tzinfo=__import__("zoneinfo").ZoneInfo(tz))
    req = daily_optimization(build_schedule_context(scheduled_execution_time=tick))
    # a real materialisation of the EV asset for the partition: every session lies inside the local day
    with tempfile.TemporaryDirectory() as lake:
        res = materialize(
            [gold_ev],
            partition_key=day.isoformat(),
            resources={
                "lake": LakeResource(root=lake),
                "grid": GridSettings(),
                "alerting": AlertingResource(outbox_path=f"{lake}/outbox.db"),
            },  # a replaced schedule's alert goes there
        )
        from contracts import TABLES
        from lake.delta import Lake

        sess = Lake(lake).read(TABLES["gold_ev_sessions"], day)
    days[day.isoformat()] = {
        "window_hours": (w.end.astimezone(dt.timezone.utc) - w.start.astimezone(dt.timezone.utc)).total_seconds()
        / 3600,
        "window_matches_bounds": w.start == b0 and w.end == b1,
        "open_window_matches": daily_open.time_window_for_partition_key(day.isoformat()).start == b0,
        "schedule_partition": req.partition_key,
        "ev_success": res.success,
        "ev_sessions": sess.height,
        "ev_arrivals_inside_day": bool(
            sess.height and sess["arrival_time"].min() >= b0 and sess["arrival_time"].max() < b1
        ),
    }
out["days"] = days

# customer peaks: the profile's window [16, 21) local, on the DST-end day (25 h): 15-minute demand = local hour
t0, t1 = day_bounds_utc(dt.date(2026, 4, 5), tz)
times = pl.datetime_range(t0, t1, "15m", closed="left", eager=True)
local_hour = times.dt.convert_time_zone(tz).dt.hour()
readings = pl.DataFrame({"meter_id": "M1", "reading_time": times, "demand_kw": local_hour.cast(pl.Float64)})
peak = customer_peak_kw(readings, load_profile().tariffs.peak_window.bounds, tz)
out["peak_kw"] = peak["peak_kw"][0]
out["readings_in_day"] = readings.height
# a small graph on the DST-end day: a Sydney utility's files -> reference -> ingest -> gold hourly/daily
from assets.resources import AlertingResource, CatalogResource, LandingResource, MlflowResource  # noqa: E402
from lake.delta import Lake  # noqa: E402
from lake.landing import LocalLanding  # noqa: E402
from pipelines.definitions import ALL_ASSETS  # noqa: E402
from simulator import SimConfig, Simulator, write_landing_day, write_landing_reference  # noqa: E402

day = dt.date(2026, 4, 5)
with tempfile.TemporaryDirectory() as tmp:
    sim = Simulator(SimConfig(n_meters=12, start=day - dt.timedelta(days=1), days=2, timezone=tz, seed=3))
    zone = LocalLanding(f"{tmp}/landing")
    write_landing_reference(sim, zone)
    write_landing_day(sim, day, zone, formats="csv")
    res = {
        "lake": LakeResource(root=f"{tmp}/lake"),
        "landing": LandingResource(uri=f"{tmp}/landing"),
        "grid": GridSettings(),
        "catalog": CatalogResource(path=f"{tmp}/gridlake.duckdb"),
        "mlflow": MlflowResource(tracking_uri=f"sqlite:///{tmp}/mlflow.db"),
        "alerting": AlertingResource(outbox_path=f"{tmp}/outbox.db"),
    }
    ok_ref = materialize(
        ALL_ASSETS, selection=["ref_meters", "ref_transformers", "ref_weather_stations"], resources=res
    ).success
    sel = [
        "bronze_meter_readings_files",
        "silver_meter_readings",
        "quarantine_meter_readings",
        "ingest_manifest_meter_readings",
        "gold_load_hourly",
        "gold_load_daily",
    ]
    ok_graph = materialize(ALL_ASSETS, selection=sel, resources=res, partition_key=day.isoformat()).success
    lk = Lake(f"{tmp}/lake")
    silver, hourly = lk.read(TABLES["silver_meter_readings"], day), lk.read(TABLES["gold_load_hourly"], day)
    daily_rows = lk.read(TABLES["gold_load_daily"], day)
    b0, b1 = day_bounds_utc(day, tz)
    per_meter = silver.group_by("meter_id").len()["len"].unique().to_list()
    meter_hours = hourly.filter(pl.col("level") == "meter").group_by("entity_id").len()["len"].unique().to_list()
    out["graph"] = {
        "success": ok_ref and ok_graph,
        "silver_rows": silver.height,
        "silver_inside_day": bool(silver["reading_time"].min() >= b0 and silver["reading_time"].max() < b1),
        "readings_per_meter": per_meter,
        "interval_minutes": sim.cfg.interval_minutes,
        "hours_per_meter": meter_hours,
        "daily_meter_rows": daily_rows.filter(pl.col("level") == "meter").height,
    }

json.dump(out, sys.stdout)
print()
