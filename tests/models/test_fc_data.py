"""Bad input is rejected with a message naming what is wrong (or filled and reported)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

from models.forecast import (
    WEEK,
    ConstantSeriesError,
    ForecastInputError,
    GapError,
    InsufficientHistoryError,
    MissingExogenousError,
    SeasonalNaive,
    prepare,
)


def _hourly(n=24 * 10, start="2024-03-01", tz="UTC"):
    idx = pd.date_range(start, periods=n, freq="h", tz=tz)
    y = 100 + 10 * np.sin(np.arange(n) * 2 * np.pi / 24)
    return pd.DataFrame({"period_start": idx, "mean_kw": y, "temp_air_c": 10 + np.arange(n) % 7})


def test_polars_and_pandas_give_the_same_series():
    df = _hourly()
    a = prepare(df)
    b = prepare(pl.from_pandas(df))
    assert a.freq == pd.Timedelta(hours=1) and a.y.equals(b.y)
    assert str(a.y.index.tz) == "UTC"


def test_missing_target_column_is_named():
    with pytest.raises(ForecastInputError, match=r"lacks column\(s\) \['energy_kwh'\]"):
        prepare(_hourly(), target="energy_kwh")


def test_naive_timestamps_rejected():
    df = _hourly()
    df["period_start"] = df["period_start"].dt.tz_localize(None)
    with pytest.raises(ForecastInputError, match="naive timestamps"):
        prepare(df)


def test_duplicate_timestamp_named():
    df = _hourly()
    df = pd.concat([df, df.iloc[[5]]])
    with pytest.raises(ForecastInputError, match="duplicate timestamp.*2024-03-01 05:00"):
        prepare(df)


def test_short_gap_is_interpolated_and_reported():
    df = _hourly().drop(index=[30, 31])
    s = prepare(df, max_fill_steps=2)
    assert [t.hour for t in s.filled] == [6, 7]
    assert np.isfinite(s.y).all() and len(s.y) == 240


def test_long_gap_raises_with_first_missing_timestamp():
    df = _hourly().drop(index=range(30, 36))
    with pytest.raises(GapError, match=r"gap of 6 consecutive.*first missing 2024-03-02 06:00"):
        prepare(df, max_fill_steps=2)


def test_nan_target_counts_as_gap():
    df = _hourly()
    df.loc[50:55, "mean_kw"] = np.nan
    with pytest.raises(GapError):
        prepare(df)


def test_constant_series_rejected():
    df = _hourly()
    df["mean_kw"] = 42.0
    with pytest.raises(ConstantSeriesError, match="constant"):
        prepare(df)


def test_missing_weather_value_named():
    df = _hourly()
    df.loc[77, "temp_air_c"] = np.nan
    with pytest.raises(MissingExogenousError, match=r"'temp_air_c' has 1 missing.*2024-03-04 05:00"):
        prepare(df, exog=["temp_air_c"])


def test_missing_weather_column_named():
    with pytest.raises(MissingExogenousError, match="cloud_cover"):
        prepare(_hourly(), exog=["cloud_cover"])


def test_too_little_history_for_weekly_model():
    with pytest.raises(InsufficientHistoryError, match="at least 14 days"):
        SeasonalNaive(WEEK).fit(_hourly(n=24 * 10))


def test_off_grid_timestamp_named():
    df = _hourly()
    df.loc[3, "period_start"] = df.loc[3, "period_start"] + pd.Timedelta(minutes=7)
    with pytest.raises(ForecastInputError, match="not on the"):
        prepare(df)
