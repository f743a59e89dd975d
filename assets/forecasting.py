"""Forecasting assets: nightly training (load per feeder + system, PV per feeder), hourly scoring
into ``gold_load_forecast`` / ``gold_solar_forecast``, the daily peak-demand analysis, forecast
accuracy after the fact and PV ramps.

Each asset reads the lake, calls the library and writes the result with its metadata:

* training and scoring policy per entity: ``models.forecast.pipeline`` (``train_load_entity`` /
  ``score_load_entity``; ``models.solar.pipeline``: ``train_solar_entity`` / ``score_solar_entity``: the candidates' shared
  backtest, the fallbacks, forecast weather as known at the origin; ``score_entities``: one scoring run's rows,
  versions and fallbacks over every entity);
* the champion policy: ``models.registry`` (``ModelRegistry.challenge``: re-score the champion on the
  candidate's backtest, log, register, promote; shared with grid ML);
* ``models.forecast.tables`` (system total, the rows of the forecast tables), ``models.solar.fleet``
  (PV fleets per feeder), ``models.forecast.peak``, ``models.forecast.accuracy``, ``models.solar.ramps``.

Forecast semantics
------------------
* Partition ``D`` of the forecast tables holds the forecasts *issued during* local day ``D``: the
  origin (``issued_at``) is the start of the latest hour of data before the end of ``D``. The hourly
  schedule re-materialises today's partition, so the latest issue follows the data; a backfill of
  a past day issues from the end of that day (a day-ahead forecast of ``D+1``).
* Training backtests and the bands' calibration origins see the weather scoring uses (the NWP issues
  published by each origin, ``models.forecast.weather_inputs.exog_as_known_at``), not the observed weather.
* Future weather: the silver_weather_forecast issues (NWP) published by the end of the origin hour,
  newest first, an older issue where it is missing, then diurnal persistence of observations; never
  an issue or observation from later (no look-ahead in a backfill either). The metadata counts the
  hours from each (``future_weather_hours`` / ``forecast_weather_hours``).
* Fallback: if the champion cannot be used, the load forecast is the daily seasonal naive baseline
  and PV smart persistence within [0, clear sky]; rows carry ``model_version='fallback'`` and
  ``fallback_reason``, and the metadata lists every fallback (models.forecast.pipeline).
"""

import datetime as dt
import logging

import pandas as pd
import polars as pl
from dagster import (
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field, field_validator

from assets.partitions import daily_open, lookback_dep, partition_day
from assets.queues import queue_tags
from assets.resources import AlertingResource, GridSettings, LakeResource, MlflowResource
from contracts import TABLES, day_bounds_utc
from lake import plots
from models.forecast.accuracy import drift_status, forecast_accuracy, scored_errors
from models.forecast.factory import LOAD_FORECASTERS, make_load_forecaster
from models.forecast.peak import feeder_capacity_kw, peak_demand
from models.forecast.pipeline import score_entities, score_load_entity, train_load_entity, with_champion_row
from models.forecast.plots import feature_importance, forecast_figure, importance_figure, png_bytes
from models.forecast.tables import SYSTEM, forecast_rows, with_system_total, with_temperature
from models.forecast.weather_inputs import exog_as_known_at, future_weather
from models.registry import Trained, run_summary
from models.solar import (
    SolarXGBForecaster,
    feeder_pv_systems,
    fleet_clearsky,
    fleet_power,
    regular_weather,
    system_total,
)
from models.solar.pipeline import score_solar_entity, train_solar_entity

log = logging.getLogger(__name__)

_T = TABLES
HOUR = pd.Timedelta(hours=1)
LOAD_MODEL_PREFIX = "gridlake_load_"
SOLAR_MODEL_PREFIX = "gridlake_solar_"


# ======================================================================================
# configs
# ======================================================================================
def _check_horizon(v: int) -> int:
    if not 1 <= v <= 72:
        raise ValueError(f"horizon_hours must be within 1..72, got {v}")
    return v


def _check_as_of(v: str) -> str:
    if v:
        dt.date.fromisoformat(v)  # ValueError names the bad value
    return v


def _window_end(last, as_of: str, tz: str) -> pd.Timestamp:
    """End (exclusive, UTC) of a training window: after the newest hour in the lake, or the end of
    local day ``as_of`` if that is earlier (a retrain "as of" a past night sees nothing after it)."""
    end = pd.Timestamp(last).tz_convert("UTC").floor("h") + HOUR
    if as_of:
        end = min(end, pd.Timestamp(day_bounds_utc(dt.date.fromisoformat(as_of), tz)[1]))
    return end


class LoadTrainingConfig(Config):
    """Nightly load-model training: one model per feeder plus the system total."""

    history_days: int = Field(
        28, description="days of gold_load_hourly (ending at the latest hour) to train and backtest on"
    )
    horizon_hours: int = Field(24, description="forecast horizon the model is built for, 24..72")
    forecaster: str = Field("xgboost", description=f"one of {LOAD_FORECASTERS}; prophet/gru/lstm are slow")
    candidates: list[str] = Field(
        default_factory=list,
        description="candidate set (names as for forecaster): each is backtested on the same origins and the best becomes the challenger; empty = only forecaster",
    )
    backtest_days: int = Field(3, description="rolling daily origins at the end of the window")
    use_weather: bool = Field(True, description="use silver_weather temp_air_c as an exogenous input")
    rank_metric: str = Field("mape", description="metric the champion is chosen on (lower is better)")
    n_estimators: int = Field(300, description="XGBoost trees")
    as_of: str = Field(
        "", description="ISO local date of the window's last day; empty = up to the newest hour in the lake"
    )

    _horizon = field_validator("horizon_hours")(classmethod(lambda cls, v: _check_horizon(v)))
    _as_of = field_validator("as_of")(classmethod(lambda cls, v: _check_as_of(v)))

    @field_validator("forecaster")
    @classmethod
    def _forecaster(cls, v: str) -> str:
        if v not in LOAD_FORECASTERS:
            raise ValueError(f"forecaster must be one of {LOAD_FORECASTERS}, got {v!r}")
        return v

    @field_validator("candidates")
    @classmethod
    def _candidates(cls, v: list[str]) -> list[str]:
        bad = [k for k in v if k not in LOAD_FORECASTERS]
        if bad or len(set(v)) != len(v):
            raise ValueError(f"candidates must be distinct names from {LOAD_FORECASTERS}, got {v!r}")
        return v


class SolarTrainingConfig(Config):
    """Nightly PV-model training: one quantile XGBoost per feeder's PV fleet."""

    history_days: int = Field(28, description="days of silver_weather to train on (>= 14 + backtest_days)")
    horizon_hours: int = Field(24, description="leads 1..horizon_hours (up to 72)")
    backtest_days: int = Field(3, description="the last days are held out; every hourly origin in them is scored")
    n_estimators: int = Field(200, description="XGBoost trees")
    use_forecast_weather: bool = Field(
        True, description="add forecast-weather features from silver_weather_forecast (when the window has issues)"
    )
    as_of: str = Field(
        "", description="ISO local date of the window's last day; empty = up to the newest weather hour in the lake"
    )

    _horizon = field_validator("horizon_hours")(classmethod(lambda cls, v: _check_horizon(v)))
    _as_of = field_validator("as_of")(classmethod(lambda cls, v: _check_as_of(v)))


class ScoringConfig(Config):
    horizon_hours: int = Field(24, description="hours ahead to forecast (the champion must be built for it)")
    history_days: int = Field(21, description="days of history handed to the champion (its lags and rolling state)")

    _horizon = field_validator("horizon_hours")(classmethod(lambda cls, v: _check_horizon(v)))


class PeakDemandConfig(Config):
    """Capacity per entity (kW). Default per feeder: the sum of its transformers' ``rating_kva``
    from ref_transformers times ``power_factor`` (kVA -> kW); the system: the sum over feeders.
    Summed nameplate ratings ignore diversity, so the margin is an optimistic upper bound."""

    capacity_kw: dict[str, float] = Field(
        default_factory=dict, description="entity_id -> capacity kW (overrides the default)"
    )
    power_factor: float = Field(1.0, description="kVA -> kW factor applied to transformer ratings")


# ======================================================================================
# lake glue
# ======================================================================================
_NO_LOAD = {"entity_id": pl.Utf8, "period_start": pl.Datetime("us", "UTC"), "mean_kw": pl.Float64}


def feeder_load(
    lake, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None, allow_empty: bool = False
) -> pl.DataFrame:
    """Hourly feeder load (entity_id, period_start, mean_kw) of gold_load_hourly plus the system
    total (``models.forecast.tables.with_system_total``), in [start, end). No rows raise, unless
    ``allow_empty`` (a day not ingested yet, e.g. today for the hourly peak re-issue)."""
    if allow_empty and not lake.exists(_T["gold_load_hourly"]):
        return pl.DataFrame(schema=_NO_LOAD)
    lf = lake.scan(_T["gold_load_hourly"]).filter(pl.col("level") == "feeder")
    if start is not None:
        lf = lf.filter(pl.col("period_start") >= start.to_pydatetime())
    if end is not None:
        lf = lf.filter(pl.col("period_start") < end.to_pydatetime())
    df = lf.select("entity_id", "period_start", "mean_kw").collect()
    if df.height == 0:
        if allow_empty:
            return pl.DataFrame(schema=_NO_LOAD)
        raise ValueError(f"gold_load_hourly has no feeder rows in [{start}, {end}): materialise gold_load_hourly first")
    return with_system_total(df)


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


_ISSUE_COLUMNS = ("temp_air_c", "ghi_wm2", "dni_wm2", "dhi_wm2", "cloud_cover", "wind_speed_ms")


def weather_issues(lake, start: pd.Timestamp, end: pd.Timestamp) -> pl.DataFrame:
    """silver_weather_forecast issues published in [start, end) (issued_at, valid_at and the variables),
    averaged over stations per (issue, valid hour) like :func:`hourly_weather`; empty (with the columns)
    before the source has landed anything. The scoring pipelines pick, per origin, the newest issue
    published by then (models.forecast.weather_inputs): reading up to ``end`` never hands them a later one."""
    utc = pl.Datetime("us", "UTC")
    empty = pl.DataFrame(schema={"issued_at": utc, "valid_at": utc, **dict.fromkeys(_ISSUE_COLUMNS, pl.Float64)})
    if not lake.exists(_T["silver_weather_forecast"]):
        return empty
    df = (
        lake.scan(_T["silver_weather_forecast"])
        .filter((pl.col("issued_at") >= start.to_pydatetime()) & (pl.col("issued_at") < end.to_pydatetime()))
        .select("issued_at", "valid_at", *_ISSUE_COLUMNS)
        .collect()
    )
    return df.group_by("issued_at", "valid_at").agg(pl.col(_ISSUE_COLUMNS).mean()).sort("issued_at", "valid_at")


def _md_table(df: pl.DataFrame) -> str:
    return df.to_pandas().to_markdown(index=False, floatfmt=".4g")


# ======================================================================================
# load models
# ======================================================================================
def _challenge(context, reg, name: str, trained: Trained) -> dict:
    """The registry's champion policy on a trained candidate (re-score the champion, log, register, promote)."""
    return reg.challenge(
        name, trained.model, params=trained.params, metrics=trained.metrics, backtest_id=trained.backtest_id,
        metric=trained.metric, higher_is_better=trained.higher_is_better, rescore=trained.rescore,
        figures=trained.figures, log=context.log.warning,
    )  # fmt: skip


def _importance_md(model, title: str) -> str | None:
    imp = feature_importance(model)
    return None if imp is None else plots.png_markdown(png_bytes(importance_figure(*imp, title)), title)


@asset(
    op_tags=queue_tags("train"),
    group_name="forecast_training",
    deps=["gold_load_hourly", "silver_weather", "silver_weather_forecast"],
    kinds={"mlflow", "xgboost"},
    description="Nightly: backtest, log, register and champion/challenger-promote one load model per feeder and the system",
)
def load_forecast_models(
    context: AssetExecutionContext,
    config: LoadTrainingConfig,
    lake: LakeResource,
    mlflow: MlflowResource,
    grid: GridSettings,
) -> MaterializeResult:
    lk, reg = lake.lake(), mlflow.registry()
    horizon = pd.Timedelta(hours=config.horizon_hours)
    last = (
        lk.scan(_T["gold_load_hourly"])
        .filter(pl.col("level") == "feeder")
        .select(pl.col("period_start").max())
        .collect()
        .item()
    )
    if last is None:
        raise ValueError("gold_load_hourly has no feeder rows: materialise gold_load_hourly first")
    end = _window_end(last, config.as_of, grid.timezone)
    start = end - pd.Timedelta(days=config.history_days)
    load = feeder_load(lk, start, end)
    exog: tuple[str, ...] = ()
    fx, n_issues = None, 0
    if config.use_weather:
        weather = hourly_weather(lk, start, end)
        load = with_temperature(load, weather)
        exog = ("temp_air_c",)
        # backtests and band calibration see the weather scoring uses: the NWP issues published by each origin
        issues = weather_issues(lk, start - pd.Timedelta(days=3), end)
        fx, n_issues = exog_as_known_at(issues, weather), int(issues["issued_at"].n_unique())
    kinds = config.candidates or [config.forecaster]
    makers = {
        k: make_load_forecaster(k, horizon, exog, grid.timezone, config.n_estimators, future_exog=fx) for k in kinds
    }
    baseline = make_load_forecaster("seasonal_naive_daily", horizon, (), grid.timezone)
    params = {"history_days": config.history_days, "backtest_days": config.backtest_days, "exog": list(exog),
              "backtest_weather": f"nwp ({n_issues} issues), persisted where none" if n_issues else "persisted" if exog else "none"}  # fmt: skip

    results, skipped, tables, pictures, retrain = [], {}, [], [], {}
    for (entity,), g in load.group_by(["entity_id"], maintain_order=True):
        name = f"{LOAD_MODEL_PREFIX}{entity}"
        if why := reg.retrain_requested(name):  # gold_forecast_accuracy saw the champion drift
            retrain[entity] = why
        try:
            t = train_load_entity(entity, g.drop("entity_id").sort("period_start").to_pandas(), makers=makers,
                                  baseline=baseline, horizon=horizon, backtest_days=config.backtest_days,
                                  rank_metric=config.rank_metric, window_end=end, params=params, future_exog=fx)  # fmt: skip
        except ValueError as exc:  # ForecastInputError and friends: too little history, gaps, constant, no weather
            skipped[entity] = f"{type(exc).__name__}: {exc}"
            context.log.warning(f"{name}: not trained: {skipped[entity]}")
            continue
        out = _challenge(context, reg, name, t)
        out["entity_id"] = entity
        out["candidate_scores"] = t.report["candidate_scores"]
        out["champion_metric_on_this_backtest"] = out["champion_rescored"]
        results.append(out)
        table = with_champion_row(t.report["scores"], out["champion_metrics"], out["champion_version_before"])
        tables.append(
            f"**{entity}** ({name} v{out['version']}: {'promoted to champion' if out['promoted'] else 'challenger'})\n\n{_md_table(table)}"
        )
        png = png_bytes(t.figures["forecast_vs_actual.png"])  # after MLflow logged it: png_bytes closes the figure
        pictures.append(plots.png_markdown(png, f"{entity}: forecast vs actual (backtest)"))
        if imp := _importance_md(t.model, f"{entity}: XGBoost feature importance (gain)"):
            pictures.append(imp)
        context.log.info(
            f"{name}: v{out['version']} {config.rank_metric}={t.metrics.get(config.rank_metric)} promoted={out['promoted']} ({out['promotion_reason']})"
        )
    if not results:
        raise ValueError(f"no load model could be trained: {skipped}")
    return MaterializeResult(
        metadata={
            "forecaster": config.forecaster if not config.candidates else f"best of {config.candidates}",
            "candidate_scores": MetadataValue.json({r["entity_id"]: r["candidate_scores"] for r in results}),
            "horizon_hours": config.horizon_hours,
            "window": f"{start} .. {end}",
            "backtest_weather": params["backtest_weather"],
            "run_ids": MetadataValue.json({r["entity_id"]: r["run_id"] for r in results}),
            "promoted": MetadataValue.json({r["entity_id"]: r["promoted"] for r in results}),
            "models": MetadataValue.json([run_summary(r, entity_id=r["entity_id"]) for r in results]),
            "skipped": MetadataValue.json(skipped),
            "retrained_after_drift": MetadataValue.json(retrain),
            "comparison": MetadataValue.md("\n\n".join(tables)),
            "plots": MetadataValue.md("\n\n".join(pictures)),
        }
    )


# ======================================================================================
# solar models (one per feeder's PV fleet)
# ======================================================================================
@asset(
    op_tags=queue_tags("train"),
    group_name="forecast_training",
    deps=["silver_weather", "silver_weather_forecast", "ref_meters"],
    kinds={"mlflow", "xgboost"},
    description="Nightly: backtest, log, register and promote one PV quantile model per feeder's rooftop fleet (with forecast weather when the window has issues)",
)
def solar_forecast_models(
    context: AssetExecutionContext,
    config: SolarTrainingConfig,
    lake: LakeResource,
    mlflow: MlflowResource,
    grid: GridSettings,
) -> MaterializeResult:
    lk, reg = lake.lake(), mlflow.registry()
    fleets = feeder_pv_systems(lk.read("ref_meters"))
    if not fleets:
        raise ValueError("ref_meters has no meter with has_pv: no PV fleet to model")
    last = lk.scan(_T["silver_weather"]).select(pl.col("observation_time").max()).collect().item()
    if last is None:
        raise ValueError("silver_weather is empty: materialise the weather ingestion first")
    end = _window_end(last, config.as_of, grid.timezone)
    start = end - pd.Timedelta(days=config.history_days)
    weather = regular_weather(hourly_weather(lk, start, end))
    issues = weather_issues(lk, start - pd.Timedelta(days=3), end) if config.use_forecast_weather else None
    horizons = list(range(1, config.horizon_hours + 1))
    cutoff = end - pd.Timedelta(days=config.backtest_days)
    results, tables, pictures = [], [], []
    for feeder, systems in sorted(fleets.items()):
        name = f"{SOLAR_MODEL_PREFIX}{feeder}"
        cap = float(sum(s.kw_dc for s in systems))
        make = lambda cap=cap: SolarXGBForecaster(cap, horizons=horizons, n_estimators=config.n_estimators, n_jobs=1)  # noqa: E731
        t = train_solar_entity(feeder, fleet_power(systems, weather), make=make, capacity_kw=cap, horizons=horizons,
                               cutoff=cutoff, window_end=end, weather_issues=issues,
                               params={"n_systems": len(systems), "n_estimators": config.n_estimators})  # fmt: skip
        out = _challenge(context, reg, name, t)
        out["entity_id"] = feeder
        results.append(out)
        table = with_champion_row(t.report["scores"], out["champion_metrics"], out["champion_version_before"])
        tables.append(
            f"**{feeder}** ({len(systems)} systems, {cap:.1f} kW DC; {name} v{out['version']}: {'promoted to champion' if out['promoted'] else 'challenger'})\n\n{_md_table(table)}"
        )
        fig = png_bytes(t.figures["forecast_vs_actual.png"])
        pictures.append(plots.png_markdown(fig, f"{feeder}: PV forecast vs actual (backtest, daylight)"))
        pictures.append(_importance_md(t.model, f"{feeder}: PV XGBoost feature importance (gain)"))
        context.log.info(
            f"{name}: v{out['version']} pinball={t.metrics.get('pinball'):.4g} promoted={out['promoted']} ({out['promotion_reason']})"
        )
    return MaterializeResult(
        metadata={
            "horizon_hours": config.horizon_hours,
            "window": f"{start} .. {end}",
            "backtest_cutoff": str(cutoff),
            "forecast_weather_issues": 0 if issues is None else int(issues["issued_at"].n_unique()),
            "run_ids": MetadataValue.json({r["entity_id"]: r["run_id"] for r in results}),
            "promoted": MetadataValue.json({r["entity_id"]: r["promoted"] for r in results}),
            "models": MetadataValue.json([run_summary(r, entity_id=r["entity_id"]) for r in results]),
            "comparison": MetadataValue.md("\n\n".join(tables)),
            "plots": MetadataValue.md("\n\n".join(pictures)),
        }
    )


# ======================================================================================
# scoring
# ======================================================================================
def _champion(reg, name: str, producer: str):
    """The champion loader the scoring pipelines call (may raise one of models.registry.champion_failures())."""
    return lambda: reg.champion_model(name, producer)


@asset(
    op_tags=queue_tags("score"),
    group_name="forecasts",
    partitions_def=daily_open,
    deps=[
        "load_forecast_models",
        lookback_dep("gold_load_hourly"),
        lookback_dep("silver_weather"),
        lookback_dep("silver_weather_forecast"),
    ],
    kinds={"delta", "polars"},
    description=_T["gold_load_forecast"].description,
)
def gold_load_forecast(
    context: AssetExecutionContext,
    config: ScoringConfig,
    lake: LakeResource,
    mlflow: MlflowResource,
    grid: GridSettings,
) -> MaterializeResult:
    lk, reg, day = lake.lake(), mlflow.registry(), partition_day(context)
    day_end = pd.Timestamp(day_bounds_utc(day, grid.timezone)[1])
    horizon = pd.Timedelta(hours=config.horizon_hours)
    load = feeder_load(lk, day_end - pd.Timedelta(days=config.history_days), day_end)
    weather = hourly_weather(lk, day_end - pd.Timedelta(days=config.history_days), day_end)
    issues = weather_issues(lk, day_end - pd.Timedelta(days=3), day_end)  # issued by the end of the day, at most
    load = with_temperature(load, weather)
    hists = {
        e: g.drop("entity_id").sort("period_start") for (e,), g in load.group_by(["entity_id"], maintain_order=True)
    }
    jobs = [
        (e, lambda e=e, hist=hist: score_load_entity(_champion(reg, f"{LOAD_MODEL_PREFIX}{e}", "load_forecast_models"),
                                                   hist, horizon, weather_issues=issues, observed_weather=weather))
        for e, hist in hists.items()
    ]  # fmt: skip
    run = score_entities(jobs, day, fallback="the daily seasonal naive baseline forecast", warn=context.log.warning)
    pictures = []
    for e, s in run.scored.items():
        if e == SYSTEM or len(pictures) < 2:
            title = f"{e}: {s.forecast['model'][0]} v{s.version} issued {s.issued_at:%Y-%m-%d %H:%M}Z"
            pictures.append(
                plots.png_markdown(png_bytes(forecast_figure(hists[e], s.forecast, title)), f"{e} forecast")
            )
    df = run.rows
    w = lk.write_partition(_T["gold_load_forecast"], df, day)
    return MaterializeResult(
        metadata={
            "dagster/row_count": w.rows,
            "delta_version": w.version,
            "champion_versions": MetadataValue.json(run.versions),
            "fallbacks": MetadataValue.json(run.fallbacks),
            "n_fallbacks": len(run.fallbacks),
            "future_weather_hours": MetadataValue.json(run.weather),
            "weather_issues_read": int(issues["issued_at"].n_unique()),
            "issued_at": MetadataValue.json(
                {e: str(t) for e, t in df.group_by("entity_id").agg(pl.col("issued_at").max()).iter_rows()}
            ),
            "forecasts": MetadataValue.md("\n\n".join(pictures)),
        }
    )


@asset(
    op_tags=queue_tags("score"),
    group_name="forecasts",
    partitions_def=daily_open,
    deps=[
        "solar_forecast_models",
        lookback_dep("silver_weather"),
        lookback_dep("silver_weather_forecast"),
        "ref_meters",
    ],
    kinds={"delta", "polars"},
    description=_T["gold_solar_forecast"].description,
)
def gold_solar_forecast(
    context: AssetExecutionContext,
    config: ScoringConfig,
    lake: LakeResource,
    mlflow: MlflowResource,
    grid: GridSettings,
) -> MaterializeResult:
    lk, reg, day = lake.lake(), mlflow.registry(), partition_day(context)
    day_end = pd.Timestamp(day_bounds_utc(day, grid.timezone)[1])
    raw = hourly_weather(lk, day_end - pd.Timedelta(days=2), day_end)
    weather = regular_weather(raw)
    issues = weather_issues(lk, day_end - pd.Timedelta(days=3), day_end)
    issued_at = weather["observation_time"].iloc[-1]
    fut_idx = pd.date_range(issued_at + HOUR, periods=config.horizon_hours, freq="1h")
    temps, _ = future_weather(issues, raw, issued_at + HOUR, fut_idx)  # cell temperature of the clear-sky power
    fleets = sorted(feeder_pv_systems(lk.read("ref_meters")).items())
    obs = {f: fleet_power(systems, weather) for f, systems in fleets}
    jobs = [
        (f, lambda f=f, systems=systems: score_solar_entity(
            _champion(reg, f"{SOLAR_MODEL_PREFIX}{f}", "solar_forecast_models"), obs[f],
            fleet_clearsky(systems, fut_idx, temps["temp_air_c"]), float(sum(s.kw_dc for s in systems)),
            config.horizon_hours, weather_issues=issues))
        for f, systems in fleets
    ]  # fmt: skip
    run = score_entities(jobs, day, fallback="smart persistence within [0, clear sky]", warn=context.log.warning)
    versions, fallbacks = run.versions, run.fallbacks
    df = run.rows
    system = system_total(df, len(fleets))  # quantiles summed: comonotone, errs wide
    all_champions = not fallbacks
    df = pl.concat(
        [
            df,
            forecast_rows(
                system,
                day,
                SYSTEM,
                SYSTEM,
                issued_at,
                "+".join(f"{k}:{v}" for k, v in versions.items()),
                None if all_champions else "; ".join(f"{k}: {v}" for k, v in fallbacks.items()),
            ),
        ]
    )
    w = lk.write_partition(_T["gold_solar_forecast"], df, day)
    sys_fc = df.filter(pl.col("entity_id") == SYSTEM)
    fleet_ac = sum(o["ac_kw"] for o in obs.values())
    hist = pl.DataFrame(
        {
            "period_start": pl.Series(fleet_ac.index.as_unit("us")).cast(pl.Datetime("us", "UTC")),
            "mean_kw": fleet_ac.to_numpy(),
        }
    )
    fig = forecast_figure(hist, sys_fc, f"PV fleet, all feeders: issued {issued_at:%Y-%m-%d %H:%M}Z")
    return MaterializeResult(
        metadata={
            "dagster/row_count": w.rows,
            "delta_version": w.version,
            "champion_versions": MetadataValue.json(versions),
            "fallbacks": MetadataValue.json(fallbacks),
            "n_fallbacks": len(fallbacks),
            "forecast_weather_hours": MetadataValue.json(run.weather),
            "issued_at": str(issued_at),
            "forecast": MetadataValue.md(plots.png_markdown(png_bytes(fig), "PV fleet forecast")),
        }
    )


# ======================================================================================
# peak demand
# ======================================================================================
@asset(
    op_tags=queue_tags("score"),
    group_name="forecasts",
    partitions_def=daily_open,
    deps=["gold_load_forecast", lookback_dep("gold_load_hourly"), "ref_transformers"],
    kinds={"delta", "polars"},
    description=_T["gold_peak_demand"].description,
)
def gold_peak_demand(
    context: AssetExecutionContext, config: PeakDemandConfig, lake: LakeResource, grid: GridSettings
) -> MaterializeResult:
    lk, day = lake.lake(), partition_day(context)
    start, end = (pd.Timestamp(t) for t in day_bounds_utc(day, grid.timezone))
    fc = lk.read_days(_T["gold_load_forecast"], day - dt.timedelta(days=3), day)
    observed = feeder_load(lk, start, end, allow_empty=True)  # today: nothing observed yet, the forecast alone
    caps = feeder_capacity_kw(lk.read("ref_transformers"), config.power_factor, config.capacity_kw)
    df = peak_demand(fc, observed, caps, day, grid.timezone)
    w = lk.write_partition(_T["gold_peak_demand"], df, day)
    show = df.with_columns(
        pl.col("peak_time").dt.convert_time_zone(grid.timezone).dt.strftime("%H:%M %Z").alias("peak_time_local")
    ).drop("date", "peak_time")
    return MaterializeResult(
        metadata={
            "dagster/row_count": w.rows,
            "min_reserve_margin_pct": float(df["reserve_margin_pct"].min()),
            "min_reserve_margin_p90_pct": float(df["reserve_margin_p90_pct"].min()),
            "peaks": MetadataValue.md(_md_table(show)),
            "capacity_source": "PeakDemandConfig.capacity_kw"
            if config.capacity_kw
            else f"sum of transformer rating_kva x {config.power_factor}",
        }
    )


# ======================================================================================
# accuracy after the fact + drift alert
# ======================================================================================
def _submit_alerts(alerting: AlertingResource, alerts: list, keys: list[str], context) -> int:
    """Submit to the batch outbox once per key (re-runs post nothing twice) and try to deliver;
    undelivered alerts stay durable in the outbox and go out with the next run. Returns how many were new."""
    if not alerts:
        return 0
    outbox = alerting.outbox()
    try:
        n = outbox.submit(alerts, keys=keys)
        if not outbox.flush(alerting.flush_timeout_s):
            context.log.warning(
                f"{outbox.depth()} alerts wait in {alerting.outbox_path} ({outbox.last_error}); they go out with the next run"
            )
    finally:
        outbox.close(0)
    return n


class AccuracyConfig(Config):
    lookback_days: int = Field(
        14, description="issued forecasts of the last N days are (re-)scored against the load that happened"
    )
    drift_window_days: int = Field(7, description="the champion's recent MAPE is taken over this many days")
    drift_multiple: float = Field(2.0, description="drift when recent MAPE > multiple x the champion's backtest MAPE")
    drift_min_hours: int = Field(48, description="fewer scored hours in the window: no drift verdict")


@asset(
    op_tags=queue_tags("score"),
    group_name="forecasts",
    partitions_def=daily_open,
    deps=[lookback_dep("gold_load_forecast"), lookback_dep("gold_load_hourly")],
    kinds={"delta", "polars", "alertmanager"},
    description=_T["gold_forecast_accuracy"].description
    + "; drift alert (Alertmanager) and retraining mark for drifting champions",
)
def gold_forecast_accuracy(
    context: AssetExecutionContext,
    config: AccuracyConfig,
    lake: LakeResource,
    mlflow: MlflowResource,
    grid: GridSettings,
    alerting: AlertingResource,
) -> MaterializeResult:
    from streaming_bridge.alerts import Alert

    lk, reg, day = lake.lake(), mlflow.registry(), partition_day(context)
    as_of = pd.Timestamp(day_bounds_utc(day, grid.timezone)[1])
    start = as_of - pd.Timedelta(days=config.lookback_days)
    fc = (
        lk.scan(_T["gold_load_forecast"])
        .filter((pl.col("issued_at") >= start.to_pydatetime()) & (pl.col("issued_at") < as_of.to_pydatetime()))
        .collect()
    )
    actual = feeder_load(lk, start, as_of + pd.Timedelta(days=3), allow_empty=True)
    acc = forecast_accuracy(fc, actual, as_of, grid.timezone).with_columns(pl.lit(day).alias("date"))
    w = lk.write_partition(_T["gold_forecast_accuracy"], acc.select(_T["gold_forecast_accuracy"].column_names), day)
    errors = scored_errors(fc.filter(pl.col("model_version") != "fallback"), actual, as_of)
    drift, alerts, keys = {}, [], []
    for (entity, model), _ in errors.group_by(["entity_id", "model"]):
        name = f"{LOAD_MODEL_PREFIX}{entity}"
        champ = reg.champion(name)
        if champ is None or "metric.mape" not in champ.tags:
            continue
        st = drift_status(errors.filter(pl.col("entity_id") == entity), model, float(champ.tags["metric.mape"]), as_of,
                          window_days=config.drift_window_days, multiple=config.drift_multiple, min_points=config.drift_min_hours)  # fmt: skip
        drift[entity] = st
        if st["drifting"]:
            why = f"{config.drift_window_days}-day MAPE {st['recent_mape']:.2f} % > {config.drift_multiple:g} x backtest {st['backtest_mape']:.2f} %"
            st["marked_version"] = reg.mark_for_retraining(name, why)
            alerts.append(Alert(
                {"alertname": "LoadForecastDrift", "severity": "warning", "asset_type": "feeder" if entity != SYSTEM else "system",
                 "asset_id": entity, "source": "batch", "model": name},
                {"summary": f"load forecast of {entity} drifting: {why}", "value": f"{st['ratio']:.3f}",
                 "runbook": "Check the feeder's recent load and weather feed; the champion is retrained at the next nightly run."},
                starts_at=as_of.to_pydatetime(), ends_at=(as_of + pd.Timedelta(days=1)).to_pydatetime(),
            ))  # fmt: skip
            keys.append(f"forecast_drift:{entity}:{day}")
    posted = _submit_alerts(alerting, alerts, keys, context)
    return MaterializeResult(
        metadata={
            "dagster/row_count": w.rows,
            "delta_version": w.version,
            "scored_hours": errors.height,
            "drift": MetadataValue.json(drift),
            "drifting": [e for e, st in drift.items() if st["drifting"]],
            "alerts_submitted": posted,
        }
    )


class SolarRampConfig(Config):
    threshold_kw_per_15min: float = Field(
        5.0, description="a forecast ramp is recorded when p50 changes faster than this (kW per 15 min)"
    )
    alert_kw_per_15min: float = Field(20.0, description="ramps at least this steep are also posted to Alertmanager")


@asset(
    op_tags=queue_tags("score"),
    group_name="forecasts",
    partitions_def=daily_open,
    deps=["gold_solar_forecast"],
    kinds={"delta", "polars", "alertmanager"},
    description=_T["gold_solar_ramps"].description + "; large ones alerted (Alertmanager)",
)
def gold_solar_ramps(
    context: AssetExecutionContext, config: SolarRampConfig, lake: LakeResource, alerting: AlertingResource
) -> MaterializeResult:
    from models.solar.ramps import forecast_ramps
    from streaming_bridge.alerts import Alert

    lk, day = lake.lake(), partition_day(context)
    ramps = forecast_ramps(lk.read(_T["gold_solar_forecast"], day), config.threshold_kw_per_15min).with_columns(
        (pl.col("max_rate_kw_per_15min") >= config.alert_kw_per_15min).alias("alerted"), pl.lit(day).alias("date")
    )
    w = lk.write_partition(_T["gold_solar_ramps"], ramps.select(_T["gold_solar_ramps"].column_names), day)
    big = ramps.filter(pl.col("alerted"))
    alerts = [
        Alert(
            {"alertname": "SolarForecastRamp", "severity": "warning", "asset_type": r["level"], "asset_id": r["entity_id"], "source": "batch", "direction": r["direction"]},
            {"summary": f"PV forecast ramp {r['direction']} {r['change_kw']:+.0f} kW on {r['entity_id']} {r['start']:%Y-%m-%d %H:%M}Z .. {r['end']:%H:%M}Z "
                        f"(up to {r['max_rate_kw_per_15min']:.1f} kW per 15 min)", "value": f"{r['max_rate_kw_per_15min']:.3f}",
             "runbook": "Pre-position reserves / flexible load for the ramp window."},
            starts_at=r["start"], ends_at=r["end"],
        )
        for r in big.iter_rows(named=True)
    ]  # fmt: skip
    submitted = _submit_alerts(
        alerting,
        alerts,
        [f"solar_ramp:{r['entity_id']}:{r['issued_at']}:{r['start']}" for r in big.iter_rows(named=True)],
        context,
    )
    return MaterializeResult(metadata={"dagster/row_count": w.rows, "delta_version": w.version, "alerts_submitted": submitted,
                                       "steepest_kw_per_15min": float(ramps["max_rate_kw_per_15min"].max() or 0.0)})  # fmt: skip


FORECAST_ASSETS = [
    load_forecast_models,
    solar_forecast_models,
    gold_load_forecast,
    gold_solar_forecast,
    gold_peak_demand,
    gold_forecast_accuracy,
    gold_solar_ramps,
]
