"""Calibrated forecast intervals: conformalised quantile regression on backtest residuals.

A model's own p10-p90 band is rarely an 80 % interval out of sample (bench-forecast, utility
feeders day-ahead: XGBoost's quantile booster covered 0.70, statsforecast's MSTL 0.93). This
module recalibrates any band from how the model actually did on earlier origins, and derives
the 90 % band (p05/p95) from the same scores, so every forecaster gets p05/p10/p50/p90/p95.

Method (conformalised quantile regression, Romano, Patterson & Candes 2019): on calibration
rows (forecasts whose actuals are known) the conformity score is

    E = max(p10 - y, y - p90) / scale

(negative inside the band). For a nominal coverage c the band is widened by the finite-sample
conformal quantile of E, the ceil((n + 1) c)-th smallest of n scores:

    [p10 - q_c * scale, p90 + q_c * scale]

which covers at least c of exchangeable new points (a negative q_c narrows an over-wide band).
One score set gives every level, so the 90 % band nests the 80 % one; p50 is never touched.

* ``scale`` makes the score comparable across rows that should not share a width: the
  forecast level |p50| for load (errors are multiplicative: a 5 % miss at the evening peak
  and at night), clear-sky power for PV (night and noon must not share a width; see
  ``models.solar.forecast``), 1 for absolute units.
* Scores are pooled per lead bucket (``bucket_hours``; errors grow with the lead). For a
  day-ahead forecast issued at midnight the lead is the hour of day, so a bucket is also a
  block of hours. A bucket with fewer than ``min_scores`` scores uses the pooled quantile.
* No look-ahead: :func:`rolling_conformal` calibrates the forecast issued at origin ``o`` only
  on forecasts issued before ``o`` whose target hours have ended by ``o``;
  :class:`ConformalForecaster` calibrates inside its own training history.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
import pandas as pd
import polars as pl

from models.forecast.base import Forecaster
from models.forecast.data import ForecastOutputError, PreparedSeries, to_pandas

log = logging.getLogger(__name__)

#: nominal coverages calibrated, and the columns of each band
LEVELS = (0.8, 0.9)
BANDS = {0.8: ("p10", "p90"), 0.9: ("p05", "p95")}
#: smallest scale (share of the typical |scale|) so a near-zero level cannot blow a score up
_SCALE_FLOOR = 1e-3


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The ceil((n + 1) * level)-th smallest finite score (the largest when that exceeds n:
    with too few scores the finite-sample guarantee needs +inf; the maximum is what is used,
    and callers keep ``n`` large enough for the levels they ask for). NaN when empty."""
    s = np.sort(np.asarray(scores, float)[np.isfinite(scores)])
    if len(s) == 0:
        return float("nan")
    k = math.ceil((len(s) + 1) * level)
    return float(s[min(max(k, 1), len(s)) - 1])  # level <= 0 (adaptive conformal): the smallest score


def conformity_scores(actual, lo, hi, scale) -> np.ndarray:
    """CQR score max(lo - y, y - hi) / scale (<= 0 inside the band)."""
    a, lo, hi, sc = (np.asarray(v, float) for v in (actual, lo, hi, scale))
    return np.maximum(lo - a, a - hi) / sc


@dataclass
class IntervalCalibrator:
    """Per-lead-bucket CQR widths for several nominal coverages (see the module docstring)."""

    levels: tuple[float, ...] = LEVELS
    #: width of a lead bucket in hours (None: one bucket for every lead)
    bucket_hours: float | None = 6.0
    #: "level": |p50| (relative widths, load); "none": absolute; or pass ``scale=`` arrays
    scale: str = "level"
    #: a bucket needs this many scores, else the pooled quantile is used
    min_scores: int = 30
    #: quantile level actually used for each nominal level (adaptive conformal: nominal + a learned
    #: shift, see :func:`rolling_conformal`'s ``aci_gamma``); missing levels use the nominal one
    quantile_levels: dict[float, float] = field(default_factory=dict)
    widen_: dict[tuple[float, int], float] = field(default_factory=dict)
    pooled_: dict[float, float] = field(default_factory=dict)
    n_: int = 0

    def _buckets(self, horizon_h) -> np.ndarray:
        h = np.asarray(horizon_h, float)
        if self.bucket_hours is None:
            return np.zeros(len(h), int)
        return np.floor((h - 1e-9) / self.bucket_hours).astype(int).clip(0)

    def _scale(self, p50, scale) -> np.ndarray:
        if scale is not None:
            s = np.abs(np.asarray(scale, float))
        elif self.scale == "level":
            s = np.abs(np.asarray(p50, float))
        elif self.scale == "none":
            return np.ones(len(np.asarray(p50)))
        else:
            raise ValueError(f"scale must be 'level' or 'none' (or pass scale arrays), got {self.scale!r}")
        floor = _SCALE_FLOOR * (float(np.nanmedian(s)) if len(s) and np.nanmedian(s) > 0 else 1.0)
        return np.maximum(s, floor)

    def fit(self, actual, p10, p50, p90, horizon_h, scale=None) -> Self:
        """Learn the widths from calibration rows (arrays of equal length, actuals known)."""
        a = np.asarray(actual, float)
        ok = np.isfinite(a)
        sc = self._scale(p50, scale)
        e = conformity_scores(a, p10, p90, sc)[ok]
        b = self._buckets(horizon_h)[ok]
        if len(e) == 0:
            raise ValueError("no calibration rows with a known actual")
        self.n_ = len(e)
        q = {lv: self.quantile_levels.get(lv, lv) for lv in self.levels}
        self.pooled_ = {lv: conformal_quantile(e, q[lv]) for lv in self.levels}
        self.widen_ = {}
        for k in np.unique(b):
            ek = e[b == k]
            for lv in self.levels:
                self.widen_[(lv, int(k))] = (
                    conformal_quantile(ek, q[lv]) if len(ek) >= self.min_scores else self.pooled_[lv]
                )
        return self

    def apply(self, p10, p50, p90, horizon_h, scale=None) -> dict[str, np.ndarray]:
        """Calibrated bands: {'p05', 'p10', 'p90', 'p95'} (for the default levels), nested and
        never crossing p50."""
        if not self.pooled_:
            raise RuntimeError("IntervalCalibrator: call fit() first")
        lo, md, hi = (np.asarray(v, float) for v in (p10, p50, p90))
        sc = self._scale(md, scale)
        b = self._buckets(horizon_h)
        out: dict[str, np.ndarray] = {}
        prev_lo, prev_hi = md, md
        for lv in sorted(self.levels):
            w = np.array([self.widen_.get((lv, int(k)), self.pooled_[lv]) for k in b]) * sc
            new_lo = np.minimum(lo - w, prev_lo)  # never crosses the median or the narrower band
            new_hi = np.maximum(hi + w, prev_hi)
            cl, ch = BANDS.get(lv, (f"lo_{round(lv * 100)}", f"hi_{round(lv * 100)}"))
            out[cl], out[ch] = new_lo, new_hi
            prev_lo, prev_hi = new_lo, new_hi
        return out

    def params(self) -> dict[str, Any]:
        return {
            "interval_calibration": "cqr",
            "calibration_rows": self.n_,
            **{f"widen_{round(lv * 100)}": round(v, 4) for lv, v in self.pooled_.items()},
        }


def calibrate_frame(calibrator: IntervalCalibrator, fc: pl.DataFrame, scale=None) -> pl.DataFrame:
    """``fc`` (p10, p50, p90, horizon_h, ...) with its bands replaced by the calibrated ones
    (p10/p90) and p05/p95 added; the raw band kept as p10_raw/p90_raw."""
    bands = calibrator.apply(fc["p10"], fc["p50"], fc["p90"], fc["horizon_h"], scale)
    return fc.with_columns(
        pl.col("p10").alias("p10_raw"),
        pl.col("p90").alias("p90_raw"),
        *[pl.Series(k, v) for k, v in bands.items()],
    )


def _calibrator_from(bt: pl.DataFrame, kwargs: dict, scale_col: str | None) -> IntervalCalibrator:
    sc = bt[scale_col].to_numpy() if scale_col else None
    return IntervalCalibrator(**kwargs).fit(bt["actual"], bt["p10"], bt["p50"], bt["p90"], bt["horizon_h"], sc)


def rolling_conformal(
    bt: pl.DataFrame,
    eval_origins: Sequence[Any],
    *,
    by: Sequence[str] = ("model",),
    window_origins: int = 28,
    min_origins: int = 7,
    scale_col: str | None = None,
    aci_gamma: float | None = None,
    **calibrator_kwargs: Any,
) -> pl.DataFrame:
    """Rolling conformal calibration of a rolling-origin backtest frame
    (origin, period_start, horizon_h, p10, p50, p90, actual, and the ``by`` columns).

    For every evaluation origin ``o`` and group, the calibrator learns from the latest
    ``window_origins`` earlier origins' rows whose target interval has ended by ``o``
    (``period_start + step <= o``, the step being the series' spacing) -- what a forecaster
    issuing at ``o`` really knows -- and is applied to the forecasts issued at ``o``. Origins
    with fewer than ``min_origins`` earlier origins are dropped (nothing honest to calibrate
    on). Returns the evaluation rows with calibrated p10/p90, new p05/p95 and p10_raw/p90_raw.

    ``aci_gamma``: adaptive conformal inference (Gibbs & Candes 2021) on top of the window: the
    quantile level used for a nominal coverage ``c`` moves after every origin whose target hours
    have all ended, ``level += aci_gamma * (miss_rate - (1 - c))`` (``miss_rate``: the share of that
    origin's rows outside its calibrated band), so a band that has been missing more than nominal
    widens at the next origin and one that has been over-covering narrows. The level starts at
    ``c`` and runs through every origin with ``min_origins`` earlier ones (evaluation or not: the
    origins before the evaluation ones warm it up); only ended origins feed it (no look-ahead).
    """
    evals = {pd.Timestamp(o).tz_convert("UTC") for o in eval_origins}
    levels = tuple(calibrator_kwargs.pop("levels", LEVELS))
    out = []
    for _, g in bt.group_by(list(by), maintain_order=True):
        g = g.sort("origin", "period_start")
        step = _step(g)
        origins = g["origin"].unique().sort().to_list()
        qlevel = {lv: lv for lv in levels}
        pending: list[tuple[Any, pl.DataFrame]] = []  # calibrated origins whose feedback is not yet known
        last = max((x for x in origins if pd.Timestamp(x).tz_convert("UTC") in evals), default=None)
        for i, o in enumerate(origins):
            if last is None or o > last:
                break
            is_eval = pd.Timestamp(o).tz_convert("UTC") in evals
            if not is_eval and aci_gamma is None:
                continue
            earlier = origins[max(0, i - window_origins) : i]
            if len(earlier) < min_origins:
                if is_eval:
                    log.warning("rolling_conformal: origin %s has only %d earlier origins; skipped", o, len(earlier))
                continue
            if aci_gamma is not None:
                pending = _aci_feedback(pending, o, step, qlevel, aci_gamma)
            cal = g.filter(
                pl.col("origin").is_in(earlier)
                & (pl.col("period_start") + step <= pl.lit(o))
                & pl.col("actual").is_not_null()
            )
            cur = g.filter(pl.col("origin") == o)
            kw = {**calibrator_kwargs, "levels": levels, "quantile_levels": dict(qlevel)}
            c = _calibrator_from(cal, kw, scale_col)
            fc = calibrate_frame(c, cur, cur[scale_col].to_numpy() if scale_col else None)
            if aci_gamma is not None:
                pending.append((o, fc))
                fc = fc.with_columns(*[pl.lit(qlevel[lv]).alias(f"aci_level_{round(lv * 100)}") for lv in levels])
            if is_eval:
                out.append(fc)
    if not out:
        raise ValueError("rolling_conformal: no evaluation origin had enough earlier origins")
    return pl.concat(out)


def _aci_feedback(
    pending: list[tuple[Any, pl.DataFrame]], origin: Any, step: dt.timedelta, qlevel: dict[float, float], gamma: float
) -> list[tuple[Any, pl.DataFrame]]:
    """Update the adaptive quantile levels (in place) with every pending origin whose target hours
    have all ended by ``origin`` (in issue order); return the ones still pending."""
    still = []
    for o, fc in pending:
        known = fc.filter(pl.col("actual").is_not_null())
        if fc["period_start"].max() + step > origin or known.is_empty():
            still.append((o, fc))
            continue
        for lv in qlevel:
            lo, hi = BANDS.get(lv, (f"lo_{round(lv * 100)}", f"hi_{round(lv * 100)}"))
            inside = ((known["actual"] >= known[lo]) & (known["actual"] <= known[hi])).mean()
            qlevel[lv] += gamma * ((1 - inside) - (1 - lv))
    return still


def _step(g: pl.DataFrame) -> dt.timedelta:
    """The series' spacing: the smallest positive gap between period starts."""
    gaps = g.sort("origin", "period_start")["period_start"].diff().drop_nulls()
    return gaps.filter(gaps > dt.timedelta(0)).min()


def periodic_conformal(
    bt: pl.DataFrame,
    *,
    every: pd.Timedelta = pd.Timedelta(days=1),
    window: pd.Timedelta = pd.Timedelta(days=14),
    by: Sequence[str] = ("model",),
    min_rows: int = 100,
    scale_col: str | None = None,
    **calibrator_kwargs: Any,
) -> pl.DataFrame:
    """Rolling conformal for frequent (e.g. hourly) origins: the calibration is refreshed at the
    start of every ``every`` period (UTC) from the rows of origins in the preceding ``window``
    whose target interval had ended by then, and applied to every origin of the period -- what a
    nightly recalibration does. Periods with fewer than ``min_rows`` such rows keep the raw band
    (p05/p95 null, ``calibrated`` false). Returns every row of ``bt`` with calibrated p10/p90,
    p05/p95, p10_raw/p90_raw and ``calibrated``."""
    out = []
    for _, g in bt.group_by(list(by), maintain_order=True):
        step = _step(g)
        first = pd.Timestamp(g["origin"].min()).floor(every)
        for start in pd.date_range(first, pd.Timestamp(g["origin"].max()), freq=every):
            s0 = pl.lit(start).cast(pl.Datetime("us", "UTC"))
            cur = g.filter((pl.col("origin") >= s0) & (pl.col("origin") < s0 + every))
            if cur.is_empty():
                continue
            cal = g.filter(
                (pl.col("origin") >= s0 - window)
                & (pl.col("period_start") + step <= s0)
                & pl.col("actual").is_not_null()
            )
            if cal.height < min_rows:
                out.append(
                    cur.with_columns(
                        pl.col("p10").alias("p10_raw"),
                        pl.col("p90").alias("p90_raw"),
                        pl.lit(None, pl.Float64).alias("p05"),
                        pl.lit(None, pl.Float64).alias("p95"),
                        pl.lit(False).alias("calibrated"),
                    )  # fmt: skip
                )
                continue
            c = _calibrator_from(cal, calibrator_kwargs, scale_col)
            sc = cur[scale_col].to_numpy() if scale_col else None
            out.append(calibrate_frame(c, cur, sc).with_columns(pl.lit(True).alias("calibrated")))
    return pl.concat(out, how="diagonal_relaxed")


class ConformalForecaster(Forecaster):
    """Any forecaster with calibrated p05/p10/p90/p95: what training registers and scoring uses.

    ``fit(history)``: the wrapped model is fitted ``cal_days`` days plus one ``horizon`` before
    the end of ``history`` and rolled forward (``update``, as between nightly retrains) over
    daily origins inside the history, the last one a horizon before its end; its errors there
    (every actual inside ``history``: no look-ahead) calibrate an :class:`IntervalCalibrator`.
    Then the wrapped model is fitted on all of ``history``. With too little history for
    ``min_cal_days`` origins the raw band is kept and p05/p95 are null (logged).

    ``future_exog(origin, index)`` (as in ``rolling_origin``) gives the weather the model would
    have known at each calibration origin. It must be the weather input scoring uses, or the band
    is calibrated for another error: production passes
    :func:`models.forecast.weather_inputs.exog_as_known_at` over the NWP feed (the latest issue
    published by each origin, persistence where none covers an hour), as ``score_load_entity``
    does at scoring time. The default ``"persisted"`` is diurnal persistence of the history's own
    exogenous columns before the origin (what scoring does without a feed; with a feed the band is
    then too wide: session 7's demo covered 100 %); ``"observed"`` uses the observed values (a
    perfect forecast: the band would under-state the weather error). ``predict`` returns the
    usual columns plus p05/p95 (and p10/p90 calibrated).
    """

    def __init__(
        self,
        make: Callable[[], Forecaster],
        horizon: pd.Timedelta,
        *,
        cal_days: int = 14,
        min_cal_days: int = 5,
        future_exog: Callable[[pd.Timestamp, pd.DatetimeIndex], Any] | str = "persisted",
        **calibrator_kwargs: Any,
    ):
        proto = make()
        super().__init__(time_col=proto.time_col, target=proto.target, max_fill_steps=proto.max_fill_steps)
        self.make, self.horizon, self.cal_days, self.min_cal_days = make, pd.Timedelta(horizon), cal_days, min_cal_days
        self.future_exog = future_exog
        self.calibrator_kwargs = calibrator_kwargs
        self.name, self.exog, self.min_history = proto.name, proto.exog, proto.min_history
        self.inner: Forecaster | None = None
        self.calibrator: IntervalCalibrator | None = None

    def fit(self, history: Any) -> Self:
        from models.forecast.backtest import rolling_origin

        df = to_pandas(history)
        times = pd.to_datetime(df[self.time_col], utc=True)
        end = times.max() + (times.sort_values().diff().min() if len(times) > 1 else pd.Timedelta(hours=1))
        start = times.min()
        origins = []
        for k in range(self.cal_days):
            o = end - self.horizon - pd.Timedelta(days=k)
            if o - start < self.min_history:
                break
            origins.append(o)
        origins.sort()
        self.calibrator = None
        if len(origins) >= self.min_cal_days:
            fx = self.future_exog
            if fx == "persisted":
                fx = self._persisted(df, times)
            elif fx == "observed":
                fx = None
            try:
                bt = rolling_origin(
                    self.make, df, origins, self.horizon, time_col=self.time_col, target=self.target,
                    refit_every=None, future_exog=fx,
                )  # fmt: skip
                self.calibrator = IntervalCalibrator(**self.calibrator_kwargs).fit(
                    bt["actual"], bt["p10"], bt["p50"], bt["p90"], bt["horizon_h"]
                )
            except (ValueError, ForecastOutputError) as exc:  # a gap or missing weather at a calibration origin
                log.warning(
                    "%s: interval calibration failed (%s: %s); raw p10-p90 band kept",
                    self.name,
                    type(exc).__name__,
                    exc,
                )
        else:
            log.warning(
                "%s: %d calibration origins fit in the history (need %d); raw p10-p90 band kept",
                self.name, len(origins), self.min_cal_days,
            )  # fmt: skip
        self.inner = self.make().fit(df)
        self.series = self.inner.series
        return self

    def _persisted(
        self, df: pd.DataFrame, times: pd.Series
    ) -> Callable[[pd.Timestamp, pd.DatetimeIndex], pd.DataFrame]:
        """future_exog for calibration origins: each exogenous column persisted (same hour 1-3 days
        earlier) from the hours before the origin only."""
        from models.forecast.tables import persist_diurnal

        def fx(origin: pd.Timestamp, idx: pd.DatetimeIndex) -> pd.DataFrame:
            before = (times < origin).to_numpy()
            out = {self.time_col: idx}
            for c in self.exog:
                observed = pd.Series(df.loc[before, c].to_numpy(float), index=pd.DatetimeIndex(times[before]))
                out[c] = persist_diurnal(pd.Series(np.nan, index=idx), observed.dropna())[0].to_numpy()
            return pd.DataFrame(out)

        return fx

    def update(self, history: Any) -> Self:
        if self.inner is None:
            return self.fit(history)
        self.inner = self.inner.update(history)
        self.series = self.inner.series
        return self

    def predict(self, horizon: int | pd.Timedelta, future_exog: Any = None) -> pl.DataFrame:
        if self.inner is None:
            raise RuntimeError(f"{self.name}: call fit() before predict()")
        fc = self.inner.predict(horizon, future_exog)
        if self.calibrator is None:
            return fc.with_columns(pl.lit(None, pl.Float64).alias("p05"), pl.lit(None, pl.Float64).alias("p95"))
        return calibrate_frame(self.calibrator, fc).drop("p10_raw", "p90_raw")

    def params(self) -> dict[str, Any]:
        inner = self.inner.params() if self.inner is not None else {"model": self.name}
        cal = self.calibrator.params() if self.calibrator is not None else {"interval_calibration": "none"}
        return {**inner, **cal, "calibration_days": self.cal_days}

    def _fit(self, s: PreparedSeries) -> None:  # pragma: no cover - fit() is overridden
        raise NotImplementedError

    def _predict(self, steps: int, future_exog: pd.DataFrame) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError
