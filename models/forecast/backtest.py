"""Rolling-origin backtesting: the same origins, horizon and data for every model.

At each origin the model sees only rows strictly before it (no look-ahead): it is fitted at the
first origin and every ``refit_every``-th one, and in between ``update``d (state rolled forward
on the new data, parameters kept) -- the standard protocol for statistical models, and what
production does between retrains. Future exogenous columns (weather) are taken from the data
rows of the forecast window, i.e. perfect-weather-forecast backtests; say so when reporting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
import polars as pl

from models.forecast.base import Forecaster
from models.forecast.data import to_pandas

log = logging.getLogger(__name__)


def daily_origins(frame: Any, *, time_col: str, start: pd.Timestamp, n: int, freq: str = "1D") -> list[pd.Timestamp]:
    """``n`` origins every ``freq`` from ``start`` (e.g. the 28 midnights of the Taylor protocol)."""
    return list(pd.date_range(pd.Timestamp(start), periods=n, freq=freq))


def rolling_origin(
    make_model: Callable[[], Forecaster],
    data: Any,
    origins: Sequence[pd.Timestamp],
    horizon: int | pd.Timedelta,
    *,
    time_col: str = "period_start",
    target: str = "mean_kw",
    refit_every: int | None = 1,
    history_window: pd.Timedelta | None = None,
    future_exog: Callable[[pd.Timestamp, pd.DatetimeIndex], Any] | None = None,
) -> pl.DataFrame:
    """Forecast from each origin; return forecasts joined with actuals.

    Columns: origin, period_start, horizon_h, p10, p50, p90, model, actual.
    ``refit_every=None`` fits once at the first origin and only updates afterwards.
    ``history_window`` trims the history to a sliding window (None = expanding).
    ``future_exog(origin, index)`` gives the exogenous values the model may know at ``origin`` for
    the forecast hours ``index`` (e.g. the latest weather forecast issue,
    ``models.forecast.weather_inputs.weather_for_origin``); None = the data rows themselves
    (a perfect weather forecast).
    """
    df = to_pandas(data)
    df[time_col] = pd.to_datetime(df[time_col], utc=True)
    df = df.sort_values(time_col).reset_index(drop=True)
    out = []
    model: Forecaster | None = None
    fit_seconds = 0.0
    for i, origin in enumerate(origins):
        origin = pd.Timestamp(origin).tz_convert("UTC") if pd.Timestamp(origin).tz else pd.Timestamp(origin, tz="UTC")
        hist = df[df[time_col] < origin]
        if history_window is not None:
            hist = hist[hist[time_col] >= origin - history_window]
        if len(hist) == 0:
            raise ValueError(f"origin {origin} has no history before it")
        t0 = time.perf_counter()
        if model is None or (refit_every and i % refit_every == 0):
            model = make_model().fit(hist)
        else:
            model = model.update(hist)
        fit_seconds += time.perf_counter() - t0
        steps = model.series.steps(horizon) if isinstance(horizon, pd.Timedelta) else int(horizon)
        fut = df[(df[time_col] >= origin)].head(steps)
        if future_exog is not None and model.exog:
            fut = future_exog(origin, pd.date_range(origin, periods=steps, freq=model.series.freq))
        fc = model.predict(steps, future_exog=fut if model.exog else None)
        fc = fc.with_columns(pl.lit(origin).cast(pl.Datetime("us", "UTC")).alias("origin"))
        out.append(fc)
    res = pl.concat(out)
    actual = pl.from_pandas(df[[time_col, target]]).select(
        pl.col(time_col).cast(pl.Datetime("us", "UTC")).alias("period_start"), pl.col(target).alias("actual")
    )
    res = res.join(actual, on="period_start", how="left")
    log.info("%s: %d origins, %.1f s fitting", res["model"][0], len(origins), fit_seconds)
    return res.select(["origin", "period_start", "horizon_h", "p10", "p50", "p90", "model", "actual"])


def trailing_backtest(
    make_model: Callable[[], Forecaster],
    series: Any,
    horizon: pd.Timedelta,
    n_days: int,
    future_exog: Callable[[pd.Timestamp, pd.DatetimeIndex], Any] | None = None,
) -> pl.DataFrame:
    """Backtest on the last ``n_days`` origins of ``series``, one a day, the latest a
    ``horizon`` before the end of the data (so every forecast is scored on the full horizon).

    Fitted once at the first origin and rolled forward with ``update`` after (what production
    does between retrains): ``rolling_origin(..., refit_every=None)``. ``series`` is hourly
    (``period_start``, ``mean_kw`` and the model's exogenous columns); ``future_exog`` as in
    :func:`rolling_origin` (None: the observed weather, a perfect forecast).
    """
    df = to_pandas(series)
    end = pd.Timestamp(pd.to_datetime(df["period_start"], utc=True).max()) + pd.Timedelta(hours=1)
    origins = [end - horizon - k * pd.Timedelta(days=1) for k in range(n_days - 1, -1, -1)]
    return rolling_origin(make_model, df, origins, horizon, refit_every=None, future_exog=future_exog)
