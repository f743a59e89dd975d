"""Command line: write simulated landing files, or measure generation speed.

    python -m simulator land --landing .lake/landing --meters 2000 --start 2026-01-01 --days 7 \
        --formats csv,jsonl,parquet --bad typical
    python -m simulator bench --meters 10000 --days 3

``land`` writes reference + truth once and then each day with its manifest. ``--bad typical`` injects
the row-level classes at 0.2 % and one late and one empty file per source and day; ``--bad harsh``
1 % and, in addition, a file with a renamed column; ``--bad none`` writes clean days.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from datetime import date, timedelta

from .config import BadRecordRates, SimConfig
from .core import Simulator
from .landing import FORMATS, write_landing_day, write_landing_reference

#: every row-level class at 0.2 %, one late and one empty file per source and day
TYPICAL_BAD = BadRecordRates(
    malformed_line=0.002,
    wrong_type=0.002,
    out_of_range=0.002,
    duplicate=0.002,
    unknown_entity=0.002,
    late_files=1,
    empty_files=1,
)
#: 1 % per row class and, in addition, one data file per source and day with a renamed column
#: (with a small fleet that may be the only data file of the day)
HARSH_BAD = BadRecordRates(
    malformed_line=0.01,
    wrong_type=0.01,
    out_of_range=0.01,
    duplicate=0.01,
    unknown_entity=0.01,
    late_files=1,
    empty_files=1,
    renamed_column_files=1,
)
PRESETS = {"none": BadRecordRates(), "typical": TYPICAL_BAD, "harsh": HARSH_BAD}


def _config(a: argparse.Namespace) -> SimConfig:
    return SimConfig(
        n_meters=a.meters,
        start=date.fromisoformat(a.start),
        days=a.days,
        interval_minutes=a.interval,
        seed=a.seed,
    )


def _land(a: argparse.Namespace) -> int:
    from lake.landing import open_landing

    formats = tuple(x.strip() for x in a.formats.split(","))
    bad_fmt = [x for x in formats if x not in FORMATS]
    if bad_fmt:
        print(f"--formats: unknown {bad_fmt}; choose from {list(FORMATS)}", file=sys.stderr)
        return 2
    sim = Simulator(_config(a))
    zone = open_landing(a.landing)
    write_landing_reference(sim, zone)
    bad = PRESETS[a.bad]
    for i in range(a.days):
        d = sim.cfg.start + timedelta(days=i)
        t = time.perf_counter()
        man = write_landing_day(sim, d, zone, formats=formats, bad=bad, rows_per_file=a.rows_per_file)
        print(
            f"{d}: {len(man.files)} files, {man.rows_written()} rows, faults {man.counts()} "
            f"({time.perf_counter() - t:.2f} s)"
        )
    return 0


def bench(
    n_meters: int, days: int, start: date = date(2026, 7, 1), write_to: str | None = None, interval: int = 30
) -> dict:
    """Time ``days`` consecutive days of ``n_meters`` (frames, and optionally landing files)."""
    sim_t = time.perf_counter()
    sim = Simulator(SimConfig(n_meters=n_meters, start=start, days=max(days, 1), interval_minutes=interval))
    setup = time.perf_counter() - sim_t
    zone = None
    if write_to:
        from lake.landing import open_landing

        zone = open_landing(write_to)
    per_day = []
    rows = 0
    for i in range(days):
        d = start + timedelta(days=i)
        t = time.perf_counter()
        if zone is None:
            frames = sim.day(d)
            rows += sum(f.height for f in frames.values())
        else:
            man = write_landing_day(sim, d, zone, formats=("csv", "jsonl", "parquet"), bad=TYPICAL_BAD)
            rows += man.rows_written()
        per_day.append(time.perf_counter() - t)
    steady = per_day[1:] if len(per_day) > 1 else per_day
    mean = sum(steady) / len(steady)
    return {
        "meters": n_meters,
        "days": days,
        "setup_s": round(setup, 2),
        "per_day_s": [round(x, 3) for x in per_day],
        "rows": rows,
        "year_estimate_min": round((setup + 365 * mean) / 60, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m simulator", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("land", "bench"):
        s = sub.add_parser(name)
        s.add_argument("--meters", type=int, default=2000 if name == "land" else 10000)
        s.add_argument("--start", default="2026-01-01" if name == "land" else "2026-07-01")
        s.add_argument("--days", type=int, default=7 if name == "land" else 3)
        s.add_argument("--interval", type=int, default=30, choices=(15, 30))
        s.add_argument("--seed", type=int, default=7)
    land = sub.choices["land"]
    land.add_argument("--landing", required=True, help="local folder or s3://bucket/prefix")
    land.add_argument("--formats", default="csv", help="comma-separated formats the parts rotate through")
    land.add_argument("--bad", choices=tuple(PRESETS), default="none")
    land.add_argument("--rows-per-file", type=int, default=50_000)
    sub.choices["bench"].add_argument("--write-to", default=None, help="also write landing files here")
    a = p.parse_args(argv)
    if a.cmd == "land":
        return _land(a)
    print(bench(a.meters, a.days, date.fromisoformat(a.start), a.write_to, a.interval))
    return 0


if __name__ == "__main__":
    sys.exit(main())
