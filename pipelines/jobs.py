"""Every job of the code location, by the asset groups (or assets) it materialises.

Asset groups are named where the assets are defined (assets/*.py); a job here only selects them.
"""

from dagster import AssetSelection, define_asset_job

from assets.grid_ml import SCORING_GROUP as GRID_ML_SCORING_GROUP
from assets.grid_ml import TRAINING_GROUP as GRID_ML_TRAINING_GROUP
from assets.optimization import GROUP as OPTIMIZATION_GROUP
from assets.partitions import daily_open

# -- spine ------------------------------------------------------------------------------------
reference_job = define_asset_job(
    "load_reference",
    selection=AssetSelection.groups("reference", "truth"),
    description="Topology and simulator truth from the landing zone",
)
daily_ingest_job = define_asset_job(
    "daily_ingest",
    selection=AssetSelection.groups("bronze", "silver", "quarantine")
    | AssetSelection.assets("gold_load_hourly", "gold_load_daily", "gold_grid_health_daily"),
    description="The main job: landing -> bronze/silver/quarantine -> gold for one utility-local day",
)
monthly_rollup_job = define_asset_job("monthly_rollup", selection=AssetSelection.assets("gold_load_monthly"))
catalog_job = define_asset_job("refresh_catalog", selection=AssetSelection.assets("duckdb_catalog"))

# -- forecasting (assets/forecasting.py) --------------------------------------------------------
forecast_training_job = define_asset_job(
    "forecast_training",
    selection=AssetSelection.groups("forecast_training"),
    description="Nightly: train, backtest, register, promote",
)
forecast_scoring_job = define_asset_job(
    "forecast_scoring",
    selection=AssetSelection.assets(
        "gold_load_forecast", "gold_solar_forecast", "gold_peak_demand", "gold_forecast_accuracy", "gold_solar_ramps"
    ),
    partitions_def=daily_open,
    description="Hourly: champion forecasts for the current local day, its peak demand, PV forecast ramps, and the accuracy of past issues (drift alert)",
)

# -- grid ML (assets/grid_ml.py) ----------------------------------------------------------------
grid_ml_training_job = define_asset_job(
    "grid_ml_training",
    selection=AssetSelection.groups(GRID_ML_TRAINING_GROUP),
    description="Nightly: retrain the grid models on the last window_days; promote only on a better evaluation",
)
grid_ml_scoring_job = define_asset_job(
    "grid_ml_scoring",
    selection=AssetSelection.groups(GRID_ML_SCORING_GROUP),
    partitions_def=daily_open,
    description="Score one utility-local day into the grid gold tables (anomaly scores, alerts, risk, segments, DR)",
)

# -- optimisation (assets/optimization.py) ------------------------------------------------------
optimization_job = define_asset_job(
    "optimization_daily",
    selection=AssetSelection.groups(OPTIMIZATION_GROUP),
    partitions_def=daily_open,
    description="Battery, EV, DC-OPF and UC schedules for one local day from the newest forecasts (on demand: any partition)",
)

# -- alerting (assets/alerting.py; sensors in pipelines/sensors.py) --------------------------------
alert_notifications_job = define_asset_job(
    "post_batch_alerts",
    selection=AssetSelection.assets("alert_notifications"),
    partitions_def=daily_open,
    description="Post the day's high-severity gold alerts to Alertmanager (the streaming bridge's outbox and client)",
)
model_drift_alerts_job = define_asset_job(
    "post_model_drift_alerts",
    selection=AssetSelection.assets("model_drift_notifications"),
    partitions_def=daily_open,
    description="Post the day's drifted models (gold_model_drift) to Alertmanager: retrain them",
)
failure_risk_rescoring_job = define_asset_job(
    "failure_risk_rescoring",
    selection=AssetSelection.assets("gold_transformer_risk"),
    partitions_def=daily_open,
    description="Re-score transformer failure risk for a day; requested by a critical live alert on a transformer",
)

# -- report (assets/report.py) -------------------------------------------------------------------
report_job = define_asset_job(
    "publish_report",
    selection=AssetSelection.assets("daily_report"),
    partitions_def=daily_open,
    description="The day's self-contained HTML report (warehouse/report/index.html)",
)

FORECAST_JOBS = [forecast_training_job, forecast_scoring_job]
ALERTING_JOBS = [alert_notifications_job, model_drift_alerts_job, failure_risk_rescoring_job]
GRID_ML_JOBS = [grid_ml_training_job, grid_ml_scoring_job]
# -- N-1 security (assets/contingency.py) ---------------------------------------------------------
n1_screening_job = define_asset_job(
    "n1_screening_daily",
    selection=AssetSelection.assets("gold_n1_screening"),
    partitions_def=daily_open,
    description="N-1 line-contingency screening of the day's peak-hour DC-OPF (after optimization_daily)",
)

OPT_JOBS = [optimization_job]
ALL_JOBS = [
    reference_job,
    daily_ingest_job,
    monthly_rollup_job,
    catalog_job,
    *FORECAST_JOBS,
    *GRID_ML_JOBS,
    *OPT_JOBS,
    n1_screening_job,
    *ALERTING_JOBS,
    report_job,
]
