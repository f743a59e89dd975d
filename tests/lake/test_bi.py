"""docs/BI.md is generated from the declarations and current; every dashboard query runs on a real catalog.

The catalog is built from a small lake materialised through the real ingestion and gold code (the
conftest's 60-meter utility, 2 days). Queries over tables that lake produces are executed and their
figures checked against the lake; queries over tables it does not produce (forecasts, grid ML) run
against empty tables created from the declarations, so DuckDB's parser and binder check every column.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest

from contracts import DEFAULT_TIMEZONE, SOURCES, TABLES
from lake import bi

REPO = Path(__file__).resolve().parents[2]
DAYS = [dt.date(2026, 10, 31), dt.date(2026, 11, 1)]


def test_committed_doc_is_current():
    assert (REPO / "docs" / "BI.md").read_text(encoding="utf-8") == bi.render_markdown(), (
        "docs/BI.md is stale: run `python -m lake.bi docs/BI.md`"
    )
    assert bi.main(["--check", str(REPO / "docs" / "BI.md")]) == 0


def test_doc_lists_every_table_and_column_with_its_meaning():
    text = bi.render_markdown()
    for t in TABLES.values():
        assert f"\n### {t.name}\n" in text
        for c in t.columns:
            assert f"| `{c.name}` |" in text
    # meanings, types, bounds and allowed values come from the declarations
    assert (
        "| `voltage` | DOUBLE | yes | RMS voltage (V), nominal 230; empty when there is no supply | range [200, 260] |"
        in text
    )
    assert (
        "| `status` | VARCHAR | no | normal \\| monitoring \\| alert \\| critical | one of `normal`, `monitoring`, `alert`, `critical` |"
        in text
    )
    assert "| `reading_time` | TIMESTAMP WITH TIME ZONE | no |" in text
    assert {d.name for d in bi.DASHBOARDS} == {"grid_overview", "transformer_health", "power_quality", "forecast_vs_actual",
                                               "anomaly_tracker", "segment_distribution", "alert_log"}  # fmt: skip


def test_check_mode_reports_a_stale_doc(tmp_path, capsys):
    stale = tmp_path / "BI.md"
    stale.write_text(bi.render_markdown().replace("gold_alerts", "gold_alarms", 1))
    assert bi.main(["--check", str(stale)]) == 1
    assert "is stale" in capsys.readouterr().err


@pytest.fixture(scope="module")
def catalog(tmp_path_factory, small_sim):
    from lake import gold
    from lake.catalog import refresh_catalog
    from lake.delta import Lake
    from lake.ingest import ingest_partition
    from lake.landing import LocalLanding
    from simulator import write_landing_day, write_landing_reference

    root = tmp_path_factory.mktemp("bi")
    zone, lake = LocalLanding(root / "landing"), Lake(root / "lake")
    write_landing_reference(small_sim, zone)
    for n in ("ref_meters", "ref_transformers", "ref_weather_stations"):
        lake.write_partition(
            TABLES[n], TABLES[n].conform(pl.read_parquet(zone.local_path(f"reference/{n}.parquet"))), None
        )
    meters, tx = lake.read("ref_meters"), lake.read("ref_transformers")
    for d in DAYS:
        write_landing_day(small_sim, d, zone, formats="parquet", sources=("meter_readings", "scada"))
        for s in ("meter_readings", "scada"):
            src = SOURCES[s]
            ingest_partition(
                zone, lake, src, d, lake.read(src.reference, columns=[src.entity])[src.entity], tz=DEFAULT_TIMEZONE
            )
        hourly = gold.load_hourly(lake.read("silver_meter_readings", d), meters, tx, d)
        lake.write_partition(TABLES["gold_load_hourly"], hourly, d)
        lake.write_partition(TABLES["gold_load_daily"], gold.load_daily(hourly, d, DEFAULT_TIMEZONE), d)
        health = gold.grid_health_daily(
            lake.read("silver_meter_readings", d), lake.read("silver_scada", d), meters, tx, d
        )
        lake.write_partition(TABLES["gold_grid_health_daily"], health, d)
    path = root / "gridlake.duckdb"
    info = refresh_catalog(lake, path)
    return path, lake, set(info["views"])


def _run_all(catalog_path: Path, views: set[str], tmp_path: Path) -> dict[str, pl.DataFrame]:
    """Every dashboard query on a copy of the catalog where absent tables are empty declared tables."""
    from lake.catalog import _prepare

    work = tmp_path / "work.duckdb"
    shutil.copyfile(catalog_path, work)
    out = {}
    with duckdb.connect(str(work)) as con:
        _prepare(con, None)
        for name, t in TABLES.items():
            if name not in views:
                con.register("_empty", t.arrow_schema().empty_table())
                con.execute(f'CREATE TABLE "{name}" AS SELECT * FROM _empty')
                con.unregister("_empty")
        for d in bi.DASHBOARDS:
            out[d.name] = con.execute(d.sql).pl()
    return out


def test_every_dashboard_query_runs_on_the_catalog(catalog, tmp_path):
    path, lake, views = catalog
    produced = {"grid_overview", "power_quality"}
    for d in bi.DASHBOARDS:
        assert d.tables, f"{d.name} reads no declared table"
        assert (set(d.tables) <= views) == (d.name in produced), (d.name, set(d.tables) - views)
    res = _run_all(path, views, tmp_path)

    # grid overview: one row per day and feeder, energy matching the feeder rollup of silver
    ov = res["grid_overview"]
    silver = lake.read("silver_meter_readings")
    meters = lake.read("ref_meters")
    feeders = meters["feeder_id"].n_unique()
    assert ov.height == len(DAYS) * feeders
    assert ov["energy_mwh"].sum() == pytest.approx(silver["consumption_kwh"].sum() / 1000, abs=1e-3 * ov.height)
    per_day = (
        silver.join(meters.select("meter_id", "feeder_id"), on="meter_id")
        .group_by("date", "feeder_id")
        .agg(pl.col("meter_id").n_unique().alias("n"))
    )
    got = ov.select("date", "feeder_id", pl.col("meters_reporting").cast(pl.UInt32).alias("n")).sort(
        "date", "feeder_id"
    )
    assert got.equals(per_day.sort("date", "feeder_id"))
    assert ov["pct_voltage_outside_210_250"].null_count() == 0

    # power quality: the bands partition the readings; the outside share agrees with gold_grid_health_daily
    pq = res["power_quality"]
    bands = pq["no_supply"] + pq["below_210"] + pq["v210_220"] + pq["v220_240"] + pq["v240_250"] + pq["above_250"]
    assert (bands == pq["readings"]).all()
    assert pq["readings"].sum() == silver.height
    health = lake.read("gold_grid_health_daily").select("date", "feeder_id", "pct_voltage_outside_210_250")
    joined = pq.join(health, on=["date", "feeder_id"])
    assert joined.height == pq.height
    assert (joined["pct_outside_210_250"] - joined["pct_voltage_outside_210_250"]).abs().max() < 1e-3

    # the others bind against the declared schemas: right columns, no rows on this lake
    assert res["transformer_health"].height == lake.read("ref_transformers").height  # LEFT JOINs keep every transformer
    assert res["transformer_health"]["failure_probability_72h"].null_count() == res["transformer_health"].height
    assert res["transformer_health"]["peak_loading_pct_7d"].null_count() == 0  # from the real gold_load_daily
    for name in ("forecast_vs_actual", "anomaly_tracker", "segment_distribution", "alert_log"):
        assert res[name].height == 0 and res[name].width >= 8, name


def test_a_query_naming_an_undeclared_column_is_caught(catalog, tmp_path):
    """The binder check is real: a typo in a query over an empty declared table fails."""
    path, _, views = catalog
    broken = bi.Dashboard("x", "x", "x", bi.dashboard("alert_log").sql.replace("a.n_points", "a.n_pointz"))
    orig = bi.DASHBOARDS
    try:
        bi.DASHBOARDS = (broken,)
        with pytest.raises(duckdb.BinderException, match="n_pointz"):
            _run_all(path, views, tmp_path)
    finally:
        bi.DASHBOARDS = orig


def test_queries_and_doc_carry_the_zone_of_the_profile_they_are_generated_for():
    """Issue 10: no zone literal in the queries; the zone is the profile's, written in at generation time."""
    from zoneinfo import ZoneInfoNotFoundError

    from contracts import load_profile

    text = bi.render_markdown("Europe/London")
    assert "AT TIME ZONE 'Europe/London'" in text and "America/New_York" not in text
    assert "generated for" in text
    assert f"AT TIME ZONE '{load_profile().timezone}'" in bi.dashboard("alert_log").sql
    assert all(bi.TZ_TOKEN not in d.sql for d in bi.DASHBOARDS)
    with pytest.raises(ZoneInfoNotFoundError):
        bi.dashboards("Mars/Olympus_Mons")
