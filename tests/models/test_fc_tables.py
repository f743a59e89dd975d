"""models.forecast.tables: the system total, temperature history/future and forecast-table rows."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import polars as pl

from contracts import TABLES
from models.forecast.tables import SYSTEM, forecast_rows, future_temperature, with_system_total, with_temperature

T0 = pd.Timestamp("2026-04-06 00:00", tz="UTC")


def _utc(times) -> pl.Series:
    return pl.Series(pd.DatetimeIndex(times).as_unit("us")).cast(pl.Datetime("us", "UTC"))


def test_system_total_only_where_every_feeder_reported():
    hours = pd.date_range(T0, periods=3, freq="1h")
    feeders = pl.DataFrame({
        "entity_id": ["F1", "F1", "F1", "F2", "F2"],
        "period_start": _utc([*hours, *hours[:2]]),
        "mean_kw": [10.0, 11.0, 12.0, 5.0, 6.0],
    })  # fmt: skip
    out = with_system_total(feeders)
    system = out.filter(pl.col("entity_id") == SYSTEM)
    assert system["period_start"].to_list() == _utc(hours[:2]).to_list()  # F2 is missing at hour 3: a gap, not a dip
    assert system["mean_kw"].to_list() == [15.0, 17.0]
    assert out.filter(pl.col("entity_id") != SYSTEM).equals(feeders)  # feeder rows untouched
    assert out["entity_id"].to_list() == sorted(out["entity_id"].to_list())


def test_temperature_joins_on_the_hour_and_leaves_missing_hours_null():
    hours = pd.date_range(T0, periods=3, freq="1h")
    load = pl.DataFrame({"entity_id": ["F1"] * 3, "period_start": _utc(hours), "mean_kw": [1.0, 2.0, 3.0]})
    weather = pl.DataFrame(
        {"observation_time": _utc([hours[0], hours[2]]), "temp_air_c": [4.0, 6.0], "ghi_wm2": [0.0, 0.0]}
    )
    out = with_temperature(load, weather)
    assert out.columns == ["entity_id", "period_start", "mean_kw", "temp_air_c"]
    assert out["temp_air_c"].to_list() == [4.0, None, 6.0]


def test_future_temperature_prefers_the_table_then_the_nearest_earlier_day():
    # three days of observations (days 0-2), temperature = day x 100 + hour, so the source of
    # every value is readable; day 2 12:00 is null
    obs_idx = pd.date_range(T0, periods=72, freq="1h")
    temp = [None if (t - T0) == pd.Timedelta(hours=60) else (t - T0).days * 100.0 + t.hour for t in obs_idx]
    weather = pl.DataFrame({"observation_time": _utc(obs_idx), "temp_air_c": temp})
    # issued at day 2 22:00: two forecast hours are in the table, the 36 after it are not
    fut = pd.date_range(T0 + pd.Timedelta(hours=70), periods=38, freq="1h")
    frame, counts = future_temperature(weather, fut)
    got = dict(zip(frame["period_start"], frame["temp_air_c"]))
    at = lambda day, hour: T0 + pd.Timedelta(days=day, hours=hour)  # noqa: E731
    assert got[at(2, 22)] == 222 and got[at(2, 23)] == 223  # in the table: kept
    assert got[at(3, 0)] == 200 and got[at(3, 11)] == 211  # one day earlier
    assert got[at(3, 12)] == 112  # day 2 12:00 is null -> two days earlier
    assert got[at(4, 1)] == 201  # day 3 is not observed -> two days earlier
    assert counts == {"from_weather_table": 2, "persisted": 36}
    assert list(frame.columns) == ["period_start", "temp_air_c"]


def test_future_temperature_stays_unknown_beyond_three_days():
    obs_idx = pd.date_range(T0, periods=24, freq="1h")
    weather = pl.DataFrame({"observation_time": _utc(obs_idx), "temp_air_c": np.arange(24.0)})
    fut = pd.DatetimeIndex([T0 + pd.Timedelta(days=3, hours=5), T0 + pd.Timedelta(days=4, hours=5)])
    frame, counts = future_temperature(weather, fut)
    assert frame["temp_air_c"].iloc[0] == 5.0 and np.isnan(frame["temp_air_c"].iloc[1])
    assert counts == {"from_weather_table": 0, "persisted": 1}


def test_forecast_rows_have_the_forecast_table_schema():
    fc = pl.DataFrame({
        "period_start": _utc(pd.date_range(T0, periods=2, freq="1h")), "horizon_h": [1.0, 2.0],
        "p10": [1.0, 2.0], "p50": [2.0, 3.0], "p90": [3.0, 4.0], "model": ["xgboost", "xgboost"],
    })  # fmt: skip
    issued = T0 - pd.Timedelta(hours=1)
    rows = forecast_rows(fc, dt.date(2026, 4, 5), "feeder", "F1", issued, "3", None)
    assert rows.schema == TABLES["gold_load_forecast"].polars_schema()
    assert rows["issued_at"].to_list() == [issued.to_pydatetime()] * 2 and rows["fallback_reason"].null_count() == 2
    fb = forecast_rows(fc, dt.date(2026, 4, 5), SYSTEM, SYSTEM, issued, "fallback", "LookupError: no champion")
    assert fb["fallback_reason"].to_list() == ["LookupError: no champion"] * 2 and set(fb["level"]) == {SYSTEM}
    assert fb.select("p10", "p50", "p90").equals(fc.select("p10", "p50", "p90"))
