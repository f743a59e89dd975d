"""Advisories from the published schedules, as rows of the recommendations table.

"Charge the battery at 02:00-06:00 during low rates" and "Shift EV charging from 17:00 to 23:00", each
with the money and CO2 the schedule saves against its baseline on the same day, extrapolated to a
month (``DAYS_PER_MONTH`` x the day), and a confidence.

* **battery** (one row per site): the longest-energy contiguous charging block and discharging block
  of ``gold_battery_schedule`` in local time with their mean prices; savings = ``gold_battery_daily``
  savings (no-battery baseline), CO2 = baseline_carbon_kg - carbon_kg.
* **EV** (one row per site): the local hour where uncontrolled charging draws most energy and the hour
  where the optimum does; savings and CO2 = uncontrolled - optimal ``gold_ev_sessions`` cost / carbon_kg.
* **confidence**: how far the schedule rests on a sharp load forecast: 1 - the mean relative half-width
  of the forecast's p10-p90 band, (p90 - p10) / (2 p50), over the day's hours, clipped to [0, 1]
  (:func:`forecast_confidence`); 0.5 when the schedule ran on the weekly fallback (no band: stated,
  not measured).

Pure library code: the recommendations asset reads the tables and writes the rows.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from contracts import ADVISORY_KINDS  # noqa: F401  (the kinds these rows carry)
from optimization.daily import day_periods
from optimization.errors import InputError

DAYS_PER_MONTH = 30.44
FALLBACK_CONFIDENCE = 0.5
#: the recommendations table's columns these rows fill (its ``as_of`` is added by the caller)
COLUMNS = ("customer_id", "meter_id", "segment", "kind", "recommended", "message", "est_monthly_savings", "basis_kwh",
           "est_monthly_co2_kg", "confidence")  # fmt: skip


def forecast_confidence(forecasts: pl.DataFrame | None, entity_id: str, day: dt.date, tz: str) -> float:
    """1 - mean (p90 - p10) / (2 p50) over the local day's hours (newest issue per hour), in [0, 1].

    :data:`FALLBACK_CONFIDENCE` if the forecast rows do not cover every hour of the day.
    """
    if forecasts is None or forecasts.height == 0:
        return FALLBACK_CONFIDENCE
    hours = day_periods(day, tz, 60)
    f = (forecasts.filter((pl.col("entity_id") == entity_id) & pl.col("period_start").is_in(hours.implode()))
         .sort("issued_at").group_by("period_start").last())  # fmt: skip
    if f.height < hours.len():
        return FALLBACK_CONFIDENCE
    width = ((f["p90"] - f["p10"]) / (2.0 * f["p50"].abs().clip(lower_bound=1e-9))).to_numpy()
    return float(np.clip(1.0 - np.mean(width), 0.0, 1.0))


def _blocks(mask: np.ndarray, weight: np.ndarray) -> tuple[int, int] | None:
    """(start, end exclusive) of the contiguous True run with the largest total weight."""
    best, best_w, k = None, 0.0, 0
    while k < mask.size:
        if mask[k]:
            j = k
            while j < mask.size and mask[j]:
                j += 1
            w = float(weight[k:j].sum())
            if w > best_w:
                best, best_w = (k, j), w
            k = j
        else:
            k += 1
    return best


def _hhmm(ts: dt.datetime, tz: str) -> str:
    return pl.Series([ts]).dt.convert_time_zone(tz).dt.strftime("%H:%M")[0]


def battery_advisory(
    schedule: pl.DataFrame, daily: pl.DataFrame, tz: str, confidence: float, min_savings: float = 1.0
) -> pl.DataFrame:
    """One advisory row per site from a day's ``gold_battery_schedule`` and ``gold_battery_daily`` rows."""
    need_s = ("site_id", "period_start", "price_per_mwh", "charge_kw", "discharge_kw")
    need_d = ("site_id", "savings", "carbon_kg", "baseline_carbon_kg")
    for frame, need, name in ((schedule, need_s, "gold_battery_schedule"), (daily, need_d, "gold_battery_daily")):
        missing = [c for c in need if c not in frame.columns]
        if missing:
            raise InputError(f"{name} rows lack column(s) {missing}")
    rows = []
    for site, sch in schedule.sort("period_start").group_by("site_id", maintain_order=True):
        site = site[0]
        d = daily.filter(pl.col("site_id") == site)
        if d.height == 0:
            continue
        d = d.row(0, named=True)
        ts = sch["period_start"].to_list()
        step_h = (ts[1] - ts[0]).total_seconds() / 3600.0 if len(ts) > 1 else 0.25
        ch, dis, price = sch["charge_kw"].to_numpy(), sch["discharge_kw"].to_numpy(), sch["price_per_mwh"].to_numpy()
        c, k = _blocks(ch > 1e-6, ch), _blocks(dis > 1e-6, dis)
        if c is None:
            msg = "Hold the battery today: no charging window pays for its losses"
        else:
            end = ts[c[1] - 1] + dt.timedelta(hours=step_h)
            msg = f"Charge the battery at {_hhmm(ts[c[0]], tz)}-{_hhmm(end, tz)} during low rates (${price[c[0] : c[1]].mean():.0f}/MWh)"
            if k is not None:
                end_k = ts[k[1] - 1] + dt.timedelta(hours=step_h)
                msg += f"; discharge at {_hhmm(ts[k[0]], tz)}-{_hhmm(end_k, tz)} (${price[k[0] : k[1]].mean():.0f}/MWh)"
        savings = DAYS_PER_MONTH * float(d["savings"])
        rows.append({"customer_id": site, "meter_id": site, "segment": "battery_site", "kind": "battery_schedule",
                     "recommended": c is not None and savings >= min_savings, "message": msg, "est_monthly_savings": round(savings, 2),
                     "basis_kwh": round(DAYS_PER_MONTH * float(ch.sum()) * step_h, 2),
                     "est_monthly_co2_kg": round(DAYS_PER_MONTH * float(d["baseline_carbon_kg"] - d["carbon_kg"]), 2),
                     "confidence": round(confidence, 4)})  # fmt: skip
    return pl.DataFrame(rows, schema={c: _DTYPES[c] for c in COLUMNS})


def ev_advisory(
    schedule: pl.DataFrame, sessions: pl.DataFrame, tz: str, confidence: float, site_id: str, min_savings: float = 1.0
) -> pl.DataFrame:
    """One advisory row from a day's ``gold_ev_schedule`` and ``gold_ev_sessions`` (strategies optimal and uncontrolled)."""
    for frame, need, name in ((schedule, ("strategy", "period_start", "power_kw"), "gold_ev_schedule"),
                              (sessions, ("strategy", "cost", "carbon_kg", "delivered_kwh"), "gold_ev_sessions")):  # fmt: skip
        missing = [c for c in need if c not in frame.columns]
        if missing:
            raise InputError(f"{name} rows lack column(s) {missing}")
    got = set(sessions["strategy"].unique().to_list())
    if not {"optimal", "uncontrolled"} <= got:
        return pl.DataFrame(schema={c: _DTYPES[c] for c in COLUMNS})
    by_hour = (schedule.filter(pl.col("power_kw") > 0)
               .with_columns(pl.col("period_start").dt.convert_time_zone(tz).dt.hour().alias("hour"))
               .group_by("strategy", "hour").agg(pl.col("power_kw").sum().alias("kw")))  # fmt: skip
    main = {
        s: by_hour.filter(pl.col("strategy") == s).sort("kw", descending=True)["hour"].head(1).to_list()
        for s in ("optimal", "uncontrolled")
    }
    tot = sessions.group_by("strategy").agg(
        pl.col("cost").sum(), pl.col("carbon_kg").sum(), pl.col("delivered_kwh").sum()
    )
    t = {r["strategy"]: r for r in tot.iter_rows(named=True)}
    savings = DAYS_PER_MONTH * (t["uncontrolled"]["cost"] - t["optimal"]["cost"])
    if main["optimal"] and main["uncontrolled"] and main["optimal"] != main["uncontrolled"]:
        msg = f"Shift EV charging from {main['uncontrolled'][0]:02d}:00 to {main['optimal'][0]:02d}:00"
    elif main["optimal"]:
        msg = f"Keep EV charging around {main['optimal'][0]:02d}:00"
    else:
        msg = "No EV charging today"
    row = {"customer_id": site_id, "meter_id": site_id, "segment": "ev_site", "kind": "ev_charging",
           "recommended": savings >= min_savings and msg.startswith("Shift"), "message": msg, "est_monthly_savings": round(savings, 2),
           "basis_kwh": round(DAYS_PER_MONTH * t["optimal"]["delivered_kwh"], 2),
           "est_monthly_co2_kg": round(DAYS_PER_MONTH * (t["uncontrolled"]["carbon_kg"] - t["optimal"]["carbon_kg"]), 2),
           "confidence": round(confidence, 4)}  # fmt: skip
    return pl.DataFrame([row], schema={c: _DTYPES[c] for c in COLUMNS})


_DTYPES = {"customer_id": pl.Utf8, "meter_id": pl.Utf8, "segment": pl.Utf8, "kind": pl.Utf8, "recommended": pl.Boolean, "message": pl.Utf8,
           "est_monthly_savings": pl.Float64, "basis_kwh": pl.Float64, "est_monthly_co2_kg": pl.Float64, "confidence": pl.Float64}  # fmt: skip
