"""Issue 13: nightly training's memory grows with its sample, not with the training window.

At 10,000 meters x 21 days the anomaly fit turned the whole window into float64 matrices and
autoencoder windows (5+ GB) to use 40,000 sampled rows of them, and the hold-out metrics scored all
10 M rows to evaluate one day. These tests hold the bounded paths equal to the full ones and measure
the numpy memory (tracemalloc) per extra row of the window.
"""

from __future__ import annotations

import tracemalloc
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from contracts.profile import load_profile
from models.grid.anomaly import AnomalyEnsemble
from models.grid.config import AlertThresholds, AnomalyConfig, FeatureConfig
from models.grid.evaluate import anomaly_holdout_metrics, holdout_context, label_readings
from models.grid.features import local_date, meter_features, window_matrix
from models.grid.pipelines import train_anomaly

START, DAYS = date(2026, 6, 1), 8  # the grid_sim fixture's period (conftest)

FC = FeatureConfig.from_profile(load_profile())
TH = AlertThresholds.from_bands(load_profile().alert_bands.anomaly)
#: small detectors, and a sample far below the window's rows, as in the nightly run (40,000 of 10 M)
CFG = AnomalyConfig(n_estimators=8, ae_epochs=1, max_train_rows=2_000, max_calibration_rows=2_000, seed=0)


@pytest.fixture(scope="module")
def feats(grid_data):
    return meter_features(grid_data["meter_readings"], FC)


def test_window_rows_equal_the_same_rows_of_the_full_matrix(feats):
    rng = np.random.default_rng(1)
    rows = np.sort(rng.choice(feats.height, 3_000, replace=False))
    rows[:2] = [0, 1]  # an asset's first rows: edge padding
    cols = ("dev_rolling", "v_dev_rolling", "load_change", "flat_demand")
    fill = np.array([0.1, 0.2, 0.3, 0.4])
    full = window_matrix(feats, cols, FC.window, fill)
    assert np.array_equal(window_matrix(feats, cols, FC.window, fill, rows), full[rows])


@pytest.mark.slow  # ~30 s on the shared 2-core machine
def test_holdout_context_scores_the_held_out_rows_exactly_as_the_whole_frame(grid_sim, feats):
    """The held-out day with each asset's previous window-1 readings: the same scores and metrics."""
    model = AnomalyEnsemble("meter", feature_config=FC, thresholds=TH, config=CFG).fit(feats)
    is_eval = feats.select(local_date("time", FC.timezone) >= START + timedelta(days=DAYS - 1)).to_series().to_numpy()
    ctx = holdout_context(feats, is_eval, FC.window)
    assert 0 < is_eval.sum() < ctx.sum() < feats.height / 2  # context rows added, far from the whole frame
    full = model.score_arrays(feats)["score"][is_eval]
    part = model.score_arrays(feats.filter(pl.Series(ctx)))["score"][is_eval[ctx]]
    np.testing.assert_allclose(part, full, rtol=0, atol=1e-12)
    lab = label_readings(feats, grid_sim.truth()["truth_events"], grid_sim.reference()["ref_meters"], "meter")
    assert lab.filter(pl.Series(is_eval)).is_not_null().any()  # positives among the held-out rows
    m_full = anomaly_holdout_metrics(model, feats, lab, is_eval)
    m_part = anomaly_holdout_metrics(model, feats.filter(pl.Series(ctx)), lab.filter(pl.Series(ctx)), is_eval[ctx])
    assert m_part.keys() == m_full.keys()
    for k, v in m_full.items():
        assert m_part[k] == pytest.approx(v, abs=1e-12), k


def _numpy_peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow  # ~60 s: four fits
def test_training_memory_per_extra_row_is_bounded_by_the_sample_not_the_window(grid_sim, feats):
    """Peak numpy memory (tracemalloc) of the fit and of the whole train pipeline, at half and all of the
    fleet: per extra row of the window it grows by < 150 bytes (the fit made float64 matrices and 8-reading
    autoencoder windows of every row, ~750 bytes per row, to train on a 2,000-row sample)."""
    meters = feats["asset_id"].unique().sort()
    half = feats.filter(pl.col("asset_id").is_in(meters.head(meters.len() // 2).implode()))
    ref = grid_sim.reference()["ref_meters"]
    events = grid_sim.truth()["truth_events"]
    eval_from = START + timedelta(days=DAYS - 1)

    def fit(f):
        return lambda: AnomalyEnsemble("meter", feature_config=FC, thresholds=TH, config=CFG).fit(f)

    def train(f):
        return lambda: train_anomaly("meter", f, events, ref, FC.timezone, eval_from, eval_from, CFG, FC, TH)

    train(half)()  # imports and one-off allocations (torch, lightning, mlflow) before anything is measured
    extra = feats.height - half.height
    fit_per_row = (_numpy_peak(fit(feats)) - _numpy_peak(fit(half))) / extra
    train_per_row = (_numpy_peak(train(feats)) - _numpy_peak(train(half))) / extra
    assert fit_per_row < 150, f"fit: {fit_per_row:.0f} bytes per extra row"
    assert train_per_row < 150, f"train_anomaly: {train_per_row:.0f} bytes per extra row"
