"""Labelled events, planned for the whole period before any day is generated.

Planning up front (from ``(seed, STREAM_EVENTS)``) is what makes ``truth()`` exact and lets any day be
generated alone: a day only asks the plan which events overlap it.

Windows of events that act on meter readings (stuck, zero, theft, failure/repair) are snapped to the
30-minute grid, so a reading is either wholly inside or wholly outside the window, whatever the meter
interval (15 or 30 minutes). Voltage sags keep minute resolution: a reading's voltage is the RMS over its
interval, so it dips in proportion to the overlap, and the transformer's SCADA voltage dips for
samples taken inside the window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from contracts import TABLES

from .config import SimConfig
from .fleet import Fleet, expected_unit_mean

STREAM_EVENTS = 2
MIN = np.timedelta64(1, "m")
GRID = np.timedelta64(30, "m")

METER_EVENTS = ("stuck_meter", "zero_meter", "theft")


def local_midnight_utc(d: date, tz: str) -> np.datetime64:
    """UTC instant (datetime64[us]) of local midnight starting day ``d`` in ``tz``."""
    t = datetime.combine(d, time(0), tzinfo=ZoneInfo(tz)).astimezone(timezone.utc).replace(tzinfo=None)
    return np.datetime64(t, "us")


@dataclass
class EventPlan:
    """All events as parallel arrays (row i = event i, ordered by start) plus the truth frame."""

    kind: np.ndarray  # event_type strings
    asset: np.ndarray  # meter index (meter events) or transformer index
    start: np.ndarray  # datetime64[us]
    end: np.ndarray
    magnitude: np.ndarray  # float, NaN where not applicable
    frozen_kw: np.ndarray  # stuck meters: the frozen demand (kW), NaN otherwise
    frozen_v: np.ndarray  # stuck meters: the frozen voltage (V)
    frozen_pf: np.ndarray
    frame: pl.DataFrame

    def overlapping(self, kind: str, lo: np.datetime64, hi: np.datetime64) -> np.ndarray:
        """Indices of events of ``kind`` whose window overlaps [lo, hi)."""
        return np.flatnonzero((self.kind == kind) & (self.start < hi) & (self.end > lo))


def _snap(t: np.ndarray, origin: np.datetime64) -> np.ndarray:
    return origin + ((t - origin) // GRID) * GRID


def plan_events(cfg: SimConfig, fleet: Fleet) -> EventPlan:
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, STREAM_EVENTS]))
    r = cfg.events
    p0 = local_midnight_utc(cfg.start, cfg.timezone)
    p1 = local_midnight_utc(cfg.end.fromordinal(cfg.end.toordinal() + 1), cfg.timezone)
    span_min = int((p1 - p0) // MIN)
    years = span_min / (365.25 * 24 * 60)
    n_m = fleet.meter_ids.size
    n_t = fleet.tx_ids.size
    interval_h = cfg.interval_minutes / 60.0

    kinds: list[str] = []
    assets: list[int] = []
    starts: list[np.datetime64] = []
    ends: list[np.datetime64] = []
    mags: list[float] = []
    notes: list[str | None] = []
    frozen = {"kw": [], "v": [], "pf": []}

    def add(kind, asset, s, e, mag=np.nan, note=None, fz=(np.nan, np.nan, np.nan)):
        kinds.append(kind)
        assets.append(int(asset))
        starts.append(s)
        ends.append(e)
        mags.append(float(mag))
        notes.append(note)
        frozen["kw"].append(fz[0])
        frozen["v"].append(fz[1])
        frozen["pf"].append(fz[2])

    # transformer overheating -> failure -> repair; propensity from age, maintenance and loading
    lam = r.failures_per_transformer_year * years * fleet.hazard
    fails = np.flatnonzero(rng.random(n_t) < -np.expm1(-lam))
    lead_max = np.timedelta64(int(r.failure_lead_hours[1] * 60), "m")
    lo_fail = p0 + lead_max if p0 + lead_max < p1 else p0
    for t in fails:
        tf = _snap(lo_fail + np.timedelta64(int(rng.uniform(0, (p1 - lo_fail) // MIN)), "m"), p0)
        # lead time in whole half hours, kept inside the configured range after rounding
        lo_h, hi_h = r.failure_lead_hours
        halves = int(np.clip(round(rng.uniform(lo_h, hi_h) * 2), np.ceil(lo_h * 2), np.floor(hi_h * 2)))
        t0 = tf - halves * GRID
        rep = _snap(tf + np.timedelta64(int(rng.uniform(*r.repair_hours) * 60), "m"), p0) + GRID
        rise = rng.uniform(*r.overheat_rise_c)
        add("transformer_overheat", t, t0, tf, rise, "degrading cooling: hot spot rising towards failure")
        add("transformer_failure", t, tf, rep, np.nan, "transformer out of service until end_time (repair)")

    # voltage sags on all meters of one transformer
    for _ in range(rng.poisson(r.sags_per_transformer_year * n_t * years)):
        t = rng.integers(n_t)
        s = p0 + np.timedelta64(int(rng.integers(0, span_min)), "m")
        e = s + np.timedelta64(int(round(rng.uniform(*r.sag_minutes))), "m")
        add("voltage_sag", t, s, e, round(rng.uniform(*r.sag_depth), 3), "depth = fraction of voltage lost")

    # metering faults and theft on distinct meters
    counts = {
        "stuck_meter": rng.poisson(r.stuck_per_meter_year * n_m * years),
        "zero_meter": rng.poisson(r.zero_per_meter_year * n_m * years),
        "theft": rng.poisson(r.theft_per_meter_year * n_m * years),
    }
    total = sum(counts.values())
    meters = rng.permutation(n_m)[:total] if total <= n_m else rng.integers(0, n_m, total)
    unit_mean = expected_unit_mean(fleet.arch)
    pos = 0
    for kind in METER_EVENTS:
        for _ in range(counts[kind]):
            m = meters[pos]
            pos += 1
            s = _snap(p0 + np.timedelta64(int(rng.integers(0, span_min)), "m"), p0)
            if kind == "theft":
                dur_min = rng.uniform(*r.theft_days) * 24 * 60
            else:
                dur_min = rng.uniform(*(r.stuck_hours if kind == "stuck_meter" else r.zero_hours)) * 60
            e = _snap(s + np.timedelta64(int(dur_min), "m"), p0) + GRID
            if kind == "stuck_meter":
                kw = round(float(fleet.scale_kw[m] * unit_mean[m] * rng.uniform(0.5, 1.5)), 4)
                v = round(float(rng.normal(231.0, 2.0)), 4)
                pf = round(float(fleet.pf_base[m]), 4)
                add(kind, m, s, e, kw, f"register frozen at {kw} kW ({kw * interval_h:.4f} kWh/interval)", (kw, v, pf))
            elif kind == "theft":
                share = round(rng.uniform(*r.theft_share), 3)
                add(kind, m, s, e, share, "magnitude = share of true consumption not recorded")
            else:
                add(kind, m, s, e, 0.0, "meter reports zero consumption")

    order = np.argsort(np.array(starts, dtype="datetime64[us]"), kind="stable")
    kind_a = np.array(kinds, dtype=object)[order] if kinds else np.array([], dtype=object)
    asset_a = np.array(assets, dtype=int)[order]
    start_a = np.array(starts, dtype="datetime64[us]")[order]
    end_a = np.array(ends, dtype="datetime64[us]")[order]
    mag_a = np.array(mags, dtype=float)[order]
    notes_a = [notes[i] for i in order]
    is_meter = np.isin(kind_a, METER_EVENTS)
    asset_ids = (
        np.where(
            is_meter, fleet.meter_ids[np.where(is_meter, asset_a, 0)], fleet.tx_ids[np.where(is_meter, 0, asset_a)]
        )
        if len(kind_a)
        else np.array([], dtype=str)
    )
    frame = TABLES["truth_events"].conform(
        pl.DataFrame(
            {
                "event_id": [f"E{i:05d}" for i in range(1, len(kind_a) + 1)],
                "event_type": pl.Series(list(kind_a), dtype=pl.Utf8),
                "asset_type": pl.Series(["meter" if x else "transformer" for x in is_meter], dtype=pl.Utf8),
                "asset_id": pl.Series(list(asset_ids), dtype=pl.Utf8),
                "start_time": pl.Series(start_a).dt.replace_time_zone("UTC"),
                "end_time": pl.Series(end_a).dt.replace_time_zone("UTC"),
                "magnitude": pl.Series(mag_a, dtype=pl.Float64).fill_nan(None),
                "note": pl.Series(notes_a, dtype=pl.Utf8),
            }
        )
    )
    return EventPlan(
        kind=kind_a.astype(str) if len(kind_a) else np.array([], dtype=str),
        asset=asset_a,
        start=start_a,
        end=end_a,
        magnitude=mag_a,
        frozen_kw=np.array(frozen["kw"], dtype=float)[order],
        frozen_v=np.array(frozen["v"], dtype=float)[order],
        frozen_pf=np.array(frozen["pf"], dtype=float)[order],
        frame=frame,
    )
