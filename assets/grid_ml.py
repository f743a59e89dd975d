"""Grid-ML assets: nightly training (anomaly ensembles, transformer failure/RUL, customer segments)
and hourly scoring of the current utility-local day into the grid gold tables.

Thin functions around :mod:`models.grid` (the library holds the models, the feature builders, the
hold-out metrics and the table builders; nothing there imports Dagster): this module reads the lake,
calls the library, writes the gold tables and talks to the MLflow registry. Models live in the
registry through :class:`models.registry.ModelRegistry`:

* each training asset reads the last ``window_days`` of silver data (:func:`models.grid.evaluate.training_window`)
  and the confirmed ``incidents`` known by then, and calls a storage-free train pipeline of
  :mod:`models.grid.pipelines` (labels from incidents, cold start without them, held-out metrics on
  the last ``eval_days``);
* :meth:`models.registry.ModelRegistry.challenge` owns the champion policy: the current champion is
  re-scored on the candidate's held-out days and tagged with that evaluation, and ``champion`` moves
  only when the candidate beats it there (Brier score of the calibrated probabilities against the
  incidents for the anomaly and failure models; silhouette of the profiles for segments);
* scoring loads ``models:/<name>@champion``; ``model_version`` in the gold rows is ``name:vN``.

Exports :data:`GRID_ML_ASSETS` (pipelines/definitions.py) and the group names
:data:`TRAINING_GROUP` / :data:`SCORING_GROUP` (pipelines/jobs.py selects the jobs by them; the
schedules are in pipelines/schedules.py). The registry is the ``mlflow`` resource
(:class:`assets.resources.MlflowResource`).
"""

import datetime as dt
from typing import Any

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
from assets.partitions import daily_open, lookback_dep, partition_day
from assets.queues import queue_tags
from assets.resources import GridSettings, LakeResource, MlflowResource
from contracts import TABLES, DemandResponse, day_bounds_utc
from contracts.profile import load_profile
from lake import plots
from models.grid import plots as grid_plots
from models.grid.config import MODEL_ANOMALY, MODEL_FAILURE, MODEL_SEGMENTS
from models.grid.failure import FailureConfig as _FailureConfig
from models.grid.features import local_date

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
    #: cold start: share of readings the alert band (0.85) covers until incidents label enough anomalies
    contamination: float = 0.01
    #: with incidents: "tail" (labels learn the calibration and vote weights, bands stay tail shares) or
    #: "probability" (bands on P(confirmed incident), only right with complete labels): AnomalyConfig
    band_calibration: str = "tail"
    #: rolling-origin backtest that chooses between the ensemble and its peers: this many held-out windows
    #: of ``eval_days`` each, every candidate trained only before its window; a peer replaces the ensemble
    #: only if it wins at the alert budget beyond the noise (models.grid.pipelines.select_candidate)
    selection_windows: int = 4


class FailureTrainConfig(TrainWindowConfig):
    n_estimators: int = 200
    max_depth: int = 4
    seed: int = 0
    #: fewer recorded failures in the window: the physics prior scores (FailureConfig.min_recorded_failures)
    min_recorded_failures: int = _FailureConfig.min_recorded_failures


class SegmentTrainConfig(TrainWindowConfig):
    #: clusters (each named from its profile descriptors)
    n_segments: int = 14
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
        over = {k: getattr(self, k) for k in keys if getattr(self, k) is not None}
        return type(profile).model_validate(
            {**profile.model_dump(), **over}
        )  # validated: a bad override names the field


def _segment_config(grid: GridSettings, **kw):
    """SegmentConfig of the utility profile: its zone, peak window and holiday calendar."""
    from models.grid.segments import SegmentConfig

    p = grid.profile()
    return SegmentConfig(
        timezone=p.timezone, peak_hours=p.tariffs.peak_window.bounds, holiday_country=p.holiday_country, **kw
    )


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
    return training_window(
        dates,
        cfg.window_days,
        cfg.min_days,
        cfg.eval_days,
        dt.date.fromisoformat(cfg.as_of) if cfg.as_of else None,
        what,
    )


def _register(context, reg, name: str, trained) -> dict:
    """Champion policy of :meth:`ModelRegistry.challenge` on a :class:`models.grid.pipelines.Trained`."""
    out = reg.challenge(
        name,
        trained.model,
        params=trained.params,
        metrics=trained.metrics,
        backtest_id=trained.backtest_id,
        metric=trained.metric,
        higher_is_better=trained.higher_is_better,
        rescore=trained.rescore,
        log=context.log.warning,
    )
    context.log.info(f"{name} v{out['version']}: promoted={out['promoted']} ({out['promotion_reason']})")
    return out


def _incidents(lk) -> pl.DataFrame | None:
    """silver_incidents as published (None before the source has any day: cold start)."""
    return lk.read(_T["silver_incidents"]) if lk.exists("silver_incidents") else None


def _train_meta(results: dict[str, dict], extra: dict | None = None) -> dict:
    """Dagster metadata of the registered runs (prefixed by their key when there are several) + ``extra``."""
    md: dict[str, Any] = {}
    for key, r in results.items():
        p = f"{key}/" if len(results) > 1 else ""
        md[f"{p}run_id"] = r["run_id"]
        md[f"{p}model_version"] = f"{r['model_name']}:v{r['version']}"
        md[f"{p}promoted"] = bool(r["promoted"])
        md[f"{p}promotion"] = r["promotion_reason"]
        md[f"{p}metrics"] = MetadataValue.json(
            {k[len("metric_") :]: v for k, v in r.items() if k.startswith("metric_")}
        )
        md[f"{p}model_uri"] = r["model_uri"]
    md.update(extra or {})
    return md


def _champion(reg, name: str, producer: str) -> tuple[Any, str]:
    """(model, 'name:vN') of the champion, or a clear error naming the training asset to run."""
    champ = reg.champion(name)
    if champ is None:
        raise LookupError(
            f"no champion for registered model {name!r} in {reg.tracking_uri}: materialise {producer} first"
        )
    return reg.load(name), f"{name}:v{champ.version}"


# ------------------------------------------------------------------------------ data loaders
_METER_COLS = ["date", "meter_id", "reading_time", "consumption_kwh", "demand_kw", "voltage", "power_factor"]
_SCADA_COLS = [
    "date",
    "transformer_id",
    "sample_time",
    "load_kva",
    "top_oil_temp_c",
    "hot_spot_temp_c",
    "voltage_v",
    "frequency_hz",
]
_WEATHER_COLS = ["observation_time", "temp_air_c"]


def _anomaly_features(lk, lo: dt.date, hi: dt.date, grid: GridSettings) -> dict[str, pl.DataFrame]:
    """Anomaly features of the silver rows in lo..hi per stream (a stream without rows is left out)."""
    from models.grid.config import FeatureConfig
    from models.grid.features import anomaly_features

    return anomaly_features(
        lk.read_days(_T["silver_meter_readings"], lo, hi, _METER_COLS),
        lk.read_days(_T["silver_scada"], lo, hi, _SCADA_COLS),
        lk.read_days(_T["silver_weather"], lo, hi, _WEATHER_COLS),
        _require(lk, "ref_transformers", "materialise ref_transformers"),
        FeatureConfig.from_profile(grid.profile()),
    )


def _failure_inputs(lk, lo: dt.date, hi: dt.date, grid: GridSettings, tx_model) -> pl.DataFrame:
    """Hourly transformer snapshots of lo..hi with anomaly_count_7d from the transformer anomaly champion."""
    from models.grid.config import FeatureConfig
    from models.grid.failure import failure_snapshots

    scada = lk.read_days(_T["silver_scada"], lo, hi, _SCADA_COLS)
    if scada.height == 0:
        raise ValueError(f"silver_scada has no rows in {lo}..{hi}: nothing to build transformer snapshots from")
    weather = lk.read_days(_T["silver_weather"], lo, hi, _WEATHER_COLS)
    ref_tx = _require(lk, "ref_transformers", "materialise ref_transformers")
    return failure_snapshots(scada, ref_tx, weather, tx_model, FeatureConfig.from_profile(grid.profile()))


# ------------------------------------------------------------------------------ training
@asset(
    op_tags=queue_tags("train"),
    group_name=TRAINING_GROUP,
    deps=[
        "silver_meter_readings",
        "silver_scada",
        "silver_weather",
        "ref_transformers",
        "ref_meters",
        "silver_incidents",
    ],
    kinds={"mlflow", "pytorch", "scikitlearn"},
    description="Anomaly ensembles (isolation forest + Lightning autoencoder + one-class SVM, calibrated vote) "
    "for meter readings and SCADA samples, trained on the last window_days; calibrated on the confirmed "
    "incidents known by then (semi-supervised) or, with too few, on the scores' own distribution "
    "(cold start). Peer candidates (Isolation Forest, PyOD LOF) are fitted alongside; the best at the alert "
    "budget on the held-out day's confirmed incidents (the ensemble without any) is registered in MLflow "
    "and challenges the champion.",
)
def grid_anomaly_model(
    context: AssetExecutionContext,
    config: AnomalyTrainConfig,
    lake: LakeResource,
    grid: GridSettings,
    mlflow: MlflowResource,
) -> MaterializeResult:
    from models.grid.config import AlertThresholds, AnomalyConfig, FeatureConfig
    from models.grid.labels import label_summary
    from models.grid.pipelines import labels_known_by, train_anomaly

    lk, tz = lake.lake(), grid.timezone
    start, end, days = _window(lk, config, "grid_anomaly_model")
    eval_from = days[-config.eval_days]
    events = labels_known_by(_incidents(lk), end, tz)
    ref_meters = _require(lk, "ref_meters", "materialise ref_meters")
    feats = _anomaly_features(lk, start, end, grid)
    reg = mlflow.registry()
    acfg = AnomalyConfig(
        n_estimators=config.n_estimators,
        ae_epochs=config.ae_epochs,
        max_train_rows=config.max_train_rows,
        seed=config.seed,
        contamination=config.contamination,
        band_calibration=config.band_calibration,
    )
    results, fit, cands = {}, {}, {}
    for kind in ("meter", "transformer"):
        if kind not in feats:
            raise ValueError(
                f"grid_anomaly_model: no {'silver_meter_readings' if kind == 'meter' else 'silver_scada'} "
                f"rows in {start}..{end}"
            )
        t = train_anomaly(
            kind,
            feats[kind],
            events,
            ref_meters,
            tz,
            eval_from,
            end,
            acfg,
            FeatureConfig.from_profile(grid.profile()),
            thresholds=AlertThresholds.from_bands(grid.profile().alert_bands.anomaly),
            windows=config.selection_windows,
        )
        t.params.update({"window": f"{start}..{end}", "train_days": len(days) - config.eval_days})
        results[kind] = _register(context, reg, MODEL_ANOMALY[kind], t)
        fit[kind] = t.model.fit_report_
        cands[kind] = {
            "selected": t.report["selected"],
            "why": t.report["selection"],
            "precision_at_budget": {n: m.get("precision_at_budget") for n, m in t.report["candidates"].items()},
            "windows": t.report["windows"],
            "comparisons": t.report["comparisons"],
        }
    return MaterializeResult(
        metadata=_train_meta(
            results,
            {
                "window": f"{start}..{end}",
                "days_found": len(days),
                "eval_days": f"{eval_from}..{end}",
                "labelled_incidents": MetadataValue.json(label_summary(events)),
                "calibration": MetadataValue.json({k: f["mode"] for k, f in fit.items()}),
                "fit_report": MetadataValue.json(fit),
                "candidates": MetadataValue.json(cands),
                "tracking_uri": reg.tracking_uri,
            },
        )
    )


@asset(
    op_tags=queue_tags("train"),
    group_name=TRAINING_GROUP,
    deps=["grid_anomaly_model", "silver_scada", "silver_weather", "ref_transformers", "silver_incidents"],
    kinds={"mlflow", "xgboost"},
    description="Transformer failure-within-72h classifier + AFT survival (remaining useful life), XGBoost, trained on "
    "the failures recorded in incidents; anomaly counts come from the transformer anomaly champion.",
)
def grid_failure_model(
    context: AssetExecutionContext,
    config: FailureTrainConfig,
    lake: LakeResource,
    grid: GridSettings,
    mlflow: MlflowResource,
) -> MaterializeResult:
    from models.grid.config import AlertThresholds
    from models.grid.failure import FailureConfig
    from models.grid.pipelines import labels_known_by, train_failure

    lk, tz = lake.lake(), grid.timezone
    start, end, days = _window(lk, config, "grid_failure_model")
    eval_from = days[-config.eval_days]
    reg = mlflow.registry()
    tx_model, tx_version = _champion(reg, MODEL_ANOMALY["transformer"], "grid_anomaly_model")
    snaps = _failure_inputs(lk, start, end, grid, tx_model)
    events = labels_known_by(_incidents(lk), end, tz, types=("transformer_failure",))
    fcfg = FailureConfig(
        n_estimators=config.n_estimators,
        max_depth=config.max_depth,
        seed=config.seed,
        min_recorded_failures=config.min_recorded_failures,
        thresholds=AlertThresholds.from_bands(grid.profile().alert_bands.failure_risk),
    )
    t = train_failure(snaps, events, tz, eval_from, end, fcfg, tx_version)
    t.params["window"] = f"{start}..{end}"
    r = _register(context, reg, MODEL_FAILURE, t)
    return MaterializeResult(
        metadata=_train_meta(
            {"failure": r},
            {
                "window": f"{start}..{end}",
                "days_found": len(days),
                "anomaly_model": tx_version,
                "train_positives": t.params["train_positives"],
                "recorded_failures": t.params["recorded_failures"],
                # physics_prior: fewer recorded failures than FailureConfig.min_recorded_failures
                "failure_mode": t.params["mode"],
                "calibration": t.params["calibration"],
            },
        )
    )


@asset(
    op_tags=queue_tags("train"),
    group_name=TRAINING_GROUP,
    deps=["silver_meter_readings", "ref_meters"],
    kinds={"mlflow", "scikitlearn"},
    description="Customer segments from load profiles alone: k-means, each cluster named from interpretable profile "
    "descriptors (peak hour, hour-band shares, weekend ratio, PV/EV, level); promoted on silhouette.",
)
def grid_segment_model(
    context: AssetExecutionContext,
    config: SegmentTrainConfig,
    lake: LakeResource,
    grid: GridSettings,
    mlflow: MlflowResource,
) -> MaterializeResult:
    from models.grid.pipelines import train_segments
    from models.grid.segments import profile_features, segment_distribution

    lk = lake.lake()
    start, end, days = _window(lk, config, "grid_segment_model")
    readings = lk.read_days(_T["silver_meter_readings"], start, end, _METER_COLS)
    ref_meters = _require(lk, "ref_meters", "materialise ref_meters")
    scfg = _segment_config(grid, seed=config.seed, n_segments=config.n_segments)
    prof = profile_features(readings, ref_meters, scfg)
    t = train_segments(prof, scfg, start, end)
    t.params["window"] = f"{start}..{end}"
    reg = mlflow.registry()
    r = _register(context, reg, MODEL_SEGMENTS, t)
    return MaterializeResult(
        metadata=_train_meta(
            {"segments": r},
            {
                "window": f"{start}..{end}",
                "days_found": len(days),
                "tracking_uri": reg.tracking_uri,
                "distribution": MetadataValue.json(segment_distribution(t.model.predict(prof))),
                "descriptors": MetadataValue.json(
                    {
                        t.model.cluster_name_[c]: {k: round(v, 3) for k, v in d.items()}
                        for c, d in t.model.descriptors_.items()
                    }
                ),
            },
        )
    )


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
    deps=[
        _silver_dep("silver_meter_readings", METER_CONTEXT_DAYS),
        _silver_dep("silver_scada", 1),
        _silver_dep("silver_weather", 1),
        "ref_transformers",
        "grid_anomaly_model",
    ],
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
        feats[kind] = _anomaly_features(lk, lo[kind], day, grid).get(kind)
    if all(f is None or f.filter(local_date("time", tz) == day).height == 0 for f in feats.values()):
        raise ValueError(
            f"gold_anomaly_scores: no silver_meter_readings or silver_scada rows for {day}: ingest the day first"
        )
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
    yield MaterializeResult(
        metadata={
            "dagster/row_count": w.rows,
            "delta_version": w.version,
            "model_versions": MetadataValue.json(versions),
            "status_counts": MetadataValue.json({f"{a}/{s}": int(n) for a, s, n in status.iter_rows()}),
            "score_distribution": MetadataValue.md(plots.png_markdown(png, f"anomaly scores {day}")),
        }
    )
    yield from gx_checks(lk, _T["gold_anomaly_scores"], day)


@asset(
    op_tags=queue_tags("score"),
    group_name=SCORING_GROUP,
    partitions_def=daily_open,
    deps=[
        _silver_dep("silver_scada", 8),
        _silver_dep("silver_weather", 8),
        _same_day("silver_meter_readings"),
        "ref_transformers",
        "ref_meters",
        "grid_failure_model",
        "grid_anomaly_model",
    ],
    kinds={"delta", "polars", "mlflow"},
    description=_T["gold_transformer_risk"].description,
    check_specs=gx_check_specs("gold_transformer_risk"),
)
def gold_transformer_risk(
    context: AssetExecutionContext, lake: LakeResource, grid: GridSettings, mlflow: MlflowResource
):
    from models.grid.failure import contributing_factors, outage_impact, to_gold_risk

    lk, tz, day = lake.lake(), grid.timezone, partition_day(context)
    reg = mlflow.registry()
    tx_model, tx_version = _champion(reg, MODEL_ANOMALY["transformer"], "grid_anomaly_model")
    fm, version = _champion(reg, MODEL_FAILURE, "grid_failure_model")
    # 7 days of anomaly counts + 24 h rolling features before the first hour of the day
    snaps = _failure_inputs(lk, day - dt.timedelta(days=8), day, grid, tx_model).filter(local_date("as_of", tz) == day)
    if snaps.height == 0:
        raise ValueError(f"gold_transformer_risk: no silver_scada samples for {day}: ingest the day first")
    impact = outage_impact(
        _require(lk, "ref_meters", "materialise ref_meters"),
        lk.read("ref_transformers"),
        lk.read_days(_T["silver_meter_readings"], day, day, ["meter_id", "demand_kw"]),
    )
    pred = to_gold_risk(fm.predict(snaps), impact, version, tz, contributing_factors(fm, snaps))
    w = lk.write_partition(_T["gold_transformer_risk"], pred, day)
    th = fm.config.thresholds
    top = (
        pred.sort("failure_probability_72h", descending=True)
        .unique("transformer_id", keep="first", maintain_order=True)
        .head(5)
        .select(
            "transformer_id",
            "failure_probability_72h",
            "rul_hours",
            "top_factor",
            "maintenance",
            "customers_downstream",
        )
    )
    png = grid_plots.top_risk_png(pred, th, f"transformer failure risk {day}")
    yield MaterializeResult(
        metadata={
            "dagster/row_count": w.rows,
            "delta_version": w.version,
            "model_version": version,
            # physics_prior: too few recorded failures to learn from; the bands are a thermal prior's
            "failure_mode": fm.mode,
            "anomaly_model": tx_version,
            "transformers_at_alert": int(
                pred.filter(pl.col("failure_probability_72h") >= th.alert)["transformer_id"].n_unique()
            ),
            "top_risk": MetadataValue.md(top.to_pandas().to_markdown(index=False)),
            "maintenance_recommended": int(
                pred.filter(pl.col("maintenance").is_not_null())["transformer_id"].n_unique()
            ),
            "top_risk_plot": MetadataValue.md(plots.png_markdown(png, f"transformer risk {day}")),
        }
    )
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
        AssetCheckSpec(
            "one_alert_per_fingerprint",
            asset="gold_alerts",
            blocking=True,
            description="each fingerprint appears once in the whole table (not only per day): the bridge dedupes on it",
        ),
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
    anomaly_th = {
        kind: _champion(reg, MODEL_ANOMALY[kind], "grid_anomaly_model")[0].thresholds
        for kind in scores["asset_type"].unique().to_list()
    }
    risk_th = _champion(reg, MODEL_FAILURE, "grid_failure_model")[0].config.thresholds if risk.height else None
    df = day_alerts(scores, anomaly_th, risk, risk_th, tz)
    w = lk.write_partition(_T["gold_alerts"], df, day)
    by = df.group_by("rule", "severity").len().sort("rule", "severity")
    timeline = anomaly_timeline_figure(scores, df, tz)
    yield MaterializeResult(
        metadata={
            "timeline": MetadataValue.md(plots.png_markdown(timeline, f"anomaly timeline {day}")),
            "dagster/row_count": w.rows,
            "delta_version": w.version,
            "alerts_by_rule_severity": MetadataValue.json({f"{a}/{s}": int(n) for a, s, n in by.iter_rows()}),
            "critical": MetadataValue.md(
                df.filter(pl.col("severity") == "critical")
                .sort("score", descending=True)
                .head(10)
                .select("asset_type", "asset_id", "rule", "score", "window_start", "reason")
                .to_pandas()
                .to_markdown(index=False)
                if df.height
                else "none"
            ),
        }
    )
    yield from gx_checks(lk, _T["gold_alerts"], day)
    dup = duplicate_fingerprints(lk.scan("gold_alerts"))
    yield AssetCheckResult(
        asset_key="gold_alerts",
        check_name="one_alert_per_fingerprint",
        passed=dup.height == 0,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "duplicated_fingerprints": dup.height,
            "examples": MetadataValue.json(
                [{"fingerprint": f, "n": n, "dates": [str(d) for d in ds]} for f, n, ds in dup.head(5).iter_rows()]
            ),
        },
    )


@multi_asset(
    op_tags=queue_tags("score"),
    specs=[
        AssetSpec(
            "gold_customer_segments",
            group_name=SCORING_GROUP,
            description=_T["gold_customer_segments"].description,
            deps=[_silver_dep("silver_meter_readings", 27), "ref_meters", "grid_segment_model"],
            kinds={"delta", "polars"},
        ),
        AssetSpec(
            "gold_recommendations",
            group_name=SCORING_GROUP,
            description=_T["gold_recommendations"].description,
            deps=["ref_meters", "gold_battery_daily", "gold_ev_sessions"],
            kinds={"delta", "polars"},
        ),
    ],
    partitions_def=daily_open,
)
def gold_segments_and_recommendations(
    context: AssetExecutionContext,
    config: SegmentScoreConfig,
    lake: LakeResource,
    grid: GridSettings,
    mlflow: MlflowResource,
):
    from models.grid.recommend import recommend
    from models.grid.segments import profile_features, segment_distribution
    from reporting.report import segment_figure

    lk, day = lake.lake(), partition_day(context)
    model, version = _champion(mlflow.registry(), MODEL_SEGMENTS, "grid_segment_model")
    readings = lk.read_days(
        _T["silver_meter_readings"], day - dt.timedelta(days=config.profile_days - 1), day, _METER_COLS
    )
    if readings.filter(pl.col("date") == day).height == 0:
        raise ValueError(f"gold_customer_segments: no silver_meter_readings rows for {day}: ingest the day first")
    ref_meters = _require(lk, "ref_meters", "materialise ref_meters")
    scfg = _segment_config(grid, seed=model.config.seed, min_days=model.config.min_days)
    seg = model.predict(profile_features(readings, ref_meters, scfg)).with_columns(
        pl.lit(day).alias("as_of"), pl.lit(version).alias("model_version")
    )
    w1 = lk.write_partition(_T["gold_customer_segments"], seg, day)
    from assets.optimization import advisories_for_day

    # customer rows (no CO2/confidence estimate) + the site advisories of the day's battery/EV schedules
    rec = pl.concat(
        [
            recommend(seg, ref_meters, grid.profile().tariffs, grid.profile().demand_response),
            advisories_for_day(lk, day, grid.timezone),
        ],
        how="diagonal_relaxed",
    ).with_columns(pl.lit(day).alias("as_of"))
    w2 = lk.write_partition(_T["gold_recommendations"], rec, day)
    chosen = rec.filter(pl.col("recommended"))
    yield MaterializeResult(
        asset_key="gold_customer_segments",
        metadata={
            "dagster/row_count": w1.rows,
            "model_version": version,
            "profile_days": config.profile_days,
            "provisional": int(seg["provisional"].sum()),
            "distribution": MetadataValue.json(segment_distribution(seg)),
            "segment_mix": MetadataValue.md(plots.png_markdown(segment_figure(seg), f"segment mix {day}")),
        },
    )
    yield MaterializeResult(
        asset_key="gold_recommendations",
        metadata={
            "dagster/row_count": w2.rows,
            "recommended": chosen.height,
            "recommended_by_kind": MetadataValue.json(
                {k: int(n) for k, n in chosen.group_by("kind").len().sort("kind").iter_rows()}
            ),
            "est_monthly_savings_total": round(float(chosen["est_monthly_savings"].sum()), 2),
        },
    )


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
    f, issued = latest_feeder_forecast(
        lk.read_days(_T[FORECAST_TABLE], day - dt.timedelta(days=3), day), day, tz, quantile
    )
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
        AssetSpec(
            "gold_dr_events",
            group_name=SCORING_GROUP,
            description=_T["gold_dr_events"].description,
            deps=[
                _same_day("gold_customer_segments"),
                _silver_dep("gold_load_hourly", 7),
                _silver_dep(FORECAST_TABLE, 3),
                _silver_dep("silver_meter_readings", 6),
                "ref_meters",
                "ref_transformers",
            ],
            kinds={"delta", "polars"},
        ),
        AssetSpec(
            "gold_dr_participations",
            group_name=SCORING_GROUP,
            description=_T["gold_dr_participations"].description,
            kinds={"delta", "polars"},
        ),
    ],
    partitions_def=daily_open,
)
def gold_demand_response(
    context: AssetExecutionContext, config: DRConfigDagster, lake: LakeResource, grid: GridSettings
):
    from models.grid.demand_response import customer_peak_kw, dr_customers, feeder_capacity_kw, plan_feeder_events

    lk, tz, day = lake.lake(), grid.timezone, partition_day(context)
    forecast, source = _dr_forecast(lk, day, tz, config.forecast_quantile)
    ref_meters = _require(lk, "ref_meters", "materialise ref_meters")
    ref_tx = _require(lk, "ref_transformers", "materialise ref_transformers")
    seg = lk.read(_T["gold_customer_segments"], day) if lk.exists("gold_customer_segments") else pl.DataFrame()
    if seg.height == 0:
        raise ValueError(f"gold_dr_events {day}: gold_customer_segments has no rows for {day}: materialise it first")
    peak = customer_peak_kw(
        lk.read_days(
            _T["silver_meter_readings"], day - dt.timedelta(days=6), day, ["meter_id", "reading_time", "demand_kw"]
        ),
        grid.profile().tariffs.peak_window.bounds,
        tz,
    )
    programme = config.programme(grid.profile().demand_response)
    capacity = feeder_capacity_kw(ref_tx, config.feeder_capacity_kw, programme.capacity_share)
    ev, pa = plan_feeder_events(forecast, dr_customers(seg, ref_meters, peak), capacity, programme, tz)
    w1 = lk.write_partition(_T["gold_dr_events"], ev, day)
    w2 = lk.write_partition(_T["gold_dr_participations"], pa, day)
    png = grid_plots.dr_forecast_png(forecast, capacity, tz, f"feeder forecast vs DR capacity {day}")
    yield MaterializeResult(
        asset_key="gold_dr_events",
        metadata={
            "dagster/row_count": w1.rows,
            "forecast_source": source,
            "capacity_kw": MetadataValue.json({k: round(v, 1) for k, v in capacity.items()}),
            "short_events": int((ev["status"] == "short").sum()) if ev.height else 0,
            "forecast_vs_capacity": MetadataValue.md(plots.png_markdown(png, f"DR forecast {day}")),
        },
    )
    yield MaterializeResult(
        asset_key="gold_dr_participations",
        metadata={
            "dagster/row_count": w2.rows,
            "total_incentive": round(float(pa["incentive"].sum()), 2) if pa.height else 0.0,
        },
    )


#: days of history before the scored day the energy balance's baselines and attribution window use
_EB = load_profile().energy_balance
#: days of silver before the day the balance, its baselines, the attribution window and persistence need
BALANCE_HISTORY_DAYS = _EB.baseline_days + _EB.window_days + _EB.persist_days - 1


@multi_asset(
    op_tags=queue_tags("score"),
    specs=[
        AssetSpec(
            "gold_energy_balance",
            group_name=SCORING_GROUP,
            description=_T["gold_energy_balance"].description,
            deps=[
                _silver_dep("silver_meter_readings", BALANCE_HISTORY_DAYS),
                _silver_dep("silver_scada", BALANCE_HISTORY_DAYS),
                "ref_meters",
                "ref_transformers",
            ],
            kinds={"delta", "polars"},
        ),
        AssetSpec(
            "gold_ntl_suspects",
            group_name=SCORING_GROUP,
            description=_T["gold_ntl_suspects"].description,
            kinds={"delta", "polars"},
        ),
    ],
    partitions_def=daily_open,
)
def gold_energy_balance(context: AssetExecutionContext, lake: LakeResource, grid: GridSettings):
    """Energy balance per transformer/feeder for the day and the ranked theft suspects (models.grid.energy_balance)."""
    from models.grid.energy_balance import BalanceConfig, suspects_from_readings

    lk, tz, day = lake.lake(), grid.timezone, partition_day(context)
    cfg = BalanceConfig.from_profile(grid.profile(), tz)
    lo = day - dt.timedelta(days=max(BALANCE_HISTORY_DAYS, cfg.history_days))
    meters = lk.read_days(
        _T["silver_meter_readings"], lo, day, ["meter_id", "reading_time", "demand_kw", "power_factor"]
    )
    scada = lk.read_days(_T["silver_scada"], lo, day, ["transformer_id", "sample_time", "load_kva"])
    if meters.filter(pl.col("reading_time").dt.convert_time_zone(tz).dt.date() == day).height == 0 or scada.height == 0:
        raise ValueError(
            f"gold_energy_balance: no silver_meter_readings or silver_scada rows for {day}: ingest the day first"
        )
    bal, sus = suspects_from_readings(
        meters,
        scada,
        _require(lk, "ref_meters", "materialise ref_meters"),
        _require(lk, "ref_transformers", "materialise ref_transformers"),
        cfg,
    )
    bal, sus = bal.filter(pl.col("date") == day), sus.filter(pl.col("date") == day)
    w1 = lk.write_partition(_T["gold_energy_balance"], bal, day)
    w2 = lk.write_partition(_T["gold_ntl_suspects"], sus, day)
    feeders = bal.filter(pl.col("level") == "feeder")
    yield MaterializeResult(
        asset_key="gold_energy_balance",
        metadata={
            "dagster/row_count": w1.rows,
            "history_days": BALANCE_HISTORY_DAYS,
            "unexplained_share_by_feeder": MetadataValue.json(
                {
                    f: round(u / s, 4) if s else None
                    for f, u, s in feeders.select("entity_id", "unexplained_kwh", "supplied_kwh").iter_rows()
                }
            ),
            "transformers_with_suspects": int(sus["transformer_id"].n_unique()) if sus.height else 0,
            "theft_suspects": int((sus["kind"] == "theft").sum()) if sus.height else 0,
            "meter_fault_suspects": int((sus["kind"] == "meter_fault").sum()) if sus.height else 0,
        },
    )
    yield MaterializeResult(
        asset_key="gold_ntl_suspects",
        metadata={
            "dagster/row_count": w2.rows,
            "top_suspects": MetadataValue.md(
                sus.filter(pl.col("rank") == 1)
                .sort("score", descending=True)
                .head(10)
                .select("transformer_id", "meter_id", "kind", "score", "implied_share", "unexplained_rise_kwh")
                .to_pandas()
                .to_markdown(index=False)
                if sus.height
                else "none"
            ),
        },
    )


@asset(
    op_tags=queue_tags("score"),
    group_name=SCORING_GROUP,
    partitions_def=daily_open,
    deps=[
        _same_day("gold_anomaly_scores"),
        _same_day("gold_transformer_risk"),
        _silver_dep("silver_meter_readings", METER_CONTEXT_DAYS),
        _silver_dep("silver_scada", 1),
        _silver_dep("silver_weather", 1),
        "gold_alerts",
        "silver_incidents",
        "grid_anomaly_model",
        "grid_failure_model",
    ],
    kinds={"delta", "polars", "mlflow"},
    description=_T["gold_model_drift"].description,
)
def gold_model_drift(
    context: AssetExecutionContext, lake: LakeResource, grid: GridSettings, mlflow: MlflowResource
) -> MaterializeResult:
    """PSI of each model's inputs and score on the day against its training window (the anomaly ensembles and
    the failure model), and the realised precision of its settled alerts against the confirmed incidents (a
    failure-risk alert is confirmed by a failure within its horizon); a drifted model is tagged for retraining
    in the registry (model_drift_notifications posts the alert)."""
    from models.grid.drift import DriftConfig, monitor_model, needs_retraining
    from models.grid.pipelines import labels_known_by

    lk, tz, day = lake.lake(), grid.timezone, partition_day(context)
    cfg = DriftConfig()
    reg = mlflow.registry()
    scores = lk.read(_T["gold_anomaly_scores"], day)
    lo = {"meter": day - dt.timedelta(days=METER_CONTEXT_DAYS), "transformer": day - dt.timedelta(days=1)}
    parts, retrain = [], []
    events = labels_known_by(_incidents(lk), day, tz)
    alerts = (
        lk.read(_T["gold_alerts"])
        if lk.exists("gold_alerts")
        else pl.DataFrame(schema=_T["gold_alerts"].polars_schema())
    )
    day_end = day_bounds_utc(day, tz)[1]

    def monitored(name: str, model, version: str, current: dict, rule_alerts: pl.DataFrame, ev, lead_h=0.0):
        if not getattr(model, "drift_profile_", None):
            context.log.warning(
                f"{version} has no training-window profile (trained before monitoring existed): retrain it"
            )
            return
        rep = monitor_model(version, model.drift_profile_, current, rule_alerts, ev, day_end, cfg, lead_h)
        parts.append(rep)
        if why := needs_retraining(rep):
            retrain.append(version)
            reg.mark_for_retraining(name, f"{day}: {why}")

    for kind in ("meter", "transformer"):
        f = _anomaly_features(lk, lo[kind], day, grid).get(kind)
        if f is None:
            continue
        model, version = _champion(reg, MODEL_ANOMALY[kind], "grid_anomaly_model")
        f = f.filter(local_date("time", tz) == day)
        s = scores.filter(pl.col("asset_type") == kind)["score"].to_numpy()
        monitored(
            MODEL_ANOMALY[kind],
            model,
            version,
            {**{c: f[c].to_numpy() for c in model.features}, "score": s},
            alerts.filter((pl.col("rule") == "anomaly_score") & (pl.col("asset_type") == kind)),
            events,
        )
    # the failure model: the day's published risk rows carry its score and the inputs gold_transformer_risk
    # publishes (7 of its 10, excess_rise_6h among them); rebuilding the rest would re-run the day's scoring
    risk = lk.read(_T["gold_transformer_risk"], day) if lk.exists("gold_transformer_risk") else None
    if risk is not None and risk.height:
        fm, version = _champion(reg, MODEL_FAILURE, "grid_failure_model")
        monitored(
            MODEL_FAILURE,
            fm,
            version,
            {
                **{c: risk[c].cast(pl.Float64).to_numpy() for c in fm.drift_profile_ if c in risk.columns},
                "score": risk["failure_probability_72h"].to_numpy(),
            },
            alerts.filter(pl.col("rule") == "failure_risk"),
            events.filter(pl.col("event_type") == "transformer_failure"),
            lead_h=fm.config.horizon_h,
        )
    df = (
        pl.concat(parts)
        if parts
        else pl.DataFrame(schema={k: v for k, v in _T["gold_model_drift"].polars_schema().items() if k != "date"})
    )
    df = df.with_columns(pl.lit(day).alias("date"))
    w = lk.write_partition(_T["gold_model_drift"], df, day)
    drifted = df.filter(pl.col("drifted").fill_null(False))
    return MaterializeResult(
        metadata={
            "dagster/row_count": w.rows,
            "retrain": MetadataValue.json(retrain),
            "drifted": MetadataValue.json(
                {
                    f"{m} {k}": round(v, 4) if v is not None else None
                    for m, k, v in drifted.select("model", "metric", "value").iter_rows()
                }
            ),
            "psi_max": MetadataValue.json(
                {
                    m: round(float(g["value"].max()), 4)
                    for (m,), g in df.filter(pl.col("metric") != "realised_precision").group_by(["model"])
                }
            ),
        }
    )


GRID_ML_ASSETS = [
    grid_anomaly_model,
    grid_failure_model,
    grid_segment_model,
    gold_anomaly_scores,
    gold_transformer_risk,
    gold_alerts,
    gold_segments_and_recommendations,
    gold_demand_response,
    gold_energy_balance,
    gold_model_drift,
]
