"""make bench-ingest-base: clean-data ingestion now against the code before issue 9, same files, one run.

Issue 9 (hostile input: more validation rules, the day manifest, chunked reading, spilling) must not
cost clean data more than 5 % of its throughput. This checks it honestly on a loaded machine:

- the pre-issue-9 tree (``BASE_COMMIT``, the parent of the first issue-9 commit on lake/ingest.py) is
  checked out with ``git worktree add`` into a temporary folder;
- both trees ingest the same landing files (simulated Parquet days with a realistic trickle of bad
  rows) with ``lake.ingest.ingest_partitions``, each run in a fresh subprocess importing that tree;
- runs alternate (base, head, base, head, ...), so load drifts hit both alike; each run reports wall
  and CPU seconds (``time.process_time``: every thread of the process, delta-rs's included);
- the ratios head/base of the medians (and of the minima) are printed with ``uptime`` load before and
  after, and written to benchmarks/results/ingest_vs_base.json.

    python -m benchmarks.bench_ingest_base [--meters 10000] [--days 4] [--rounds 4] [--base COMMIT]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "work" / "ingest_base"
RESULTS = ROOT / "benchmarks" / "results" / "ingest_vs_base.json"
#: the last commit before issue 9's work on lake/ingest.py (fd44942, the day manifest, is its child)
BASE_COMMIT = "51f9740347470363776847a8d8f19b0dffa83578"

#: run in a subprocess with PYTHONPATH=<tree>: imports only that tree's lake package
CHILD = r"""
import json, shutil, sys, time, resource, datetime as dt
from pathlib import Path
import polars as pl
from lake.delta import Lake
from lake.ingest import ingest_partitions
from lake.landing import LocalLanding
try:
    from contracts import SOURCES  # after issue 10
except ImportError:
    from lake.schemas import SOURCES  # the pre-issue-9 tree
landing, out, days = Path(sys.argv[1]), Path(sys.argv[2]), [dt.date.fromisoformat(d) for d in sys.argv[3].split(",")]
shutil.rmtree(out, ignore_errors=True)
zone, lake = LocalLanding(landing), Lake(out)
ids = pl.read_parquet(landing / "reference" / "ref_meters.parquet")["meter_id"]
w0, c0 = time.perf_counter(), time.process_time()
res = ingest_partitions(zone, lake, SOURCES["meter_readings"], days, ids, tz="America/New_York")  # the simulator's zone, in both trees
wall, cpu = time.perf_counter() - w0, time.process_time() - c0
assert all(r.reconciles for r in res)
print(json.dumps({"wall_s": wall, "cpu_s": cpu, "rows": sum(r.raw_rows for r in res), "silver_rows": sum(r.silver_rows for r in res),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _run(tree: Path, landing: Path, days: list[dt.date], out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    p = subprocess.run(
        [sys.executable, "-c", CHILD, str(landing), str(out), ",".join(d.isoformat() for d in days)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    if p.returncode != 0:
        raise SystemExit(f"child in {tree} failed:\n{p.stderr[-4000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--meters", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--base", default=BASE_COMMIT)
    args = ap.parse_args(argv)

    from benchmarks.bench_ingest import _days, _generate

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    days = _days(args.days)
    landing = WORK / "landing"
    print(f"generating {args.meters:,} meters x {args.days} days (Parquet landing files)")
    _generate(landing, args.meters, days, args.seed)
    base = Path(tempfile.mkdtemp(prefix="gridlake-ingest-base-"))
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(base), args.base], cwd=ROOT, check=True, capture_output=True
    )
    runs: dict[str, list[dict]] = {"base": [], "head": []}
    load_before = _uptime()
    try:
        for r in range(args.rounds):
            order = ("base", "head") if r % 2 == 0 else ("head", "base")
            for kind in order:
                res = _run(base if kind == "base" else ROOT, landing, days, WORK / f"out_{kind}")
                runs[kind].append(res)
                print(
                    f"  round {r + 1}/{args.rounds} {kind}: {res['rows']:,} rows, wall {res['wall_s']:.2f}s, CPU {res['cpu_s']:.2f}s, peak {res['peak_rss_mb']:.0f} MB",
                    flush=True,
                )
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
    load_after = _uptime()
    assert runs["base"][0]["rows"] == runs["head"][0]["rows"], "both trees must read the same records"

    def stat(kind: str, key: str, f) -> float:
        return f(x[key] for x in runs[kind])

    out = {
        "base_commit": args.base,
        "head_commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip(),
        "meters": args.meters, "days": args.days, "rounds": args.rounds, "rows": runs["head"][0]["rows"],
        "silver_rows": {"base": runs["base"][0]["silver_rows"], "head": runs["head"][0]["silver_rows"]},
        "runs": runs,
        "load_before": load_before, "load_after": load_after,
    }  # fmt: skip
    for key in ("wall_s", "cpu_s"):
        for name, f in (("median", lambda xs: statistics.median(list(xs))), ("min", min)):
            b, h = stat("base", key, f), stat("head", key, f)
            out[f"{key}_{name}"] = {"base": round(b, 3), "head": round(h, 3), "head_over_base": round(h / b, 3)}
    # throughput ratio = base time / head time; the target: head keeps >= 95 % of the base's rows/s
    out["throughput_ratio_cpu_median"] = round(out["cpu_s_median"]["base"] / out["cpu_s_median"]["head"], 3)
    out["throughput_ratio_wall_median"] = round(out["wall_s_median"]["base"] / out["wall_s_median"]["head"], 3)
    out["target"] = ">= 0.95 (clean-data rows/s may drop at most 5 %)"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(
        f"\nclean-data ingestion, head vs pre-issue-9 ({args.base[:9]}), {out['rows']:,} rows x {args.rounds} alternating rounds"
    )
    for key in ("wall_s", "cpu_s"):
        for name in ("median", "min"):
            v = out[f"{key}_{name}"]
            print(
                f"  {key[:-2]:4s} {name:6s}: base {v['base']:.2f}s  head {v['head']:.2f}s  head/base {v['head_over_base']:.3f}"
            )
    print(
        f"  throughput head/base (CPU, median): {out['throughput_ratio_cpu_median']:.3f}; (wall, median): {out['throughput_ratio_wall_median']:.3f}  target >= 0.95"
    )
    print(f"  load before: {load_before}\n  load after:  {load_after}")
    print(f"  written to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
