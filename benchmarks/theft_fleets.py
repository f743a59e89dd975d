"""Theft detection over several simulated fleets, per fleet and pooled (issue 14's tuning protocol).

``python -m benchmarks.theft_fleets --seeds 3,4,5,6 [--set key=value ...]`` simulates each fleet once (the
bench-ml fleet: 600 meters, bench-ml's event rates, 14 warm-up + 28 evaluated + 7 follow-up days), caches its
readings, SCADA, reference and truth under ``$THEFT_FLEET_CACHE`` (default /tmp/gridlake-theft-fleets) and runs
the energy balance and the suspect ranking with the utility profile's ``energy_balance`` settings, overridden
by ``--set``. Settings are chosen on fleets 3-6; 7-10 (9 is bench-ml's held-out fleet) are for the one run after.
Prints per fleet and pooled: top-3 within 7 days, false suspect meters per 1,000 meters per month, misses by
reason and false suspects by context; ``--events`` lists each miss and false suspect.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import polars as pl

from benchmarks.bench_ml import DAYS, FC, N_METERS, RATES, START
from benchmarks.ml_realistic import evaluate_theft

WARMUP, FOLLOW_UP = 14, 7
CACHE = Path(os.environ.get("THEFT_FLEET_CACHE", "/tmp/gridlake-theft-fleets"))
FRAMES = ("meter_readings", "scada", "ref_meters", "ref_transformers", "truth_events")


def fleet(seed: int) -> dict[str, pl.DataFrame]:
    """The fleet's frames (simulated once, then read from the cache)."""
    d = CACHE / f"seed{seed}_{N_METERS}m_{DAYS}d"
    if not all((d / f"{k}.parquet").exists() for k in FRAMES):
        from simulator import SimConfig, Simulator

        start = START - timedelta(days=WARMUP)
        total = WARMUP + DAYS + FOLLOW_UP
        sim = Simulator(SimConfig(n_meters=N_METERS, start=start, days=total, seed=seed, events=RATES))
        days = [sim.day(start + timedelta(days=i)) for i in range(total)]
        out = {k: pl.concat([x[k] for x in days]) for k in ("meter_readings", "scada")}
        ref = sim.reference()
        out.update(ref_meters=ref["ref_meters"], ref_transformers=ref["ref_transformers"])
        out["truth_events"] = sim.truth()["truth_events"]
        d.mkdir(parents=True, exist_ok=True)
        for k in FRAMES:
            out[k].write_parquet(d / f"{k}.parquet")
    return {k: pl.read_parquet(d / f"{k}.parquet") for k in FRAMES}


def _value(v: str):
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


def run(seeds: list[int], overrides: dict, events: bool = False) -> dict:
    from contracts.profile import load_profile
    from models.grid.energy_balance import BalanceConfig

    cfg = replace(BalanceConfig.from_profile(load_profile(), FC.timezone), **overrides)
    per, hit, n, false, meters, days = {}, 0, 0, 0, 0, 0
    cpu = 0.0
    for s in seeds:
        f = fleet(s)
        r = evaluate_theft(
            f["meter_readings"],
            f["scada"],
            f["ref_meters"],
            f["ref_transformers"],
            f["truth_events"],
            cfg,
            START - timedelta(days=WARMUP),
            WARMUP,
            DAYS,
            FOLLOW_UP,
        )
        bd = r["breakdown"]
        per[s] = {
            "rate": r["rate"],
            "detected": r["detected_within"],
            "events": r["theft_events"],
            "false_meters": r["false_suspect_meters"],
            "false_per_1000_month": r["false_suspects_per_1000_meters_month"],
            "missed_by_reason": bd["missed_by_reason"],
            "false_by_context": bd["false_by_context"],
            "cpu_s": r["cpu_s"],
        }
        hit, n, false = hit + r["detected_within"], n + r["theft_events"], false + r["false_suspect_meters"]
        meters, days, cpu = r["meters"], DAYS + FOLLOW_UP, cpu + r["cpu_s"]
        print(
            f"seed {s}: {r['detected_within']}/{r['theft_events']} = {r['rate']} / {r['false_suspect_meters']} false "
            f"({r['false_suspects_per_1000_meters_month']}); misses {bd['missed_by_reason']}; false "
            f"{bd['false_by_context']}; ranking CPU {r['cpu_s']} s",
            flush=True,
        )
        if events:
            for e in bd["events"]:
                if not e["hit"]:
                    print(
                        f"   MISS {e['meter_id']}@{e['transformer_id']} from {e['start']} share {e['share']:.2f} "
                        f"{e['hidden_kwh_day']} kWh/d gate +{e['days_to_gate']} top +{e['days_to_top']} "
                        f"{e['why_missed']} others {e['others_on_tx']}"
                    )
            for x in bd["false_suspects"]:
                print(
                    f"   FALSE {x['meter_id']}@{x['transformer_id']} {x['first']} {x['days_listed']} d rank "
                    f"{x['best_rank']} score {x['max_score']} {x['context']} {x['events_on_tx']}"
                )
    per_month = len(seeds) * meters / 1000.0 * days / 30.0
    pooled = {
        "detected": hit,
        "events": n,
        "rate": round(hit / n, 4) if n else None,
        "false_meters": false,
        "false_per_1000_month": round(false / per_month, 3) if per_month else None,
        "cpu_s": round(cpu, 1),
    }
    print(f"pooled {seeds}: {hit}/{n} = {pooled['rate']} / {false} false ({pooled['false_per_1000_month']})")
    return {"seeds": seeds, "overrides": overrides, "per_fleet": per, "pooled": pooled}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="3,4,5,6")
    ap.add_argument("--set", action="append", default=[], help="energy_balance setting override, key=value")
    ap.add_argument("--events", action="store_true", help="list each miss and false suspect")
    ap.add_argument("--json", help="write the result here")
    a = ap.parse_args()
    overrides = {k: _value(v) for k, v in (s.split("=", 1) for s in a.set)}
    t = time.process_time()
    res = run([int(s) for s in a.seeds.split(",")], overrides, a.events)
    res["cpu_s_total"] = round(time.process_time() - t, 1)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
