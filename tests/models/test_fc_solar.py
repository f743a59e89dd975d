"""Solar on the real Greensboro TMY3 year: physics, persistence, XGBoost skill, ramps, fleet."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

from models.solar import (
    PVSystem,
    SolarXGBForecaster,
    aggregate_fleet,
    design,
    detect_ramps,
    simulate_power,
    smart_persistence,
    systems_from_meters,
)


@pytest.fixture(scope="module")
def system(tmy):
    m = tmy.attrs["meta"]
    return PVSystem(
        "pv1",
        m["latitude"],
        m["longitude"],
        kw_dc=5.0,
        tilt_deg=25,
        azimuth_deg=180,
        altitude_m=m["altitude"],
        feeder_id="F1",
        substation_id="S1",
    )


@pytest.fixture(scope="module")
def power(system, tmy):
    return simulate_power(system, tmy)


def test_pvwatts_physics(power, system):
    assert (power["ac_kw"] >= 0).all()
    assert power["ac_kw"].max() <= system.kw_ac + 1e-9
    night = power["zenith"] > 95
    assert (power.loc[night, "ac_kw"] == 0).all() and (power.loc[night, "clearsky_ac_kw"] == 0).all()
    # the real sky is rarely brighter than Ineichen's clear sky over a day
    daily = power.resample("D").sum()
    assert (daily["ac_kw"] <= daily["clearsky_ac_kw"] * 1.1).mean() > 0.95
    yield_kwh_per_kwp = power["ac_kw"].sum() / system.kw_dc
    assert 1100 < yield_kwh_per_kwp < 1700  # North Carolina: ~1,300-1,500 kWh/kWp/yr


def test_missing_irradiance_is_named(system, tmy):
    bad = tmy.copy()
    bad.loc[100, "ghi_wm2"] = np.nan
    with pytest.raises(ValueError, match="'ghi_wm2' has 1 missing"):
        simulate_power(system, bad)


def test_smart_persistence_is_index_times_clearsky(power, system):
    sp = smart_persistence(power, system.kw_dc, [1, 3])
    t = power.index[4000]  # a day-time hour in June
    assert power.loc[t, "clearsky_ac_kw"] > 1
    k = power.loc[t, "ac_kw"] / power.loc[t, "clearsky_ac_kw"]
    t3 = t + pd.Timedelta(hours=3)
    assert sp.loc[t, "h3"] == pytest.approx(min(k, 1.5) * power.loc[t3, "clearsky_ac_kw"])


def test_xgboost_beats_smart_persistence_out_of_sample(power, system):
    train = power.loc["2021-04-15":"2021-05-31"]
    test = power.loc["2021-06-01":"2021-06-14"]
    m = SolarXGBForecaster(system.kw_dc, horizons=[1, 3], n_estimators=80, max_depth=3, learning_rate=0.1).fit(train)
    d = design(pd.concat([train.iloc[-3:], test]), system.kw_dc, [1, 3])
    d = d[d["y"].notna() & (d["cs_t"] > 0) & (d["origin"] >= test.index[0])]
    q = m.predict_design(d)
    y = d["y"].to_numpy() * system.kw_dc
    sp = d["sp_t"].to_numpy() * system.kw_dc
    rmse_m = np.sqrt(np.mean((q[:, 1] - y) ** 2))
    rmse_sp = np.sqrt(np.mean((sp - y) ** 2))
    assert rmse_m < rmse_sp
    assert 0.5 < np.mean((y >= q[:, 0]) & (y <= q[:, 2])) <= 1.0
    # the one-origin API
    fut = power.loc[test.index[0] : test.index[0] + pd.Timedelta(hours=3)].iloc[1:]
    fc = m.predict(power.loc[: test.index[0]].iloc[-6:], fut)
    assert fc["horizon_h"].to_list() == [1.0, 3.0] and (fc["p10"] <= fc["p90"]).all()


def test_calibrated_band_covers_closer_to_80_percent_with_the_same_median(power, system):
    """Conformalised quantiles: raw quantile boosters are too narrow out of sample; the band
    calibrated on the latest training origins covers nearer 80 % on later data, p50 unchanged."""
    train = power.loc["2021-01-01":"2021-06-30"]
    test = power.loc["2021-07-01":"2021-08-31"]
    kw = dict(horizons=[1, 4])  # the production hyper-parameters (measured: 0.70 raw -> 0.80 calibrated)
    raw = SolarXGBForecaster(system.kw_dc, calibration_share=0.0, **kw).fit(train)
    cal = SolarXGBForecaster(system.kw_dc, **kw).fit(train)
    assert cal.calibrator_ is not None and raw.calibrator_ is None
    assert {k for _, k in cal.calibrator_.widen_} == {0, 3}  # one width per lead (buckets of 1 h)
    d = design(pd.concat([train.iloc[-5:], test]), system.kw_dc, [1, 4])
    d = d[d["y"].notna() & (d["cs_t"] > 0) & (d["origin"] >= test.index[0])]
    y = d["y"].to_numpy() * system.kw_dc
    qr, qc = raw.predict_design(d), cal.predict_design(d)
    np.testing.assert_allclose(qc[:, 1], qr[:, 1])
    cov = lambda q: float(np.mean((y >= q[:, 0]) & (y <= q[:, 2])))  # noqa: E731
    assert abs(cov(qc) - 0.8) < abs(cov(qr) - 0.8)
    # the 90 % band nests the 80 % one and covers more; widths follow the sun (clear-sky scale):
    # the band at low sun is narrower than at high sun, where one absolute width would share them
    b = cal.predict_bands(d)
    assert (b["p05"] <= b["p10"]).all() and (b["p95"] >= b["p90"]).all()
    assert float(np.mean((y >= b["p05"]) & (y <= b["p95"]))) > cov(qc)
    width = b["p95"] - b["p05"]
    cs = d["cs_t"].to_numpy()
    low, high = (cs > 0.05) & (cs < 0.2), cs > 0.6
    assert low.sum() > 50 and high.sum() > 50
    assert np.median(width[low]) < 0.5 * np.median(width[high])


def test_ramp_detection_on_a_known_profile():
    idx = pd.date_range("2024-06-01", periods=12, freq="h", tz="UTC")
    p = pd.Series([0, 0, 1, 4, 4.2, 4.1, 4.0, 1.0, 0.8, 0.9, 0.9, 0.9], index=idx)
    ev = detect_ramps(p, threshold=2.5, window=pd.Timedelta(hours=2))
    assert ev["direction"].to_list() == ["up", "down"]
    up, down = ev.row(0, named=True), ev.row(1, named=True)
    assert up["change"] >= 2.5 and down["change"] <= -2.5
    # an event runs from the last level before the change to the extreme reached within it
    assert (up["start"], up["end"]) == (idx[1], idx[4])
    assert (down["start"], down["end"]) == (idx[5], idx[8])
    assert up["change"] == pytest.approx(4.2) and down["change"] == pytest.approx(0.8 - 4.1)
    assert detect_ramps(p, threshold=10, window=pd.Timedelta(hours=2)).height == 0
    with pytest.raises(ValueError, match="threshold"):
        detect_ramps(p, threshold=0, window=pd.Timedelta(hours=2))


def test_fleet_aggregation_to_feeder():
    systems = [
        PVSystem("a", 36, -80, 5, feeder_id="F1", substation_id="S1"),
        PVSystem("b", 36, -80, 3, feeder_id="F1", substation_id="S1"),
        PVSystem("c", 36, -80, 4, feeder_id="F2", substation_id="S1"),
    ]
    t = pd.Timestamp("2024-06-01 15:00", tz="UTC")
    fc = pl.DataFrame(
        {
            "system_id": ["a", "b", "c"],
            "period_start": [t] * 3,
            "horizon_h": [1.0] * 3,
            "p10": [1.0, 0.5, 2.0],
            "p50": [2.0, 1.0, 3.0],
            "p90": [3.0, 1.5, 3.5],
        }
    )
    f = aggregate_fleet(fc, systems, level="feeder")
    f1 = f.filter(pl.col("entity_id") == "F1").row(0, named=True)
    assert (f1["p10"], f1["p50"], f1["p90"], f1["n_systems"], f1["capacity_kw"]) == (1.5, 3.0, 4.5, 2, 8.0)
    s = aggregate_fleet(fc, systems, level="substation", independent=True).row(0, named=True)
    assert s["p50"] == 6.0 and s["p90"] - s["p50"] < 1.0 + 0.5 + 0.5  # narrower than comonotone
    with pytest.raises(ValueError, match="unknown system"):
        aggregate_fleet(fc.with_columns(pl.lit("zz").alias("system_id")), systems)


def test_systems_from_ref_meters_and_validation():
    ref = pl.DataFrame(
        {
            "meter_id": ["m1", "m2"],
            "has_pv": [True, False],
            "latitude": [36.0, 36.1],
            "longitude": [-79.9, -79.8],
            "pv_kw_dc": [6.0, 0.0],
            "pv_tilt_deg": [20.0, 0.0],
            "pv_azimuth_deg": [190.0, 0.0],
            "feeder_id": ["F1", "F1"],
            "substation_id": ["S1", "S1"],
        }
    )
    (s,) = systems_from_meters(ref)
    assert s.system_id == "m1" and s.kw_dc == 6.0 and s.feeder_id == "F1"
    with pytest.raises(ValueError, match="kw_dc"):
        PVSystem("bad", 36, -80, kw_dc=0)
    with pytest.raises(ValueError, match="lacks"):
        systems_from_meters(ref.drop("pv_kw_dc"))


def test_design_features_use_nothing_after_the_origin(power, system):
    """Scramble every observation after the origin: no origin-side feature may change
    (k_tgt24 reads the target's hour *yesterday*, dk1/k_min3/... read the last hours)."""
    obs = power.loc["2021-06-01":"2021-06-04"].copy()
    origin = pd.Timestamp("2021-06-03 15:00", tz="UTC")
    later = obs.index > origin
    scrambled = obs.copy()
    scrambled.loc[later, ["ac_kw", "ghi_wm2"]] = scrambled.loc[later, ["ac_kw", "ghi_wm2"]].to_numpy()[::-1] * 0.3
    H = [1, 3, 6]
    a = design(obs, system.kw_dc, H).set_index(["origin", "lead_h"])
    b = design(scrambled, system.kw_dc, H).set_index(["origin", "lead_h"])
    cols = [c for c in SolarXGBForecaster.FEATURES if c != "lead_h"]
    row_a, row_b = a.loc[origin, cols], b.loc[origin, cols]
    pd.testing.assert_frame_equal(row_a, row_b)
    assert not a.loc[origin, "y"].equals(b.loc[origin, "y"])  # the scramble did reach the targets
    from models.solar.forecast import clearsky_index

    k = clearsky_index(obs["ac_kw"], obs["clearsky_ac_kw"], system.kw_dc)
    i = obs.index.get_loc(origin)
    assert a.loc[(origin, 3.0), "k_tgt24"] == pytest.approx(k[i - 21])


def test_one_booster_per_lead_routes_rows_by_lead(power, system):
    from models.solar.forecast import PerLeadBoosters

    train = power.loc["2021-04-15":"2021-05-31"]
    m = SolarXGBForecaster(
        system.kw_dc, horizons=[1, 3], n_estimators=40, max_depth=3, learning_rate=0.1, calibration_share=0.0
    ).fit(train)
    assert isinstance(m.model, PerLeadBoosters) and list(m.model.boosters) == [1, 3]
    # the feature-importance picture reads model.model.feature_importances_: one value per column
    imp = m.model.feature_importances_
    assert imp.shape == (len(m._columns),) and np.isfinite(imp).all() and imp.sum() > 0
    d = design(power.loc["2021-06-01":"2021-06-03"], system.kw_dc, [1, 3])
    d = d[d["y"].notna() & (d["cs_t"] > 0)].reset_index(drop=True)
    q = m.predict_design(d)
    # lead-3 rows come from the lead-3 booster and nothing else
    r3 = (d["lead_h"] == 3).to_numpy()
    own = m.model.boosters[3].predict(d.loc[r3, m._columns]).reshape(-1, 3) + d.loc[r3, "sp_t"].to_numpy()[:, None]
    own = np.sort(
        np.minimum(
            np.clip(own * system.kw_dc, 0, None), 1.5 * d.loc[r3, "cs_t"].to_numpy()[:, None] * system.kw_dc + 1e-9
        ),
        axis=1,
    )
    np.testing.assert_allclose(q[r3], own, rtol=1e-6, atol=1e-9)
    other = m.model.boosters[1].predict(d.loc[r3, m._columns]).reshape(-1, 3)[:, 1] + d.loc[r3, "sp_t"].to_numpy()
    assert not np.allclose(q[r3, 1], np.clip(other * system.kw_dc, 0, None))
    with pytest.raises(ValueError, match="no booster for lead"):
        m.predict_design(design(power.loc["2021-06-01":"2021-06-02"], system.kw_dc, [2]).dropna(subset=["y"]))
    # the pooled booster stays available
    pooled = SolarXGBForecaster(system.kw_dc, horizons=[1, 3], n_estimators=40, per_lead=False).fit(train)
    assert not isinstance(pooled.model, PerLeadBoosters)
    assert pooled.predict_design(d).shape == (len(d), 3)


def test_nwp_features_use_only_issues_published_by_the_end_of_the_origin_hour(power, system, tmy):
    """Forecast-weather features read the latest issue published by origin + 1 h (the end of the
    last observed hour): spoiling every later issue changes nothing at that origin."""
    from models.solar.forecast import NWP_FEATURES
    from simulator.nwp import issue_forecasts

    m = tmy.attrs["meta"]
    w = tmy[(tmy["observation_time"] >= "2021-05-25") & (tmy["observation_time"] < "2021-06-10")]
    nwp = issue_forecasts(w, m["latitude"], m["longitude"], m["altitude"], seed=2)
    obs = power.loc["2021-06-01":"2021-06-04"]
    origin = pd.Timestamp("2021-06-03 15:00", tz="UTC")
    spoiled = nwp.copy()
    late = pd.to_datetime(spoiled["issued_at"]) > origin + pd.Timedelta(hours=1)
    spoiled.loc[late, ["ghi_wm2", "temp_air_c"]] = 0.0
    H = [1, 3, 6]
    a = design(obs, system.kw_dc, H, nwp).set_index(["origin", "lead_h"])
    b = design(obs, system.kw_dc, H, spoiled).set_index(["origin", "lead_h"])
    cols = list(NWP_FEATURES)
    pd.testing.assert_frame_equal(a.loc[origin, cols], b.loc[origin, cols])
    assert a.loc[origin, "nwp_age_h"].between(0, 7).all()  # an issue every 6 h
    assert a.loc[origin, "nwp_k_t"].notna().all()
    later = origin + pd.Timedelta(hours=8)
    assert not a.loc[later, cols].equals(b.loc[later, cols])  # the spoiled issues do reach later origins


@pytest.mark.slow
def test_solar_pipeline_trains_with_forecast_weather_and_scores_without_look_ahead(power, system, tmy):
    """models.solar.pipeline: with NWP issues the candidate uses the forecast-weather features; scoring
    reads only the issues published by the end of the origin hour (spoiling later ones changes nothing),
    counts where each hour came from, and falls back to bounded persistence without a usable champion."""
    from models.solar.pipeline import score_solar_entity, train_solar_entity
    from simulator.nwp import issue_forecasts

    m = tmy.attrs["meta"]
    w = tmy[(tmy["observation_time"] >= "2021-04-25") & (tmy["observation_time"] < "2021-06-12")]
    nwp = issue_forecasts(w, m["latitude"], m["longitude"], m["altitude"], seed=5)
    obs = power.loc["2021-05-08":"2021-05-24"]
    H = [1, 3, 6]
    make = lambda: SolarXGBForecaster(system.kw_dc, horizons=H, n_estimators=30, max_depth=3)  # noqa: E731
    end = obs.index[-1] + pd.Timedelta(hours=1)
    t = train_solar_entity("F1", obs, make=make, capacity_kw=system.kw_dc, horizons=H, window_end=end,
                           cutoff=end - pd.Timedelta(days=2), weather_issues=nwp)  # fmt: skip
    assert t.params["forecast_weather"] and any(c.startswith("nwp_") for c in t.model._columns)
    assert t.metric == "pinball" and np.isfinite(t.metrics["pinball"])
    assert "smart_persistence" in t.report["scores"]["model"].to_list()

    origin = pd.Timestamp("2021-05-26 15:00", tz="UTC")
    hist = power.loc[:origin].iloc[-30:]
    future = power.loc[origin:].iloc[1:7][["clearsky_ac_kw", "zenith", "azimuth", "clearsky_ghi_wm2"]]
    champ = lambda: (t.model, "4")  # noqa: E731
    a = score_solar_entity(champ, hist, future, system.kw_dc, 6, weather_issues=nwp)
    assert a.version == "4" and a.reason is None and a.forecast.height == 3  # leads 1, 3, 6
    assert a.weather["from_latest_issue"] >= 5 and a.weather["missing"] == 0  # the newest starts an hour after it
    assert a.weather["from_latest_issue"] + a.weather["from_older_issue"] == 6 and 0 <= a.weather["issue_age_h"] <= 7
    spoiled = nwp.copy()
    spoiled.loc[pd.to_datetime(spoiled["issued_at"]) > origin + pd.Timedelta(hours=1), ["ghi_wm2", "temp_air_c"]] = 0.0
    b = score_solar_entity(champ, hist, future, system.kw_dc, 6, weather_issues=spoiled)
    assert a.forecast.equals(b.forecast)
    none = score_solar_entity(champ, hist, future, system.kw_dc, 6, weather_issues=None)
    assert none.version == "4" and none.weather["missing"] == 6  # the boosters route the missing features

    def gone():
        raise LookupError("no champion")

    fb = score_solar_entity(gone, hist, future, system.kw_dc, 6)
    assert fb.version == "fallback" and set(fb.forecast["model"]) == {"smart_persistence"}
    assert (fb.forecast["p10"] == 0).all() and (fb.forecast["p90"] >= fb.forecast["p50"]).all()
