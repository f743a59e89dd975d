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
from assets.resources import GridSettings, LakeResource
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
            resources={"lake": LakeResource(root=lake), "grid": GridSettings()},
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
json.dump(out, sys.stdout)
print()
