"""models.forecast.peak: capacity per feeder and the expected daily peak with reserve margins."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import polars as pl
import pytest

from contracts import TABLES
from models.forecast.peak import feeder_capacity_kw, peak_demand
from models.forecast.tables import SYSTEM

TZ = "America/New_York"
DST_DAY = dt.date(2026, 3, 8)  # clocks go forward: 23 local hours, 05:00 UTC .. 04:00 UTC next day


def _utc(*times: str) -> pl.Series:
    return pl.Series(pd.DatetimeIndex(list(times), tz="UTC").as_unit("us")).cast(pl.Datetime("us", "UTC"))


def test_capacity_sums_transformer_ratings_times_power_factor():
    tx = pl.DataFrame({"feeder_id": ["F1", "F1", "F2"], "rating_kva": [100.0, 50.0, 200.0]})
    caps = feeder_capacity_kw(tx, 0.9, {})
    assert caps == pytest.approx({"F1": 135.0, "F2": 180.0, SYSTEM: 315.0})
    # an override replaces that entry only (the system stays the sum of the ratings)
    assert feeder_capacity_kw(tx, 0.9, {"F2": 50.0}) == pytest.approx({"F1": 135.0, "F2": 50.0, SYSTEM: 315.0})
    with pytest.raises(ValueError, match="power_factor"):
        feeder_capacity_kw(tx, 1.2, {})
    with pytest.raises(ValueError, match="positive finite"):
        feeder_capacity_kw(tx, 1.0, {"F1": float("nan")})


def _forecast(issued_at: str, hours: list[str], p50: list[float]) -> pl.DataFrame:
    n = len(hours)
    return pl.DataFrame({
        "entity_id": ["F1"] * n, "issued_at": _utc(*[issued_at] * n), "period_start": _utc(*hours),
        "p50": p50, "p90": [v + 10 for v in p50],
    })  # fmt: skip


def test_peak_of_a_dst_day_uses_the_latest_issue_and_the_observed_hours_before_it():
    early = _forecast("2026-03-08 04:00", ["2026-03-08 06:00", "2026-03-08 15:00"], [90.0, 95.0])  # superseded
    late = _forecast(
        "2026-03-08 10:00",
        ["2026-03-08 11:00", "2026-03-08 18:00", "2026-03-09 04:00"],  # 04:00 UTC is already 9 March locally
        [40.0, 70.0, 99.0],
    )
    observed = pl.DataFrame({
        "entity_id": ["F1"] * 4,
        "period_start": _utc("2026-03-08 04:00", "2026-03-08 08:00", "2026-03-08 09:00", "2026-03-08 12:00"),
        "mean_kw": [500.0, 60.0, 65.0, 400.0],  # 04:00 is the day before; 12:00 is after the issue
    })  # fmt: skip
    out = peak_demand(pl.concat([early, late]), observed, {"F1": 200.0}, DST_DAY, TZ)
    row = out.row(0, named=True)
    assert row["expected_peak_kw"] == 70.0 and row["peak_p90_kw"] == 80.0
    assert row["peak_time"] == dt.datetime(2026, 3, 8, 18, tzinfo=dt.timezone.utc)
    assert row["reserve_margin_pct"] == pytest.approx((200 - 70) / 200 * 100)
    assert row["reserve_margin_p90_pct"] == pytest.approx((200 - 80) / 200 * 100)
    assert out.schema == TABLES["gold_peak_demand"].polars_schema()

    # an observed hour before the issue wins when it is higher, with p90 = observed
    hot = observed.with_columns(
        pl.when(pl.col("mean_kw") == 65.0).then(150.0).otherwise(pl.col("mean_kw")).alias("mean_kw")
    )
    row = peak_demand(late, hot, {"F1": 200.0}, DST_DAY, TZ).row(0, named=True)
    assert (row["expected_peak_kw"], row["peak_p90_kw"]) == (150.0, 150.0)
    assert row["peak_time"] == dt.datetime(2026, 3, 8, 9, tzinfo=dt.timezone.utc)


def test_a_tie_takes_the_earliest_hour_and_capacity_below_peak_is_a_negative_margin():
    fc = _forecast("2026-03-10 04:00", ["2026-03-10 20:00", "2026-03-10 14:00"], [80.0, 80.0])
    empty = pl.DataFrame(schema={"entity_id": pl.Utf8, "period_start": pl.Datetime("us", "UTC"), "mean_kw": pl.Float64})
    row = peak_demand(fc, empty, {"F1": 40.0}, dt.date(2026, 3, 10), TZ).row(0, named=True)
    assert row["peak_time"] == dt.datetime(2026, 3, 10, 14, tzinfo=dt.timezone.utc)
    assert row["reserve_margin_pct"] == pytest.approx(-100.0)


def test_no_forecast_for_the_day_or_no_capacity_is_a_clear_error():
    fc = _forecast("2026-03-10 04:00", ["2026-03-10 20:00"], [80.0])
    empty = pl.DataFrame(schema={"entity_id": pl.Utf8, "period_start": pl.Datetime("us", "UTC"), "mean_kw": pl.Float64})
    with pytest.raises(ValueError, match="no forecast covering local day 2026-03-12"):
        peak_demand(fc, empty, {"F1": 40.0}, dt.date(2026, 3, 12), TZ)
    with pytest.raises(ValueError, match=r"no capacity for \['F1'\]"):
        peak_demand(fc, empty, {"F2": 40.0}, dt.date(2026, 3, 10), TZ)
