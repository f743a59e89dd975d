"""Model monitoring: input and score drift against the training window, and realised precision.

- **PSI** (population stability index) of each model input and of the score: the training window's
  deciles are the bins (:func:`reference_profile`, stored with the model at fit time); a scoring day's
  share per bin is compared with the training share, ``PSI = sum((a - e) ln(a / e))``. The usual
  reading (credit-risk practice, also used for ML monitoring): < 0.1 stable, 0.1-0.25 moderate,
  > 0.25 significant shift: retrain. (Bins with no data get a floor share, ``EPS``.)
- **realised precision**: of the alerts whose window ended at least ``settle_days`` ago (time for
  a crew to confirm), the share on an asset with a confirmed incident overlapping the alert window.

:func:`drift_report` gives one row per monitored quantity with the threshold and the verdict; the
asset layer turns drifted rows into alerts (``streaming_bridge.model_alerts``) and the model is
flagged for retraining.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import polars as pl

EPS = 1e-4


@dataclass(frozen=True)
class DriftConfig:
    bins: int = 10
    #: PSI above this is a significant shift: alert and flag the model for retraining
    psi_threshold: float = 0.25
    #: fewer rows than this on the scoring side: no verdict (too few to estimate the shares)
    min_rows: int = 200
    #: alerts must have ended this long ago before their confirmation rate counts
    settle_days: int = 7
    #: realised precision below this (with at least ``min_settled_alerts``) is reported as drift too
    min_precision: float = 0.2
    min_settled_alerts: int = 10


def _edges(v: np.ndarray, bins: int) -> np.ndarray:
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.array([])
    e = np.unique(np.quantile(v, np.linspace(0, 1, bins + 1)[1:-1]))
    return e


def _shares(v: np.ndarray, edges: np.ndarray) -> np.ndarray:
    v = v[np.isfinite(v)]
    idx = np.searchsorted(edges, v, side="right")
    c = np.bincount(idx, minlength=len(edges) + 1).astype(float)
    return c / max(1.0, c.sum())


def reference_profile(columns: dict[str, np.ndarray], cfg: DriftConfig = DriftConfig()) -> dict[str, dict]:
    """Per quantity: decile edges of the training values and the training share per bin."""
    out = {}
    for name, v in columns.items():
        v = np.asarray(v, dtype=np.float64)
        e = _edges(v, cfg.bins)
        out[name] = {"edges": e.tolist(), "expected": _shares(v, e).tolist(), "rows": int(np.isfinite(v).sum())}
    return out


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    e = np.clip(np.asarray(expected, dtype=float), EPS, None)
    a = np.clip(np.asarray(actual, dtype=float), EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def drift_report(
    profile: dict[str, dict], current: dict[str, np.ndarray], model: str, cfg: DriftConfig = DriftConfig()
) -> pl.DataFrame:
    """One row per quantity in both ``profile`` and ``current``: model, metric (``input:<name>`` or
    ``score``), value (PSI), threshold, rows, drifted (None when too few rows to tell)."""
    rows = []
    for name, ref in profile.items():
        if name not in current:
            continue
        v = np.asarray(current[name], dtype=np.float64)
        n = int(np.isfinite(v).sum())
        value = psi(ref["expected"], _shares(v, np.asarray(ref["edges"]))) if n else None
        metric = "score" if name == "score" else f"input:{name}"
        rows.append(
            (
                model,
                metric,
                value,
                cfg.psi_threshold,
                n,
                None if n < cfg.min_rows or value is None else value > cfg.psi_threshold,
            )
        )
    return pl.DataFrame(
        rows,
        schema={
            "model": pl.Utf8,
            "metric": pl.Utf8,
            "value": pl.Float64,
            "threshold": pl.Float64,
            "rows": pl.Int64,
            "drifted": pl.Boolean,
        },
        orient="row",
    )


def realised_precision(
    alerts: pl.DataFrame, events: pl.DataFrame, as_of, cfg: DriftConfig = DriftConfig(), lead_h: float = 0.0
) -> dict:
    """Share of settled alerts (window ended ``settle_days`` before ``as_of``) on an asset with a confirmed
    incident overlapping the window. ``alerts``: asset_type, asset_id, window_start, window_end;
    ``events``: :func:`models.grid.labels.incident_events` (asset_id, start_time, end_time).

    ``lead_h``: a prediction alert (failure risk within a horizon) is confirmed by an incident starting up to
    ``lead_h`` hours after its window: the event's start is moved that much earlier before the overlap test."""
    settled = alerts.filter(
        pl.col("window_end") <= pl.lit(as_of).cast(pl.Datetime("us", "UTC")) - timedelta(days=cfg.settle_days)
    )
    if settled.height == 0:
        return {"settled_alerts": 0, "confirmed": 0, "precision": None}
    s = settled.with_row_index("_a")
    hit = (
        s.join(events.select("asset_id", "start_time", "end_time"), on="asset_id", how="inner")
        .filter(
            (pl.col("start_time") - timedelta(hours=lead_h) < pl.col("window_end"))
            & (pl.col("end_time") > pl.col("window_start"))
        )
        .select("_a")
        .unique()
    )
    return {
        "settled_alerts": settled.height,
        "confirmed": hit.height,
        "precision": round(hit.height / settled.height, 4),
    }


def monitor_model(
    model: str,
    profile: dict[str, dict],
    current: dict[str, np.ndarray],
    alerts: pl.DataFrame,
    events: pl.DataFrame,
    as_of,
    cfg: DriftConfig = DriftConfig(),
    lead_h: float = 0.0,
) -> pl.DataFrame:
    """Everything monitored for one model on one scoring day: :func:`drift_report` of its inputs and
    score, plus a ``realised_precision`` row (its settled ``alerts`` against the confirmed ``events``;
    ``drifted`` None until ``min_settled_alerts`` have settled). A row with ``drifted`` True means: alert
    and flag the model for retraining (:func:`needs_retraining`)."""
    rep = drift_report(profile, current, model, cfg)
    rp = realised_precision(alerts, events, as_of, cfg, lead_h)
    verdict = (
        None
        if rp["precision"] is None or rp["settled_alerts"] < cfg.min_settled_alerts
        else rp["precision"] < cfg.min_precision
    )
    row = pl.DataFrame(
        [(model, "realised_precision", rp["precision"], cfg.min_precision, rp["settled_alerts"], verdict)],
        schema=rep.schema,
        orient="row",
    )
    return pl.concat([rep, row])


def needs_retraining(report: pl.DataFrame) -> str | None:
    """Why a model is to be retrained (its drifted metrics, with values), or None: the reason tag the
    registry stores (:meth:`models.registry.ModelRegistry.mark_for_retraining`)."""
    d = report.filter(pl.col("drifted").fill_null(False))
    if d.height == 0:
        return None
    return "drift: " + ", ".join(
        f"{m} {v:.3f} (threshold {t:.3f})" if v is not None else m
        for m, v, t in d.select("metric", "value", "threshold").iter_rows()
    )
