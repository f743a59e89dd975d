"""A day is atomic across its tables: bronze index, silver and quarantine are published together.

A child process ingests and SIGKILLs itself at a named point of a day's write (lake.manifest.fault_point,
``GRIDLAKE_KILL_AT``). While the day is half-written, readers (Lake.read as gold and the checks use it,
lake.bronze.read_records, the DuckDB catalog views) must see the previous publication of the day, or
nothing for a new day; a re-run must then leave exactly the tables of a run that was never killed.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from contracts import DEFAULT_TIMEZONE, SOURCES, TABLES
from lake import manifest
from lake.bronze import read_records
from lake.catalog import query, refresh_catalog
from lake.delta import Lake
from lake.ingest import ingest_partitions
from lake.landing import LocalLanding

SRC = SOURCES["meter_readings"]
ROOT = Path(__file__).resolve().parents[2]
D1, D2, D3 = dt.date(2026, 11, 3), dt.date(2026, 11, 4), dt.date(2026, 11, 5)
HEADER = "meter_id,reading_time,consumption_kwh,demand_kw,voltage,current_amps,power_factor"
T0 = 1_790_000_000  # fixed receive times (file mtimes), so every landing copy orders its files alike

CHILD = """
import datetime as dt, sys
import polars as pl
from lake.delta import Lake
from lake.ingest import ingest_partitions
from lake.landing import LocalLanding
from contracts import DEFAULT_TIMEZONE, SOURCES
src = SOURCES["meter_readings"]
lake, zone = Lake(sys.argv[1]), LocalLanding(sys.argv[2])
days = [dt.date.fromisoformat(d) for d in sys.argv[3].split(",")]
ingest_partitions(zone, lake, src, days, lake.read("ref_meters", columns=["meter_id"])["meter_id"], run_id="child", tz=DEFAULT_TIMEZONE)
"""


def _rows(day: dt.date, meters: list[str], hours: range, kwh: float) -> list[str]:
    return [
        f"{m},{day} {h:02d}:00:00,{kwh + i / 100:.2f},1.5,231.0,4.3,0.95" for i, m in enumerate(meters) for h in hours
    ]


def _put(zone: LocalLanding, day: dt.date, name: str, lines: list[str], when: int) -> None:
    key = f"meter_readings/{day}/{name}"
    zone.put_bytes(key, ("\n".join([HEADER, *lines]) + "\n").encode())
    os.utime(zone.local_path(key), (T0 + when, T0 + when))


def landing_state(zone: LocalLanding, meters: list[str], state: str) -> None:
    """State "a": days 1-2 land; state "b": a correction file for day 2 and a new day 3 land too."""
    ok = meters[:6]
    _put(
        zone,
        D1,
        "a.csv",
        _rows(D1, ok, range(8, 12), 0.4)
        + [f"{ok[0]},{D1} 13:00:00,abc,1,231,4,0.9", f"NOPE,{D1} 13:00:00,1,1,231,4,0.9"],
        1,
    )
    _put(zone, D2, "a.csv", _rows(D2, ok, range(8, 12), 0.5) + [f"{ok[1]},{D2} 13:00:00,0.3,1,999,4,0.9"], 2)
    if state == "b":
        # day 2 again: a correction of two readings (duplicates of a.csv, the later copy wins) and new hours
        _put(zone, D2, "b.csv", _rows(D2, ok[:2], range(8, 9), 0.9) + _rows(D2, ok, range(14, 16), 0.7), 3)
        _put(zone, D3, "a.csv", _rows(D3, ok, range(8, 10), 0.6), 4)


def _ids(lake: Lake) -> pl.Series:
    return lake.read("ref_meters", columns=["meter_id"])["meter_id"]


def new_lake(tmp: Path, ref: Lake, name: str) -> tuple[Lake, LocalLanding]:
    lake, zone = Lake(tmp / name / "lake"), LocalLanding(tmp / name / "landing")
    meters = ref.read("ref_meters")
    lake.write_partition(TABLES["ref_meters"], meters, None)
    landing_state(zone, sorted(meters["meter_id"].to_list()), "a")
    ingest_partitions(zone, lake, SRC, [D1, D2], _ids(lake), run_id="first", tz=DEFAULT_TIMEZONE)
    landing_state(zone, sorted(meters["meter_id"].to_list()), "b")
    return lake, zone


def run_child(lake: Lake, zone: LocalLanding, days: list[dt.date], kill_at: str | None) -> int:
    env = {k: v for k, v in os.environ.items() if k != manifest.KILL_ENV}
    if kill_at:
        env[manifest.KILL_ENV] = kill_at
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, lake.root, str(zone.root), ",".join(map(str, days))],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode in (0, -9), proc.stderr[-3000:]
    return proc.returncode


def snapshot(lake: Lake, published: bool = True) -> dict[str, pl.DataFrame]:
    """Every day table as readers see it, made comparable across lakes (lake root and run times removed)."""
    out = {}
    for role, t in SRC.day_tables.items():
        df = lake.read(t, published=published).drop("ingested_at", strict=False)
        if "archive_path" in df.columns:
            df = df.with_columns(pl.col("archive_path").str.replace(lake.root, "<lake>", literal=True))
        out[role] = df.sort(df.columns)
    pub = manifest.published(lake, SRC)
    out["manifest"] = pub.select("date", "files", "bronze_records", "silver_rows", "quarantined_rows", "duplicate_rows")
    return out


def assert_same(a: dict[str, pl.DataFrame], b: dict[str, pl.DataFrame], days: list[dt.date] | None = None) -> None:
    for k in a:
        x, y = a[k], b[k]
        if days is not None:
            x, y = x.filter(pl.col("date").is_in(days)), y.filter(pl.col("date").is_in(days))
        assert x.equals(y), f"{k} differs:\n{x}\n{y}"


@pytest.fixture(scope="module")
def clean(tmp_path_factory, small_sim):
    """The run that was never killed: days 1-2 at state a, then days 2-3 at state b."""
    from simulator import write_landing_reference

    tmp = tmp_path_factory.mktemp("atomic")
    refzone = LocalLanding(tmp / "ref")
    write_landing_reference(small_sim, refzone)
    ref = Lake(tmp / "reflake")
    ref.write_partition(TABLES["ref_meters"], pl.read_parquet(refzone.local_path("reference/ref_meters.parquet")), None)
    lake, zone = new_lake(tmp, ref, "clean")
    before = snapshot(lake)
    ingest_partitions(zone, lake, SRC, [D2, D3], _ids(lake), run_id="second", tz=DEFAULT_TIMEZONE)
    return {"ref": ref, "before": before, "after": snapshot(lake), "lake": lake}


def test_clean_runs_publish_every_day_and_reconcile(clean):
    lake = clean["lake"]
    pubs = manifest.publications(lake, SRC)
    assert pubs.select("date", "run_id").rows() == [(D1, "first"), (D2, "first"), (D2, "second"), (D3, "second")]
    latest = manifest.published(lake, SRC).row(1, named=True)
    assert latest["date"] == D2 and latest["run_id"] == "second"
    for role in manifest.ROLES:  # the versions named are the table's commits of that day
        assert latest[f"{role}_version"] <= lake.delta(SRC.day_tables[role]).version()
    # the correction changed day 2 between the runs: 2 duplicates, 12 more readings
    assert (
        clean["before"]["manifest"]["silver_rows"].to_list(),
        clean["after"]["manifest"]["silver_rows"].to_list(),
    ) == ([24, 24], [24, 36, 12])
    assert clean["after"]["manifest"]["duplicate_rows"].to_list() == [0, 2, 0]
    results = manifest.verify(lake)
    assert [r["ok"] for r in results] == [True, True, True] and all(r["difference"] == 0 for r in results)
    # the published view and the raw tables agree once nothing is in flight
    assert_same(clean["after"], snapshot(lake, published=False))


KILLS = [(p, D2) for p in manifest.KILL_POINTS] + [("after_silver", D3), ("before_manifest", D3)]


@pytest.mark.parametrize("point,day", KILLS, ids=[f"{p}@{d.day}" for p, d in KILLS])
def test_a_kill_anywhere_leaves_readers_on_the_last_publication_and_a_rerun_gives_the_clean_tables(
    clean, tmp_path, point, day
):
    lake, zone = new_lake(tmp_path, clean["ref"], "killed")
    assert run_child(lake, zone, [D2, D3], f"{point}@{day}") == -9

    seen = snapshot(lake)
    published_new = point == "after_manifest" or day == D3  # day 2 published anew before the kill on day 3
    # day 1 is untouched; day 2 is the previous publication, or the new one once its manifest row is in
    assert_same(seen, clean["after"] if published_new else clean["before"], [D1, D2])
    # a day never published is not visible at all, whatever its tables hold
    assert seen["silver"].filter(pl.col("date") == D3).height == 0 and D3 not in seen["manifest"]["date"].to_list()
    raw = lake.read(SRC.silver, published=False)
    if point in ("after_silver", "before_manifest"):  # the half-written day really is in the table
        assert raw.filter(pl.col("date") == day).height == clean["after"]["silver"].filter(pl.col("date") == day).height
    # what gold reads (one day of silver) and the record-level bronze view agree with the publication
    expect = clean["after"] if published_new else clean["before"]
    gold_input = lake.read(TABLES["silver_meter_readings"], D2).drop("ingested_at", strict=False)
    assert gold_input.height == expect["silver"].filter(pl.col("date") == D2).height
    assert (
        read_records(lake, SRC, D2).height == expect["manifest"].filter(pl.col("date") == D2)["bronze_records"].item()
    )
    # the reconciles check, outside Dagster, passes on what is published
    assert all(r["ok"] for r in manifest.verify(lake))
    # the DuckDB catalog shows the publication too
    cat = tmp_path / "c.duckdb"
    refresh_catalog(lake, cat, [SRC.silver, SRC.quarantine, SRC.bronze])
    for role in manifest.ROLES:
        t = SRC.day_tables[role]
        got = query(cat, f"SELECT * FROM {t.name}").drop("ingested_at", strict=False)
        if "archive_path" in got.columns:
            got = got.with_columns(pl.col("archive_path").str.replace(lake.root, "<lake>", literal=True))
        assert got.sort(got.columns).equals(seen[role]), role

    assert run_child(lake, zone, [D2, D3], None) == 0
    assert_same(snapshot(lake), clean["after"])
    assert_same(snapshot(lake, published=False), clean["after"])
    assert all(r["ok"] for r in manifest.verify(lake))


def test_a_lake_without_a_manifest_is_read_as_it_stands(tmp_path):
    lake = Lake(tmp_path / "lake")
    row = dict.fromkeys(SRC.silver.column_names) | {
        "date": D1,
        "meter_id": "M1",
        "reading_time": dt.datetime(2026, 11, 3, 12, tzinfo=dt.timezone.utc),
        "consumption_kwh": 0.5,
        "demand_kw": 1.0,
        "quality_flag": "ok",
        "source_file": "f.csv",
        "source_row": 1,
    }
    lake.write_partition(SRC.silver, pl.DataFrame([row], schema=SRC.silver.polars_schema()), D1)
    assert lake.read(SRC.silver, D1).height == 1
    # once a manifest exists, the same unpublished day disappears from readers
    manifest.ensure_manifest(lake, SRC)
    assert lake.read(SRC.silver, D1).height == 0 and lake.read(SRC.silver, D1, published=False).height == 1


def test_kill_point_names_are_checked(monkeypatch):
    monkeypatch.setenv(manifest.KILL_ENV, "after_lunch")
    with pytest.raises(ValueError, match="after_lunch"):
        manifest.fault_point("after_silver", SRC, D1)


def test_on_s3_a_rewritten_day_reads_as_published_in_polars_and_duckdb(moto_s3, clean, tmp_path):
    import boto3

    boto3.client("s3", endpoint_url=moto_s3).create_bucket(Bucket="gridlake-atomic-test")
    lake = Lake("s3://gridlake-atomic-test/lake")
    zone = LocalLanding(tmp_path / "landing")
    meters = clean["ref"].read("ref_meters")
    lake.write_partition(TABLES["ref_meters"], meters, None)
    landing_state(zone, sorted(meters["meter_id"].to_list()), "a")
    ingest_partitions(zone, lake, SRC, [D1, D2], _ids(lake), tz=DEFAULT_TIMEZONE)
    published = lake.read(SRC.silver, D2)
    # an unpublished rewrite of day 2 (as a run killed after its silver commit leaves it)
    lake.write_partition(SRC.silver, published.head(3), D2)
    assert lake.read(SRC.silver, D2, published=False).height == 3
    assert lake.read(SRC.silver, D2).sort("meter_id", "reading_time").equals(published.sort("meter_id", "reading_time"))
    p = manifest.plan(lake, SRC.silver)
    assert p.travel == (
        (manifest.published(lake, SRC).filter(pl.col("date") == D2)["silver_version"].item(), D2),
    ) and p.exclude == (D2,)
    cat = tmp_path / "s3.duckdb"
    refresh_catalog(lake, cat, [SRC.silver])
    assert query(cat, "SELECT date, count(*) AS n FROM silver_meter_readings GROUP BY 1 ORDER BY 1").rows() == [
        (D1, 24),
        (D2, 24),
    ]


def test_reconcile_outside_dagster_names_a_published_day_that_does_not_reconcile(clean, tmp_path):
    from lake.catalog import main

    lake, zone = new_lake(tmp_path, clean["ref"], "tampered")
    assert main(["reconcile", lake.root]) == 0
    # someone publishes day 2 with a silver partition that lost rows (the counts claim otherwise)
    pub = manifest.published(lake, SRC).filter(pl.col("date") == D2).row(0, named=True)
    w = lake.write_partition(SRC.silver, lake.read(SRC.silver, D2).head(20), D2)
    writes = {
        r: w if r == "silver" else lake.write_partition(SRC.day_tables[r], lake.read(SRC.day_tables[r], D2), D2)
        for r in manifest.ROLES
    }
    manifest.publish(lake, SRC, D2, writes, pub, "tamper")
    bad = [r for r in manifest.verify(lake) if not r["ok"]]
    assert [(r["date"], r["difference"], r["manifest_mismatch"]) for r in bad] == [
        (D2.isoformat(), 4, {"silver_rows": {"manifest": 24, "tables": 20}})
    ]
    assert main(["reconcile", lake.root]) == 1


def test_the_manifest_stays_a_few_files_and_keeps_every_publication(tmp_path, monkeypatch):
    monkeypatch.setattr(manifest, "COMPACT_ABOVE_FILES", 4)
    lake = Lake(tmp_path / "lake")
    pub = manifest.Publisher(lake, SRC)
    writes = {r: type("W", (), {"version": 1})() for r in manifest.ROLES}
    counts = dict(files=1, bronze_records=2, silver_rows=2, quarantined_rows=0, duplicate_rows=0)
    days = [D1 + dt.timedelta(days=i) for i in range(10)]
    for d in days:
        pub.publish(d, writes, counts, f"run-{d.day}")
    assert len(lake.delta(SRC.manifest).file_uris()) <= 5
    pubs = manifest.publications(lake, SRC)
    assert pubs["date"].to_list() == days and pubs["run_id"].to_list() == [f"run-{d.day}" for d in days]
