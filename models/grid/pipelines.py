"""Grid-ML train pipelines: storage-free functions the Dagster assets call (read -> call -> write).

Each takes frames already read from the lake and returns the fitted model, its held-out metrics,
the backtest identity the champion is re-scored on and a ``rescore`` function for that backtest, so
:meth:`models.registry.ModelRegistry.challenge` can apply the champion policy (``Trained`` is the
registry's, shared with ``models.forecast.pipeline``). Labels come from the
``incidents`` source (:mod:`models.grid.labels`): confirmed by the end of the training window.
Nothing here touches storage, MLflow or Dagster.
"""

from __future__ import annotations

import datetime as dt
from functools import partial

import numpy as np
import polars as pl

from models.registry import Trained

from .features import local_date

__all__ = ["Trained", "labels_known_by", "train_anomaly", "train_failure", "train_segments", "segment_quality"]


def labels_known_by(
    incidents: pl.DataFrame | None, last_day: dt.date, tz: str, types: tuple[str, ...] | None = None
) -> pl.DataFrame:
    """Confirmed incidents known at the end of local day ``last_day`` (what a nightly run can see)."""
    from contracts import day_bounds_utc

    from .labels import incident_events

    return incident_events(incidents, known_by=day_bounds_utc(last_day, tz)[1], types=types)


def train_anomaly(
    kind: str,
    features: pl.DataFrame,
    events: pl.DataFrame,
    ref_meters: pl.DataFrame,
    tz: str,
    eval_from: dt.date,
    end: dt.date,
    config,
    feature_config,
    thresholds,
) -> Trained:
    """Fit one :class:`~models.grid.anomaly.AnomalyEnsemble` on the rows before ``eval_from``.

    Semi-supervised when the incidents label enough rows (``min_labelled_rows`` on the calibration
    assets), cold start otherwise; scored on the held-out days against the incidents' labels (Brier:
    the promotion metric; precision/recall at the alert band; average precision).
    """
    from models.registry import backtest_id

    from .anomaly import AnomalyEnsemble
    from .evaluate import anomaly_holdout_metrics, holdout_context, label_readings, reading_interval

    lab = label_readings(features, events, ref_meters, kind, reading_interval(ref_meters))
    is_eval = features.select(local_date("time", tz) >= eval_from).to_series().to_numpy()
    model = AnomalyEnsemble(kind, config=config, feature_config=feature_config, thresholds=thresholds)
    model.fit(features.filter(pl.Series(~is_eval)), lab.is_not_null().to_numpy()[~is_eval])
    # the held-out rows with their autoencoder context: the same scores as the whole frame's, and the
    # champion's re-scoring (rescore) keeps only this small frame alive
    ctx = holdout_context(features, is_eval, feature_config.window)
    ev_rows = pl.Series(ctx)
    evaluate = partial(
        anomaly_holdout_metrics, features=features.filter(ev_rows), labels=lab.filter(ev_rows), is_eval=is_eval[ctx]
    )
    metrics = evaluate(model)
    bid = backtest_id(kind, eval_from, end, int(metrics["eval_rows"]), int(metrics["eval_positives"]))
    params = {
        "kind": kind,
        "eval_days": f"{eval_from}..{end}",
        "train_rows": int((~is_eval).sum()),
        "mode": model.mode,
        "labelled_events": int(events.height),
        **dict(config.__dict__),
        "fit_report": model.fit_report_,
    }
    return Trained(model, metrics, bid, "brier", False, lambda m: evaluate(m)["brier"], params)


def train_failure(
    snapshots: pl.DataFrame,
    events: pl.DataFrame,
    tz: str,
    eval_from: dt.date,
    end: dt.date,
    config,
    anomaly_version: str,
) -> Trained:
    """Fit the failure/RUL model on recorded failures before ``eval_from``; evaluate on the rest. With fewer
    than ``config.min_recorded_failures`` recorded failures (none at all included) the model scores with its
    physics prior (``params["mode"]`` says which)."""
    from models.registry import backtest_id

    from .failure import FailureModel, failure_holdout_metrics, failure_targets

    fails = events.filter(pl.col("event_type") == "transformer_failure")
    targets = failure_targets(snapshots, fails, config.horizon_h)
    is_eval = targets.select(local_date("as_of", tz) >= eval_from).to_series()
    model = FailureModel(config).fit(targets.filter(~is_eval))
    ev_t = targets.filter(is_eval & pl.col("in_service"))
    if ev_t.height == 0:
        raise ValueError(f"failure model: no in-service snapshots on the evaluation days {eval_from}..{end}")
    metrics = failure_holdout_metrics(model, ev_t)
    bid = backtest_id("failure", eval_from, end, ev_t.height, int(metrics["eval_positives"]), anomaly_version)
    params = {
        "eval_days": f"{eval_from}..{end}",
        "horizon_h": config.horizon_h,
        "n_estimators": config.n_estimators,
        "max_depth": config.max_depth,
        "learning_rate": config.learning_rate,
        "train_snapshots": int((~is_eval).sum()),
        "anomaly_model": anomaly_version,
        "recorded_failures": int(fails.height),
        "mode": model.mode,
        "calibration": model.fit_report_.get("calibration"),
        "train_positives": int(targets.filter(~is_eval & pl.col("in_service"))["fails_within"].sum()),
    }
    return Trained(model, metrics, bid, "brier", False, lambda m: failure_holdout_metrics(m, ev_t)["brier"], params)


def segment_quality(model, profiles: pl.DataFrame) -> dict[str, float]:
    """Label-free quality of a segmentation on ``profiles``: silhouette of its assignment in the
    model's own feature space (the promotion metric) and the number of segments used."""
    from sklearn.metrics import silhouette_score

    from .segments import _matrix

    xs = model.scaler_.transform(_matrix(profiles))
    lab = model.kmeans_.predict(xs)
    sil = (
        float(silhouette_score(xs, lab, random_state=0, sample_size=min(len(lab), 5000))) if len(set(lab)) > 1 else -1.0
    )
    return {"silhouette": sil, "segments_used": float(len(set(lab))), "meters": float(len(lab))}


def train_segments(profiles: pl.DataFrame, config, start: dt.date, end: dt.date) -> Trained:
    """Segments from the profiles alone (no labelled panel): k-means named from descriptors."""
    from models.registry import backtest_id

    from .segments import SegmentModel

    model = SegmentModel(config).fit(profiles)
    metrics = segment_quality(model, profiles)
    bid = backtest_id(
        "segments-unsupervised", start, end, profiles.height, int(np.asarray(profiles["avg_daily_kwh"].sum()))
    )
    params = {
        "meters": profiles.height,
        "segments": model.names_,
        "n_segments": config.n_segments,
        "min_days": config.min_days,
    }
    return Trained(
        model, metrics, bid, "silhouette", True, lambda m: segment_quality(m, profiles)["silhouette"], params
    )
