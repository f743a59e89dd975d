"""Evaluation against labelled events (the simulator's ``truth_events`` or confirmed field cases).

Reading-level metrics. A reading is positive when it lies in an event window on its asset. Overall
precision/recall/F1 count every flagged reading. Per event type, precision is one-vs-normal: the
type's hits against the false alarms on normal readings (readings of *other* event types are left
out), because the ensemble scores "anomalous", not "which anomaly".

Event-level metrics. An event is detected when any of its assets (the meter; or every meter below /
the SCADA of the transformer) scores at or above the alert threshold inside the event window; the
detection delay is the first such time minus the event start.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl

from .features import require_columns

#: when a reading lies in several event windows, the label is the first of these
PRIORITY = ("transformer_failure", "stuck_meter", "zero_meter", "voltage_sag", "transformer_overheat", "theft")
METER_STREAM_TYPES = ("stuck_meter", "zero_meter", "theft", "voltage_sag", "transformer_failure")
SCADA_STREAM_TYPES = ("voltage_sag", "transformer_overheat", "transformer_failure")


def event_assets(truth_events: pl.DataFrame, ref_meters: pl.DataFrame | None, stream: str) -> pl.DataFrame:
    """One row per (event, asset of the stream it shows on): event_id, event_type, asset_id, start, end."""
    require_columns(truth_events, ("event_id", "event_type", "asset_type", "asset_id", "start_time", "end_time"),
                    "truth_events")
    ev = truth_events.select("event_id", "event_type", "asset_type", "asset_id",
                             pl.col("start_time").alias("start"), pl.col("end_time").alias("end"))
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
        .filter((pl.col("time") < pl.col("end")) & ((pl.col("time") + span) > pl.col("start")) if span
                else (pl.col("time") >= pl.col("start")) & (pl.col("time") < pl.col("end")))
        .with_columns(pl.col("event_type").replace_strict({t: i for i, t in enumerate(PRIORITY)},
                                                          return_dtype=pl.Int32).alias("_p"))
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
    ev = ea.select("event_id", "event_type").unique().join(first, on="event_id", how="left")
    out = {}
    for t in sorted(ev["event_type"].unique().to_list()):
        e = ev.filter(pl.col("event_type") == t)
        d = e["delay_h"].drop_nulls()
        out[t] = {
            "events": e.height,
            "detected": d.len(),
            "detection_rate": round(d.len() / e.height, 4) if e.height else 0.0,
            "median_delay_h": round(float(d.median()), 3) if d.len() else None,
        }
    return out
