"""Per-customer recommendations with estimated monthly savings. The formulas, all per month
(``DAYS_PER_MONTH`` = 30.44 days):

- peak energy ``E_peak = peak_kwh_per_day x 30.44``, total ``E = avg_daily_kwh x 30.44``;
- **time shift**: ``savings = s(segment) x E_peak x (p_peak - p_offpeak)`` where ``s`` is the share
  of peak energy the segment can move (timers, EV charging schedules; :class:`TariffConfig`);
  recommended when savings exceed ``min_savings``;
- **tariff**: ``flat = E x p_flat``; ``tou = E_peak x p_peak + (E - E_peak) x p_offpeak``;
  ``savings = flat - tou`` (the customer's current shape, no behaviour change); recommend the
  time-of-use tariff when it is positive and above ``min_savings``;
- **demand-response enrolment** (customers not yet opted in, segments with a multiplier):
  ``savings = events_per_month x base_incentive x multiplier(segment)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from .features import require_columns

DAYS_PER_MONTH = 30.44


def _default_shiftable() -> dict[str, float]:
    return {"ev_charging": 0.6, "solar_battery": 0.3, "seasonal_heavy_hvac": 0.25, "evening_residential_peak": 0.2,
            "retired_all_day": 0.15, "weekend_shift": 0.15, "night_owl": 0.1, "low_use": 0.1,
            "efficiency_optimiser": 0.05, "business_hours_commercial": 0.1, "early_morning_industrial": 0.1,
            "high_all_day": 0.05}


def _default_multipliers() -> dict[str, float]:
    return {"ev_charging": 1.5, "seasonal_heavy_hvac": 1.4, "solar_battery": 1.3, "evening_residential_peak": 1.2,
            "business_hours_commercial": 1.2, "early_morning_industrial": 1.0, "retired_all_day": 1.0,
            "weekend_shift": 1.0, "night_owl": 0.8, "high_all_day": 0.8}


@dataclass(frozen=True)
class TariffConfig:
    flat_price: float = 0.16  # per kWh
    peak_price: float = 0.32
    offpeak_price: float = 0.11
    shiftable_share: dict[str, float] = field(default_factory=_default_shiftable)
    default_shiftable_share: float = 0.1
    dr_events_per_month: float = 2.0
    dr_base_incentive: float = 5.0  # per event
    #: segments eligible for demand response and their incentive multiplier
    dr_multiplier: dict[str, float] = field(default_factory=_default_multipliers)
    min_savings: float = 1.0

    def __post_init__(self) -> None:
        for n in ("flat_price", "peak_price", "offpeak_price", "dr_events_per_month", "dr_base_incentive", "min_savings"):
            v = getattr(self, n)
            if not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"TariffConfig.{n} must be a number >= 0, got {v!r}")
        if self.peak_price < self.offpeak_price:
            raise ValueError(f"TariffConfig: peak_price {self.peak_price} < offpeak_price {self.offpeak_price}")
        bad = {k: v for k, v in self.shiftable_share.items() if not 0 <= v <= 1}
        if bad:
            raise ValueError(f"TariffConfig.shiftable_share values must be in [0, 1], got {bad}")


def recommend(segments: pl.DataFrame, ref_meters: pl.DataFrame | None = None,
              cfg: TariffConfig = TariffConfig()) -> pl.DataFrame:
    """Three rows per customer (time_shift, tariff, dr_enrolment) with ``recommended`` and savings.

    ``segments``: :meth:`SegmentModel.predict` output. ``ref_meters`` supplies ``dr_opt_in`` (already
    enrolled customers get no enrolment recommendation). Provisional segments are skipped: a week of
    history is the least a savings promise should rest on.
    """
    require_columns(segments, ("meter_id", "customer_id", "segment", "avg_daily_kwh", "peak_kwh_per_day", "provisional"),
                    "segments")
    s = segments.filter(~pl.col("provisional"))
    if ref_meters is not None and "dr_opt_in" in ref_meters.columns:
        s = s.join(ref_meters.select("meter_id", "dr_opt_in"), on="meter_id", how="left")
    else:
        s = s.with_columns(pl.lit(False).alias("dr_opt_in"))
    s = s.with_columns(
        pl.col("customer_id").fill_null(pl.col("meter_id")),
        (pl.col("peak_kwh_per_day") * DAYS_PER_MONTH).alias("e_peak"),
        (pl.col("avg_daily_kwh") * DAYS_PER_MONTH).alias("e_all"),
        pl.col("segment").replace_strict(cfg.shiftable_share, default=cfg.default_shiftable_share,
                                         return_dtype=pl.Float64).alias("share"),
        pl.col("segment").replace_strict(cfg.dr_multiplier, default=None, return_dtype=pl.Float64).alias("mult"),
    )
    dp = cfg.peak_price - cfg.offpeak_price
    shift = s.select(
        "customer_id", "meter_id", "segment", pl.lit("time_shift").alias("kind"),
        (pl.col("share") * pl.col("e_peak") * dp).alias("est_monthly_savings"),
        (pl.col("share") * pl.col("e_peak")).alias("basis_kwh"),
    ).with_columns(
        pl.format("Move {} kWh/month from 16-21h to off-peak hours", pl.col("basis_kwh").round(0)).alias("message")
    )
    tou = pl.col("e_peak") * cfg.peak_price + (pl.col("e_all") - pl.col("e_peak")) * cfg.offpeak_price
    tariff = s.select(
        "customer_id", "meter_id", "segment", pl.lit("tariff").alias("kind"),
        (pl.col("e_all") * cfg.flat_price - tou).alias("est_monthly_savings"),
        pl.col("e_all").alias("basis_kwh"),
    ).with_columns(
        pl.when(pl.col("est_monthly_savings") > 0).then(pl.lit("Switch to the time-of-use tariff"))
        .otherwise(pl.lit("Stay on the flat tariff")).alias("message")
    )
    dr = s.select(
        "customer_id", "meter_id", "segment", pl.lit("dr_enrolment").alias("kind"),
        (pl.when(~pl.col("dr_opt_in")).then(cfg.dr_events_per_month * cfg.dr_base_incentive * pl.col("mult"))
         .otherwise(0.0).fill_null(0.0)).alias("est_monthly_savings"),
        pl.col("e_peak").alias("basis_kwh"),
    ).with_columns(
        pl.when(pl.col("est_monthly_savings") > 0).then(pl.lit("Enrol in demand-response events"))
        .otherwise(pl.lit("Not eligible or already enrolled")).alias("message")
    )
    out = pl.concat([shift, tariff, dr], how="diagonal").with_columns(
        (pl.col("est_monthly_savings") >= cfg.min_savings).alias("recommended"),
        pl.col("est_monthly_savings").round(2),
        pl.col("basis_kwh").round(2),
    )
    return out.sort("customer_id", "kind")
