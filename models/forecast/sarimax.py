"""SARIMAX (statsmodels) with weather regressors: the classical family utilities ask for.

``log y_t`` (when positive) follows a seasonal ARIMA ``order x seasonal_order`` (seasonal period one
day) with regression on the exogenous columns (e.g. ``temp_air_c``, and derived cooling/heating
degrees so a U-shaped temperature response fits a linear regression) and a weekend/holiday dummy
from the utility's calendar. Fitted on the last ``window`` of history (SARIMAX's likelihood is
O(n); four weeks of hourly data fit in about a second here). Intervals: the model's own Gaussian
prediction intervals (80 %).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from models.forecast.base import Forecaster
from models.forecast.data import PreparedSeries
from models.forecast.features import Calendar

#: degree-day bases (degC) for the derived regressors of a ``temp_air_c`` column
HEAT_BASE_C, COOL_BASE_C = 15.0, 21.0


class SARIMAXForecaster(Forecaster):
    """Seasonal ARIMA with exogenous regressors on the log scale; see the module docstring."""

    name = "sarimax"

    def __init__(
        self,
        *,
        exog: Sequence[str] = (),
        order: tuple[int, int, int] = (2, 0, 0),
        seasonal_order: tuple[int, int, int] = (0, 1, 1),
        window: pd.Timedelta = pd.Timedelta(days=28),
        tz: str,
        country: str = "US",
        subdiv: str | None = None,
        **kw,
    ):
        super().__init__(**kw)
        self.exog = tuple(exog)
        self.order, self.seasonal_order = tuple(order), tuple(seasonal_order)
        self.window = pd.Timedelta(window)
        self.calendar = Calendar(tz=tz, country=country, subdiv=subdiv)
        self.min_history = pd.Timedelta(days=7)

    def params(self) -> dict:
        return {
            "model": self.name,
            "order": self.order,
            "seasonal_order": self.seasonal_order,
            "window": str(self.window),
            "exog": list(self.exog),
        }

    def _design(self, index: pd.DatetimeIndex, ex: pd.DataFrame) -> np.ndarray:
        cols = [self.calendar.transform(pd.DataFrame(index=index), "")["off_day"].to_numpy(float)]
        for c in self.exog:
            v = ex[c].to_numpy(float)
            cols.append(v)
            if c == "temp_air_c":
                cols += [np.maximum(0.0, v - COOL_BASE_C), np.maximum(0.0, HEAT_BASE_C - v)]
        return np.column_stack(cols)

    def _fit(self, s: PreparedSeries) -> None:
        from statsmodels.tsa.statespace.sarimax import SARIMAX

        n = min(len(s.y), s.steps(self.window))
        y = s.y.iloc[-n:]
        self._log = bool((y > 0).all())
        x = np.log(y.to_numpy(float)) if self._log else y.to_numpy(float)
        X = self._design(y.index, s.exog.iloc[-n:])
        # standardise (the optimiser converges in fewer steps); a constant column (no day off in
        # the window) keeps scale 1 and is centred to zero
        self._scale = (X.mean(axis=0), np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0))
        X = (X - self._scale[0]) / self._scale[1]
        m = SARIMAX(x, exog=X, order=self.order, seasonal_order=(*self.seasonal_order, s.steps_per_day), trend="n")
        self._res = m.fit(disp=False, maxiter=200)

    def _predict(self, steps: int, future_exog: pd.DataFrame) -> np.ndarray:
        idx = pd.date_range(self.series.y.index[-1] + self.series.freq, periods=steps, freq=self.series.freq)
        X = (self._design(idx, future_exog.reindex(idx)) - self._scale[0]) / self._scale[1]
        f = self._res.get_forecast(steps, exog=X)
        ci = np.asarray(f.conf_int(alpha=0.2))
        q = np.column_stack([ci[:, 0], np.asarray(f.predicted_mean), ci[:, 1]])
        return np.exp(q) if self._log else q
