"""great-expectations suites derived from contracts, run on small hand-built partitions.

great_expectations is imported once per test process (quality.expectations caches the context), so
the module costs one ~6-8 s import plus ~0.1 s per validation.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace

import polars as pl
import pytest

from contracts import TABLES
from quality.expectations import (
    DEFAULT_MAX_ANOMALY_SHARE,
    ExpectationSpec,
    suite_for,
    validate_frame,
)
from quality.rules import DEFAULT_RULES, MeterRules

METERS = TABLES["silver_meter_readings"]
DAY = dt.date(2024, 7, 1)
T0 = dt.datetime(2024, 7, 1, 4, 0, tzinfo=dt.timezone.utc)  # local midnight in New York (EDT)


def meter_partition(n_meters: int = 4, n_slots: int = 10) -> pl.DataFrame:
    """A clean silver meter partition: every value valid, keys unique, all flags 'ok'."""
    rows = []
    for m in range(n_meters):
        for s in range(n_slots):
            i = len(rows)
            rows.append(
                {
                    "date": DAY,
                    "meter_id": f"M{m:04d}",
                    "reading_time": T0 + dt.timedelta(minutes=15 * s),
                    "consumption_kwh": 0.1 + 0.01 * s,
                    "demand_kw": 0.4 + 0.04 * s,
                    "voltage": 228.0 + (i % 5),
                    "current_amps": 2.0,
                    "power_factor": 0.95,
                    "quality_flag": "ok",
                    "source_file": f"meter_readings/{DAY}/part-{m}.csv",
                    "source_row": s + 1,
                }
            )
    return pl.DataFrame(rows, schema=METERS.polars_schema())


def set_cell(df: pl.DataFrame, column: str, row: int, value) -> pl.DataFrame:
    s = df[column].to_list()
    s[row] = value
    return df.with_columns(pl.Series(column, s, dtype=df.schema[column]))


@pytest.fixture(scope="module")
def good() -> pl.DataFrame:
    return meter_partition()


# ---------------------------------------------------------------------------------- suite derivation


def test_suite_follows_the_declarations_for_every_table():
    for table in TABLES.values():
        specs = {s.name: s for s in suite_for(table)}
        for c in table.columns:
            assert (f"{c.name}:not_null" in specs) == (not c.nullable), (table.name, c.name)
            bounded = c.min is not None or c.max is not None
            assert (f"{c.name}:between" in specs) == bounded, (table.name, c.name)
            if bounded:
                kw = specs[f"{c.name}:between"].gx_kwargs()
                assert (kw.get("min_value"), kw.get("max_value")) == (c.min, c.max)
            assert (f"{c.name}:in_set" in specs) == (c.allowed is not None)
        if table.key:
            key = specs["key:unique"]
            assert key.blocking
            assert set(table.key) <= set(key.columns) <= set(table.key) | set(table.partition_by)
        else:
            assert "key:unique" not in specs
        soft = [s for s in specs.values() if not s.blocking]
        if table.layer == "silver":
            assert "quality_flag:anomaly_share" in specs
        else:
            assert soft == [], f"{table.name} should have only hard expectations"
        assert all(s.blocking for s in specs.values() if s.name.endswith(("not_null", ":between", "in_set")))


def test_key_uniqueness_includes_partition_columns_only_once():
    health = suite_for(TABLES["gold_grid_health_daily"])
    assert next(s for s in health if s.name == "key:unique").columns == ("date", "feeder_id")
    ref = suite_for(TABLES["ref_meters"])
    key = next(s for s in ref if s.name == "key:unique")
    assert (key.expectation, key.columns) == ("ExpectColumnValuesToBeUnique", ("meter_id",))


def test_soft_thresholds_come_from_rules_and_arguments():
    rules = replace(
        DEFAULT_RULES,
        meter=MeterRules(warn_voltage_low=215.0, warn_voltage_high=245.0, anomaly_consumption_multiple=3.0),
    )
    specs = {s.name: s for s in suite_for(METERS, rules, max_anomaly_share=0.02)}
    band = specs["voltage:warning_band_share"].gx_kwargs()
    assert (band["min_value"], band["max_value"]) == (215.0, 245.0)
    assert specs["quality_flag:anomaly_share"].gx_kwargs()["mostly"] == pytest.approx(0.98)
    with pytest.raises(ValueError, match="max_anomaly_share"):
        suite_for(METERS, max_anomaly_share=5)


# ---------------------------------------------------------------------------------- validation


def test_good_partition_passes(good):
    out = validate_frame(METERS, good)
    assert out.success and out.blocking_success, out.summary()
    assert out.n_rows == good.height == 40
    assert {r.name for r in out.results} == {s.name for s in suite_for(METERS)}
    assert all(r.unexpected_count == 0 and r.examples == [] for r in out.results if r.unexpected_count is not None)


def test_null_key_fails_not_null_with_its_row(good):
    bad = set_cell(good, "meter_id", 7, None)
    out = validate_frame(METERS, bad)
    assert not out.blocking_success
    assert [r.name for r in out.failures] == ["meter_id:not_null"]
    r = out.result("meter_id:not_null")
    assert r.blocking and r.unexpected_count == 1 and r.example_rows == [7]
    assert r.unexpected_percent == pytest.approx(100 / 40)


def test_out_of_range_voltage_fails_bounds_with_examples(good):
    bad = set_cell(set_cell(good, "voltage", 3, 270.5), "voltage", 20, 150.0)
    out = validate_frame(METERS, bad)
    r = out.result("voltage:between")
    assert not r.success and r.blocking
    assert r.unexpected_count == 2
    assert sorted(r.examples) == [150.0, 270.5] and sorted(r.example_rows) == [3, 20]
    assert not out.blocking_success
    # two of 40 readings outside 210-250 V stays under the 5 % warning share: the soft check holds
    assert out.result("voltage:warning_band_share").unexpected_count == 2
    assert out.result("voltage:warning_band_share").success


def test_bad_flag_value_fails_allowed_set(good):
    out = validate_frame(METERS, set_cell(good, "quality_flag", 11, "suspicious"))
    r = out.result("quality_flag:in_set")
    assert (r.success, r.unexpected_count, r.examples, r.example_rows) == (False, 1, ["suspicious"], [11])
    assert [f.name for f in out.failures] == ["quality_flag:in_set"]


def test_duplicate_key_fails_compound_uniqueness(good):
    dup = pl.concat([good, good[5:6].with_columns(source_row=pl.lit(999, pl.Int64))])
    out = validate_frame(METERS, dup)
    r = out.result("key:unique")
    assert not r.success and r.blocking
    assert r.unexpected_count == 2  # GX counts every row of a duplicated key: the original and the copy
    assert r.example_rows == [5, 40]
    ts = good["reading_time"][5].isoformat()
    assert r.examples == [{"date": DAY.isoformat(), "meter_id": "M0000", "reading_time": ts}] * 2
    assert [f.name for f in out.failures] == ["key:unique"]


def test_anomaly_share_is_soft(good):
    n = good.height
    over = int(n * DEFAULT_MAX_ANOMALY_SHARE) + 2  # 4 of 40 = 10 %
    flags = ["anomaly"] * over + ["ok"] * (n - over)
    out = validate_frame(METERS, good.with_columns(quality_flag=pl.Series(flags)))
    r = out.result("quality_flag:anomaly_share")
    assert not r.success and not r.blocking and r.unexpected_count == over
    assert not out.success and out.blocking_success
    # 2 of 40 = 5 % is at the limit and passes
    flags = ["anomaly"] * 2 + ["ok"] * (n - 2)
    assert validate_frame(METERS, good.with_columns(quality_flag=pl.Series(flags))).success


def test_flag_that_disagrees_with_the_rules_fails_softly(good):
    # 205 V is inside the hard bounds (200-260) but outside the 210-250 V warning band
    bad = set_cell(set_cell(good, "voltage", 9, 205.0), "voltage", 30, 252.0)
    bad = set_cell(bad, "quality_flag", 30, "warning")  # row 30 is flagged as the rule says, row 9 is not
    out = validate_frame(METERS, bad)
    r = out.result("quality_flag:voltage_rule")
    assert (r.success, r.blocking, r.unexpected_count, r.examples, r.example_rows) == (False, False, 1, ["ok"], [9])
    assert out.blocking_success and [f.name for f in out.failures] == ["quality_flag:voltage_rule"]


def test_scada_and_weather_rules_are_cross_checked():
    scada, weather = TABLES["silver_scada"], TABLES["silver_weather"]
    names = {s.name: s for s in suite_for(scada)}
    assert names["quality_flag:hot_spot_anomaly_rule"].gx_kwargs()["row_condition"] == "hot_spot_temp_c > 140.0"
    assert names["quality_flag:hot_spot_anomaly_rule"].referenced_columns == ("quality_flag", "hot_spot_temp_c")
    w = {s.name: s for s in suite_for(weather)}["quality_flag:dhi_over_ghi_rule"]
    assert w.gx_kwargs()["row_condition"] == "dhi_wm2 > ghi_wm2 + 20.0" and not w.blocking
    ts = dt.datetime(2026, 7, 1, 16, tzinfo=dt.timezone.utc)
    rows = [
        {
            "date": DAY,
            "station_id": "W1",
            "observation_time": ts + dt.timedelta(hours=h),
            "ghi_wm2": 500.0,
            "dni_wm2": 400.0,
            "dhi_wm2": dhi,
            "temp_air_c": 25.0,
            "wind_speed_ms": 3.0,
            "cloud_cover": 0.2,
            "quality_flag": flag,
            "source_file": "weather/x.csv",
            "source_row": h + 1,
        }
        for h, (dhi, flag) in enumerate([(100.0, "ok"), (530.0, "warning"), (600.0, "ok"), (510.0, "ok")])
    ]
    out = validate_frame(weather, pl.DataFrame(rows, schema=weather.polars_schema()))
    r = out.result("quality_flag:dhi_over_ghi_rule")
    assert (r.unexpected_count, r.example_rows) == (1, [2])  # 600 > 520 flagged ok; 510 is within the margin


def test_nan_in_a_required_measure_counts_as_missing_but_optional_nulls_pass(good):
    out = validate_frame(METERS, set_cell(good, "consumption_kwh", 0, float("nan")))
    assert out.result("consumption_kwh:not_null").unexpected_count == 1
    assert not out.blocking_success
    optional = [c.name for c in METERS.columns if c.nullable]
    assert optional, "the meter table declares optional measures (voltage during outages)"
    outage = good.with_columns(
        pl.when(pl.int_range(pl.len()) < 3).then(None).otherwise(pl.col(c)).alias(c) for c in optional
    )
    assert validate_frame(METERS, outage).success


def test_missing_declared_column_is_a_clear_error(good):
    with pytest.raises(ValueError, match=r"silver_meter_readings.*\['voltage', 'quality_flag'\]"):
        validate_frame(METERS, good.drop("voltage", "quality_flag"))


def test_outcome_is_json_and_examples_are_capped(good):
    bad = good.with_columns(voltage=pl.lit(300.0))
    out = validate_frame(METERS, bad, max_examples=3)
    r = out.result("voltage:between")
    assert r.unexpected_count == 40 and len(r.examples) == 3 and len(r.example_rows) == 3
    doc = json.loads(json.dumps(out.to_dict()))
    assert doc["table"] == "silver_meter_readings" and doc["blocking_success"] is False
    meta = json.loads(json.dumps(out.check_metadata()))
    assert meta["n_rows"] == 40 and meta["blocking_failures"] == ["voltage:between"]
    assert meta["soft_failures"] == ["voltage:warning_band_share", "quality_flag:voltage_rule"]
    assert meta["expectations"]["voltage:between"]["examples"] == [300.0] * 3
    assert meta["expectations"]["meter_id:not_null"] == {
        "success": True,
        "blocking": True,
        "unexpected_count": 0,
        "unexpected_percent": 0.0,
    }
    assert "voltage:between" in out.summary()


def test_empty_partition_passes():
    out = validate_frame(METERS, pl.DataFrame(schema=METERS.polars_schema()))
    assert out.n_rows == 0 and out.blocking_success


def test_gold_key_is_unique_per_day_not_across_days():
    health = TABLES["gold_grid_health_daily"]
    row = dict.fromkeys(health.column_names) | {
        "date": DAY,
        "feeder_id": "F01",
        "n_readings": 96,
        "pct_voltage_outside_210_250": 0.0,
        "n_anomaly_flags": 0,
        "n_transformers": 3,
        "transformers_over_80pct": 0,
        "transformers_over_100pct": 0,
    }
    two_days = pl.DataFrame([row, row | {"date": DAY + dt.timedelta(days=1)}], schema=health.polars_schema())
    assert validate_frame(health, two_days).success
    same_day = pl.DataFrame([row, row], schema=health.polars_schema())
    out = validate_frame(health, same_day)
    assert out.result("key:unique").unexpected_count == 2 and not out.blocking_success


def test_custom_specs_only_convert_their_columns(good):
    spec = ExpectationSpec(
        "voltage:strict",
        "ExpectColumnValuesToBeBetween",
        ("voltage",),
        True,
        (("max_value", 229.0), ("min_value", 228.0)),
    )
    out = validate_frame(METERS, good, specs=[spec])
    assert [r.name for r in out.results] == ["voltage:strict"]
    assert out.result("voltage:strict").unexpected_count == 24  # 228..232 cycling: 3 of 5 values above 229


def test_spec_naming_an_unknown_gx_class_is_reported():
    spec = ExpectationSpec("x", "ExpectNoSuchThing", ("voltage",), True)
    with pytest.raises(ValueError, match="ExpectNoSuchThing"):
        spec.to_gx()


def test_an_expectation_gx_cannot_evaluate_is_a_failure_with_its_error(good):
    spec = ExpectationSpec(
        "meter_id:between", "ExpectColumnValuesToBeBetween", ("meter_id",), True, (("min_value", 0),)
    )
    out = validate_frame(METERS, good, specs=[spec])
    r = out.result("meter_id:between")
    assert not r.success and not out.blocking_success
    assert r.error and "column_values.between" in r.error
    assert "error" in out.summary()
