"""The one place grid models talk to MLflow.

``models.registry`` (the forecasting teammate's champion/challenger registry) did not exist when this
was written; everything in models.grid and the benchmark logs through :func:`log_run`, so switching
to the shared registry is a change to this function only.
"""

from __future__ import annotations

import os
from pathlib import Path


def log_run(
    experiment: str,
    run_name: str,
    params: dict,
    metrics: dict[str, float],
    artifacts: dict[str, Path] | None = None,
    tracking_uri: str | None = None,
) -> str:
    """Log one run (params, numeric metrics, files) and return its run id.

    ``tracking_uri`` defaults to ``$MLFLOW_TRACKING_URI``, else a local ``./mlruns`` file store.
    """
    import mlflow

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or Path("mlruns").resolve().as_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None})
        for name, path in (artifacts or {}).items():
            mlflow.log_artifact(str(path), artifact_path=name)
        return run.info.run_id
