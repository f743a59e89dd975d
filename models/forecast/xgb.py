"""XGBoost quantile forecaster on the feature transforms (direct multi-horizon).

One model serves every lead 1..horizon: all target-derived features look back at least the
horizon (see :func:`models.forecast.features.default_load_pipeline`), so the row for any future
step is fully observed at the origin. The target is modelled *relative to the latest observed
daily mean* (and target-derived features likewise), which lets trees follow level shifts they
never saw in training. Quantiles p10/p50/p90 come from XGBoost's multi-quantile objective
``reg:quantileerror`` in a single booster.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from models.forecast.base import QUANTILES, Forecaster
from models.forecast.data import ForecastInputError, PreparedSeries
from models.forecast.features import FeaturePipeline, default_load_pipeline


class XGBoostForecaster(Forecaster):
    """Quantile XGBoost on lags, rolling stats, calendar/holidays, cyclic and weather features."""

    name = "xgboost"

    def __init__(
        self,
        horizon: pd.Timedelta = pd.Timedelta(days=1),
        *,
        exog: Sequence[str] = (),
        pipeline: FeaturePipeline | None = None,
        country: str = "US",
        subdiv: str | None = None,
        tz: str | None = None,
        n_estimators: int = 300,
        max_depth: int = 5,
        learning_rate: float = 0.05,
        n_jobs: int = 1,
        seed: int = 0,
        reference: str = "week",
        **kw,
    ):
        super().__init__(**kw)
        self.horizon = pd.Timedelta(horizon)
        self.exog = tuple(exog)
        if pipeline is None and not tz:
            raise ValueError("tz (the utility's zone, the profile's timezone) is required for the calendar features")
        self.pipeline = pipeline or default_load_pipeline(
            self.horizon, exog=self.exog, country=country, subdiv=subdiv, tz=tz
        )
        lag = self.pipeline.min_target_lag()
        if lag is not None and lag < self.horizon:
            raise ForecastInputError(
                f"feature pipeline looks back only {lag} at the target but the horizon is {self.horizon}: "
                "features would not be observed at the origin"
            )
        self.base_lag = pd.Timedelta(days=1) * int(np.ceil(self.horizon / pd.Timedelta(days=1)))
        self.min_history = pd.Timedelta(days=7) + self.base_lag + pd.Timedelta(days=7)
        if reference not in ("week", "day_mean"):
            raise ValueError(f"reference must be 'week' or 'day_mean', got {reference!r}")
        self.reference = reference
        self.hyper = dict(
            n_estimators=n_estimators, max_depth=max_depth, learning_rate=learning_rate, n_jobs=n_jobs, seed=seed
        )

    def params(self) -> dict:
        return {
            "model": self.name,
            "horizon": str(self.horizon),
            "exog": list(self.exog),
            "reference": self.reference,
            **self.hyper,
        }

    def _design(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
        """Features scaled by ``ref``: the value a week earlier (default) or the latest daily mean."""
        feats = self.pipeline.transform(frame, "y")
        step = frame.index[1] - frame.index[0]
        n_base = int(round(self.base_lag / step))
        per_day = int(round(pd.Timedelta(days=1) / step))
        if self.reference == "week":  # same time last week, scaled by the latest daily change
            ref = frame["y"].shift(7 * per_day)
        else:
            ref = frame["y"].shift(n_base).rolling(per_day, min_periods=per_day // 2).mean()
        if not hasattr(self, "_tcols"):
            self._tcols = [c for c in feats.columns if c.startswith(("lag_", "roll"))]
        for c in self._tcols:
            if "_std_" in c:
                feats[c] = feats[c] / ref
            else:
                feats[c] = feats[c] / ref - 1.0
        return feats, ref

    def _fit(self, s: PreparedSeries) -> None:
        import xgboost as xgb

        if (s.y <= 0).any():
            raise ForecastInputError(
                f"{self.name}: the relative target needs a positive series; {int((s.y <= 0).sum())} value(s) <= 0"
            )
        frame = pd.concat([s.y.rename("y"), s.exog], axis=1)
        X, ref = self._design(frame)
        target = s.y / ref - 1.0
        ok = X.notna().all(axis=1) & target.notna()
        if ok.sum() < 10 * s.steps_per_day // 2:
            raise ForecastInputError(f"{self.name}: only {int(ok.sum())} complete feature rows to train on")
        self._columns = list(X.columns)
        self.model = xgb.XGBRegressor(
            objective="reg:quantileerror",
            quantile_alpha=np.array(QUANTILES),
            tree_method="hist",
            **self.hyper,
        )
        self.model.fit(X[ok], target[ok])

    def update(self, history) -> XGBoostForecaster:
        """Keep the booster; only the history the lag features read from moves forward."""
        if not hasattr(self, "model"):
            return self.fit(history)
        self.series = self._prepare(history)
        return self

    def _predict(self, steps: int, future_exog: pd.DataFrame) -> np.ndarray:
        s = self.series
        if steps * s.freq > self.horizon:
            raise ForecastInputError(
                f"{self.name} was built for a horizon of {self.horizon}; asked for {steps * s.freq}"
            )
        fut = future_exog.copy()
        fut["y"] = np.nan
        hist = pd.concat([s.y.rename("y"), s.exog], axis=1)
        # only the tail matters for the lags: keep two weeks plus the base lag
        tail = s.steps(pd.Timedelta(days=7) + self.base_lag + pd.Timedelta(days=7))
        frame = pd.concat([hist.iloc[-tail:], fut[hist.columns]])
        X, ref = self._design(frame)
        X = X.iloc[-steps:][self._columns]
        if X.isna().any().any():
            col = X.columns[X.isna().any()][0]
            raise ForecastInputError(f"{self.name}: feature {col!r} is missing at the forecast origin")
        rel = self.model.predict(X).reshape(steps, -1)
        return (1.0 + rel) * ref.iloc[-steps:].to_numpy()[:, None]
