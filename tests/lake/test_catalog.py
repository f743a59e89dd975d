"""The DuckDB analyst catalog over real Delta tables written by lake.delta.Lake.

Readers are opened as analysts and BI tools would: new read-only connections, and a separate Python
process using plain ``duckdb`` (no gridlake code) to prove the file is usable on its own.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
import textwrap

import duckdb
import polars as pl
import pytest

from contracts import TABLES, Table
from lake.catalog import (
    CatalogLockedError,
    check_name,
    connect,
    query,
    refresh_catalog,
    sql_literal_uri,
)
from lake.delta import Lake

SILVER = TABLES["silver_meter_readings"]
REF = TABLES["ref_meters"]
GOLD = TABLES["gold_load_daily"]
D1, D2 = dt.date(2026, 11, 2), dt.date(2026, 11, 3)
METERS = [f"M{i:03d}" for i in range(6)]
FEEDER = {m: ("F1" if i < 4 else "F2") for i, m in enumerate(METERS)}


def ref_frame() -> pl.DataFrame:
    rows = []
    for i, m in enumerate(METERS):
        rows.append(
            {
                "meter_id": m,
                "customer_id": f"C{i}",
                "transformer_id": f"T{i // 2}",
                "feeder_id": FEEDER[m],
                "substation_id": "S1",
                "tariff": "residential",
                "latitude": 36.0,
                "longitude": -79.9,
                "has_pv": i % 2 == 0,
                "pv_kw_dc": 5.0 if i % 2 == 0 else 0.0,
                "pv_tilt_deg": 25.0,
                "pv_azimuth_deg": 180.0,
                "has_ev": False,
                "has_battery": False,
                "dr_opt_in": True,
                "interval_minutes": 15,
            }
        )
    return pl.DataFrame(rows, schema=REF.polars_schema())


def silver_frame(day: dt.date, n_slots: int) -> pl.DataFrame:
    start = dt.datetime.combine(day, dt.time(5), tzinfo=dt.timezone.utc)  # local midnight (EST)
    rows = []
    for i, m in enumerate(METERS):
        for s in range(n_slots):
            rows.append(
                {
                    "date": day,
                    "meter_id": m,
                    "reading_time": start + dt.timedelta(minutes=15 * s),
                    "consumption_kwh": 0.1 * (i + 1),
                    "demand_kw": 0.4 * (i + 1),
                    "voltage": 230.0,
                    "current_amps": 1.5,
                    "power_factor": 0.97,
                    "quality_flag": "ok",
                    "source_file": f"meter_readings/{day}/a.csv",
                    "source_row": len(rows) + 1,
                }
            )
    return pl.DataFrame(rows, schema=SILVER.polars_schema())


def gold_frame(day: dt.date) -> pl.DataFrame:
    start = dt.datetime.combine(day, dt.time(5), tzinfo=dt.timezone.utc)
    rows = [
        {
            "date": day,
            "level": "feeder",
            "entity_id": f,
            "period_start": start,
            "energy_kwh": 10.0,
            "mean_kw": 0.4,
            "peak_kw": 1.2,
            "n_readings": 96,
            "n_flagged": 0,
            "rating_kva": None,
            "loading_pct_max": None,
        }
        for f in ("F1", "F2")
    ]
    return pl.DataFrame(rows, schema=GOLD.polars_schema())


@pytest.fixture()
def lake(tmp_path) -> Lake:
    lake = Lake(tmp_path / "lake")
    lake.write_partition(REF, ref_frame(), None)
    lake.write_partition(SILVER, silver_frame(D1, 8), D1)
    lake.write_partition(SILVER, silver_frame(D2, 4), D2)
    lake.write_partition(GOLD, gold_frame(D1), D1)
    return lake


@pytest.fixture()
def catalog(tmp_path):
    return tmp_path / "warehouse" / "gridlake.duckdb"


def run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout
    )


# ----------------------------------------------------------------------------- views and queries


def test_refresh_creates_views_for_existing_tables_and_skips_absent(lake, catalog):
    res = refresh_catalog(lake, catalog)
    assert sorted(res["views"]) == sorted(["ref_meters", "silver_meter_readings", "gold_load_daily"])
    declared = {t.name for t in TABLES.values()}
    assert set(res["skipped"]) == declared - set(res["views"])
    assert res["row_counts"] == {"ref_meters": 6, "silver_meter_readings": 6 * 12, "gold_load_daily": 2}
    # the version is the table's current Delta version (create + two partition writes)
    assert res["versions"]["silver_meter_readings"] == lake.delta("silver_meter_readings").version()
    writes = [h for h in lake.delta("silver_meter_readings").history() if h["operation"] == "WRITE"]
    assert len(writes) == 2
    with duckdb.connect(str(catalog), read_only=True) as con:
        views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    assert views == set(res["views"])


def test_new_read_only_connection_counts_partitions_and_joins(lake, catalog):
    refresh_catalog(lake, catalog)
    with connect(catalog, read_only=True) as con:
        per_day = con.execute("SELECT date, count(*) FROM silver_meter_readings GROUP BY date ORDER BY date").fetchall()
        assert per_day == [(D1, 6 * 8), (D2, 6 * 4)]
        with pytest.raises(duckdb.Error):
            con.execute("CREATE TABLE scribble (x INT)")  # really read-only
    by_feeder = query(
        catalog,
        """SELECT r.feeder_id, round(sum(s.consumption_kwh), 6) AS kwh, count(DISTINCT s.meter_id) AS meters
           FROM silver_meter_readings s JOIN ref_meters r USING (meter_id)
           WHERE s.date = ? GROUP BY r.feeder_id ORDER BY r.feeder_id""",
        [D1],
    )
    expected = (
        silver_frame(D1, 8)
        .join(ref_frame().select("meter_id", "feeder_id"), on="meter_id")
        .group_by("feeder_id")
        .agg(kwh=pl.col("consumption_kwh").sum().round(6), meters=pl.col("meter_id").n_unique())
        .sort("feeder_id")
    )
    assert by_feeder.to_dicts() == expected.with_columns(pl.col("meters").cast(pl.Int64)).to_dicts()
    ts = query(catalog, "SELECT min(reading_time) AS t FROM silver_meter_readings")["t"]
    assert ts.dtype == pl.Datetime("us", "UTC") and ts[0] == dt.datetime(2026, 11, 2, 5, tzinfo=dt.timezone.utc)


def test_plain_duckdb_in_another_process_reads_the_catalog(lake, catalog):
    """A BI tool or notebook needs no gridlake code: the views autoload the installed delta extension."""
    refresh_catalog(lake, catalog)
    out = run_python(
        f"""
        import duckdb
        con = duckdb.connect({str(catalog)!r}, read_only=True)
        print(con.execute("SELECT count(*) FROM gold_load_daily").fetchone()[0])
        print(con.execute("SELECT count(*) FROM catalog_tables WHERE table_name = 'silver_meter_readings'").fetchone()[0])
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", str(len(SILVER.columns))]


def test_partition_replacement_is_visible_after_refresh(lake, catalog):
    refresh_catalog(lake, catalog)
    assert query(catalog, "SELECT count(*) AS n FROM silver_meter_readings WHERE date = ?", [D2])["n"][0] == 24
    lake.write_partition(SILVER, silver_frame(D2, 2).filter(pl.col("meter_id") != "M000"), D2)
    # the view stores no data: a new connection sees the replaced partition even before a refresh
    assert query(catalog, "SELECT count(*) AS n FROM silver_meter_readings WHERE date = ?", [D2])["n"][0] == 10
    res = refresh_catalog(lake, catalog)
    assert res["row_counts"]["silver_meter_readings"] == 48 + 10
    assert res["versions"]["silver_meter_readings"] == lake.delta("silver_meter_readings").version()
    with connect(catalog, read_only=True) as con:
        got = con.execute(
            "SELECT date, count(*), count(DISTINCT meter_id) FROM silver_meter_readings GROUP BY date ORDER BY date"
        ).fetchall()
        status = con.execute(
            "SELECT DISTINCT row_count, delta_version FROM catalog_tables WHERE table_name = 'silver_meter_readings'"
        ).fetchall()
    assert got == [(D1, 48, 6), (D2, 10, 5)]
    assert status == [(58, lake.delta("silver_meter_readings").version())]


def test_table_removed_from_lake_loses_its_view(lake, catalog):
    refresh_catalog(lake, catalog)
    shutil.rmtree(lake.uri(GOLD))
    res = refresh_catalog(lake, catalog)
    assert "gold_load_daily" in res["skipped"] and "gold_load_daily" not in res["views"]
    with connect(catalog, read_only=True) as con:
        with pytest.raises(duckdb.CatalogException):
            con.execute("SELECT * FROM gold_load_daily")
        avail = con.execute(
            "SELECT DISTINCT view_available FROM catalog_tables WHERE table_name = 'gold_load_daily'"
        ).fetchall()
    assert avail == [(False,)]


def test_subset_refresh_keeps_other_views(lake, catalog):
    refresh_catalog(lake, catalog, [REF])
    res = refresh_catalog(lake, catalog, layers=["gold"])
    assert res["views"] == ["gold_load_daily"]
    with connect(catalog, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM ref_meters").fetchone()[0] == 6
        views = con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1").fetchall()
        layers = con.execute("SELECT DISTINCT layer FROM catalog_tables ORDER BY 1").fetchall()
    assert views == [("gold_load_daily",), ("ref_meters",)]
    assert layers == [("gold",), ("reference",)]


def test_catalog_tables_describes_the_declarations(lake, catalog):
    refresh_catalog(lake, catalog)
    got = query(
        catalog, "SELECT * FROM catalog_tables WHERE table_name = 'silver_meter_readings' ORDER BY column_position"
    )
    assert got["column_name"].to_list() == SILVER.column_names
    assert got["description"].to_list() == [c.description for c in SILVER.columns]
    assert set(got.filter(pl.col("is_key"))["column_name"]) == set(SILVER.key)
    assert got.filter(pl.col("is_partition"))["column_name"].to_list() == ["date"]
    v = got.filter(pl.col("column_name") == "voltage").row(0, named=True)
    assert (v["min_value"], v["max_value"], v["column_type"], v["layer"]) == (200.0, 260.0, "DOUBLE", "silver")
    assert got.filter(pl.col("column_name") == "quality_flag")["allowed_values"][0] == "ok, warning, anomaly"
    # declared types agree with what DuckDB reads from the Delta table
    with connect(catalog, read_only=True) as con:
        actual = dict(
            con.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'silver_meter_readings'"
            ).fetchall()
        )
    assert actual == dict(zip(got["column_name"], got["column_type"]))


# ----------------------------------------------------------------------------- refusing bad input


def test_hostile_table_name_is_refused_before_anything_is_written(lake, catalog):
    evil = Table('gold_x"; DROP VIEW ref_meters; --', "gold", GOLD.columns)
    with pytest.raises(ValueError, match="refusing table name"):
        refresh_catalog(lake, catalog, [REF, evil])
    assert not catalog.exists()
    for name in ("Upper", "1abc", "a-b", "a b", "", "catalog_meta"):
        with pytest.raises(ValueError):
            check_name(name)


def test_hostile_uri_is_refused(tmp_path, catalog):
    evil_lake = Lake(tmp_path / "it's;here")
    with pytest.raises(ValueError, match="forbidden character"):
        refresh_catalog(evil_lake, catalog, [REF])
    for uri in (
        "/tmp/a\nb",
        "/tmp/a'b",
        "/tmp/a;b",
        "relative/path",
        "http://host/x",
        "s3://Bad_Bucket/x",
        "/tmp/a\\b",
    ):
        with pytest.raises(ValueError, match="refusing table URI"):
            sql_literal_uri(uri)
    assert sql_literal_uri("s3://gridlake-lake/prod/silver_scada") == "'s3://gridlake-lake/prod/silver_scada'"


def test_one_catalog_per_lake(lake, catalog, tmp_path):
    refresh_catalog(lake, catalog, [REF])
    other = Lake(tmp_path / "other_lake")
    with pytest.raises(ValueError, match="points at lake"):
        refresh_catalog(other, catalog, [REF])


# ----------------------------------------------------------------------------- concurrency


def test_refresh_succeeds_while_a_reader_holds_the_file(lake, catalog):
    refresh_catalog(lake, catalog, [REF])
    reader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import duckdb, sys
            con = duckdb.connect({str(catalog)!r}, read_only=True)
            print(con.execute("SELECT count(*) FROM ref_meters").fetchone()[0], flush=True)
            sys.stdin.readline()  # hold the connection until the test says so
            print(con.execute("SELECT count(*) FROM ref_meters").fetchone()[0], flush=True)
        """),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = reader.stdout.readline().strip()
        assert first == "6", (
            f"reader did not start: {first!r} {reader.stderr.read() if reader.poll() is not None else ''}"
        )
        res = refresh_catalog(lake, catalog)  # would fail with a lock error if done in place
        assert "silver_meter_readings" in res["views"]
        assert query(catalog, "SELECT count(*) AS n FROM silver_meter_readings")["n"][0] == 72
        out, err = reader.communicate("\n", timeout=30)
        assert reader.returncode == 0, err
        assert out.strip() == "6"  # the old reader kept working on the file it had opened
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()


def test_a_writer_elsewhere_gives_a_clear_lock_error(lake, catalog):
    refresh_catalog(lake, catalog, [REF])
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import duckdb, sys
            con = duckdb.connect({str(catalog)!r})
            print("open", flush=True)
            sys.stdin.readline()
        """),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = writer.stdout.readline().strip()
        assert first == "open", (
            f"writer did not start: {first!r} {writer.stderr.read() if writer.poll() is not None else ''}"
        )
        with pytest.raises(CatalogLockedError, match=r"gridlake\.duckdb cannot be opened read-only"):
            refresh_catalog(lake, catalog, [REF])
        with pytest.raises(CatalogLockedError, match="read-write"):
            connect(catalog, read_only=False)
    finally:
        writer.communicate("\n", timeout=30)
    # once the writer is gone the refresh works again
    assert refresh_catalog(lake, catalog, [REF])["views"] == ["ref_meters"]


def test_reading_a_missing_catalog_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="refresh_catalog"):
        query(tmp_path / "nope.duckdb", "SELECT 1")


# ----------------------------------------------------------------------------- S3


@pytest.mark.s3
def test_s3_lake_views_use_a_temporary_secret(moto_s3, tmp_path):
    import boto3

    boto3.client("s3", endpoint_url=moto_s3).create_bucket(Bucket="gridlake-catalog-test")
    lake = Lake("s3://gridlake-catalog-test/lake")
    lake.write_partition(REF, ref_frame(), None)
    lake.write_partition(SILVER, silver_frame(D1, 8), D1)
    catalog = tmp_path / "s3.duckdb"
    res = refresh_catalog(lake, catalog, [REF, SILVER, GOLD])
    assert res["views"] == ["ref_meters", "silver_meter_readings"] and res["skipped"] == ["gold_load_daily"]
    got = query(
        catalog,
        "SELECT r.feeder_id, count(*) AS n FROM silver_meter_readings JOIN ref_meters r USING (meter_id) GROUP BY 1 ORDER BY 1",
    )
    assert got.rows() == [("F1", 32), ("F2", 16)]
    with connect(catalog, read_only=True) as con:
        assert con.execute("SELECT persistent FROM duckdb_secrets() WHERE name = 'gridlake_s3'").fetchall() == [
            (False,)
        ]
    secret = __import__("os").environ["AWS_SECRET_ACCESS_KEY"].encode()
    assert secret not in catalog.read_bytes()


def test_concurrent_refreshes_are_serialised(lake, catalog):
    import fcntl

    refresh_catalog(lake, catalog, [REF])
    with open(catalog.with_name(catalog.name + ".lock"), "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # as another refresh in progress would
        with pytest.raises(CatalogLockedError, match="another refresh"):
            refresh_catalog(lake, catalog, [GOLD], lock_timeout_s=0.3)
        fcntl.flock(fh, fcntl.LOCK_UN)
    assert refresh_catalog(lake, catalog, [GOLD], lock_timeout_s=0.3)["views"] == ["gold_load_daily"]
    assert not list(catalog.parent.glob("*.tmp")), "no temporary catalog left behind"


def test_command_line(lake, catalog, capsys):
    from lake.catalog import main

    assert main(["refresh", lake.root, str(catalog)]) == 0
    assert '"silver_meter_readings"' in capsys.readouterr().out
    assert main(["sql", str(catalog), "SELECT count(*) AS n_rows FROM silver_meter_readings"]) == 0
    out = capsys.readouterr().out
    assert "n_rows" in out and "72" in out


def test_a_writer_in_this_process_also_gives_the_lock_error(lake, catalog):
    refresh_catalog(lake, catalog, [REF])
    with connect(catalog, read_only=False):
        with pytest.raises(CatalogLockedError, match="another connection holds it read-write"):
            refresh_catalog(lake, catalog, [REF])
