"""Prophet with temperature, weekend and public-holiday regressors.

Prophet's own 80 % interval gives p10/p90 (``interval_width=0.8``), its ``yhat`` the p50.
Timestamps are handed to Prophet in the utility's local wall-clock time (Prophet wants naive
``ds``) so daily seasonality follows people's clocks across DST changes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from models.forecast.base import Forecaster
from models.forecast.data import PreparedSeries
from models.forecast.features import Calendar

for _name in ("prophet", "cmdstanpy"):
    logging.getLogger(_name).setLevel(logging.WARNING)


class ProphetForecaster(Forecaster):
    """Prophet + regressors ``weekend``, ``holiday`` and each exogenous column (e.g. temperature)."""

    name = "prophet"
    min_history = pd.Timedelta(days=14)

    def __init__(
        self,
        *,
        exog: Sequence[str] = (),
        tz: str,
        country: str = "US",
        subdiv: str | None = None,
        uncertainty_samples: int = 300,
        seed: int = 0,
        **kw,
    ):
        super().__init__(**kw)
        self.exog = tuple(exog)
        self.tz = tz
        self.calendar = Calendar(tz=tz, country=country, subdiv=subdiv)
        self.uncertainty_samples = uncertainty_samples
        self.seed = seed

    def params(self) -> dict:
        return {"model": self.name, "exog": list(self.exog), "tz": self.tz, "country": self.calendar.country}

    def _frame(self, idx: pd.DatetimeIndex, exog: pd.DataFrame) -> pd.DataFrame:
        cal = self.calendar.transform(pd.DataFrame(index=idx), "y")
        df = pd.DataFrame(
            {
                "ds": idx.tz_convert(self.tz).tz_localize(None),
                "weekend": cal["weekend"].to_numpy(),
                "holiday": cal["holiday"].to_numpy(),
            }
        )
        for c in self.exog:
            df[c] = exog[c].to_numpy()
        return df

    def _fit(self, s: PreparedSeries) -> None:
        from prophet import Prophet

        logging.getLogger("cmdstanpy").setLevel(logging.WARNING)  # it resets itself on import
        df = self._frame(s.y.index, s.exog)
        df["y"] = s.y.to_numpy()
        # DST fall-back repeats a local hour: Prophet needs unique ds, keep the first
        df = df.drop_duplicates("ds")
        m = Prophet(
            daily_seasonality=True,
            weekly_seasonality=True,
            yearly_seasonality=False,
            interval_width=0.8,
            uncertainty_samples=self.uncertainty_samples,
        )
        for c in ("weekend", "holiday", *self.exog):
            if df[c].std() > 0:
                m.add_regressor(c)
        np.random.seed(self.seed)
        logging.getLogger("cmdstanpy").setLevel(logging.WARNING)
        m.fit(df)
        self.model = m

    def _predict(self, steps: int, future_exog: pd.DataFrame) -> np.ndarray:
        np.random.seed(self.seed)
        fc = self.model.predict(self._frame(future_exog.index, future_exog))
        return fc[["yhat_lower", "yhat", "yhat_upper"]].to_numpy()
