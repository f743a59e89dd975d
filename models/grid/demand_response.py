"""Demand-response events: when the forecast peak exceeds the grid capacity, call an event for the
window of exceedance, pick opted-in customers by segment until the target reduction is covered, and
pay each ``base_incentive x segment multiplier``.

Expected reduction per participant = the customer's mean demand in the peak window x the share its
segment typically sheds (``reduction_share``). Participants are ranked by expected reduction
(largest first, customer id to break ties) so the fewest customers are disturbed; the event is
``short`` when all eligible customers together cannot cover the target.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import polars as pl

from .features import FeatureInputError, require_columns
from .recommend import _default_multipliers


def _default_reduction() -> dict[str, float]:
    return {"ev_charging": 0.5, "seasonal_heavy_hvac": 0.35, "solar_battery": 0.3, "business_hours_commercial": 0.2,
            "evening_residential_peak": 0.2, "early_morning_industrial": 0.15, "retired_all_day": 0.15,
            "weekend_shift": 0.15, "night_owl": 0.1, "high_all_day": 0.1}


@dataclass(frozen=True)
class DRConfig:
    capacity_kw: float
    scope: str = "system"
    #: extra reduction asked for on top of the exceedance (forecast error)
    margin: float = 0.1
    base_incentive: float = 5.0
    multiplier: dict[str, float] = field(default_factory=_default_multipliers)
    reduction_share: dict[str, float] = field(default_factory=_default_reduction)
    timezone: str = "America/New_York"

    def __post_init__(self) -> None:
        if not (isinstance(self.capacity_kw, (int, float)) and self.capacity_kw > 0 and np.isfinite(self.capacity_kw)):
            raise ValueError(f"DRConfig.capacity_kw must be a finite number > 0, got {self.capacity_kw!r}")
        if not 0 <= self.margin <= 1:
            raise ValueError(f"DRConfig.margin must be in [0, 1], got {self.margin!r}")


def event_id(scope: str, start: datetime) -> str:
    return hashlib.sha1(f"{scope}|{start.isoformat()}".encode()).hexdigest()[:16]


def plan_events(forecast: pl.DataFrame, customers: pl.DataFrame, cfg: DRConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(dr_events, dr_participations) for ``forecast`` (time UTC, forecast_kw; one row per step).

    ``customers``: meter_id, customer_id, segment, dr_opt_in, peak_kw (mean demand in the peak window).
    """
    require_columns(forecast, ("time", "forecast_kw"), "forecast")
    require_columns(customers, ("meter_id", "customer_id", "segment", "dr_opt_in", "peak_kw"), "customers")
    f = forecast.select("time", pl.col("forecast_kw").cast(pl.Float64)).sort("time")
    if f["forecast_kw"].null_count() or f["forecast_kw"].is_nan().any():
        bad = f.filter(pl.col("forecast_kw").is_null() | pl.col("forecast_kw").is_nan())["time"].to_list()[:3]
        raise FeatureInputError(f"forecast: forecast_kw missing at {bad}; fill or drop those steps first")
    step = f["time"].diff().median() if f.height > 1 else None
    over = (f["forecast_kw"] > cfg.capacity_kw).to_numpy()
    run = np.cumsum(np.r_[True, over[1:] != over[:-1]]) if len(over) else np.array([], dtype=int)
    f = f.with_columns(pl.Series("_over", over), pl.Series("_run", run))
    win = (
        f.filter(pl.col("_over")).group_by("_run")
        .agg(pl.col("time").min().alias("start_time"), pl.col("time").max().alias("_last"),
             pl.col("forecast_kw").max().alias("forecast_peak_kw"))
        .sort("start_time")
        .with_columns((pl.col("_last") + (step or pl.duration(hours=1))).alias("end_time"))
    )
    el = customers.filter(pl.col("dr_opt_in") & pl.col("segment").is_in(list(cfg.multiplier))).with_columns(
        (pl.col("peak_kw").clip(lower_bound=0.0) * pl.col("segment").replace_strict(
            cfg.reduction_share, default=0.0, return_dtype=pl.Float64)).alias("expected_reduction_kw"),
        (cfg.base_incentive * pl.col("segment").replace_strict(cfg.multiplier, return_dtype=pl.Float64)).alias("incentive"),
    ).filter(pl.col("expected_reduction_kw") > 0).sort(["expected_reduction_kw", "customer_id"], descending=[True, False])
    events, parts = [], []
    for w in win.iter_rows(named=True):
        target = (w["forecast_peak_kw"] - cfg.capacity_kw) * (1 + cfg.margin)
        cum = el["expected_reduction_kw"].cum_sum().to_numpy()
        n = int(np.searchsorted(cum, target) + 1) if len(cum) else 0
        chosen = el.head(min(n, el.height))
        eid = event_id(cfg.scope, w["start_time"])
        day = w["start_time"].astimezone(__import__("zoneinfo").ZoneInfo(cfg.timezone)).date()
        got = float(chosen["expected_reduction_kw"].sum())
        events.append({
            "date": day, "event_id": eid, "scope": cfg.scope, "start_time": w["start_time"], "end_time": w["end_time"],
            "forecast_peak_kw": w["forecast_peak_kw"], "capacity_kw": float(cfg.capacity_kw),
            "target_reduction_kw": target, "expected_reduction_kw": got, "n_participants": chosen.height,
            "total_incentive": float(chosen["incentive"].sum()), "status": "covered" if got >= target else "short",
        })
        parts.append(chosen.select(
            pl.lit(day).alias("date"), pl.lit(eid).alias("event_id"), "customer_id", "meter_id", "segment",
            "expected_reduction_kw", "incentive",
        ))
    from .tables import GOLD_DR_EVENTS, GOLD_DR_PARTICIPATIONS

    ev = GOLD_DR_EVENTS.conform(pl.DataFrame(events, schema=GOLD_DR_EVENTS.polars_schema())) if events else \
        pl.DataFrame(schema=GOLD_DR_EVENTS.polars_schema())
    pa = GOLD_DR_PARTICIPATIONS.conform(pl.concat(parts)) if parts else pl.DataFrame(schema=GOLD_DR_PARTICIPATIONS.polars_schema())
    return ev, pa


def customer_peak_kw(readings: pl.DataFrame, peak_hours: tuple[int, int] = (16, 21), tz: str = "America/New_York") -> pl.DataFrame:
    """meter_id, peak_kw: mean demand inside the local peak window (input to :func:`plan_events`)."""
    require_columns(readings, ("meter_id", "reading_time", "demand_kw"), "meter readings")
    h = pl.col("reading_time").dt.convert_time_zone(tz).dt.hour()
    return readings.filter(h.is_between(peak_hours[0], peak_hours[1] - 1)).group_by("meter_id").agg(
        pl.col("demand_kw").cast(pl.Float64).fill_nan(None).mean().fill_null(0.0).alias("peak_kw"))
