"""Grid ML: anomaly ensemble, transformer failure/RUL, customer segments, recommendations and
demand response. Plain library code on polars frames (no Dagster import): the assets in assets/grid_ml.py
call these functions and write the gold tables declared in :mod:`contracts.grid`.

Heavy dependencies (torch, sklearn, xgboost) are imported inside the functions that need them.
"""

from .config import AlertThresholds, AnomalyConfig, FeatureConfig

__all__ = ["AlertThresholds", "AnomalyConfig", "FeatureConfig"]
