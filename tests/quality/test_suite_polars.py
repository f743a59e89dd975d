"""quality.suite_polars evaluates a table's GX suite in polars: its outcome must equal great-expectations'.

Compared expectation by expectation: success, unexpected count, unexpected percent and the unexpected
values GX lists, on real ingested partitions (every layer of every source, the fall-back day with
injected faults) and on the same partitions broken at random (NaN, nulls, out-of-range values, values
outside the allowed set, repeated keys, rows meeting a rule's condition with the wrong flag), and empty.
"""

from __future__ import annotations

import random

import polars as pl
import pytest

from contracts import SOURCES, TABLES
from quality.expectations import suite_for, validate_frame
from quality.suite_polars import disagreements, evaluate_suite, supported
from tests.quality.test_expectations_on_ingested import DAY, ingested  # noqa: F401 (the fixture)


def _missing_as_none(examples):
    """GX lists a missing timestamp as numpy's 'NaT' text, a missing value of another type as None."""
    return [None if x == "NaT" else x for x in examples]


def _fields(out):
    return [
        (
            r.name,
            r.success,
            r.unexpected_count,
            None if r.unexpected_percent is None else round(r.unexpected_percent, 9),
            _missing_as_none(r.examples),
        )
        for r in out.results
    ]


def _assert_same(table, df):
    gx, fast = validate_frame(table, df), evaluate_suite(table, df)
    assert fast.n_rows == gx.n_rows == df.height
    assert not [r for r in gx.results if r.error], [r.error for r in gx.results if r.error]
    assert _fields(fast) == _fields(gx)
    assert (fast.success, fast.blocking_success) == (gx.success, gx.blocking_success)
    assert disagreements(gx, fast) == []
    return gx


def _break(df: pl.DataFrame, table, seed: int) -> pl.DataFrame:
    """Random faults of every kind the suites look for, in a copy of ``df``."""
    rng = random.Random(seed)
    cols = {}
    for c in table.columns:
        x = df[c.name]
        vals = x.to_list()
        if x.dtype.is_float():
            for _ in range(max(3, len(vals) // 50)):
                vals[rng.randrange(len(vals))] = rng.choice(
                    [None, float("nan"), -5.0, 1e6, 255.0, 205.0, 0.5, 59.0, 150.0]
                )
        elif x.dtype == pl.String:
            for _ in range(max(2, len(vals) // 100)):
                vals[rng.randrange(len(vals))] = rng.choice(
                    [None, "bogus", *(c.allowed or ("ok", "warning", "anomaly"))]
                )
        elif rng.random() < 0.3:
            vals[rng.randrange(len(vals))] = None
        cols[c.name] = pl.Series(c.name, vals, dtype=x.dtype)
    broken = pl.DataFrame(cols)
    # repeated keys: a few rows again, one of them twice
    return pl.concat([broken, broken.head(3), broken.slice(1, 1)])


def test_every_suite_in_gridlake_is_evaluated_in_polars():
    for name in [*(t.name for s in SOURCES.values() for t in (s.silver, s.quarantine, s.bronze)), "gold_load_hourly"]:
        assert supported(suite_for(TABLES[name])), name


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_engines_agree_on_ingested_partitions_and_on_them_broken(ingested, source):  # noqa: F811
    lake, _ = ingested
    src = SOURCES[source]
    for table in (src.silver, src.quarantine, src.bronze):
        df = lake.read(table, DAY)
        assert df.height > 0, table.name
        assert _assert_same(table, df).blocking_success  # ingestion wrote clean partitions
        _assert_same(table, df.clear())
    silver = lake.read(src.silver, DAY)
    failed = set()
    for seed in range(3):
        out = _assert_same(src.silver, _break(silver, src.silver, seed))
        failed |= {r.name for r in out.failures}
    # the faults reached the blocking kinds and the key
    assert "key:unique" in failed and any(n.endswith(":not_null") for n in failed), failed


def test_row_conditions_skip_missing_values_as_pandas_does():
    """NaN is missing to pandas and compares false in a row condition; polars orders NaN above numbers."""
    t = SOURCES["meter_readings"].silver
    base = {c.name: [None] * 4 for c in t.columns}  # filled below with valid values, except the measures under test
    import datetime as dt

    base |= {
        "date": [DAY] * 4,
        "meter_id": ["m1", "m2", "m3", "m4"],
        "reading_time": [dt.datetime(2026, 11, 1, 5, tzinfo=dt.timezone.utc)] * 4,
        "consumption_kwh": [0.1] * 4,
        "demand_kw": [0.2] * 4,
        "current_amps": [1.0] * 4,
        "power_factor": [0.9] * 4,
        "voltage": [float("nan"), 300.0, None, 230.0],  # NaN, out of the band and range, null, fine
        "quality_flag": ["ok", "ok", "ok", "ok"],
        "source_file": ["f"] * 4,
        "source_row": [1, 2, 3, 4],
    }
    df = pl.DataFrame(base, schema=t.polars_schema())
    gx = _assert_same(t, df)
    assert gx.result("quality_flag:voltage_rule").unexpected_count == 1  # only the 300 V row
    assert gx.result("voltage:between").unexpected_count == 1


def test_gold_load_hourly_suite_agrees(ingested):  # noqa: F811
    from lake import gold

    lake, _ = ingested
    hourly = gold.load_hourly(
        lake.read(SOURCES["meter_readings"].silver, DAY), lake.read("ref_meters"), lake.read("ref_transformers"), DAY
    )
    t = TABLES["gold_load_hourly"]
    assert _assert_same(t, t.conform(hourly)).success
    _assert_same(t, _break(t.conform(hourly), t, 7))
