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
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import polars as pl

from contracts.profile import DemandResponse

from .features import FeatureInputError, local_date, require_columns


@dataclass(frozen=True)
class DRConfig:
    """One event plan: the capacity of ``scope`` (system or a feeder id), the utility's zone (an event's
    local ``date``) and its demand-response programme (margin, incentive, per-segment shares/multipliers)."""

    capacity_kw: float
    timezone: str
    programme: DemandResponse
    scope: str = "system"

    def __post_init__(self) -> None:
        if not (isinstance(self.capacity_kw, (int, float)) and self.capacity_kw > 0 and np.isfinite(self.capacity_kw)):
            raise ValueError(f"DRConfig.capacity_kw must be a finite number > 0, got {self.capacity_kw!r}")


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
        f.filter(pl.col("_over"))
        .group_by("_run")
        .agg(
            pl.col("time").min().alias("start_time"),
            pl.col("time").max().alias("_last"),
            pl.col("forecast_kw").max().alias("forecast_peak_kw"),
        )
        .sort("start_time")
        .with_columns((pl.col("_last") + (step or pl.duration(hours=1))).alias("end_time"))
    )
    prog = cfg.programme
    el = (
        customers.filter(pl.col("dr_opt_in") & pl.col("segment").is_in(list(prog.multiplier)))
        .with_columns(
            (
                pl.col("peak_kw").clip(lower_bound=0.0)
                * pl.col("segment").replace_strict(prog.reduction_share, default=0.0, return_dtype=pl.Float64)
            ).alias("expected_reduction_kw"),
            (prog.base_incentive * pl.col("segment").replace_strict(prog.multiplier, return_dtype=pl.Float64)).alias(
                "incentive"
            ),
        )
        .filter(pl.col("expected_reduction_kw") > 0)
        .sort(["expected_reduction_kw", "customer_id"], descending=[True, False])
    )
    events, parts = [], []
    for w in win.iter_rows(named=True):
        target = (w["forecast_peak_kw"] - cfg.capacity_kw) * (1 + prog.margin)
        cum = el["expected_reduction_kw"].cum_sum().to_numpy()
        n = int(np.searchsorted(cum, target) + 1) if len(cum) else 0
        chosen = el.head(min(n, el.height))
        eid = event_id(cfg.scope, w["start_time"])
        day = w["start_time"].astimezone(__import__("zoneinfo").ZoneInfo(cfg.timezone)).date()
        got = float(chosen["expected_reduction_kw"].sum())
        events.append(
            {
                "date": day,
                "event_id": eid,
                "scope": cfg.scope,
                "start_time": w["start_time"],
                "end_time": w["end_time"],
                "forecast_peak_kw": w["forecast_peak_kw"],
                "capacity_kw": float(cfg.capacity_kw),
                "target_reduction_kw": target,
                "expected_reduction_kw": got,
                "n_participants": chosen.height,
                "total_incentive": float(chosen["incentive"].sum()),
                "status": "covered" if got >= target else "short",
            }
        )
        parts.append(
            chosen.select(
                pl.lit(day).alias("date"),
                pl.lit(eid).alias("event_id"),
                "customer_id",
                "meter_id",
                "segment",
                "expected_reduction_kw",
                "incentive",
            )
        )
    from contracts import GOLD_DR_EVENTS, GOLD_DR_PARTICIPATIONS

    ev = (
        GOLD_DR_EVENTS.conform(pl.DataFrame(events, schema=GOLD_DR_EVENTS.polars_schema()))
        if events
        else pl.DataFrame(schema=GOLD_DR_EVENTS.polars_schema())
    )
    pa = (
        GOLD_DR_PARTICIPATIONS.conform(pl.concat(parts))
        if parts
        else pl.DataFrame(schema=GOLD_DR_PARTICIPATIONS.polars_schema())
    )
    return ev, pa


def customer_peak_kw(readings: pl.DataFrame, peak_hours: tuple[int, int], tz: str) -> pl.DataFrame:
    """meter_id, peak_kw: mean demand inside the local peak window ``[start, end)`` hours (the profile's
    ``tariffs.peak_window.bounds``; input to :func:`plan_events`)."""
    require_columns(readings, ("meter_id", "reading_time", "demand_kw"), "meter readings")
    h = pl.col("reading_time").dt.convert_time_zone(tz).dt.hour()
    return (
        readings.filter(h.is_between(peak_hours[0], peak_hours[1] - 1))
        .group_by("meter_id")
        .agg(pl.col("demand_kw").cast(pl.Float64).fill_nan(None).mean().fill_null(0.0).alias("peak_kw"))
    )


#: quantiles of ``gold_load_forecast`` a DR plan can be made against
FORECAST_QUANTILES = ("p10", "p50", "p90")


def latest_feeder_forecast(
    forecasts: pl.DataFrame, day: date, tz: str, quantile: str = "p50"
) -> tuple[pl.DataFrame, str]:
    """Feeder forecast for the local ``day`` from ``gold_load_forecast`` rows: (time, entity_id, forecast_kw).

    For each feeder and period of the day the newest issue wins (pass the issues of the days before
    too: forecasts reach up to 72 h ahead); ``quantile`` is the column planned against. Also returns
    where it came from ("issued up to ..., models [...]"). No feeder rows for the day: an empty frame.
    """
    if quantile not in FORECAST_QUANTILES:
        raise ValueError(f"forecast_quantile must be p10, p50 or p90, got {quantile!r}")
    f = (
        forecasts.filter((pl.col("level") == "feeder") & (local_date("period_start", tz) == day))
        .sort("issued_at")
        .group_by("entity_id", "period_start")
        .last()
    )
    out = f.select(pl.col("period_start").alias("time"), "entity_id", pl.col(quantile).alias("forecast_kw")).sort(
        "entity_id", "time"
    )
    models = sorted(set(f["model_version"].to_list()))
    return out, f"issued up to {f['issued_at'].max()}, models {models}"


def shifted_feeder_load(hourly: pl.DataFrame, days_back: int, day: date, tz: str) -> pl.DataFrame:
    """Naive feeder forecast for the local ``day``: the feeder ``mean_kw`` of ``gold_load_hourly`` rows
    from ``days_back`` days earlier, moved forward by that many local days (same local hour across a
    DST change): (time, entity_id, forecast_kw). 7 days back is the seasonal-naive forecast, 1 day
    back persistence."""
    return (
        hourly.filter(pl.col("level") == "feeder")
        .select(
            pl.col("period_start")
            .dt.convert_time_zone(tz)
            .dt.offset_by(f"{days_back}d")
            .dt.convert_time_zone("UTC")
            .alias("time"),
            "entity_id",
            pl.col("mean_kw").alias("forecast_kw"),
        )
        .filter(local_date("time", tz) == day)
    )


def dr_customers(segments: pl.DataFrame, ref_meters: pl.DataFrame, peak: pl.DataFrame) -> pl.DataFrame:
    """The ``customers`` input of :func:`plan_events`, with each meter's ``feeder_id``.

    ``segments``: gold_customer_segments (meter_id, customer_id, segment); ``peak``:
    :func:`customer_peak_kw`. A customer id missing from the segments comes from ``ref_meters``; a
    meter without readings in the peak window has peak_kw 0; an unknown opt-in counts as not opted in.
    """
    return (
        segments.select("meter_id", "customer_id", "segment")
        .join(
            ref_meters.select("meter_id", "feeder_id", "dr_opt_in", pl.col("customer_id").alias("_cid")),
            on="meter_id",
            how="left",
        )
        .join(peak, on="meter_id", how="left")
        .with_columns(
            pl.col("customer_id").fill_null(pl.col("_cid")),
            pl.col("peak_kw").fill_null(0.0),
            pl.col("dr_opt_in").fill_null(False),
        )
    )


def feeder_capacity_kw(
    ref_transformers: pl.DataFrame, explicit: dict[str, float] | None = None, share: float = 0.8
) -> dict[str, float]:
    """DR capacity (kW) per feeder of ``ref_transformers``: ``explicit[feeder]`` where given, else
    ``share`` x the summed transformer ratings (kVA ~ kW at unity power factor)."""
    explicit = explicit or {}
    rating = ref_transformers.group_by("feeder_id").agg(pl.col("rating_kva").sum())
    return {f: float(explicit.get(f, share * kva)) for f, kva in rating.iter_rows()}


def plan_feeder_events(
    forecast: pl.DataFrame,
    customers: pl.DataFrame,
    capacity_kw: dict[str, float],
    programme: DemandResponse,
    timezone: str,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """:func:`plan_events` per feeder: ``forecast`` (time, entity_id = feeder, forecast_kw) against
    ``capacity_kw[feeder]`` with that feeder's ``customers`` (which carry ``feeder_id``); the event
    scope is the feeder id. Returns (dr_events, dr_participations) of all feeders (empty frames with
    the table schemas when there is no forecast). A forecast feeder without a capacity is an error.
    """
    from contracts import GOLD_DR_EVENTS, GOLD_DR_PARTICIPATIONS

    events, parts = [], []
    for (fid,), g in forecast.group_by("entity_id", maintain_order=True):
        if fid not in capacity_kw:
            raise ValueError(
                f"forecast feeder {fid!r} has no transformers in ref_transformers and no feeder_capacity_kw entry"
            )
        cfg = DRConfig(capacity_kw=capacity_kw[fid], timezone=timezone, programme=programme, scope=fid)
        ev, pa = plan_events(g.select("time", "forecast_kw"), customers.filter(pl.col("feeder_id") == fid), cfg)
        events.append(ev)
        parts.append(pa)
    ev = pl.concat(events) if events else pl.DataFrame(schema=GOLD_DR_EVENTS.polars_schema())
    pa = pl.concat(parts) if parts else pl.DataFrame(schema=GOLD_DR_PARTICIPATIONS.polars_schema())
    return ev, pa
