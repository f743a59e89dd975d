"""Incidents as a utility records them: from the true events to late, incomplete, sometimes wrong work orders.

Planned once for the whole period from ``(seed, STREAM_INCIDENTS)`` like the events, so a day's export
is the same whichever days are generated. For every true event, with the type's ``confirm_share``:
reported ``report_hours`` after it starts, confirmed ``confirm_hours`` after the report; a few carry the
wrong type; a few false reports (outcome ``false_report``) name healthy assets. The crew's start/end
are the event's window rounded to the quarter hour (a crew does not know the minute). Only incidents
confirmed by the end of the simulated period exist: the rest are not closed yet.

The export of local day D holds the incidents confirmed on D (the landing file of ``incidents``);
the raw contract is ``contracts.SOURCES["incidents"]``.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from contracts import INCIDENT_TYPES, SOURCES, UTC_TS

from .config import SimConfig
from .events import EventPlan, local_midnight_utc

STREAM_INCIDENTS = 21
_Q = np.timedelta64(15, "m")
_H = np.timedelta64(3_600_000_000, "us")

_METER_TYPES = ("stuck_meter", "zero_meter", "theft")


def _hours(h: np.ndarray) -> np.ndarray:
    return (np.asarray(h) * 3_600_000_000).astype("int64").astype("timedelta64[us]")


def plan_incidents(cfg: SimConfig, plan: EventPlan, meter_ids: np.ndarray, tx_ids: np.ndarray) -> pl.DataFrame:
    """Every incident recorded in the period, in the raw contract (asset_id, confirmed_at, ...)."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, STREAM_INCIDENTS]))
    r = cfg.incidents
    ev = plan.frame
    p0 = local_midnight_utc(cfg.start, cfg.timezone)
    p1 = local_midnight_utc(cfg.end.fromordinal(cfg.end.toordinal() + 1), cfg.timezone)
    n = ev.height
    kinds = ev["event_type"].to_numpy().astype(str) if n else np.array([], dtype=str)
    u = rng.random(n)
    share = np.array([r.confirm_share[k] for k in kinds]) if n else np.zeros(0)
    rep_lo = np.array([r.report_hours[k][0] for k in kinds]) if n else np.zeros(0)
    rep_hi = np.array([r.report_hours[k][1] for k in kinds]) if n else np.zeros(0)
    con_lo = np.array([r.confirm_hours[k][0] for k in kinds]) if n else np.zeros(0)
    con_hi = np.array([r.confirm_hours[k][1] for k in kinds]) if n else np.zeros(0)
    rep_h = rng.uniform(rep_lo, rep_hi) if n else np.zeros(0)
    con_h = rng.uniform(con_lo, con_hi) if n else np.zeros(0)
    wrong = rng.random(n) < r.wrong_type_share
    alt = rng.integers(0, len(INCIDENT_TYPES) - 1, n)
    start = (
        ev["start_time"].dt.replace_time_zone(None).to_numpy().astype("datetime64[us]")
        if n
        else np.array([], "datetime64[us]")
    )
    end = (
        ev["end_time"].dt.replace_time_zone(None).to_numpy().astype("datetime64[us]")
        if n
        else np.array([], "datetime64[us]")
    )
    reported = start + _hours(rep_h)
    confirmed = reported + _hours(con_h)
    keep = (u < share) & (confirmed < p1)
    rec_type = kinds.copy()
    for i in np.flatnonzero(
        wrong
    ):  # a wrong type of the same asset class (a crew does not mistake a meter for a transformer)
        same = [t for t in INCIDENT_TYPES if (t in _METER_TYPES) == (kinds[i] in _METER_TYPES) and t != kinds[i]]
        if kinds[i] == "voltage_sag":
            same = ["transformer_overheat"]
        rec_type[i] = same[int(alt[i]) % len(same)] if same else kinds[i]
    true_part = pl.DataFrame(
        {
            "asset_id": ev["asset_id"].to_numpy() if n else np.array([], dtype=str),
            "asset_type": ev["asset_type"].to_numpy() if n else np.array([], dtype=str),
            "incident_type": rec_type,
            "start_time": (start - (start - p0) % _Q),
            "end_time": (end - (end - p0) % _Q),
            "reported_at": reported,
            "confirmed_at": confirmed,
            "outcome": np.full(n, "confirmed"),
            "note": np.where(wrong, "recorded type differs from the crew's later finding", "confirmed on site"),
            "event_id": ev["event_id"].to_numpy() if n else np.array([], dtype=str),
        },
        schema_overrides={
            "asset_id": pl.Utf8,
            "asset_type": pl.Utf8,
            "incident_type": pl.Utf8,
            "outcome": pl.Utf8,
            "note": pl.Utf8,
            "event_id": pl.Utf8,
        },
    ).filter(pl.Series(keep))
    # false reports: a customer call or an alarm on a healthy asset, closed as false_report
    months = (p1 - p0) / np.timedelta64(30 * 24, "h")
    n_assets = meter_ids.size + tx_ids.size
    k = int(rng.poisson(r.false_reports_per_1000_assets_month * n_assets / 1000.0 * months))
    is_meter = rng.random(k) < meter_ids.size / max(1, n_assets)
    ids = np.where(
        is_meter,
        meter_ids[rng.integers(0, max(1, meter_ids.size), k)] if meter_ids.size else "",
        tx_ids[rng.integers(0, max(1, tx_ids.size), k)] if tx_ids.size else "",
    )
    span_h = (p1 - p0) / _H
    fs = p0 + _hours(rng.uniform(0, span_h, k))
    fs = fs - (fs - p0) % _Q
    f_rep = fs + _hours(rng.uniform(0.5, 24.0, k))
    f_con = f_rep + _hours(rng.uniform(4.0, 10 * 24.0, k))
    ftype = np.array(
        [rng.choice(_METER_TYPES) if m else rng.choice(["voltage_sag", "transformer_overheat"]) for m in is_meter],
        dtype=object,
    )
    false_part = pl.DataFrame(
        {
            "asset_id": ids.astype(str),
            "asset_type": np.where(is_meter, "meter", "transformer"),
            "incident_type": ftype.astype(str),
            "start_time": fs,
            "end_time": fs + np.timedelta64(1, "h"),
            "reported_at": f_rep,
            "confirmed_at": f_con,
            "outcome": np.full(k, "false_report"),
            "note": np.full(k, "nothing found on site"),
            "event_id": np.full(k, None, dtype=object),
        },
        schema_overrides={
            "event_id": pl.Utf8,
            "asset_id": pl.Utf8,
            "asset_type": pl.Utf8,
            "incident_type": pl.Utf8,
            "outcome": pl.Utf8,
            "note": pl.Utf8,
        },
    ).filter(pl.col("confirmed_at") < p1)
    df = pl.concat([true_part, false_part], how="vertical_relaxed").sort("confirmed_at", "asset_id")
    ts = ["start_time", "end_time", "reported_at", "confirmed_at"]
    df = df.with_columns([pl.col(c).cast(pl.Datetime("us")).dt.truncate("1m").dt.replace_time_zone("UTC") for c in ts])
    df = df.with_columns(
        pl.format("WO{}-{}", pl.lit(cfg.seed), pl.int_range(1, pl.len() + 1).cast(pl.Utf8).str.zfill(6)).alias(
            "incident_id"
        )
    )
    return df


def incidents_raw(df: pl.DataFrame) -> pl.DataFrame:
    """The landing contract's columns of :func:`plan_incidents` output (drops the truth link ``event_id``)."""
    src = SOURCES["incidents"]
    return df.select(
        [
            pl.col(c).cast(UTC_TS if c in ("confirmed_at",) or src.silver.column(c).dtype == UTC_TS else pl.Utf8)
            for c in src.raw_columns
        ]
    )
