"""The gridlake code location: assets, checks, jobs, schedules, sensors and resources.

Where things live: asset definitions in assets/*.py (one module a graph); jobs in
pipelines/jobs.py, schedules in pipelines/schedules.py, sensors in pipelines/sensors.py,
resources in assets/resources.py, partitions in assets/partitions.py.
"""

from dagster import Definitions

from assets import alerting as alerting_assets
from assets import catalog as catalog_assets
from assets import contingency as contingency_assets
from assets import forecasting as forecast_assets
from assets import gold as gold_assets
from assets import grid_ml as grid_ml_assets
from assets import ingestion as ingestion_assets
from assets import optimization as opt_assets
from assets import reference as reference_assets
from assets import report as report_assets
from assets.resources import (
    AlertingResource,
    AlertSinkResource,
    CatalogResource,
    GridSettings,
    LakeResource,
    LandingResource,
    MlflowResource,
)
from pipelines.executors import executor_from_env
from pipelines.jobs import ALL_JOBS
from pipelines.schedules import ALL_SCHEDULES
from pipelines.sensors import ALL_SENSORS

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
    *contingency_assets.N1_ASSETS,
    *alerting_assets.ALERTING_ASSETS,
    *report_assets.REPORT_ASSETS,
]

defs = Definitions(
    assets=ALL_ASSETS,
    jobs=ALL_JOBS,
    schedules=ALL_SCHEDULES,
    sensors=ALL_SENSORS,
    executor=executor_from_env(),  # GRIDLAKE_EXECUTOR: default / in_process / multiprocess / celery
    resources={
        "lake": LakeResource(),
        "landing": LandingResource(),
        "catalog": CatalogResource(),
        "grid": GridSettings(),
        "mlflow": MlflowResource(),
        "alerting": AlertingResource(),
        "alert_sink": AlertSinkResource(),
    },
)
