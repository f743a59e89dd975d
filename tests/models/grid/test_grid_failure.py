from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest

from models.grid.failure import (
    FAILURE_FEATURES,
    FailureConfig,
    FailureModel,
    evaluate_failure,
    failure_targets,
    hourly_snapshots,
    outage_impact,
)
from models.grid.features import FeatureInputError


@pytest.fixture(scope="module")
def snaps(grid_sim, grid_data):
    s = hourly_snapshots(grid_data["scada"], grid_sim.reference()["ref_transformers"], grid_data["weather"])
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
    m = FailureModel(FailureConfig(n_estimators=40)).fit(t)
    p = m.predict(s)
    assert p["failure_probability_72h"].is_between(0, 1).all() and (p["rul_hours"] > 0).all()
    ev = evaluate_failure(p, t, grid_sim.truth()["truth_events"], 0.5)
    assert ev["roc_auc"] > 0.9  # in-sample: the model must at least fit what it saw
    # the hours right before failures should look riskier than the rest
    assert p.join(t, on=["transformer_id", "as_of"]).filter(pl.col("fails_within"))["failure_probability_72h"].mean() > 0.5


def test_fit_without_failures_is_refused(snaps):
    _, t = snaps
    with pytest.raises(ValueError, match="failures"):
        FailureModel().fit(t.with_columns(pl.lit(False).alias("fails_within")))


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
        grid_data["meter_readings"].filter(pl.col("meter_id").is_in(one["meter_id"].to_list()))
        .group_by("meter_id").agg(pl.col("demand_kw").mean().clip(lower_bound=0))["demand_kw"].sum(), rel=1e-9)
    assert kw.len() > 0
    with pytest.raises(FeatureInputError, match="T00001"):
        outage_impact(ref_m, ref_t.filter(pl.col("transformer_id") != "T00001"))
