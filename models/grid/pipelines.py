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

__all__ = [
    "Trained",
    "labels_known_by",
    "select_candidate",
    "train_anomaly",
    "train_failure",
    "train_segments",
    "segment_quality",
]


def labels_known_by(
    incidents: pl.DataFrame | None, last_day: dt.date, tz: str, types: tuple[str, ...] | None = None
) -> pl.DataFrame:
    """Confirmed incidents known at the end of local day ``last_day`` (what a nightly run can see)."""
    from contracts import day_bounds_utc

    from .labels import incident_events

    return incident_events(incidents, known_by=day_bounds_utc(last_day, tz)[1], types=types)


def select_candidate(scored: dict[str, dict]) -> tuple[str, str]:
    """(name, why) of the candidate the anomaly training hands to the champion policy.

    ``scored``: per candidate (``"ensemble"`` first, then the peers) its held-out metrics
    (:func:`models.grid.evaluate.anomaly_holdout_metrics` with events). The best precision at the alert
    budget on the held-out window's confirmed incidents wins; a peer must have *more true alerts* than
    every candidate before it (ties keep the earlier one, the ensemble first). Without a confirmed
    incident in the held-out window (cold start) the precision is undefined for every candidate: the
    ensemble is kept (its tail calibration needs no labels, its detectors see both single-reading and
    sequence anomalies, it is the model the bands and the 200k scores/s target were set for).
    """
    names = list(scored)
    if not names:
        raise ValueError("select_candidate: no candidates")
    first = "ensemble" if "ensemble" in scored else names[0]
    if not any(m.get("budget_events") for m in scored.values()):
        return first, (
            "no confirmed incident in the held-out window: precision at the budget is undefined, "
            f"so the {first} is kept (cold start)"
        )
    best = first
    for n in names:
        if scored[n].get("budget_true_alerts", 0.0) > scored[best].get("budget_true_alerts", 0.0):
            best = n
    m = scored[best]
    table = ", ".join(f"{n} {scored[n].get('precision_at_budget')}" for n in names)
    return best, (
        f"{best}: {int(m['budget_true_alerts'])} of {int(m['budget_alerts'])} budget alerts on confirmed "
        f"incidents of the held-out window (precision {table})"
    )


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
    """Fit the :class:`~models.grid.anomaly.AnomalyEnsemble` and its peer candidates
    (``config.peers``: :meth:`~models.grid.anomaly.AnomalyEnsemble.with_peer`) on the rows before
    ``eval_from``; score every candidate on the held-out days against the incidents' labels and hand
    the best (:func:`select_candidate`) to the champion policy.

    Semi-supervised when the incidents label enough rows (``min_labelled_rows`` on the calibration
    assets), cold start otherwise. Promotion metric: the precision at the alert budget when the
    held-out days hold confirmed incidents, else the Brier score (no incident: nothing to be precise
    about). ``report["candidates"]`` holds every candidate's held-out metrics.
    """
    from models.registry import backtest_id

    from .anomaly import AnomalyEnsemble
    from .evaluate import anomaly_holdout_metrics, holdout_context, label_readings, reading_interval

    lab = label_readings(features, events, ref_meters, kind, reading_interval(ref_meters))
    is_eval = features.select(local_date("time", tz) >= eval_from).to_series().to_numpy()
    train_f, train_y = features.filter(pl.Series(~is_eval)), lab.is_not_null().to_numpy()[~is_eval]
    model = AnomalyEnsemble(kind, config=config, feature_config=feature_config, thresholds=thresholds)
    model.fit(train_f, train_y)
    candidates = {"ensemble": model, **{p: model.with_peer(p, train_f, train_y) for p in config.peers}}
    del train_f
    # the held-out rows with their autoencoder context: the same scores as the whole frame's, and the
    # champion's re-scoring (rescore) keeps only this small frame alive
    ctx = holdout_context(features, is_eval, feature_config.window)
    ev_rows = pl.Series(ctx)
    evaluate = partial(
        anomaly_holdout_metrics,
        features=features.filter(ev_rows),
        labels=lab.filter(ev_rows),
        is_eval=is_eval[ctx],
        events=events,
        ref_meters=ref_meters,
        tz=tz,
        stream=kind,
    )
    scored = {name: evaluate(m) for name, m in candidates.items()}
    chosen, why = select_candidate(scored)
    model, metrics = candidates[chosen], scored[chosen]
    labelled = metrics.get("budget_events", 0.0) > 0
    bid = backtest_id(kind, eval_from, end, int(metrics["eval_rows"]), int(metrics["eval_positives"]))
    params = {
        "kind": kind,
        "eval_days": f"{eval_from}..{end}",
        "train_rows": int((~is_eval).sum()),
        "mode": model.mode,
        "labelled_events": int(events.height),
        **dict(config.__dict__),
        "candidate": chosen,
        "candidate_selection": why,
        "fit_report": model.fit_report_,
    }
    report = {"candidates": scored, "selected": chosen, "selection": why}
    return Trained(
        model,
        metrics,
        bid,
        "precision_at_budget" if labelled else "brier",
        labelled,
        evaluate,
        params,
        report=report,
    )


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
