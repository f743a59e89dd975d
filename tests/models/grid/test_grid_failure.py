from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest

from contracts.profile import load_profile
from models.grid.config import AlertThresholds, FeatureConfig
from models.grid.failure import (
    FAILURE_FEATURES,
    FailureConfig,
    FailureModel,
    evaluate_failure,
    failure_holdout_metrics,
    failure_snapshots,
    failure_targets,
    hourly_snapshots,
    outage_impact,
    recorded_failures,
    to_gold_risk,
)
from models.grid.features import FeatureInputError

#: the simulator's (the demo utility's) zone
FC = FeatureConfig.from_profile(load_profile())
RISK_BANDS = AlertThresholds.from_bands(load_profile().alert_bands.failure_risk)


@pytest.fixture(scope="module")
def snaps(grid_sim, grid_data):
    s = hourly_snapshots(grid_data["scada"], grid_sim.reference()["ref_transformers"], grid_data["weather"], cfg=FC)
    return s, failure_targets(s, grid_sim.truth()["truth_events"])


def test_snapshots_are_hourly_with_all_features(grid_sim, snaps):
    s, _ = snaps
    n_tx = grid_sim.reference()["ref_transformers"].height
    assert s["transformer_id"].n_unique() == n_tx
    assert s.group_by("transformer_id").len()["len"].max() <= 8 * 24 + 1
    assert set(FAILURE_FEATURES) <= set(s.columns)
    assert s["age_years"].min() >= 0 and s["days_since_maintenance"].min() >= 1


def test_targets_mark_exactly_the_72h_before_each_failure(grid_sim, snaps):
    _, t = snaps
    fails = grid_sim.truth()["truth_events"].filter(pl.col("event_type") == "transformer_failure")
    assert fails.height > 0
    e = fails.row(0, named=True)
    rows = t.filter(pl.col("transformer_id") == e["asset_id"])
    pos = rows.filter(pl.col("fails_within"))
    assert pos["as_of"].max() <= e["start_time"]
    assert pos["as_of"].min() >= e["start_time"] - timedelta(hours=72)
    down = rows.filter(~pl.col("in_service"))
    assert down.height > 0 and down["as_of"].min() > e["start_time"]
    assert rows.filter(pl.col("fails_within"))["rul_upper"].is_finite().all()
    other = t.filter(~pl.col("transformer_id").is_in(fails["asset_id"].to_list()))
    assert not other["fails_within"].any() and other["rul_upper"].is_infinite().all()  # right-censored


def test_fit_predict_and_evaluate(grid_sim, snaps):
    s, t = snaps
    # this small fleet has a handful of failures: lower the bar so the classifier (not the prior) is fitted
    m = FailureModel(FailureConfig(RISK_BANDS, n_estimators=40, min_recorded_failures=1)).fit(t)
    assert m.mode == "supervised" and m.fit_report_["recorded_failures"] >= 1
    p = m.predict(s)
    assert p["failure_probability_72h"].is_between(0, 1).all() and (p["rul_hours"] > 0).all()
    ev = evaluate_failure(p, t, grid_sim.truth()["truth_events"], 0.5)
    assert ev["roc_auc"] > 0.9  # in-sample: the model must at least fit what it saw
    # the hours right before failures should look riskier than the rest
    assert (
        p.join(t, on=["transformer_id", "as_of"]).filter(pl.col("fails_within"))["failure_probability_72h"].mean() > 0.5
    )


def test_without_recorded_failures_the_physics_prior_scores_and_flags_the_run_up(grid_sim, snaps):
    """No failure recorded at all (cold start): the model falls back to the thermal prior, says so, and
    still ranks the hours before the (unseen) failures far above the rest and reaches the alert band
    before each failure whose run-up lies inside the data."""
    s, t = snaps
    blind = failure_targets(s, grid_sim.truth()["truth_events"].clear())
    m = FailureModel(FailureConfig(RISK_BANDS)).fit(blind)
    assert m.mode == "physics_prior" and m.survival_ is None and m.classifier_ is None
    assert m.fit_report_["recorded_failures"] == 0 and m.fit_report_["calibration"].startswith("none")
    p = m.predict(s)
    assert p["failure_probability_72h"].is_between(0, 1).all() and (p["rul_hours"] >= 0).all()
    ev = evaluate_failure(p, t, grid_sim.truth()["truth_events"], RISK_BANDS.alert)
    assert ev["roc_auc"] > 0.85
    assert ev["failures"] >= 1 and ev["warned"] == ev["failures"] and ev["median_lead_h"] >= 24
    # healthy transformers stay out of the alert band
    fails = grid_sim.truth()["truth_events"].filter(pl.col("event_type") == "transformer_failure")
    healthy = p.filter(~pl.col("transformer_id").is_in(fails["asset_id"].to_list()))
    assert (healthy["failure_probability_72h"] < RISK_BANDS.alert).mean() > 0.999


def test_few_recorded_failures_use_the_prior_many_use_the_classifier(snaps):
    _, t = snaps
    n = recorded_failures(t.filter(pl.col("in_service")))
    assert n >= 2
    assert FailureModel(FailureConfig(RISK_BANDS, n_estimators=10, min_recorded_failures=n + 1)).fit(t).mode == (
        "physics_prior"
    )
    m = FailureModel(FailureConfig(RISK_BANDS, n_estimators=10, min_recorded_failures=n)).fit(t)
    assert m.mode == "supervised" and m.survival_ is not None


def test_an_unrecorded_failures_run_up_is_not_learnt_as_healthy(grid_sim, snaps):
    """Incidents miss a failure that SCADA saw (supply lost): the hours before it are left out of training
    (in_service False) instead of counting as healthy; the recorded ones stay positives."""
    s, t = snaps
    fails = grid_sim.truth()["truth_events"].filter(pl.col("event_type") == "transformer_failure").sort("start_time")
    missed, kept = fails.row(0, named=True), fails.slice(1)
    tk = failure_targets(s, kept)
    before = tk.filter(
        (pl.col("transformer_id") == missed["asset_id"])
        & (pl.col("as_of") <= missed["start_time"])
        & (pl.col("as_of") > missed["start_time"] - timedelta(hours=72))
    )
    assert before.height > 0 and not before["in_service"].any() and not before["fails_within"].any()
    naive = failure_targets(s, kept, unknown_before_outage=False)
    assert naive.join(before.select("transformer_id", "as_of"), on=["transformer_id", "as_of"])["in_service"].all()
    # the recorded failures keep their positives
    assert tk["fails_within"].sum() == t.filter(~pl.col("transformer_id").eq(missed["asset_id"]))["fails_within"].sum()


def test_isotonic_calibration_is_monotone_and_reported(snaps):
    _, t = snaps
    c = FailureConfig(RISK_BANDS, n_estimators=30, min_recorded_failures=1, calibration_folds=2)
    m = FailureModel(c).fit(t)
    assert m.fit_report_["calibration"] == "isotonic" and m.calibrator_ is not None
    x = t.filter(pl.col("in_service")).select(FAILURE_FEATURES).to_numpy().astype(np.float32)
    raw = m.classifier_.predict_proba(x)[:, 1]
    cal = m.probability(x)
    order = np.argsort(raw)
    assert (np.diff(cal[order]) >= -1e-12).all() and cal.min() >= 0 and cal.max() <= 1
    assert set(m.drift_profile_) == set(FAILURE_FEATURES) | {"score"}
    with pytest.raises(ValueError, match="calibration"):
        FailureModel(FailureConfig(RISK_BANDS, n_estimators=5, min_recorded_failures=1, calibration="platt")).fit(t)


def test_outage_impact_counts_customers_and_handles_empty_transformers(grid_sim, grid_data):
    ref_m, ref_t = grid_sim.reference()["ref_meters"], grid_sim.reference()["ref_transformers"]
    spare = pl.DataFrame({"transformer_id": ["SPARE1"]})
    imp = outage_impact(ref_m, pl.concat([ref_t.select("transformer_id"), spare]), grid_data["meter_readings"])
    assert imp.filter(pl.col("transformer_id") == "SPARE1").row(0) == ("SPARE1", 0, 0.0)
    assert imp["customers_downstream"].sum() == ref_m.height
    one = ref_m.filter(pl.col("transformer_id") == "T00001")
    kw = grid_data["meter_readings"].filter(pl.col("meter_id").is_in(one["meter_id"].to_list()))["demand_kw"]
    row = imp.filter(pl.col("transformer_id") == "T00001").row(0, named=True)
    assert row["customers_downstream"] == one.height and row["load_downstream_kw"] > 0
    assert row["load_downstream_kw"] == pytest.approx(
        grid_data["meter_readings"]
        .filter(pl.col("meter_id").is_in(one["meter_id"].to_list()))
        .group_by("meter_id")
        .agg(pl.col("demand_kw").mean().clip(lower_bound=0))["demand_kw"]
        .sum(),
        rel=1e-9,
    )
    assert kw.len() > 0
    with pytest.raises(FeatureInputError, match="T00001"):
        outage_impact(ref_m, ref_t.filter(pl.col("transformer_id") != "T00001"))


class _FlagOne:
    """A transformer anomaly model that scores exactly the alert threshold on one transformer, 0 elsewhere."""

    thresholds = AlertThresholds(0.5, 0.85, 0.95)

    def __init__(self, transformer_id: str):
        self.tid = transformer_id

    def score_arrays(self, features):
        return {"score": np.where(features["asset_id"].to_numpy() == self.tid, self.thresholds.alert, 0.0)}


def test_failure_snapshots_count_the_anomaly_models_alerts(grid_sim, grid_data):
    ref_t = grid_sim.reference()["ref_transformers"]
    scada = grid_data["scada"].filter(pl.col("sample_time") < datetime(2026, 6, 3, tzinfo=timezone.utc))
    snaps = failure_snapshots(scada, ref_t, grid_data["weather"], _FlagOne("T00001"), FC)
    assert snaps.drop("anomaly_count_7d").equals(
        hourly_snapshots(scada, ref_t, grid_data["weather"], cfg=FC).drop("anomaly_count_7d")
    )
    counts = snaps.group_by("transformer_id").agg(pl.col("anomaly_count_7d").max())
    per_tx = dict(counts.iter_rows())
    # less than 7 days of data: the last snapshot of T00001 counts every one of its samples (score == alert flags)
    assert per_tx["T00001"] == scada.filter(pl.col("transformer_id") == "T00001").height
    assert all(v == 0 for k, v in per_tx.items() if k != "T00001")


def _eval_targets(fails: list[bool]) -> pl.DataFrame:
    return pl.DataFrame({"transformer_id": [f"T{i}" for i in range(len(fails))], "fails_within": fails})


def _fixed(p: list[float]):
    """A failure model that predicts fixed probabilities (alert at 0.5)."""
    return SimpleNamespace(
        config=FailureConfig(RISK_BANDS), predict=lambda t: t.with_columns(pl.Series("failure_probability_72h", p))
    )


def test_failure_holdout_metrics_at_the_alert_threshold():
    p, y = [0.9, 0.6, 0.2, 0.4, 0.1], [True, False, True, False, False]
    m = failure_holdout_metrics(_fixed(p), _eval_targets(y))
    assert m["brier"] == pytest.approx(np.mean((np.array(p) - np.array(y)) ** 2))
    assert (m["eval_snapshots"], m["eval_positives"]) == (5.0, 2.0)
    # flagged at >= 0.5: 0.9 (true), 0.6 (false); the positive at 0.2 is missed
    assert (m["precision_at_alert"], m["recall_at_alert"]) == (0.5, 0.5)
    assert m["roc_auc"] == pytest.approx(4 / 6)  # 4 of the 6 (positive, negative) pairs are ordered right


def test_failure_holdout_metrics_without_positives_or_flags():
    m = failure_holdout_metrics(_fixed([0.1, 0.2]), _eval_targets([False, False]))
    assert m["roc_auc"] is None and m["recall_at_alert"] is None and m["precision_at_alert"] == 0.0


def test_to_gold_risk_clips_rul_fills_impact_and_uses_the_local_date():
    pred = pl.DataFrame(
        {
            "transformer_id": ["T1", "T2"],
            "as_of": [datetime(2026, 6, 8, 3, tzinfo=timezone.utc), datetime(2026, 6, 8, 12, tzinfo=timezone.utc)],
            "failure_probability_72h": [0.7, 0.1],
            "rul_hours": [-3.0, 40.0],
        }
    )
    impact = pl.DataFrame({"transformer_id": ["T1"], "customers_downstream": [12], "load_downstream_kw": [30.5]})
    r = {
        row["transformer_id"]: row
        for row in to_gold_risk(pred, impact, "m:v3", "America/New_York").iter_rows(named=True)
    }
    assert r["T1"]["date"] == date(2026, 6, 7) and r["T2"]["date"] == date(2026, 6, 8)
    assert r["T1"]["rul_hours"] == 0.0 and r["T2"]["rul_hours"] == 40.0
    assert (r["T1"]["customers_downstream"], r["T1"]["load_downstream_kw"]) == (12, 30.5)
    assert (r["T2"]["customers_downstream"], r["T2"]["load_downstream_kw"]) == (0, 0.0)
    assert {row["model_version"] for row in r.values()} == {"m:v3"}


def test_the_physics_prior_names_its_reason(grid_sim, snaps):
    from models.grid.failure import contributing_factors

    s, _ = snaps
    m = FailureModel(FailureConfig(RISK_BANDS)).fit(failure_targets(s, grid_sim.truth()["truth_events"].clear()))
    fac = contributing_factors(m, s)
    assert fac.height == s.height
    hot = m.predict(s).join(fac, on=["transformer_id", "as_of"]).filter(pl.col("failure_probability_72h") >= 0.85)
    assert hot.height > 0 and (hot["top_factor"] == "excess_above_min_72h").all()
    assert hot["factors"].str.contains("K/h").all()
