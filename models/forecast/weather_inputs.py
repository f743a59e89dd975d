"""Forecast weather as a model input: the latest issue known at each origin, never anything later.

A weather service issues forecasts several times a day (``issued_at``: when the issue was
published), each covering valid hours up to two days or more ahead. At a forecast origin the only
honest input is, for every valid hour, the value from the *latest issue published at or before the
origin* -- an observation or an issue from after the origin would be look-ahead.

:func:`asof_issue` answers that for any number of (origin, valid_at) pairs at once (a
``merge_asof`` by valid hour); :func:`weather_for_origin` adds the fallback for one origin: hours
no earlier issue covers (missing issues, a feed that stopped) are filled by diurnal persistence of
observations before the origin (``models.forecast.tables.future_temperature``'s rule), and counted.

Expected format on real data (the ``weather_forecast`` landing source, or a user's NWP export):
one row per (station, issue, valid hour): ``issued_at`` and ``valid_at`` UTC (valid = period
start of the hour), ``lead_h``, and the variables (``temp_air_c``, ``ghi_wm2``, ``dni_wm2``,
``dhi_wm2``, ``cloud_cover``, ``wind_speed_ms``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from models.forecast.data import to_pandas
from models.forecast.tables import persist_diurnal


def _utc(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s, utc=True).astype("datetime64[us, UTC]")


def asof_issue(forecasts: Any, requests: Any, columns: Sequence[str]) -> pd.DataFrame:
    """For every row of ``requests`` (``origin``, ``valid_at``): ``columns`` from the latest issue
    with ``issued_at <= origin`` that covers ``valid_at``, plus that ``issued_at`` (NaT if none).
    Rows keep the order of ``requests``."""
    fc = to_pandas(forecasts)
    missing = [c for c in ("issued_at", "valid_at", *columns) if c not in fc.columns]
    if missing:
        raise ValueError(f"weather forecasts lack column(s) {missing}; have {list(fc.columns)}")
    fc = fc[["issued_at", "valid_at", *columns]].copy()
    fc["issued_at"], fc["valid_at"] = _utc(fc["issued_at"]), _utc(fc["valid_at"])  # (an empty feed keeps its dtypes)
    fc = fc.sort_values("issued_at")
    rq = to_pandas(requests)[["origin", "valid_at"]].copy()
    rq["origin"], rq["valid_at"] = _utc(rq["origin"]), _utc(rq["valid_at"])
    rq["_pos"] = np.arange(len(rq))
    out = pd.merge_asof(
        rq.sort_values("origin"), fc, left_on="origin", right_on="issued_at", by="valid_at", direction="backward"
    )
    return out.sort_values("_pos").drop(columns="_pos").reset_index(drop=True)


def weather_for_origin(
    forecasts: Any, observed: Any, origin: pd.Timestamp, valid_times: pd.DatetimeIndex, column: str = "temp_air_c"
) -> tuple[pd.DataFrame, dict[str, int]]:
    """``column`` for ``valid_times`` as known at ``origin``: the latest issue at or before it, else
    the same hour 1, 2 or 3 days earlier among observations *before the origin*; still unknown
    hours stay NaN (the model then raises). Returns (period_start, column, issued_at) and counts
    ``{"from_forecast": n, "persisted": m, "missing": k}``."""
    origin = pd.Timestamp(origin).tz_convert("UTC")
    valid_times = pd.DatetimeIndex(valid_times).tz_convert("UTC")
    got = asof_issue(forecasts, pd.DataFrame({"origin": origin, "valid_at": valid_times}), [column])
    vals = pd.Series(got[column].to_numpy(float), index=valid_times)
    counts = {"from_forecast": int(vals.notna().sum())}
    obs = to_pandas(observed)
    t = pd.DatetimeIndex(pd.to_datetime(obs["observation_time"], utc=True))
    s = pd.Series(obs[column].to_numpy(float), index=t)
    s = s[s.index < origin].dropna()  # never an observation from the origin on
    vals, counts["persisted"] = persist_diurnal(vals, s)
    counts["missing"] = int(vals.isna().sum())
    return pd.DataFrame(
        {"period_start": valid_times, column: vals.to_numpy(), "issued_at": got["issued_at"].to_numpy()}
    ), counts
