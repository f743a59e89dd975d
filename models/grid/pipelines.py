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
    "compare_candidates",
    "labels_known_by",
    "pool_windows",
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


def pool_windows(per_window: list[dict[str, dict]]) -> dict[str, dict]:
    """Per candidate, its budget figures summed over the held-out windows of a rolling-origin backtest
    (``per_window``: per window, per candidate :func:`models.grid.evaluate.anomaly_holdout_metrics` with
    events): true alerts, alerts, the alerts per event (an event spanning two windows adds up), the
    distinct events (``budget_events``) and the pooled precision at the budget."""
    out: dict[str, dict] = {}
    for scored in per_window:
        for name, m in scored.items():
            p = out.setdefault(
                name,
                {
                    "budget_true_alerts": 0.0,
                    "budget_alerts": 0.0,
                    "budget_events": 0.0,
                    "budget_true_alerts_by_event": {},
                },
            )
            for k in ("budget_true_alerts", "budget_alerts", "budget_events"):
                p[k] += float(m.get(k) or 0.0)
            for e, n in (m.get("budget_true_alerts_by_event") or {}).items():
                p["budget_true_alerts_by_event"][e] = p["budget_true_alerts_by_event"].get(e, 0) + n
    for p in out.values():
        p["budget_events"] = float(len(p["budget_true_alerts_by_event"]))  # distinct events, not per window
        p["precision_at_budget"] = round(p["budget_true_alerts"] / p["budget_alerts"], 4) if p["budget_alerts"] else 0.0
        p["windows"] = len(per_window)
    return out


def compare_candidates(scored: dict[str, dict], incumbent: str, alpha: float = 0.05) -> dict:
    """Every other candidate against ``incumbent`` on the same confirmed incidents: the paired
    comparison of the champion policy (:func:`models.registry.paired_comparison`) over the events'
    alert counts at the budget (``budget_true_alerts_by_event``), at ``alpha`` split over the
    challengers (Bonferroni: more challengers, more chances to win by luck)."""
    from models.registry import paired_comparison

    events = sorted({e for m in scored.values() for e in (m.get("budget_true_alerts_by_event") or {})})

    def vec(n: str) -> np.ndarray:
        by = scored[n].get("budget_true_alerts_by_event") or {}
        return np.array([by.get(e, 0) for e in events], dtype=np.float64)

    challengers = [n for n in scored if n != incumbent]
    a = alpha / max(1, len(challengers))
    return {n: paired_comparison(vec(n), vec(incumbent), alpha=a) for n in challengers}


def select_candidate(scored: dict[str, dict], incumbent: str = "ensemble", alpha: float = 0.05) -> tuple[str, str]:
    """(name, why) of the candidate the anomaly training hands to the champion policy.

    ``scored``: per candidate its budget figures on the held-out windows' confirmed incidents
    (:func:`pool_windows` of :func:`models.grid.evaluate.anomaly_holdout_metrics`). The incumbent (the
    ensemble unless told otherwise) is kept unless a challenger has more true alerts at the alert budget
    by more than the sampling noise (:func:`compare_candidates`: paired bootstrap over the incidents
    and a sign test); among such winners the largest gain wins. Without a confirmed incident in the
    held-out windows (cold start) the precision is undefined for every candidate: the incumbent is kept
    (the ensemble's tail calibration needs no labels, its detectors see both single-reading and sequence
    anomalies, it is the model the bands and the 200k scores/s target were set for).
    """
    names = list(scored)
    if not names:
        raise ValueError("select_candidate: no candidates")
    inc = incumbent if incumbent in scored else names[0]
    if not any(m.get("budget_events") for m in scored.values()):
        return inc, (
            "no confirmed incident in the held-out window: precision at the budget is undefined, "
            f"so the {inc} is kept (cold start)"
        )
    comps = compare_candidates(scored, inc, alpha)
    winners = [n for n, c in comps.items() if c.better]
    best = max(winners, key=lambda n: comps[n].gain) if winners else inc
    m = scored[best]
    table = ", ".join(f"{n} {scored[n].get('precision_at_budget')}" for n in names)
    tests = "; ".join(f"{n} vs {inc}: {c.describe()}" for n, c in comps.items())
    head = f"{best} (challenger wins beyond the noise)" if best != inc else f"{inc} kept (incumbent)"
    return best, (
        f"{head}: {int(m['budget_true_alerts'])} of {int(m['budget_alerts'])} budget alerts on "
        f"{int(m['budget_events'])} confirmed incidents of the held-out windows (precision {table}); {tests}"
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
    windows: int = 1,
    incumbent: str = "ensemble",
) -> Trained:
    """Fit the :class:`~models.grid.anomaly.AnomalyEnsemble` and its peer candidates
    (``config.peers``: :meth:`~models.grid.anomaly.AnomalyEnsemble.with_peer`) and choose among them on a
    rolling-origin backtest: ``windows`` held-out windows of the length of ``eval_from..end``, the last
    one ending at ``end``, each candidate trained only on the rows before its window and scored on it
    against the incidents' labels; the true and false alerts at the budget are summed over the windows
    and :func:`select_candidate` keeps the incumbent unless a challenger wins beyond the noise. Windows
    with less training history than their own length are skipped (``report["windows"]`` lists those used).

    The chosen candidate as fitted for the last window (trained on the rows before ``eval_from``) is
    handed to the champion policy with its metrics on that window (the backtest the registry re-scores
    the champion on). Semi-supervised when the incidents label enough rows (``min_labelled_rows`` on the
    calibration assets), cold start otherwise. Promotion metric: the precision at the alert budget when
    the last window holds confirmed incidents, else the Brier score (no incident: nothing to be precise
    about). ``report["candidates"]`` holds every candidate's pooled figures, ``report["per_window"]``
    its metrics per window and ``report["comparisons"]`` the paired comparisons with the incumbent.
    """
    from models.registry import backtest_id

    if windows < 1:
        raise ValueError(f"train_anomaly: windows must be >= 1, got {windows}")
    span = (end - eval_from).days + 1
    if span < 1:
        raise ValueError(f"train_anomaly: empty held-out window {eval_from}..{end}")
    lab = _labels(features, events, ref_meters, kind)
    day = features.select(local_date("time", tz)).to_series()
    first_day = day.min()
    per_window, used = [], []
    for j in reversed(range(windows)):
        w0 = eval_from - dt.timedelta(days=span * j)
        w1 = w0 + dt.timedelta(days=span - 1)
        if j and (first_day is None or (w0 - first_day).days < span):
            continue  # too little history before this window
        cands, evaluate, scored = _fit_and_score(kind, features, day, lab, events, ref_meters, tz, w0, w1, config,
                                                 feature_config, thresholds)  # fmt: skip
        per_window.append(scored)
        used.append(f"{w0}..{w1}")
    pooled = pool_windows(per_window)
    chosen, why = select_candidate(pooled, incumbent)
    labelled_any = any(m.get("budget_events") for m in pooled.values())
    comps = compare_candidates(pooled, incumbent) if incumbent in pooled and labelled_any else {}
    model, metrics = cands[chosen], scored[chosen]
    labelled = metrics.get("budget_events", 0.0) > 0
    is_eval = (day >= eval_from).to_numpy()
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
        "selection_windows": ", ".join(used),
        "fit_report": model.fit_report_,
    }
    report = {
        "candidates": pooled,
        "per_window": dict(zip(used, per_window)),
        "windows": used,
        "comparisons": {n: c.as_dict() for n, c in comps.items()},
        "selected": chosen,
        "selection": why,
    }
    return Trained(
        model,
        {k: v for k, v in metrics.items() if not isinstance(v, dict)},
        bid,
        "precision_at_budget" if labelled else "brier",
        labelled,
        evaluate,
        params,
        report=report,
    )


def _labels(features: pl.DataFrame, events: pl.DataFrame, ref_meters: pl.DataFrame, kind: str) -> pl.Series:
    from .evaluate import label_readings, reading_interval

    return label_readings(features, events, ref_meters, kind, reading_interval(ref_meters))


def _fit_and_score(kind, features, day, lab, events, ref_meters, tz, w0, w1, config, feature_config, thresholds):
    """One origin of the rolling backtest: the ensemble and its peers fitted on the rows before ``w0``,
    scored on ``w0..w1`` (with the autoencoder's context rows). Returns (candidates, the evaluation
    function of that window, per candidate its metrics)."""
    from .anomaly import AnomalyEnsemble
    from .evaluate import anomaly_holdout_metrics, holdout_context

    before = (day < w0).to_numpy()
    upto = (day <= w1).to_numpy()
    is_eval = ~before & upto
    if not before.any():
        raise ValueError(f"train_anomaly ({kind}): no rows before the held-out window starting {w0}")
    train_f, train_y = features.filter(pl.Series(before)), lab.is_not_null().to_numpy()[before]
    model = AnomalyEnsemble(kind, config=config, feature_config=feature_config, thresholds=thresholds)
    model.fit(train_f, train_y)
    candidates = {"ensemble": model, **{p: model.with_peer(p, train_f, train_y) for p in config.peers}}
    del train_f
    # the held-out rows with their autoencoder context: the same scores as the whole frame's, and the
    # champion's re-scoring (rescore) keeps only this small frame alive
    ctx = holdout_context(features, is_eval, feature_config.window) & upto
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
    return candidates, evaluate, {name: evaluate(m) for name, m in candidates.items()}


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
