"""The fast scorer must give the fitted ensemble's own numbers: sklearn's ``score_samples`` /
``decision_function``, the torch module over every window, sklearn's isotonic and logistic predicts
(``AnomalyEnsemble._score_arrays_reference``), whatever the batch size."""

from __future__ import annotations

import pickle

import numpy as np
import polars as pl
import pytest

from contracts.profile import load_profile
from models.grid import anomaly as A
from models.grid.anomaly import DETECTORS, AnomalyEnsemble
from models.grid.config import AlertThresholds, AnomalyConfig, FeatureConfig
from models.grid.evaluate import label_readings
from models.grid.features import meter_features

#: the simulator's (the demo utility's) zone
FC = FeatureConfig.from_profile(load_profile())
BANDS = AlertThresholds.from_bands(load_profile().alert_bands.anomaly)

# more trees than the other tests' model: the level-wise walk must handle every tree shape
CFG = AnomalyConfig(n_estimators=32, max_train_rows=6000, ae_epochs=2, nystroem_components=32, seed=3)


@pytest.fixture(scope="module")
def fitted(grid_sim, grid_data):
    f = meter_features(grid_data["meter_readings"], FC)
    lab = label_readings(f, grid_sim.truth()["truth_events"], grid_sim.reference()["ref_meters"], "meter")
    model = AnomalyEnsemble("meter", FC, BANDS, config=CFG).fit(f, lab.is_not_null())
    # some missing measures, as a meter without supply sends them
    rng = np.random.default_rng(0)
    rows = rng.choice(f.height, 300, replace=False)
    holes = np.zeros(f.height, dtype=bool)
    holes[rows] = True
    f = f.with_columns(
        pl.when(pl.Series(holes)).then(None).otherwise(pl.col("v_dev_nominal")).alias("v_dev_nominal"),
        pl.when(pl.Series(holes)).then(float("nan")).otherwise(pl.col("dev_rolling")).alias("dev_rolling"),
    )
    return f, model


def test_detectors_match_the_libraries(fitted):
    f, model = fitted
    assert f.height >= A._PARALLEL_ROWS  # the threaded, chunked path is the one under test
    fast, xs = model._raw(f)
    ref, xs_ref = model._raw_reference(f)
    np.testing.assert_array_equal(xs, xs_ref)
    # isolation forest and autoencoder: the same arithmetic in the same order
    np.testing.assert_allclose(fast[:, 0], ref[:, 0], rtol=1e-12, atol=0)
    np.testing.assert_allclose(fast[:, 1], ref[:, 1], rtol=1e-9, atol=1e-9)
    # OCSVM: sklearn computes projection and margin in float32 (its own results move by ~3e-8 with
    # the batch size); the fast path keeps sklearn's float32 kernel and sums in float64
    assert np.abs(fast[:, 2] - ref[:, 2]).max() < 1e-6
    assert not np.array_equal(fast[:, 0], np.roll(fast[:, 0], 1))  # not a constant


def test_calibration_and_vote_match_sklearn(fitted):
    f, model = fitted
    raw, _ = model._raw(f)
    fast = model._calibrated(raw)
    ref = model._calibrated_reference(raw)
    np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-12)
    scores = model.score_arrays(f)
    np.testing.assert_allclose(scores["score"], model.vote_.predict_proba(model._logit(ref))[:, 1], rtol=0, atol=1e-12)
    for i, d in enumerate(DETECTORS):
        np.testing.assert_allclose(scores[d], ref[:, i], rtol=0, atol=1e-12)


def test_end_to_end_scores_match_reference(fitted):
    f, model = fitted
    fast, ref = model.score_arrays(f), model._score_arrays_reference(f)
    for k in ("isolation_forest", "autoencoder"):
        np.testing.assert_allclose(fast[k], ref[k], rtol=0, atol=1e-9)
    # only the OCSVM's float32 round-off (above) reaches the score, through the isotonic steps
    diff = np.abs(fast["score"] - ref["score"])
    assert np.quantile(diff, 0.99) < 1e-9 and diff.max() < 1e-3


def test_any_batch_size_gives_the_batch_scores(fitted):
    """One reading with its window of context, a few hundred rows (unthreaded), the whole frame
    (threaded chunks): the same score for the same reading."""
    f, model = fitted
    full = model.score_arrays(f)
    w = model.feature_config.window
    ids = f["asset_id"].to_numpy()
    rng = np.random.default_rng(1)
    picks = [i for i in rng.choice(np.arange(w, f.height), 40, replace=False) if ids[i - w + 1] == ids[i]]
    assert len(picks) > 20
    for i in picks:
        one = model.score_arrays(f.slice(i - w + 1, w))  # < _SMALL_BATCH rows: level-wise tree walk
        for k in ("score", *DETECTORS):
            assert abs(one[k][-1] - full[k][i]) < 1e-12, (k, i)
    mid = model.score_arrays(f.slice(1000, 600))  # Cython apply path, one thread
    for k in ("score", *DETECTORS):
        np.testing.assert_allclose(mid[k][w:], full[k][1000 + w : 1600], rtol=0, atol=1e-12)
    # a single row without context still scores (its window is the row repeated)
    single = model.score(f.slice(5, 1))
    assert single.height == 1 and 0.0 <= single["score"][0] <= 1.0


def test_small_and_large_tree_walks_agree(fitted):
    f, model = fitted
    fast = model._fast()
    xs = model._scaled(f.head(3000))
    big = fast.iforest_score(xs)
    small = np.concatenate([fast.iforest_score(xs[a : a + 100]) for a in range(0, len(xs), 100)])
    np.testing.assert_allclose(small, big, rtol=1e-12, atol=0)
    np.testing.assert_allclose(big, -model.iforest_.score_samples(xs), rtol=1e-12, atol=0)


def test_fast_state_is_not_pickled_and_follows_refits(fitted, tmp_path):
    f, model = fitted
    head = f.head(2000)
    before = model.score_arrays(head)["score"]
    assert "_fast_scorer" in model.__dict__
    blob = model.to_bytes()
    assert b"_fast_scorer" not in blob
    again = AnomalyEnsemble.load(model.save(tmp_path / "m.joblib"))
    assert "_fast_scorer" not in again.__dict__
    np.testing.assert_array_equal(again.score_arrays(head)["score"], before)
    # swapping a fitted detector rebuilds the fast state from it
    clone = pickle.loads(pickle.dumps(model))
    clone.score_arrays(head)
    old = clone.__dict__["_fast_scorer"]
    clone.vote_ = pickle.loads(pickle.dumps(model.vote_))
    clone.vote_.intercept_ = clone.vote_.intercept_ + 3.0
    after = clone.score_arrays(head)["score"]
    assert clone.__dict__["_fast_scorer"] is not old
    assert (after > before).all()
