"""Forecast weather as an input: the latest issue before the origin, no look-ahead, fallback."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.forecast.weather_inputs import asof_issue, weather_for_origin
from simulator.nwp import error_stats, issue_forecasts


@pytest.fixture(scope="module")
def nwp(tmy):
    w = tmy[(tmy["observation_time"] >= "2021-03-01") & (tmy["observation_time"] < "2021-04-01")]
    m = tmy.attrs["meta"]
    return w, issue_forecasts(w, m["latitude"], m["longitude"], m["altitude"], seed=3)


def test_issues_four_a_day_deterministic_and_errors_grow_with_lead(nwp, tmy):
    w, fc = nwp
    m = tmy.attrs["meta"]
    again = issue_forecasts(w, m["latitude"], m["longitude"], m["altitude"], seed=3)
    pd.testing.assert_frame_equal(fc, again)
    other = issue_forecasts(w, m["latitude"], m["longitude"], m["altitude"], seed=4)
    assert not np.allclose(fc["temp_air_c"].head(500), other["temp_air_c"].head(500))
    assert set(pd.to_datetime(fc["issued_at"]).dt.hour) <= {4, 10, 16, 22}
    assert fc["lead_h"].max() >= 48
    assert (fc["valid_at"] > fc["issued_at"]).all()
    s = error_stats(fc, w)
    assert s["lead_1_6h"]["temp_mae_c"] < s["lead_7_24h"]["temp_mae_c"] < s["lead_25_48h"]["temp_mae_c"]
    assert s["lead_1_6h"]["ghi_rmse_pct_daytime_mean"] < s["lead_25_48h"]["ghi_rmse_pct_daytime_mean"]
    assert 1.2 <= s["lead_25_48h"]["temp_mae_c"] <= 2.8  # published day-ahead accuracy, one month
    assert 20 <= s["lead_25_48h"]["ghi_rmse_pct_daytime_mean"] <= 45


def test_latest_issue_before_origin_and_no_look_ahead(nwp):
    w, fc = nwp
    origin = pd.Timestamp("2021-03-10 12:00", tz="UTC")
    valid = pd.date_range(origin, periods=48, freq="h")
    rq = pd.DataFrame({"origin": origin, "valid_at": valid})
    a = asof_issue(fc, rq, ["temp_air_c", "ghi_wm2"])
    assert (a["issued_at"] <= origin).all()
    latest = pd.to_datetime(fc["issued_at"])[pd.to_datetime(fc["issued_at"]) <= origin].max()
    assert (a["issued_at"].head(30) == latest).all()  # the newest issue covers the first day
    # anything issued after the origin (and every observation) may change: the input must not
    spoiled = fc.copy()
    late = pd.to_datetime(spoiled["issued_at"]) > origin
    spoiled.loc[late, ["temp_air_c", "ghi_wm2"]] = 999.0
    pd.testing.assert_frame_equal(a, asof_issue(spoiled, rq, ["temp_air_c", "ghi_wm2"]))
    obs_spoiled = w.copy()
    obs_spoiled.loc[pd.to_datetime(obs_spoiled["observation_time"]) >= origin, "temp_air_c"] = 999.0
    f1, _ = weather_for_origin(fc, w, origin, valid)
    f2, _ = weather_for_origin(spoiled, obs_spoiled, origin, valid)
    pd.testing.assert_frame_equal(f1, f2)


def test_missing_issues_fall_back_to_older_issue_then_persistence(nwp):
    w, fc = nwp
    origin = pd.Timestamp("2021-03-20 05:00", tz="UTC")
    valid = pd.date_range(origin, periods=48, freq="h")
    issued = pd.to_datetime(fc["issued_at"])
    newest = issued[issued <= origin].max()
    dropped = fc[issued != newest]  # the newest issue is lost: the one before still covers 48 h
    got, counts = weather_for_origin(dropped, w, origin, valid)
    assert counts == {"from_forecast": 48, "persisted": 0, "missing": 0}
    assert (pd.to_datetime(got["issued_at"]) < newest).all()
    stale = fc[issued <= origin - pd.Timedelta(hours=30)]  # feed stopped 30 h ago: 54 h issues end early
    got, counts = weather_for_origin(stale, w, origin, valid)
    assert counts["from_forecast"] < 48 and counts["persisted"] == 48 - counts["from_forecast"]
    none, counts = weather_for_origin(fc.iloc[:0], w, origin, valid)  # no feed at all: persistence only
    assert counts == {"from_forecast": 0, "persisted": 48, "missing": 0} and none["issued_at"].isna().all()
    obs = w.set_index(pd.to_datetime(w["observation_time"], utc=True))["temp_air_c"]
    tail = got[got["issued_at"].isna()]
    want = [obs[t - pd.Timedelta(days=((t - origin) // pd.Timedelta(days=1)) + 1)] for t in tail["period_start"]]
    np.testing.assert_allclose(tail["temp_air_c"].to_numpy(), want)
