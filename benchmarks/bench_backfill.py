"""make bench-backfill: a real (not extrapolated) ingestion backfill of the simulated year, as a backfill runs it.

The landing zone is bench-pipeline's cached simulation (N meters x 365 days at 30 minutes, built first if absent;
its time is reported separately). On a fresh lake and a PostgreSQL Dagster instance of its own (deploy/dagster.yaml),
``load_reference`` runs, then ``daily_ingest`` over the days as Dagster's backfill of it does: the daily assets'
``BackfillPolicy`` (assets.partitions.BACKFILL_DAYS_PER_RUN) splits the range into range runs, and the run
queue's ``dagster/backfill`` limit (2, deploy/dagster.yaml) runs two of them at once. Here each range run is a
``dagster job execute`` subprocess (in-process executor) with the range tags a backfill gives it, at most
``--concurrent`` at a time; a run's CPU and peak RSS come from os.wait4.

Reported (benchmarks/results/backfill.json): wall seconds of the whole backfill, CPU seconds (every run process,
its children included), silver rows and rows/s, peak RSS per run, the load average at start and end, and the
per-stage split from the runs' event logs: each step's wall seconds (ingest per source, gold steps) summed over
the runs, and the ingestion's own per-day timings (read+validate, dedupe+flag, Delta writes + publication).

    python -m benchmarks.bench_backfill [--meters 10000] [--days 365] [--concurrent 2] [--days-per-run N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

from benchmarks.bench_pipeline import YEAR_START, Bench, _pg_database, _silver_rows, landing_dir, simulate

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "backfill.json"


def chunks(lo: dt.date, days: int, per_run: int) -> list[tuple[dt.date, dt.date]]:
    """The range runs of a backfill of ``days`` days from ``lo``: consecutive ranges of at most ``per_run`` days
    (what Dagster's ``BackfillPolicy.multi_run(max_partitions_per_run)`` makes of the partition keys)."""
    out = []
    for i in range(0, days, per_run):
        out.append((lo + dt.timedelta(days=i), lo + dt.timedelta(days=min(days, i + per_run) - 1)))
    return out


def stage_split(env: dict, bench_tag: str) -> dict:
    """Per-step wall seconds (summed over the runs) and the ingestion's per-day timings, from the event log."""
    from dagster import DagsterEventType, DagsterInstance, RunsFilter

    saved = dict(os.environ)
    os.environ.update({k: v for k, v in env.items() if k.startswith(("GRIDLAKE_PG_", "DAGSTER_HOME"))})
    try:
        with DagsterInstance.get() as inst:
            runs = inst.get_runs(filters=RunsFilter(tags={"gridlake/bench": bench_tag}))
            steps: dict[str, float] = defaultdict(float)
            ingest: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
            for run in runs:
                if run.job_name != "daily_ingest":
                    continue
                start: dict[str, float] = {}
                kinds = {DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE}
                for e in inst.all_logs(run.run_id, of_type=kinds):
                    if e.dagster_event.event_type == DagsterEventType.STEP_START:
                        start[e.step_key] = e.timestamp
                    elif e.step_key in start:
                        steps[e.step_key] += e.timestamp - start[e.step_key]
                seen = (
                    set()
                )  # a range run records its materialization once per partition, each with every day's timings
                for e in inst.all_logs(run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
                    mat = e.dagster_event.event_specific_data.materialization
                    secs = mat.metadata.get("seconds")
                    name = mat.asset_key.path[0]
                    if secs is None or not name.startswith("silver_") or name in seen:
                        continue
                    seen.add(name)
                    for per_day in secs.value.values():
                        for stage, s in per_day.items():
                            ingest[mat.asset_key.path[0].removeprefix("silver_")][stage] += s
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return {
        "step_wall_s": {k: round(v, 1) for k, v in sorted(steps.items(), key=lambda kv: -kv[1])},
        "ingest_stage_s": {src: {k: round(v, 1) for k, v in st.items()} for src, st in sorted(ingest.items())},
    }


def backfill(meters: int, days: int, concurrent: int, per_run: int) -> dict:
    t = time.perf_counter()
    # only the days the backfill reads (each day is a pure function of the year's config): a slice of the year
    # does not wait for the whole year's simulation (~26 min at 10,000 meters)
    last = YEAR_START + dt.timedelta(days=days - 1)
    sim = simulate(meters, 365, only=None if days >= 365 else (YEAR_START, last))
    sim_wall = time.perf_counter() - t
    pg, drop = _pg_database("bf")
    b = Bench(meters, 365, "year_backfill", pg)
    try:
        ref = b.run("load_reference")
        ranges = chunks(YEAR_START, days, per_run)
        print(
            f"  backfill {meters:,} meters x {days} days: {len(ranges)} range run(s) of <= {per_run} days, "
            f"{concurrent} at a time",
            flush=True,
        )
        load0, cpu_self0 = os.getloadavg(), time.process_time()
        recs: dict[tuple, dict] = {}
        errors: list[BaseException] = []
        slots = threading.Semaphore(concurrent)

        def one(lo: dt.date, hi: dt.date) -> None:
            with slots:
                try:
                    recs[(lo, hi)] = b.run(
                        "daily_ingest", partition=lo, until=hi, tags={"dagster/backfill": f"bench-{b.dir.name}"}
                    )
                except BaseException as e:  # noqa: BLE001 - re-raised below, after the other runs end
                    errors.append(e)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=one, args=r) for r in ranges]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t0
        load1 = os.getloadavg()
        if errors:
            raise errors[0]
        rows = _silver_rows(b, YEAR_START, YEAR_START + dt.timedelta(days=days - 1))
        cpu = sum(r["cpu_s"] for r in recs.values())
        out = {
            "meters": meters,
            "days": days,
            "extrapolated": False,
            "range_runs": [
                {
                    "first": lo.isoformat(),
                    "last": hi.isoformat(),
                    **{k: r[k] for k in ("wall_s", "cpu_s", "peak_rss_mb")},
                }
                for (lo, hi), r in sorted(recs.items())
            ],
            "concurrent_runs": concurrent,
            "days_per_run": per_run,
            "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1),
            "cpu_s_per_day": round(cpu / days, 3),
            "cores_used": round(cpu / wall, 2),
            "silver_rows": rows,
            "rows_per_s": round(rows / wall),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in recs.values()),
            "load_avg_start_end": [round(load0[0], 1), round(load1[0], 1)],
            "bench_cpu_s": round(time.process_time() - cpu_self0, 1),
            "load_reference": {k: ref[k] for k in ("wall_s", "cpu_s", "peak_rss_mb")},
            "simulation": {**sim, "wall_s_this_bench": round(sim_wall, 1), "landing": str(landing_dir(meters, 365))},
            "stages": stage_split(b.env, b.dir.name),
        }
    finally:
        drop()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--meters", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--concurrent", type=int, default=2, help="range runs at once (the run queue's backfill limit)")
    ap.add_argument("--days-per-run", type=int, default=None, help="default: the assets' BackfillPolicy")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    from assets.partitions import BACKFILL_DAYS_PER_RUN

    per_run = args.days_per_run or BACKFILL_DAYS_PER_RUN
    res = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **backfill(args.meters, args.days, args.concurrent, per_run),
    }
    res["target_wall_s"] = 600
    res["met"] = res["days"] == 365 and res["wall_s"] < 600
    res["year_cpu_s_scaled"] = round(res["cpu_s"] * 365 / res["days"], 1) if res["days"] != 365 else res["cpu_s"]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps({k: v for k, v in res.items() if k not in ("stages", "simulation", "range_runs")}, indent=1))
    print(json.dumps(res["stages"], indent=1))
    print(f"  written to {out}")
    return 0 if math.isfinite(res["wall_s"]) else 1


if __name__ == "__main__":
    sys.exit(main())
