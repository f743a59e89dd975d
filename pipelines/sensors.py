"""Sensors: new or late landing files -> re-ingest their day; a finished ingest -> refresh the catalog;
a finished grid-ML scoring -> post its high-severity alerts; a critical live alert on a transformer (the
streaming bridge's durable ``alerts`` table) -> re-score failure risk for that day; a failed run -> an alert
through the streaming bridge's AlertSink."""

import datetime as dt
import hashlib
import re
from zoneinfo import ZoneInfo

from dagster import (
    DagsterRunStatus,
    RunFailureSensorContext,
    RunRequest,
    SensorEvaluationContext,
    SkipReason,
    run_failure_sensor,
    run_status_sensor,
    sensor,
)

from assets.partitions import daily_open
from assets.resources import AlertingResource, AlertSinkResource, GridSettings, LandingResource
from contracts import SOURCES
from lake.landing import LandingCursor, new_files
from pipelines.jobs import (
    alert_notifications_job,
    catalog_job,
    daily_ingest_job,
    failure_risk_rescoring_job,
    grid_ml_scoring_job,
)

_DAY_DIR = re.compile(r"^(rejected/)?(?P<source>[a-z_]+)/(?P<day>\d{4}-\d{2}-\d{2})/")


@sensor(
    job=daily_ingest_job, minimum_interval_seconds=60, description="New or late landing files -> re-ingest their day"
)
def landing_sensor(context: SensorEvaluationContext, landing: LandingResource):
    """Watches the landing zone; a file arriving for an earlier day re-materialises that day only.

    A waiver (lake.waiver: the file moved under ``rejected/``) re-runs its day the same way, so the
    day's blocking files_readable check is evaluated again. The cursor (``lake.landing.LandingCursor``) holds the newest modification time seen and the keys
    seen at exactly that time, so each file triggers at most one run and an S3 object landing in the
    same second as the cursor (S3 times have one-second resolution) is still picked up. The run key
    names the day and the new files, so the daemon does not drop a second run for the same day.
    """
    cursor = LandingCursor.parse(context.cursor)
    zone = landing.zone()
    listed = [
        f
        for prefix in [*SOURCES, *(f"rejected/{s}" for s in SOURCES)]
        for f in zone.list(prefix)
        if _DAY_DIR.match(f.key)
    ]
    fresh, after = new_files(listed, cursor)
    if not fresh:
        return SkipReason(
            f"no landing files new since {cursor.modified} (+{len(cursor.keys_at_modified)} keys at that time)"
        )
    by_day: dict[str, list[str]] = {}
    for f in fresh:
        by_day.setdefault(_DAY_DIR.match(f.key)["day"], []).append(f"{f.key}@{f.modified}")
    context.update_cursor(after.serialize())
    return [
        RunRequest(
            run_key=f"{day}@{hashlib.sha1(chr(10).join(sorted(keys)).encode()).hexdigest()[:16]}",
            partition_key=day,
            tags={"gridlake/trigger": "landing", "gridlake/new_files": str(len(keys))},
        )
        for day, keys in sorted(by_day.items())
    ]


@run_status_sensor(run_status=DagsterRunStatus.SUCCESS, monitored_jobs=[daily_ingest_job], request_job=catalog_job)
def refresh_catalog_after_ingest(context):
    """A new table may have appeared: keep the analysts' catalog in step."""
    return RunRequest(run_key=context.dagster_run.run_id)


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS, monitored_jobs=[grid_ml_scoring_job], request_job=alert_notifications_job
)
def post_alerts_after_scoring(context):
    """New gold_alerts rows for a day: post its high-severity ones to Alertmanager (each once)."""
    day = context.dagster_run.tags.get("dagster/partition")
    if not day:
        return SkipReason("the scoring run has no partition")
    return RunRequest(
        run_key=context.dagster_run.run_id, partition_key=day, tags={"gridlake/trigger": "grid_ml_scoring"}
    )


#: how far back the critical-alert sensor looks on its first evaluation (no cursor yet)
CRITICAL_LOOKBACK = dt.timedelta(hours=24)


@sensor(
    job=failure_risk_rescoring_job,
    minimum_interval_seconds=30,
    description="A critical live alert on a transformer -> re-score failure risk for its day",
)
def critical_alert_sensor(context: SensorEvaluationContext, alerting: AlertingResource, grid: GridSettings):
    """Reads the bridge's durable ``alerts`` table (PostgreSQL); one run per local day with critical alerts,
    tagged with the affected transformers. The cursor is the newest ``received_at`` handled."""
    after = dt.datetime.fromisoformat(context.cursor) if context.cursor else dt.datetime.now(dt.UTC) - CRITICAL_LOOKBACK
    store = alerting.store()
    try:
        if not store.exists():
            return SkipReason(
                f"no alerts table in schema {alerting.alerts_schema} (is the bridge's receiver deployed?)"
            )
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
        RunRequest(
            run_key=f"{day}@{newest.isoformat()}",
            partition_key=day,
            tags={"gridlake/trigger": "critical_alert", "gridlake/transformers": ",".join(sorted(txs))},
        )
        for day, txs in sorted(by_day.items())
    ]


#: jobs whose failure pages someone: the main job (no fresh data means no forecasts, scores or schedules)
CRITICAL_JOBS = frozenset({daily_ingest_job.name})


@run_failure_sensor(
    name="alert_on_run_failure", description="A failed run of any gridlake job -> a PipelineRunFailed alert"
)
def alert_on_run_failure(context: RunFailureSensorContext, alert_sink: AlertSinkResource) -> None:
    """Builds the alert with ``streaming_bridge.pipeline_alerts.run_failure_alert`` and submits it to the sink."""
    from streaming_bridge.pipeline_alerts import run_failure_alert

    run = context.dagster_run
    steps = context.get_step_failure_events()
    errors = [
        f"{e.step_key}: {e.event_specific_data.error.message.strip()}"
        for e in steps
        if e.event_specific_data and e.event_specific_data.error
    ]
    record = context.instance.get_run_record_by_id(run.run_id)
    ended = record.end_time if record is not None else None
    failed_at = dt.datetime.fromtimestamp(ended, tz=dt.UTC) if ended else dt.datetime.now(dt.UTC)
    alert = run_failure_alert(
        job_name=run.job_name,
        run_id=run.run_id,
        failed_at=failed_at,
        error="\n".join(errors) or context.failure_event.message or "",
        partition=run.tags.get("dagster/partition"),
        failed_steps=[e.step_key for e in steps if e.step_key],
        severity="critical" if run.job_name in CRITICAL_JOBS else "warning",
        run_url=alert_sink.run_url(run.run_id),
    )
    outbox = alert_sink.sink()
    try:  # durable once submitted; what Alertmanager does not take now goes out with the next drain of this outbox
        outbox.submit([alert])
        delivered = outbox.flush(alert_sink.flush_timeout_s)
    finally:
        outbox.close(0)
    if not delivered:
        context.log.warning(
            f"alert for failed run {run.run_id} queued in {alert_sink.outbox_path}: Alertmanager did not take it yet"
        )
    context.log.info(
        f"alert {alert.fingerprint()[:12]} ({alert.severity}) for failed run {run.run_id} of {run.job_name}"
    )


ALL_SENSORS = [
    landing_sensor,
    refresh_catalog_after_ingest,
    post_alerts_after_scoring,
    critical_alert_sensor,
    alert_on_run_failure,
]
