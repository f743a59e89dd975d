"""Issue 14: segments from load profiles alone (no labelled panel): k-means named from interpretable
descriptors; agreement with the simulator's archetypes, which the fit never sees, on another fleet."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest


def _config(**kw):
    from models.grid.segments import SegmentConfig

    return SegmentConfig(timezone="America/New_York", peak_hours=(16, 21), holiday_country="US", **kw)


def _fleet(seed: int, n: int = 360, days: int = 14):
    from models.grid.segments import profile_features
    from simulator import SimConfig, Simulator

    sim = Simulator(SimConfig(n_meters=n, start=date(2026, 6, 1), days=days, seed=seed))
    readings = pl.concat([sim.meter_readings(date(2026, 6, 1) + timedelta(days=i)) for i in range(days)])
    return sim, profile_features(readings, sim.reference()["ref_meters"], _config())


@pytest.mark.slow
def test_profiles_alone_recover_the_archetypes_of_an_unseen_fleet_with_descriptor_names():
    from sklearn.metrics import adjusted_rand_score

    from models.grid.segments import SegmentModel, describe

    sim_a, pa = _fleet(1)
    sim_b, pb = _fleet(2)
    m = SegmentModel(_config()).fit(pa)  # no panel: the truth is never passed
    j = m.predict(pb).join(sim_b.truth()["truth_customers"], on="meter_id")
    assert adjusted_rand_score(j["archetype"], j["segment"]) >= 0.8
    # every name is its cluster's descriptor reading; clusters that read the same are one segment
    assert len(m.cluster_name_) == _config().n_segments and len(m.names_) >= 8
    for c, name in m.cluster_name_.items():
        assert name == describe(m.descriptors_[c])
    # the same customers keep their names when the model is refitted with another seed
    again = SegmentModel(_config(seed=7)).fit(pa)
    assert (again.predict(pb)["segment"] == m.predict(pb)["segment"]).mean() >= 0.9


def test_describe_reads_the_descriptors():
    from models.grid.segments import describe, name_clusters

    base = {
        "peak_hour": 19.0,
        "night_share": 0.1,
        "morning_share": 0.12,
        "midday_share": 0.2,
        "evening_share": 0.5,
        "late_share": 0.05,
        "weekend_ratio": 1.0,
        "weekend_shape_change": 0.1,
        "peak_to_mean": 2.5,
        "pv_share": 0.0,
        "ev_share": 0.0,
        "seasonal_cv": 0.2,
        "avg_daily_kwh": 20.0,
        "members": 10,
    }
    assert describe(base) == "evening_residential_peak"
    assert describe({**base, "pv_share": 0.9}) == "solar_battery"
    assert describe({**base, "weekend_ratio": 0.3, "peak_hour": 11.0}) == "business_hours_commercial"
    assert describe({**base, "peak_to_mean": 1.2}) == "high_all_day"
    assert describe({**base, "peak_hour": 3.0}) == "efficiency_optimiser"
    names = name_clusters({0: base, 1: {**base, "members": 5, "avg_daily_kwh": 40.0}, 2: {**base, "pv_share": 1.0}})
    assert names == {0: "evening_residential_peak", 1: "evening_residential_peak", 2: "solar_battery"}
