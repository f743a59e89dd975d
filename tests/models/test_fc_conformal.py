"""Calibrated intervals (models.forecast.conformal): nominal coverage on series with known noise,
and no look-ahead in the calibration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

from models.forecast import DAY, SeasonalNaive, rolling_origin
from models.forecast.conformal import (
    ConformalForecaster,
    IntervalCalibrator,
    conformal_quantile,
    periodic_conformal,
    rolling_conformal,
)
from models.forecast.metrics import coverage_interval


def coverage(a, lo, hi) -> float:
    a, lo, hi = (np.asarray(v, float) for v in (a, lo, hi))
    return float(np.mean((a >= lo) & (a <= hi)))


def test_conformal_quantile_is_the_finite_sample_rank():
    s = np.arange(1.0, 11.0)  # n = 10: ceil(11 * 0.8) = 9th smallest
    assert conformal_quantile(s, 0.8) == 9.0
    assert conformal_quantile(s, 0.95) == 10.0  # rank 11 > n: the largest
    assert np.isnan(conformal_quantile(np.array([np.nan]), 0.8))


def heteroscedastic(n_per_lead: int, rng: np.random.Generator):
    """A model whose band is far too narrow, with noise growing 4x over 24 leads (known sigma)."""
    lead = np.tile(np.arange(1, 25, dtype=float), n_per_lead)
    sigma = 1.0 + 3.0 * (lead - 1) / 23
    p50 = 100 + 10 * np.sin(lead)
    y = p50 + rng.normal(0, sigma)
    half = 0.3 * 1.2816 * sigma  # 30 % of the true 80 % half-width
    return y, p50 - half, p50, p50 + half, lead


def test_calibrated_bands_hit_nominal_on_known_noise_per_lead_bucket():
    rng = np.random.default_rng(0)
    cal = heteroscedastic(150, rng)  # 150 origins x 24 leads
    new = heteroscedastic(2000, rng)
    c = IntervalCalibrator(bucket_hours=6, scale="none").fit(*cal)
    y, lo, md, hi, lead = new
    assert coverage(y, lo, hi) < 0.3  # raw band: far from nominal
    b = c.apply(lo, md, hi, lead)
    assert abs(coverage(y, b["p10"], b["p90"]) - 0.8) < 0.02
    assert abs(coverage(y, b["p05"], b["p95"]) - 0.9) < 0.02
    for k in range(4):  # each lead bucket separately, not only on average
        m = (lead > 6 * k) & (lead <= 6 * (k + 1))
        assert abs(coverage(y[m], b["p10"][m], b["p90"][m]) - 0.8) < 0.03
        assert abs(coverage(y[m], b["p05"][m], b["p95"][m]) - 0.9) < 0.03
    assert (b["p05"] <= b["p10"]).all() and (b["p10"] <= md).all() and (md <= b["p90"]).all()
    assert (b["p90"] <= b["p95"]).all()


def test_relative_scale_gives_level_proportional_widths():
    """Multiplicative noise (5 % sd) on levels 10..1000: one pooled relative width covers 80 %
    at every level, where an absolute width would be far off at both ends."""
    rng = np.random.default_rng(1)

    def draw(n):
        p50 = rng.uniform(10, 1000, n)
        return p50 * (1 + rng.normal(0, 0.05, n)), p50, p50, p50, np.ones(n)

    rel = IntervalCalibrator(bucket_hours=None, scale="level").fit(*draw(3000))
    ab = IntervalCalibrator(bucket_hours=None, scale="none").fit(*draw(3000))
    y, lo, md, hi, lead = draw(20000)
    small, large = md < 100, md > 800
    br, ba = rel.apply(lo, md, hi, lead), ab.apply(lo, md, hi, lead)
    for m in (small, large):
        assert abs(coverage(y[m], br["p10"][m], br["p90"][m]) - 0.8) < 0.03
    assert coverage(y[small], ba["p10"][small], ba["p90"][small]) > 0.95
    assert coverage(y[large], ba["p10"][large], ba["p90"][large]) < 0.65


def noisy_daily(days: int = 110, sd: float = 3.0, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    t = pd.date_range("2026-01-01", periods=24 * days, freq="1h", tz="UTC")
    y = 100 + 20 * np.sin(2 * np.pi * t.hour / 24) + rng.normal(0, sd, len(t))
    return pl.DataFrame({"period_start": t, "mean_kw": y})


@pytest.fixture(scope="module")
def naive_backtest() -> tuple[pl.DataFrame, list[pd.Timestamp]]:
    df = noisy_daily()
    origins = list(pd.date_range("2026-01-05", periods=100, freq="D", tz="UTC"))
    return rolling_origin(lambda: SeasonalNaive(DAY), df, origins, 24, refit_every=1), origins


def test_rolling_conformal_hits_nominal_on_a_real_backtest(naive_backtest):
    """Seasonal naive on a daily cycle + Gaussian noise (error = difference of two noises):
    calibrated on the 28 origins before each one, 80 evaluation origins x 24 h."""
    bt, origins = naive_backtest
    ev = origins[20:]
    cal = rolling_conformal(bt, ev, window_origins=28, min_origins=7, bucket_hours=6, scale="none")
    assert cal["origin"].n_unique() == len(ev)
    a = cal["actual"]
    assert abs(coverage(a, cal["p10"], cal["p90"]) - 0.8) < 0.03
    assert abs(coverage(a, cal["p05"], cal["p95"]) - 0.9) < 0.03


def test_rolling_conformal_uses_nothing_known_only_after_the_origin(naive_backtest):
    """The band issued at origin o is the same whatever happens at or after o (also in rows of
    earlier forecasts whose target hours run past o); changing an actual before o does change it."""
    bt, origins = naive_backtest
    o = origins[40]
    o_pl = pl.lit(o).cast(pl.Datetime("us", "UTC"))
    base = rolling_conformal(bt, [o], min_origins=7, bucket_hours=6, scale="none")
    future = bt.with_columns(
        pl.when(pl.col("period_start") >= o_pl).then(pl.col("actual") * 50).otherwise(pl.col("actual")).alias("actual")
    )
    after = rolling_conformal(future, [o], min_origins=7, bucket_hours=6, scale="none")
    assert np.allclose(base["p10"], after["p10"]) and np.allclose(base["p95"], after["p95"])
    # a big miss inside the calibration window (the day before o) moves the band
    past = bt.with_columns(
        pl.when((pl.col("period_start") < o_pl) & (pl.col("origin") < o_pl))
        .then(pl.col("actual") * 3)
        .otherwise(pl.col("actual"))
        .alias("actual")
    )
    moved = rolling_conformal(past, [o], min_origins=7, bucket_hours=6, scale="none")
    assert not np.allclose(base["p90"], moved["p90"])


def test_conformal_forecaster_calibrates_inside_its_history_and_covers():
    """The production wrapper: calibration origins all lie inside the training history, the
    bands nest, and over 40 rolling origins the 80 % / 90 % bands cover near nominal."""
    df = noisy_daily(days=90, seed=3)
    make = lambda: ConformalForecaster(  # noqa: E731
        lambda: SeasonalNaive(DAY), pd.Timedelta(hours=24), cal_days=21, bucket_hours=None, scale="none"
    )
    m = make().fit(df.head(24 * 40))
    assert m.calibrator is not None and m.calibrator.n_ == 21 * 24
    fc = m.predict(24)
    assert {"p05", "p10", "p50", "p90", "p95"} <= set(fc.columns)
    assert (fc["p05"] <= fc["p10"]).all() and (fc["p90"] <= fc["p95"]).all()
    origins = list(pd.date_range("2026-02-20", periods=40, freq="D", tz="UTC"))
    bt = rolling_origin(make, df, origins, 24, refit_every=7)
    assert abs(coverage(bt["actual"], bt["p10"], bt["p90"]) - 0.8) < 0.04


def test_conformal_forecaster_without_enough_history_keeps_the_raw_band():
    df = noisy_daily(days=10, seed=4)  # room for 7 origins, 14 wanted
    raw = SeasonalNaive(DAY).fit(df).predict(24)
    m = ConformalForecaster(lambda: SeasonalNaive(DAY), pd.Timedelta(hours=24), cal_days=14, min_cal_days=14).fit(df)
    fc = m.predict(24)
    assert m.calibrator is None
    assert np.allclose(fc["p10"], raw["p10"]) and fc["p05"].null_count() == 24


def test_conformal_forecaster_calibrates_with_persisted_weather_known_at_each_origin():
    """Calibration origins see the weather a scoring run would have without a forecast feed:
    each hour's value from the same hour 1-3 days before, only from hours before the origin."""
    df = noisy_daily(days=30, seed=5).with_row_index("i").with_columns(pl.col("i").cast(pl.Float64).alias("temp_air_c"))
    pdf = df.drop("i").to_pandas()
    m = ConformalForecaster(lambda: SeasonalNaive(DAY), pd.Timedelta(hours=24))
    m.exog = ("temp_air_c",)  # as for a weather-driven model
    fx = m._persisted(pdf, pd.to_datetime(pdf["period_start"], utc=True))
    origin = pd.Timestamp("2026-01-20", tz="UTC")
    idx = pd.date_range(origin, periods=48, freq="1h")
    got = fx(origin, idx)["temp_air_c"].to_numpy()
    first = pd.Timestamp("2026-01-01", tz="UTC")
    hours_from_start = ((idx - first) / pd.Timedelta(hours=1)).to_numpy()
    # temp_air_c is the row number: the value used for each hour is its own row 24 h (for the
    # second day 48 h) earlier, always a row before the origin
    expected = hours_from_start - np.where(idx < origin + pd.Timedelta(days=1), 24, 48)
    np.testing.assert_array_equal(got, expected)
    assert got.max() < (origin - first) / pd.Timedelta(hours=1)


def hourly_origin_frame(days: int = 40, seed: int = 6) -> pl.DataFrame:
    """Hourly origins, leads 1/3/6 h, a level-proportional noise (sd 20 % of the level), a band
    far too narrow: the shape of the PV backtest."""
    rng = np.random.default_rng(seed)
    origins = pd.date_range("2021-03-01", periods=24 * days, freq="1h", tz="UTC")
    parts = []
    for h in (1, 3, 6):
        level = 1 + np.sin(2 * np.pi * (origins.hour + h) / 24) ** 2
        y = level * (1 + rng.normal(0, 0.2, len(origins)))
        parts.append(
            pl.DataFrame(
                {
                    "model": "m",
                    "origin": origins,
                    "period_start": origins + pd.Timedelta(hours=h),
                    "horizon_h": float(h),
                    "actual": y,
                    "p10": level * 0.98,
                    "p50": level,
                    "p90": level * 1.02,
                    "scale": level,
                }
            )  # fmt: skip
        )
    return pl.concat(parts)


def test_periodic_conformal_hits_nominal_with_daily_refresh():
    bt = hourly_origin_frame()
    r = periodic_conformal(bt, scale_col="scale", min_rows=200, bucket_hours=1, min_scores=30)
    assert r.height == bt.height
    ok = r.filter(pl.col("calibrated"))
    # 200 realised rows (3 leads x 24 origins a day) exist from the 4th day on
    assert r.filter(~pl.col("calibrated"))["origin"].max() < pd.Timestamp("2021-03-04", tz="UTC")
    assert abs(coverage(ok["actual"], ok["p10"], ok["p90"]) - 0.8) < 0.02
    assert abs(coverage(ok["actual"], ok["p05"], ok["p95"]) - 0.9) < 0.02


def test_periodic_conformal_uses_nothing_realised_after_the_refresh():
    bt = hourly_origin_frame(days=20)
    day = pd.Timestamp("2021-03-12", tz="UTC")
    d0 = pl.lit(day).cast(pl.Datetime("us", "UTC"))
    on_day = (pl.col("origin") >= d0) & (pl.col("origin") < d0 + pd.Timedelta(days=1))
    kw = dict(scale_col="scale", min_rows=200, bucket_hours=1, min_scores=30)
    base = periodic_conformal(bt, **kw).filter(on_day).sort("origin", "horizon_h")
    # targets ending after midnight (also of origins the day before) are not known at the refresh
    later = bt.with_columns(
        pl.when(pl.col("period_start") + pd.Timedelta(hours=1) > d0)
        .then(pl.col("actual") * 10)
        .otherwise(pl.col("actual"))
        .alias("actual")
    )
    same = periodic_conformal(later, **kw).filter(on_day).sort("origin", "horizon_h")
    assert np.allclose(base["p90"], same["p90"]) and np.allclose(base["p05"], same["p05"])
    earlier = bt.with_columns(
        pl.when(pl.col("period_start") < d0).then(pl.col("actual") * 3).otherwise(pl.col("actual")).alias("actual")
    )
    moved = periodic_conformal(earlier, **kw).filter(on_day).sort("origin", "horizon_h")
    assert not np.allclose(base["p90"], moved["p90"])


def _origin_frame(hits: np.ndarray) -> pl.DataFrame:
    """Rows (origin, actual, p10, p90) with ``hits[i, j]`` saying whether origin i's lead j is covered."""
    n_o, n_l = hits.shape
    origins = np.repeat(pd.date_range("2026-01-01", periods=n_o, freq="D", tz="UTC"), n_l)
    return pl.DataFrame({"origin": origins, "actual": np.where(hits.ravel(), 0.0, 2.0), "p10": -1.0, "p90": 1.0})


def test_coverage_interval_is_as_wide_as_the_origins_make_it():
    """Independent rows: the interval is the binomial one over the rows. Rows of one origin that all
    hit or all miss together: the data is worth one row per origin and the interval is far wider."""
    rng = np.random.default_rng(0)
    indep = coverage_interval(_origin_frame(rng.random((60, 24)) < 0.8))
    together = coverage_interval(_origin_frame(np.repeat(rng.random((60, 1)) < 0.8, 24, axis=1)))
    for r in (indep, together):
        assert r["origins"] == 60 and r["rows"] == 1440 and r["ci"][0] < r["coverage"] < r["ci"][1]
    assert 0.6 < indep["effective_rows"] / 1440 < 1.6
    assert 0.6 < together["effective_rows"] / 60 < 1.6
    binomial = 2 * 1.96 * np.sqrt(0.8 * 0.2 / 1440)
    assert abs((indep["ci"][1] - indep["ci"][0]) / binomial - 1) < 0.25
    assert (together["ci"][1] - together["ci"][0]) > 4 * (indep["ci"][1] - indep["ci"][0])
    with pytest.raises(ValueError, match="block"):
        coverage_interval(_origin_frame(np.ones((5, 24), bool)), block=6)


@pytest.fixture(scope="module")
def weather_driven_feeder(tmy):
    """A feeder whose load follows real weather (Greensboro TMY, Jun - Sep: 40 kW per degree above
    18 C, a daily shape, 8 kW noise) and the simulator's NWP issues of that weather (4 a day to
    54 h, errors growing with lead, a bias, missing issues: ``simulator.nwp``)."""
    from simulator.nwp import issue_forecasts

    meta = tmy.attrs["meta"]
    w = tmy[(tmy["observation_time"] >= pd.Timestamp("2021-06-01", tz="UTC"))
            & (tmy["observation_time"] < pd.Timestamp("2021-10-01", tz="UTC"))].reset_index(drop=True)  # fmt: skip
    issues = issue_forecasts(w, meta["latitude"], meta["longitude"], meta["altitude"], seed=3)
    t = pd.DatetimeIndex(w["observation_time"]).as_unit("us")
    temp = w["temp_air_c"].to_numpy(float)
    local_hour = (t.hour - 5) % 24
    rng = np.random.default_rng(0)
    y = 400 + 40 * np.maximum(temp - 18, 0) + 60 * np.sin(2 * np.pi * (local_hour - 9) / 24) + rng.normal(0, 8, len(t))
    load = pl.DataFrame({"period_start": t, "mean_kw": y, "temp_air_c": temp})
    return load, issues, pl.from_pandas(w[["observation_time", "temp_air_c"]])


def test_production_bands_calibrated_on_the_nwp_feed_cover_nominal_on_held_out_origins(weather_driven_feeder):
    """The production path (factory's ConformalForecaster -> score_load_entity with the NWP feed):
    calibrated on backtests that see the NWP issues as known at each calibration origin, the bands
    cover their nominal share on 21 later origins it never saw (within the block-bootstrap 95 %
    interval of the coverage); calibrated on persisted weather (the session-7 mismatch: scoring reads
    the better NWP feed), they are far too wide."""
    from models.forecast.factory import make_load_forecaster
    from models.forecast.pipeline import score_load_entity
    from models.forecast.weather_inputs import exog_as_known_at

    load, issues, observed = weather_driven_feeder
    h24, first = pd.Timedelta(hours=24), pd.Timestamp("2021-08-20 04:00", tz="UTC")  # local midnight
    train = load.filter(pl.col("period_start") < first)
    res = {}
    for kind, feed in (("nwp", issues), ("persisted", None)):
        fx = exog_as_known_at(feed, observed)
        make = make_load_forecaster("xgboost", h24, ("temp_air_c",), "America/New_York", 100, future_exog=fx)
        model = make().fit(train)
        assert isinstance(model, ConformalForecaster) and model.future_exog is fx
        assert model.calibrator is not None and model.calibrator.n_ == 14 * 24
        rows = []
        for k in range(21):  # held out: after the training history, scored as the hourly asset does
            o = first + pd.Timedelta(days=k)
            s = score_load_entity(lambda m=model: (m, "1"), load.filter(pl.col("period_start") < o), h24,
                                  weather_issues=issues, observed_weather=observed)  # fmt: skip
            assert s.reason is None and s.weather["persisted"] == 0
            rows.append(s.forecast.with_columns(pl.lit(o).alias("origin")))
        fc = pl.concat(rows).join(load.select("period_start", pl.col("mean_kw").alias("actual")), on="period_start")
        res[kind] = {lv: coverage_interval(fc, lo, hi) for lv, (lo, hi) in {0.8: ("p10", "p90"), 0.9: ("p05", "p95")}.items()}  # fmt: skip
    for lv in (0.8, 0.9):
        lo, hi = res["nwp"][lv]["ci"]
        assert lo <= lv <= hi, (lv, res["nwp"][lv])
        assert res["persisted"][lv]["ci"][0] > lv, (lv, res["persisted"][lv])


def test_conformal_quantile_below_zero_level_is_the_smallest_score():
    s = np.arange(1.0, 11.0)
    assert conformal_quantile(s, -0.1) == 1.0 and conformal_quantile(s, 0.0) == 1.0


def test_adaptive_conformal_on_a_stationary_series_stays_near_nominal(naive_backtest):
    """ACI on top of the 28-origin window: on a stationary series the level wanders around the
    nominal one and the coverage over 80 origins x 24 h stays within 3 points of nominal."""
    bt, origins = naive_backtest
    ev = origins[20:]
    cal = rolling_conformal(bt, ev, window_origins=28, min_origins=7, bucket_hours=6, scale="none", aci_gamma=0.02)
    assert cal["origin"].n_unique() == len(ev)
    a = cal["actual"]
    assert abs(coverage(a, cal["p10"], cal["p90"]) - 0.8) < 0.03
    assert abs(coverage(a, cal["p05"], cal["p95"]) - 0.9) < 0.03
    assert cal["aci_level_80"].min() > 0.65 and cal["aci_level_80"].max() < 0.95
    # the level did move (it is fed back), and it is the same for every row of one origin
    assert cal["aci_level_80"].n_unique() > 10
    assert cal.group_by("origin").agg(pl.col("aci_level_80").n_unique())["aci_level_80"].max() == 1


def test_adaptive_conformal_widens_after_the_noise_grows():
    """The noise triples from day 60 on: with a 28-origin window the plain conformal band lags (it
    still holds 28 calm origins at the switch); ACI raises its level after every under-covered day,
    so over the 20 days after the switch it covers more, nearer nominal."""
    rng = np.random.default_rng(11)
    t = pd.date_range("2026-01-01", periods=24 * 100, freq="1h", tz="UTC")
    sd = np.where(t < pd.Timestamp("2026-03-02", tz="UTC"), 2.0, 6.0)
    y = 100 + 20 * np.sin(2 * np.pi * t.hour / 24) + rng.normal(0, 1, len(t)) * sd
    df = pl.DataFrame({"period_start": t, "mean_kw": y})
    origins = list(pd.date_range("2026-01-03", periods=96, freq="D", tz="UTC"))
    bt = rolling_origin(lambda: SeasonalNaive(DAY), df, origins, 24, refit_every=1)
    after = [o for o in origins if pd.Timestamp("2026-03-03", tz="UTC") <= o < pd.Timestamp("2026-03-23", tz="UTC")]
    kw = dict(window_origins=28, min_origins=7, bucket_hours=6, scale="none")
    plain = rolling_conformal(bt, after, **kw)
    aci = rolling_conformal(bt, after, aci_gamma=0.05, **kw)
    c_plain, c_aci = (
        coverage(plain["actual"], plain["p10"], plain["p90"]),
        coverage(aci["actual"], aci["p10"], aci["p90"]),
    )
    assert c_plain < 0.72  # the lag: the window is still mostly calm days
    assert c_aci > c_plain + 0.04 and abs(c_aci - 0.8) < abs(c_plain - 0.8)
    assert aci["aci_level_80"].max() > 0.85


def test_adaptive_conformal_uses_nothing_known_only_after_the_origin(naive_backtest):
    """With ACI the band at origin o (and its level) is the same whatever happens at or after o;
    a miss the day before o moves the level."""
    bt, origins = naive_backtest
    o = origins[40]
    o_pl = pl.lit(o).cast(pl.Datetime("us", "UTC"))
    kw = dict(min_origins=7, bucket_hours=6, scale="none", aci_gamma=0.05)
    base = rolling_conformal(bt, [o], **kw)
    future = bt.with_columns(
        pl.when(pl.col("period_start") >= o_pl).then(pl.col("actual") * 50).otherwise(pl.col("actual")).alias("actual")
    )
    after = rolling_conformal(future, [o], **kw)
    assert np.allclose(base["p10"], after["p10"]) and np.allclose(base["p95"], after["p95"])
    assert base["aci_level_80"][0] == after["aci_level_80"][0]
    day_before = pl.col("origin") == pl.lit(origins[39]).cast(pl.Datetime("us", "UTC"))
    missed = bt.with_columns(pl.when(day_before).then(pl.col("actual") * 3).otherwise(pl.col("actual")).alias("actual"))
    moved = rolling_conformal(missed, [o], **kw)
    assert moved["aci_level_80"][0] > base["aci_level_80"][0]
