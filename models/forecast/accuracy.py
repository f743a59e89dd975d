"""Accuracy after the fact: issued forecasts scored once their period has passed, and drift.

:func:`forecast_accuracy` joins issued forecast rows (``gold_load_forecast``: level, entity_id,
issued_at, period_start, horizon_h, p10/p50/p90, p05/p95 if any, model) with the load that then happened and rolls
the errors up by entity, model and lead band over local days and ISO weeks (rows of
``gold_forecast_accuracy``). Only periods that have fully passed at ``as_of`` are scored; a
forecast whose actual is missing is left out (and counted in ``n`` of nothing), never scored as 0.

:func:`drift_status` is the retraining rule: the champion's MAPE over the last ``window`` days
against its backtest MAPE; above ``multiple`` times it (e.g. 3 % -> 8 % with multiple 2.5) the
model is drifting and is marked for retraining at the next nightly run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl

#: lead-time bands (hours, inclusive) the accuracy table reports
LEAD_BANDS = ((0, 6), (6, 24), (24, 48), (48, 72))


def _band(h: pl.Expr) -> pl.Expr:
    e = pl.lit(f">{LEAD_BANDS[-1][1]}h")
    for lo, hi in reversed(LEAD_BANDS):
        e = pl.when((h > lo) & (h <= hi)).then(pl.lit(f"{lo}-{hi}h")).otherwise(e)
    return e


def scored_errors(
    forecasts: pl.DataFrame, actuals: pl.DataFrame, as_of: pd.Timestamp, step: pd.Timedelta = pd.Timedelta(hours=1)
) -> pl.DataFrame:
    """One row per issued forecast whose period ended by ``as_of`` and has an actual: the forecast
    columns plus ``actual``, ``err`` (p50 - actual) and ``lead_band``. ``actuals`` holds
    entity_id, period_start, mean_kw."""
    end = pd.Timestamp(as_of).tz_convert("UTC") - step
    a = actuals.select(
        "entity_id", pl.col("period_start").cast(pl.Datetime("us", "UTC")), pl.col("mean_kw").alias("actual")
    )
    f = forecasts.with_columns(pl.col("period_start").cast(pl.Datetime("us", "UTC"))).filter(
        pl.col("period_start") <= end
    )
    return (
        f.join(a, on=["entity_id", "period_start"], how="inner")
        .filter(pl.col("actual").is_not_null())
        .with_columns((pl.col("p50") - pl.col("actual")).alias("err"), _band(pl.col("horizon_h")).alias("lead_band"))
    )


def _metrics() -> list[pl.Expr]:
    a, e = pl.col("actual"), pl.col("err")
    pin = lambda q, c: pl.max_horizontal(q * (a - pl.col(c)), (q - 1) * (a - pl.col(c)))  # noqa: E731
    nz = a.abs() > 0
    return [
        pl.len().alias("n"),
        (100 * (e.abs() / a.abs()).filter(nz).mean()).alias("mape"),
        (100 * e.sum() / a.sum()).alias("bias_pct"),
        ((pin(0.1, "p10") + pin(0.5, "p50") + pin(0.9, "p90")) / 3).mean().alias("pinball"),
        ((e.abs() / a.abs()).filter(nz) <= 0.05).mean().alias("within_5pct"),
        ((a >= pl.col("p10")) & (a <= pl.col("p90"))).mean().alias("coverage_80"),
        # over the rows that carry a 90 % band (calibrated models; null for fallbacks)
        ((a >= pl.col("p05")) & (a <= pl.col("p95"))).filter(pl.col("p05").is_not_null()).mean().alias("coverage_90"),
    ]


def forecast_accuracy(forecasts: pl.DataFrame, actuals: pl.DataFrame, as_of: pd.Timestamp, tz: str) -> pl.DataFrame:
    """Daily and weekly accuracy by (level, entity, model, lead band): columns ``period``
    ('day' | 'week'), ``period_date`` (the local day, or the Monday of the ISO week), level,
    entity_id, model, lead_band, n, mape, bias_pct, pinball, within_5pct, coverage_80, coverage_90
    (null where no forecast of the group had a p05/p95 band)."""
    for c in ("p05", "p95"):
        if c not in forecasts.columns:
            forecasts = forecasts.with_columns(pl.lit(None, pl.Float64).alias(c))
    s = scored_errors(forecasts, actuals, as_of).with_columns(
        pl.col("period_start").dt.convert_time_zone(tz).dt.date().alias("_day")
    )
    keys = ["level", "entity_id", "model", "lead_band"]
    day = s.group_by("_day", *keys).agg(_metrics()).with_columns(pl.lit("day").alias("period"))
    week = (
        s.with_columns((pl.col("_day") - pl.duration(days=pl.col("_day").dt.weekday() - 1)).alias("_day"))
        .group_by("_day", *keys)
        .agg(_metrics())
        .with_columns(pl.lit("week").alias("period"))
    )
    return (
        pl.concat([day, week])
        .rename({"_day": "period_date"})
        .select(
            "period",
            "period_date",
            *keys,
            "n",
            "mape",
            "bias_pct",
            "pinball",
            "within_5pct",
            "coverage_80",
            "coverage_90",
        )
        .sort("period", "period_date", *keys)
    )


def drift_status(
    errors: pl.DataFrame,
    model: str,
    backtest_mape: float,
    as_of: pd.Timestamp,
    *,
    window_days: int = 7,
    multiple: float = 2.0,
    min_points: int = 48,
) -> dict:
    """The champion's recent MAPE (``errors`` from :func:`scored_errors`, the last ``window_days``
    before ``as_of``) against ``backtest_mape``: {model, recent_mape, backtest_mape, ratio,
    multiple, n, drifting}. Too few scored points -> ``drifting`` False with ``recent_mape`` None."""
    if backtest_mape <= 0 or not np.isfinite(backtest_mape):
        raise ValueError(f"backtest MAPE of {model} must be a positive number, got {backtest_mape}")
    t1 = pd.Timestamp(as_of).tz_convert("UTC")
    w = errors.filter(
        (pl.col("model") == model)
        & (pl.col("period_start") >= t1 - pd.Timedelta(days=window_days))
        & (pl.col("actual").abs() > 0)
    )
    out = {
        "model": model,
        "backtest_mape": float(backtest_mape),
        "multiple": multiple,
        "window_days": window_days,
        "n": w.height,
    }
    if w.height < min_points:
        return out | {"recent_mape": None, "ratio": None, "drifting": False}
    recent = float(100 * (w["err"].abs() / w["actual"].abs()).mean())
    ratio = recent / backtest_mape
    return out | {"recent_mape": recent, "ratio": ratio, "drifting": ratio > multiple}
