"""Every schedule, in the utility's time zone (``GRIDLAKE_TIMEZONE``).

The night, in local time: 01:15 ingest yesterday -> 02:00 retrain forecasts and grid models ->
03:00 monthly rollup -> 04:00 today's optimisation schedules; every hour, :10 re-issues today's
forecasts and :20 re-scores today's grid models.
"""

from zoneinfo import ZoneInfo

import polars as pl
from dagster import (
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    build_schedule_from_partitioned_job,
    schedule,
)

from assets.partitions import TIMEZONE
from assets.resources import LakeResource
from pipelines.jobs import (
    daily_ingest_job,
    forecast_scoring_job,
    forecast_training_job,
    grid_ml_scoring_job,
    grid_ml_training_job,
    monthly_rollup_job,
    optimization_job,
)


def _local_today(context: ScheduleEvaluationContext) -> str:
    """The schedule tick's local date (the partition key of 'today')."""
    return context.scheduled_execution_time.astimezone(ZoneInfo(TIMEZONE)).date().isoformat()


daily_ingest_schedule = build_schedule_from_partitioned_job(daily_ingest_job, hour_of_day=1, minute_of_hour=15)
monthly_rollup_schedule = build_schedule_from_partitioned_job(monthly_rollup_job, hour_of_day=3, minute_of_hour=0)


@schedule(
    job=forecast_training_job,
    cron_schedule="0 2 * * *",
    execution_timezone=TIMEZONE,
    description="02:00 local: retrain",
)
def nightly_forecast_training(context: ScheduleEvaluationContext):
    return RunRequest(run_key=f"train@{context.scheduled_execution_time:%Y-%m-%d}")


@schedule(
    job=forecast_scoring_job,
    cron_schedule="10 * * * *",
    execution_timezone=TIMEZONE,
    description="Hourly: re-issue today's forecasts",
)
def hourly_forecast_scoring(context: ScheduleEvaluationContext):
    """Re-materialise the *current local day's* partition (the schedule's own time zone)."""
    return RunRequest(
        run_key=f"score@{context.scheduled_execution_time:%Y-%m-%dT%H}", partition_key=_local_today(context)
    )


grid_ml_training_schedule = ScheduleDefinition(
    name="grid_ml_training_nightly",
    job=grid_ml_training_job,
    cron_schedule="0 2 * * *",
    execution_timezone=TIMEZONE,
)


@schedule(
    cron_schedule="20 * * * *", job=grid_ml_scoring_job, execution_timezone=TIMEZONE, name="grid_ml_scoring_hourly"
)
def grid_ml_scoring_hourly(context: ScheduleEvaluationContext, lake: LakeResource) -> RunRequest | SkipReason:
    """Every hour, re-score the current local day (its partition is replaced, not appended to).

    Skips while the day has no silver meter readings yet (e.g. just after midnight, before the
    first intraday ingest): a run would only fail with "ingest the day first" every hour.
    """
    at = context.scheduled_execution_time.astimezone(ZoneInfo(TIMEZONE))
    day = at.date()
    lk = lake.lake()
    n = (
        lk.scan("silver_meter_readings").filter(pl.col("date") == day).select(pl.len()).collect().item()
        if lk.exists("silver_meter_readings")
        else 0
    )
    if n == 0:
        return SkipReason(f"silver_meter_readings has no rows for {day} yet; nothing to score")
    return RunRequest(run_key=f"grid_ml_scoring@{at.isoformat()}", partition_key=day.isoformat())


@schedule(
    job=optimization_job,
    cron_schedule="0 4 * * *",
    execution_timezone=TIMEZONE,
    description="04:00 local: today's schedules",
)
def daily_optimization(context: ScheduleEvaluationContext):
    """Schedule the *current local day* once the 03:10 forecast re-issue has landed."""
    today = _local_today(context)
    return RunRequest(run_key=f"opt@{today}", partition_key=today)


FORECAST_SCHEDULES = [nightly_forecast_training, hourly_forecast_scoring]
GRID_ML_SCHEDULES = [grid_ml_training_schedule, grid_ml_scoring_hourly]
OPT_SCHEDULES = [daily_optimization]
ALL_SCHEDULES = [
    daily_ingest_schedule,
    monthly_rollup_schedule,
    *FORECAST_SCHEDULES,
    *GRID_ML_SCHEDULES,
    *OPT_SCHEDULES,
]
