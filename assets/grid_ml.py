"""Grid-ML assets: nightly training (anomaly ensembles, transformer failure/RUL, customer segments)
and hourly scoring of the current utility-local day into the grid gold tables.

Thin functions around :mod:`models.grid` (the library holds the models, the feature builders, the
hold-out metrics and the table builders; nothing there imports Dagster): this module reads the lake,
calls the library, writes the gold tables and talks to the MLflow registry. Models live in the
registry through :class:`models.registry.ModelRegistry`:

* each training asset trains on the last ``window_days`` of silver data
  (:func:`models.grid.evaluate.training_window`), holds the last ``eval_days`` back as its
  evaluation (:func:`models.grid.evaluate.anomaly_holdout_metrics`,
  :func:`models.grid.failure.failure_holdout_metrics`,
  :func:`models.grid.segments.segment_holdout_metrics`), logs params/metrics/the pickled model
  (pyfunc flavour) and registers a new version;
* the ``champion`` alias moves only when the new version beats the champion **on the same
  evaluation**: before promoting, the current champion is re-scored on the candidate's held-out
  days and its version tags are updated to that evaluation (``backtest_id`` + metric), which is
  what :meth:`ModelRegistry.promote_if_better` compares. The promotion metric is a proper scoring
  rule where one exists (Brier score of the calibrated probabilities: defined even on a day without
  any anomaly, unlike F1 or ROC-AUC), or segment-name accuracy on held-out panel meters;
* scoring loads ``models:/<name>@champion``; ``model_version`` in the gold rows is ``name:vN``.

Exports :data:`GRID_ML_ASSETS` (pipelines/definitions.py) and the group names
:data:`TRAINING_GROUP` / :data:`SCORING_GROUP` (pipelines/jobs.py selects the jobs by them; the
schedules are in pipelines/schedules.py). The registry is the ``mlflow`` resource
(:class:`assets.resources.MlflowResource`).
"""


import datetime as dt
from functools import partial
from typing import Any, Callable

import numpy as np
import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    AssetSpec,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
    multi_asset,
)

from assets.ingestion import gx_check_specs, gx_checks
from lake import plots
from contracts import TABLES, DemandResponse
from models.grid import plots as grid_plots
from models.grid.config import MODEL_ANOMALY, MODEL_FAILURE, MODEL_SEGMENTS
from models.grid.features import local_date
from models.registry import backtest_id
from assets.partitions import daily_open, lookback_dep, partition_day
from assets.queues import queue_tags
from assets.resources import GridSettings, LakeResource, MlflowResource

_T = TABLES
TRAINING_GROUP = "grid_ml_training"
SCORING_GROUP = "grid_ml"

#: registered model names in the MLflow registry: models.grid.config (MODEL_ANOMALY, MODEL_FAILURE, MODEL_SEGMENTS)

#: The forecasting layer's gold table (contracts: p10/p50/p90 per level/entity/issued_at/period_start).
#: Where it has no feeder rows for the day the DR asset falls back to seasonal-naive / persistence
#: forecasts from gold_load_hourly (see _dr_forecast) and says so in the metadata.
FORECAST_TABLE = "gold_load_forecast"

#: The scoring assets use assets.partitions.daily_open, which includes the *current* local day
#: (end_offset=1): the hourly schedule re-scores today as readings arrive. Same start and time zone
#: as assets.partitions.daily, so day keys line up with the silver partitions.


# ------------------------------------------------------------------------------ configs
class TrainWindowConfig(Config):
    """How much history a training run uses."""

    #: days of silver history, ending at the newest day in the lake (or ``as_of``)
    window_days: int = 28
    #: fewer days than this with data in the window: refuse to train (the error says how many)
    min_days: int = 7
    #: the last days of the window are held back to evaluate the candidate and the champion
    eval_days: int = 1
    #: ISO date of the window's last day; empty = the newest day of silver_meter_readings
    as_of: str = ""


class AnomalyTrainConfig(TrainWindowConfig):
    n_estimators: int = 64
    ae_epochs: int = 8
    max_train_rows: int = 40_000
    seed: int = 0


class FailureTrainConfig(TrainWindowConfig):
    n_estimators: int = 200
    max_depth: int = 4
    seed: int = 0


class SegmentTrainConfig(TrainWindowConfig):
    #: share of the labelled panel held back to measure segment-name accuracy
    eval_share: float = 0.3
    seed: int = 0


class SegmentScoreConfig(Config):
    #: days of readings a profile is built from, ending at the partition day
    profile_days: int = 28


class DRConfigDagster(Config):
    """Demand-response planning per feeder."""

    #: explicit feeder capacities (kW); feeders not listed get capacity_share x their transformer kVA
    feeder_capacity_kw: dict[str, float] = {}
    #: share of the summed transformer ratings (kVA ~ kW at unity power factor) a feeder may carry
    #: (None: the profile's demand_response.capacity_share; likewise margin and base_incentive)
    capacity_share: float | None = None
    margin: float | None = None
    base_incentive: float | None = None
    #: which gold_load_forecast quantile is planned against (p50; p90 for a cautious operator)
    forecast_quantile: str = "p50"

    def programme(self, profile: DemandResponse) -> DemandResponse:
        """The profile's DR programme with this run's overrides."""
        keys = ("capacity_share", "margin", "base_incentive")
        return profile.model_copy(update={k: getattr(self, k) for k in keys if getattr(self, k) is not None})


def _segment_config(grid: GridSettings, **kw):
    """SegmentConfig of the utility profile: its zone, peak window and holiday calendar."""
    from models.grid.segments import SegmentConfig

    p = grid.profile()
    return SegmentConfig(timezone=p.timezone, peak_hours=p.tariffs.peak_window.bounds, holiday_country=p.holiday_country, **kw)


# ------------------------------------------------------------------------------ helpers
def _require(lk, name: str, why: str) -> pl.DataFrame:
    if not lk.exists(name):
        raise FileNotFoundError(f"{name} is not in the lake ({lk.uri(name)}); {why}")
    return lk.read(name)


def _window(lk, cfg: TrainWindowConfig, what: str) -> tuple[dt.date, dt.date, list[dt.date]]:
    """(first day, last day, days with meter data) of the training window; refuses too little history."""
    from models.grid.evaluate import training_window

    if not lk.exists("silver_meter_readings"):
        raise FileNotFoundError(f"{what}: silver_meter_readings does not exist yet: ingest some days first")
    dates = lk.scan("silver_meter_readings").select(pl.col("date").unique()).collect()["date"].to_list()
    return training_window(dates, cfg.window_days, cfg.min_days, cfg.eval_days,
                           dt.date.fromisoformat(cfg.as_of) if cfg.as_of else None, what)


def _register(context, reg, name: str, model: Any, params: dict, metrics: dict[str, float | None], bid: str,
              metric: str, higher_is_better: bool, rescore: Callable[[Any], float]) -> dict:
    """Log + register the candidate; promote it iff it beats the champion re-scored on the same evaluation."""
    champ = reg.champion(name)
    rescored = None
    if champ is not None and champ.tags.get("backtest_id") != bid:
        try:
            rescored = float(rescore(reg.load(name)))
        except Exception as e:  # an unloadable/incompatible champion stays "not comparable"; say so
            context.log.warning(f"{name}: champion v{champ.version} could not be re-scored on {bid}: {e!r}")
        if rescored is not None and np.isfinite(rescored):
            reg.client.set_model_version_tag(name, champ.version, "backtest_id", bid)
            reg.client.set_model_version_tag(name, champ.version, f"metric.{metric}", repr(rescored))
    finite = {k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)}
    out = reg.train_register_promote(name, params=params, metrics=finite, backtest_id=bid, model=model,
                                     flavor="pyfunc", metric=metric, higher_is_better=higher_is_better)
    out["champion_rescored"] = rescored
    out["model_uri"] = f"models:/{name}@champion"
    context.log.info(f"{name} v{out['version']}: promoted={out['promoted']} ({out['promotion_reason']})")
    return out


def _train_meta(results: dict[str, dict], extra: dict | None = None) -> dict:
    """Dagster metadata of the registered runs (prefixed by their key when there are several) + ``extra``."""
    md: dict[str, Any] = {}
    for key, r in results.items():
        p = f"{key}/" if len(results) > 1 else ""
        md[f"{p}run_id"] = r["run_id"]
        md[f"{p}model_version"] = f"{r['model_name']}:v{r['version']}"
        md[f"{p}promoted"] = bool(r["promoted"])
        md[f"{p}promotion"] = r["promotion_reason"]
        md[f"{p}metrics"] = MetadataValue.json({k[len("metric_"):]: v for k, v in r.items() if k.startswith("metric_")})
        md[f"{p}model_uri"] = r["model_uri"]
    md.update(extra or {})
    return md


def _champion(reg, name: str, producer: str) -> tuple[Any, str]:
    """(model, 'name:vN') of the champion, or a clear error naming the training asset to run."""
    champ = reg.champion(name)
    if champ is None:
        raise LookupError(f"no champion for registered model {name!r} in {reg.tracking_uri}: materialise {producer} first")
    return reg.load(name), f"{name}:v{champ.version}"


# ------------------------------------------------------------------------------ data loaders
_METER_COLS = ["date", "meter_id", "reading_time", "consumption_kwh", "demand_kw", "voltage", "power_factor"]
_SCADA_COLS = ["date", "transformer_id", "sample_time", "load_kva", "top_oil_temp_c", "hot_spot_temp_c", "voltage_v", "frequency_hz"]
_WEATHER_COLS = ["observation_time", "temp_air_c"]


def _anomaly_features(lk, lo: dt.date, hi: dt.date, tz: str) -> dict[str, pl.DataFrame]:
    """Anomaly features of the silver rows in lo..hi per stream (a stream without rows is left out)."""
    from models.grid.config import FeatureConfig
    from models.grid.features import anomaly_features

    return anomaly_features(lk.read_days(_T["silver_meter_readings"], lo, hi, _METER_COLS),
                            lk.read_days(_T["silver_scada"], lo, hi, _SCADA_COLS),
                            lk.read_days(_T["silver_weather"], lo, hi, _WEATHER_COLS),
                            _require(lk, "ref_transformers", "materialise ref_transformers"), FeatureConfig(timezone=tz))


def _failure_inputs(lk, lo: dt.date, hi: dt.date, tz: str, tx_model) -> pl.DataFrame:
    """Hourly transformer snapshots of lo..hi with anomaly_count_7d from the transformer anomaly champion."""
    from models.grid.config import FeatureConfig
    from models.grid.failure import failure_snapshots

    scada = lk.read_days(_T["silver_scada"], lo, hi, _SCADA_COLS)
    if scada.height == 0:
        raise ValueError(f"silver_scada has no rows in {lo}..{hi}: nothing to build transformer snapshots from")
    weather = lk.read_days(_T["silver_weather"], lo, hi, _WEATHER_COLS)
    ref_tx = _require(lk, "ref_transformers", "materialise ref_transformers")
    return failure_snapshots(scada, ref_tx, weather, tx_model, FeatureConfig(timezone=tz))


# ------------------------------------------------------------------------------ training
@asset(
    op_tags=queue_tags("train"),
    group_name=TRAINING_GROUP,
    deps=["silver_meter_readings", "silver_scada", "silver_weather", "ref_transformers", "ref_meters", "truth_events"],
    kinds={"mlflow", "pytorch", "scikitlearn"},
    description="Anomaly ensembles (isolation forest + Lightning autoencoder + one-class SVM, calibrated vote) "
                "for meter readings and SCADA samples, trained on the last window_days; registered in MLflow.",
)
def grid_anomaly_model(context: AssetExecutionContext, config: AnomalyTrainConfig, lake: LakeResource,
                       grid: GridSettings, mlflow: MlflowResource) -> MaterializeResult:
    from models.grid.anomaly import AnomalyEnsemble
    from models.grid.config import AlertThresholds, AnomalyConfig, FeatureConfig
    from models.grid.evaluate import anomaly_holdout_metrics, label_readings, reading_interval

    lk, tz = lake.lake(), grid.timezone
    start, end, days = _window(lk, config, "grid_anomaly_model")
    eval_from = days[-config.eval_days]
    events = _require(lk, "truth_events", "labels come from truth_events (confirmed cases)")
    ref_meters = _require(lk, "ref_meters", "materialise ref_meters")
    feats = _anomaly_features(lk, start, end, tz)
    reg = mlflow.registry()
    acfg = AnomalyConfig(n_estimators=config.n_estimators, ae_epochs=config.ae_epochs,
                         max_train_rows=config.max_train_rows, seed=config.seed)
    results, fit = {}, {}
    for kind in ("meter", "transformer"):
        if kind not in feats:
            raise ValueError(f"grid_anomaly_model: no {'silver_meter_readings' if kind == 'meter' else 'silver_scada'} "
                             f"rows in {start}..{end}")
        f = feats[kind]
        lab = label_readings(f, events, ref_meters, kind, reading_interval(ref_meters))
        is_eval = f.select(local_date("time", tz) >= eval_from).to_series().to_numpy()
        model = AnomalyEnsemble(kind, config=acfg, feature_config=FeatureConfig(timezone=tz),
                                thresholds=AlertThresholds(**grid.profile().alert_bands.anomaly.model_dump()))
        model.fit(f.filter(pl.Series(~is_eval)), lab.is_not_null().to_numpy()[~is_eval])
        evaluate = partial(anomaly_holdout_metrics, features=f, labels=lab, is_eval=is_eval)
        metrics = evaluate(model)
        bid = backtest_id(kind, eval_from, end, int(metrics["eval_rows"]), int(metrics["eval_positives"]))
        params = {"kind": kind, "window": f"{start}..{end}", "train_days": len(days) - config.eval_days,
                  "eval_days": f"{eval_from}..{end}", "train_rows": int((~is_eval).sum()),
                  **{k: v for k, v in acfg.__dict__.items()}, "fit_report": model.fit_report_}
        results[kind] = _register(context, reg, MODEL_ANOMALY[kind], model, params, metrics, bid, "brier", False,
                                  lambda m, ev=evaluate: ev(m)["brier"])
        fit[kind] = model.fit_report_
    return MaterializeResult(metadata=_train_meta(results, {
        "window": f"{start}..{end}", "days_found": len(days), "eval_days": f"{eval_from}..{end}",
        "fit_report": MetadataValue.json(fit), "tracking_uri": reg.tracking_uri,
    }))


@asset(
    op_tags=queue_tags("train"),
    group_name=TRAINING_GROUP,
    deps=["grid_anomaly_model", "silver_scada", "silver_weather", "ref_transformers", "truth_events"],
    kinds={"mlflow", "xgboost"},
    description="Transformer failure-within-72h classifier + AFT survival (remaining useful life), XGBoost; "
                "anomaly counts come from the transformer anomaly champion.",
)
def grid_failure_model(context: AssetExecutionContext, config: FailureTrainConfig, lake: LakeResource,
                       grid: GridSettings, mlflow: MlflowResource) -> MaterializeResult:
    from models.grid.config import AlertThresholds
    from models.grid.failure import FailureConfig, FailureModel, failure_holdout_metrics, failure_targets

    lk, tz = lake.lake(), grid.timezone
    start, end, days = _window(lk, config, "grid_failure_model")
    eval_from = days[-config.eval_days]
    reg = mlflow.registry()
    tx_model, tx_version = _champion(reg, MODEL_ANOMALY["transformer"], "grid_anomaly_model")
    snaps = _failure_inputs(lk, start, end, tz, tx_model)
    events = _require(lk, "truth_events", "failure labels come from truth_events")
    fcfg = FailureConfig(n_estimators=config.n_estimators, max_depth=config.max_depth, seed=config.seed,
                         thresholds=AlertThresholds(**grid.profile().alert_bands.failure_risk.model_dump()))
    targets = failure_targets(snaps, events, fcfg.horizon_h)
    is_eval = targets.select(local_date("as_of", tz) >= eval_from).to_series()
    model = FailureModel(fcfg).fit(targets.filter(~is_eval))
    ev_t = targets.filter(is_eval & pl.col("in_service"))
    if ev_t.height == 0:
        raise ValueError(f"grid_failure_model: no in-service snapshots on the evaluation days {eval_from}..{end}")
    metrics = failure_holdout_metrics(model, ev_t)
    bid = backtest_id("failure", eval_from, end, ev_t.height, int(metrics["eval_positives"]), tx_version)
    params = {"window": f"{start}..{end}", "eval_days": f"{eval_from}..{end}", "horizon_h": fcfg.horizon_h,
              "n_estimators": fcfg.n_estimators, "max_depth": fcfg.max_depth, "learning_rate": fcfg.learning_rate,
              "train_snapshots": int((~is_eval).sum()), "anomaly_model": tx_version,
              "train_positives": int(targets.filter(~is_eval & pl.col("in_service"))["fails_within"].sum())}
    r = _register(context, reg, MODEL_FAILURE, model, params, metrics, bid, "brier", False,
                  lambda m: failure_holdout_metrics(m, ev_t)["brier"])
    return MaterializeResult(metadata=_train_meta({"failure": r}, {
        "window": f"{start}..{end}", "days_found": len(days), "anomaly_model": tx_version,
        "train_positives": params["train_positives"],
    }))


@asset(
    op_tags=queue_tags("train"),
    group_name=TRAINING_GROUP,
    deps=["silver_meter_readings", "ref_meters", "truth_customers"],
    kinds={"mlflow", "scikitlearn"},
    description="Customer segments: k-means on normalised load profiles seeded and named from the labelled panel "
                "(truth_customers); promoted on segment-name accuracy of held-out panel meters.",
)
def grid_segment_model(context: AssetExecutionContext, config: SegmentTrainConfig, lake: LakeResource,
                       grid: GridSettings, mlflow: MlflowResource) -> MaterializeResult:
    from models.grid.anomaly import asset_in_share
    from models.grid.segments import (
        SegmentModel,
        profile_features,
        segment_distribution,
        segment_holdout_metrics,
    )

    lk = lake.lake()
    start, end, days = _window(lk, config, "grid_segment_model")
    readings = lk.read_days(_T["silver_meter_readings"], start, end, _METER_COLS)
    ref_meters = _require(lk, "ref_meters", "materialise ref_meters")
    panel = _require(lk, "truth_customers", "the labelled panel names the segments").rename({"archetype": "segment"})
    scfg = _segment_config(grid, seed=config.seed)
    prof = profile_features(readings, ref_meters, scfg)
    held = asset_in_share(panel["meter_id"], config.eval_share, salt=f"segment-eval-{config.seed}")
    train_panel, eval_panel = panel.filter(pl.Series(~held)), panel.filter(pl.Series(held))
    if eval_panel.height == 0:
        raise ValueError(f"grid_segment_model: eval_share {config.eval_share} left no panel meter for evaluation")
    model = SegmentModel(scfg).fit(prof, train_panel)
    metrics = segment_holdout_metrics(model, prof, eval_panel)
    bid = backtest_id("segments", start, end, prof.height, sorted(eval_panel["meter_id"].to_list()))
    params = {"window": f"{start}..{end}", "meters": prof.height, "panel_train": train_panel.height,
              "panel_eval": eval_panel.height, "segments": model.names_, "min_days": scfg.min_days}
    reg = mlflow.registry()
    r = _register(context, reg, MODEL_SEGMENTS, model, params, metrics, bid, "name_accuracy", True,
                  lambda m: segment_holdout_metrics(m, prof, eval_panel)["name_accuracy"])
    return MaterializeResult(metadata=_train_meta({"segments": r}, {
        "window": f"{start}..{end}", "days_found": len(days), "tracking_uri": reg.tracking_uri,
        "distribution": MetadataValue.json(segment_distribution(model.predict(prof))),
    }))


# ------------------------------------------------------------------------------ scoring
def _silver_dep(name: str, days_back: int) -> AssetDep:
    """A dep on a daily silver table read over [day - days_back, day] (lineage says so)."""
    return lookback_dep(name, days_back)


def _same_day(name: str) -> AssetDep:
    return lookback_dep(name, 0)


#: meter rolling features look back 8 days (7-day level + 1-day window)
METER_CONTEXT_DAYS = 8


@asset(
    op_tags=queue_tags("score"),
    group_name=SCORING_GROUP,
    partitions_def=daily_open,
    deps=[_silver_dep("silver_meter_readings", METER_CONTEXT_DAYS), _silver_dep("silver_scada", 1),
          _silver_dep("silver_weather", 1), "ref_transformers", "grid_anomaly_model"],
    kinds={"delta", "polars", "mlflow"},
    description=_T["gold_anomaly_scores"].description,
    check_specs=gx_check_specs("gold_anomaly_scores"),
)
def gold_anomaly_scores(context: AssetExecutionContext, lake: LakeResource, grid: GridSettings, mlflow: MlflowResource):
    from models.grid.alerts import to_gold_scores

    lk, tz, day = lake.lake(), grid.timezone, partition_day(context)
    reg = mlflow.registry()
    lo = {"meter": day - dt.timedelta(days=METER_CONTEXT_DAYS), "transformer": day - dt.timedelta(days=1)}
    feats = {}
    for kind in ("meter", "transformer"):
        feats[kind] = _anomaly_features(lk, lo[kind], day, tz).get(kind)
    if all(f is None or f.filter(local_date("time", tz) == day).height == 0 for f in feats.values()):
        raise ValueError(f"gold_anomaly_scores: no silver_meter_readings or silver_scada rows for {day}: ingest the day first")
    parts, versions, th = [], {}, None
    for kind, f in feats.items():
        if f is None:
            continue
        model, versions[kind] = _champion(reg, MODEL_ANOMALY[kind], "grid_anomaly_model")
        th = model.thresholds
        s = model.score(f).filter(local_date("time", tz) == day)
        parts.append(to_gold_scores(s, kind, versions[kind], tz))
    df = pl.concat(parts)
    w = lk.write_partition(_T["gold_anomaly_scores"], df, day)
    status = df.group_by("asset_type", "status").len().sort("asset_type", "status")
    png = grid_plots.score_distribution_png(df, th, f"anomaly scores {day}")
    yield MaterializeResult(metadata={
        "dagster/row_count": w.rows, "delta_version": w.version, "model_versions": MetadataValue.json(versions),
        "status_counts": MetadataValue.json({f"{a}/{s}": int(n) for a, s, n in status.iter_rows()}),
        "score_distribution": MetadataValue.md(plots.png_markdown(png, f"anomaly scores {day}")),
    })
    yield from gx_checks(lk, _T["gold_anomaly_scores"], day)


@asset(
    op_tags=queue_tags("score"),
    group_name=SCORING_GROUP,
    partitions_def=daily_open,
    deps=[_silver_dep("silver_scada", 8), _silver_dep("silver_weather", 8), _same_day("silver_meter_readings"),
          "ref_transformers", "ref_meters", "grid_failure_model", "grid_anomaly_model"],
    kinds={"delta", "polars", "mlflow"},
    description=_T["gold_transformer_risk"].description,
    check_specs=gx_check_specs("gold_transformer_risk"),
)
def gold_transformer_risk(context: AssetExecutionContext, lake: LakeResource, grid: GridSettings, mlflow: MlflowResource):
    from models.grid.failure import outage_impact, to_gold_risk

    lk, tz, day = lake.lake(), grid.timezone, partition_day(context)
    reg = mlflow.registry()
    tx_model, tx_version = _champion(reg, MODEL_ANOMALY["transformer"], "grid_anomaly_model")
    fm, version = _champion(reg, MODEL_FAILURE, "grid_failure_model")
    # 7 days of anomaly counts + 24 h rolling features before the first hour of the day
    snaps = _failure_inputs(lk, day - dt.timedelta(days=8), day, tz, tx_model).filter(local_date("as_of", tz) == day)
    if snaps.height == 0:
        raise ValueError(f"gold_transformer_risk: no silver_scada samples for {day}: ingest the day first")
    impact = outage_impact(_require(lk, "ref_meters", "materialise ref_meters"), lk.read("ref_transformers"),
                           lk.read_days(_T["silver_meter_readings"], day, day, ["meter_id", "demand_kw"]))
    pred = to_gold_risk(fm.predict(snaps), impact, version, tz)
    w = lk.write_partition(_T["gold_transformer_risk"], pred, day)
    th = fm.config.thresholds
    top = (pred.sort("failure_probability_72h", descending=True).unique("transformer_id", keep="first", maintain_order=True)
           .head(5).select("transformer_id", "failure_probability_72h", "rul_hours", "customers_downstream"))
    png = grid_plots.top_risk_png(pred, th, f"transformer failure risk {day}")
    yield MaterializeResult(metadata={
        "dagster/row_count": w.rows, "delta_version": w.version, "model_version": version, "anomaly_model": tx_version,
        "transformers_at_alert": int(pred.filter(pl.col("failure_probability_72h") >= th.alert)["transformer_id"].n_unique()),
        "top_risk": MetadataValue.md(top.to_pandas().to_markdown(index=False)),
        "top_risk_plot": MetadataValue.md(plots.png_markdown(png, f"transformer risk {day}")),
    })
    yield from gx_checks(lk, _T["gold_transformer_risk"], day)


@asset(
    op_tags=queue_tags("score"),
    group_name=SCORING_GROUP,
    partitions_def=daily_open,
    deps=[_same_day("gold_anomaly_scores"), _same_day("gold_transformer_risk")],
    kinds={"delta", "polars"},
    description=_T["gold_alerts"].description + ". The streaming bridge's input: columns are a contract.",
    check_specs=[
        *gx_check_specs("gold_alerts"),
        AssetCheckSpec("one_alert_per_fingerprint", asset="gold_alerts", blocking=True,
                       description="each fingerprint appears once in the whole table (not only per day): the bridge dedupes on it"),
    ],
)
def gold_alerts(context: AssetExecutionContext, lake: LakeResource, grid: GridSettings, mlflow: MlflowResource):
    """Alerts from both rules: anomaly_score (meters and transformers) and failure_risk (transformers)."""
    from models.grid.alerts import day_alerts, duplicate_fingerprints
    from reporting.report import anomaly_timeline_figure

    lk, tz, day = lake.lake(), grid.timezone, partition_day(context)
    scores = lk.read(_T["gold_anomaly_scores"], day)
    risk = lk.read(_T["gold_transformer_risk"], day)
    reg = mlflow.registry()
    # thresholds of the current champions (the scores' model versions may be older)
    anomaly_th = {kind: _champion(reg, MODEL_ANOMALY[kind], "grid_anomaly_model")[0].thresholds
                  for kind in scores["asset_type"].unique().to_list()}
    risk_th = _champion(reg, MODEL_FAILURE, "grid_failure_model")[0].config.thresholds if risk.height else None
    df = day_alerts(scores, anomaly_th, risk, risk_th, tz)
    w = lk.write_partition(_T["gold_alerts"], df, day)
    by = df.group_by("rule", "severity").len().sort("rule", "severity")
    timeline = anomaly_timeline_figure(scores, df, tz)
    yield MaterializeResult(metadata={
        "timeline": MetadataValue.md(plots.png_markdown(timeline, f"anomaly timeline {day}")),
        "dagster/row_count": w.rows, "delta_version": w.version,
        "alerts_by_rule_severity": MetadataValue.json({f"{a}/{s}": int(n) for a, s, n in by.iter_rows()}),
        "critical": MetadataValue.md(df.filter(pl.col("severity") == "critical").sort("score", descending=True).head(10)
                                     .select("asset_type", "asset_id", "rule", "score", "window_start", "reason")
                                     .to_pandas().to_markdown(index=False) if df.height else "none"),
    })
    yield from gx_checks(lk, _T["gold_alerts"], day)
    dup = duplicate_fingerprints(lk.scan("gold_alerts"))
    yield AssetCheckResult(
        asset_key="gold_alerts", check_name="one_alert_per_fingerprint", passed=dup.height == 0,
        severity=AssetCheckSeverity.ERROR,
        metadata={"duplicated_fingerprints": dup.height,
                  "examples": MetadataValue.json([{"fingerprint": f, "n": n, "dates": [str(d) for d in ds]}
                                                  for f, n, ds in dup.head(5).iter_rows()])},
    )


@multi_asset(
    op_tags=queue_tags("score"),
    specs=[
        AssetSpec("gold_customer_segments", group_name=SCORING_GROUP, description=_T["gold_customer_segments"].description,
                  deps=[_silver_dep("silver_meter_readings", 27), "ref_meters", "grid_segment_model"], kinds={"delta", "polars"}),
        AssetSpec("gold_recommendations", group_name=SCORING_GROUP, description=_T["gold_recommendations"].description,
                  deps=["ref_meters"], kinds={"delta", "polars"}),
    ],
    partitions_def=daily_open,
)
def gold_segments_and_recommendations(context: AssetExecutionContext, config: SegmentScoreConfig, lake: LakeResource,
                                      grid: GridSettings, mlflow: MlflowResource):
    from models.grid.recommend import recommend
    from models.grid.segments import profile_features, segment_distribution
    from reporting.report import segment_figure

    lk, day = lake.lake(), partition_day(context)
    model, version = _champion(mlflow.registry(), MODEL_SEGMENTS, "grid_segment_model")
    readings = lk.read_days(_T["silver_meter_readings"], day - dt.timedelta(days=config.profile_days - 1), day, _METER_COLS)
    if readings.filter(pl.col("date") == day).height == 0:
        raise ValueError(f"gold_customer_segments: no silver_meter_readings rows for {day}: ingest the day first")
    ref_meters = _require(lk, "ref_meters", "materialise ref_meters")
    scfg = _segment_config(grid, seed=model.config.seed, min_days=model.config.min_days)
    seg = model.predict(profile_features(readings, ref_meters, scfg)).with_columns(
        pl.lit(day).alias("as_of"), pl.lit(version).alias("model_version"))
    w1 = lk.write_partition(_T["gold_customer_segments"], seg, day)
    rec = recommend(seg, ref_meters, grid.profile().tariffs, grid.profile().demand_response).with_columns(pl.lit(day).alias("as_of"))
    w2 = lk.write_partition(_T["gold_recommendations"], rec, day)
    chosen = rec.filter(pl.col("recommended"))
    yield MaterializeResult(asset_key="gold_customer_segments", metadata={
        "dagster/row_count": w1.rows, "model_version": version, "profile_days": config.profile_days,
        "provisional": int(seg["provisional"].sum()), "distribution": MetadataValue.json(segment_distribution(seg)),
        "segment_mix": MetadataValue.md(plots.png_markdown(segment_figure(seg), f"segment mix {day}")),
    })
    yield MaterializeResult(asset_key="gold_recommendations", metadata={
        "dagster/row_count": w2.rows, "recommended": chosen.height,
        "recommended_by_kind": MetadataValue.json({k: int(n) for k, n in chosen.group_by("kind").len().sort("kind").iter_rows()}),
        "est_monthly_savings_total": round(float(chosen["est_monthly_savings"].sum()), 2),
    })


def _dr_forecast(lk, day: dt.date, tz: str, quantile: str) -> tuple[pl.DataFrame, str]:
    """Feeder-level load forecast for the local day: (time, entity_id, forecast_kw), and its source.

    1. ``gold_load_forecast`` (level='feeder'): for each feeder and interval of the day, the row of
       the newest issue (forecasts are issued up to 72 h ahead, so the last 3 issue days are read);
       ``quantile`` (p50 by default; p90 plans for a hot day) is the kW planned against;
    2. fallback: seasonal naive, the same local hour one week earlier from gold_load_hourly
       (level='feeder', mean_kw): the weekly profile is the strongest simple predictor of feeder load;
    3. fallback: persistence, the same local hour the day before, when last week is not in the lake.
    """
    from models.grid.demand_response import latest_feeder_forecast, shifted_feeder_load

    # an absent table reads as no rows; the quantile is checked either way
    f, issued = latest_feeder_forecast(lk.read_days(_T[FORECAST_TABLE], day - dt.timedelta(days=3), day), day, tz, quantile)
    if f.height:
        return f, f"{FORECAST_TABLE} {quantile} (level=feeder), {issued}"
    for back, name in ((7, "same local hour last week"), (1, "same local hour yesterday (last week missing)")):
        src = day - dt.timedelta(days=back)
        hourly = lk.read_days(_T["gold_load_hourly"], src, src, ["level", "entity_id", "period_start", "mean_kw"])
        if hourly.filter(pl.col("level") == "feeder").height:
            f = shifted_feeder_load(hourly, back, day, tz)
            return f, f"fallback: no {FORECAST_TABLE} rows for {day}; gold_load_hourly feeder mean_kw of {src} ({name})"
    raise FileNotFoundError(
        f"gold_dr_events {day}: no load forecast: {FORECAST_TABLE} has no feeder rows for {day} and gold_load_hourly has no "
        f"feeder rows for {day - dt.timedelta(days=7)} or {day - dt.timedelta(days=1)}; materialise gold_load_hourly for those days"
    )


@multi_asset(
    op_tags=queue_tags("score"),
    specs=[
        AssetSpec("gold_dr_events", group_name=SCORING_GROUP, description=_T["gold_dr_events"].description,
                  deps=[_same_day("gold_customer_segments"), _silver_dep("gold_load_hourly", 7), _silver_dep(FORECAST_TABLE, 3),
                        _silver_dep("silver_meter_readings", 6), "ref_meters", "ref_transformers"],
                  kinds={"delta", "polars"}),
        AssetSpec("gold_dr_participations", group_name=SCORING_GROUP, description=_T["gold_dr_participations"].description,
                  kinds={"delta", "polars"}),
    ],
    partitions_def=daily_open,
)
def gold_demand_response(context: AssetExecutionContext, config: DRConfigDagster, lake: LakeResource, grid: GridSettings):
    from models.grid.demand_response import customer_peak_kw, dr_customers, feeder_capacity_kw, plan_feeder_events

    lk, tz, day = lake.lake(), grid.timezone, partition_day(context)
    forecast, source = _dr_forecast(lk, day, tz, config.forecast_quantile)
    ref_meters = _require(lk, "ref_meters", "materialise ref_meters")
    ref_tx = _require(lk, "ref_transformers", "materialise ref_transformers")
    seg = lk.read(_T["gold_customer_segments"], day) if lk.exists("gold_customer_segments") else pl.DataFrame()
    if seg.height == 0:
        raise ValueError(f"gold_dr_events {day}: gold_customer_segments has no rows for {day}: materialise it first")
    peak = customer_peak_kw(lk.read_days(_T["silver_meter_readings"], day - dt.timedelta(days=6), day,
                                       ["meter_id", "reading_time", "demand_kw"]), grid.profile().tariffs.peak_window.bounds, tz)
    programme = config.programme(grid.profile().demand_response)
    capacity = feeder_capacity_kw(ref_tx, config.feeder_capacity_kw, programme.capacity_share)
    ev, pa = plan_feeder_events(forecast, dr_customers(seg, ref_meters, peak), capacity, programme, tz)
    w1 = lk.write_partition(_T["gold_dr_events"], ev, day)
    w2 = lk.write_partition(_T["gold_dr_participations"], pa, day)
    png = grid_plots.dr_forecast_png(forecast, capacity, tz, f"feeder forecast vs DR capacity {day}")
    yield MaterializeResult(asset_key="gold_dr_events", metadata={
        "dagster/row_count": w1.rows, "forecast_source": source,
        "capacity_kw": MetadataValue.json({k: round(v, 1) for k, v in capacity.items()}),
        "short_events": int((ev["status"] == "short").sum()) if ev.height else 0,
        "forecast_vs_capacity": MetadataValue.md(plots.png_markdown(png, f"DR forecast {day}")),
    })
    yield MaterializeResult(asset_key="gold_dr_participations", metadata={
        "dagster/row_count": w2.rows,
        "total_incentive": round(float(pa["incentive"].sum()), 2) if pa.height else 0.0,
    })


GRID_ML_ASSETS = [
    grid_anomaly_model, grid_failure_model, grid_segment_model,
    gold_anomaly_scores, gold_transformer_risk, gold_alerts, gold_segments_and_recommendations, gold_demand_response,
]
