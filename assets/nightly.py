"""The nightly training run config shared by ``make demo`` (pipelines/demo.py) and ``make bench-pipeline``."""

from __future__ import annotations


def training_config(window: int, as_of: str) -> dict[str, dict]:
    """Run config of the nightly training jobs, over the ``window`` days before ``as_of``, sized for a 2-core laptop (README: `make demo`)."""
    fc = {"history_days": window, "backtest_days": 3, "as_of": as_of}
    grid = {"window_days": window, "min_days": 7, "eval_days": 1, "as_of": as_of}
    return {
        "load_forecast_models": {"config": {**fc, "n_estimators": 200}},
        "solar_forecast_models": {"config": {**fc, "n_estimators": 150}},
        "grid_anomaly_model": {"config": grid},
        "grid_failure_model": {"config": grid},
        "grid_segment_model": {"config": grid},
    }
