"""The feeder and system load sums are bit-identical from process to process.

The unit commitment downstream is a MIP stopped at its relative gap: not continuous in its inputs, so
float noise of ~1e-12 in the load it is scaled to picked another incumbent on two identical demo runs.
The noise came from polars' lazy group_by, which adds its partial aggregates in a thread-dependent
order; gold.load_hourly now sums over meters eagerly on rows sorted by meter and slot.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[2]
DAY = dt.date(2026, 3, 4)

# one process: hourly gold of the day, then the feeder -> system total the load forecasters train on
_CHILD = """
import datetime as dt, hashlib, json, sys
import polars as pl
from lake import gold
from models.forecast.tables import with_system_total
d = sys.argv[1]
silver, meters, tr = (pl.read_parquet(f"{d}/{n}.parquet") for n in ("silver", "meters", "transformers"))
out = {}
for i in range(3):  # repeated in the process too: the lazy group_by also varied between calls
    h = gold.load_hourly(silver, meters, tr, dt.date.fromisoformat(sys.argv[2]))
    feeders = h.filter(pl.col("level") == "feeder").select("entity_id", "period_start", "mean_kw")
    total = with_system_total(feeders.sample(fraction=1.0, shuffle=True, seed=i))  # any row order
    for name, df in (("hourly", h), ("total", total)):
        df = df.sort("level" if "level" in df.columns else "entity_id", "entity_id", "period_start")
        for c in ("energy_kwh", "mean_kw", "peak_kw"):
            if c in df.columns:
                out.setdefault(f"{name}.{c}", set()).add(hashlib.sha256(df[c].to_numpy().tobytes()).hexdigest())
print(json.dumps({k: sorted(v) for k, v in out.items()}))
"""


def test_feeder_and_system_sums_are_bit_identical_across_processes(tmp_path):
    from simulator import SimConfig, Simulator

    # 100 meters x 1 day: the old lazy sums already differed on every call at this size (4 of 4 calls)
    sim = Simulator(SimConfig(n_meters=100, start=DAY, days=1, seed=10))
    ref = sim.reference()
    sim.meter_readings(DAY).with_columns(pl.lit("ok").alias("quality_flag")).write_parquet(tmp_path / "silver.parquet")
    ref["ref_meters"].write_parquet(tmp_path / "meters.parquet")
    ref["ref_transformers"].write_parquet(tmp_path / "transformers.parquet")

    runs = []
    for _ in range(2):
        p = subprocess.run(
            [sys.executable, "-c", _CHILD, str(tmp_path), DAY.isoformat()],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert p.returncode == 0, p.stderr[-2000:]
        runs.append(json.loads(p.stdout.strip().splitlines()[-1]))
    assert set(runs[0]) == {"hourly.energy_kwh", "hourly.mean_kw", "hourly.peak_kw", "total.mean_kw"}
    for key in runs[0]:
        assert len(runs[0][key]) == 1, f"{key}: {len(runs[0][key])} different results in 3 calls of one process"
        assert runs[0][key] == runs[1][key], f"{key}: two processes summed to different bits"
