"""make bench-manifest: what reading day tables *as published* (lake.manifest) costs readers.

On one lake holding N ingested days of meter readings (each day its own publication, so every day
sits at a different Delta version), best of --repeat, all in this process:

(a) raw: the current snapshot of silver, no manifest (what readers did before publication);
(b) published: the read plan (pinned snapshot minus unpublished days): one scan in the steady state;
(c) the alternative design: every day read by time travel at the version its manifest row names;
(d) published with one day re-written but not published (plan + one time-travel scan);
(e) one day, as gold reads it: raw vs published;
(f) the DuckDB catalog view: count(*) and a per-day aggregate, raw delta_scan vs published view;
(g) reading the manifest itself after --publications appended rows (one file each), before and
    after compaction.

    python -m benchmarks.bench_manifest_read [--meters 2000] [--days 30] [--repeat 5] [--publications 1000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from contracts import DEFAULT_TIMEZONE

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "work" / "manifest_read"
RESULTS = ROOT / "benchmarks" / "results" / "manifest_read.json"
START = dt.date(2026, 1, 12)


def best(fn, repeat: int) -> tuple[float, object]:
    out, times = None, []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--meters", type=int, default=2000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--publications", type=int, default=1000)
    args = ap.parse_args(argv)

    import polars as pl

    from benchmarks.bench_ingest import _generate
    from contracts import SOURCES
    from lake import manifest
    from lake.catalog import connect, refresh_catalog
    from lake.delta import Lake
    from lake.ingest import ingest_partitions
    from lake.landing import LocalLanding

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    days = [START + dt.timedelta(days=i) for i in range(args.days)]
    print(f"generating {args.meters:,} meters x {args.days} days, ingesting them (one publication per day)")
    _generate(WORK / "landing", args.meters, days, 7)
    lake, src = Lake(WORK / "lake"), SOURCES["meter_readings"]
    ids = pl.read_parquet(WORK / "landing" / "reference" / "ref_meters.parquet")["meter_id"]
    ingest_partitions(LocalLanding(WORK / "landing"), lake, src, days, ids, tz=DEFAULT_TIMEZONE)
    pub = manifest.published(lake, src)
    t = src.silver
    r = args.repeat
    res: dict[str, float] = {}

    res["raw_all_days_s"], raw = best(lambda: lake.read(t, published=False), r)
    res["published_all_days_s"], got = best(lambda: lake.read(t), r)
    assert got.height == raw.height

    def time_travel_each_day():
        parts = [
            pl.scan_delta(lake.uri(t), version=v).filter(pl.col("date") == d)
            for d, v in pub.select("date", "silver_version").iter_rows()
        ]
        return pl.concat(parts).collect()

    res["time_travel_every_day_s"], tt = best(time_travel_each_day, max(1, r // 2))
    assert tt.height == raw.height
    mid = days[len(days) // 2]
    res["raw_one_day_s"], _ = best(lambda: lake.read(t, mid, published=False), r)
    res["published_one_day_s"], _ = best(lambda: lake.read(t, mid), r)

    cat = WORK / "c.duckdb"
    refresh_catalog(lake, cat, [t])
    uri = lake.uri(t)
    q_count = "SELECT count(*) FROM {}"
    q_day = "SELECT date, sum(consumption_kwh), max(demand_kw) FROM {} GROUP BY 1"
    with connect(cat, read_only=True) as con:
        for name, q in (("count", q_count), ("per_day", q_day)):
            res[f"duckdb_raw_{name}_s"], _ = best(lambda: con.execute(q.format(f"delta_scan('{uri}')")).fetchall(), r)
            res[f"duckdb_published_{name}_s"], _ = best(lambda: con.execute(q.format(t.name)).fetchall(), r)

    # one day re-written and not published (a run killed after its silver commit)
    lake.write_partition(t, raw.filter(pl.col("date") == mid).head(10), mid)
    res["published_all_days_one_dirty_s"], got = best(lambda: lake.read(t), r)
    assert got.height == raw.height
    res["plan_s"], p = best(lambda: manifest.plan(lake, t), r)
    assert p.travel and p.travel[0][1] == mid

    # the manifest itself after many publications (append-only, one small file each)
    row = pub.row(0, named=True)
    writes = {k: type("W", (), {"version": row[f"{k}_version"]})() for k in manifest.ROLES}
    t0 = time.perf_counter()
    for _ in range(args.publications - len(days)):
        manifest.publish(lake, src, row["date"], writes, row, "bench")
    res["publish_one_row_s"] = (time.perf_counter() - t0) / max(1, args.publications - len(days))
    res[f"manifest_read_{args.publications}_files_s"], _ = best(lambda: manifest.publications(lake, src), r)
    lake.delta(src.manifest).optimize.compact()
    res[f"manifest_read_{args.publications}_compacted_s"], _ = best(lambda: manifest.publications(lake, src), r)

    out = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "meters": args.meters,
        "days": args.days,
        "rows": raw.height,
        "publications": args.publications,
        "seconds": {k: round(v, 4) for k, v in res.items()},
        "ratios": {
            "published_vs_raw_all_days": round(res["published_all_days_s"] / res["raw_all_days_s"], 2),
            "time_travel_every_day_vs_raw": round(res["time_travel_every_day_s"] / res["raw_all_days_s"], 2),
            "published_vs_raw_one_day": round(res["published_one_day_s"] / res["raw_one_day_s"], 2),
            "one_dirty_day_vs_raw_all_days": round(res["published_all_days_one_dirty_s"] / res["raw_all_days_s"], 2),
            "duckdb_published_vs_raw_count": round(res["duckdb_published_count_s"] / res["duckdb_raw_count_s"], 2),
            "duckdb_published_vs_raw_per_day": round(
                res["duckdb_published_per_day_s"] / res["duckdb_raw_per_day_s"], 2
            ),
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
