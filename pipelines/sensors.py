"""Sensors: new or late landing files -> re-ingest their day; a finished ingest -> refresh the catalog;
a finished grid-ML scoring -> post its high-severity alerts; a critical live alert on a transformer (the
streaming bridge's durable ``alerts`` table) -> re-score failure risk for that day."""

import datetime as dt
import re
from zoneinfo import ZoneInfo

from dagster import DagsterRunStatus, RunRequest, SensorEvaluationContext, SkipReason, run_status_sensor, sensor

from lake.schemas import SOURCES
from pipelines.jobs import alert_notifications_job, catalog_job, daily_ingest_job, failure_risk_rescoring_job, grid_ml_scoring_job
from pipelines.partitions import daily_open
from pipelines.resources import AlertingResource, GridSettings, LandingResource

_DAY_DIR = re.compile(r"^(?P<source>[a-z_]+)/(?P<day>\d{4}-\d{2}-\d{2})/")


@sensor(job=daily_ingest_job, minimum_interval_seconds=60, description="New or late landing files -> re-ingest their day")
def landing_sensor(context: SensorEvaluationContext, landing: LandingResource):
    """Watches the landing zone; a file arriving for an earlier day re-materialises that day only.

    The cursor holds the newest modification time seen, so each file triggers at most one run.
    """
    since = float(context.cursor or 0)
    newest, days = since, {}
    for src in SOURCES:
        for f in landing.zone().list(src):
            m = _DAY_DIR.match(f.key)
            if m and f.modified > since:
                days[m["day"]] = max(days.get(m["day"], 0.0), f.modified)
                newest = max(newest, f.modified)
    if not days:
        return SkipReason(f"no landing files newer than {since}")
    context.update_cursor(str(newest))
    return [RunRequest(run_key=f"{day}@{ts}", partition_key=day, tags={"gridlake/trigger": "landing"}) for day, ts in sorted(days.items())]


@run_status_sensor(run_status=DagsterRunStatus.SUCCESS, monitored_jobs=[daily_ingest_job], request_job=catalog_job)
def refresh_catalog_after_ingest(context):
    """A new table may have appeared: keep the analysts' catalog in step."""
    return RunRequest(run_key=context.dagster_run.run_id)


@run_status_sensor(run_status=DagsterRunStatus.SUCCESS, monitored_jobs=[grid_ml_scoring_job], request_job=alert_notifications_job)
def post_alerts_after_scoring(context):
    """New gold_alerts rows for a day: post its high-severity ones to Alertmanager (each once)."""
    day = context.dagster_run.tags.get("dagster/partition")
    if not day:
        return SkipReason("the scoring run has no partition")
    return RunRequest(run_key=context.dagster_run.run_id, partition_key=day, tags={"gridlake/trigger": "grid_ml_scoring"})


#: how far back the critical-alert sensor looks on its first evaluation (no cursor yet)
CRITICAL_LOOKBACK = dt.timedelta(hours=24)


@sensor(job=failure_risk_rescoring_job, minimum_interval_seconds=30,
        description="A critical live alert on a transformer -> re-score failure risk for its day")
def critical_alert_sensor(context: SensorEvaluationContext, alerting: AlertingResource, grid: GridSettings):
    """Reads the bridge's durable ``alerts`` table (PostgreSQL); one run per local day with critical alerts,
    tagged with the affected transformers. The cursor is the newest ``received_at`` handled."""
    after = dt.datetime.fromisoformat(context.cursor) if context.cursor else dt.datetime.now(dt.UTC) - CRITICAL_LOOKBACK
    store = alerting.store()
    try:
        if not store.exists():
            return SkipReason(f"no alerts table in schema {alerting.alerts_schema} (is the bridge's receiver deployed?)")
        rows = store.critical_transformer_alerts(after, alerting.settle_s)
    finally:
        store.close()
    if not rows:
        return SkipReason(f"no critical transformer alerts received after {after.isoformat()}")
    tz = ZoneInfo(grid.timezone)
    first = dt.date.fromisoformat(daily_open.start.strftime("%Y-%m-%d"))
    by_day: dict[str, set[str]] = {}
    for tx, starts_at, _ in rows:
        day = starts_at.astimezone(tz).date()
        if day >= first:
            by_day.setdefault(day.isoformat(), set()).add(tx)
    newest = rows[-1][2]
    context.update_cursor(newest.isoformat())
    if not by_day:
        return SkipReason(f"critical alerts only before the first partition {first}")
    return [
        RunRequest(run_key=f"{day}@{newest.isoformat()}", partition_key=day,
                   tags={"gridlake/trigger": "critical_alert", "gridlake/transformers": ",".join(sorted(txs))})
        for day, txs in sorted(by_day.items())
    ]


ALL_SENSORS = [landing_sensor, refresh_catalog_after_ingest, post_alerts_after_scoring, critical_alert_sensor]
