"""Issue 9 leftover: a landing file that is almost all rejected rows ingests in bounded memory.

The quarantine used to be held whole (every rejected record with its raw JSON, then concatenated), so a
file of bad rows cost ~650 bytes of RSS per row. It is now held up to a quarter of the ingest budget and
spilled piece by piece (lake.spill.HeldFrame), and its Delta write streams from the pieces. Measured here
as the peak RSS of a real ingestion subprocess (benchmarks.bench_ingest's child) for a file and one four
times its size, 95 % of whose rows name meters missing from the reference table.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.bench_ingest import _generate_big_csv

ROOT = Path(__file__).resolve().parents[2]
DAY = dt.date(2026, 1, 12)


def _ingest(landing: Path, out: Path) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "GRIDLAKE_INGEST_MEMORY_MB": "16",  # quarantine pieces of at most 4 MB
        "GRIDLAKE_INGEST_CHUNK_BYTES": str(4_000_000),
        "GRIDLAKE_SPILL_DIR": str(out.parent / "spill"),
    }
    cmd = [sys.executable, "-m", "benchmarks.bench_ingest", "--child", "ingest", "--landing", str(landing)]
    cmd += ["--child-days", DAY.isoformat(), "--out", str(out)]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # ~25 s: two ingestion subprocesses
def test_a_mostly_rejected_file_ingests_in_memory_that_does_not_grow_with_its_quarantine(tmp_path):
    runs = {}
    for n in (100_000, 400_000):
        landing = tmp_path / f"landing_{n}"
        _generate_big_csv(landing, n, DAY, seed=3, bad_share=0.95)
        runs[n] = _ingest(landing, tmp_path / f"lake_{n}")
        assert runs[n]["rows"] == n and runs[n]["quarantined_rows"] > 0.9 * n  # almost all rejected
        assert runs[n]["silver_rows"] + runs[n]["quarantined_rows"] == n
    growth = runs[400_000]["peak_rss_mb"] - runs[100_000]["peak_rss_mb"]
    # held whole, the 285,000 extra rejected rows cost ~190 MB (measured on the tree before the change)
    assert growth < 60, f"peak RSS grew {growth:.0f} MB for 300,000 more rows: {runs}"
    spill = tmp_path / "spill"
    assert spill.is_dir() and list(spill.iterdir()) == []  # the quarantine spilled, and its pieces are gone
