"""Forecasting pipelines for one entity: what the nightly training and the hourly scoring do, storage-free.

The Dagster assets (``assets/forecasting.py``) read the lake, call these and write the results; the
champion policy is :meth:`models.registry.ModelRegistry.challenge` on the :class:`~models.registry.Trained`
returned here (shared with grid ML, ``models.grid.pipelines``). Nothing here touches storage, MLflow
or Dagster: the champion comes in as a loader (``champion() -> (model, version)``) that may raise one of
:func:`models.registry.champion_failures`.

Training (:func:`train_load_entity`; PV: ``models.solar.pipeline.train_solar_entity``)
    Every candidate is backtested on the same origins (load: the trailing daily origins; PV: every hourly
    origin after the cutoff) beside a baseline; the best on ``rank_metric`` is fitted on the whole window
    and becomes the candidate. Its ``rescore`` refits a copy of the champion at each origin exactly like
    the candidate, so the two are compared on the same backtest (a nightly run's backtest never equals
    the one the champion was scored on).

Scoring (:func:`score_load_entity`; PV: ``models.solar.pipeline.score_solar_entity``)
    The origin (``issued_at``) is the start of the latest hour of data; that hour is complete, and so
    known, at ``issued_at + 1 h`` (``known_at``). Forecast weather: for every hour ahead, the newest
    weather-forecast issue published at or before ``known_at`` (``models.forecast.weather_inputs``),
    an older issue where that one is missing, then diurnal persistence of observations before
    ``known_at``; never an issue or an observation from later (no look-ahead). The counts go to the
    metadata. If the champion cannot be used (none, unloadable, too little history, missing weather, a
    horizon it was not built for), the documented fallback forecasts: the daily seasonal naive baseline
    for load, smart persistence within [0, clear sky] for PV; ``version='fallback'`` and the reason.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from models.forecast.backtest import trailing_backtest
from models.forecast.base import Forecaster
from models.forecast.data import ForecastInputError, ForecastOutputError
from models.forecast.fallback import forecast_with_fallback
from models.forecast.metrics import comparison_table, finite_metrics, score_backtest
from models.forecast.tables import SYSTEM, forecast_rows
from models.forecast.weather_inputs import future_weather
from models.registry import Trained, backtest_id, champion_failures

HOUR = pd.Timedelta(hours=1)
DAY = pd.Timedelta(days=1)


@dataclass
class Scored:
    """One entity's issued forecast: the forecaster's rows (period_start, horizon_h, p10, p50, p90, model),
    the champion version used (or ``'fallback'``), why the champion was not used, and where the
    forecast weather came from (:func:`models.forecast.weather_inputs.future_weather`'s counts)."""

    forecast: pl.DataFrame
    version: str
    reason: str | None
    issued_at: pd.Timestamp
    weather: dict[str, Any] | None = None


@dataclass
class ScoringRun:
    """One scoring run over entities: the rows for ``gold_load_forecast`` / ``gold_solar_forecast``
    (:func:`models.forecast.tables.forecast_rows`) and each entity's :class:`Scored`."""

    rows: pl.DataFrame
    scored: dict[str, Scored]

    @property
    def versions(self) -> dict[str, str]:
        return {e: s.version for e, s in self.scored.items()}

    @property
    def fallbacks(self) -> dict[str, str]:
        return {e: s.reason for e, s in self.scored.items() if s.reason}

    @property
    def weather(self) -> dict[str, dict[str, Any]]:
        return {e: s.weather for e, s in self.scored.items() if s.weather is not None}


def score_entities(
    jobs: Iterable[tuple[str, Callable[[], Scored]]],
    day: dt.date,
    *,
    fallback: str,
    warn: Callable[[str], None] | None = None,
) -> ScoringRun:
    """Run every entity's scoring (``jobs``: (entity, a call of :func:`score_load_entity` or
    ``models.solar.pipeline.score_solar_entity``)) and collect the forecast-table rows of partition
    ``day`` (level ``SYSTEM`` for the system total, else feeder); each fallback is reported through
    ``warn`` with ``fallback`` (what was issued instead). Raises ValueError when ``jobs`` is empty."""
    scored, frames = {}, []
    for entity, run in jobs:
        s = scored[entity] = run()
        if s.reason and warn is not None:
            warn(f"{entity}: champion not used ({s.reason}); {fallback}")
        level = SYSTEM if entity == SYSTEM else "feeder"
        frames.append(forecast_rows(s.forecast, day, level, entity, s.issued_at, s.version, s.reason))
    if not frames:
        raise ValueError("score_entities: no entity to score")
    return ScoringRun(pl.concat(frames), scored)


def with_champion_row(table: pl.DataFrame, champion: Mapping[str, float] | None, version: str | None) -> pl.DataFrame:
    """The candidates' comparison table plus the champion's scores on the same backtest (if any)."""
    if not champion:
        return table
    row = {"model": f"champion v{version}", **{k: champion.get(k) for k in table.columns if k not in ("rank", "model")}}
    return pl.concat([table, pl.DataFrame([row])], how="diagonal_relaxed")


# ------------------------------------------------------------------------------------------- load
def train_load_entity(
    entity: str,
    series: pd.DataFrame,
    *,
    makers: Mapping[str, Callable[[], Forecaster]],
    baseline: Callable[[], Forecaster],
    horizon: pd.Timedelta,
    backtest_days: int,
    rank_metric: str,
    window_end: pd.Timestamp,
    params: Mapping[str, Any] | None = None,
    future_exog: Callable[[pd.Timestamp, pd.DatetimeIndex], Any] | None = None,
) -> Trained:
    """Backtest every candidate of ``makers`` and ``baseline`` on the same trailing origins of ``series``
    (period_start, mean_kw[, exog]); fit the best on ``rank_metric`` on the whole series. ``future_exog``
    is the weather each backtest origin sees (``models.forecast.weather_inputs.exog_as_known_at``: the
    NWP issues as scoring reads them; None: the observed weather, a perfect forecast). Raises
    ValueError (ForecastInputError and friends) when the entity cannot be trained (too little history,
    gaps, a constant series, missing weather). ``report``: ``scores`` (the comparison table),
    ``candidate_scores`` (rank metric per candidate), ``backtest`` (the winner's rows)."""
    from models.forecast.plots import forecast_vs_actual

    bts = {k: trailing_backtest(m, series, horizon, backtest_days, future_exog) for k, m in makers.items()}
    base_bt = trailing_backtest(baseline, series, horizon, backtest_days, future_exog)
    scores = score_backtest(pl.concat([*bts.values(), base_bt]))
    rank = {k: scores.filter(pl.col("model") == b["model"][0])[rank_metric].item() for k, b in bts.items()}
    best = min(rank, key=lambda k: (not np.isfinite(rank[k]), rank[k]))
    bt = bts[best]
    metrics = finite_metrics(scores.filter(pl.col("model") == bt["model"][0]).row(0, named=True))
    bid = backtest_id("load", entity, series["period_start"].iloc[0], window_end, backtest_days, horizon)

    def rescore(m: Forecaster) -> dict[str, float]:
        cbt = trailing_backtest(lambda: copy.deepcopy(m), series, horizon, backtest_days, future_exog)
        return finite_metrics(score_backtest(cbt).row(0, named=True))

    model = makers[best]().fit(series)
    run_params = {**model.params(), "entity_id": entity, **dict(params or {}),
                  "train_start": str(series["period_start"].iloc[0]), "train_end": str(window_end)}  # fmt: skip
    report = {
        "scores": comparison_table(scores, rank_by=rank_metric),
        "candidate_scores": {k: float(v) for k, v in rank.items()},
        "backtest": bt,
    }
    return Trained(model, metrics, bid, rank_metric, False, rescore, run_params,
                   {"forecast_vs_actual.png": forecast_vs_actual(bt)}, report)  # fmt: skip


def score_load_entity(
    champion: Callable[[], tuple[Forecaster, str]],
    history: pl.DataFrame,
    horizon: pd.Timedelta,
    *,
    weather_issues: Any = None,
    observed_weather: pl.DataFrame | None = None,
) -> Scored:
    """Forecast ``horizon`` ahead of the last hour of ``history`` (period_start, mean_kw[, temp_air_c])
    with the champion, its future temperature from ``weather_issues`` (the weather_forecast silver rows:
    issued_at, valid_at, temp_air_c) as known at the origin, else persisted ``observed_weather``
    (observation_time, temp_air_c); the daily seasonal naive fallback if the champion cannot be used."""
    issued_at = pd.Timestamp(history["period_start"].max()).tz_convert("UTC")
    weather = None
    try:
        model, version = champion()
        fx = None
        if model.exog:
            idx = pd.date_range(issued_at + HOUR, periods=int(horizon / HOUR), freq="1h")
            obs = (
                observed_weather
                if observed_weather is not None
                else history.select(pl.col("period_start").alias("observation_time"), "temp_air_c")
            )
            fx, weather = future_weather(weather_issues, obs, issued_at + HOUR, idx)
        fc = model.update(history.to_pandas()).predict(horizon, fx)
        reason = None
    except champion_failures(
        ForecastInputError, ForecastOutputError
    ) as exc:  # the registry's and the model's own refusals
        reason = f"{type(exc).__name__}: {exc}"
        fc, info = forecast_with_fallback(_seasonal_naive_daily(), history.select("period_start", "mean_kw"), horizon)
        if info["fallback"]:
            reason = f"{reason}; then {info['reason']}"
        version = "fallback"
    return Scored(fc, version, reason, issued_at, weather)


def _seasonal_naive_daily() -> Forecaster:
    from models.forecast.baselines import SeasonalNaive

    return SeasonalNaive(DAY)
