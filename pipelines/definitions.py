"""The gridlake code location: assets, checks, jobs, schedules, sensors and resources."""


import re

from dagster import (
    AssetSelection,
    DagsterRunStatus,
    Definitions,
    RunRequest,
    SensorEvaluationContext,
    SkipReason,
    build_schedule_from_partitioned_job,
    define_asset_job,
    run_status_sensor,
    sensor,
)

from assets import catalog as catalog_assets
from assets import forecasting as forecast_assets
from assets import grid_ml as grid_ml_assets
from assets import optimization as opt_assets
from assets import gold as gold_assets
from assets import ingestion as ingestion_assets
from assets import reference as reference_assets
from lake.schemas import SOURCES
from pipelines.resources import CatalogResource, GridSettings, LakeResource, LandingResource, MlflowResource

ALL_ASSETS = [
    reference_assets.reference_tables,
    reference_assets.truth_tables,
    *ingestion_assets.ingestion_assets,
    gold_assets.gold_load_hourly,
    gold_assets.gold_load_daily,
    gold_assets.gold_load_monthly,
    gold_assets.gold_grid_health_daily,
    catalog_assets.duckdb_catalog,
    *forecast_assets.FORECAST_ASSETS,
    *grid_ml_assets.GRID_ML_ASSETS,
    *opt_assets.OPT_ASSETS,
]

reference_job = define_asset_job(
    "load_reference", selection=AssetSelection.groups("reference", "truth"), description="Topology and simulator truth from the landing zone"
)
daily_ingest_job = define_asset_job(
    "daily_ingest",
    selection=AssetSelection.groups("bronze", "silver", "quarantine")
    | AssetSelection.assets("gold_load_hourly", "gold_load_daily", "gold_grid_health_daily"),
    description="The main job: landing -> bronze/silver/quarantine -> gold for one utility-local day",
)
monthly_rollup_job = define_asset_job("monthly_rollup", selection=AssetSelection.assets("gold_load_monthly"))
catalog_job = define_asset_job("refresh_catalog", selection=AssetSelection.assets("duckdb_catalog"))

daily_ingest_schedule = build_schedule_from_partitioned_job(daily_ingest_job, hour_of_day=1, minute_of_hour=15)
monthly_rollup_schedule = build_schedule_from_partitioned_job(monthly_rollup_job, hour_of_day=3, minute_of_hour=0)

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


defs = Definitions(
    assets=ALL_ASSETS,
    jobs=[reference_job, daily_ingest_job, monthly_rollup_job, catalog_job, *forecast_assets.FORECAST_JOBS, *grid_ml_assets.GRID_ML_JOBS, *opt_assets.OPT_JOBS],
    schedules=[daily_ingest_schedule, monthly_rollup_schedule, *forecast_assets.FORECAST_SCHEDULES, *grid_ml_assets.GRID_ML_SCHEDULES, *opt_assets.OPT_SCHEDULES],
    sensors=[landing_sensor, refresh_catalog_after_ingest],
    resources={
        "lake": LakeResource(),
        "landing": LandingResource(),
        "catalog": CatalogResource(),
        "grid": GridSettings(),
        "mlflow": MlflowResource(),
    },
)

