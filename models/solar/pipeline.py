"""PV forecasting pipelines for one feeder's fleet: the nightly training and the hourly scoring,
storage-free (the load side and the shared semantics: ``models.forecast.pipeline``).

Training backtests the quantile model on every hourly origin after the cutoff beside smart
persistence (pinball decides) and fits it on the whole window; with weather-forecast issues the
forecast-weather features join, each origin seeing only the issues published by the end of its hour.
Scoring uses the champion (with forecast weather when it was trained with it), else smart persistence
within [0, clear sky].
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd
import polars as pl

from models.forecast.metrics import comparison_table, finite_metrics, score_backtest
from models.forecast.pipeline import HOUR, Scored
from models.registry import Trained, backtest_id, champion_failures
from models.solar.forecast import bounded_persistence, solar_backtest


def train_solar_entity(
    entity: str,
    obs: pd.DataFrame,
    *,
    make: Callable[[], Any],
    capacity_kw: float,
    horizons: list[int],
    cutoff: pd.Timestamp,
    window_end: pd.Timestamp,
    weather_issues: pd.DataFrame | None = None,
    params: Mapping[str, Any] | None = None,
) -> Trained:
    """Hold-out backtest of ``make()`` (a :class:`models.solar.SolarXGBForecaster`) on the hourly origins
    of ``obs`` from ``cutoff`` on, beside smart persistence; the model fitted on the whole window is the
    candidate (pinball decides). With ``weather_issues`` (NWP issues: issued_at, valid_at, ghi_wm2,
    temp_air_c) the forecast-weather features join, each origin seeing only issues published by then."""
    from models.forecast.plots import forecast_vs_actual

    nwp = None if weather_issues is None or len(weather_issues) == 0 else weather_issues
    bt, base = solar_backtest(make, obs, capacity_kw, horizons, cutoff, nwp=nwp)
    scores = score_backtest(pl.concat([bt, base]))
    metrics = finite_metrics(scores.filter(pl.col("model") == "solar_xgboost").row(0, named=True))
    bid = backtest_id("solar", entity, obs.index[0], window_end, cutoff, max(horizons), nwp is not None)

    def rescore(m) -> dict[str, float]:
        cbt, _ = solar_backtest(lambda: copy.deepcopy(m), obs, capacity_kw, horizons, cutoff, nwp=nwp)
        return finite_metrics(score_backtest(cbt).row(0, named=True))

    model = make().fit(obs, nwp)
    daily_origins = bt.filter(pl.col("origin").dt.hour() == cutoff.hour)
    run_params = {"model": "solar_xgboost", "feeder_id": entity, "capacity_kw_dc": capacity_kw,
                  "horizon_hours": max(horizons), "forecast_weather": nwp is not None,
                  **dict(params or {}), "train_start": str(obs.index[0]), "train_end": str(window_end)}  # fmt: skip
    report = {"scores": comparison_table(scores, rank_by="pinball").drop("mape"), "backtest": bt}
    figures = {"forecast_vs_actual.png": forecast_vs_actual(daily_origins if daily_origins.height else bt)}
    return Trained(model, metrics, bid, "pinball", False, rescore, run_params, figures, report)


def score_solar_entity(
    champion: Callable[[], tuple[Any, str]],
    obs: pd.DataFrame,
    future: pd.DataFrame,
    capacity_kw: float,
    horizon_hours: int,
    *,
    weather_issues: pd.DataFrame | None = None,
) -> Scored:
    """PV forecast from the last hour of ``obs`` over ``future`` (clear-sky power and sun position of the
    next hours): the champion (with forecast weather if it was trained with it: the issues published by
    the end of the origin hour), else smart persistence within [0, clear sky]."""
    issued_at = pd.Timestamp(obs.index[-1]).tz_convert("UTC")
    weather = None
    try:
        model, version = champion()
        if max(model.horizons) < horizon_hours:
            raise LookupError(f"champion v{version} forecasts {max(model.horizons)} h ahead; {horizon_hours} h asked")
        uses_nwp = any(c.startswith("nwp_") for c in getattr(model, "_columns", ()))
        nwp = None
        if uses_nwp:
            nwp = _published(weather_issues, issued_at + HOUR)
            weather = _issue_use(nwp, issued_at + HOUR, future.index)
        fc = model.predict(obs, future, nwp).filter(pl.col("horizon_h") <= horizon_hours)
        reason = None
    except champion_failures(ValueError) as exc:  # the solar model raises ValueError for features it cannot build
        reason = f"{type(exc).__name__}: {exc}"
        fc = bounded_persistence(obs, future, capacity_kw)
        version = "fallback"
    return Scored(fc, version, reason, issued_at, weather)


def _published(issues: pd.DataFrame | None, known_at: pd.Timestamp) -> pd.DataFrame:
    """The issues published at or before ``known_at`` (an empty frame with the columns when there are none)."""
    cols = ["issued_at", "valid_at", "ghi_wm2", "temp_air_c"]
    if issues is None or len(issues) == 0:
        return pd.DataFrame(
            {c: pd.Series([], dtype="datetime64[us, UTC]" if c.endswith("_at") else float) for c in cols}
        )
    fc = issues.to_pandas() if isinstance(issues, pl.DataFrame) else issues
    return fc[pd.to_datetime(fc["issued_at"], utc=True) <= known_at][cols]


def _issue_use(nwp: pd.DataFrame, known_at: pd.Timestamp, hours: pd.DatetimeIndex) -> dict[str, Any]:
    """How many forecast hours the newest published issue covers, an older one, or none (the model then
    routes the missing forecast-weather features)."""
    if nwp.empty:
        return {"from_latest_issue": 0, "from_older_issue": 0, "missing": len(hours), "latest_issue": None,
                "issue_age_h": None}  # fmt: skip
    issued = pd.to_datetime(nwp["issued_at"], utc=True)
    valid = pd.to_datetime(nwp["valid_at"], utc=True)
    latest = issued.max()
    covered_latest = set(valid[issued == latest])
    covered = set(valid)
    n_latest = sum(t in covered_latest for t in hours)
    n_any = sum(t in covered for t in hours)
    return {"from_latest_issue": n_latest, "from_older_issue": n_any - n_latest, "missing": len(hours) - n_any,
            "latest_issue": latest.isoformat(), "issue_age_h": round((known_at - latest) / pd.Timedelta(hours=1), 2)}  # fmt: skip
