from __future__ import annotations

from dataclasses import replace
from datetime import date
from types import SimpleNamespace

import polars as pl
import pytest
from sklearn.metrics import adjusted_rand_score

from models.grid.segments import (
    SegmentConfig,
    SegmentModel,
    profile_features,
    segment_distribution,
    segment_holdout_metrics,
)

#: the demo utility's zone, peak window and holiday calendar
CFG = SegmentConfig(timezone="America/New_York", peak_hours=(16, 21), holiday_country="US")


@pytest.fixture(scope="module")
def prof(grid_sim, grid_data):
    return profile_features(grid_data["meter_readings"], grid_sim.reference()["ref_meters"], CFG)


@pytest.fixture(scope="module")
def panel(grid_sim):
    return grid_sim.truth()["truth_customers"].rename({"archetype": "segment"})


def test_profiles_are_normalised_and_complete(prof, grid_sim):
    assert prof.height == grid_sim.reference()["ref_meters"].height
    cols = [f"wd_{h:02d}" for h in range(24)] + [f"we_{h:02d}" for h in range(24)]
    assert prof.select(cols).null_count().sum_horizontal().item() == 0
    mean_abs = prof.select(pl.mean_horizontal([pl.col(c).abs() for c in cols])).to_series()
    assert ((mean_abs - 1).abs() < 1e-3).all()


def test_segments_agree_with_archetypes_and_names_are_stable(prof, panel):
    m = SegmentModel(CFG).fit(prof, panel)
    seg = m.predict(prof).join(panel, on="meter_id", suffix="_true")
    assert adjusted_rand_score(seg["segment_true"], seg["segment"]) >= 0.6
    assert set(seg["segment"]) <= set(panel["segment"])
    # retrain on a subset, other seed, rows shuffled: the same meters keep their names
    m2 = SegmentModel(replace(CFG, seed=9)).fit(prof.sample(fraction=0.8, seed=1, shuffle=True), panel)
    same = (m2.predict(prof)["segment"] == m.predict(prof)["segment"]).mean()
    assert same >= 0.95
    assert sum(segment_distribution(seg).values()) == prof.height


def test_one_day_of_history_is_provisional(grid_data, grid_sim, prof, panel):
    m = SegmentModel(CFG).fit(prof, panel)
    one = grid_data["meter_readings"].filter(
        pl.col("reading_time").dt.convert_time_zone("America/New_York").dt.date() == date(2026, 6, 2)
    )
    p1 = profile_features(one, grid_sim.reference()["ref_meters"], CFG)
    seg = m.predict(p1)
    assert seg["provisional"].all() and (seg["history_days"] == 1).all()
    assert (p1["weekend_ratio"] == 1.0).all()  # no day off seen: ratio neutral, weekend profile borrowed


def test_panel_without_names_is_refused(prof):
    with pytest.raises(ValueError, match="named segments"):
        SegmentModel(CFG).fit(prof, pl.DataFrame({"meter_id": ["nobody"], "segment": ["x"]}))


def test_segment_holdout_metrics_score_names_and_grouping_on_held_out_meters():
    pred = pl.DataFrame({"meter_id": ["M1", "M2", "M3", "M4"], "segment": ["a", "a", "b", "b"]})
    model = SimpleNamespace(predict=lambda profiles: pred)
    # M9 has no profile: not evaluated; names swapped on M3/M4 only
    panel = pl.DataFrame({"meter_id": ["M1", "M2", "M3", "M4", "M9"], "segment": ["a", "a", "c", "c", "a"]})
    m = segment_holdout_metrics(model, pl.DataFrame(), panel)
    assert m["eval_meters"] == 4.0 and m["name_accuracy"] == 0.5
    assert m["ari"] == pytest.approx(1.0)  # same grouping, other name
    swapped = panel.with_columns(pl.col("segment").replace({"a": "b", "c": "a"}))
    m2 = segment_holdout_metrics(model, pl.DataFrame(), swapped)
    assert m2["name_accuracy"] == 0.0 and m2["ari"] == pytest.approx(1.0)
