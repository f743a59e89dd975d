"""Ensembles whose weights are learned from backtest errors.

Weights: non-negative least squares of the actuals on the members' p50 forecasts from earlier
origins, normalised to sum to one (a convex combination: it cannot extrapolate beyond its
members, which keeps it safe when a member misbehaves). Quantiles are combined with the same
weights (quantile averaging), then the interval is re-scaled so that its empirical coverage on
the learning origins matches the nominal 80 % -- the members' own intervals are often too
narrow or too wide, and the backtest says by how much.

* :class:`EnsembleForecaster` -- a Forecaster: ``fit`` runs an internal rolling-origin backtest
  of the members on the tail of the history, learns the weights, then refits the members.
* :func:`rolling_ensemble` -- the same rule applied to an existing backtest frame, learning the
  weights for each origin only from origins strictly before it (no look-ahead).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import polars as pl

from models.forecast.backtest import rolling_origin
from models.forecast.base import Forecaster
from models.forecast.data import PreparedSeries

log = logging.getLogger(__name__)


def learn_weights(preds: np.ndarray, actual: np.ndarray, *, relative: bool = True) -> np.ndarray:
    """Convex weights minimising the squared (relative) error of ``preds @ w`` against ``actual``.

    ``preds`` is (n_points, n_members). ``relative`` divides each row by the actual so the
    weights minimise a squared *percentage* error (the MAPE-style target of load forecasting).
    """
    from scipy.optimize import nnls  # scipy on first use: importing the Dagster definitions does not need it

    preds = np.asarray(preds, float)
    actual = np.asarray(actual, float)
    if preds.ndim != 2 or preds.shape[0] != actual.shape[0]:
        raise ValueError(f"preds {preds.shape} and actual {actual.shape} do not line up")
    ok = np.isfinite(preds).all(axis=1) & np.isfinite(actual)
    A, b = preds[ok], actual[ok]
    if relative:
        A, b = A / b[:, None], np.ones_like(b)
    # sum-to-one via a heavily weighted extra row
    lam = 1e3 * np.sqrt(len(b))
    A = np.vstack([A, lam * np.ones(A.shape[1])])
    b = np.append(b, lam)
    w, _ = nnls(A, b)
    if w.sum() <= 0:
        return np.full(preds.shape[1], 1.0 / preds.shape[1])
    return w / w.sum()


def interval_scale(actual, p10, p50, p90, target: float = 0.8) -> float:
    """Factor on the half-widths around p50 that gives ``target`` empirical coverage."""
    a, lo, md, hi = (np.asarray(v, float) for v in (actual, p10, p50, p90))
    r = np.where(a >= md, (a - md) / np.maximum(hi - md, 1e-12), (md - a) / np.maximum(md - lo, 1e-12))
    return float(np.quantile(r, target)) if len(r) else 1.0


def _combine(wide: dict[str, np.ndarray], weights: np.ndarray, names: list[str]) -> np.ndarray:
    return np.stack([sum(w * wide[n][:, j] for w, n in zip(weights, names)) for j in range(3)], axis=1)


def rolling_ensemble(
    bt: pl.DataFrame,
    members: Sequence[str],
    *,
    min_origins: int = 7,
    eval_origins: Sequence | None = None,
    name: str = "ensemble",
    recalibrate: bool = True,
) -> tuple[pl.DataFrame, dict]:
    """Ensemble forecasts at each origin with weights learned from strictly earlier origins.

    ``bt`` is a :func:`rolling_origin` frame holding every member. Origins with fewer than
    ``min_origins`` earlier ones are skipped. Returns the ensemble rows (same columns) and
    the weights used per origin.
    """
    members = list(members)
    sub = bt.filter(pl.col("model").is_in(members))
    wide = sub.pivot(on="model", index=["origin", "period_start", "horizon_h", "actual"], values=["p10", "p50", "p90"])
    wide = wide.sort(["origin", "period_start"]).drop_nulls()
    origins = wide["origin"].unique().sort().to_list()
    targets = origins if eval_origins is None else [o for o in origins if o in set(eval_origins)]
    rows, used = [], {}
    for o in targets:
        past = wide.filter(pl.col("origin") < o)
        if past["origin"].n_unique() < min_origins:
            continue
        P = past.select([f"p50_{m}" for m in members]).to_numpy()
        w = learn_weights(P, past["actual"].to_numpy())
        cur = wide.filter(pl.col("origin") == o)

        def q(frame, w=w):
            return _combine(
                {m: frame.select([f"p10_{m}", f"p50_{m}", f"p90_{m}"]).to_numpy() for m in members},
                w,
                members,
            )

        qc = q(cur)
        if recalibrate:
            qp = q(past)
            k = interval_scale(past["actual"].to_numpy(), qp[:, 0], qp[:, 1], qp[:, 2])
            qc = np.column_stack([qc[:, 1] - k * (qc[:, 1] - qc[:, 0]), qc[:, 1], qc[:, 1] + k * (qc[:, 2] - qc[:, 1])])
        used[str(o)] = dict(zip(members, map(float, w)))
        rows.append(
            cur.select(["origin", "period_start", "horizon_h", "actual"]).with_columns(
                pl.Series("p10", qc[:, 0]),
                pl.Series("p50", qc[:, 1]),
                pl.Series("p90", qc[:, 2]),
                pl.lit(name).alias("model"),
            )
        )
    if not rows:
        raise ValueError(f"no origin has {min_origins} earlier origins to learn ensemble weights from")
    out = pl.concat(rows).select(["origin", "period_start", "horizon_h", "p10", "p50", "p90", "model", "actual"])
    return out, used


class EnsembleForecaster(Forecaster):
    """Weighted combination of member forecasters, weights learned on the history's tail.

    ``fit``: backtest each member over ``n_origins`` daily origins at the end of the history
    (members fitted once before the first and rolled forward with ``update``), learn convex
    weights and an interval scale from those errors, then refit every member on all the history.
    """

    name = "ensemble"

    def __init__(
        self,
        members: Sequence[Callable[[], Forecaster]],
        horizon: pd.Timedelta = pd.Timedelta(days=1),
        *,
        n_origins: int = 7,
        origin_every: pd.Timedelta = pd.Timedelta(days=1),
        **kw,
    ):
        super().__init__(**kw)
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.factories = list(members)
        self.horizon = pd.Timedelta(horizon)
        self.n_origins = n_origins
        self.origin_every = origin_every
        probes = [f() for f in self.factories]
        self.exog = tuple(dict.fromkeys(c for p in probes for c in p.exog))
        self.min_history = max(p.min_history for p in probes) + n_origins * origin_every

    def params(self) -> dict:
        p = {"model": self.name, "n_origins": self.n_origins, "horizon": str(self.horizon)}
        for n, w in getattr(self, "weights", {}).items():
            p[f"weight_{n}"] = round(w, 4)
        return p

    def _fit(self, s: PreparedSeries) -> None:
        hist = pd.concat([s.y.rename(self.target), s.exog], axis=1)
        hist.index.name = self.time_col
        hist = hist.reset_index()
        end = s.y.index[-1] + s.freq
        origins = [end - self.horizon - k * self.origin_every for k in range(self.n_origins - 1, -1, -1)]
        frames = [
            rolling_origin(f, hist, origins, self.horizon, time_col=self.time_col, target=self.target, refit_every=None)
            for f in self.factories
        ]
        bt = pl.concat(frames)
        names = bt["model"].unique(maintain_order=True).to_list()
        if len(names) != len(self.factories):
            raise ValueError(f"ensemble members need distinct names, got {names}")
        wide = bt.pivot(
            on="model", index=["origin", "period_start", "actual"], values=["p10", "p50", "p90"]
        ).drop_nulls()
        w = learn_weights(wide.select([f"p50_{m}" for m in names]).to_numpy(), wide["actual"].to_numpy())
        qp = _combine({m: wide.select([f"p10_{m}", f"p50_{m}", f"p90_{m}"]).to_numpy() for m in names}, w, names)
        self._scale = interval_scale(wide["actual"].to_numpy(), qp[:, 0], qp[:, 1], qp[:, 2])
        self.weights = dict(zip(names, map(float, w)))
        self.backtest = bt
        self.members = [f().fit(hist) for f in self.factories]
        log.info("ensemble weights %s, interval scale %.2f", self.weights, self._scale)

    def update(self, history) -> EnsembleForecaster:
        if not hasattr(self, "members"):
            return self.fit(history)
        self.series = self._prepare(history)
        self.members = [m.update(history) for m in self.members]
        return self

    def _predict(self, steps: int, future_exog: pd.DataFrame) -> np.ndarray:
        fx = future_exog.reset_index(names=self.time_col) if self.exog else None
        preds = {m.name: m.predict(steps, fx).select(["p10", "p50", "p90"]).to_numpy() for m in self.members}
        names = list(self.weights)
        q = _combine(preds, np.array([self.weights[n] for n in names]), names)
        k = self._scale
        return np.column_stack([q[:, 1] - k * (q[:, 1] - q[:, 0]), q[:, 1], q[:, 1] + k * (q[:, 2] - q[:, 1])])
