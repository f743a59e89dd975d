"""Forecast gold tables (written by the forecasting assets from models.forecast / models.solar)."""

from __future__ import annotations

import polars as pl

from contracts.tables import UTC_TS, Column, Table

#: entity_id of the whole network (level ``system``) in the forecast tables: the forecasting assets
#: write it, the optimisation assets read it
SYSTEM_ENTITY = "system"

_FORECAST_COLUMNS = (
    Column("date", pl.Date, False, "utility-local day the forecast was issued for (partition)"),
    Column("level", pl.Utf8, False, "what is forecast: system | substation | feeder | site"),
    Column("entity_id", pl.Utf8, False, f"feeder/substation/site id, or '{SYSTEM_ENTITY}'"),
    Column("issued_at", UTC_TS, False, "forecast origin: the last observation used, UTC"),
    Column("period_start", UTC_TS, False, "start of the forecast interval, UTC"),
    Column("horizon_h", pl.Float64, False, "hours ahead of issued_at", 0.0),
    Column("p10", pl.Float64, False, "10 % quantile (kW)"),
    Column("p50", pl.Float64, False, "median (kW)"),
    Column("p90", pl.Float64, False, "90 % quantile (kW); [p10, p90] is the calibrated 80 % interval"),
    Column("model", pl.Utf8, False, "forecaster that produced the row"),
    Column("model_version", pl.Utf8, False, "registered model version (or 'fallback')"),
    Column("fallback_reason", pl.Utf8, True, "why a baseline was used instead of the champion, if it was"),
    Column("p05", pl.Float64, True, "5 % quantile (kW), calibrated 90 % interval [p05, p95]; null if uncalibrated"),
    Column("p95", pl.Float64, True, "95 % quantile (kW); null when the model has no calibrated 90 % band"),
)
GOLD_LOAD_FORECAST = Table(
    "gold_load_forecast",
    "gold",
    _FORECAST_COLUMNS,
    "probabilistic load forecasts (24-72 h, p10/p50/p90) per feeder/substation/system",
    partition_by=("date",),
    key=("level", "entity_id", "issued_at", "period_start"),
)
GOLD_SOLAR_FORECAST = Table(
    "gold_solar_forecast",
    "gold",
    _FORECAST_COLUMNS,
    "probabilistic PV output forecasts (1-72 h, p10/p50/p90) per site and aggregated to feeder/substation",
    partition_by=("date",),
    key=("level", "entity_id", "issued_at", "period_start"),
)
GOLD_PEAK_DEMAND = Table(
    "gold_peak_demand",
    "gold",
    (
        Column("date", pl.Date, False, "the local day analysed"),
        Column("entity_id", pl.Utf8, False, "feeder/substation id or 'system'"),
        Column("expected_peak_kw", pl.Float64, False, "p50 forecast peak of the day"),
        Column("peak_p90_kw", pl.Float64, False, "p90 at the peak hour"),
        Column("peak_time", UTC_TS, False, "start of the interval of the expected peak, UTC"),
        Column("capacity_kw", pl.Float64, False, "configured capacity"),
        Column("reserve_margin_pct", pl.Float64, False, "(capacity - expected peak) / capacity x 100"),
        Column("reserve_margin_p90_pct", pl.Float64, False, "the same against the p90 peak"),
    ),
    "expected daily peak, its time and the reserve margin against capacity",
    partition_by=("date",),
    key=("entity_id",),
)
GOLD_FORECAST_ACCURACY = Table(
    "gold_forecast_accuracy",
    "gold",
    (
        Column("date", pl.Date, False, "the local day the scoring ran for (partition)"),
        Column("period", pl.Utf8, False, "roll-up: day | week", allowed=("day", "week")),
        Column("period_date", pl.Date, False, "the local day, or the Monday of the ISO week"),
        Column("level", pl.Utf8, False, "system | substation | feeder"),
        Column("entity_id", pl.Utf8, False, f"feeder/substation id, or '{SYSTEM_ENTITY}'"),
        Column("model", pl.Utf8, False, "forecaster that issued the forecasts"),
        Column("lead_band", pl.Utf8, False, "hours ahead of issue: 0-6h | 6-24h | 24-48h | 48-72h"),
        Column("n", pl.Int64, False, "forecast hours scored (period passed, actual known)", 0.0),
        Column("mape", pl.Float64, True, "mean absolute percentage error, %"),
        Column("bias_pct", pl.Float64, True, "sum(p50 - actual) / sum(actual), %"),
        Column("pinball", pl.Float64, True, "mean pinball loss over p10/p50/p90 (kW)"),
        Column("within_5pct", pl.Float64, True, "share of hours with |error| <= 5 % of actual", 0.0, 1.0),
        Column("coverage_80", pl.Float64, True, "share of actuals inside [p10, p90]", 0.0, 1.0),
        Column(
            "coverage_90", pl.Float64, True, "share inside [p05, p95], over forecasts that have that band", 0.0, 1.0
        ),
    ),
    "issued load forecasts scored after the fact, by entity, model and lead band, daily and weekly",
    partition_by=("date",),
    key=("period", "period_date", "level", "entity_id", "model", "lead_band"),
)
GOLD_SOLAR_RAMPS = Table(
    "gold_solar_ramps",
    "gold",
    (
        Column("date", pl.Date, False, "partition of the gold_solar_forecast issue the ramps were found in"),
        Column("level", pl.Utf8, False, "feeder | system"),
        Column("entity_id", pl.Utf8, False, f"feeder id, or '{SYSTEM_ENTITY}'"),
        Column("issued_at", UTC_TS, False, "the forecast issue (origin), UTC"),
        Column("start", UTC_TS, False, "start of the ramp in the p50 forecast, UTC"),
        Column("end", UTC_TS, False, "end of the ramp, UTC"),
        Column("direction", pl.Utf8, False, "up | down", allowed=("up", "down")),
        Column("change_kw", pl.Float64, False, "p50 change over the ramp (kW, signed)"),
        Column("max_rate_kw_per_15min", pl.Float64, False, "steepest step of the ramp, kW per 15 minutes", 0.0),
        Column("duration_h", pl.Float64, False, "ramp duration (h)", 0.0),
        Column("alerted", pl.Boolean, False, "rate above the alert threshold: posted to Alertmanager"),
    ),
    "large ramps in the latest PV forecast (p50) per feeder and system, with timing",
    partition_by=("date",),
    key=("level", "entity_id", "issued_at", "start"),
)
FORECAST_TABLES = {
    t.name: t
    for t in (GOLD_LOAD_FORECAST, GOLD_SOLAR_FORECAST, GOLD_PEAK_DEMAND, GOLD_FORECAST_ACCURACY, GOLD_SOLAR_RAMPS)
}
