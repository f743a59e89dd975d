"""Accuracy after the fact: issued forecasts scored once their period passed; drift rule."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import polars as pl
import pytest

from contracts import GOLD_FORECAST_ACCURACY
from models.forecast.accuracy import drift_status, forecast_accuracy, scored_errors

TZ = "America/New_York"


def _issue(issued: pd.Timestamp, entity: str, model: str, p50: np.ndarray, hours: int = 48) -> pl.DataFrame:
    t = pd.date_range(issued, periods=hours, freq="h")
    return pl.DataFrame({
        "level": "feeder", "entity_id": entity, "issued_at": issued, "period_start": t,
        "horizon_h": np.arange(1, hours + 1, dtype=float), "p10": p50 * 0.95, "p50": p50, "p90": p50 * 1.05, "model": model,
    }).with_columns(pl.col("issued_at", "period_start").cast(pl.Datetime("us", "UTC")))  # fmt: skip


@pytest.fixture()
def actuals():
    t = pd.date_range("2026-06-01 04:00", periods=24 * 20, freq="h", tz="UTC")
    return pl.DataFrame({"entity_id": "F001", "period_start": t, "mean_kw": np.full(len(t), 100.0)}).with_columns(
        pl.col("period_start").cast(pl.Datetime("us", "UTC"))
    )


def test_only_passed_periods_are_scored_by_lead_band_day_and_week(actuals):
    issued = pd.Timestamp("2026-06-08 04:00", tz="UTC")  # local midnight (EDT)
    p50 = np.where(np.arange(48) < 24, 102.0, 110.0)  # +2 % the first day, +10 % the second
    fc = pl.concat([_issue(issued, "F001", "xgboost", p50), _issue(issued, "F001", "naive", np.full(48, 100.0))])
    as_of = issued + pd.Timedelta(hours=30)  # 30 of the 48 hours have passed
    e = scored_errors(fc, actuals, as_of)
    assert e.filter(pl.col("model") == "xgboost").height == 30
    acc = forecast_accuracy(fc, actuals, as_of, TZ)
    assert set(acc.columns) | {"date"} == set(GOLD_FORECAST_ACCURACY.column_names)
    day1 = acc.filter(
        (pl.col("period") == "day") & (pl.col("period_date") == dt.date(2026, 6, 8)) & (pl.col("model") == "xgboost")
    )
    by_band = {r["lead_band"]: r for r in day1.iter_rows(named=True)}
    assert by_band["0-6h"]["n"] == 6 and by_band["6-24h"]["n"] == 18
    assert by_band["6-24h"]["mape"] == pytest.approx(2.0) and by_band["6-24h"]["bias_pct"] == pytest.approx(2.0)
    assert by_band["6-24h"]["within_5pct"] == 1.0
    day2 = acc.filter(
        (pl.col("period") == "day") & (pl.col("period_date") == dt.date(2026, 6, 9)) & (pl.col("model") == "xgboost")
    )
    assert (
        day2["n"].sum() == 6
        and day2["mape"].to_list() == pytest.approx([10.0])
        and day2["within_5pct"].to_list() == [0.0]
    )
    assert acc.filter(pl.col("model") == "naive")["mape"].max() == 0.0
    week = acc.filter((pl.col("period") == "week") & (pl.col("model") == "xgboost"))
    assert set(week["period_date"]) == {dt.date(2026, 6, 8)}  # a Monday
    assert week["n"].sum() == 30


def test_drift_when_recent_mape_exceeds_the_multiple(actuals):
    frames = []
    for k in range(10):  # ten daily issues; the last three days the model is 8 % high
        issued = pd.Timestamp("2026-06-05 04:00", tz="UTC") + pd.Timedelta(days=k)
        frames.append(_issue(issued, "F001", "xgboost", np.full(24, 108.0 if k >= 7 else 103.0), hours=24))
    fc = pl.concat(frames)
    as_of = pd.Timestamp("2026-06-15 04:00", tz="UTC")
    e = scored_errors(fc, actuals, as_of)
    d = drift_status(e, "xgboost", backtest_mape=3.0, as_of=as_of, multiple=1.5)
    assert d["n"] == 7 * 24 and d["recent_mape"] == pytest.approx((4 * 3 + 3 * 8) / 7)
    assert d["drifting"] is True
    assert drift_status(e, "xgboost", backtest_mape=3.0, as_of=as_of, multiple=2.0)["drifting"] is False
    assert drift_status(e, "other", backtest_mape=3.0, as_of=as_of)["recent_mape"] is None
    with pytest.raises(ValueError, match="positive"):
        drift_status(e, "xgboost", backtest_mape=0.0, as_of=as_of)


def test_coverage_90_over_forecasts_with_a_90_percent_band(actuals):
    """A calibrated model's p05/p95 band is scored; a model without one (a fallback) gets null,
    not a coverage of 0."""
    issued = pd.Timestamp("2026-06-08 04:00", tz="UTC")
    p50 = np.where(np.arange(48) < 24, 102.0, 115.0)  # the second day's band [103.5, 126.5] misses 100
    banded = _issue(issued, "F001", "xgboost", p50).with_columns(
        (pl.col("p50") * 0.9).alias("p05"), (pl.col("p50") * 1.1).alias("p95")
    )
    fc = pl.concat([banded, _issue(issued, "F001", "naive", np.full(48, 100.0))], how="diagonal_relaxed")
    acc = forecast_accuracy(fc, actuals, issued + pd.Timedelta(hours=48), TZ).filter(pl.col("period") == "day")
    cov = {(r["model"], r["period_date"]): r["coverage_90"] for r in acc.iter_rows(named=True)}
    assert cov[("xgboost", dt.date(2026, 6, 8))] == 1.0 and cov[("xgboost", dt.date(2026, 6, 9))] == 0.0
    assert (
        acc.filter(pl.col("model") == "naive")["coverage_90"].null_count()
        == acc.filter(pl.col("model") == "naive").height
    )
