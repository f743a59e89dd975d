"""Evaluation against labelled events (the simulator's ``truth_events`` or confirmed field cases).

Reading-level metrics. A reading is positive when it lies in an event window on its asset. Overall
precision/recall/F1 count every flagged reading. Per event type, precision is one-vs-normal: the
type's hits against the false alarms on normal readings (readings of *other* event types are left
out), because the ensemble scores "anomalous", not "which anomaly".

Event-level metrics. An event is detected when any of its assets (the meter; or every meter below /
the SCADA of the transformer) scores at or above the alert threshold inside the event window; the
detection delay is the first such time minus the event start.

Hold-out evaluation of the training runs. :func:`training_window` picks the days a run trains on
(the last ``eval_days`` of them are held back); :func:`anomaly_holdout_metrics` scores a model on
those held-out readings. The promotion metric is the precision at the operators' alert budget
(:func:`budget_metrics`: the top few assets per 1,000 per day, the operating point operators live
with) when the held-out days hold confirmed incidents, else the Brier score (:func:`brier_score`) of
the calibrated probabilities: a proper scoring rule, defined even on a day without any anomaly.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl

from .features import require_columns

#: when a reading lies in several event windows, the label is the first of these
PRIORITY = ("transformer_failure", "stuck_meter", "zero_meter", "voltage_sag", "transformer_overheat", "theft")
METER_STREAM_TYPES = ("stuck_meter", "zero_meter", "theft", "voltage_sag", "transformer_failure")
SCADA_STREAM_TYPES = ("voltage_sag", "transformer_overheat", "transformer_failure")


def event_assets(truth_events: pl.DataFrame, ref_meters: pl.DataFrame | None, stream: str) -> pl.DataFrame:
    """One row per (event, asset of the stream it shows on): event_id, event_type, asset_id, start, end."""
    require_columns(
        truth_events, ("event_id", "event_type", "asset_type", "asset_id", "start_time", "end_time"), "truth_events"
    )
    ev = truth_events.select(
        "event_id",
        "event_type",
        "asset_type",
        "asset_id",
        pl.col("start_time").alias("start"),
        pl.col("end_time").alias("end"),
    )
    if stream == "transformer":
        return ev.filter(pl.col("event_type").is_in(SCADA_STREAM_TYPES)).drop("asset_type")
    if stream != "meter":
        raise ValueError(f"stream must be 'meter' or 'transformer', got {stream!r}")
    own = ev.filter((pl.col("asset_type") == "meter") & pl.col("event_type").is_in(METER_STREAM_TYPES))
    tx = ev.filter((pl.col("asset_type") == "transformer") & pl.col("event_type").is_in(METER_STREAM_TYPES))
    if tx.height and ref_meters is None:
        raise ValueError("ref_meters is needed to map transformer events onto the meters below them")
    if ref_meters is not None and tx.height:
        m = ref_meters.select(pl.col("transformer_id").alias("asset_id"), pl.col("meter_id"))
        tx = tx.join(m, on="asset_id", how="inner").with_columns(pl.col("meter_id").alias("asset_id")).drop("meter_id")
        own = pl.concat([own, tx.select(own.columns)])
    return own.drop("asset_type")


def label_readings(
    keys: pl.DataFrame,
    truth_events: pl.DataFrame,
    ref_meters: pl.DataFrame | None = None,
    stream: str = "meter",
    interval: timedelta = timedelta(minutes=30),
) -> pl.Series:
    """``event_type`` per row of ``keys`` (asset_id, time), null outside every event window.

    A reading covers ``[time, time + interval)``; it is labelled when that overlaps an event window
    (a 5-minute sag shows as a dip of the 30-minute RMS voltage). SCADA samples are instants.
    """
    require_columns(keys, ("asset_id", "time"), "keys")
    ea = event_assets(truth_events, ref_meters, stream)
    span = interval if stream == "meter" else timedelta(0)
    k = keys.select("asset_id", "time").with_row_index("_row")
    hit = (
        k.join(ea, on="asset_id", how="inner")
        .filter(
            (pl.col("time") < pl.col("end")) & ((pl.col("time") + span) > pl.col("start"))
            if span
            else (pl.col("time") >= pl.col("start")) & (pl.col("time") < pl.col("end"))
        )
        .with_columns(
            pl.col("event_type")
            .replace_strict({t: i for i, t in enumerate(PRIORITY)}, return_dtype=pl.Int32)
            .alias("_p")
        )
        .sort("_row", "_p")
        .group_by("_row", maintain_order=True)
        .agg(pl.col("event_type").first())
    )
    return k.join(hit, on="_row", how="left").sort("_row")["event_type"]


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4)}


def reading_metrics(event_type: pl.Series, score: np.ndarray, threshold: float) -> dict:
    """Overall and per-type precision/recall/F1 of ``score >= threshold``."""
    et = event_type.to_numpy()
    pos = event_type.is_not_null().to_numpy()
    flag = np.asarray(score) >= threshold
    out = {"overall": _prf(int((flag & pos).sum()), int((flag & ~pos).sum()), int((~flag & pos).sum()))}
    out["overall"]["n_positive"] = int(pos.sum())
    fp_normal = int((flag & ~pos).sum())
    for t in sorted(set(event_type.drop_nulls().to_list())):
        m = et == t
        d = _prf(int((flag & m).sum()), fp_normal, int((~flag & m).sum()))
        d["n_positive"] = int(m.sum())
        out[t] = d
    return out


def event_detection(
    keys: pl.DataFrame,
    score: np.ndarray,
    threshold: float,
    truth_events: pl.DataFrame,
    ref_meters: pl.DataFrame | None = None,
    stream: str = "meter",
) -> dict:
    """Per event type: events visible in the scored period, share detected, median delay (hours)."""
    ea = event_assets(truth_events, ref_meters, stream)
    t0, t1 = keys["time"].min(), keys["time"].max()
    ea = ea.filter((pl.col("start") >= t0) & (pl.col("start") <= t1))
    flagged = keys.select("asset_id", "time").filter(pl.Series(np.asarray(score) >= threshold))
    first = (
        flagged.join(ea, on="asset_id", how="inner")
        .filter((pl.col("time") + timedelta(minutes=30) > pl.col("start")) & (pl.col("time") < pl.col("end")))
        .group_by("event_id")
        .agg(((pl.col("time").min() - pl.col("start").first()).dt.total_seconds() / 3600.0).clip(0.0).alias("delay_h"))
    )
    return _detection_by_type(ea, first, delay_digits=3)


def _detection_by_type(ea: pl.DataFrame, first: pl.DataFrame, delay_digits: int) -> dict:
    """Per event type of ``ea``: events, detected (a delay in ``first``, keyed by event_id), rate, median delay."""
    ev = ea.select("event_id", "event_type").unique().join(first, on="event_id", how="left")
    out = {}
    for t in sorted(ev["event_type"].unique().to_list()):
        e = ev.filter(pl.col("event_type") == t)
        d = e["delay_h"].drop_nulls()
        out[t] = {
            "events": e.height,
            "detected": d.len(),
            "detection_rate": round(d.len() / e.height, 4) if e.height else 0.0,
            "median_delay_h": round(float(d.median()), delay_digits) if d.len() else None,
        }
    return out


#: operators live with a fixed alert budget: alerts per 1,000 assets (meters or transformers) per day
ALERT_BUDGET_PER_1000_PER_DAY = 5.0


def budget_metrics(
    keys: pl.DataFrame,
    score: np.ndarray,
    events: pl.DataFrame,
    ref_meters: pl.DataFrame | None,
    tz: str,
    stream: str = "meter",
    per_1000: float = ALERT_BUDGET_PER_1000_PER_DAY,
) -> dict:
    """The operating point operators live with: each local day, the ``per_1000`` x assets/1000 (at least
    one) assets with the highest score of the day are alerted (one alert per asset and day; ties broken
    by asset id, so the figure does not depend on row order). Precision = share of alerts on an asset
    with an event that day (``events``: confirmed incidents or, in benchmarks, the truth); event
    recall = share of events alerted on a day they cover, with the median delay from the event start
    to that day's highest-scoring reading, per event type. ``true_alerts_by_event``: per event in the
    period, the alerts (asset-days) on it: the units a paired comparison of two models resamples
    (:func:`models.registry.paired_comparison`)."""
    require_columns(keys, ("asset_id", "time"), "keys")
    if len(score) != keys.height:
        raise ValueError(f"budget_metrics: {len(score)} scores for {keys.height} rows")
    n_assets = keys["asset_id"].n_unique()
    k = max(1, int(round(per_1000 * n_assets / 1000.0)))
    df = keys.select(pl.col("asset_id").cast(pl.Utf8), "time").with_columns(
        pl.Series("s", np.asarray(score, dtype=np.float64)),
        pl.col("time").dt.convert_time_zone(tz).dt.date().alias("day"),
    )
    daily = (
        df.sort(["s", "time"], descending=[True, False])
        .group_by("asset_id", "day", maintain_order=True)
        .agg(pl.col("s").first(), pl.col("time").first().alias("t_max"))
    )
    alerts = daily.sort(["s", "asset_id"], descending=[True, False]).group_by("day", maintain_order=True).head(k)
    ea = event_assets(events, ref_meters, stream).with_columns(pl.col("asset_id").cast(pl.Utf8))
    t0, t1 = keys["time"].min(), keys["time"].max()
    ea = ea.filter((pl.col("start") <= t1) & (pl.col("end") >= t0))
    day_start = pl.col("day").cast(pl.Datetime("us")).dt.replace_time_zone(tz).dt.convert_time_zone("UTC")
    hit = (
        alerts.with_columns(day_start.alias("_d0"))
        .join(ea, on="asset_id", how="inner")
        .filter((pl.col("start") < pl.col("_d0") + timedelta(days=1)) & (pl.col("end") > pl.col("_d0")))
    )
    true_alerts = hit.select("asset_id", "day").unique().height
    first = hit.group_by("event_id").agg(
        ((pl.col("t_max").min() - pl.col("start").first()).dt.total_seconds() / 3600).clip(0).alias("delay_h")
    )
    ev = ea.select("event_id", "event_type").unique()
    per_type = _detection_by_type(ea, first, delay_digits=2)
    by_event = dict.fromkeys(sorted(ev["event_id"].cast(pl.Utf8).to_list()), 0)
    for eid, n in hit.group_by("event_id").agg(pl.struct("asset_id", "day").n_unique()).iter_rows():
        by_event[str(eid)] = int(n)
    return {
        "alerts_per_day": k,
        "alerts": alerts.height,
        "true_alerts": true_alerts,
        "events": ev.height,
        "precision": round(true_alerts / alerts.height, 4) if alerts.height else 0.0,
        "event_recall": round(first.height / ev.height, 4) if ev.height else None,
        "per_type": per_type,
        "true_alerts_by_event": by_event,
    }


def brier_score(p: np.ndarray, y: np.ndarray) -> float:
    """Mean squared difference between the probabilities ``p`` and the 0/1 outcomes ``y``."""
    return float(np.mean((np.asarray(p, dtype=float) - np.asarray(y, dtype=float)) ** 2))


def reading_interval(ref_meters: pl.DataFrame, default_minutes: int = 30) -> timedelta:
    """The fleet's usual reading interval: the mode of ``interval_minutes`` (``default_minutes`` if unknown)."""
    m = ref_meters["interval_minutes"].mode() if ref_meters.height else None
    return timedelta(minutes=int(m[0]) if m is not None and m.len() else default_minutes)


def training_window(
    dates: Iterable[date],
    window_days: int,
    min_days: int,
    eval_days: int,
    as_of: date | None = None,
    what: str = "training",
    source: str = "silver_meter_readings",
) -> tuple[date, date, list[date]]:
    """(first day, last day, days with data in between, sorted) of a training window.

    ``dates`` are the days ``source`` has data for. The window is the ``window_days`` ending at
    ``as_of`` (default: the newest of ``dates``); fewer than ``min_days`` days with data in it is
    refused with an error naming the days found and needed (``what`` prefixes every message).
    """
    if window_days < 2 or min_days < 2 or eval_days < 1:
        raise ValueError(
            f"{what}: window_days and min_days must be >= 2 and eval_days >= 1, got "
            f"{window_days}, {min_days}, {eval_days}"
        )
    if eval_days >= min_days:
        raise ValueError(f"{what}: eval_days ({eval_days}) must be smaller than min_days ({min_days})")
    dates = list(dates)
    if as_of is not None:
        end = as_of
    elif dates:
        end = max(dates)
    else:
        raise ValueError(f"{what}: {source} is empty: found 0 days of history, need at least {min_days}")
    start = end - timedelta(days=window_days - 1)
    found = sorted(d for d in dates if start <= d <= end)
    if len(found) < min_days:
        raise ValueError(
            f"{what}: too little history: found {len(found)} day(s) of {source} in the "
            f"{window_days}-day window {start}..{end}, need at least {min_days} "
            f"(min_days; eval_days={eval_days} of them are held out)"
        )
    return start, end, found


def holdout_context(features: pl.DataFrame, is_eval: np.ndarray, window: int) -> np.ndarray:
    """Rows of ``features`` (sorted by asset_id, time) that scoring the held-out rows ``is_eval`` needs:
    those rows and the ``window - 1`` readings of the same asset before each (the autoencoder's window).

    Scoring only these rows gives the held-out rows the same scores as scoring the whole frame (every
    detector scores a row from its own features and its asset's previous ``window - 1`` rows), at a
    fraction of the cost: the held-out day is 1/21 of a 21-day training window (issue 13).
    """
    is_eval = np.asarray(is_eval, dtype=bool)
    keep = is_eval.copy()
    if window > 1 and len(keep) > 1:
        ids = features["asset_id"]
        ids = ids.to_physical() if ids.dtype == pl.Categorical else ids
        for lag in range(1, min(window, len(keep))):
            same = (ids[lag:] == ids[:-lag]).to_numpy()
            keep[:-lag] |= is_eval[lag:] & same
    return keep


def anomaly_holdout_metrics(
    model: Any,
    features: pl.DataFrame,
    labels: pl.Series,
    is_eval: np.ndarray,
    events: pl.DataFrame | None = None,
    ref_meters: pl.DataFrame | None = None,
    tz: str | None = None,
    stream: str = "meter",
) -> dict:
    """Metrics of an anomaly model on the held-out rows ``is_eval`` of ``features``.

    ``labels`` is :func:`label_readings` of ``features`` (null = normal). The whole frame is scored so
    the autoencoder's windows have their real context; only the held-out rows count. Returns the
    Brier score, precision/recall/F1 at the model's alert threshold, the row and positive counts and
    the average precision (None when the held-out rows are all of one class); with ``events`` (the
    incidents ``labels`` come from) and ``tz``, also the precision at the alert budget
    (:func:`budget_metrics`), its true alerts and the events it could find (``budget_events``).
    """
    s = model.score_arrays(features)["score"][is_eval]
    ye = labels.is_not_null().to_numpy()[is_eval]
    r = reading_metrics(labels.filter(pl.Series(is_eval)), s, model.thresholds.alert)["overall"]
    out = {
        "brier": brier_score(s, ye),
        "f1_at_alert": r["f1"],
        "precision_at_alert": r["precision"],
        "recall_at_alert": r["recall"],
        "eval_rows": float(len(ye)),
        "eval_positives": float(ye.sum()),
        "average_precision": None,
    }
    if 0 < ye.sum() < len(ye):
        from sklearn.metrics import average_precision_score

        out["average_precision"] = float(average_precision_score(ye, s))
    if events is not None and tz is not None:
        bm = budget_metrics(features.filter(pl.Series(is_eval)), s, events, ref_meters, tz, stream)
        out["precision_at_budget"] = bm["precision"]
        out["budget_true_alerts"] = float(bm["true_alerts"])
        out["budget_alerts"] = float(bm["alerts"])
        out["budget_events"] = float(bm["events"])
        out["budget_true_alerts_by_event"] = bm["true_alerts_by_event"]
    return out
