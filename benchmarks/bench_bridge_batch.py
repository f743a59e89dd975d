"""`make bench-bridge-batch`: CPU cost of one bridge processing batch, full validator vs fast path, same run.

    .venv/bin/python -m benchmarks.bench_bridge_batch [--batches 300] [--ticks 1 3]

The bridge's processing of one batch (``Bridge.process``: validate against the silver contract, rules,
grid events, alerts to the sink) on the messages the `make bench-bridge` publisher sends per 20 ms tick
(two head-end messages of 90 meter readings, 20 SCADA messages, 1 % over a limit), with the spool and acks
left out (the durability thread does those). Two variants, interleaved batch by batch so that the load of
a shared machine hits both alike: ``validate_file`` (the full file validator, what the bridge used before)
and ``validate_fast`` (one query for a clean batch). Reported: CPU ms per batch (``time.process_time``,
median and p90) and the ratio. Writes benchmarks/results/bridge_batch.json.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "bridge_batch.json"


def make_batches(n: int, ticks: int, prefix: str, seed: int = 7):
    from streaming_bridge.ingress import Message
    from streaming_bridge.topics import Topics

    T, rng, out = Topics(prefix), random.Random(seed), []
    for _ in range(n):
        msgs = []
        for _ in range(ticks):
            iso = datetime.now(UTC).isoformat(timespec="microseconds")
            rows = [{"meter_id": f"M{rng.randrange(20_000):06d}", "reading_time": iso, "consumption_kwh": 0.25, "demand_kw": 1.0,
                     "voltage": 231.0 + rng.uniform(-3, 3), "current_amps": 4.5, "power_factor": 0.96} for _ in range(180)]
            rows[0]["voltage"] = 212.0  # 1 % of the readings under the voltage limit
            for h in range(2):
                msgs.append(Message(T.headend(f"HE{h}"), json.dumps({"readings": rows[h * 90:(h + 1) * 90]}).encode(), time.time()))
            for j in range(20):
                hs = 150.0 if j == 0 else 65.0 + rng.uniform(-2, 2)
                msgs.append(Message(T.scada(f"T{rng.randrange(1000):05d}"), json.dumps({"sample_time": iso, "load_kva": 30.0, "top_oil_temp_c": 50.0,
                                                                                       "hot_spot_temp_c": hs, "voltage_v": 233.0, "frequency_hz": 60.0}).encode(), time.time()))
        out.append([(m, 0) for m in msgs])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, default=300)
    ap.add_argument("--ticks", type=int, nargs="+", default=[1, 3], help="publisher ticks (20 ms each) per batch")
    a = ap.parse_args(argv)
    os.environ.setdefault("POLARS_MAX_THREADS", "1")

    import lake.ingest
    import lake.validate_fast
    import streaming_bridge.ingress as ingress
    from benchmarks.bench_bridge import PREFIX, fleet
    from lake.delta import Lake
    from lake.schemas import TABLES
    from streaming_bridge.service import Bridge, BridgeConfig

    class Sink:  # the outbox's contract, kept in memory (the outbox's own cost is measured by bench-alert-delivery)
        def submit(self, alerts):
            pass

    variants = {"validate_file": lake.ingest.validate_file, "validate_fast": lake.validate_fast.validate_fast}
    result = {"machine": f"{os.cpu_count()} cores (shared)", "load_average_start": os.getloadavg(), "runs": []}
    with tempfile.TemporaryDirectory(prefix="bench-bridge-batch-") as tmp:
        meters, transformers = fleet(2_000)
        lk = Lake(Path(tmp) / "lake")
        lk.write_partition(TABLES["ref_meters"], meters, None)
        lk.write_partition(TABLES["ref_transformers"], transformers, None)
        for ticks in a.ticks:
            bridges = {}
            for name in variants:
                cfg = BridgeConfig.from_env(lake_root=str(Path(tmp) / "lake"), landing=f"{tmp}/landing-{name}", spool_dir=f"{tmp}/spool-{name}-{ticks}",
                                            http_port=-1, topic_prefix=PREFIX)
                b = Bridge(cfg, Sink())
                b._durable = queue.Queue()  # spool + ack are the durability thread's work, not the batch's
                bridges[name] = b
            batches = make_batches(a.batches + 10, ticks, PREFIX)
            cpu = {n: [] for n in variants}
            alerts = {n: 0 for n in variants}
            for i, batch in enumerate(batches):
                for name, fn in (variants.items() if i % 2 else reversed(variants.items())):
                    ingress.validate_fast = fn
                    t0 = time.process_time()
                    out = bridges[name].process(batch)
                    dt = time.process_time() - t0
                    bridges[name]._durable = queue.Queue()
                    if i >= 10:  # warm-up: expression caches, first allocations
                        cpu[name].append(dt * 1000)
                        alerts[name] += len(out)
            ingress.validate_fast = lake.validate_fast.validate_fast
            assert alerts["validate_file"] == alerts["validate_fast"], alerts  # same work done
            run = {"ticks_per_batch": ticks, "messages_per_batch": len(batches[0]), "readings_per_batch": 200 * ticks, "batches": a.batches, "alerts": alerts["validate_fast"]}
            for name, xs in cpu.items():
                xs.sort()
                run[name] = {"cpu_ms_median": round(statistics.median(xs), 2), "cpu_ms_p90": round(xs[int(0.9 * len(xs))], 2), "cpu_ms_mean": round(statistics.fmean(xs), 2)}
            run["fast_vs_file_median"] = round(run["validate_fast"]["cpu_ms_median"] / run["validate_file"]["cpu_ms_median"], 3)
            result["runs"].append(run)
            print(json.dumps(run), flush=True)
    result["load_average_end"] = os.getloadavg()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
