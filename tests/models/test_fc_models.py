"""Every forecaster on real data (Taylor E&W demand): output contract and real skill."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

from models.forecast import (
    DAY,
    WEEK,
    DoubleSeasonalHoltWinters,
    ForecastInputError,
    MissingExogenousError,
    MSTLForecaster,
    SeasonalNaive,
    XGBoostForecaster,
    rolling_origin,
    score_backtest,
)

GB = dict(country="GB", subdiv="ENG", tz="Europe/London")


def _contract(fc: pl.DataFrame, steps: int, step_h: float, name: str):
    assert fc.columns == ["period_start", "horizon_h", "p10", "p50", "p90", "model"]
    assert fc.schema["period_start"] == pl.Datetime("us", "UTC")
    assert fc.height == steps
    assert fc["horizon_h"].to_list() == pytest.approx([step_h * (k + 1) for k in range(steps)])
    assert (fc["p10"] <= fc["p50"]).all() and (fc["p50"] <= fc["p90"]).all()
    assert fc["p50"].is_finite().all()
    assert set(fc["model"]) == {name}


def test_weekly_naive_copies_last_week_exactly(taylor):
    hist = taylor.head(24 * 48)  # 24 days
    fc = SeasonalNaive(WEEK).fit(hist).predict(48)
    _contract(fc, 48, 0.5, "seasonal_naive_weekly")
    y = hist["mean_kw"].to_numpy()
    np.testing.assert_allclose(fc["p50"].to_numpy(), y[-336:-288])
    assert fc["period_start"][0] == hist["period_start"][-1] + pd.Timedelta(minutes=30)


def test_daily_naive_repeats_beyond_one_day(taylor):
    hist = taylor.head(48 * 5)
    fc = SeasonalNaive(DAY).fit(hist).predict(72)
    y = hist["mean_kw"].to_numpy()
    np.testing.assert_allclose(fc["p50"].to_numpy()[:48], y[-48:])
    np.testing.assert_allclose(fc["p50"].to_numpy()[48:], y[-48:-24])


@pytest.fixture(scope="module")
def origins():
    # 5 midnights in the Taylor evaluation month
    return list(pd.date_range("2000-07-31", periods=5, freq="D", tz="UTC"))


def test_dshw_beats_weekly_naive_on_real_origins(taylor, origins):
    bt = pl.concat(
        [
            rolling_origin(lambda: SeasonalNaive(WEEK), taylor, origins, 48),
            rolling_origin(DoubleSeasonalHoltWinters, taylor, origins, 48, refit_every=None),
        ]
    )
    s = {r["model"]: r for r in score_backtest(bt).iter_rows(named=True)}
    assert s["dshw"]["mape"] < 0.8 * s["seasonal_naive_weekly"]["mape"]
    assert 0.4 <= s["dshw"]["coverage_80"] <= 1.0


@pytest.mark.slow
def test_mstl_beats_weekly_naive(taylor, origins):
    bt = pl.concat(
        [
            rolling_origin(lambda: SeasonalNaive(WEEK), taylor, origins[:3], 48),
            rolling_origin(MSTLForecaster, taylor, origins[:3], 48),
        ]
    )
    s = {r["model"]: r["mape"] for r in score_backtest(bt).iter_rows(named=True)}
    assert s["mstl"] < s["seasonal_naive_weekly"]


def test_xgboost_quantiles_and_skill(taylor, origins):
    make = lambda: XGBoostForecaster(DAY, n_estimators=120, max_depth=3, **GB)  # noqa: E731
    bt = pl.concat(
        [
            rolling_origin(make, taylor, origins, 48, refit_every=None),
            rolling_origin(lambda: SeasonalNaive(WEEK), taylor, origins, 48),
        ]
    )
    s = {r["model"]: r for r in score_backtest(bt).iter_rows(named=True)}
    assert s["xgboost"]["mape"] < s["seasonal_naive_weekly"]["mape"]
    assert s["xgboost"]["coverage_80"] > 0.3
    m = make().fit(taylor.head(48 * 30))
    _contract(m.predict(48), 48, 0.5, "xgboost")
    with pytest.raises(ForecastInputError, match="horizon"):
        m.predict(49)


def test_xgboost_needs_future_weather(hourly_load_with_weather):
    df = hourly_load_with_weather.head(24 * 28)
    m = XGBoostForecaster(DAY, exog=["temp_air_c"], n_estimators=30, **GB).fit(df.head(24 * 27))
    fut = df.tail(24)
    fc = m.predict(24, future_exog=fut)
    assert fc.height == 24 and fc["p50"].is_finite().all()
    with pytest.raises(MissingExogenousError, match="future"):
        m.predict(24)
    holed = fut.with_columns(
        pl.when(pl.int_range(pl.len()) == 5).then(None).otherwise(pl.col("temp_air_c")).alias("temp_air_c")
    )
    with pytest.raises(MissingExogenousError, match="temp_air_c"):
        m.predict(24, future_exog=holed)


def test_prophet_with_temperature_weekend_holiday(hourly_load_with_weather):
    from models.forecast import ProphetForecaster

    df = hourly_load_with_weather.head(24 * 22)
    m = ProphetForecaster(exog=["temp_air_c"], **GB, uncertainty_samples=100).fit(df.head(24 * 21))
    fc = m.predict(24, future_exog=df.tail(24))
    _contract(fc, 24, 1.0, "prophet")
    names = set(m.model.extra_regressors)
    assert {"temp_air_c", "weekend"} <= names
    actual = df.tail(24)["mean_kw"].to_numpy()
    assert np.mean(np.abs(fc["p50"].to_numpy() - actual) / actual) < 0.15


def test_gru_trains_and_forecasts(taylor):
    from models.forecast import GRUForecaster

    hist = taylor.head(48 * 21)
    m1 = GRUForecaster(DAY, epochs=1, hidden=8, stride=6, **GB).fit(hist)
    m6 = GRUForecaster(DAY, epochs=5, hidden=8, stride=6, **GB).fit(hist)
    assert m6.train_loss < m1.train_loss  # it learns
    fc = m6.predict(48)
    _contract(fc, 48, 0.5, "gru")
    y = hist["mean_kw"].to_numpy()
    assert y.min() * 0.7 < fc["p50"].min() and fc["p50"].max() < y.max() * 1.3
    with pytest.raises(ForecastInputError):
        m6.predict(49)


def test_mstl_level_follows_a_recent_shift_unless_ar_asked_for(taylor):
    """A +8 % level shift over the last two days: the default random-walk level carries it
    into the forecast; an AR(2) with constant fitted on four weeks pulls most of it back."""
    hist = taylor.head(5 * 7 * 48).to_pandas()
    y = hist["mean_kw"].to_numpy().copy()
    y[-96:] *= 1.08
    hist["mean_kw"] = y
    week_ago = y[-336 : -336 + 48]  # the same day last week, before the shift
    rw = MSTLForecaster().fit(hist).predict(48)["p50"].to_numpy()
    ar = MSTLForecaster(ar_lags=2).fit(hist).predict(48)["p50"].to_numpy()
    ratio_rw = np.mean(rw / week_ago)
    ratio_ar = np.mean(ar / week_ago)
    assert 1.04 < ratio_rw < 1.12
    assert ratio_ar < ratio_rw


def _dshw_reference(x, theta, s1, s2, H):
    """Taylor's recursion one step at a time (the original implementation), for comparison."""
    a, d, w, phi = theta
    lvl = float(x[:s2].mean())
    days = x[: 2 * s2].reshape(-1, s1)
    D = list((days - days.mean(axis=1, keepdims=True)).mean(axis=0))
    W0 = (x[:s2] - lvl) - np.tile(D, 7)
    W1 = (x[s2 : 2 * s2] - x[s2 : 2 * s2].mean()) - np.tile(D, 7)
    W = list((W0 + W1) / 2)
    n, sse, e_prev, errs = len(x), 0.0, 0.0, []
    for t in range(n):
        if t >= 2 * s2 and t % s1 == n % s1 and t + H <= n:
            row = np.array(
                [x[t + k] - (lvl + D[(t + k) % s1] + W[(t + k) % s2] + phi ** (k + 1) * e_prev) for k in range(H)]
            )
            sse += float(row @ row)
            errs.append(row)
        dt, wt, xt = D[t % s1], W[t % s2], x[t]
        e = xt - (lvl + dt + wt + phi * e_prev)
        new_l = a * (xt - dt - wt) + (1 - a) * lvl
        D[t % s1] = d * (xt - lvl - wt) + (1 - d) * dt
        W[t % s2] = w * (xt - lvl - dt) + (1 - w) * wt
        lvl, e_prev = new_l, e
    return sse, (lvl, D, W, e_prev, n), errs


@pytest.mark.parametrize("n_steps,horizon", [(24 * 48, 48), (24 * 48 + 17, 48), (23 * 48 + 5, 96), (22 * 48, 24)])
def test_dshw_day_block_filter_equals_the_step_recursion(taylor, n_steps, horizon):
    """The vectorised filter (one lfilter per day block) must reproduce the per-step
    recursion exactly: SSE, final state and every scored error row, for histories that do and
    do not end on a day boundary and for fit horizons shorter and longer than a day."""
    x = np.log(taylor["mean_kw"].to_numpy()[:n_steps])
    m = DoubleSeasonalHoltWinters()
    m._s1, m._s2, m._H = 48, 336, horizon
    theta = (0.04, 0.3, 0.2, 0.85)
    sse, state, errs = m._run(x, theta, collect=True)
    sse_ref, state_ref, errs_ref = _dshw_reference(x, theta, 48, 336, horizon)
    assert sse == pytest.approx(sse_ref, rel=1e-10)
    assert len(errs) == len(errs_ref) > 0
    np.testing.assert_allclose(np.array(errs), np.array(errs_ref), rtol=0, atol=1e-12)
    for got, ref in zip(state[:4], state_ref[:4]):
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
    assert state[4] == state_ref[4] == n_steps


def test_dshw_fit_horizon_changes_the_estimate(taylor):
    hist = taylor.head(5 * 7 * 48)
    day = DoubleSeasonalHoltWinters().fit(hist)
    half = DoubleSeasonalHoltWinters(fit_horizon=pd.Timedelta(hours=12)).fit(hist)
    assert half._H == 24 and day._H == 48
    assert not np.allclose(day.theta, half.theta)
    _contract(half.predict(48), 48, 0.5, "dshw")


@pytest.mark.slow
def test_mstl_windows_and_iterate_reach_statsmodels(taylor):
    hist = taylor.head(4 * 7 * 48)
    base = MSTLForecaster().fit(hist)
    tuned = MSTLForecaster(windows=(11, 101), iterate=3).fit(hist)
    assert tuned.params()["iterate"] == 3 and tuned.params()["windows"] == (11, 101)
    a, b = base.predict(48)["p50"].to_numpy(), tuned.predict(48)["p50"].to_numpy()
    assert not np.allclose(a, b)  # the options change the decomposition
    assert np.max(np.abs(b / a - 1)) < 0.05  # ... but not into nonsense
    with pytest.raises(ValueError, match="one span per period"):
        MSTLForecaster(windows=(11,))
