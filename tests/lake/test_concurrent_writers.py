"""Several processes replacing different partitions of one Delta table at once (as Celery workers running
different days of a backfill do), on a local folder and on a real S3 endpoint (moto server): no commit lost,
no duplicate or stale rows. On S3 the commit coordination is delta-rs 1.x's conditional PUT (lake.delta)."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing as mp
import time

import polars as pl
import pytest

from contracts import TABLES

TABLE = TABLES["gold_load_daily"]
WRITERS, ROUNDS, ROWS = 4, 4, 50
DAY0 = dt.date(2026, 3, 2)


def _frame(day: dt.date, writer: int, rnd: int) -> pl.DataFrame:
    """ROWS rows of the table for ``day``; every numeric measure carries the round, the entity the writer."""
    cols = {}
    for c in TABLE.columns:
        if c.name == TABLE.partition_by[0]:
            cols[c.name] = pl.Series([day] * ROWS, dtype=c.dtype)
        elif c.dtype == pl.Utf8:
            cols[c.name] = pl.Series(
                [f"w{writer}-r{rnd}-{i:03d}" if c.name == "entity_id" else "meter" for i in range(ROWS)]
            )
        elif c.dtype.is_numeric():
            cols[c.name] = pl.Series([rnd] * ROWS).cast(c.dtype)
        elif isinstance(c.dtype, pl.Datetime):
            cols[c.name] = pl.Series([dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)] * ROWS).cast(c.dtype)
        elif c.dtype == pl.Date:
            cols[c.name] = pl.Series([day] * ROWS)
        else:
            raise AssertionError(f"no filler for {c.name}: {c.dtype}")
    return pl.DataFrame(cols)


def _writer(args) -> list[int]:
    """One process: replace its own day ROUNDS times, starting at ``t0`` together with the others."""
    root, env, writer, t0 = args
    import os

    os.environ.update(env)
    from lake.delta import Lake

    lake, day = Lake(root), DAY0 + dt.timedelta(days=writer)
    while time.time() < t0:
        time.sleep(0.001)
    return [lake.write_partition(TABLE, _frame(day, writer, r), day, retries=20).version for r in range(ROUNDS)]


def _race(root: str, env: dict) -> None:
    """Create the table, race the writers, check the result; delta-rs runs only in child processes (the moto
    server is a thread of this one, and some delta-rs calls hold the GIL while they wait for it)."""
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        pool.apply(_create, (root, env))  # version 0
    t0 = time.time() + 2.0  # every process imported and waiting before the first write
    with ctx.Pool(WRITERS) as pool:
        versions = pool.map(_writer, [(root, env, w, t0) for w in range(WRITERS)])
    with ctx.Pool(1) as pool:
        pool.apply(_check, (root, env, versions))


def _create(root: str, env: dict) -> None:
    import os

    os.environ.update(env)
    from lake.delta import Lake

    Lake(root).create(TABLE)


def _check(root: str, env: dict, versions: list[list[int]]) -> None:
    import os

    os.environ.update(env)
    from lake.delta import Lake

    lake = Lake(root)
    commits = [v for per in versions for v in per]
    # no lost commit: every write got a version of its own, and the log holds exactly these commits
    assert len(set(commits)) == len(commits) == WRITERS * ROUNDS
    assert sorted(commits) == list(range(1, WRITERS * ROUNDS + 1))
    assert lake.delta(TABLE).version() == WRITERS * ROUNDS
    history = lake.delta(TABLE).history()
    assert sum(1 for h in history if h.get("operation") == "WRITE") == WRITERS * ROUNDS
    # each writer's commits are in its own order
    assert all(per == sorted(per) for per in versions)
    # no duplicate or stale rows: each day holds exactly its writer's last round, once
    df = lake.read(TABLE)
    assert df.height == WRITERS * ROWS
    assert df["entity_id"].n_unique() == WRITERS * ROWS
    for w in range(WRITERS):
        day = lake.read(TABLE, DAY0 + dt.timedelta(days=w))
        assert day.height == ROWS
        assert set(day["entity_id"].str.extract(r"^(w\d+-r\d+)-")) == {f"w{w}-r{ROUNDS - 1}"}


@pytest.mark.slow
def test_concurrent_partition_replacements_on_a_local_folder(tmp_path):
    _race(str(tmp_path / "lake"), {})


@pytest.mark.slow
@pytest.mark.s3
def test_concurrent_partition_replacements_on_s3(moto_s3):
    import os

    import boto3

    boto3.client("s3", endpoint_url=moto_s3).create_bucket(Bucket="gridlake-concurrent")
    env = {k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_ENDPOINT_URL")}
    _race("s3://gridlake-concurrent/lake", env)


@pytest.mark.s3
def test_a_stale_s3_writer_cannot_overwrite_a_commit(moto_s3):
    """The mechanism itself, deterministically: a writer holding an old snapshot whose next version was taken
    meanwhile must not overwrite that commit file (an unconditional PUT would), but commit after it."""
    import boto3

    from lake.delta import Lake, s3_storage_options_from_env

    assert s3_storage_options_from_env()["AWS_CONDITIONAL_PUT"] == "etag"
    s3 = boto3.client("s3", endpoint_url=moto_s3)
    s3.create_bucket(Bucket="gridlake-stale")
    lake = Lake("s3://gridlake-stale/lake")
    day = DAY0
    lake.write_partition(TABLE, _frame(day, 0, 0), day)  # versions 0 (create) and 1
    stale = lake.delta(TABLE)  # at version 1
    # another writer's commit 2 lands (written here as a commit file, as any Delta writer would)
    key = "lake/gold_load_daily/_delta_log/00000000000000000002.json"
    other = json.dumps({"commitInfo": {"timestamp": 1, "operation": "OTHER WRITER"}}).encode() + b"\n"
    s3.put_object(Bucket="gridlake-stale", Key=key, Body=other)
    from deltalake import write_deltalake

    from lake.delta import WRITER_PROPERTIES

    write_deltalake(stale, TABLE.conform(_frame(day + dt.timedelta(days=1), 1, 0)), mode="append", partition_by=list(TABLE.partition_by),
                    storage_options=lake.storage_options, writer_properties=WRITER_PROPERTIES)  # fmt: skip
    assert s3.get_object(Bucket="gridlake-stale", Key=key)["Body"].read() == other
    assert lake.delta(TABLE).version() == 3
    assert lake.read(TABLE, published=False).height == 2 * ROWS
