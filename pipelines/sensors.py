"""Sensors: new or late landing files -> re-ingest their day; a finished ingest -> refresh the catalog."""

import re

from dagster import DagsterRunStatus, RunRequest, SensorEvaluationContext, SkipReason, run_status_sensor, sensor

from lake.schemas import SOURCES
from pipelines.jobs import catalog_job, daily_ingest_job
from pipelines.resources import LandingResource

_DAY_DIR = re.compile(r"^(rejected/)?(?P<source>[a-z_]+)/(?P<day>\d{4}-\d{2}-\d{2})/")


@sensor(job=daily_ingest_job, minimum_interval_seconds=60, description="New or late landing files -> re-ingest their day")
def landing_sensor(context: SensorEvaluationContext, landing: LandingResource):
    """Watches the landing zone; a file arriving for an earlier day re-materialises that day only.

    A waiver (lake.waiver: the file moved under ``rejected/``) re-runs its day the same way, so the
    day's blocking files_readable check is evaluated again. The cursor holds the newest modification
    time seen, so each file triggers at most one run.
    """
    since = float(context.cursor or 0)
    newest, days = since, {}
    for prefix in [*SOURCES, *(f"rejected/{s}" for s in SOURCES)]:
        for f in landing.zone().list(prefix):
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


ALL_SENSORS = [landing_sensor, refresh_catalog_after_ingest]
