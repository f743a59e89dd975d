"""make bench-ingest: landing -> silver ingestion against a bare Parquet -> Delta copy, same data, one run.

(a) bare copy: read each day's landing Parquet files and write the same rows to a Delta table with
    the same writer settings (lake.delta.WRITER_PROPERTIES), nothing else;
(b) full ingestion: lake.ingest.ingest_partitions over the days (what a Dagster backfill runs):
    archive to bronze, read, validate, resolve time zones, deduplicate, flag, write silver +
    quarantine + the bronze file index, each day an atomic partition replacement. Day N is
    written while day N+1 is read and validated, so for transparency (a') is also measured: the
    bare copy with the same overlap (day N+1 read while day N is written).

Each measurement runs in a fresh subprocess (so its peak RSS is its own), best of N for speed.
Memory: peak RSS of ingesting 1 day vs 10 days of the same fleet (10x the rows), and, for
transparency, one single 10x-larger day. Then one single large CSV file (a head-end's monthly
export: 20 M one-minute readings by default, GRIDLAKE_BENCH_BIG_ROWS or --big-rows to change it),
read in chunks of GRIDLAKE_INGEST_CHUNK_BYTES: its peak RSS and rows/s, and the peak RSS of a file
a tenth of its size, so the growth with file size is visible. Figures go to benchmarks/results/ingest.json.

    python -m benchmarks.bench_ingest [--meters 10000] [--days 10] [--repeat 2] [--big-rows 20000000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from contracts import DEFAULT_TIMEZONE

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "work" / "ingest"
RESULTS = ROOT / "benchmarks" / "results" / "ingest.json"
START = dt.date(2026, 1, 12)


def _days(n: int, start: dt.date = START) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range(n)]


# ------------------------------------------------------------------------ children (one job each)
def child_copy(landing: Path, days: list[dt.date], out: Path) -> dict:
    import polars as pl
    from deltalake import write_deltalake

    from lake.delta import WRITER_PROPERTIES

    shutil.rmtree(out, ignore_errors=True)
    rows = 0
    t = time.perf_counter()
    for d in days:
        files = sorted((landing / "meter_readings" / d.isoformat()).glob("*.parquet"))
        df = pl.read_parquet(files)
        write_deltalake(str(out), df, mode="append", writer_properties=WRITER_PROPERTIES)
        rows += df.height
    return {"seconds": time.perf_counter() - t, "rows": rows}


def child_copy_overlapped(landing: Path, days: list[dt.date], out: Path) -> dict:
    """The bare copy with the same overlap ingestion gets: day N+1 is read while day N is written."""
    from concurrent.futures import ThreadPoolExecutor

    import polars as pl
    from deltalake import write_deltalake

    from lake.delta import WRITER_PROPERTIES

    shutil.rmtree(out, ignore_errors=True)
    read = lambda d: pl.read_parquet(sorted((landing / "meter_readings" / d.isoformat()).glob("*.parquet")))  # noqa: E731
    rows = 0
    t = time.perf_counter()
    with ThreadPoolExecutor(max_workers=1) as pool:
        nxt = pool.submit(read, days[0])
        for i in range(len(days)):
            df = nxt.result()
            if i + 1 < len(days):
                nxt = pool.submit(read, days[i + 1])
            write_deltalake(str(out), df, mode="append", writer_properties=WRITER_PROPERTIES)
            rows += df.height
    return {"seconds": time.perf_counter() - t, "rows": rows}


def child_ingest(landing: Path, days: list[dt.date], out: Path) -> dict:
    import polars as pl

    from contracts import SOURCES
    from lake.delta import Lake
    from lake.ingest import ingest_partitions
    from lake.landing import LocalLanding

    shutil.rmtree(out, ignore_errors=True)
    zone, lake = LocalLanding(landing), Lake(out)
    ids = pl.read_parquet(landing / "reference" / "ref_meters.parquet")["meter_id"]
    src = SOURCES["meter_readings"]
    rows = silver = quarantined = 0
    timings: dict[str, float] = {}
    t = time.perf_counter()
    results = ingest_partitions(zone, lake, src, days, ids, tz=DEFAULT_TIMEZONE)
    for r in results:
        assert r.reconciles
        rows += r.raw_rows
        silver += r.silver_rows
        quarantined += r.quarantined_rows
        for k, v in r.timings_s.items():
            timings[k] = timings.get(k, 0.0) + v
    return {
        "seconds": time.perf_counter() - t,
        "rows": rows,
        "silver_rows": silver,
        "quarantined_rows": quarantined,
        "stages_s": timings,
    }


def _generate_big_csv(landing: Path, rows: int, day: dt.date, seed: int, bad_share: float = 0.0) -> int:
    """One CSV file of ``rows`` one-minute readings (ceil(rows / 1440) meters), written in blocks.

    ``bad_share``: that share of the meters (so of the rows) is missing from the reference table, so their
    rows are rejected as ``unknown_entity``: a file that is almost all quarantine (issue 9)."""
    import numpy as np
    import polars as pl

    n_meters = -(-rows // 1440)
    ids = [f"B{i:07d}" for i in range(n_meters)]
    (landing / "reference").mkdir(parents=True, exist_ok=True)
    known = ids[round(n_meters * bad_share) :] or ids[-1:]  # at least one known meter: a real reference table
    pl.DataFrame({"meter_id": known}).write_parquet(landing / "reference" / "ref_meters.parquet")
    folder = landing / "meter_readings" / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    local0 = dt.datetime.combine(day, dt.time())
    minutes = pl.datetime_range(local0, local0 + dt.timedelta(minutes=1439), "1m", eager=True).dt.strftime(
        "%Y-%m-%d %H:%M:%S"
    )
    written = 0
    with open(folder / "monthly-export.csv", "wb") as out:
        for b0 in range(0, n_meters, 500):
            block = ids[b0 : b0 + 500]
            n = min(len(block) * 1440, rows - written)
            df = pl.DataFrame(
                {
                    "meter_id": np.repeat(block, 1440)[:n],
                    "reading_time": pl.concat([minutes] * len(block))[:n],
                    "consumption_kwh": rng.gamma(2.0, 0.01, n).round(4),
                    "demand_kw": rng.normal(0.8, 0.3, n).round(4),
                    "voltage": rng.normal(231.0, 2.0, n).round(2),
                    "current_amps": rng.gamma(2.0, 1.5, n).round(3),
                    "power_factor": rng.uniform(0.85, 1.0, n).round(3),
                }
            )
            df.write_csv(out, include_header=written == 0)
            written += n
            if written >= rows:
                break
    return written


def _child_main(args) -> None:
    days = [dt.date.fromisoformat(d) for d in args.child_days.split(",")]
    fn = {"copy": child_copy, "copy_overlapped": child_copy_overlapped, "ingest": child_ingest}[args.child]
    out = fn(Path(args.landing), days, Path(args.out))
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


# ------------------------------------------------------------------------ parent
def _run_child(kind: str, landing: Path, days: list[dt.date], tag: str) -> dict:
    cmd = [
        sys.executable, "-m", "benchmarks.bench_ingest", "--child", kind, "--landing", str(landing),
        "--child-days", ",".join(d.isoformat() for d in days), "--out", str(WORK / f"out_{kind}_{tag}"),
    ]  # fmt: skip
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{kind} child failed:\n{p.stderr[-4000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _generate(landing: Path, meters: int, days: list[dt.date], seed: int) -> int:
    from lake.landing import LocalLanding
    from simulator import BadRecordRates, SimConfig, Simulator, write_landing_day, write_landing_reference

    sim = Simulator(SimConfig(n_meters=meters, start=days[0], days=len(days), seed=seed, interval_minutes=30))
    zone = LocalLanding(landing)
    write_landing_reference(sim, zone)
    # a realistic trickle of bad rows, so the validation paths do real work
    bad = BadRecordRates(out_of_range=0.0005, duplicate=0.0005, unknown_entity=0.0002)
    rows = 0
    for i, d in enumerate(days):
        m = write_landing_day(
            sim,
            d,
            zone,
            formats="parquet",
            bad=bad,
            rows_per_file=100_000,
            sources=("meter_readings",),
            write_manifest=False,
        )
        rows += m.rows_written("meter_readings")
        print(f"  generated {d}: {m.rows_written('meter_readings'):,} rows ({i + 1}/{len(days)})", flush=True)
    return rows


#: share of rows the mostly-rejected big file's rows name meters missing from the reference (issue 9)
BAD_SHARE = 0.95


def _big_file_cases(days: list[dt.date], big_rows: int, seed: int, clean: bool = True, bad: bool = True) -> dict:
    """One CSV file of ``big_rows`` rows and one of a tenth of them: peak RSS and rows/s of each; likewise
    (``bad``) the same files with 95 % of their rows rejected (unknown meters), whose quarantine is as
    large as the file: ``big_bad*`` keys."""
    from lake.readers import DEFAULT_CHUNK_BYTES
    from lake.spill import memory_budget_bytes

    out: dict = {}
    cases = [("big_tenth", big_rows // 10, 0.0), ("big", big_rows, 0.0)] if clean else []
    cases += [("big_bad_tenth", big_rows // 10, BAD_SHARE), ("big_bad", big_rows, BAD_SHARE)] if bad else []
    for tag, n, bad_share in cases:
        big = WORK / f"landing_csv_{tag}"
        print(f"generating one CSV file of {n:,} rows ({bad_share:.0%} of them for unknown meters)")
        t = time.perf_counter()
        _generate_big_csv(big, n, days[0], seed + 2, bad_share=bad_share)
        size = (big / "meter_readings" / days[0].isoformat() / "monthly-export.csv").stat().st_size
        print(f"  {size / 1e9:.2f} GB in {time.perf_counter() - t:.0f}s; ingesting", flush=True)
        one = _run_child("ingest", big, days[:1], tag)
        shutil.rmtree(big, ignore_errors=True)
        shutil.rmtree(WORK / f"out_ingest_{tag}", ignore_errors=True)
        out[f"{tag}_csv_rows"] = one["rows"]
        out[f"{tag}_csv_bytes"] = size
        out[f"{tag}_csv_peak_rss_mb"] = round(one["peak_rss_mb"], 1)
        out[f"{tag}_csv_rows_per_s"] = round(one["rows"] / one["seconds"])
        out[f"{tag}_csv_quarantined_rows"] = one.get("quarantined_rows")
        out[f"{tag}_csv_stage_seconds"] = {k: round(v, 1) for k, v in one["stages_s"].items()}
    out["chunk_bytes"] = DEFAULT_CHUNK_BYTES
    out["memory_budget_mb"] = memory_budget_bytes() >> 20
    for big, tenth in (("big", "big_tenth"), ("big_bad", "big_bad_tenth")):
        if f"{big}_csv_rows" not in out:
            continue
        out[f"{big}_csv_rss_growth_per_extra_row_bytes"] = round(
            (out[f"{big}_csv_peak_rss_mb"] - out[f"{tenth}_csv_peak_rss_mb"])
            * 2**20
            / (out[f"{big}_csv_rows"] - out[f"{tenth}_csv_rows"]),
            1,
        )
        out[f"{big}_csv_peak_rss_ratio_vs_tenth"] = round(
            out[f"{big}_csv_peak_rss_mb"] / out[f"{tenth}_csv_peak_rss_mb"], 2
        )
    return out


def _print_big(out: dict) -> None:
    for big, tenth in (("big", "big_tenth"), ("big_bad", "big_bad_tenth")):
        if f"{big}_csv_rows" not in out:
            continue
        for tag in (tenth, big):
            q = out.get(f"{tag}_csv_quarantined_rows")
            print(
                f"  one CSV file of {out[f'{tag}_csv_rows']:,} rows ({out[f'{tag}_csv_bytes'] / 1e9:.2f} GB{f', {q:,} quarantined' if q else ''}): "
                f"peak RSS {out[f'{tag}_csv_peak_rss_mb']:.0f} MB, {out[f'{tag}_csv_rows_per_s'] / 1e6:.2f} M rows/s"
            )
        print(
            f"  peak RSS 10x rows / 1x: {out[f'{big}_csv_peak_rss_ratio_vs_tenth']:.2f}; growth per extra row {out[f'{big}_csv_rss_growth_per_extra_row_bytes']:.0f} bytes "
            f"(chunks of {out['chunk_bytes'] >> 20} MiB, day budget {out['memory_budget_mb']} MB)"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--meters", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--skip-single", action="store_true", help="skip the single 10x-larger day")
    ap.add_argument(
        "--big-rows",
        type=int,
        default=int(os.environ.get("GRIDLAKE_BENCH_BIG_ROWS", 20_000_000)),
        help="rows of the single large CSV file (0: skip)",
    )
    ap.add_argument("--child", choices=["copy", "copy_overlapped", "ingest"])
    ap.add_argument("--landing")
    ap.add_argument("--child-days")
    ap.add_argument("--out")
    ap.add_argument(
        "--only-big",
        action="store_true",
        help="only the single large CSV file cases (benchmarks/results/ingest_big_file.json)",
    )
    ap.add_argument(
        "--only-bad",
        action="store_true",
        help="with --only-big: only the mostly-rejected files (big_bad* keys updated in ingest_big_file.json)",
    )
    args = ap.parse_args(argv)
    if args.child:
        _child_main(args)
        return 0
    if args.only_big:
        WORK.mkdir(parents=True, exist_ok=True)
        load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        path = RESULTS.with_name("ingest_big_file.json")
        cases = _big_file_cases(_days(1), args.big_rows, args.seed, clean=not args.only_bad)
        if args.only_bad and path.exists():  # the clean files' figures stay as measured
            out = json.loads(path.read_text()) | cases | {"load_bad_before": load}
        else:
            out = {
                "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
                "load_before": load,
                **cases,
            }
        out["load_bad_after" if args.only_bad else "load_after"] = subprocess.run(
            ["uptime"], capture_output=True, text=True
        ).stdout.strip()
        path.write_text(json.dumps(out, indent=2) + "\n")
        _print_big(out)
        lb, la = ("load_bad_before", "load_bad_after") if args.only_bad else ("load_before", "load_after")
        print(f"  load: {out[lb]} -> {out[la]}\n  written to {path.relative_to(ROOT)}")
        return 0

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    days = _days(args.days)
    landing = WORK / "landing"
    print(f"generating {args.meters:,} meters x {args.days} days of 30-minute readings (Parquet landing files)")
    total = _generate(landing, args.meters, days, args.seed)

    best: dict[str, dict] = {}
    for r in range(args.repeat):
        for kind in ("copy", "copy_overlapped", "ingest"):
            res = _run_child(kind, landing, days, f"{r}")
            print(
                f"  run {r + 1}/{args.repeat} {kind:15s}: {res['rows']:,} rows in {res['seconds']:.2f}s = {res['rows'] / res['seconds'] / 1e6:.2f} M rows/s, peak {res['peak_rss_mb']:.0f} MB",
                flush=True,
            )
            if kind not in best or res["seconds"] < best[kind]["seconds"]:
                best[kind] = res
    small = _run_child("ingest", landing, days[:1], "small")
    large_rss = best["ingest"]["peak_rss_mb"]
    copy_rps = best["copy"]["rows"] / best["copy"]["seconds"]
    ingest_rps = best["ingest"]["rows"] / best["ingest"]["seconds"]
    out = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "meters": args.meters,
        "days": args.days,
        "rows": total,
        "copy_rows_per_s": round(copy_rps),
        "ingest_rows_per_s": round(ingest_rps),
        "ratio": round(ingest_rps / copy_rps, 3),
        # for transparency: the copy given the same read/write overlap the ingestion loop has
        "copy_overlapped_rows_per_s": round(best["copy_overlapped"]["rows"] / best["copy_overlapped"]["seconds"]),
        "ratio_vs_overlapped_copy": round(
            ingest_rps / (best["copy_overlapped"]["rows"] / best["copy_overlapped"]["seconds"]), 3
        ),
        "ingest_stage_seconds": {k: round(v, 2) for k, v in best["ingest"]["stages_s"].items()},
        "peak_rss_mb_small": round(small["peak_rss_mb"], 1),
        "rows_small": small["rows"],
        "peak_rss_mb_large": round(large_rss, 1),
        "rows_large": best["ingest"]["rows"],
        "memory_growth_large_vs_small": round(large_rss / small["peak_rss_mb"], 2),
        "targets": {"ratio": 0.85, "ingest_rows_per_s": 1_000_000, "memory_growth_large_vs_small": 2.0},
    }
    if not args.skip_single:
        # one day of a fleet 10x larger: memory scales with the partition, not with history
        big = WORK / "landing_big"
        print(f"generating one day of {args.meters * 10:,} meters (a single 10x partition)")
        _generate(big, args.meters * 10, days[:1], args.seed + 1)
        one = _run_child("ingest", big, days[:1], "single")
        out["peak_rss_mb_single_10x_partition"] = round(one["peak_rss_mb"], 1)
        out["single_10x_partition_rows_per_s"] = round(one["rows"] / one["seconds"])
    if args.big_rows:
        out.update(_big_file_cases(days, args.big_rows, args.seed))
    out["met"] = {
        "ratio": out["ratio"] >= 0.85,
        "ingest_rows_per_s": out["ingest_rows_per_s"] >= 1_000_000,
        "memory": out["memory_growth_large_vs_small"] <= 2.0,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print("\nbench-ingest results")
    print(f"  bare copy (Parquet read + Delta write): {copy_rps / 1e6:6.2f} M rows/s")
    print(f"  bare copy, next day read during write:  {out['copy_overlapped_rows_per_s'] / 1e6:6.2f} M rows/s")
    print(
        f"  full landing -> silver ingestion:       {ingest_rps / 1e6:6.2f} M rows/s   ratio {out['ratio']:.3f} (target >= 0.85;"
        f" {out['ratio_vs_overlapped_copy']:.3f} against the overlapped copy)"
    )
    print(f"  ingestion stages (s): {out['ingest_stage_seconds']}")
    print(
        f"  peak RSS: 1 day {out['peak_rss_mb_small']:.0f} MB, {args.days} days {out['peak_rss_mb_large']:.0f} MB -> x{out['memory_growth_large_vs_small']:.2f} (target <= 2)"
    )
    if "peak_rss_mb_single_10x_partition" in out:
        print(
            f"  one 10x-larger day: peak RSS {out['peak_rss_mb_single_10x_partition']:.0f} MB, {out['single_10x_partition_rows_per_s'] / 1e6:.2f} M rows/s"
        )
    if "big_csv_rows" in out:
        _print_big(out)
    print(f"  written to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
