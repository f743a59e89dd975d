"""Grid ML gold tables (written by the grid-ML assets from models.grid).

``gold_alerts`` is the streaming bridge's input: its columns are a contract. ``fingerprint`` is
``sha1(asset_type|asset_id|rule|window_start)`` (see :func:`models.grid.alerts.fingerprint`), stable
across reruns, so a consumer deduplicates by it (Alertmanager-style: same labels, same alert).
"""

from __future__ import annotations

import polars as pl

from contracts.tables import _DATE, UTC_TS, Column, Table

ALERT_STATUSES = ("normal", "monitoring", "alert", "critical")
_MODEL_VERSION = Column("model_version", pl.Utf8, False, "model name:version (or run id) that produced the row")
ASSET_TYPES = ("meter", "transformer")
SEVERITIES = ("alert", "critical")
RULES = ("anomaly_score", "failure_risk")
#: advisories derived from the published battery / EV schedules (optimization.advisories)
ADVISORY_KINDS = ("battery_schedule", "ev_charging")
RECOMMENDATION_KINDS = ("time_shift", "dr_enrolment", "tariff", *ADVISORY_KINDS)

GOLD_ANOMALY_SCORES = Table(
    "gold_anomaly_scores",
    "gold",
    (
        _DATE,
        Column("asset_type", pl.Utf8, False, "meter | transformer", allowed=ASSET_TYPES),
        Column("asset_id", pl.Utf8, False),
        Column("time", UTC_TS, False, "reading_time / sample_time, UTC"),
        Column("score", pl.Float64, False, "ensemble score: calibrated probability of an anomaly", 0.0, 1.0),
        Column("score_isolation_forest", pl.Float64, False, "calibrated score of the isolation forest alone", 0.0, 1.0),
        Column("score_autoencoder", pl.Float64, False, "calibrated score of the window autoencoder alone", 0.0, 1.0),
        Column("score_ocsvm", pl.Float64, False, "calibrated score of the one-class SVM alone", 0.0, 1.0),
        Column("status", pl.Utf8, False, "normal | monitoring | alert | critical", allowed=ALERT_STATUSES),
        Column("reason", pl.Utf8, True, "most unusual feature vs training (robust z), for status != normal"),
        _MODEL_VERSION,
    ),
    "anomaly score per meter reading and per SCADA sample",
    partition_by=("date",),
    key=("asset_type", "asset_id", "time"),
)

GOLD_ALERTS = Table(
    "gold_alerts",
    "gold",
    (
        _DATE,
        Column("fingerprint", pl.Utf8, False, "sha1(asset_type|asset_id|rule|window_start): dedup key"),
        Column("asset_type", pl.Utf8, False, allowed=ASSET_TYPES),
        Column("asset_id", pl.Utf8, False),
        Column("rule", pl.Utf8, False, "anomaly_score | failure_risk", allowed=RULES),
        Column("severity", pl.Utf8, False, "alert | critical (highest in the window)", allowed=SEVERITIES),
        Column("score", pl.Float64, False, "highest score in the window", 0.0, 1.0),
        Column("window_start", UTC_TS, False, "start of the alert window (hour), UTC"),
        Column("window_end", UTC_TS, False),
        Column("first_seen", UTC_TS, False, "first reading/sample at or above the alert threshold"),
        Column("last_seen", UTC_TS, False),
        Column("n_points", pl.Int64, False, "readings/samples at or above the alert threshold in the window"),
        Column("reason", pl.Utf8, False, "why: the most unusual feature at the peak score"),
        _MODEL_VERSION,
    ),
    "one row per alert (asset x rule x hour window), deduplicated by fingerprint",
    partition_by=("date",),
    key=("fingerprint",),
)

GOLD_TRANSFORMER_RISK = Table(
    "gold_transformer_risk",
    "gold",
    (
        _DATE,
        Column("transformer_id", pl.Utf8, False),
        Column("as_of", UTC_TS, False, "end of the hour the features describe, UTC"),
        Column("failure_probability_72h", pl.Float64, False, "P(failure within 72 h)", 0.0, 1.0),
        Column("rul_hours", pl.Float64, False, "median remaining useful life (AFT survival model), hours", 0.0),
        Column("status", pl.Utf8, False, "normal | monitoring | alert | critical", allowed=ALERT_STATUSES),
        Column("age_years", pl.Float64, False),
        Column("days_since_maintenance", pl.Float64, False),
        Column("utilisation_mean_24h", pl.Float64, True),
        Column("utilisation_max_24h", pl.Float64, True),
        Column("hot_spot_max_24h", pl.Float64, True),
        Column("excess_rise_6h", pl.Float64, True, "top-oil rise beyond the thermal model, last 6 h (K)"),
        Column("anomaly_count_7d", pl.Int64, False),
        Column("customers_downstream", pl.Int64, False, "meters fed by the transformer (outage impact)"),
        Column("load_downstream_kw", pl.Float64, False, "their mean demand over the last 24 h (outage impact)"),
        Column("top_factor", pl.Utf8, True, "the feature pushing the failure probability up most (tree SHAP)"),
        Column("factors", pl.Utf8, True, "the top contributing features with their values and log-odds contributions"),
        Column(
            "maintenance", pl.Utf8, True, "maintenance recommendation when the remaining useful life is below 90 days"
        ),
        _MODEL_VERSION,
    ),
    "failure probability, remaining useful life, why, what to do and outage impact per transformer and hour",
    partition_by=("date",),
    key=("transformer_id", "as_of"),
)

GOLD_CUSTOMER_SEGMENTS = Table(
    "gold_customer_segments",
    "gold",
    (
        Column("as_of", pl.Date, False, "last local day of the profile window"),
        Column("meter_id", pl.Utf8, False),
        Column("customer_id", pl.Utf8, True),
        Column("segment", pl.Utf8, False, "one of the named segments (stable across retrains)"),
        Column("distance", pl.Float64, False, "distance to the segment centroid (standardised units)"),
        Column("provisional", pl.Boolean, False, "fewer days of history than the model asks for"),
        Column("history_days", pl.Int64, False),
        Column("avg_daily_kwh", pl.Float64, False),
        Column("peak_hour", pl.Int32, False, "local hour of the mean weekday peak"),
        Column("weekend_ratio", pl.Float64, False, "mean weekend-day kWh / mean weekday kWh"),
        Column("seasonal_cv", pl.Float64, False, "coefficient of variation of daily kWh"),
        Column("has_pv", pl.Boolean, False),
        Column("has_ev", pl.Boolean, False),
        _MODEL_VERSION,
    ),
    "customer segment per meter",
    partition_by=("as_of",),
    key=("meter_id",),
)

GOLD_RECOMMENDATIONS = Table(
    "gold_recommendations",
    "gold",
    (
        Column("as_of", pl.Date, False),
        Column("customer_id", pl.Utf8, False),
        Column("meter_id", pl.Utf8, False),
        Column("segment", pl.Utf8, False),
        Column(
            "kind",
            pl.Utf8,
            False,
            "time_shift | dr_enrolment | tariff | battery_schedule | ev_charging (site advisories from the schedules)",
            allowed=RECOMMENDATION_KINDS,
        ),
        Column("recommended", pl.Boolean, False, "false rows keep the evaluated-but-not-worth-it options"),
        Column("message", pl.Utf8, False),
        Column("est_monthly_savings", pl.Float64, False, "currency units per month (see models.grid.recommend)"),
        Column("basis_kwh", pl.Float64, False, "kWh/month the estimate rests on (shiftable, peak, ...)"),
        Column(
            "est_monthly_co2_kg", pl.Float64, True, "schedule advisories: kg CO2/month avoided against the baseline"
        ),
        Column(
            "confidence",
            pl.Float64,
            True,
            "schedule advisories: 1 - mean relative p10-p90 half-width of the load forecast (0.5 on the weekly fallback)",
            0.0,
            1.0,
        ),
    ),
    "per-customer recommendations with estimated monthly savings",
    partition_by=("as_of",),
    key=("customer_id", "kind"),
)

GOLD_DR_EVENTS = Table(
    "gold_dr_events",
    "gold",
    (
        _DATE,
        Column("event_id", pl.Utf8, False, "sha1(scope|start) prefix: stable across reruns"),
        Column("scope", pl.Utf8, False, "what the capacity limits: system or a feeder id"),
        Column("start_time", UTC_TS, False),
        Column("end_time", UTC_TS, False),
        Column("forecast_peak_kw", pl.Float64, False),
        Column("capacity_kw", pl.Float64, False),
        Column("target_reduction_kw", pl.Float64, False, "peak - capacity (+ margin)"),
        Column("expected_reduction_kw", pl.Float64, False, "sum over selected participants"),
        Column("n_participants", pl.Int64, False),
        Column("total_incentive", pl.Float64, False),
        Column(
            "status", pl.Utf8, False, "covered | short (not enough eligible reduction)", allowed=("covered", "short")
        ),
    ),
    "demand-response events created where the forecast peak exceeds capacity",
    partition_by=("date",),
    key=("event_id",),
)

GOLD_DR_PARTICIPATIONS = Table(
    "gold_dr_participations",
    "gold",
    (
        _DATE,
        Column("event_id", pl.Utf8, False),
        Column("customer_id", pl.Utf8, False),
        Column("meter_id", pl.Utf8, False),
        Column("segment", pl.Utf8, False),
        Column("expected_reduction_kw", pl.Float64, False),
        Column("incentive", pl.Float64, False, "base amount x segment multiplier"),
    ),
    "customers selected for a demand-response event",
    partition_by=("date",),
    key=("event_id", "customer_id"),
)

BALANCE_LEVELS = ("transformer", "feeder")
NTL_KINDS = ("theft", "meter_fault")
GOLD_ENERGY_BALANCE = Table(
    "gold_energy_balance",
    "gold",
    (
        _DATE,
        Column("level", pl.Utf8, False, "transformer | feeder", allowed=BALANCE_LEVELS),
        Column("entity_id", pl.Utf8, False),
        Column("feeder_id", pl.Utf8, False),
        Column("supplied_kwh", pl.Float64, False, "SCADA energy (hourly mean kVA x the meters' power factor)"),
        Column("metered_kwh", pl.Float64, False, "the meters' net energy"),
        Column("technical_loss_kwh", pl.Float64, False, "transformer losses estimated from its loading", 0.0),
        Column("unexplained_kwh", pl.Float64, False, "supplied - metered - technical: non-technical loss and errors"),
        Column("hours", pl.Int64, False, "hours with both SCADA and meter data", 0.0),
        Column("unexplained_baseline_kwh", pl.Float64, True, "median unexplained loss of the previous days"),
        Column("unexplained_rise_kwh", pl.Float64, True, "unexplained minus its baseline"),
        Column("rise_sigmas", pl.Float64, True, "the rise in robust standard deviations of the baseline days"),
    ),
    "daily energy balance per transformer and feeder: supplied (SCADA), metered, technical and unexplained loss",
    partition_by=("date",),
    key=("level", "entity_id"),
)

GOLD_NTL_SUSPECTS = Table(
    "gold_ntl_suspects",
    "gold",
    (
        _DATE,
        Column("transformer_id", pl.Utf8, False),
        Column("meter_id", pl.Utf8, False),
        Column(
            "kind",
            pl.Utf8,
            False,
            "theft (energy taken behind the meter) | meter_fault (new zeros / frozen readings)",
            allowed=NTL_KINDS,
        ),
        Column("rank", pl.Int32, False, "1 = most likely within the transformer and kind", 1.0),
        Column(
            "score",
            pl.Float64,
            False,
            "share of the transformer's new hourly loss this suspect explains (its own drop consistent)",
            0.0,
            1.0,
        ),
        Column(
            "implied_share",
            pl.Float64,
            False,
            "hidden energy as a multiple of the metered energy (theft) / of the missing usual energy (fault)",
        ),
        Column("unexplained_rise_kwh", pl.Float64, False),
        Column("reason", pl.Utf8, False),
    ),
    "ranked non-technical-loss suspects (theft, meter faults) per transformer and day, from the energy balance",
    partition_by=("date",),
    key=("transformer_id", "meter_id"),
)

GOLD_MODEL_DRIFT = Table(
    "gold_model_drift",
    "gold",
    (
        _DATE,
        Column("model", pl.Utf8, False, "model name:version monitored"),
        Column("metric", pl.Utf8, False, "input:<feature> | score (PSI) | realised_precision"),
        Column("value", pl.Float64, True),
        Column("threshold", pl.Float64, False),
        Column("rows", pl.Int64, False, "rows (or settled alerts) the value is computed from", 0.0),
        Column("drifted", pl.Boolean, True, "beyond the threshold (null: too few rows to tell)"),
    ),
    "model monitoring per day: input and score drift (PSI against the training window), realised precision",
    partition_by=("date",),
    key=("model", "metric"),
)

GRID_TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        GOLD_ANOMALY_SCORES,
        GOLD_ALERTS,
        GOLD_TRANSFORMER_RISK,
        GOLD_CUSTOMER_SEGMENTS,
        GOLD_RECOMMENDATIONS,
        GOLD_DR_EVENTS,
        GOLD_DR_PARTICIPATIONS,
        GOLD_ENERGY_BALANCE,
        GOLD_NTL_SUSPECTS,
        GOLD_MODEL_DRIFT,
    )
}
