"""Forecast with a documented fallback, never a silent NaN.

Rule (also shown in Dagster asset metadata through the returned ``info``):

* too little history for the chosen model, or required weather missing
  -> fall back to the daily seasonal naive baseline (needs two days);
* constant series -> a flat forecast at that constant with a zero-width interval
  (the only honest forecast of a series that never moved; flagged, so a stuck meter shows up);
* gaps longer than the interpolation limit, naive timestamps, bad columns -> the error is raised:
  no model can repair those, and hiding them would hide a data problem upstream.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from models.forecast.base import Forecaster
from models.forecast.baselines import DAY, SeasonalNaive
from models.forecast.data import (
    ConstantSeriesError,
    InsufficientHistoryError,
    MissingExogenousError,
    future_index,
    to_pandas,
)

log = logging.getLogger(__name__)


def forecast_with_fallback(
    model: Forecaster,
    history: Any,
    horizon: pd.Timedelta,
    future_exog: Any = None,
    *,
    fallback: Forecaster | None = None,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Fit ``model`` and forecast; on a recoverable input problem use the fallback.

    Returns the forecast frame and ``info`` = {model, requested_model, fallback (bool),
    reason (str | None), interpolated_steps}.
    """
    info: dict[str, Any] = {"requested_model": model.name, "fallback": False, "reason": None}
    try:
        model.fit(history)
        fc = model.predict(horizon, future_exog)
        info.update(model=model.name, interpolated_steps=len(model.series.filled))
        return fc, info
    except (InsufficientHistoryError, MissingExogenousError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
        fb = fallback or SeasonalNaive(DAY, time_col=model.time_col, target=model.target)
        log.warning("%s failed (%s); falling back to %s", model.name, reason, fb.name)
        fb.fit(history)
        fc = fb.predict(horizon)
        info.update(model=fb.name, fallback=True, reason=reason, interpolated_steps=len(fb.series.filled))
        return fc, info
    except ConstantSeriesError as exc:
        reason = f"ConstantSeriesError: {exc}"
        log.warning("%s: %s; forecasting the constant", model.name, reason)
        df = to_pandas(history)
        ts = pd.to_datetime(df[model.time_col], utc=True).sort_values()
        freq = ts.diff().median()
        value = float(df.loc[ts.index[-1], model.target])
        n = int(round(pd.Timedelta(horizon) / freq))
        idx = future_index(ts.iloc[-1], freq, n)
        fc = pl.DataFrame(
            {
                "period_start": pl.Series(idx.as_unit("us")).cast(pl.Datetime("us", "UTC")),
                "horizon_h": (np.arange(1, n + 1) * freq / pd.Timedelta(hours=1)).astype(float),
                "p10": np.full(n, value),
                "p50": np.full(n, value),
                "p90": np.full(n, value),
                "model": ["constant"] * n,
            }
        )
        info.update(model="constant", fallback=True, reason=reason, interpolated_steps=0)
        return fc, info
