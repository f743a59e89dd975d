"""The suites on real pipeline output: simulated landing files (with injected faults) -> lake.ingest.

Ingestion quarantines every row that breaks a hard rule, so every silver, quarantine and bronze
partition it writes must pass all blocking expectations; injected duplicates must not survive.
"""

from __future__ import annotations

import datetime as dt

import pytest

from contracts import DEFAULT_TIMEZONE, SOURCES
from lake.ingest import ingest_partition, known_entity_ids
from quality.expectations import validate_frame
from simulator import BadRecordRates, write_landing_day


def busy_incidents_sim(cfg):
    """``cfg``'s fleet with many events, every one confirmed within hours."""
    from dataclasses import replace

    from contracts import INCIDENT_TYPES
    from simulator import EventRates, IncidentRates, Simulator

    rates = EventRates(
        sags_per_transformer_year=300.0,
        stuck_per_meter_year=20.0,
        zero_per_meter_year=20.0,
        failures_per_transformer_year=20.0,
        theft_per_meter_year=5.0,
    )
    quick = IncidentRates(
        confirm_share=dict.fromkeys(INCIDENT_TYPES, 1.0),
        report_hours=dict.fromkeys(INCIDENT_TYPES, (0.5, 6.0)),
        confirm_hours=dict.fromkeys(INCIDENT_TYPES, (0.5, 6.0)),
        false_reports_per_1000_assets_month=100.0,
    )
    return Simulator(replace(cfg, events=rates, incidents=quick))


DAY = dt.date(2026, 11, 1)  # the fall-back day: 25 local hours, ambiguous times resolved by order
FAULTS = BadRecordRates(malformed_line=0.02, wrong_type=0.02, out_of_range=0.03, duplicate=0.03, unknown_entity=0.02)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, small_sim):
    import polars as pl

    from contracts import TABLES
    from lake.delta import Lake
    from lake.landing import LocalLanding
    from simulator import write_landing_reference

    root = tmp_path_factory.mktemp("ingested")
    zone = LocalLanding(root / "landing")
    lake = Lake(root / "lake")
    write_landing_reference(small_sim, zone)
    for n in ("ref_meters", "ref_transformers", "ref_weather_stations"):
        lake.write_partition(
            TABLES[n], TABLES[n].conform(pl.read_parquet(zone.local_path(f"reference/{n}.parquet"))), None
        )
    readings = tuple(s for s in SOURCES if s != "incidents")
    write_landing_day(
        small_sim, DAY, zone, formats=("csv", "jsonl", "parquet"), bad=FAULTS, rows_per_file=20, sources=readings
    )
    # incidents: the same fleet with many events, each recorded within hours (three days hold few otherwise),
    # plus a late file (the previous day's export) so that the day surely has quarantined records
    write_landing_day(
        busy_incidents_sim(small_sim.cfg),
        DAY,
        zone,
        formats=("csv", "jsonl", "parquet"),
        bad=BadRecordRates(**{**FAULTS.__dict__, "late_files": 1}),
        rows_per_file=5,
        sources=("incidents",),
    )
    results = {}
    for src in SOURCES.values():
        ids = known_entity_ids(lake, src)
        results[src.name] = ingest_partition(zone, lake, src, DAY, ids, tz=DEFAULT_TIMEZONE)
    return lake, results


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_every_ingested_layer_passes_the_blocking_expectations(ingested, source):
    lake, results = ingested
    src = SOURCES[source]
    assert results[source].quarantined_rows > 0, "faults were injected: some rows must be quarantined"
    for table in (src.silver, src.quarantine, src.bronze):
        df = lake.read(table, DAY)
        assert df.height > 0, table.name
        out = validate_frame(table, df)
        assert out.blocking_success, out.summary()
        assert out.n_rows == df.height
        # ingestion applies quality.rules: the flags it wrote agree with every rule the suite can check
        rules = [r for r in out.results if r.name.endswith("_rule")]
        assert (len(rules) > 0) == (table is src.silver)
        assert all(r.success for r in rules), [r for r in rules if not r.success]


def test_dropping_the_dedupe_would_be_caught(ingested):
    """The key expectation sees what ingestion's de-duplication prevents: a re-appended batch."""
    import polars as pl

    lake, _ = ingested
    src = SOURCES["meter_readings"]
    silver = lake.read(src.silver, DAY)
    out = validate_frame(src.silver, pl.concat([silver, silver.head(7)]))
    key = out.result("key:unique")
    assert not key.success and key.unexpected_count == 14 and not out.blocking_success
