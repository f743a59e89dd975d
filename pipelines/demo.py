"""`make demo`: simulate a small utility, run the main job on the embedded Dagster instance, query it.

Everything is local: a SQLite Dagster instance under ``.demo/dagster_home``, landing files under
``.demo/landing``, Delta tables under ``.demo/lake``, the DuckDB catalog in
``warehouse/gridlake.duckdb``. Re-running is idempotent: partitions are replaced, not appended.

    python -m pipelines.demo [--meters 400] [--days 7] [--start 2026-03-05]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--meters", type=int, default=400)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2026, 3, 5), help="first local day (default spans the US spring-forward)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--home", type=Path, default=ROOT / ".demo")
    args = ap.parse_args(argv)

    home = args.home.resolve()
    dagster_home = home / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    # The embedded default: a dagster.yaml without storage settings => SQLite storage inside
    # DAGSTER_HOME (it only turns telemetry off, so the demo's output stays the demo's).
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    if not (dagster_home / "dagster.yaml").exists():
        (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    # the demo's own landing zone and lake start empty each time, so a second `make demo` prints
    # exactly what the first did; a lake or landing zone given by environment is never touched
    for var, sub in (("GRIDLAKE_LAKE_ROOT", "lake"), ("GRIDLAKE_LANDING", "landing")):
        if var not in os.environ:
            shutil.rmtree(home / sub, ignore_errors=True)
            os.environ[var] = str(home / sub)
    # one catalog per lake: the default demo uses the README's warehouse/, another --home its own
    warehouse = ROOT / "warehouse" if home == (ROOT / ".demo").resolve() else home / "warehouse"
    os.environ.setdefault("GRIDLAKE_CATALOG", str(warehouse / "gridlake.duckdb"))
    os.environ.setdefault("GRIDLAKE_START_DATE", "2026-01-01")

    t0 = time.time()
    from lake.landing import LocalLanding
    from simulator import BadRecordRates, SimConfig, Simulator, write_landing_day, write_landing_reference

    days = [args.start + dt.timedelta(days=i) for i in range(args.days)]
    _say(f"simulating {args.meters} meters x {args.days} days from {args.start} (seed {args.seed})")
    sim = Simulator(SimConfig(n_meters=args.meters, start=args.start, days=args.days, seed=args.seed))
    zone = LocalLanding(os.environ["GRIDLAKE_LANDING"])
    write_landing_reference(sim, zone)
    # a realistic trickle of bad input in the meter feed: every class lands in quarantine with a reason
    meter_faults = BadRecordRates(malformed_line=0.001, wrong_type=0.001, out_of_range=0.001, duplicate=0.002, unknown_entity=0.0005, late_files=1, empty_files=1, renamed_column_files=1)
    for i, d in enumerate(days):
        write_landing_day(sim, d, zone, formats={"meter_readings": ("csv", "parquet", "jsonl"), "scada": "parquet", "weather": "csv"}, sources=("scada", "weather"), rows_per_file=200)
        write_landing_day(sim, d, zone, formats={"meter_readings": ("csv", "parquet", "jsonl")}, bad=meter_faults if i else None, sources=("meter_readings",), rows_per_file=200)
        _say(f"  landed {d} ({i + 1}/{len(days)})")

    import warnings

    from dagster import BetaWarning, DagsterInstance

    warnings.filterwarnings("ignore", category=BetaWarning)  # backfill_policy is beta in Dagster 1.13

    from pipelines.definitions import defs

    instance = DagsterInstance.get()
    _say(f"Dagster instance: {type(instance.run_storage).__name__} under {dagster_home}")

    def run(job: str, partition: str | None = None) -> None:
        t = time.time()
        result = defs.resolve_job_def(job).execute_in_process(
            instance=instance,
            partition_key=partition,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},  # progress lines below instead
        )
        checks = [e.asset_check_evaluation_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
        failed = [f"{c.asset_key.to_user_string()}:{c.check_name}" for c in checks if not c.passed and c.severity.value == "ERROR"]
        warned = [f"{c.asset_key.to_user_string()}:{c.check_name}" for c in checks if not c.passed and c.severity.value != "ERROR"]
        status = "ok" if result.success else "FAILED"
        _say(
            f"  {job}{' ' + partition if partition else ''}: {status} in {time.time() - t:.1f}s, {len(checks)} checks"
            + (f", failed: {failed}" if failed else "")
            + (f", warnings: {warned}" if warned else "")
        )
        if not result.success:
            raise SystemExit(f"run {result.run_id} of {job} failed; see `dagster dev` with DAGSTER_HOME={dagster_home}")

    _say("running jobs")
    run("load_reference")
    for d in days:
        run("daily_ingest", d.isoformat())
    # late records re-landed for an earlier day (lake.ingest.forward_late_records): that day runs
    # again, as the landing sensor would do it in production
    late = sorted({d for d in days for f in zone.list(f"meter_readings/{d.isoformat()}") if "/forwarded_from_" in f.key})
    for d in late:
        _say(f"  {d} received late records forwarded from a later day: ingesting it again")
        run("daily_ingest", d.isoformat())
    for month in sorted({d.replace(day=1) for d in days}):
        run("monthly_rollup", month.isoformat())
    run("refresh_catalog")

    from lake.catalog import query

    catalog = os.environ["GRIDLAKE_CATALOG"]
    _say(f"done in {time.time() - t0:.0f}s. Summary from the DuckDB catalog {catalog}:")
    summary = query(
        catalog,
        """
        SELECT s.date,
               count(*)                                   AS silver_rows,
               count(*) FILTER (WHERE s.quality_flag <> 'ok') AS flagged,
               (SELECT count(*) FROM quarantine_meter_readings q WHERE q.date = s.date AND q.source_row > 0) AS quarantined
        FROM silver_meter_readings s GROUP BY s.date ORDER BY s.date
        """,
    )
    print(summary)
    _say("analyst query: the feeders with the highest evening (17-21 h local) peak over the week")
    print(
        query(
            catalog,
            """
            SELECT entity_id AS feeder, round(max(peak_kw), 1) AS evening_peak_kw, round(sum(energy_kwh) / 1000, 2) AS mwh
            FROM gold_load_hourly
            WHERE level = 'feeder'
              AND hour(period_start AT TIME ZONE 'America/New_York') BETWEEN 17 AND 21
            GROUP BY entity_id ORDER BY evening_peak_kw DESC LIMIT 5
            """,
        )
    )
    print(f"\nExplore it: DAGSTER_HOME={dagster_home} .venv/bin/dagster dev -w workspace.yaml   (or make dev)")
    print(f"Query it:   .venv/bin/python -m lake.catalog sql {catalog} \"SELECT * FROM catalog_tables LIMIT 5\"")
    return 0


if __name__ == "__main__":
    sys.exit(main())
