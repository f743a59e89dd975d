"""Feature transforms: right values, no peeking past their lag."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.forecast.features import (
    Calendar,
    Cyclic,
    FeaturePipeline,
    Lags,
    RollingStats,
    TemperatureFeatures,
    WeatherInteractions,
    default_load_pipeline,
)


def _frame(n=24 * 21):
    idx = pd.date_range("2024-06-20", periods=n, freq="h", tz="UTC")
    return pd.DataFrame(
        {"y": np.arange(n, dtype=float), "temp_air_c": np.linspace(5, 35, n), "ghi_wm2": 100.0}, index=idx
    )


def test_lags_are_same_time_yesterday_and_last_week():
    f = Lags().transform(_frame(), "y")
    assert list(f.columns) == ["lag_24h", "lag_168h"]
    assert f["lag_24h"].iloc[200] == 200 - 24
    assert f["lag_168h"].iloc[200] == 200 - 168
    assert np.isnan(f["lag_168h"].iloc[100])


def test_rolling_stats_do_not_see_inside_the_shift():
    fr = _frame()
    a = RollingStats(shift=pd.Timedelta(hours=24)).transform(fr, "y")
    fr2 = fr.copy()
    fr2.iloc[300 - 23 :, 0] = -1e6  # change everything within 24 h of row 300 and later
    b = RollingStats(shift=pd.Timedelta(hours=24)).transform(fr2, "y")
    assert a.iloc[300].equals(b.iloc[300])
    assert a["roll24h_mean_s24h"].iloc[300] == np.mean(np.arange(300 - 24 - 23, 300 - 24 + 1))


def test_calendar_flags_us_independence_day_in_local_time():
    fr = _frame()
    cal = Calendar(tz="America/New_York", country="US").transform(fr, "y")
    # 2024-07-04 00:00 New York = 04:00 UTC; 03:00 UTC is still 3 July locally
    assert cal.loc["2024-07-04 04:00+00:00", "holiday"] == 1.0
    assert cal.loc["2024-07-04 03:00+00:00", "holiday"] == 0.0
    assert cal.loc["2024-06-22 16:00+00:00", "weekend"] == 1.0  # a Saturday


def test_cyclic_encoding_wraps_midnight():
    fr = _frame()
    c = Cyclic(tz="UTC").transform(fr, "y")
    # 23:00 and 00:00 are neighbours on the circle, 12:00 is opposite
    d_wrap = abs(c["hod_cos1"].iloc[23] - c["hod_cos1"].iloc[24])
    d_noon = abs(c["hod_cos1"].iloc[12] - c["hod_cos1"].iloc[24])
    assert d_wrap < 0.05 < 1.9 < d_noon


def test_degree_hours_and_interactions():
    fr = _frame()
    t = TemperatureFeatures(heat_base_c=15.5, cool_base_c=22.0).transform(fr, "y")
    assert (t["hdd"] * t["cdd"] == 0).all()
    i = np.argmin(np.abs(fr["temp_air_c"].to_numpy() - 30))
    assert np.isclose(t["cdd"].iloc[i], fr["temp_air_c"].iloc[i] - 22)
    w = WeatherInteractions(tz="UTC").transform(fr, "y")
    assert w["temp_x_afternoon"].iloc[13] == fr["temp_air_c"].iloc[13]
    assert w["temp_x_afternoon"].iloc[3] == 0.0


def test_default_pipeline_never_looks_closer_than_the_horizon():
    for h in (24, 36, 72):
        p = default_load_pipeline(pd.Timedelta(hours=h), exog=["temp_air_c"], tz="America/New_York")
        assert p.min_target_lag() >= pd.Timedelta(hours=h)
        cols = p.transform(_frame(), "y").columns
        assert "hdd" in cols and "holiday" in cols and not any(c.startswith("doy") for c in cols)


def test_pipeline_rejects_name_clash():
    import pytest

    with pytest.raises(ValueError, match="clash"):
        FeaturePipeline([Lags(), Lags()]).transform(_frame(), "y")
