"""PV training and scoring pieces on the real Greensboro TMY3: fleets per feeder, fleet power
and future clear sky, the hourly-grid check, the hold-out backtest, the bounded persistence
fallback and the feeder-to-system sum."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import polars as pl
import pytest

from models.solar import (
    PVSystem,
    bounded_persistence,
    feeder_pv_systems,
    fleet_clearsky,
    fleet_power,
    regular_weather,
    simulate_power,
    smart_persistence,
    solar_backtest,
    system_total,
)

JUNE = slice("2021-06-01", "2021-06-21")


@pytest.fixture(scope="module")
def fleet(tmy):
    m = tmy.attrs["meta"]
    return [
        PVSystem("a", m["latitude"], m["longitude"], kw_dc=5.0, altitude_m=m["altitude"], feeder_id="F1"),
        PVSystem(
            "b",
            m["latitude"],
            m["longitude"],
            kw_dc=3.0,
            tilt_deg=10,
            azimuth_deg=200,
            altitude_m=m["altitude"],
            feeder_id="F1",
        ),
    ]


@pytest.fixture(scope="module")
def june(tmy) -> pd.DataFrame:
    return tmy.set_index("observation_time", drop=False).loc[JUNE].reset_index(drop=True)


def test_pv_systems_are_grouped_by_feeder():
    ref = pl.DataFrame({
        "meter_id": ["m1", "m2", "m3", "m4"], "has_pv": [True, True, False, True],
        "latitude": [36.0] * 4, "longitude": [-80.0] * 4, "pv_kw_dc": [5.0, 3.0, 0.0, 4.0],
        "pv_tilt_deg": [20.0] * 4, "pv_azimuth_deg": [180.0] * 4, "feeder_id": ["F1", "F2", "F1", "F1"],
    })  # fmt: skip
    fleets = feeder_pv_systems(ref)
    assert {f: [s.system_id for s in ss] for f, ss in fleets.items()} == {"F1": ["m1", "m4"], "F2": ["m2"]}


def test_fleet_power_sums_the_systems(fleet, june):
    one = [simulate_power(s, june) for s in fleet]
    obs = fleet_power(fleet, june)
    np.testing.assert_allclose(obs["ac_kw"], one[0]["ac_kw"] + one[1]["ac_kw"])
    np.testing.assert_allclose(obs["clearsky_ac_kw"], one[0]["clearsky_ac_kw"] + one[1]["clearsky_ac_kw"])
    np.testing.assert_allclose(obs["zenith"], one[0]["zenith"])  # geometry of the first roof
    assert obs["ac_kw"].max() > one[0]["ac_kw"].max()


def test_fleet_clearsky_for_future_hours(fleet, june):
    idx = pd.date_range("2021-06-22 00:00", periods=24, freq="1h", tz="UTC")
    temp = np.full(24, 20.0)
    temp[3] = np.nan  # unknown temperature counts as 20 C
    cs = fleet_clearsky(fleet, idx, temp)
    assert list(cs.columns) == ["zenith", "azimuth", "clearsky_ac_kw", "clearsky_ghi_wm2"] and cs.index.equals(idx)
    assert (cs.loc[cs["zenith"] > 95, "clearsky_ghi_wm2"] == 0).all() and cs["clearsky_ghi_wm2"].max() > 800
    assert (cs.loc[cs["zenith"] > 95, "clearsky_ac_kw"] == 0).all() and cs["clearsky_ac_kw"].max() > 4
    expected = sum(
        simulate_power(
            s,
            pd.DataFrame({"observation_time": idx, "ghi_wm2": 0.0, "dni_wm2": 0.0, "dhi_wm2": 0.0, "temp_air_c": 20.0}),
        )["clearsky_ac_kw"]
        for s in fleet
    )
    np.testing.assert_allclose(cs["clearsky_ac_kw"], expected)
    hot = fleet_clearsky(fleet, idx, np.full(24, 40.0))
    noon = cs["clearsky_ac_kw"].idxmax()
    assert hot.loc[noon, "clearsky_ac_kw"] < cs.loc[noon, "clearsky_ac_kw"]  # hotter cells, less power


def test_regular_weather_names_the_missing_hour_and_the_empty_irradiance(june):
    w = pl.from_pandas(june).with_columns(pl.col("observation_time").cast(pl.Datetime("us", "UTC")))
    shuffled = w.sample(fraction=1.0, shuffle=True, seed=1)
    out = regular_weather(shuffled)
    assert out["observation_time"].is_monotonic_increasing and len(out) == w.height
    hole = w["observation_time"][30]
    with pytest.raises(ValueError, match=re.escape(f"lacks 1 hour(s) in the window, first {pd.Timestamp(hole)}")):
        regular_weather(w.filter(pl.col("observation_time") != hole))
    with pytest.raises(ValueError, match="'dni_wm2' is empty"):
        regular_weather(
            w.with_columns(
                pl.when(pl.col("observation_time") == hole).then(None).otherwise(pl.col("dni_wm2")).alias("dni_wm2")
            )
        )
    with pytest.raises(ValueError, match="no rows"):
        regular_weather(w.clear())


class _Stub:
    """Records what it was fitted on; forecasts p10/p50/p90 = 0.5/1/1.5 x clear sky."""

    def fit(self, obs, nwp=None):
        self.last_seen = obs.index.max()
        return self

    def predict_design(self, d):
        cs = d["cs_t"].to_numpy() * 8.0
        return np.column_stack([0.5 * cs, cs, 1.5 * cs])


def test_solar_backtest_holds_out_everything_after_the_cutoff_and_scores_daylight(fleet, june):
    obs = fleet_power(fleet, june)
    cutoff = obs.index[-1] - pd.Timedelta(days=3) + pd.Timedelta(hours=1)
    stub = _Stub()
    bt, base = solar_backtest(lambda: stub, obs, 8.0, [1, 2, 3], cutoff)
    assert stub.last_seen < cutoff
    assert (bt["origin"] >= cutoff).all() and bt["horizon_h"].unique().sort().to_list() == [1.0, 2.0, 3.0]
    target = bt["period_start"].to_pandas()
    assert (obs.loc[pd.DatetimeIndex(target), "clearsky_ac_kw"].to_numpy() > 0).all()  # daylight targets only
    np.testing.assert_allclose(bt["actual"], obs.loc[pd.DatetimeIndex(target), "ac_kw"].to_numpy())
    assert bt.columns == base.columns == ["origin", "period_start", "horizon_h", "p10", "p50", "p90", "model", "actual"]
    assert set(bt["model"]) == {"solar_xgboost"} and set(base["model"]) == {"smart_persistence"}
    assert (base["p50"] >= 0).all() and base["p10"].equals(base["p90"])
    with pytest.raises(ValueError, match="no daylight targets"):
        solar_backtest(lambda: _Stub(), obs, 8.0, [1], obs.index[-1] + pd.Timedelta(hours=1))


def test_bounded_persistence_stays_within_zero_and_clear_sky(fleet, june):
    obs = fleet_power(fleet, june)
    origin = obs.index[obs.index.hour == 15][-1]  # mid-afternoon in UTC (late morning locally)
    obs = obs.loc[:origin]
    idx = pd.date_range(origin + pd.Timedelta(hours=1), periods=30, freq="1h")
    future = fleet_clearsky(fleet, idx, np.full(30, 25.0))
    fc = bounded_persistence(obs, future, 8.0)
    assert fc.columns == ["period_start", "horizon_h", "p10", "p50", "p90", "model"]
    assert fc["horizon_h"].to_list() == list(np.arange(1.0, 31.0)) and fc["period_start"].to_list() == list(idx)
    assert (fc["p10"] == 0).all() and (fc["p50"] >= 0).all()
    np.testing.assert_allclose(fc["p90"], future["clearsky_ac_kw"])
    night = (future["clearsky_ac_kw"] == 0).to_numpy()
    assert night.any() and (fc["p50"].to_numpy()[night] == 0).all()
    sp = smart_persistence(pd.concat([obs, future]), 8.0, [1]).loc[origin, "h1"]
    assert fc["p50"][0] == pytest.approx(min(sp, future["clearsky_ac_kw"].iloc[0]))


def test_system_total_sums_quantiles_where_every_feeder_forecasts():
    t = pd.date_range("2021-06-22 15:00", periods=2, freq="1h", tz="UTC")
    fc = pl.DataFrame({
        "period_start": pl.Series([t[0], t[1], t[0]]).cast(pl.Datetime("us", "UTC")), "horizon_h": [1.0, 2.0, 1.0],
        "p10": [1.0, 1.0, 2.0], "p50": [2.0, 2.0, 3.0], "p90": [3.0, 3.0, 5.0], "model": ["solar_xgboost"] * 3,
    })  # fmt: skip
    out = system_total(fc, n_feeders=2)
    assert out.height == 1  # the second hour has one feeder only
    assert out.select("p10", "p50", "p90").row(0) == (3.0, 5.0, 8.0)
    assert set(out.columns) == {"period_start", "horizon_h", "p10", "p50", "p90", "model"}
