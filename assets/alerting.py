"""Batch alerts -> Alertmanager: the day's high-severity ``gold_alerts`` rows go through the streaming
bridge's outbox and client (``streaming_bridge.batch``), so batch and stream share one delivery path.

Runs after each successful ``grid_ml_scoring`` run (sensor ``post_alerts_after_scoring``); re-runs post
each gold alert once (the outbox keeps the submitted gold fingerprints).
"""

import polars as pl
from dagster import AssetExecutionContext, Config, MaterializeResult, asset

from assets.partitions import daily_open, lookback_dep, partition_day
from assets.queues import queue_tags
from assets.resources import AlertingResource, LakeResource
from contracts import TABLES

GROUP = "alerting"


class PostAlertsConfig(Config):
    min_severity: str = "critical"  # gold severity: "critical", or "alert" for critical + alert


@asset(
    op_tags=queue_tags("score"),
    group_name=GROUP,
    partitions_def=daily_open,
    deps=[lookback_dep("gold_alerts"), "ref_meters", "ref_transformers"],
    kinds={"alertmanager"},
    description="The day's high-severity gold_alerts rows posted to Prometheus Alertmanager through the bridge's durable outbox",
)
def alert_notifications(
    context: AssetExecutionContext, config: PostAlertsConfig, lake: LakeResource, alerting: AlertingResource
):
    from streaming_bridge.batch import post_gold_alerts, topology

    lk, day = lake.lake(), partition_day(context)
    rows = (
        lk.read(TABLES["gold_alerts"], day)
        if lk.exists("gold_alerts")
        else pl.DataFrame(schema=TABLES["gold_alerts"].polars_schema())
    )
    topo = topology(
        lk.read("ref_meters") if lk.exists("ref_meters") else None,
        lk.read("ref_transformers") if lk.exists("ref_transformers") else None,
    )
    outbox = alerting.outbox()
    try:
        eligible, new = post_gold_alerts(outbox, rows, topo, config.min_severity)
        delivered = outbox.flush(alerting.flush_timeout_s)
        pending, error = outbox.depth(), outbox.last_error
    finally:
        outbox.close(0)
    if not delivered:
        raise RuntimeError(
            f"{pending} alerts not yet accepted by Alertmanager at {alerting.alertmanager_url} ({error}); they stay in "
            f"{alerting.outbox_path} and go out with the next run"
        )
    context.log.info(f"{day}: {eligible} gold alerts at or above {config.min_severity}, {new} newly posted")
    return MaterializeResult(
        metadata={
            "gold_rows": rows.height,
            "eligible": eligible,
            "newly_posted": new,
            "already_posted": eligible - new,
            "alertmanager": alerting.alertmanager_url,
        }
    )


@asset(
    op_tags=queue_tags("score"),
    group_name=GROUP,
    partitions_def=daily_open,
    deps=[lookback_dep("gold_model_drift")],
    kinds={"alertmanager"},
    description="The day's drifted models (gold_model_drift) posted to Alertmanager as ModelDrift alerts through the same outbox",
)
def model_drift_notifications(context: AssetExecutionContext, lake: LakeResource, alerting: AlertingResource):
    from datetime import UTC, datetime

    from streaming_bridge.batch import dagster_url
    from streaming_bridge.model_alerts import model_drift_alert

    lk, day = lake.lake(), partition_day(context)
    rows = (
        lk.read(TABLES["gold_model_drift"], day)
        if lk.exists("gold_model_drift")
        else pl.DataFrame(schema=TABLES["gold_model_drift"].polars_schema())
    )
    drifted = rows.filter(pl.col("drifted").fill_null(False))
    now = datetime.now(UTC)
    alerts = [
        model_drift_alert(
            model=m,
            metric=k,
            value=v,
            threshold=t,
            day=day.isoformat(),
            at=now,
            version=m,
            url=dagster_url("gold_model_drift", day.isoformat()),
        )
        for m, k, v, t in drifted.select("model", "metric", "value", "threshold").iter_rows()
    ]
    outbox = alerting.outbox()
    try:
        new = outbox.submit(alerts, keys=[f"drift|{day}|{a.fingerprint()}" for a in alerts]) if alerts else 0
        delivered = outbox.flush(alerting.flush_timeout_s)
        pending, error = outbox.depth(), outbox.last_error
    finally:
        outbox.close(0)
    if not delivered:
        raise RuntimeError(
            f"{pending} alerts not yet accepted by Alertmanager at {alerting.alertmanager_url} ({error}); they stay in "
            f"{alerting.outbox_path} and go out with the next run"
        )
    return MaterializeResult(
        metadata={
            "monitored": rows.height,
            "drifted": drifted.height,
            "newly_posted": new,
            "alertmanager": alerting.alertmanager_url,
        }
    )


ALERTING_ASSETS = [alert_notifications, model_drift_notifications]
