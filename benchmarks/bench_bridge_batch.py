"""`make bench-bridge-batch`: CPU cost of one bridge processing batch, before vs after, in the same run.

    .venv/bin/python -m benchmarks.bench_bridge_batch [--batches 300] [--ticks 1 3] [--before 9bd3ff7]

What is measured: ``Bridge.process`` (validate against the silver contract, rules, grid events, alerts to
the sink; the spool and acks are the durability thread's work and left out) on the messages the
`make bench-bridge` publisher sends per 20 ms tick (two head-end messages of 90 meter readings, 20 SCADA
messages, 1 % over a limit), CPU time per batch (``time.process_time``, one polars thread).

Two comparisons, each immune to the load of a shared machine:
- ``before_vs_after``: the bridge code of git revision ``--before`` (exported with ``git archive``) and of
  this tree, in two worker processes running at the same time on the same batches;
- ``file_vs_fast``: in this tree, the ingress validating with ``lake.ingest.validate_file`` or with
  ``lake.validate_fast.validate_fast``, interleaved batch by batch in one process.
Writes benchmarks/results/bridge_batch.json.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "bridge_batch.json"
PREFIX = "bench/v1"
N_FRESH = 2_000


def make_batches(n: int, ticks: int, seed: int = 7):
    from streaming_bridge.ingress import Message
    from streaming_bridge.topics import Topics

    T, rng, out = Topics(PREFIX), random.Random(seed), []
    for _ in range(n):
        msgs = []
        for _ in range(ticks):
            iso = datetime.now(UTC).isoformat(timespec="microseconds")
            rows = [
                {
                    "meter_id": f"M{rng.randrange(20_000):06d}",
                    "reading_time": iso,
                    "consumption_kwh": 0.25,
                    "demand_kw": 1.0,
                    "voltage": 231.0 + rng.uniform(-3, 3),
                    "current_amps": 4.5,
                    "power_factor": 0.96,
                }
                for _ in range(180)
            ]
            rows[0]["voltage"] = 212.0  # 1 % of the readings under the voltage limit
            for h in range(2):
                msgs.append(
                    Message(
                        T.headend(f"HE{h}"), json.dumps({"readings": rows[h * 90 : (h + 1) * 90]}).encode(), time.time()
                    )
                )
            for j in range(20):
                hs = 150.0 if j == 0 else 65.0 + rng.uniform(-2, 2)
                msgs.append(
                    Message(
                        T.scada(f"T{rng.randrange(1000):05d}"),
                        json.dumps(
                            {
                                "sample_time": iso,
                                "load_kva": 30.0,
                                "top_oil_temp_c": 50.0,
                                "hot_spot_temp_c": hs,
                                "voltage_v": 233.0,
                                "frequency_hz": 60.0,
                            }
                        ).encode(),
                        time.time(),
                    )
                )
        out.append([(m, 0) for m in msgs])
    return out


class _Sink:  # the outbox's contract, in memory (the outbox's own cost: make bench-alert-delivery)
    def submit(self, alerts):
        pass


def _bridge(tmp: Path, name: str):
    from streaming_bridge.service import Bridge, BridgeConfig

    cfg = BridgeConfig.from_env(
        lake_root=str(tmp / "lake"),
        landing=str(tmp / f"landing-{name}"),
        spool_dir=str(tmp / f"spool-{name}"),
        http_port=-1,
        topic_prefix=PREFIX,
    )
    b = Bridge(cfg, _Sink())
    b._durable = queue.Queue()
    return b


def _fleet(tmp: Path) -> None:
    from benchmarks.bench_bridge import fleet
    from lake.delta import Lake

    try:
        from contracts import TABLES
    except ImportError:  # a revision from before the contracts package (--before)
        from contracts import TABLES

    meters, transformers = fleet(N_FRESH)
    lk = Lake(tmp / "lake")
    lk.write_partition(TABLES["ref_meters"], meters, None)
    lk.write_partition(TABLES["ref_transformers"], transformers, None)


def _stats(xs: list[float]) -> dict:
    xs = sorted(xs)
    return {
        "cpu_ms_median": round(statistics.median(xs), 2),
        "cpu_ms_p90": round(xs[int(0.9 * len(xs))], 2),
        "cpu_ms_mean": round(statistics.fmean(xs), 2),
    }


def worker(batches: int, ticks: int) -> dict:
    """Runs with the tree to measure first on sys.path: CPU ms per Bridge.process call."""
    with tempfile.TemporaryDirectory(prefix="bench-bridge-batch-") as tmp:
        _fleet(Path(tmp))
        b = _bridge(Path(tmp), "w")
        data = make_batches(batches + 10, ticks)
        cpu, alerts = [], 0
        for i, batch in enumerate(data):
            t0 = time.process_time()
            out = b.process(batch)
            if i >= 10:  # warm-up: expression caches, first allocations
                cpu.append((time.process_time() - t0) * 1000)
                alerts += len(out)
            b._durable = queue.Queue()
    return {**_stats(cpu), "alerts": alerts}


def before_vs_after(rev: str, batches: int, ticks: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-bridge-before-") as old:
        archive = subprocess.run(["git", "archive", rev], cwd=REPO, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
        env = {**os.environ, "POLARS_MAX_THREADS": "1"}
        procs = {
            name: subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--worker",
                    "--batches",
                    str(batches),
                    "--ticks",
                    str(ticks),
                ],
                cwd=tree,
                env={**env, "PYTHONPATH": str(tree)},
                stdout=subprocess.PIPE,
                text=True,
            )
            for name, tree in (("before", Path(old)), ("after", REPO))
        }
        out = {name: json.loads(p.communicate(timeout=1800)[0].strip().splitlines()[-1]) for name, p in procs.items()}
    assert out["before"]["alerts"] == out["after"]["alerts"], out  # the same alerts from the same batches
    out["after_vs_before_median"] = round(out["after"]["cpu_ms_median"] / out["before"]["cpu_ms_median"], 3)
    return out


def file_vs_fast(batches: int, ticks: int) -> dict:
    import lake.ingest
    import lake.validate_fast
    import streaming_bridge.ingress as ingress

    variants = {"validate_file": lake.ingest.validate_file, "validate_fast": lake.validate_fast.validate_fast}
    with tempfile.TemporaryDirectory(prefix="bench-bridge-batch-") as tmp:
        _fleet(Path(tmp))
        bridges = {name: _bridge(Path(tmp), name) for name in variants}
        cpu = {n: [] for n in variants}
        alerts = dict.fromkeys(variants, 0)
        for i, batch in enumerate(make_batches(batches + 10, ticks)):
            for name, fn in variants.items() if i % 2 else reversed(variants.items()):
                ingress.validate_fast = fn
                t0 = time.process_time()
                out = bridges[name].process(batch)
                if i >= 10:
                    cpu[name].append((time.process_time() - t0) * 1000)
                    alerts[name] += len(out)
                bridges[name]._durable = queue.Queue()
        ingress.validate_fast = lake.validate_fast.validate_fast
    assert alerts["validate_file"] == alerts["validate_fast"], alerts
    res = {name: _stats(xs) for name, xs in cpu.items()}
    res["fast_vs_file_median"] = round(res["validate_fast"]["cpu_ms_median"] / res["validate_file"]["cpu_ms_median"], 3)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, default=300)
    ap.add_argument("--ticks", type=int, nargs="+", default=[1, 3], help="publisher ticks (20 ms each) per batch")
    ap.add_argument("--before", default="9bd3ff7", help="git revision of the code to compare against")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    os.environ.setdefault("POLARS_MAX_THREADS", "1")
    if a.worker:
        sys.path.insert(0, os.getcwd())
        print(json.dumps(worker(a.batches, a.ticks[0])))
        return 0
    result = {
        "machine": f"{os.cpu_count()} cores (shared)",
        "load_average_start": os.getloadavg(),
        "before": a.before,
        "runs": [],
    }
    for ticks in a.ticks:
        run = {
            "ticks_per_batch": ticks,
            "messages_per_batch": 22 * ticks,
            "readings_per_batch": 200 * ticks,
            "batches": a.batches,
            "before_vs_after": before_vs_after(a.before, a.batches, ticks),
            "file_vs_fast": file_vs_fast(a.batches, ticks),
        }
        result["runs"].append(run)
        print(json.dumps(run), flush=True)
    result["load_average_end"] = os.getloadavg()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
