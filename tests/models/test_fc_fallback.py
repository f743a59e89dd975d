"""Recoverable bad input falls back to a baseline (flagged); the rest raises."""

from __future__ import annotations

import logging

import pandas as pd
import polars as pl
import pytest

from models.forecast import DAY, DoubleSeasonalHoltWinters, GapError, XGBoostForecaster, forecast_with_fallback


def test_too_little_history_falls_back_to_daily_naive(taylor, caplog):
    hist = taylor.head(48 * 4)  # 4 days: DSHW needs 3 weeks
    with caplog.at_level(logging.WARNING):
        fc, info = forecast_with_fallback(DoubleSeasonalHoltWinters(), hist, DAY)
    assert info["fallback"] and info["model"] == "seasonal_naive_daily"
    assert "InsufficientHistoryError" in info["reason"] and "21 days" in info["reason"]
    assert "falling back" in caplog.text
    assert fc.height == 48 and fc["p50"].is_finite().all()
    assert set(fc["model"]) == {"seasonal_naive_daily"}


def test_missing_weather_falls_back(hourly_load_with_weather):
    hist = hourly_load_with_weather.head(24 * 25)
    fc, info = forecast_with_fallback(
        XGBoostForecaster(DAY, exog=["temp_air_c"], n_estimators=20, tz="America/New_York"), hist, DAY, future_exog=None
    )
    assert info["fallback"] and "MissingExogenousError" in info["reason"]
    assert fc["p50"].is_finite().all()


def test_constant_series_gives_flat_flagged_forecast():
    idx = pd.date_range("2024-01-01", periods=24 * 30, freq="h", tz="UTC")
    hist = pl.DataFrame({"period_start": idx, "mean_kw": [3.5] * len(idx)})
    fc, info = forecast_with_fallback(DoubleSeasonalHoltWinters(), hist, DAY)
    assert info["fallback"] and info["model"] == "constant" and "ConstantSeriesError" in info["reason"]
    assert fc.height == 24 and (fc["p50"] == 3.5).all() and (fc["p10"] == fc["p90"]).all()


def test_long_gap_is_not_papered_over(taylor):
    hist = taylor.head(48 * 25).filter(pl.int_range(pl.len()).is_between(100, 120).not_())
    with pytest.raises(GapError, match="gap of 21"):
        forecast_with_fallback(DoubleSeasonalHoltWinters(), hist, DAY)


def test_short_gap_is_reported(taylor):
    hist = taylor.head(48 * 10).filter(pl.int_range(pl.len()) != 200)
    from models.forecast import SeasonalNaive

    fc, info = forecast_with_fallback(SeasonalNaive(DAY), hist, DAY)
    assert not info["fallback"] and info["interpolated_steps"] == 1
