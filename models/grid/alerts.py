"""From scores to the gold tables: anomaly_scores rows and deduplicated alerts.

Alerts group the readings of one asset at/above the alert threshold into hour windows; the
fingerprint ``sha1(asset_type|asset_id|rule|window_start)`` makes a rerun of the same hour produce the
same alert (the streaming bridge and Alertmanager-style consumers dedupe on it), and a new hour a
new one (repeat notifications are the consumer's policy, not ours).
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

import polars as pl

from contracts import GOLD_ALERTS, GOLD_ANOMALY_SCORES

from .anomaly import status_expr
from .config import AlertThresholds


def fingerprint(asset_type: str, asset_id: str, rule: str, window_start) -> str:
    return hashlib.sha1(f"{asset_type}|{asset_id}|{rule}|{window_start.isoformat()}".encode()).hexdigest()


def to_gold_scores(scores: pl.DataFrame, asset_type: str, version: str, tz: str) -> pl.DataFrame:
    """:meth:`AnomalyEnsemble.score` output conformed to ``gold_anomaly_scores``."""
    return GOLD_ANOMALY_SCORES.conform(
        scores.with_columns(
            pl.col("time").dt.convert_time_zone(tz).dt.date().alias("date"),
            pl.lit(asset_type).alias("asset_type"),
            pl.lit(version).alias("model_version"),
        )
    )


def build_alerts(
    scores: pl.DataFrame,
    asset_type: str,
    thresholds: AlertThresholds,
    version: str,
    rule: str = "anomaly_score",
    score_col: str = "score",
    time_col: str = "time",
    id_col: str = "asset_id",
    *,
    tz: str,
) -> pl.DataFrame:
    """One ``gold_alerts`` row per asset and hour window with any score >= the alert threshold."""
    s = scores.filter(pl.col(score_col) >= thresholds.alert)
    if "reason" not in s.columns:
        s = s.with_columns(pl.lit(f"{score_col} at or above {thresholds.alert}").alias("reason"))
    g = (
        s.with_columns(pl.col(time_col).dt.truncate("1h").alias("window_start"))
        .sort(score_col, descending=True)
        .group_by(id_col, "window_start")
        .agg(
            pl.col(score_col).first().alias("score"),
            pl.col("reason").first().fill_null("score at or above the alert threshold"),
            pl.col(time_col).min().alias("first_seen"),
            pl.col(time_col).max().alias("last_seen"),
            pl.len().cast(pl.Int64).alias("n_points"),
        )
        .rename({id_col: "asset_id"})
    )
    g = g.with_columns(
        (pl.col("window_start") + timedelta(hours=1)).alias("window_end"),
        pl.col("window_start").dt.convert_time_zone(tz).dt.date().alias("date"),
        pl.lit(asset_type).alias("asset_type"),
        pl.lit(rule).alias("rule"),
        pl.lit(version).alias("model_version"),
        status_expr(pl.col("score"), thresholds).alias("severity"),
    )
    fps = [fingerprint(asset_type, a, rule, w) for a, w in zip(g["asset_id"].to_list(), g["window_start"].to_list())]
    return GOLD_ALERTS.conform(g.with_columns(pl.Series("fingerprint", fps, dtype=pl.Utf8))).sort(
        "window_start", "asset_id"
    )


def day_alerts(
    anomaly_scores: pl.DataFrame,
    anomaly_thresholds: dict[str, AlertThresholds],
    risk: pl.DataFrame,
    risk_thresholds: AlertThresholds | None,
    tz: str,
) -> pl.DataFrame:
    """``gold_alerts`` rows of one day from both rules.

    - ``anomaly_score``: ``gold_anomaly_scores`` rows, per asset type and model version, against
      ``anomaly_thresholds[asset_type]``;
    - ``failure_risk``: ``gold_transformer_risk`` rows, P(failure in 72 h) against
      ``risk_thresholds`` (needed only when ``risk`` has rows), with the RUL and the customers
      downstream in the reason.

    No rows in either input: an empty frame with the ``gold_alerts`` schema.
    """
    parts = []
    for (kind, version), g in anomaly_scores.group_by("asset_type", "model_version"):
        parts.append(build_alerts(g, kind, anomaly_thresholds[kind], version, rule="anomaly_score", tz=tz))
    if risk.height:
        r = risk.with_columns(
            pl.format(
                "P(failure in 72 h) {} ; RUL {} h ; {} customers downstream",
                pl.col("failure_probability_72h").round(3),
                pl.col("rul_hours").round(0),
                pl.col("customers_downstream"),
            ).alias("reason")
        )
        for (version,), g in r.group_by("model_version"):
            parts.append(
                build_alerts(
                    g,
                    "transformer",
                    risk_thresholds,
                    version,
                    rule="failure_risk",
                    score_col="failure_probability_72h",
                    time_col="as_of",
                    id_col="transformer_id",
                    tz=tz,
                )
            )
    return pl.concat(parts) if parts else pl.DataFrame(schema=GOLD_ALERTS.polars_schema())


def duplicate_fingerprints(alerts: pl.LazyFrame) -> pl.DataFrame:
    """Fingerprints that occur more than once in ``alerts`` (the whole table): fingerprint, n, dates."""
    return (
        alerts.group_by("fingerprint")
        .agg(pl.len().alias("n"), pl.col("date").unique().alias("dates"))
        .filter(pl.col("n") > 1)
        .collect()
    )
