"""lake.delta.Lake: concurrent writers of one table (different partitions) all land, each write
returns the version it committed, and a rewrite replaces exactly its partition."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import polars as pl

from contracts import SOURCES
from lake.delta import Lake

BRONZE = SOURCES["meter_readings"].bronze
D0 = dt.date(2026, 2, 1)


def _index(day: dt.date, n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "date": [day] * n,
            "source_file": [f"meter_readings/{day}/f{i}.csv" for i in range(n)],
            "archive_path": [f"/x/{day}/f{i}.csv" for i in range(n)],
            "source_format": ["csv"] * n,
            "bytes": [100] * n,
            "records": list(range(n)),
            "problem": [None] * n,
            "detail": [None] * n,
            "ingested_at": [dt.datetime(2026, 2, 2, tzinfo=dt.timezone.utc)] * n,
        }
    )


def test_concurrent_partition_writes_to_one_table_all_land(tmp_path):
    lake = Lake(tmp_path / "lake")
    days = [D0 + dt.timedelta(days=i) for i in range(12)]
    with ThreadPoolExecutor(max_workers=4) as pool:  # four writers racing on one Delta log
        results = list(pool.map(lambda d: lake.write_partition(BRONZE, _index(d, 3), d), days))
    versions = [r.version for r in results]
    assert len(set(versions)) == len(days)  # every write is its own commit, reported with its version
    got = lake.read(BRONZE)
    assert got.height == 3 * len(days) and sorted(got["date"].unique().to_list()) == days
    # a rewrite replaces exactly its partition
    r = lake.write_partition(BRONZE, _index(days[5], 1), days[5])
    assert r.version == max(versions) + 1
    got = lake.read(BRONZE)
    assert got.height == 3 * len(days) - 2 and lake.read(BRONZE, days[5]).height == 1


def test_read_days_returns_the_inclusive_date_range_and_an_absent_table_as_empty_with_schema(tmp_path):
    lake = Lake(tmp_path / "lake")
    empty = lake.read_days(BRONZE, D0, D0 + dt.timedelta(days=5), columns=["date", "records"])
    assert empty.height == 0 and empty.schema == {"date": pl.Date, "records": BRONZE.polars_schema()["records"]}
    for i in range(5):
        lake.write_partition(BRONZE, _index(D0 + dt.timedelta(days=i), 2), D0 + dt.timedelta(days=i))
    got = lake.read_days(BRONZE, D0 + dt.timedelta(days=1), D0 + dt.timedelta(days=3))
    assert sorted(set(got["date"].to_list())) == [D0 + dt.timedelta(days=i) for i in (1, 2, 3)]
    assert got.height == 6 and got.columns == BRONZE.column_names


def _streamed_partition_write_checks(lake: Lake) -> None:
    """A partition written from a stream of frames (class 9: a spilled day) replaces exactly that day in
    one commit, reported with its own version; other days are untouched; rows outside it are refused."""
    lake.write_partition(BRONZE, _index(D0, 2), D0)
    lake.write_partition(BRONZE, _index(D0 + dt.timedelta(days=1), 4), D0 + dt.timedelta(days=1))
    before = lake.delta(BRONZE).version()
    pieces = [_index(D0 + dt.timedelta(days=1), n) for n in (3, 0, 5)]
    lake.STREAMED_FILE_ROWS = 4  # a file rolls over inside the stream
    w = lake.write_partition(BRONZE, pieces, D0 + dt.timedelta(days=1))
    assert (w.version, w.rows) == (before + 1, 8) and lake.delta(BRONZE).version() == w.version
    assert lake.commit_partitions(BRONZE, w.version) == {D0 + dt.timedelta(days=1)}
    got = lake.read(BRONZE, published=False)
    assert (
        got.filter(pl.col("date") == D0).height == 2
        and got.filter(pl.col("date") == D0 + dt.timedelta(days=1)).height == 8
    )
    assert sorted(got.filter(pl.col("date") == D0 + dt.timedelta(days=1))["records"].to_list()) == sorted(
        [0, 1, 2, 0, 1, 2, 3, 4]
    )
    assert (
        got.filter(pl.col("date") == D0 + dt.timedelta(days=1)).drop("records").unique().height == 5
    )  # the pieces' rows, as sent
    try:
        lake.write_partition(BRONZE, [_index(D0, 1)], D0 + dt.timedelta(days=1))
    except ValueError as e:
        assert "outside partition" in str(e)
    else:
        raise AssertionError("a row of another day was written")


def test_a_streamed_partition_write_is_one_commit_of_that_day_only(tmp_path):
    _streamed_partition_write_checks(Lake(tmp_path / "lake"))


def test_a_streamed_partition_write_on_s3(moto_s3):
    import boto3

    boto3.client("s3", endpoint_url=moto_s3).create_bucket(Bucket="gridlake-stream-test")
    _streamed_partition_write_checks(Lake("s3://gridlake-stream-test/lake"))
