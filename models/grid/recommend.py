"""Per-customer recommendations with estimated monthly savings. The formulas, all per month
(``DAYS_PER_MONTH`` = 30.44 days):

- peak energy ``E_peak = peak_kwh_per_day x 30.44``, total ``E = avg_daily_kwh x 30.44``;
- **time shift**: ``savings = s(segment) x E_peak x (p_peak - p_offpeak)`` where ``s`` is the share
  of peak energy the segment can move (timers, EV charging schedules; the profile's DR programme);
  recommended when savings exceed ``min_savings``;
- **tariff**: ``flat = E x p_flat``; ``tou = E_peak x p_peak + (E - E_peak) x p_offpeak``;
  ``savings = flat - tou`` (the customer's current shape, no behaviour change); recommend the
  time-of-use tariff when it is positive and above ``min_savings``;
- **demand-response enrolment** (customers not yet opted in, segments with a multiplier):
  ``savings = events_per_month x base_incentive x multiplier(segment)``.
"""

from __future__ import annotations

import polars as pl

from contracts.profile import DemandResponse, Tariffs

from .features import require_columns

DAYS_PER_MONTH = 30.44


def recommend(
    segments: pl.DataFrame, ref_meters: pl.DataFrame | None, tariffs: Tariffs, dr: DemandResponse
) -> pl.DataFrame:
    """Three rows per customer (time_shift, tariff, dr_enrolment) with ``recommended`` and savings.

    ``tariffs``: the utility profile's (retail prices, per segment where it has them; the peak window); ``dr``: its demand-response
    programme (shiftable shares and DR multipliers by segment name, events per month, incentive).

    ``segments``: :meth:`SegmentModel.predict` output. ``ref_meters`` supplies ``dr_opt_in`` (already
    enrolled customers get no enrolment recommendation). Provisional segments are skipped: a week of
    history is the least a savings promise should rest on.
    """
    require_columns(
        segments, ("meter_id", "customer_id", "segment", "avg_daily_kwh", "peak_kwh_per_day", "provisional"), "segments"
    )
    s = segments.filter(~pl.col("provisional"))
    if ref_meters is not None and "dr_opt_in" in ref_meters.columns:
        s = s.join(ref_meters.select("meter_id", "dr_opt_in"), on="meter_id", how="left")
    else:
        s = s.with_columns(pl.lit(False).alias("dr_opt_in"))
    s = s.with_columns(
        pl.col("customer_id").fill_null(pl.col("meter_id")),
        (pl.col("peak_kwh_per_day") * DAYS_PER_MONTH).alias("e_peak"),
        (pl.col("avg_daily_kwh") * DAYS_PER_MONTH).alias("e_all"),
        pl.col("segment")
        .replace_strict(dr.shiftable_share, default=dr.default_shiftable_share, return_dtype=pl.Float64)
        .alias("share"),
        pl.col("segment").replace_strict(dr.multiplier, default=None, return_dtype=pl.Float64).alias("mult"),
    )
    h0, h1 = tariffs.peak_window.bounds
    s = s.with_columns(  # each customer's retail rates: their segment's tariff, else the default one
        pl.col("segment")
        .replace_strict(tariffs.retail_rate(n), default=getattr(tariffs.retail, n), return_dtype=pl.Float64)
        .alias(n)
        for n in ("flat_per_kwh", "peak_per_kwh", "offpeak_per_kwh")
    )
    dp = pl.col("peak_per_kwh") - pl.col("offpeak_per_kwh")
    shift = s.select(
        "customer_id",
        "meter_id",
        "segment",
        pl.lit("time_shift").alias("kind"),
        (pl.col("share") * pl.col("e_peak") * dp).alias("est_monthly_savings"),
        (pl.col("share") * pl.col("e_peak")).alias("basis_kwh"),
    ).with_columns(
        pl.format(f"Move {{}} kWh/month from {h0}-{h1}h to off-peak hours", pl.col("basis_kwh").round(0)).alias(
            "message"
        )
    )
    tou = pl.col("e_peak") * pl.col("peak_per_kwh") + (pl.col("e_all") - pl.col("e_peak")) * pl.col("offpeak_per_kwh")
    tariff = s.select(
        "customer_id",
        "meter_id",
        "segment",
        pl.lit("tariff").alias("kind"),
        (pl.col("e_all") * pl.col("flat_per_kwh") - tou).alias("est_monthly_savings"),
        pl.col("e_all").alias("basis_kwh"),
    ).with_columns(
        pl.when(pl.col("est_monthly_savings") > 0)
        .then(pl.lit("Switch to the time-of-use tariff"))
        .otherwise(pl.lit("Stay on the flat tariff"))
        .alias("message")
    )
    enrol = s.select(
        "customer_id",
        "meter_id",
        "segment",
        pl.lit("dr_enrolment").alias("kind"),
        (
            pl.when(~pl.col("dr_opt_in"))
            .then(dr.events_per_month * dr.base_incentive * pl.col("mult"))
            .otherwise(0.0)
            .fill_null(0.0)
        ).alias("est_monthly_savings"),
        pl.col("e_peak").alias("basis_kwh"),
    ).with_columns(
        pl.when(pl.col("est_monthly_savings") > 0)
        .then(pl.lit("Enrol in demand-response events"))
        .otherwise(pl.lit("Not eligible or already enrolled"))
        .alias("message")
    )
    out = pl.concat([shift, tariff, enrol], how="diagonal").with_columns(
        (pl.col("est_monthly_savings") >= dr.min_savings).alias("recommended"),
        pl.col("est_monthly_savings").round(2),
        pl.col("basis_kwh").round(2),
    )
    return out.sort("customer_id", "kind")
