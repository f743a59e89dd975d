"""make bench-pipeline: the whole nightly graph at utility scale, and a capacity plan.

    python -m benchmarks.bench_pipeline simulate [--meters 10000] [--days 365]   # the cached landing zone only
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "work" / "pipeline"
RESULTS = ROOT / "benchmarks" / "results" / "pipeline.json"
#: the simulated year: 365 local days ending 2026-11-30 (Dagster's partitions must exist "today", so the year ends
#: before the machine's clock; the child processes set GRIDLAKE_START_DATE to its first day)
YEAR_START = dt.date(2025, 12, 1)
SEED = 13


def landing_dir(meters: int, days: int) -> Path:
    return WORK / f"landing_{meters}m_{YEAR_START.isoformat()}_{days}d"


def simulate(meters: int, days: int) -> dict:
    """Simulate ``meters`` x ``days`` at 30 minutes into a local landing zone, once.

    Cached: a day whose ``manifests/<day>.json`` exists (written last by ``write_landing_day``) is not
    generated again, so an interrupted simulation resumes; ``simulated.json`` records the total time.
    """
    from lake.landing import LocalLanding
    from simulator import BadRecordRates, SimConfig, Simulator, write_landing_day, write_landing_reference

    folder = landing_dir(meters, days)
    done = folder / "simulated.json"
    if done.exists():
        return json.loads(done.read_text()) | {"cached": True}
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    prior = json.loads((folder / "partial.json").read_text()) if (folder / "partial.json").exists() else {"seconds": 0.0, "cpu_s": 0.0}
    sim = Simulator(SimConfig(n_meters=meters, start=YEAR_START, days=days, seed=SEED, interval_minutes=30))
    zone = LocalLanding(folder)
    write_landing_reference(sim, zone)
    # a realistic trickle of bad rows, so validation and quarantine do real work
    bad = BadRecordRates(out_of_range=0.0005, duplicate=0.0005, unknown_entity=0.0002)
    formats = {"meter_readings": "parquet", "scada": "parquet", "weather": "csv"}
    rows = 0
    for i in range(days):
        d = YEAR_START + dt.timedelta(days=i)
        man = folder / "manifests" / f"{d.isoformat()}.json"
        if man.exists():
            rows += sum(f["rows"] for f in json.loads(man.read_text())["files"])
            continue
        m = write_landing_day(sim, d, zone, formats=formats, bad=bad, rows_per_file=100_000)
        rows += m.rows_written()
        if i % 10 == 0 or i == days - 1:
            el = prior["seconds"] + time.perf_counter() - t0
            print(f"  simulated {d} ({i + 1}/{days}): {rows:,} rows so far, {el:.0f} s", flush=True)
            (folder / "partial.json").write_text(json.dumps({"seconds": el, "cpu_s": prior["cpu_s"] + time.process_time() - cpu0}))
    out = {
        "meters": meters,
        "days": days,
        "first_day": YEAR_START.isoformat(),
        "rows": rows,
        "seconds": round(prior["seconds"] + time.perf_counter() - t0, 1),
        "cpu_s": round(prior["cpu_s"] + time.process_time() - cpu0, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    done.write_text(json.dumps(out, indent=2))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd")
    s = sub.add_parser("simulate")
    s.add_argument("--meters", type=int, default=10_000)
    s.add_argument("--days", type=int, default=365)
    args = ap.parse_args(argv)
    if args.cmd == "simulate":
        print(json.dumps(simulate(args.meters, args.days)))
        return 0
    ap.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
