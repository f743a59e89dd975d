"""Forecasting assets: nightly training (load per feeder + system, PV per feeder), hourly scoring
into ``gold_load_forecast`` / ``gold_solar_forecast``, and the daily peak-demand analysis.

The models live in ``models.forecast`` / ``models.solar`` and the MLflow policy in
``models.registry`` (through ``MlflowResource.registry()``); this module only reads the lake,
runs the backtests, hands the results to the registry and writes the gold tables.

Champion/challenger on the *same* backtest
------------------------------------------
Every nightly run backtests on new data, so its ``backtest_id`` (entity, data span, origins,
horizon) differs from the one the champion was scored on, and ``promote_if_better`` would never
find the two comparable. Training therefore re-scores the current champion's recipe (a copy of
the champion, refitted at each origin exactly like the candidate) on the candidate's backtest
and records that score on the champion version before promotion is decided. Both numbers are in
the comparison table of the asset metadata.

Forecast semantics
------------------
* Partition ``D`` of the forecast tables holds the forecasts *issued during* local day ``D``: the
  origin (``issued_at``) is the end of the latest hour of data before the end of ``D``. The hourly
  schedule re-materialises today's partition, so the latest issue follows the data; a backfill of
  a past day issues from the end of that day (a day-ahead forecast of ``D+1``).
* Future temperature for the load models: observed silver_weather up to the end of the partition
  day, and beyond it diurnal persistence (the same hour 1-3 days earlier): there is no weather-
  forecast table yet, and reading observations past the issue day would leak the future into
  backfills. The metadata counts how many hours came from each.
* Fallback: if the champion cannot be loaded or rejects the input (too little history, missing
  weather, horizon beyond the one it was trained for), the daily seasonal naive baseline of
  ``models.forecast.forecast_with_fallback`` is used (constant series -> flat forecast), rows carry
  ``model_version='fallback'`` and ``fallback_reason``, and the metadata lists every fallback.
  Gaps longer than the interpolation limit stay errors (no model can repair them).
* PV fallback (no champion / model error): smart persistence as p50 between the physical bounds
  p10 = 0 and p90 = clear-sky power (wide bounds, not a calibrated interval).
"""


import copy
import datetime as dt
import hashlib
import io
import logging
import math
from typing import Any, Callable
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import polars as pl
from dagster import (
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from mlflow.exceptions import MlflowException
from pydantic import Field, field_validator

from lake import plots
from lake.schemas import TABLES
from pipelines.partitions import daily_open, lookback_dep
from pipelines.resources import GridSettings, LakeResource, MlflowResource

log = logging.getLogger(__name__)

_T = TABLES
HOUR = pd.Timedelta(hours=1)
SYSTEM = "system"
LOAD_MODEL_PREFIX = "gridlake_load_"
SOLAR_MODEL_PREFIX = "gridlake_solar_"
#: forecasters selectable in the training config (fast ones first)
LOAD_FORECASTERS = ("xgboost", "ensemble", "seasonal_naive_daily", "seasonal_naive_weekly", "mstl", "prophet", "gru")


# ======================================================================================
# configs
# ======================================================================================
def _check_horizon(v: int) -> int:
    if not 1 <= v <= 72:
        raise ValueError(f"horizon_hours must be within 1..72, got {v}")
    return v


class LoadTrainingConfig(Config):
    """Nightly load-model training: one model per feeder plus the system total."""

    history_days: int = Field(28, description="days of gold_load_hourly (ending at the latest hour) to train and backtest on")
    horizon_hours: int = Field(24, description="forecast horizon the model is built for, 24..72")
    forecaster: str = Field("xgboost", description=f"one of {LOAD_FORECASTERS}; prophet/gru are slow")
    backtest_days: int = Field(3, description="rolling daily origins at the end of the window")
    use_weather: bool = Field(True, description="use silver_weather temp_air_c as an exogenous input")
    rank_metric: str = Field("mape", description="metric the champion is chosen on (lower is better)")
    n_estimators: int = Field(300, description="XGBoost trees")

    _horizon = field_validator("horizon_hours")(classmethod(lambda cls, v: _check_horizon(v)))

    @field_validator("forecaster")
    @classmethod
    def _forecaster(cls, v: str) -> str:
        if v not in LOAD_FORECASTERS:
            raise ValueError(f"forecaster must be one of {LOAD_FORECASTERS}, got {v!r}")
        return v


class SolarTrainingConfig(Config):
    """Nightly PV-model training: one quantile XGBoost per feeder's PV fleet."""

    history_days: int = Field(28, description="days of silver_weather to train on (>= 14 + backtest_days)")
    horizon_hours: int = Field(24, description="leads 1..horizon_hours (up to 72)")
    backtest_days: int = Field(3, description="the last days are held out; every hourly origin in them is scored")
    n_estimators: int = Field(200, description="XGBoost trees")

    _horizon = field_validator("horizon_hours")(classmethod(lambda cls, v: _check_horizon(v)))


class ScoringConfig(Config):
    horizon_hours: int = Field(24, description="hours ahead to forecast (the champion must be built for it)")
    history_days: int = Field(21, description="days of history handed to the champion (its lags and rolling state)")

    _horizon = field_validator("horizon_hours")(classmethod(lambda cls, v: _check_horizon(v)))


class PeakDemandConfig(Config):
    """Capacity per entity (kW). Default per feeder: the sum of its transformers' ``rating_kva``
    from ref_transformers times ``power_factor`` (kVA -> kW); the system: the sum over feeders.
    Summed nameplate ratings ignore diversity, so the margin is an optimistic upper bound."""

    capacity_kw: dict[str, float] = Field(default_factory=dict, description="entity_id -> capacity kW (overrides the default)")
    power_factor: float = Field(1.0, description="kVA -> kW factor applied to transformer ratings")


# ======================================================================================
# helpers: data
# ======================================================================================
def _local_day_bounds_utc(day: dt.date, tz: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    start = pd.Timestamp(dt.datetime(day.year, day.month, day.day), tz=ZoneInfo(tz)).tz_convert("UTC")
    nxt = day + dt.timedelta(days=1)
    end = pd.Timestamp(dt.datetime(nxt.year, nxt.month, nxt.day), tz=ZoneInfo(tz)).tz_convert("UTC")
    return start, end


def feeder_load(lake, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None) -> pl.DataFrame:
    """Hourly feeder load (entity_id, period_start, mean_kw) plus the system total, in [start, end)."""
    lf = lake.scan(_T["gold_load_hourly"]).filter(pl.col("level") == "feeder")
    if start is not None:
        lf = lf.filter(pl.col("period_start") >= start.to_pydatetime())
    if end is not None:
        lf = lf.filter(pl.col("period_start") < end.to_pydatetime())
    df = lf.select("entity_id", "period_start", "mean_kw").collect()
    if df.height == 0:
        raise ValueError(f"gold_load_hourly has no feeder rows in [{start}, {end}): materialise gold_load_hourly first")
    # the system total only over hours where every feeder reported (a missing feeder is a gap, not a dip)
    n = df["entity_id"].n_unique()
    system = (
        df.group_by("period_start")
        .agg(pl.col("mean_kw").sum(), pl.len().alias("_n"))
        .filter(pl.col("_n") == n)
        .select(pl.lit(SYSTEM).alias("entity_id"), "period_start", "mean_kw")
    )
    return pl.concat([df, system]).sort("entity_id", "period_start")


def hourly_weather(lake, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None) -> pl.DataFrame:
    """silver_weather averaged over stations per hour (one station in the demo; the mean keeps
    several stations usable without choosing one per feeder)."""
    cols = ["observation_time", "ghi_wm2", "dni_wm2", "dhi_wm2", "temp_air_c", "wind_speed_ms", "cloud_cover"]
    lf = lake.scan(_T["silver_weather"]).select(cols)
    if start is not None:
        lf = lf.filter(pl.col("observation_time") >= start.to_pydatetime())
    if end is not None:
        lf = lf.filter(pl.col("observation_time") < end.to_pydatetime())
    df = lf.collect()
    return (
        df.with_columns(pl.col("observation_time").dt.truncate("1h"))
        .group_by("observation_time")
        .agg(pl.exclude("observation_time").mean())
        .sort("observation_time")
    )


def with_temperature(load: pl.DataFrame, weather: pl.DataFrame) -> pl.DataFrame:
    """Join temp_air_c on the hour; hours without weather keep a null (the model then says which)."""
    w = weather.select(pl.col("observation_time").alias("period_start"), "temp_air_c")
    return load.join(w, on="period_start", how="left")


def future_temperature(weather: pl.DataFrame, index: pd.DatetimeIndex) -> tuple[pd.DataFrame, dict[str, int]]:
    """temp_air_c for the forecast hours: rows present in silver_weather (a forecast feed), else
    the same hour 1, 2 or 3 days earlier (diurnal persistence). Returns the frame and the counts."""
    s = weather.select("observation_time", "temp_air_c").drop_nulls().to_pandas().set_index("observation_time")["temp_air_c"]
    s.index = pd.DatetimeIndex(s.index).tz_convert("UTC")
    vals = s.reindex(index)
    counts = {"from_weather_table": int(vals.notna().sum()), "persisted": 0}
    for k in (1, 2, 3):
        if not vals.isna().any():
            break
        prev = pd.Series(s.reindex(index - k * pd.Timedelta(days=1)).to_numpy(), index=index)
        fill = vals.isna() & prev.notna()
        counts["persisted"] += int(fill.sum())
        vals = vals.where(~fill, prev)
    return pd.DataFrame({"period_start": index, "temp_air_c": vals.to_numpy()}), counts


def backtest_id(*parts: Any) -> str:
    """Identity of a backtest: same data span, origins and horizon -> same id."""
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:16]


def _finite(metrics: dict[str, Any]) -> dict[str, float]:
    """Metrics MLflow can hold (MAPE is undefined for PV's zero nights, so it is left out)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(float(v))}


def _metrics(row: dict[str, Any]) -> dict[str, float]:
    from models.forecast.metrics import METRICS

    return _finite({k: row[k] for k in METRICS if k in row})


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def _importance_figure(names: list[str], values: np.ndarray, title: str, top: int = 15):
    from models.forecast.plots import plt  # the headless (Agg) pyplot

    order = np.argsort(values)[::-1][:top][::-1]
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(order) + 1))
    ax.barh([names[i] for i in order], values[order], color="tab:green")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def _feature_importance(model) -> tuple[list[str], np.ndarray] | None:
    """Gain importances of an XGBoost-backed forecaster (None for models without them)."""
    booster = getattr(model, "model", None)
    cols = getattr(model, "_columns", None)
    if booster is None or cols is None or not hasattr(booster, "feature_importances_"):
        return None
    return list(cols), np.asarray(booster.feature_importances_, float)


def _md_table(df: pl.DataFrame) -> str:
    return df.to_pandas().to_markdown(index=False, floatfmt=".4g")


# ======================================================================================
# load models
# ======================================================================================
def make_load_forecaster(kind: str, horizon: pd.Timedelta, exog: tuple[str, ...], tz: str, n_estimators: int = 300) -> Callable:
    """Factory of fresh, unfitted forecasters of ``kind`` (rolling_origin refits per origin)."""
    from models import forecast as fc

    if kind == "xgboost":
        return lambda: fc.XGBoostForecaster(horizon, exog=exog, tz=tz, n_estimators=n_estimators, n_jobs=1)
    if kind == "seasonal_naive_daily":
        return lambda: fc.SeasonalNaive(fc.DAY)
    if kind == "seasonal_naive_weekly":
        return lambda: fc.SeasonalNaive(fc.WEEK)
    if kind == "mstl":
        return lambda: fc.MSTLForecaster()
    if kind == "ensemble":  # the fast baselines, weights learned from their backtest errors
        members = [lambda: fc.SeasonalNaive(fc.DAY), lambda: fc.SeasonalNaive(fc.DAY, level_steps=6), lambda: fc.MSTLForecaster()]
        return lambda: fc.EnsembleForecaster(members, horizon, n_origins=5)
    if kind == "prophet":
        return lambda: fc.ProphetForecaster(exog=exog)
    if kind == "gru":
        return lambda: fc.GRUForecaster(horizon=horizon, exog=exog)
    raise ValueError(f"unknown forecaster {kind!r}; choose from {LOAD_FORECASTERS}")


def load_backtest(make: Callable, series: pd.DataFrame, horizon: pd.Timedelta, n_days: int) -> pl.DataFrame:
    """Rolling daily origins on the window's last ``n_days`` (+ horizon): fitted once at the first
    origin, rolled forward with ``update`` after (what production does between retrains)."""
    from models.forecast import rolling_origin

    end = series["period_start"].max() + HOUR
    origins = [end - horizon - k * pd.Timedelta(days=1) for k in range(n_days - 1, -1, -1)]
    return rolling_origin(make, series, origins, horizon, refit_every=None)


def _rescore_champion(reg, name: str, bt_id: str, score_fn: Callable[[Any], dict[str, float]], context) -> dict | None:
    """Score the champion's recipe on this run's backtest and record it on the champion version.

    Returns the champion's metrics, or None if there is no champion. A champion that cannot be
    re-scored keeps its old backtest_id (then the registry reports 'not comparable' and the
    candidate stays a challenger) and the reason is logged.
    """
    champ = reg.champion(name)
    if champ is None:
        return None
    if champ.tags.get("backtest_id") == bt_id:
        return {k[len("metric."):]: float(v) for k, v in champ.tags.items() if k.startswith("metric.")}
    try:
        model = reg.load(name)
        metrics = _finite(score_fn(model))
    except Exception as exc:  # noqa: BLE001 - reported, and promotion then refuses to compare
        context.log.warning(f"{name}: champion v{champ.version} could not be re-scored on backtest {bt_id}: {exc}")
        return None
    # TODO(registry owner): a ModelRegistry.record_backtest(name, version, backtest_id, metrics) would own this
    for k, v in metrics.items():
        reg.client.set_model_version_tag(name, champ.version, f"metric.{k}", repr(float(v)))
    reg.client.set_model_version_tag(name, champ.version, "backtest_id", bt_id)
    return metrics


@asset(
    group_name="forecast_training",
    deps=["gold_load_hourly", "silver_weather"],
    kinds={"mlflow", "xgboost"},
    description="Nightly: backtest, log, register and champion/challenger-promote one load model per feeder and the system",
)
def load_forecast_models(context: AssetExecutionContext, config: LoadTrainingConfig, lake: LakeResource, mlflow: MlflowResource, grid: GridSettings) -> MaterializeResult:
    from models.forecast import comparison_table, score_backtest
    from models.forecast.plots import forecast_vs_actual

    lk, reg = lake.lake(), mlflow.registry()
    horizon = pd.Timedelta(hours=config.horizon_hours)
    last = lk.scan(_T["gold_load_hourly"]).filter(pl.col("level") == "feeder").select(pl.col("period_start").max()).collect().item()
    if last is None:
        raise ValueError("gold_load_hourly has no feeder rows: materialise gold_load_hourly first")
    end = pd.Timestamp(last).tz_convert("UTC") + HOUR
    start = end - pd.Timedelta(days=config.history_days)
    load = feeder_load(lk, start, end)
    exog: tuple[str, ...] = ()
    if config.use_weather:
        load = with_temperature(load, hourly_weather(lk, start, end))
        exog = ("temp_air_c",)
    make = make_load_forecaster(config.forecaster, horizon, exog, grid.timezone, config.n_estimators)
    baseline = make_load_forecaster("seasonal_naive_daily", horizon, (), grid.timezone)

    results, skipped, tables, pictures = [], {}, [], []
    for (entity,), g in load.group_by(["entity_id"], maintain_order=True):
        name = f"{LOAD_MODEL_PREFIX}{entity}"
        series = g.drop("entity_id").sort("period_start").to_pandas()
        try:
            bt = load_backtest(make, series, horizon, config.backtest_days)
            base_bt = load_backtest(baseline, series, horizon, config.backtest_days)
        except ValueError as exc:  # ForecastInputError and friends: too little history, gaps, constant, no weather
            skipped[entity] = f"{type(exc).__name__}: {exc}"
            context.log.warning(f"{name}: not trained: {skipped[entity]}")
            continue
        scores = score_backtest(pl.concat([bt, base_bt]))
        metrics = _metrics(scores.filter(pl.col("model") == bt["model"][0]).row(0, named=True))
        bt_id = backtest_id("load", entity, series["period_start"].iloc[0], end, config.backtest_days, horizon)

        def score_champion(m, series=series):
            cbt = load_backtest(lambda: copy.deepcopy(m), series, horizon, config.backtest_days)
            return _metrics(score_backtest(cbt).row(0, named=True))

        champ = _rescore_champion(reg, name, bt_id, score_champion, context)
        model = make().fit(series)
        fig = forecast_vs_actual(bt)
        params = {**model.params(), "entity_id": entity, "history_days": config.history_days, "backtest_days": config.backtest_days,
                  "train_start": str(series["period_start"].iloc[0]), "train_end": str(end), "exog": list(exog)}  # fmt: skip
        out = reg.train_register_promote(
            name, params=params, metrics=metrics, backtest_id=bt_id, model=model,
            figures={"forecast_vs_actual.png": fig}, metric=config.rank_metric,
        )  # fmt: skip
        png = _png(fig)  # after MLflow logged it: _png closes the figure
        out["entity_id"] = entity
        out["champion_metric_on_this_backtest"] = None if champ is None else champ.get(config.rank_metric)
        results.append(out)
        table = comparison_table(scores, rank_by=config.rank_metric)
        if champ is not None:
            table = pl.concat([table, pl.DataFrame([{"rank": None, "model": f"champion v{out['champion_version_before']}", **{k: champ.get(k) for k in table.columns if k not in ("rank", "model")}}])], how="diagonal_relaxed")
        tables.append(f"**{entity}** ({name} v{out['version']}: {'promoted to champion' if out['promoted'] else 'challenger'})\n\n{_md_table(table)}")
        pictures.append(plots.png_markdown(png, f"{entity}: forecast vs actual (backtest)"))
        imp = _feature_importance(model)
        if imp is not None:
            pictures.append(plots.png_markdown(_png(_importance_figure(*imp, f"{entity}: XGBoost feature importance (gain)")), f"{entity}: feature importance"))
        context.log.info(f"{name}: v{out['version']} {config.rank_metric}={metrics.get(config.rank_metric)} promoted={out['promoted']} ({out['promotion_reason']})")
    if not results:
        raise ValueError(f"no load model could be trained: {skipped}")
    summary = [{k: r[k] for k in ("entity_id", "model_name", "version", "run_id", "promoted", "alias", "champion_version_before", "promotion_reason")} | {"metrics": {k[7:]: v for k, v in r.items() if k.startswith("metric_")}} for r in results]
    return MaterializeResult(
        metadata={
            "forecaster": config.forecaster,
            "horizon_hours": config.horizon_hours,
            "window": f"{start} .. {end}",
            "run_ids": MetadataValue.json({r["entity_id"]: r["run_id"] for r in results}),
            "promoted": MetadataValue.json({r["entity_id"]: r["promoted"] for r in results}),
            "models": MetadataValue.json(summary),
            "skipped": MetadataValue.json(skipped),
            "comparison": MetadataValue.md("\n\n".join(tables)),
            "plots": MetadataValue.md("\n\n".join(pictures)),
        }
    )


# ======================================================================================
# solar models (one per feeder's PV fleet)
# ======================================================================================
def feeder_pv_systems(ref_meters: pl.DataFrame) -> dict[str, list]:
    """PV systems (models.solar.PVSystem) grouped by feeder."""
    from models.solar import systems_from_meters

    out: dict[str, list] = {}
    for s in systems_from_meters(ref_meters):
        out.setdefault(s.feeder_id, []).append(s)
    return out


def regular_weather(weather: pl.DataFrame) -> pd.DataFrame:
    """silver_weather on a complete hourly grid; a missing hour is an error naming it (the PV
    features shift by rows, so a hole would silently misalign every lead)."""
    if weather.height == 0:
        raise ValueError("silver_weather has no rows in the window: materialise the weather ingestion first")
    w = weather.to_pandas()
    w["observation_time"] = pd.to_datetime(w["observation_time"], utc=True)
    grid = pd.date_range(w["observation_time"].min(), w["observation_time"].max(), freq="1h")
    missing = grid.difference(pd.DatetimeIndex(w["observation_time"]))
    if len(missing):
        raise ValueError(f"silver_weather lacks {len(missing)} hour(s) in the window, first {missing[0]}: PV features need every hour")
    for c in ("ghi_wm2", "dni_wm2", "dhi_wm2"):
        if w[c].isna().any():
            raise ValueError(f"silver_weather column {c!r} is empty at {w.loc[w[c].isna(), 'observation_time'].iloc[0]}")
    return w.sort_values("observation_time").reset_index(drop=True)


def fleet_power(systems: list, weather: pd.DataFrame) -> pd.DataFrame:
    """PVWatts power of a feeder's fleet from weather (models.solar.simulate_power per system,
    summed). Sun geometry and GHI of the first system: roofs on one feeder are a few km apart."""
    from models.solar import simulate_power

    frames = [simulate_power(s, weather) for s in systems]
    obs = frames[0].copy()
    obs["ac_kw"] = sum(f["ac_kw"] for f in frames)
    obs["clearsky_ac_kw"] = sum(f["clearsky_ac_kw"] for f in frames)
    if "wind_speed_ms" in weather:
        obs["wind_speed_ms"] = weather["wind_speed_ms"].to_numpy(float)
    return obs


def solar_backtest(make: Callable, obs: pd.DataFrame, capacity: float, horizons: list[int], cutoff: pd.Timestamp) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Fit on hours before ``cutoff``; forecast from every hourly origin at or after it whose
    targets lie in the data. Returns the model's and smart persistence's rows (daylight targets)."""
    from models.solar import design

    model = make().fit(obs[obs.index < cutoff])
    d = design(obs, capacity, horizons)
    d = d[(d["origin"] >= cutoff) & d["y"].notna() & (d["cs_t"] > 0)]
    if d.empty:
        raise ValueError(f"no daylight targets after the backtest cutoff {cutoff}")
    q = model.predict_design(d)
    base = {
        "origin": pl.Series(pd.DatetimeIndex(d["origin"]).as_unit("us")).cast(pl.Datetime("us", "UTC")),
        "period_start": pl.Series(pd.DatetimeIndex(d["target_time"]).as_unit("us")).cast(pl.Datetime("us", "UTC")),
        "horizon_h": d["lead_h"].to_numpy(float),
        "actual": d["y"].to_numpy(float) * capacity,
    }
    sp = np.clip(d["sp_t"].to_numpy(float) * capacity, 0, None)
    m = pl.DataFrame({**base, "p10": q[:, 0], "p50": q[:, 1], "p90": q[:, 2], "model": "solar_xgboost"})
    b = pl.DataFrame({**base, "p10": sp, "p50": sp, "p90": sp, "model": "smart_persistence"})
    cols = ["origin", "period_start", "horizon_h", "p10", "p50", "p90", "model", "actual"]
    return m.select(cols), b.select(cols)


@asset(
    group_name="forecast_training",
    deps=["silver_weather", "ref_meters"],
    kinds={"mlflow", "xgboost"},
    description="Nightly: backtest, log, register and promote one PV quantile model per feeder's rooftop fleet",
)
def solar_forecast_models(context: AssetExecutionContext, config: SolarTrainingConfig, lake: LakeResource, mlflow: MlflowResource) -> MaterializeResult:
    from models.forecast import comparison_table, score_backtest
    from models.forecast.plots import forecast_vs_actual
    from models.solar import SolarXGBForecaster

    lk, reg = lake.lake(), mlflow.registry()
    fleets = feeder_pv_systems(lk.read("ref_meters"))
    if not fleets:
        raise ValueError("ref_meters has no meter with has_pv: no PV fleet to model")
    last = lk.scan(_T["silver_weather"]).select(pl.col("observation_time").max()).collect().item()
    if last is None:
        raise ValueError("silver_weather is empty: materialise the weather ingestion first")
    end = pd.Timestamp(last).tz_convert("UTC").floor("h") + HOUR
    start = end - pd.Timedelta(days=config.history_days)
    weather = regular_weather(hourly_weather(lk, start, end))
    horizons = list(range(1, config.horizon_hours + 1))
    cutoff = end - pd.Timedelta(days=config.backtest_days)
    results, tables, pictures = [], [], []
    for feeder, systems in sorted(fleets.items()):
        name = f"{SOLAR_MODEL_PREFIX}{feeder}"
        cap = float(sum(s.kw_dc for s in systems))
        obs = fleet_power(systems, weather)
        make = lambda cap=cap: SolarXGBForecaster(cap, horizons=horizons, n_estimators=config.n_estimators, n_jobs=1)  # noqa: E731
        bt, base = solar_backtest(make, obs, cap, horizons, cutoff)
        scores = score_backtest(pl.concat([bt, base]))
        metrics = _metrics(scores.filter(pl.col("model") == "solar_xgboost").row(0, named=True))
        bt_id = backtest_id("solar", feeder, obs.index[0], end, cutoff, config.horizon_hours)

        def score_champion(m, obs=obs, cap=cap):
            cbt, _ = solar_backtest(lambda: copy.deepcopy(m), obs, cap, horizons, cutoff)
            return _metrics(score_backtest(cbt).row(0, named=True))

        champ = _rescore_champion(reg, name, bt_id, score_champion, context)
        model = make().fit(obs)
        daily_origins = bt.filter(pl.col("origin").dt.hour() == cutoff.hour)
        fig = forecast_vs_actual(daily_origins if daily_origins.height else bt)
        params = {"model": "solar_xgboost", "feeder_id": feeder, "n_systems": len(systems), "capacity_kw_dc": cap,
                  "horizon_hours": config.horizon_hours, "n_estimators": config.n_estimators, "train_start": str(obs.index[0]), "train_end": str(end)}  # fmt: skip
        out = reg.train_register_promote(
            name, params=params, metrics=metrics, backtest_id=bt_id, model=model, figures={"forecast_vs_actual.png": fig}, metric="pinball"
        )
        out["entity_id"] = feeder
        results.append(out)
        table = comparison_table(scores, rank_by="pinball").drop("mape")
        if champ is not None:
            table = pl.concat([table, pl.DataFrame([{"model": f"champion v{out['champion_version_before']}", **{k: champ.get(k) for k in table.columns if k in champ}}])], how="diagonal_relaxed")
        tables.append(f"**{feeder}** ({len(systems)} systems, {cap:.1f} kW DC; {name} v{out['version']}: {'promoted to champion' if out['promoted'] else 'challenger'})\n\n{_md_table(table)}")
        pictures.append(plots.png_markdown(_png(fig), f"{feeder}: PV forecast vs actual (backtest, daylight)"))
        imp = model.model.feature_importances_
        pictures.append(plots.png_markdown(_png(_importance_figure(model._columns, np.asarray(imp, float), f"{feeder}: PV XGBoost feature importance (gain)")), f"{feeder}: PV feature importance"))
        context.log.info(f"{name}: v{out['version']} pinball={metrics.get('pinball'):.4g} promoted={out['promoted']} ({out['promotion_reason']})")
    summary = [{k: r[k] for k in ("entity_id", "model_name", "version", "run_id", "promoted", "alias", "champion_version_before", "promotion_reason")} | {"metrics": {k[7:]: v for k, v in r.items() if k.startswith("metric_")}} for r in results]
    return MaterializeResult(
        metadata={
            "horizon_hours": config.horizon_hours,
            "window": f"{start} .. {end}",
            "backtest_cutoff": str(cutoff),
            "run_ids": MetadataValue.json({r["entity_id"]: r["run_id"] for r in results}),
            "promoted": MetadataValue.json({r["entity_id"]: r["promoted"] for r in results}),
            "models": MetadataValue.json(summary),
            "comparison": MetadataValue.md("\n\n".join(tables)),
            "plots": MetadataValue.md("\n\n".join(pictures)),
        }
    )


# ======================================================================================
# scoring
# ======================================================================================
_CHAMPION_FAILURES: tuple[type[BaseException], ...] = (LookupError, MlflowException, OSError)


def _champion_errors() -> tuple[type[BaseException], ...]:
    from models.forecast import ForecastInputError, ForecastOutputError

    return _CHAMPION_FAILURES + (ForecastInputError, ForecastOutputError)


def _forecast_rows(fc: pl.DataFrame, day: dt.date, level: str, entity: str, issued_at: pd.Timestamp, version: str, reason: str | None) -> pl.DataFrame:
    return fc.select(
        pl.lit(day).alias("date"),
        pl.lit(level).alias("level"),
        pl.lit(entity).alias("entity_id"),
        pl.lit(issued_at.to_pydatetime()).cast(pl.Datetime("us", "UTC")).alias("issued_at"),
        "period_start", "horizon_h", "p10", "p50", "p90", "model",
        pl.lit(version).alias("model_version"),
        pl.lit(reason, pl.Utf8).alias("fallback_reason"),
    )  # fmt: skip


def _forecast_figure(hist: pl.DataFrame, fc: pl.DataFrame, title: str):
    from models.forecast.plots import plt

    fig, ax = plt.subplots(figsize=(10, 3.2))
    h = hist.tail(72).to_pandas()
    f = fc.to_pandas()
    ax.plot(h["period_start"], h["mean_kw"], color="black", lw=0.9, label="observed")
    ax.fill_between(f["period_start"], f["p10"], f["p90"], color="tab:orange", alpha=0.25, lw=0, label="p10-p90")
    ax.plot(f["period_start"], f["p50"], color="tab:orange", lw=1.2, label="p50")
    ax.set_title(title)
    ax.set_ylabel("kW")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


@asset(
    group_name="forecasts",
    partitions_def=daily_open,
    deps=["load_forecast_models", lookback_dep("gold_load_hourly"), lookback_dep("silver_weather")],
    kinds={"delta", "polars"},
    description=_T["gold_load_forecast"].description,
)
def gold_load_forecast(context: AssetExecutionContext, config: ScoringConfig, lake: LakeResource, mlflow: MlflowResource, grid: GridSettings) -> MaterializeResult:
    from models.forecast import DAY, SeasonalNaive, forecast_with_fallback

    lk, reg, day = lake.lake(), mlflow.registry(), dt.date.fromisoformat(context.partition_key)
    _, day_end = _local_day_bounds_utc(day, grid.timezone)
    horizon = pd.Timedelta(hours=config.horizon_hours)
    load = feeder_load(lk, day_end - pd.Timedelta(days=config.history_days), day_end)
    weather = hourly_weather(lk, day_end - pd.Timedelta(days=config.history_days), day_end)
    load = with_temperature(load, weather)
    frames, versions, fallbacks, weather_use, pictures = [], {}, {}, {}, []
    for (entity,), g in load.group_by(["entity_id"], maintain_order=True):
        name = f"{LOAD_MODEL_PREFIX}{entity}"
        hist = g.drop("entity_id").sort("period_start")
        issued_at = pd.Timestamp(hist["period_start"].max()).tz_convert("UTC")
        try:
            mv = reg.champion(name)
            if mv is None:
                raise LookupError(f"registered model {name!r} has no champion yet: materialise load_forecast_models")
            model = reg.load(name)
            version = str(mv.version)
            fx = None
            if model.exog:
                fx, weather_use[entity] = future_temperature(weather, pd.date_range(issued_at + HOUR, periods=config.horizon_hours, freq="1h"))
            fc = model.update(hist.to_pandas()).predict(horizon, fx)
            reason = None
        except _champion_errors() as exc:
            reason = f"{type(exc).__name__}: {exc}"
            context.log.warning(f"{name}: champion not used ({reason}); falling back to the daily seasonal naive baseline")
            fc, info = forecast_with_fallback(SeasonalNaive(DAY), hist.select("period_start", "mean_kw"), horizon)
            if info["fallback"]:
                reason = f"{reason}; then {info['reason']}"
            version = "fallback"
            fallbacks[entity] = reason
        versions[entity] = version
        frames.append(_forecast_rows(fc, day, SYSTEM if entity == SYSTEM else "feeder", entity, issued_at, version, reason))
        if entity == SYSTEM or len(pictures) < 2:
            pictures.append(plots.png_markdown(_png(_forecast_figure(hist, fc, f"{entity}: {fc['model'][0]} v{version} issued {issued_at:%Y-%m-%d %H:%M}Z")), f"{entity} forecast"))
    df = pl.concat(frames)
    w = lk.write_partition(_T["gold_load_forecast"], df, day)
    return MaterializeResult(
        metadata={
            "dagster/row_count": w.rows,
            "delta_version": w.version,
            "champion_versions": MetadataValue.json(versions),
            "fallbacks": MetadataValue.json(fallbacks),
            "n_fallbacks": len(fallbacks),
            "future_temperature_hours": MetadataValue.json(weather_use),
            "issued_at": MetadataValue.json({e: str(t) for e, t in df.group_by("entity_id").agg(pl.col("issued_at").max()).iter_rows()}),
            "forecasts": MetadataValue.md("\n\n".join(pictures)),
        }
    )


@asset(
    group_name="forecasts",
    partitions_def=daily_open,
    deps=["solar_forecast_models", lookback_dep("silver_weather"), "ref_meters"],
    kinds={"delta", "polars"},
    description=_T["gold_solar_forecast"].description,
)
def gold_solar_forecast(context: AssetExecutionContext, config: ScoringConfig, lake: LakeResource, mlflow: MlflowResource, grid: GridSettings) -> MaterializeResult:
    from models.solar import simulate_power, smart_persistence

    lk, reg, day = lake.lake(), mlflow.registry(), dt.date.fromisoformat(context.partition_key)
    _, day_end = _local_day_bounds_utc(day, grid.timezone)
    raw = hourly_weather(lk, day_end - pd.Timedelta(days=2), day_end)
    weather = regular_weather(raw)
    issued_at = weather["observation_time"].iloc[-1]
    fut_idx = pd.date_range(issued_at + HOUR, periods=config.horizon_hours, freq="1h")
    temps, _ = future_temperature(raw, fut_idx)
    fut_weather = pd.DataFrame({"observation_time": fut_idx, "ghi_wm2": 0.0, "dni_wm2": 0.0, "dhi_wm2": 0.0,
                                "temp_air_c": temps["temp_air_c"].fillna(20.0).to_numpy(), "wind_speed_ms": 1.0})  # fmt: skip
    frames, versions, fallbacks = [], {}, {}
    for feeder, systems in sorted(feeder_pv_systems(lk.read("ref_meters")).items()):
        name = f"{SOLAR_MODEL_PREFIX}{feeder}"
        cap = float(sum(s.kw_dc for s in systems))
        obs = fleet_power(systems, weather)
        # clear-sky power and sun geometry for the future hours (deterministic, pvlib)
        cs = [simulate_power(s, fut_weather) for s in systems]
        future = cs[0][["zenith", "azimuth"]].assign(clearsky_ac_kw=sum(f["clearsky_ac_kw"] for f in cs))
        try:
            mv = reg.champion(name)
            if mv is None:
                raise LookupError(f"registered model {name!r} has no champion yet: materialise solar_forecast_models")
            model = reg.load(name)
            if max(model.horizons) < config.horizon_hours:
                raise LookupError(f"champion v{mv.version} forecasts {max(model.horizons)} h ahead; {config.horizon_hours} h asked")
            fc = model.predict(obs, future).filter(pl.col("horizon_h") <= config.horizon_hours)
            version, reason = str(mv.version), None
        except (*_CHAMPION_FAILURES, ValueError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            context.log.warning(f"{name}: champion not used ({reason}); smart persistence within [0, clear sky]")
            both = pd.concat([obs, future])
            sp = smart_persistence(both, cap, range(1, config.horizon_hours + 1)).loc[obs.index[-1]].to_numpy(float)
            csk = future["clearsky_ac_kw"].to_numpy(float)
            p50 = np.clip(sp, 0, csk)
            fc = pl.DataFrame({
                "period_start": pl.Series(fut_idx.as_unit("us")).cast(pl.Datetime("us", "UTC")),
                "horizon_h": np.arange(1, config.horizon_hours + 1, dtype=float),
                "p10": np.zeros_like(p50), "p50": p50, "p90": np.maximum(csk, p50), "model": "smart_persistence",
            })  # fmt: skip
            version = "fallback"
            fallbacks[feeder] = reason
        versions[feeder] = version
        frames.append(_forecast_rows(fc, day, "feeder", feeder, issued_at, version, reason))
    df = pl.concat(frames)
    # system total: quantiles summed (comonotone, the models.solar.fleet convention: errs wide)
    system = df.group_by("period_start", "horizon_h").agg(pl.col("p10", "p50", "p90").sum(), pl.col("model").first(), pl.len().alias("_n"))
    system = system.filter(pl.col("_n") == len(frames)).sort("period_start")
    all_champions = not fallbacks
    df = pl.concat([df, _forecast_rows(system, day, SYSTEM, SYSTEM, issued_at, "+".join(f"{k}:{v}" for k, v in versions.items()), None if all_champions else "; ".join(f"{k}: {v}" for k, v in fallbacks.items()))])
    w = lk.write_partition(_T["gold_solar_forecast"], df, day)
    sys_fc = df.filter(pl.col("entity_id") == SYSTEM)
    hist = pl.DataFrame({"period_start": pl.Series(obs.index.as_unit("us")).cast(pl.Datetime("us", "UTC")), "mean_kw": sum(fleet_power(s, weather)["ac_kw"] for s in feeder_pv_systems(lk.read("ref_meters")).values()).to_numpy()})
    fig = _forecast_figure(hist, sys_fc, f"PV fleet, all feeders: issued {issued_at:%Y-%m-%d %H:%M}Z")
    return MaterializeResult(
        metadata={
            "dagster/row_count": w.rows,
            "delta_version": w.version,
            "champion_versions": MetadataValue.json(versions),
            "fallbacks": MetadataValue.json(fallbacks),
            "n_fallbacks": len(fallbacks),
            "issued_at": str(issued_at),
            "forecast": MetadataValue.md(plots.png_markdown(_png(fig), "PV fleet forecast")),
        }
    )


# ======================================================================================
# peak demand
# ======================================================================================
def feeder_capacity_kw(transformers: pl.DataFrame, power_factor: float, overrides: dict[str, float]) -> dict[str, float]:
    """Sum of each feeder's transformer ratings x power factor, the system total, then overrides."""
    if not 0 < power_factor <= 1:
        raise ValueError(f"PeakDemandConfig.power_factor must be in (0, 1], got {power_factor}")
    bad = {k: v for k, v in overrides.items() if not (v > 0 and math.isfinite(v))}
    if bad:
        raise ValueError(f"PeakDemandConfig.capacity_kw: capacities must be positive finite kW, got {bad}")
    caps = {f: float(v) * power_factor for f, v in transformers.group_by("feeder_id").agg(pl.col("rating_kva").sum()).iter_rows()}
    caps[SYSTEM] = float(sum(caps.values()))
    return {**caps, **overrides}


def peak_demand(forecast: pl.DataFrame, observed: pl.DataFrame, capacity: dict[str, float], day: dt.date, tz: str) -> pl.DataFrame:
    """Expected peak of local day ``day`` per entity: the latest issue's p50 over the hours it
    covers, observed load over the day's hours before that issue (p10 = p50 = p90 = observed)."""
    start, end = _local_day_bounds_utc(day, tz)
    lo, hi = start.to_pydatetime(), end.to_pydatetime()
    fc = forecast.filter(pl.col("period_start") >= lo, pl.col("period_start") < hi)
    if fc.height == 0:
        raise ValueError(f"gold_load_forecast has no forecast covering local day {day}: materialise gold_load_forecast for {day - dt.timedelta(days=1)} or {day}")
    latest = fc.group_by("entity_id").agg(pl.col("issued_at").max().alias("_latest"))
    fc = fc.join(latest, on="entity_id").filter(pl.col("issued_at") == pl.col("_latest"))
    obs = observed.filter(pl.col("period_start") >= lo, pl.col("period_start") < hi).join(latest, on="entity_id")
    obs = obs.filter(pl.col("period_start") <= pl.col("_latest")).select(
        "entity_id", "period_start", pl.col("mean_kw").alias("p50"), pl.col("mean_kw").alias("p90")
    )
    both = pl.concat([fc.select("entity_id", "period_start", "p50", "p90"), obs])
    missing = sorted(set(both["entity_id"]) - set(capacity))
    if missing:
        raise ValueError(f"no capacity for {missing}: add them to PeakDemandConfig.capacity_kw or ref_transformers")
    peak = both.sort("entity_id", "p50", "period_start", descending=[False, True, False]).group_by("entity_id", maintain_order=True).first()
    cap = pl.col("entity_id").replace_strict(capacity, return_dtype=pl.Float64)
    return peak.select(
        pl.lit(day).alias("date"),
        "entity_id",
        pl.col("p50").alias("expected_peak_kw"),
        pl.col("p90").alias("peak_p90_kw"),
        pl.col("period_start").alias("peak_time"),
        cap.alias("capacity_kw"),
        ((cap - pl.col("p50")) / cap * 100).alias("reserve_margin_pct"),
        ((cap - pl.col("p90")) / cap * 100).alias("reserve_margin_p90_pct"),
    ).sort("entity_id")


@asset(
    group_name="forecasts",
    partitions_def=daily_open,
    deps=["gold_load_forecast", lookback_dep("gold_load_hourly"), "ref_transformers"],
    kinds={"delta", "polars"},
    description=_T["gold_peak_demand"].description,
)
def gold_peak_demand(context: AssetExecutionContext, config: PeakDemandConfig, lake: LakeResource, grid: GridSettings) -> MaterializeResult:
    lk, day = lake.lake(), dt.date.fromisoformat(context.partition_key)
    start, end = _local_day_bounds_utc(day, grid.timezone)
    fc = lk.scan(_T["gold_load_forecast"]).filter(pl.col("date").is_between(day - dt.timedelta(days=3), day)).collect()
    observed = feeder_load(lk, start, end) if lk.exists(_T["gold_load_hourly"]) else pl.DataFrame(schema={"entity_id": pl.Utf8, "period_start": pl.Datetime("us", "UTC"), "mean_kw": pl.Float64})
    caps = feeder_capacity_kw(lk.read("ref_transformers"), config.power_factor, config.capacity_kw)
    df = peak_demand(fc, observed, caps, day, grid.timezone)
    w = lk.write_partition(_T["gold_peak_demand"], df, day)
    show = df.with_columns(pl.col("peak_time").dt.convert_time_zone(grid.timezone).dt.strftime("%H:%M %Z").alias("peak_time_local")).drop("date", "peak_time")
    return MaterializeResult(
        metadata={
            "dagster/row_count": w.rows,
            "min_reserve_margin_pct": float(df["reserve_margin_pct"].min()),
            "min_reserve_margin_p90_pct": float(df["reserve_margin_p90_pct"].min()),
            "peaks": MetadataValue.md(_md_table(show)),
            "capacity_source": "PeakDemandConfig.capacity_kw" if config.capacity_kw else f"sum of transformer rating_kva x {config.power_factor}",
        }
    )


FORECAST_ASSETS = [load_forecast_models, solar_forecast_models, gold_load_forecast, gold_solar_forecast, gold_peak_demand]
