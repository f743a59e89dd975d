"""Sensors: new or late landing files -> re-ingest their day; a finished ingest -> refresh the catalog;
a failed run -> an alert through the streaming bridge's AlertSink."""

import hashlib
from datetime import datetime, timezone
import re

from dagster import DagsterRunStatus, RunFailureSensorContext, RunRequest, SensorEvaluationContext, SkipReason, run_failure_sensor, run_status_sensor, sensor

from lake.landing import LandingCursor, new_files
from lake.schemas import SOURCES
from pipelines.jobs import catalog_job, daily_ingest_job
from pipelines.resources import AlertSinkResource, LandingResource

_DAY_DIR = re.compile(r"^(?P<source>[a-z_]+)/(?P<day>\d{4}-\d{2}-\d{2})/")


@sensor(job=daily_ingest_job, minimum_interval_seconds=60, description="New or late landing files -> re-ingest their day")
def landing_sensor(context: SensorEvaluationContext, landing: LandingResource):
    """Watches the landing zone; a file arriving for an earlier day re-materialises that day only.

    The cursor (``lake.landing.LandingCursor``) holds the newest modification time seen and the keys
    seen at exactly that time, so each file triggers at most one run and an S3 object landing in the
    same second as the cursor (S3 times have one-second resolution) is still picked up. The run key
    names the day and the new files, so the daemon does not drop a second run for the same day.
    """
    cursor = LandingCursor.parse(context.cursor)
    zone = landing.zone()
    listed = [f for src in SOURCES for f in zone.list(src) if _DAY_DIR.match(f.key)]
    fresh, after = new_files(listed, cursor)
    if not fresh:
        return SkipReason(f"no landing files new since {cursor.modified} (+{len(cursor.keys_at_modified)} keys at that time)")
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


#: jobs whose failure pages someone: the main job (no fresh data means no forecasts, scores or schedules)
CRITICAL_JOBS = frozenset({daily_ingest_job.name})


@run_failure_sensor(name="alert_on_run_failure", description="A failed run of any gridlake job -> a PipelineRunFailed alert")
def alert_on_run_failure(context: RunFailureSensorContext, alert_sink: AlertSinkResource) -> None:
    """Builds the alert with ``streaming_bridge.pipeline_alerts.run_failure_alert`` and submits it to the sink."""
    from streaming_bridge.pipeline_alerts import run_failure_alert

    run = context.dagster_run
    steps = context.get_step_failure_events()
    errors = [f"{e.step_key}: {e.event_specific_data.error.message.strip()}" for e in steps if e.event_specific_data and e.event_specific_data.error]
    record = context.instance.get_run_record_by_id(run.run_id)
    ended = record.end_time if record is not None else None
    failed_at = datetime.fromtimestamp(ended, tz=timezone.utc) if ended else datetime.now(timezone.utc)
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
    alert_sink.sink().submit([alert])
    context.log.info(f"alert {alert.fingerprint()[:12]} ({alert.severity}) for failed run {run.run_id} of {run.job_name}")


ALL_SENSORS = [landing_sensor, refresh_catalog_after_ingest, alert_on_run_failure]
