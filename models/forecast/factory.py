"""Forecasters by name: what a training config selects (``LOAD_FORECASTERS``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from models.forecast.base import Forecaster

#: forecasters selectable by name (fast ones first; prophet and gru are slow)
LOAD_FORECASTERS = (
    "xgboost",
    "ensemble",
    "seasonal_naive_daily",
    "seasonal_naive_weekly",
    "mstl",
    "mstl_ets",
    "sarimax",
    "prophet",
    "gru",
    "lstm",
)


def make_load_forecaster(
    kind: str,
    horizon: pd.Timedelta,
    exog: tuple[str, ...],
    tz: str,
    n_estimators: int = 300,
    *,
    calibrate: bool = True,
    cal_days: int = 14,
    future_exog: Callable[[pd.Timestamp, pd.DatetimeIndex], Any] | None = None,
) -> Callable[[], Forecaster]:
    """Factory of fresh, unfitted forecasters of ``kind`` (one of ``LOAD_FORECASTERS``), as
    ``rolling_origin`` wants it (it refits per origin).

    ``exog`` (e.g. ``("temp_air_c",)``) goes to the models that use weather (xgboost, prophet,
    gru), ``tz`` (the profile's zone) to every model with calendar features; ``ensemble`` combines the fast
    baselines with weights learned from their backtest errors. ``calibrate`` (the default) wraps the model in
    :class:`models.forecast.conformal.ConformalForecaster`: its p10-p90 band is recalibrated to
    80 % on up to ``cal_days`` daily origins inside the training history, with a 90 % band
    (p05/p95) beside it; bench-forecast measures the same calibration. ``future_exog`` is the
    weather the calibration origins see (``models.forecast.weather_inputs.exog_as_known_at`` over
    the NWP feed: the input scoring uses); None: persisted observations. Raises ValueError for
    an unknown kind.
    """
    make = _make_raw(kind, horizon, exog, tz, n_estimators)
    if not calibrate:
        return make
    from models.forecast.conformal import ConformalForecaster

    fx = future_exog if future_exog is not None else "persisted"
    return lambda: ConformalForecaster(make, horizon, cal_days=cal_days, future_exog=fx)


def _make_raw(
    kind: str, horizon: pd.Timedelta, exog: tuple[str, ...], tz: str, n_estimators: int
) -> Callable[[], Forecaster]:
    from models import forecast as fc

    if kind == "xgboost":
        return lambda: fc.XGBoostForecaster(horizon, exog=exog, tz=tz, n_estimators=n_estimators, n_jobs=1)
    if kind == "seasonal_naive_daily":
        return lambda: fc.SeasonalNaive(fc.DAY)
    if kind == "seasonal_naive_weekly":
        return lambda: fc.SeasonalNaive(fc.WEEK)
    if kind == "mstl":
        return lambda: fc.MSTLForecaster()
    if kind == "ensemble":  # the fast baselines, weights learned from their backtest errors
        members = [
            lambda: fc.SeasonalNaive(fc.DAY),
            lambda: fc.SeasonalNaive(fc.DAY, level_steps=6),
            lambda: fc.MSTLForecaster(),
        ]
        return lambda: fc.EnsembleForecaster(members, horizon, n_origins=5)
    if kind == "mstl_ets":  # statsforecast MSTL/AutoETS on the log scale (best on Taylor, bench-forecast)
        from models.forecast.statsforecast_models import StatsForecaster

        return lambda: StatsForecaster("sf_mstl_ets", log=True, name="mstl_ets")
    if kind == "sarimax":
        return lambda: fc.SARIMAXForecaster(exog=exog, tz=tz)
    if kind == "lstm":
        return lambda: fc.LSTMForecaster(horizon=horizon, exog=exog, tz=tz)
    if kind == "prophet":
        return lambda: fc.ProphetForecaster(exog=exog, tz=tz)
    if kind == "gru":
        return lambda: fc.GRUForecaster(horizon=horizon, exog=exog, tz=tz)
    raise ValueError(f"unknown forecaster {kind!r}; choose from {LOAD_FORECASTERS}")
