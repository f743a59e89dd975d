from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from contracts.profile import load_profile
from models.grid.alerts import build_alerts, fingerprint, to_gold_scores
from models.grid.anomaly import AnomalyEnsemble
from models.grid.config import AlertThresholds, AnomalyConfig, FeatureConfig
from models.grid.evaluate import event_detection, label_readings, reading_metrics
from models.grid.features import FeatureInputError, meter_features, transformer_features

#: the simulator's (the demo utility's) zone
FC = FeatureConfig.from_profile(load_profile())
BANDS = AlertThresholds.from_bands(load_profile().alert_bands.anomaly)

SMALL = AnomalyConfig(n_estimators=16, max_train_rows=6000, ae_epochs=2, nystroem_components=32, seed=1)


@pytest.fixture(scope="module")
def tx(grid_sim, grid_data):
    f = transformer_features(grid_data["scada"], grid_sim.reference()["ref_transformers"], grid_data["weather"], FC)
    lab = label_readings(f, grid_sim.truth()["truth_events"], stream="transformer")
    model = AnomalyEnsemble("transformer", FC, BANDS, config=SMALL).fit(f, lab.is_not_null())
    return f, lab, model


@pytest.fixture(scope="module")
def meters(grid_sim, grid_data):
    f = meter_features(grid_data["meter_readings"], FC)
    lab = label_readings(f, grid_sim.truth()["truth_events"], grid_sim.reference()["ref_meters"], "meter")
    model = AnomalyEnsemble("meter", FC, BANDS, config=SMALL).fit(f, lab.is_not_null())
    return f, lab, model


def test_scores_are_probabilities_and_bands_follow_config(tx):
    f, _, model = tx
    s = model.score(f)
    for c in ("score", "score_isolation_forest", "score_autoencoder", "score_ocsvm"):
        assert s[c].min() >= 0.0 and s[c].max() <= 1.0
    crit = s.filter(pl.col("status") == "critical")
    assert crit.height and crit["score"].min() >= 0.95
    assert s.filter(pl.col("status") == "monitoring")["score"].is_between(0.7, 0.85, closed="left").all()
    assert s.filter(pl.col("status") != "normal")["reason"].null_count() == 0
    strict = replace(model, thresholds=AlertThresholds(0.9, 0.97, 0.99))
    assert strict.score(f).filter(pl.col("status") == "critical").height < crit.height


def test_events_score_higher_than_normal(tx, meters):
    for f, lab, model in (tx, meters):
        s = model.score_arrays(f)["score"]
        ev = lab.is_not_null().to_numpy()
        assert s[ev].mean() > 5 * s[~ev].mean()
    f, lab, model = tx
    m = reading_metrics(lab, model.score_arrays(f)["score"], 0.85)
    # zero volts and zero load; the tiny test model (16 trees, 2 epochs) still misses some
    assert m["transformer_failure"]["recall"] > 0.8


def test_event_detection_reports_delay(grid_sim, tx):
    f, _, model = tx
    d = event_detection(f, model.score_arrays(f)["score"], 0.85, grid_sim.truth()["truth_events"], stream="transformer")
    assert d["transformer_failure"]["detection_rate"] == 1.0
    assert d["transformer_failure"]["median_delay_h"] < 1.0


def _same_as_reference(model, f, s):
    """The fast scorer against the libraries' own calls: the same band for every row, scores within 2e-3
    for 99.9 % of rows (float32 kernels move raw scores by ~1e-7, which a steep calibration can magnify)."""
    ref = model._score_arrays_reference(f)["score"]
    bands = [model.thresholds.monitoring, model.thresholds.alert, model.thresholds.critical]
    assert (np.digitize(ref, bands) != np.digitize(s, bands)).sum() <= max(1, len(s) // 5000)
    assert np.quantile(np.abs(ref - s), 0.999) < 2e-3


def test_cold_start_trains_and_scores_without_labels_calibrated_on_its_own_distribution(tx):
    """Zero incidents: the ensemble still fits and scores; the bands are tail shares of the data
    (alert = the top ``contamination``, monitoring twice that, critical a third), and events still
    rank above normal readings. The fast scorer agrees with the libraries' own calls."""
    from sklearn.metrics import roc_auc_score

    f, lab, supervised = tx
    assert supervised.mode == "semi_supervised"
    cold = AnomalyEnsemble("transformer", FC, BANDS, config=SMALL).fit(f, np.zeros(f.height, dtype=bool))
    none = AnomalyEnsemble("transformer", FC, BANDS, config=SMALL).fit(f)  # labels=None: the same cold start
    assert cold.mode == none.mode == "cold_start" and cold.fit_report_["calibration_anomalies"] == 0
    s = cold.score_arrays(f)["score"]
    np.testing.assert_array_equal(s, none.score_arrays(f)["score"])
    assert 0.0 <= s.min() and s.max() <= 1.0
    c = SMALL.contamination
    shares = {b: float((s >= b).mean()) for b in (0.70, 0.85, 0.95)}
    assert 0.5 * c <= shares[0.85] <= 2.0 * c, shares
    assert shares[0.70] > shares[0.85] > shares[0.95] > 0, shares
    y = lab.is_not_null().to_numpy()
    assert roc_auc_score(y, s) > 0.8
    _same_as_reference(cold, f, s)
    # fewer labelled rows than min_labelled_rows on the calibration assets: still a cold start
    few = np.zeros(f.height, dtype=bool)
    few[np.flatnonzero(y)[:3]] = True
    assert AnomalyEnsemble("transformer", FC, BANDS, config=SMALL).fit(f, few).mode == "cold_start"


def test_missing_feature_and_wrong_kind_are_named(tx):
    f, _, model = tx
    with pytest.raises(FeatureInputError, match="excess_rise"):
        model.score(f.drop("excess_rise"))
    with pytest.raises(ValueError, match="kind"):
        AnomalyEnsemble("feeder", FC, BANDS)


def test_save_load_round_trip_and_fast_ocsvm(tx, tmp_path):
    f, _, model = tx
    again = AnomalyEnsemble.load(model.save(tmp_path / "m.joblib"))
    a, b = model.score_arrays(f.head(500)), again.score_arrays(f.head(500))
    assert np.allclose(a["score"], b["score"])
    xs = model._scaled(f.head(500))
    assert np.allclose(model._ocsvm_decision(xs), model.ocsvm_.decision_function(xs), rtol=1e-3, atol=1e-3)


def test_alerts_are_deduplicated_with_stable_fingerprints(tx):
    f, _, model = tx
    s = model.score(f)
    a1 = build_alerts(s, "transformer", model.thresholds, "v1", tz=FC.timezone)
    a2 = build_alerts(model.score(f), "transformer", model.thresholds, "v1", tz=FC.timezone)
    assert a1.height > 0 and a1["fingerprint"].to_list() == a2["fingerprint"].to_list()
    assert a1["fingerprint"].n_unique() == a1.height
    r = a1.row(0, named=True)
    assert r["fingerprint"] == fingerprint("transformer", r["asset_id"], "anomaly_score", r["window_start"])
    flagged = s.filter(pl.col("score") >= 0.85)
    assert a1["n_points"].sum() == flagged.height
    assert set(a1["severity"]) <= {"alert", "critical"}
    g = to_gold_scores(s, "transformer", "v1", FC.timezone)
    assert g.columns[0] == "date" and g.height == f.height


def test_incident_labels_learn_the_weights_while_bands_stay_tail_shares(tx):
    """Incidents confirm only part of the events: with band_calibration='tail' the labels calibrate the
    detectors and weight the vote, and the bands remain tail shares (a calibrated P(confirmed) would
    rarely reach them). The labelled ranking is at least as good as the cold start's."""
    from sklearn.metrics import average_precision_score

    f, lab, _ = tx
    y = lab.is_not_null().to_numpy()
    ids = lab.filter(pl.Series(y)).len()
    assert ids > 0
    partial = y.copy()
    partial[np.flatnonzero(y)[::2]] = False  # half the anomalous readings never confirmed
    cfg = replace(SMALL, band_calibration="tail")
    semi = AnomalyEnsemble("transformer", FC, BANDS, config=cfg).fit(f, partial)
    cold = AnomalyEnsemble("transformer", FC, BANDS, config=cfg).fit(f)
    assert semi.mode == "semi_supervised_tail" and cold.mode == "cold_start"
    s = semi.score_arrays(f)["score"]
    share = float((s >= 0.85).mean())
    labelled = semi.fit_report_["calibration_anomalies"] / semi.fit_report_["calibration_rows"]
    assert 0.3 * max(cfg.contamination, labelled) <= share <= 3.0 * max(cfg.contamination, labelled)
    assert average_precision_score(y, s) >= average_precision_score(y, cold.score_arrays(f)["score"]) - 0.02
    _same_as_reference(semi, f, s)
    with pytest.raises(ValueError, match="band_calibration"):
        AnomalyConfig(band_calibration="other")
