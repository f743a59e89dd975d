"""Load forecasting: one interface, many models, one backtest.

Quick use (gold hourly load, optional weather joined on ``period_start``)::

    from models.forecast import XGBoostForecaster, rolling_origin, score_backtest
    m = XGBoostForecaster(horizon=pd.Timedelta("24h"), exog=["temp_air_c"], tz=profile.timezone).fit(history)
    fc = m.predict(pd.Timedelta("24h"), future_exog=weather_forecast)
    # polars: period_start (UTC) | horizon_h | p10 | p50 | p90 | model

Input: polars or pandas, a tz-aware time column (default ``period_start``), the target
(default ``mean_kw``) and any exogenous columns. See ``models.forecast.data`` for the checks.

``ProphetForecaster`` and ``GRUForecaster`` import heavy libraries; they load on first access.
"""

from __future__ import annotations

from typing import Any

from models.forecast.backtest import daily_origins, rolling_origin, trailing_backtest
from models.forecast.base import QUANTILES, Forecaster
from models.forecast.baselines import DAY, WEEK, DoubleSeasonalHoltWinters, MSTLForecaster, SeasonalNaive
from models.forecast.conformal import ConformalForecaster, IntervalCalibrator, rolling_conformal
from models.forecast.data import (
    FORECAST_COLUMNS,
    ConstantSeriesError,
    ForecastInputError,
    ForecastOutputError,
    GapError,
    InsufficientHistoryError,
    MissingExogenousError,
    prepare,
)
from models.forecast.ensemble import EnsembleForecaster, learn_weights, rolling_ensemble
from models.forecast.fallback import forecast_with_fallback
from models.forecast.metrics import band_score, comparison_table, finite_metrics, score, score_backtest
from models.forecast.xgb import XGBoostForecaster

_LAZY = {
    "ProphetForecaster": "models.forecast.prophet_model",
    "GRUForecaster": "models.forecast.sequence",
    "LSTMForecaster": "models.forecast.sequence",
    "SARIMAXForecaster": "models.forecast.sarimax",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)


__all__ = [
    "DAY",
    "WEEK",
    "FORECAST_COLUMNS",
    "QUANTILES",
    "ConformalForecaster",
    "ConstantSeriesError",
    "DoubleSeasonalHoltWinters",
    "EnsembleForecaster",
    "ForecastInputError",
    "ForecastOutputError",
    "Forecaster",
    "GRUForecaster",
    "GapError",
    "LSTMForecaster",
    "SARIMAXForecaster",
    "InsufficientHistoryError",
    "IntervalCalibrator",
    "MSTLForecaster",
    "MissingExogenousError",
    "ProphetForecaster",
    "SeasonalNaive",
    "XGBoostForecaster",
    "band_score",
    "comparison_table",
    "daily_origins",
    "finite_metrics",
    "forecast_with_fallback",
    "learn_weights",
    "prepare",
    "rolling_ensemble",
    "rolling_conformal",
    "rolling_origin",
    "score",
    "score_backtest",
    "trailing_backtest",
]
