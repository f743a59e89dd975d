"""Ramp events: power changing by more than ``threshold`` within ``window``.

A ramp starts at t if some value in (t, t+window] differs from P(t) by at least the threshold;
overlapping/adjacent detections of the same direction merge into one event. Works on actuals
and on forecasts alike (feeders care about forecast ramps to pre-position reserves).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl


def detect_ramps(power: pd.Series, threshold: float, window: pd.Timedelta) -> pl.DataFrame:
    """Return events: start, end, direction ('up'|'down'), change (signed), max_rate (per hour)."""
    if not isinstance(power.index, pd.DatetimeIndex) or power.index.tz is None:
        raise ValueError("power must be indexed by tz-aware timestamps")
    if threshold <= 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    if power.isna().any():
        raise ValueError(
            f"power has {int(power.isna().sum())} missing value(s), first at {power.index[power.isna()][0]}"
        )
    step = power.index[1] - power.index[0]
    k = int(pd.Timedelta(window) / step)
    if k < 1:
        raise ValueError(f"window {window} is shorter than the series step {step}")
    v = power.to_numpy(float)
    n = len(v)
    events: list[dict] = []
    cur = None
    for i in range(n - 1):
        seg = v[i + 1 : min(n, i + k + 1)]
        d = seg - v[i]
        j_up, j_dn = int(np.argmax(d)), int(np.argmin(d))
        hit = None
        if d[j_up] >= threshold:
            hit = ("up", i + 1 + j_up)
        if d[j_dn] <= -threshold and (hit is None or -d[j_dn] > d[j_up]):
            hit = ("down", i + 1 + j_dn)
        if hit is None:
            continue
        direction, end = hit
        if cur is not None and cur["direction"] == direction and i <= cur["end_i"]:
            cur["end_i"] = max(cur["end_i"], end)
        else:
            if cur is not None:
                events.append(cur)
            cur = {"direction": direction, "start_i": i, "end_i": end}
    if cur is not None:
        events.append(cur)
    rows = []
    for e in events:
        a, b = e["start_i"], e["end_i"]
        hours = (b - a) * step / pd.Timedelta(hours=1)
        rows.append(
            {
                "start": power.index[a],
                "end": power.index[b],
                "direction": e["direction"],
                "change": float(v[b] - v[a]),
                "max_rate_per_h": float(np.max(np.abs(np.diff(v[a : b + 1]))) / (step / pd.Timedelta(hours=1))),
                "duration_h": float(hours),
            }
        )
    schema = {
        "start": pl.Datetime("us", "UTC"),
        "end": pl.Datetime("us", "UTC"),
        "direction": pl.Utf8,
        "change": pl.Float64,
        "max_rate_per_h": pl.Float64,
        "duration_h": pl.Float64,
    }
    if not rows:
        return pl.DataFrame(schema=schema)
    df = pd.DataFrame(rows)
    return pl.from_pandas(df).with_columns(pl.col("start", "end").cast(pl.Datetime("us", "UTC")))


def forecast_ramps(fc: pl.DataFrame, threshold_kw_per_15min: float) -> pl.DataFrame:
    """Ramps in the p50 of the *latest* issue per (level, entity_id) of a PV forecast table
    (gold_solar_forecast rows): every step whose rate exceeds ``threshold_kw_per_15min``, merged into
    events by :func:`detect_ramps` (window = one forecast step, threshold scaled to it). Columns:
    level, entity_id, issued_at, start, end, direction, change_kw, max_rate_kw_per_15min, duration_h."""
    out = []
    for (level, entity), g in fc.group_by(["level", "entity_id"], maintain_order=True):
        g = g.filter(pl.col("issued_at") == pl.col("issued_at").max()).sort("period_start")
        if g.height < 2:
            continue
        s = pd.Series(g["p50"].to_numpy(), index=pd.DatetimeIndex(g["period_start"].to_pandas()))
        step = s.index[1] - s.index[0]
        per15 = step / pd.Timedelta(minutes=15)
        ev = detect_ramps(s, threshold_kw_per_15min * per15, step)
        if ev.height:
            out.append(
                ev.select(
                    pl.lit(level).alias("level"),
                    pl.lit(entity).alias("entity_id"),
                    pl.lit(g["issued_at"][0]).alias("issued_at"),
                    "start",
                    "end",
                    "direction",
                    pl.col("change").alias("change_kw"),
                    (pl.col("max_rate_per_h") / 4.0).alias("max_rate_kw_per_15min"),
                    "duration_h",
                )  # fmt: skip
            )
    schema = {"level": pl.Utf8, "entity_id": pl.Utf8, "issued_at": pl.Datetime("us", "UTC"), "start": pl.Datetime("us", "UTC"),
              "end": pl.Datetime("us", "UTC"), "direction": pl.Utf8, "change_kw": pl.Float64, "max_rate_kw_per_15min": pl.Float64, "duration_h": pl.Float64}  # fmt: skip
    return pl.concat(out).cast(schema) if out else pl.DataFrame(schema=schema)
