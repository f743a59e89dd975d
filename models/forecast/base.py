"""The single forecaster interface.

``fit(history)`` learns from a frame (time column + target + optional exogenous columns);
``predict(horizon, future_exog)`` returns a polars frame with one row per future step:

    period_start (UTC) | horizon_h (float hours ahead) | p10 | p50 | p90 | model

Why the base class does the bookkeeping: every model gets the same input checks
(:func:`models.forecast.data.prepare`), the same minimum-history rule, non-crossing quantiles
and a hard failure on non-finite output, so no model can hand a NaN to the optimiser.

Subclasses implement ``_fit(series)`` and ``_predict(steps, future_exog) -> array (steps, 3)``
(columns p10, p50, p90). ``update(history)`` conditions an already-fitted model on newer data
without re-estimating parameters (used by rolling-origin backtests); the default refits.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any, Self

import numpy as np
import pandas as pd
import polars as pl

from models.forecast.data import (
    ForecastOutputError,
    InsufficientHistoryError,
    PreparedSeries,
    future_index,
    prepare,
    prepare_future_exog,
)

log = logging.getLogger(__name__)

QUANTILES = (0.1, 0.5, 0.9)


class Forecaster(ABC):
    """Base class: see the module docstring for the contract."""

    #: short name used in the ``model`` column and in comparison tables
    name: str = "forecaster"
    #: minimum history the model needs (checked before ``_fit``)
    min_history: pd.Timedelta = pd.Timedelta(days=2)
    #: exogenous columns the model needs in history and in the future frame
    exog: tuple[str, ...] = ()

    def __init__(self, *, time_col: str = "period_start", target: str = "mean_kw", max_fill_steps: int = 2):
        self.time_col = time_col
        self.target = target
        self.max_fill_steps = max_fill_steps
        self.series: PreparedSeries | None = None

    # ------------------------------------------------------------------ public API
    def fit(self, history: Any) -> Self:
        """Validate ``history`` and estimate the model on it."""
        self.series = self._prepare(history)
        self._fit(self.series)
        return self

    def update(self, history: Any) -> Self:
        """Condition on ``history`` (which extends the fitted one) keeping parameters.

        Default: a full refit. Models whose state can be rolled forward cheaply override it.
        """
        return self.fit(history)

    def predict(self, horizon: int | pd.Timedelta, future_exog: Any = None) -> pl.DataFrame:
        """Forecast ``horizon`` (steps, or a Timedelta) from the end of the fitted history."""
        s = self._require_fitted()
        steps = s.steps(horizon) if isinstance(horizon, pd.Timedelta) else int(horizon)
        if steps < 1:
            raise ValueError(f"horizon must be at least one step, got {horizon!r}")
        idx = future_index(s.y.index[-1], s.freq, steps)
        fx = prepare_future_exog(future_exog, time_col=self.time_col, columns=self.exog, index=idx)
        q = np.asarray(self._predict(steps, fx), dtype=float)
        if q.shape != (steps, 3):
            raise ForecastOutputError(f"{self.name}: expected output shape {(steps, 3)}, got {q.shape}")
        if not np.isfinite(q).all():
            bad = int(np.flatnonzero(~np.isfinite(q).all(axis=1))[0])
            raise ForecastOutputError(f"{self.name}: non-finite forecast at step {bad + 1} ({idx[bad]})")
        q = np.sort(q, axis=1)  # quantiles must not cross
        hours = (np.arange(1, steps + 1) * s.freq) / pd.Timedelta(hours=1)
        return pl.DataFrame(
            {
                "period_start": pl.Series(idx.tz_convert("UTC").as_unit("us")).cast(pl.Datetime("us", "UTC")),
                "horizon_h": hours.astype(float),
                "p10": q[:, 0],
                "p50": q[:, 1],
                "p90": q[:, 2],
                "model": [self.name] * steps,
            }
        )

    def params(self) -> dict[str, Any]:
        """Hyper-parameters worth logging (MLflow params)."""
        return {"model": self.name}

    # ------------------------------------------------------------------ for subclasses
    @abstractmethod
    def _fit(self, s: PreparedSeries) -> None: ...

    @abstractmethod
    def _predict(self, steps: int, future_exog: pd.DataFrame) -> np.ndarray: ...

    def _prepare(self, history: Any) -> PreparedSeries:
        s = prepare(
            history, time_col=self.time_col, target=self.target, exog=self.exog, max_fill_steps=self.max_fill_steps
        )
        span = s.y.index[-1] - s.y.index[0] + s.freq
        if span < self.min_history:
            raise InsufficientHistoryError(
                f"{self.name} needs at least {self.min_history} of history, got {span} ({len(s.y)} rows)"
            )
        return s

    def _require_fitted(self) -> PreparedSeries:
        if self.series is None:
            raise RuntimeError(f"{self.name}: call fit() before predict()")
        return self.series


def residual_quantiles(errors: np.ndarray, qs: tuple[float, ...] = QUANTILES) -> np.ndarray:
    """Empirical quantiles of forecast errors, per lead (rows = origins, columns = leads).

    Used by point models (naive, MSTL, DSHW) to turn a point forecast into p10/p50/p90: the
    spread comes from how wrong the same model was at the same lead on held-out origins, which
    is honest about the error growing with the lead time.
    """
    errors = np.asarray(errors, dtype=float)
    if errors.ndim == 1:
        errors = errors[None, :]
    return np.nanquantile(errors, qs, axis=0).T  # (leads, nq)
