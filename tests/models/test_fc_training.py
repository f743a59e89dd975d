"""What nightly training uses: forecasters by name, the trailing daily backtest, metrics MLflow
can hold, and the figures (forecast after history, feature importance, PNG bytes)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import polars as pl
import pytest

from lake.plots import pyplot
from models.forecast import (
    DAY,
    WEEK,
    EnsembleForecaster,
    MSTLForecaster,
    SeasonalNaive,
    XGBoostForecaster,
    finite_metrics,
    trailing_backtest,
)
from models.forecast.conformal import ConformalForecaster
from models.forecast.factory import LOAD_FORECASTERS, make_load_forecaster
from models.forecast.plots import feature_importance, forecast_figure, importance_figure, png_bytes
from models.forecast.sarimax import SARIMAXForecaster
from models.forecast.sequence import LSTMForecaster
from models.forecast.statsforecast_models import StatsForecaster
from models.solar.forecast import PerLeadBoosters

H24 = pd.Timedelta(hours=24)


@pytest.fixture(scope="module")
def hourly() -> pl.DataFrame:
    """30 days of a daily-cycle load with a temperature column (hourly, UTC)."""
    idx = pd.date_range("2026-04-01", periods=30 * 24, freq="1h", tz="UTC")
    hour = idx.hour.to_numpy()
    rng = np.random.default_rng(0)
    return pl.DataFrame({
        "period_start": pl.Series(idx.as_unit("us")).cast(pl.Datetime("us", "UTC")),
        "mean_kw": 100 + 30 * np.sin(2 * np.pi * hour / 24) + rng.normal(0, 2, len(idx)),
        "temp_air_c": 10 + 5 * np.sin(2 * np.pi * (hour - 3) / 24),
    })  # fmt: skip


@pytest.mark.parametrize(
    "kind, cls, season",
    [("xgboost", XGBoostForecaster, None), ("seasonal_naive_daily", SeasonalNaive, DAY), ("seasonal_naive_weekly", SeasonalNaive, WEEK),
     ("mstl", MSTLForecaster, None), ("ensemble", EnsembleForecaster, None), ("mstl_ets", StatsForecaster, None),
     ("sarimax", SARIMAXForecaster, None), ("lstm", LSTMForecaster, None)],
)  # fmt: skip
def test_factory_makes_fresh_forecasters_of_the_named_kind(kind, cls, season):
    make = make_load_forecaster(kind, H24, ("temp_air_c",), "America/New_York", n_estimators=7, calibrate=False)
    a, b = make(), make()
    assert isinstance(a, cls) and a is not b and a.series is None  # fresh and unfitted at every call
    cal = make_load_forecaster(kind, H24, ("temp_air_c",), "America/New_York", n_estimators=7)()
    assert isinstance(cal, ConformalForecaster) and isinstance(cal.make(), cls)  # calibrated by default
    assert cal.name == a.name and cal.exog == a.exog
    if season is not None:
        assert a.season == season
    if kind == "xgboost":
        assert a.exog == ("temp_air_c",) and a.hyper["n_estimators"] == 7 and a.horizon == H24


def test_factory_names_the_choices_for_an_unknown_kind():
    assert {"xgboost", "prophet", "gru"} <= set(LOAD_FORECASTERS)
    with pytest.raises(ValueError, match="unknown forecaster 'arima'.*seasonal_naive_daily"):
        make_load_forecaster("arima", H24, (), "UTC")


class _Counting(SeasonalNaive):
    made = 0
    updates = 0

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        _Counting.made += 1

    def update(self, history):
        _Counting.updates += 1
        return super().update(history)


def test_trailing_backtest_scores_the_last_days_on_the_full_horizon(hourly):
    _Counting.made = _Counting.updates = 0
    bt = trailing_backtest(lambda: _Counting(DAY), hourly, H24, 3)
    end = pd.Timestamp(hourly["period_start"].max()) + pd.Timedelta(hours=1)
    origins = sorted(bt["origin"].unique().to_list())
    assert [pd.Timestamp(o) for o in origins] == [end - H24 - pd.Timedelta(days=k) for k in (2, 1, 0)]
    assert bt.height == 3 * 24 and bt["actual"].null_count() == 0  # the last forecast ends with the data
    assert (_Counting.made, _Counting.updates) == (1, 2)  # fitted once, then rolled forward


def test_finite_metrics_keeps_finite_known_metrics_only():
    row = {
        "model": "solar_xgboost",
        "mape": float("nan"),
        "rmse": 1,
        "mae": np.float64(2.5),
        "r2": float("inf"),
        "pinball": None,
        "n_points": 40,
    }
    out = finite_metrics(row)
    assert out == {"rmse": 1.0, "mae": 2.5}
    assert all(type(v) is float for v in out.values())


def test_png_bytes_is_a_png_and_closes_the_figure():
    fig, ax = pyplot().subplots()
    ax.plot([0, 1], [1, 0])
    png = png_bytes(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert not pyplot().fignum_exists(fig.number)


def test_feature_importance_of_xgboost_forecasters(hourly):
    assert feature_importance(SeasonalNaive(DAY).fit(hourly)) is None
    m = XGBoostForecaster(H24, exog=("temp_air_c",), n_estimators=5, tz="America/New_York").fit(hourly)
    names, values = feature_importance(m)
    assert names == m._columns and values.shape == (len(names),) and values.sum() > 0
    # the PV model: the mean over its per-lead boosters
    pv = SimpleNamespace(
        model=PerLeadBoosters(
            {1: SimpleNamespace(feature_importances_=[1.0, 0.0]), 2: SimpleNamespace(feature_importances_=[0.0, 0.5])}
        ),
        _columns=["k0", "zen_t"],
    )
    names, values = feature_importance(pv)
    assert names == ["k0", "zen_t"] and values.tolist() == [0.5, 0.25]


def test_importance_figure_shows_the_top_features_largest_on_top():
    fig = importance_figure(["a", "b", "c", "d"], np.array([0.1, 0.4, 0.2, 0.3]), "gain", top=3)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["c", "d", "b"]  # bottom to top
    assert [p.get_width() for p in ax.patches] == [0.2, 0.3, 0.4]
    pyplot().close(fig)


def test_forecast_figure_shows_the_last_three_days_then_the_forecast(hourly):
    fc = pl.DataFrame(
        {"period_start": hourly["period_start"].tail(24) + pd.Timedelta(days=1), "p10": 1.0, "p50": 2.0, "p90": 3.0}
    )
    fig = forecast_figure(hourly, fc, "F1")
    observed, p50 = fig.axes[0].get_lines()
    assert len(observed.get_xdata()) == 72 and list(observed.get_ydata()) == hourly["mean_kw"].tail(72).to_list()
    assert list(p50.get_ydata()) == [2.0] * 24
    pyplot().close(fig)
