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
        raise ValueError(f"power has {int(power.isna().sum())} missing value(s), first at {power.index[power.isna()][0]}")
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
