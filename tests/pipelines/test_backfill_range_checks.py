"""A backfill range's expectation checks give, day by day, what the one-day runs give.

assets.ingestion.gx_checks screens a range's days with quality.suite_polars and runs great-expectations
on the range's last day and on every day the screen fails (docs/DECISIONS.md "Year backfill"). Here the
range result is compared with the single-day (GX) result of each day: a broken middle day, a held day
(an unreadable landing file: written, not published) and quarantined records included.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from assets.ingestion import gx_checks
from contracts import DEFAULT_TIMEZONE, SOURCES
from lake.delta import Lake
from lake.ingest import ingest_partitions, known_entity_ids
from simulator import BadRecordRates, write_landing_day

SRC = SOURCES["meter_readings"]
DAYS = [dt.date(2026, 10, 31), dt.date(2026, 11, 1), dt.date(2026, 11, 2)]


def _results(lake, table, days, held=frozenset()):
    return {r.check_name: r for r in gx_checks(lake, table, days, held=held)}


def _per_day(lake, table, held=frozenset()):
    """{day: (blocking failures, soft failures)} from one single-day (GX) check per day."""
    out = {}
    for d in DAYS:
        meta = _results(lake, table, d, held)["expectations"].metadata
        out[d.isoformat()] = (meta["blocking_failures"].value, meta["soft_failures"].value)
    return out


def _from_range(res):
    blocking = res["expectations"].metadata["blocking_failures"].value
    soft = res["expectations"].metadata["soft_failures"].value
    return {d.isoformat(): (blocking.get(d.isoformat(), []), soft.get(d.isoformat(), [])) for d in DAYS}


def test_a_broken_day_in_a_range_fails_as_its_one_day_run_does(lake_and_landing, small_sim, tmp_path):
    lake, zone = lake_and_landing
    for d in DAYS:
        write_landing_day(small_sim, d, zone, formats="parquet", sources=("meter_readings",))
    ingest_partitions(zone, lake, SRC, DAYS, known_entity_ids(lake, SRC), tz=DEFAULT_TIMEZONE)
    # the same partitions in a lake without publication (read as written), the middle day broken the way a
    # writer bug would break it: a re-appended batch (repeated keys) and a voltage outside its hard bounds
    raw = Lake(tmp_path / "raw")
    for d in DAYS:
        df = lake.read(SRC.silver, d)
        if d == DAYS[1]:
            df = pl.concat([df, df.head(4)]).with_columns(
                pl.when(pl.int_range(pl.len()) == 5).then(999.0).otherwise(pl.col("voltage")).alias("voltage")
            )
        raw.write_partition(SRC.silver, df, d)
    res = _results(raw, SRC.silver, DAYS)
    assert not res["expectations"].passed
    meta = res["expectations"].metadata
    assert meta["blocking_failures"].value == {DAYS[1].isoformat(): ["voltage:between", "key:unique"]}
    # GX validated the failing day and the last day; the screen the first; the engines agreed
    assert meta["validated_by_great_expectations"].value == [DAYS[1].isoformat(), DAYS[2].isoformat()]
    assert meta["screened_in_polars"].value == 1 and meta["engine_disagreements"].value == {}
    assert _from_range(res) == _per_day(raw, SRC.silver)
    # and the clean lake's range passes, as each of its days does alone
    clean = _results(lake, SRC.silver, DAYS)
    assert clean["expectations"].passed and _from_range(clean) == _per_day(lake, SRC.silver)
    assert all(not b for b, _ in _per_day(lake, SRC.silver).values())


def test_a_held_day_and_quarantined_records_in_a_range(lake_and_landing, small_sim):
    lake, zone = lake_and_landing
    for d in DAYS:
        write_landing_day(
            small_sim,
            d,
            zone,
            formats="parquet",
            bad=BadRecordRates(duplicate=0.02, out_of_range=0.02, unknown_entity=0.01),
            sources=("meter_readings",),
        )
    bad = f"meter_readings/{DAYS[1]}/part-999.csv.gz"
    zone.put_bytes(bad, b"\x1f\x8b\x08\x00 truncated in transfer\nline\n")
    results = ingest_partitions(zone, lake, SRC, DAYS, known_entity_ids(lake, SRC), tz=DEFAULT_TIMEZONE)
    held = {r.partition for r in results if r.held}
    assert held == {DAYS[1]} and all(r.quarantined_rows > 0 for r in results)
    assert lake.read(SRC.silver, DAYS[1]).height == 0 < lake.read(SRC.silver, DAYS[1], published=False).height
    for table in (SRC.silver, SRC.quarantine, SRC.bronze):
        res = _results(lake, table, DAYS, held)
        assert res["expectations"].passed, res["expectations"].description
        assert _from_range(res) == _per_day(lake, table, held)
        assert res["expectations"].metadata["engine_disagreements"].value == {}
    # the held day is validated as written (its rows), not as the empty published day
    single = _results(lake, SRC.silver, DAYS[1], held)["expectations"].metadata
    assert single["n_rows"].value == lake.read(SRC.silver, DAYS[1], published=False).height
