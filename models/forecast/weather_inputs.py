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

from collections.abc import Callable, Sequence
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


def exog_as_known_at(
    forecasts: Any, observed: Any, column: str = "temp_air_c"
) -> Callable[[pd.Timestamp, pd.DatetimeIndex], pd.DataFrame]:
    """``future_exog(origin, index)`` for backtests and interval calibration
    (``models.forecast.backtest.rolling_origin``, ``models.forecast.conformal.ConformalForecaster``):
    at each origin, ``column`` from the latest issue published at or before it, else persisted
    observations before it (:func:`weather_for_origin`) -- the input scoring hands the model
    (:func:`future_weather` at ``known_at``, the first forecast hour), so backtest errors and the
    bands calibrated on them are those of the weather the forecasts are issued with. ``forecasts``
    None or empty: persistence alone (what scoring does without a feed)."""
    fc = _issues(forecasts, column)

    def fx(origin: pd.Timestamp, index: pd.DatetimeIndex) -> pd.DataFrame:
        return weather_for_origin(fc, observed, origin, index, column)[0][["period_start", column]]

    return fx


def _issues(forecasts: Any, column: str) -> pd.DataFrame:
    """The forecast issues as pandas; None or empty: an empty frame of the same columns (persistence alone)."""
    fc = to_pandas(forecasts) if forecasts is not None else None
    if fc is not None and not fc.empty:
        return fc
    utc = "datetime64[us, UTC]"
    return pd.DataFrame(
        {
            "issued_at": pd.Series([], dtype=utc),
            "valid_at": pd.Series([], dtype=utc),
            column: pd.Series([], dtype=float),
        }
    )


def future_weather(
    forecasts: Any, observed: Any, known_at: pd.Timestamp, valid_times: pd.DatetimeIndex, column: str = "temp_air_c"
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """:func:`weather_for_origin` with the fallback told apart, for the scoring assets' metadata.

    Each hour comes from the newest issue published at or before ``known_at`` that covers it; where the
    newest does not reach the hour, from an older issue; then by diurnal persistence of observations
    before ``known_at``. Returns (period_start, ``column``) and ``{"from_latest_issue": n,
    "from_older_issue": n, "persisted": n, "missing": n, "latest_issue": ISO time or None,
    "issue_age_h": hours from the latest issue to known_at}``: the latest issue is the newest one in the
    feed published by ``known_at`` (an issue after it is never read), so a missing issue shows as an
    age beyond the issue interval (6 h for four issues a day) and a stopped feed as hours persisted."""
    fc = _issues(forecasts, column)
    known_at = pd.Timestamp(known_at).tz_convert("UTC")
    got, counts = weather_for_origin(fc, observed, known_at, valid_times, column)
    issued = _utc(fc["issued_at"])
    published = issued[issued <= known_at]
    latest = published.max() if len(published) else None
    used = pd.to_datetime(got["issued_at"], utc=True)
    n_latest = int((used == latest).sum()) if latest is not None else 0
    out = {
        "from_latest_issue": n_latest,
        "from_older_issue": counts["from_forecast"] - n_latest,
        "persisted": counts["persisted"],
        "missing": counts["missing"],
        "latest_issue": None if latest is None else latest.isoformat(),
        "issue_age_h": None if latest is None else round((known_at - latest) / pd.Timedelta(hours=1), 2),
    }
    return got[["period_start", column]], out
