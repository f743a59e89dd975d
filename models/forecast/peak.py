"""Expected daily peak demand against capacity: the ``gold_peak_demand`` computation.

Capacity per feeder defaults to the sum of its transformers' nameplate ratings (kVA) times a
power factor; the system's is the sum over feeders. Summed nameplate ratings ignore diversity,
so the reserve margin is an optimistic upper bound.
"""

from __future__ import annotations

import datetime as dt
import math

import polars as pl

from contracts import day_bounds_utc
from models.forecast.tables import SYSTEM


def feeder_capacity_kw(
    transformers: pl.DataFrame, power_factor: float, overrides: dict[str, float]
) -> dict[str, float]:
    """Capacity (kW) per feeder and for ``SYSTEM``.

    Per feeder: the sum of ``rating_kva`` in ``transformers`` (columns feeder_id, rating_kva)
    times ``power_factor``; the system: the sum over feeders. ``overrides`` (entity_id -> kW)
    replace or add entries afterwards (overriding a feeder does not change the system total).
    Raises ValueError for a power factor outside (0, 1] or a non-positive / non-finite override.
    """
    if not 0 < power_factor <= 1:
        raise ValueError(f"PeakDemandConfig.power_factor must be in (0, 1], got {power_factor}")
    bad = {k: v for k, v in overrides.items() if not (v > 0 and math.isfinite(v))}
    if bad:
        raise ValueError(f"PeakDemandConfig.capacity_kw: capacities must be positive finite kW, got {bad}")
    caps = {
        f: float(v) * power_factor
        for f, v in transformers.group_by("feeder_id").agg(pl.col("rating_kva").sum()).iter_rows()
    }
    caps[SYSTEM] = float(sum(caps.values()))
    return {**caps, **overrides}


def peak_demand(
    forecast: pl.DataFrame, observed: pl.DataFrame, capacity: dict[str, float], day: dt.date, tz: str
) -> pl.DataFrame:
    """Expected peak of local day ``day`` (in ``tz``) per entity, with the reserve margins.

    ``forecast``: ``gold_load_forecast`` rows (any issues); per entity only the latest issue
    covering the day is used, its p50/p90 over the hours it covers. ``observed``: hourly load
    (entity_id, period_start, mean_kw); the day's hours up to that issue count as certain
    (p10 = p50 = p90 = observed). The peak is the hour of the highest p50 (the earliest on a
    tie); ``reserve_margin_pct`` = (capacity - p50 peak) / capacity x 100, ``_p90_pct`` the same
    for the p90 at that hour. Raises ValueError when no forecast covers the day or an entity
    has no capacity.
    """
    lo, hi = day_bounds_utc(day, tz)
    fc = forecast.filter(pl.col("period_start") >= lo, pl.col("period_start") < hi)
    if fc.height == 0:
        raise ValueError(
            f"gold_load_forecast has no forecast covering local day {day}: materialise gold_load_forecast for {day - dt.timedelta(days=1)} or {day}"
        )
    latest = fc.group_by("entity_id").agg(pl.col("issued_at").max().alias("_latest"))
    fc = fc.join(latest, on="entity_id").filter(pl.col("issued_at") == pl.col("_latest"))
    obs = observed.filter(pl.col("period_start") >= lo, pl.col("period_start") < hi).join(latest, on="entity_id")
    obs = obs.filter(pl.col("period_start") <= pl.col("_latest")).select(
        "entity_id", "period_start", pl.col("mean_kw").alias("p50"), pl.col("mean_kw").alias("p90")
    )
    both = pl.concat([fc.select("entity_id", "period_start", "p50", "p90"), obs])
    missing = sorted(set(both["entity_id"]) - set(capacity))
    if missing:
        raise ValueError(f"no capacity for {missing}: add them to PeakDemandConfig.capacity_kw or ref_transformers")
    peak = (
        both.sort("entity_id", "p50", "period_start", descending=[False, True, False])
        .group_by("entity_id", maintain_order=True)
        .first()
    )
    cap = pl.col("entity_id").replace_strict(capacity, return_dtype=pl.Float64)
    return peak.select(
        pl.lit(day).alias("date"),
        "entity_id",
        pl.col("p50").alias("expected_peak_kw"),
        pl.col("p90").alias("peak_p90_kw"),
        pl.col("period_start").alias("peak_time"),
        cap.alias("capacity_kw"),
        ((cap - pl.col("p50")) / cap * 100).alias("reserve_margin_pct"),
        ((cap - pl.col("p90")) / cap * 100).alias("reserve_margin_p90_pct"),
    ).sort("entity_id")
