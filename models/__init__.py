"""gridlake models: forecasting (``models.forecast``), solar (``models.solar``) and the MLflow
registry (``models.registry``).

Plain library code: nothing here imports Dagster, so the same functions run in assets, notebooks,
benchmarks and tests. The Dagster layer (pipelines/) only wires them to tables and resources.
"""
