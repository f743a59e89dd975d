from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest

from contracts.profile import load_profile
from models.grid.config import FeatureConfig
from models.grid.features import (
    METER_FEATURES,
    TRANSFORMER_FEATURES,
    FeatureInputError,
    anomaly_features,
    local_date,
    meter_features,
    transformer_features,
    window_matrix,
)

#: the simulator's (the demo utility's) zone
FC = FeatureConfig.from_profile(load_profile())


def _readings(
    n: int,
    meter: str = "M1",
    start=datetime(2026, 6, 1, tzinfo=timezone.utc),
    step_min: int = 30,
    demand=None,
    voltage=None,
) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    return pl.DataFrame(
        {
            "meter_id": [meter] * n,
            "reading_time": [start + timedelta(minutes=step_min * i) for i in range(n)],
            "demand_kw": demand if demand is not None else list(1.0 + rng.random(n)),
            "voltage": voltage if voltage is not None else list(230 + rng.normal(0, 1, n)),
            "power_factor": [0.95] * n,
            "current_amps": [4.0] * n,
            "consumption_kwh": [0.5] * n,
        }
    )


def test_missing_column_is_named():
    with pytest.raises(FeatureInputError, match=r"missing column\(s\) \['voltage'\]"):
        meter_features(_readings(10).drop("voltage"), FC)


def test_duplicate_key_is_named():
    df = _readings(5)
    with pytest.raises(FeatureInputError, match="M1"):
        meter_features(pl.concat([df, df.head(1)]), FC)


def test_nan_and_null_readings_are_counted_not_fatal():
    df = _readings(48).with_columns(
        pl.when(pl.int_range(pl.len()) == 10).then(float("nan")).otherwise(pl.col("voltage")).alias("voltage"),
        pl.when(pl.int_range(pl.len()) == 20).then(None).otherwise(pl.col("demand_kw")).alias("demand_kw"),
    )
    f = meter_features(df, FC)
    assert f.height == 48
    assert f["n_missing"].to_list()[10] == 1 and f["n_missing"].to_list()[20] == 1
    assert f["n_missing"].sum() == 2
    assert f["v_dev_nominal"][10] is None  # NaN became a null the model imputes, not a silent NaN
    assert f["load_change"].drop_nulls().is_finite().all()


def test_one_day_of_history_has_no_level_but_other_features():
    f = meter_features(_readings(48), FC)
    assert f["level_ratio"].null_count() == 48  # nothing to compare with yet
    assert f["dev_rolling"].null_count() <= 1  # only the very first reading has no previous day
    assert f["hour_sin"].null_count() == 0


def test_stuck_register_is_flat_and_level_drop_is_seen():
    n = 9 * 48
    demand = [1.0 + 0.3 * math.sin(i / 3) + 0.01 * (i % 7) for i in range(n)]
    voltage = [230 + 2 * math.sin(i / 5) for i in range(n)]
    for i in range(n - 48, n):  # last day: stuck at one value
        demand[i], voltage[i] = 0.8, 231.0
    f = meter_features(_readings(n, demand=demand, voltage=voltage), FC)
    assert f["flat_voltage"][-1] == pytest.approx(-4.0)
    assert f["flat_voltage"][n - 60] > -1.0
    assert f["level_ratio"][-1] < -0.1 < f["level_ratio"][n - 60] + 0.2


def test_excess_rise_shows_overheating(grid_sim, grid_data):
    f = transformer_features(grid_data["scada"], grid_sim.reference()["ref_transformers"], grid_data["weather"], FC)
    ev = grid_sim.truth()["truth_events"].filter(pl.col("event_type") == "transformer_overheat")
    assert ev.height > 0
    late = pl.concat(
        [
            f.filter(
                (pl.col("asset_id") == e["asset_id"])
                & (pl.col("time") >= e["end_time"] - timedelta(hours=6))
                & (pl.col("time") < e["end_time"])
            )
            for e in ev.iter_rows(named=True)
        ]
    )
    normal = f.filter(~pl.col("asset_id").is_in(ev["asset_id"].to_list()))
    assert late["excess_rise"].median() > 10.0  # 25-45 K are added by the end of overheating
    assert abs(normal["excess_rise"].median()) < 3.0


def test_unknown_transformer_is_named(grid_sim, grid_data):
    ref = grid_sim.reference()["ref_transformers"].filter(pl.col("transformer_id") != "T00001")
    with pytest.raises(FeatureInputError, match="T00001"):
        transformer_features(grid_data["scada"], ref, grid_data["weather"], FC)


def test_no_weather_means_missing_ambient_counted(grid_sim, grid_data):
    f = transformer_features(grid_data["scada"].head(200), grid_sim.reference()["ref_transformers"], None, FC)
    assert f["rise_over_ambient"].null_count() == 200
    assert (f["n_missing"] >= 1).all()


def test_window_matrix_pads_at_asset_start():
    f = pl.DataFrame({"asset_id": ["a", "a", "a", "b"], "time": [1, 2, 3, 1], "x": [1.0, 2.0, None, 9.0]})
    w = window_matrix(f, ("x",), 3, np.array([0.5]))
    assert w.tolist() == [[1, 1, 1], [1, 1, 2], [1, 2, 0.5], [9, 9, 9]]
    assert METER_FEATURES[-1] == "n_missing"


def test_local_date_is_the_utility_calendar_day():
    t = pl.DataFrame(
        {"t": [datetime(2026, 6, 8, 3, 30, tzinfo=timezone.utc), datetime(2026, 6, 8, 4, 30, tzinfo=timezone.utc)]}
    )
    got = t.select(local_date("t", "America/New_York")).to_series().to_list()
    assert [str(d) for d in got] == ["2026-06-07", "2026-06-08"]  # 23:30 EDT is still the 7th


def test_anomaly_features_leave_out_a_stream_without_rows(grid_sim, grid_data):
    ref_t = grid_sim.reference()["ref_transformers"]
    meters, scada = grid_data["meter_readings"].head(500), grid_data["scada"].head(300)
    cfg = FeatureConfig.from_profile(load_profile())
    both = anomaly_features(meters, scada, grid_data["weather"], ref_t, cfg)
    assert set(both) == {"meter", "transformer"}
    assert both["meter"].height == meters.height and both["transformer"].height == scada.height
    assert set(METER_FEATURES) <= set(both["meter"].columns) and set(TRANSFORMER_FEATURES) <= set(
        both["transformer"].columns
    )
    assert set(anomaly_features(meters.head(0), scada, grid_data["weather"], ref_t, cfg)) == {"transformer"}
    assert set(anomaly_features(meters, scada.head(0), None, ref_t, cfg)) == {"meter"}
