"""statsforecast models (Nixtla) behind the gridlake :class:`Forecaster` interface.

statsforecast is the strongest open-source peer measured here (its MSTL with an AutoETS trend,
untuned, 0.947 % on the Taylor protocol against gridlake's 0.992 % before this module); the
benchmark runs its models beside gridlake's as peers, and the same wrapper lets them join
gridlake's zoo and ensemble.

* :class:`StatsForecaster` -- any ``statsforecast.models`` object (``forecast(y, h, level=...)``);
  the kinds in :data:`PEERS` are the ones the benchmark compares against, built untuned on the
  series' own seasonal periods (one day, one week).

Intervals: the model's own 80 % interval when it has one (MSTL, seasonal naive), otherwise
empirical quantiles of in-sample one-step residuals widened by sqrt(lead) (MFLES has none
without conformal refits).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from models.forecast.base import Forecaster
from models.forecast.data import PreparedSeries

DAY = pd.Timedelta(days=1)
WEEK = pd.Timedelta(days=7)


def _peer(kind: str, day: int, week: int) -> Any:
    from statsforecast import models as sf

    if kind == "sf_mstl_ets":
        return sf.MSTL(season_length=[day, week], trend_forecaster=sf.AutoETS(model="ZZN"))
    if kind == "sf_mfles":
        return sf.MFLES(season_length=[day, week])
    if kind == "sf_seasonal_naive":
        return sf.SeasonalNaive(week)
    raise ValueError(f"unknown statsforecast peer {kind!r}; choose from {PEERS}")


#: the statsforecast models the benchmark runs beside gridlake's (untuned defaults)
PEERS = ("sf_mstl_ets", "sf_mfles", "sf_seasonal_naive")


class StatsForecaster(Forecaster):
    """A statsforecast model refitted on the whole history at every ``fit``.

    ``kind`` is one of :data:`PEERS`, or pass ``make`` (``(steps_per_day, steps_per_week) ->
    statsforecast model``) with a ``name``. ``log=True`` fits on the log of the target
    (multiplicative errors; the peers run on the raw scale, as a user would call them).
    """

    min_history = 2 * WEEK

    def __init__(
        self,
        kind: str = "sf_mstl_ets",
        *,
        make: Callable[[int, int], Any] | None = None,
        name: str | None = None,
        log: bool = False,
        **kw,
    ):
        super().__init__(**kw)
        if make is None and kind not in PEERS:
            raise ValueError(f"unknown statsforecast peer {kind!r}; choose from {PEERS}")
        self.kind = kind
        self._make = make
        self.log = log
        self.name = name or (kind + ("_log" if log else ""))

    def params(self) -> dict:
        return {"model": self.name, "kind": self.kind, "log": self.log}

    def _fit(self, s: PreparedSeries) -> None:
        y = s.y.to_numpy(float)
        if self.log and not np.all(y > 0):
            raise ValueError(f"{self.name}: log=True needs a strictly positive target")
        self._x = np.log(y) if self.log else y
        day, week = s.steps_per_day, 7 * s.steps_per_day
        self._model = self._make(day, week) if self._make else _peer(self.kind, day, week)

    def _predict(self, steps: int, future_exog: pd.DataFrame) -> np.ndarray:
        try:
            r = self._model.forecast(y=self._x, h=steps, level=[80])
            q = np.column_stack([r["lo-80"], r["mean"], r["hi-80"]])
        except Exception:  # no native interval (MFLES): in-sample residual quantiles
            r = self._model.forecast(y=self._x, h=steps, fitted=True)
            res = self._x - np.asarray(r["fitted"], float)
            res = res[np.isfinite(res)][-28 * self.series.steps_per_day :]
            lo, hi = np.quantile(res, [0.1, 0.9]) if len(res) else (0.0, 0.0)
            grow = np.sqrt(np.arange(1, steps + 1))
            m = np.asarray(r["mean"], float)
            q = np.column_stack([m + min(lo, 0.0) * grow, m, m + max(hi, 0.0) * grow])
        return np.exp(q) if self.log else q
