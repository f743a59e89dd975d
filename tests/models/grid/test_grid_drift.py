"""Issue 14: model monitoring. PSI against the training window (stored with the model), realised
precision of settled alerts against confirmed incidents, and the drift alert's shape."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from models.grid.drift import DriftConfig, drift_report, psi, realised_precision, reference_profile

UTC = dt.timezone.utc


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    train = rng.normal(0, 1, 20_000)
    prof = reference_profile({"x": train, "score": rng.uniform(0, 1, 20_000)})
    same = drift_report(prof, {"x": rng.normal(0, 1, 5_000), "score": rng.uniform(0, 1, 5_000)}, "m:v1")
    assert same["drifted"].to_list() == [False, False] and same["value"].max() < 0.02
    shifted = drift_report(prof, {"x": rng.normal(1.0, 1, 5_000)}, "m:v1").row(0, named=True)
    assert shifted["metric"] == "input:x" and shifted["value"] > 0.25 and shifted["drifted"] is True
    few = drift_report(prof, {"x": rng.normal(3.0, 1, 50)}, "m:v1").row(0, named=True)
    assert few["drifted"] is None and few["rows"] == 50  # too few rows to tell
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0


def test_realised_precision_counts_settled_alerts_confirmed_by_incidents():
    t = dt.datetime(2026, 6, 1, 10, tzinfo=UTC)
    alerts = pl.DataFrame(
        {
            "asset_id": ["M1", "M2", "M3", "M4"],
            "window_start": [t, t, t, t + dt.timedelta(days=20)],
            "window_end": [t + dt.timedelta(hours=1)] * 3 + [t + dt.timedelta(days=20, hours=1)],
        }
    )
    events = pl.DataFrame(
        {
            "asset_id": ["M1", "M3"],
            "start_time": [t - dt.timedelta(hours=5), t + dt.timedelta(days=2)],
            "end_time": [t + dt.timedelta(days=1), t + dt.timedelta(days=3)],
        }
    )
    r = realised_precision(alerts, events, t + dt.timedelta(days=21), DriftConfig(settle_days=7))
    # M4's window ended a day ago: not settled; M1 confirmed, M2 not, M3's incident is later than its window
    assert r == {"settled_alerts": 3, "confirmed": 1, "precision": pytest.approx(0.3333, abs=1e-4)}


@pytest.mark.slow
def test_a_fitted_ensemble_carries_its_training_profile_and_sees_a_unit_change(grid_data):
    from contracts.profile import load_profile
    from models.grid.anomaly import AnomalyEnsemble
    from models.grid.config import AlertThresholds, AnomalyConfig, FeatureConfig
    from models.grid.features import meter_features

    fc = FeatureConfig.from_profile(load_profile())
    f = meter_features(grid_data["meter_readings"], fc)
    m = AnomalyEnsemble(
        "meter",
        fc,
        AlertThresholds.from_bands(load_profile().alert_bands.anomaly),
        config=AnomalyConfig(n_estimators=8, max_train_rows=3000, ae_epochs=1, nystroem_components=16),
    ).fit(f)
    assert set(m.drift_profile_) == set(m.features) | {"score"}
    day = f.tail(5_000)
    ok = drift_report(m.drift_profile_, {c: day[c].to_numpy() for c in m.features}, "meter:v1")
    # a head-end that starts reporting voltage in kV: v_dev_nominal collapses to -1
    bad = day.with_columns(pl.lit(-0.999).alias("v_dev_nominal"))
    rep = drift_report(m.drift_profile_, {c: bad[c].to_numpy() for c in m.features}, "meter:v1")
    assert rep.filter(pl.col("metric") == "input:v_dev_nominal")["drifted"][0] is True
    assert not ok.filter(pl.col("metric") == "input:v_dev_nominal")["drifted"][0]


def test_model_drift_alert_shape():
    from streaming_bridge.model_alerts import model_drift_alert

    a = model_drift_alert(
        model="grid_anomaly_meter:v3",
        metric="score",
        value=0.4,
        threshold=0.25,
        day="2026-06-02",
        at=dt.datetime(2026, 6, 3, 1, tzinfo=UTC),
    )
    assert a.labels == {
        "alertname": "ModelDrift",
        "severity": "warning",
        "asset_type": "model",
        "asset_id": "grid_anomaly_meter:v3",
        "metric": "score",
    }
    assert "PSI 0.400 above 0.250" in a.annotations["summary"]
    p = model_drift_alert(
        model="m",
        metric="realised_precision",
        value=0.1,
        threshold=0.2,
        day="d",
        at=dt.datetime(2026, 6, 3, tzinfo=UTC),
    )
    assert "realised precision 0.100 below 0.200" in p.annotations["summary"]
    with pytest.raises(ValueError, match="needs a model"):
        model_drift_alert(
            model="", metric="score", value=1.0, threshold=0.25, day="d", at=dt.datetime(2026, 6, 3, tzinfo=UTC)
        )


def test_failure_alerts_are_confirmed_by_a_failure_within_their_horizon():
    t = dt.datetime(2026, 6, 1, 10, tzinfo=UTC)
    alerts = pl.DataFrame(
        {
            "asset_id": ["T1", "T2"],
            "window_start": [t, t],
            "window_end": [t + dt.timedelta(hours=1)] * 2,
        }
    )
    # T1 fails 50 h after its alert (a correct early warning); T2 never fails
    events = pl.DataFrame(
        {"asset_id": ["T1"], "start_time": [t + dt.timedelta(hours=50)], "end_time": [t + dt.timedelta(hours=60)]}
    )
    later = t + dt.timedelta(days=10)
    assert realised_precision(alerts, events, later)["confirmed"] == 0  # overlap only: the warning is not credited
    r = realised_precision(alerts, events, later, lead_h=72.0)
    assert r["settled_alerts"] == 2 and r["confirmed"] == 1 and r["precision"] == 0.5


def test_monitor_model_flags_a_drifted_failure_model_for_retraining():
    from models.grid.drift import monitor_model, needs_retraining

    rng = np.random.default_rng(1)
    prof = reference_profile({"excess_rise_6h": rng.normal(0, 0.5, 20_000), "score": rng.beta(0.3, 20, 20_000)})
    no_alerts = pl.DataFrame(
        schema={"asset_id": pl.Utf8, "window_start": pl.Datetime("us", "UTC"), "window_end": pl.Datetime("us", "UTC")}
    )
    no_events = pl.DataFrame(
        schema={"asset_id": pl.Utf8, "start_time": pl.Datetime("us", "UTC"), "end_time": pl.Datetime("us", "UTC")}
    )
    at = dt.datetime(2026, 6, 20, tzinfo=UTC)
    ok = monitor_model(
        "grid_failure:v2",
        prof,
        {"excess_rise_6h": rng.normal(0, 0.5, 1_000), "score": rng.beta(0.3, 20, 1_000)},
        no_alerts,
        no_events,
        at,
        lead_h=72.0,
    )
    assert ok["metric"].to_list() == ["input:excess_rise_6h", "score", "realised_precision"]
    assert needs_retraining(ok) is None
    # a SCADA feed whose top-oil sensor reads 3 K high after a firmware change
    bad = monitor_model(
        "grid_failure:v2",
        prof,
        {"excess_rise_6h": rng.normal(3, 0.5, 1_000), "score": rng.beta(0.3, 20, 1_000)},
        no_alerts,
        no_events,
        at,
        lead_h=72.0,
    )
    why = needs_retraining(bad)
    assert why is not None and "input:excess_rise_6h" in why and "score" not in why
