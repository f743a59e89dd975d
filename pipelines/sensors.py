"""Sensors: new or late landing files -> re-ingest their day; a finished ingest -> refresh the catalog;
a finished grid-ML scoring -> post its high-severity alerts; a critical live alert on a transformer (the
streaming bridge's durable ``alerts`` table) -> re-score failure risk for that day; a failed run -> an alert
through the streaming bridge's AlertSink; a backfill range held only by unreadable landing files -> gold for its
readable days."""

import datetime as dt
import hashlib
import re
from zoneinfo import ZoneInfo

from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterRunStatus,
    PartitionKeyRange,
    RunFailureSensorContext,
    RunRequest,
    SensorEvaluationContext,
    SkipReason,
    run_failure_sensor,
    run_status_sensor,
    sensor,
)

from assets.partitions import daily, daily_open
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


#: the daily gold assets of the main job: what a held day blocks downstream of its silver
DAILY_GOLD = ("gold_load_hourly", "gold_load_daily", "gold_grid_health_daily")
_RANGE_START, _RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def readable_subranges(keys: list[str], held: set[str]) -> list[tuple[str, str]]:
    """The maximal runs of consecutive ``keys`` (in order) that are not ``held``, as (first, last)."""
    out: list[tuple[str, str]] = []
    run: list[str] = []
    for k in [*keys, None]:
        if k is not None and k not in held:
            run.append(k)
        elif run:
            out.append((run[0], run[-1]))
            run = []
    return out


def held_days_of_run(instance, run_id: str) -> tuple[set[str], list[str]]:
    """(held days, reasons the run is not blocked by held days alone) from a failed run's event log.

    Held days: the days named by failed ``files_readable`` checks. The run counts as blocked by them
    alone when every failed blocking check is a ``files_readable`` one and every step failure is the
    blocking-check failure (not an error in a step: then the readable days' silver may not be published).
    """
    held: set[str] = set()
    other: list[str] = []
    for rec in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        ev = rec.dagster_event.event_specific_data
        if ev.passed or ev.severity.value != "ERROR" or not ev.blocking:
            continue
        if ev.check_name == "files_readable":
            held |= set(ev.metadata["unreadable_files"].value)
        else:
            other.append(f"{ev.asset_key.to_user_string()}:{ev.check_name}")
    for rec in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE):
        err = rec.dagster_event.event_specific_data.error
        if err is None or err.cls_name != "DagsterAssetCheckFailedError":
            other.append(f"{rec.dagster_event.step_key}: {err.cls_name if err else 'failed'}")
    return held, other


@run_failure_sensor(
    name="gold_for_readable_days",
    # every job of the code location: a backfill launched from the UI runs as the implicit asset job
    request_job=daily_ingest_job,
    description="A backfill range held only by unreadable landing files -> gold for its readable days",
)
def gold_for_readable_days(context: RunFailureSensorContext):
    """A range run (a backfill: ``assets.partitions.daily_backfill``) whose blocking ``files_readable`` check failed
    skipped the gold steps of the whole range, although only the held days are unpublished. This requests one
    gold-only run per maximal sub-range of readable days, so one bad file blocks its own day, no more. The held
    days are not requested: their gold stays unmaterialised (missing in the UI) until the file is fixed or
    waived and the day re-run (the landing sensor does that). The readable days' ingestion is not repeated: it
    published them in the failed run. Any other cause of failure (another blocking check, an error in a step)
    is left alone: then it is not only held days that block the range.
    """
    run = context.dagster_run
    start, end = run.tags.get(_RANGE_START), run.tags.get(_RANGE_END)
    if not (start and end):
        return SkipReason(f"run {run.run_id} is not a range run: its day's gold is held with it")
    held, other = held_days_of_run(context.instance, run.run_id)
    if not held:
        return SkipReason(f"run {run.run_id} failed without an unreadable landing file")
    if other:
        return SkipReason(f"run {run.run_id} is blocked by more than held days: {', '.join(sorted(set(other)))}")
    keys = daily.get_partition_keys_in_range(PartitionKeyRange(start, end))
    # the gold assets the failed run planned (a job run, a backfill or an ad-hoc selection alike)
    planned = {
        rec.dagster_event.asset_key
        for rec in context.instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION_PLANNED)
    }
    gold = [AssetKey(k) for k in DAILY_GOLD if AssetKey(k) in planned]
    parts = readable_subranges(keys, held)
    context.log.info(
        f"run {run.run_id} ({start}..{end}) held by unreadable files on {sorted(held)}: "
        f"their gold stays unmaterialised; gold requested for {parts}"
    )
    if not gold or not parts:
        return SkipReason(f"run {run.run_id}: no readable day or no gold asset in the range {start}..{end}")
    return [
        RunRequest(
            run_key=f"{run.run_id}:{a}..{b}",
            asset_selection=gold,
            tags={
                _RANGE_START: a,
                _RANGE_END: b,
                "gridlake/trigger": "held_days",
                "gridlake/held_days": ",".join(sorted(held)),
                "gridlake/after_run": run.run_id,
            },
        )
        for a, b in parts
    ]


ALL_SENSORS = [
    landing_sensor,
    refresh_catalog_after_ingest,
    post_alerts_after_scoring,
    critical_alert_sensor,
    alert_on_run_failure,
    gold_for_readable_days,
]
