"""A full-size silver meter partition (500k readings) through the suite: correct counts at scale.

Marked slow (~5-10 s on this 2-core machine, plus the GX import); run with ``pytest -m slow``.
"""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import polars as pl
import pytest

from contracts import TABLES
from quality.expectations import validate_frame

METERS = TABLES["silver_meter_readings"]
DAY = dt.date(2026, 7, 1)
N = 500_000


def big_partition(n: int = N, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    slots = 96
    meter = np.arange(n) // slots
    slot = np.arange(n) % slots
    start = dt.datetime(2026, 7, 1, 4, tzinfo=dt.timezone.utc)
    df = pl.DataFrame({"meter": meter, "slot": slot}).select(
        pl.lit(DAY).alias("date"),
        ("M" + pl.col("meter").cast(pl.Utf8).str.zfill(6)).alias("meter_id"),
        (pl.lit(start) + pl.duration(minutes=pl.col("slot") * 15)).dt.cast_time_unit("us").alias("reading_time"),
        pl.Series("consumption_kwh", rng.uniform(0.0, 2.0, n)),
        pl.Series("demand_kw", rng.uniform(-3.0, 8.0, n)),
        pl.Series("voltage", np.clip(rng.normal(230.0, 4.0, n), 212.0, 248.0)),
        pl.Series("current_amps", rng.uniform(0.0, 30.0, n)),
        pl.Series("power_factor", rng.uniform(0.8, 1.0, n)),
        pl.Series("quality_flag", np.where(rng.random(n) < 0.01, "anomaly", "ok")),
        pl.lit("meter_readings/2026-07-01/meter_readings_2026-07-01_000.csv").alias("source_file"),
        pl.int_range(1, n + 1, dtype=pl.Int64).alias("source_row"),
    )
    return METERS.conform(df)


@pytest.mark.slow
def test_half_million_row_partition():
    df = big_partition()
    validate_frame(METERS, df.head(10))  # pay the GX import and context set-up outside the timing
    t = time.perf_counter()
    good = validate_frame(METERS, df)
    seconds = time.perf_counter() - t
    assert good.success, good.summary()
    print(f"\nvalidate_frame: {N} rows, {len(good.results)} expectations in {seconds:.2f} s")

    bad = df.with_columns(
        voltage=pl.when(pl.int_range(pl.len()).is_in([10, 250_000, 499_999])).then(275.0).otherwise(pl.col("voltage")),
        meter_id=pl.when(pl.int_range(pl.len()) == 123_456).then(None).otherwise(pl.col("meter_id")),
    )
    bad = pl.concat([bad, bad.slice(42, 1)])
    out = validate_frame(METERS, bad)
    assert out.result("voltage:between").unexpected_count == 3
    assert sorted(out.result("voltage:between").example_rows) == [10, 250_000, 499_999]
    assert out.result("meter_id:not_null").example_rows == [123_456]
    assert out.result("key:unique").unexpected_count == 2
    assert {f.name for f in out.blocking_failures} == {"voltage:between", "meter_id:not_null", "key:unique"}
    # the 275 V readings kept their 'ok' flag: the soft flag-vs-rule check sees them too
    assert {f.name for f in out.failures if not f.blocking} == {"quality_flag:voltage_rule"}
    assert out.result("quality_flag:voltage_rule").unexpected_count == 3
