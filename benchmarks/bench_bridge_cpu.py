"""`make bench-bridge-cpu`: the bridge's processing CPU per reading, before vs after, in the same run, no MQTT.

    .venv/bin/python -m benchmarks.bench_bridge_cpu [--ticks 1000] [--before e71173f]

What is replayed: the messages of `make bench-bridge`'s publisher (``bench_bridge.Load``: per 20 ms tick two
AMI head-end batches of 90 meter readings and 20 single SCADA samples, 1 % over a limit, 2.5 bad payloads/s),
recorded once to a file with event times 20 ms apart, then fed one tick per batch (what the bridge's 4 ms
linger gives at 10,000 readings/s) through ``Bridge.process`` and the spool + acknowledgement step
(``Bridge._make_durable``, group commit per batch) of a bridge over the bench's fleet (21,000 meters, 1,000
transformers), with an in-memory alert sink (the outbox's own cost: `make bench-alert-delivery`).

"Before" is the code of git revision ``--before`` (exported with ``git archive``), "after" this tree; both run
in worker processes at the same time on the same recorded messages, so the machine's load hits both alike; the
faster one replays again (fresh bridge) until the slower one is done, counting only passes that ended before.
Reported: CPU (``time.process_time``, one polars thread) per reading, the ratio, the share of one core that
rate means at 10,000 readings/s, and the counts (accepted, dead-lettered, alerts) that must agree. Not
included: the MQTT child process (paho, ~10 % of a core in bench-bridge's bare-subscriber baseline), the pipe,
the outbox and landing. Writes benchmarks/results/bridge_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "bridge_cpu.json"
RATE = 10_000


def record(ticks: int, path: Path) -> dict:
    """The publisher's messages for ``ticks`` ticks, event times ending now (inside the stream's window)."""
    from benchmarks.bench_bridge import PREFIX, TICK, Load
    from streaming_bridge.topics import Topics

    load = Load(RATE, Topics(PREFIX))
    t0 = datetime.now(UTC) - timedelta(seconds=ticks * TICK + 60)
    data = [load.tick((t0 + timedelta(seconds=k * TICK)).isoformat(timespec="microseconds")) for k in range(ticks)]
    path.write_bytes(pickle.dumps({"ticks": data, "fresh_meters": load.fresh}))
    return {"ticks": ticks, "messages": load.msgs, "readings": load.readings, "bad": load.bad}


class _Sink:  # the outbox's contract, in memory
    def submit(self, alerts):
        pass


def _replay(tmp: Path, data: list, warmup: int) -> dict:
    """One pass over the recorded ticks by a fresh bridge (its own spool and onset store) over the lake in ``tmp``."""
    from streaming_bridge.ingress import Message
    from streaming_bridge.service import Bridge, BridgeConfig

    run = Path(tempfile.mkdtemp(prefix="pass-", dir=tmp))
    cfg = BridgeConfig.from_env(
        lake_root=str(tmp / "lake"),
        landing=str(run / "landing"),
        spool_dir=str(run / "spool"),
        http_port=-1,
        topic_prefix="bench/v1",
    )
    b = Bridge(cfg, _Sink())
    cpu, alerts, counts0 = 0.0, 0, dict(b.counts)
    for k, tick in enumerate(data):
        now = time.time()
        batch = [(Message(t, p, now, 0), 0) for t, p in tick]
        if k == warmup:
            counts0 = dict(b.counts)
        c0 = time.process_time()
        # as the service's loop does (the critical lane first, where the tree has one); no durability thread:
        # spool, fsync and ack inline
        out = getattr(b, "process_lanes", b.process)(batch)
        c1 = time.process_time()
        if k >= warmup:
            cpu += c1 - c0
            alerts += len(out)
    b.landing.close()
    b.topo.onsets._db.close()
    return {"cpu": cpu, "alerts": alerts, **{key: v - counts0[key] for key, v in b.counts.items()}}


def worker(payloads: str, warmup: int, stop: str | None) -> dict:
    """Runs with the tree to measure first on sys.path: CPU of Bridge.process + _make_durable per reading.
    With ``stop``: replays again (a fresh bridge each pass) until that file exists, so that the faster code is
    measured under the same contention as the slower one for as long as that runs; a pass that ends after the
    signal (partly alone) is not counted, unless it is the only one."""
    from benchmarks.bench_bridge import fleet
    from contracts import TABLES
    from lake.delta import Lake

    rec = pickle.loads(Path(payloads).read_bytes())
    data, n_fresh = rec["ticks"], rec["fresh_meters"]
    with tempfile.TemporaryDirectory(prefix="bench-bridge-cpu-") as tmp:
        tmp = Path(tmp)
        meters, transformers = fleet(n_fresh)
        lk = Lake(tmp / "lake")
        lk.write_partition(TABLES["ref_meters"], meters, None)
        lk.write_partition(TABLES["ref_transformers"], transformers, None)
        passes: list[dict] = []
        while True:
            r = _replay(tmp, data, warmup)
            late = stop is not None and Path(stop).exists()
            if passes and late:
                break
            passes.append(r)
            if stop is None or late:
                break
    cpu, readings, batches = (
        sum(p["cpu"] for p in passes),
        sum(p["records"] for p in passes),
        len(passes) * (len(data) - warmup),
    )
    first = passes[0]
    return {
        "passes": len(passes),
        "cpu_s": round(cpu, 3),
        "batches": batches,
        "cpu_us_per_reading": round(cpu / readings * 1e6, 2),
        "cpu_ms_per_batch": round(cpu / batches * 1000, 3),
        "core_share_at_10k_per_s": round(cpu / readings * RATE, 3),
        "alerts": first["alerts"],  # of the first pass (every pass replays the same messages)
        **{k: first[k] for k in ("messages", "records", "accepted", "dead_lettered")},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ticks", type=int, default=1000, help="20 ms publisher ticks to replay (200 readings each)")
    ap.add_argument("--warmup", type=int, default=50, help="ticks processed before measuring")
    ap.add_argument("--before", default="e71173f", help="git revision of the code to compare against")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--stop", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    os.environ.setdefault("POLARS_MAX_THREADS", "1")
    if a.worker:
        sys.path.insert(0, os.getcwd())
        print(json.dumps(worker(a.worker, a.warmup, a.stop)))
        return 0
    result = {
        "machine": f"{os.cpu_count()} cores (shared)",
        "load_average_start": os.getloadavg(),
        "before_revision": a.before,
        "after": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        + " + working tree",
    }
    with tempfile.TemporaryDirectory(prefix="bench-bridge-cpu-") as tmp:
        payloads = Path(tmp) / "payloads.pkl"
        result["replayed"] = record(a.ticks, payloads)
        old = Path(tmp) / "before"
        old.mkdir()
        archive = subprocess.run(["git", "archive", a.before], cwd=REPO, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        stop = Path(tmp) / "before-done"
        procs = {
            name: subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--worker", str(payloads), "--warmup", str(a.warmup)]
                + extra,
                cwd=tree,
                env={**os.environ, "PYTHONPATH": str(tree)},
                stdout=subprocess.PIPE,
                text=True,
            )
            for name, tree, extra in (("before", old, []), ("after", REPO, ["--stop", str(stop)]))
        }
        for name, p in procs.items():  # before first: when it is done, the after worker stops repeating
            out, _ = p.communicate(timeout=3600)
            if p.returncode:
                raise SystemExit(f"{name} worker failed ({p.returncode})")
            result[name] = json.loads(out.strip().splitlines()[-1])
            stop.touch()
    same = ("messages", "records", "accepted", "dead_lettered", "alerts")
    result["same_counts"] = all(result["before"][k] == result["after"][k] for k in same)
    result["after_vs_before_cpu"] = round(
        result["after"]["cpu_us_per_reading"] / result["before"]["cpu_us_per_reading"], 3
    )  # per reading: the after worker may have replayed more than once
    result["load_average_end"] = os.getloadavg()
    for name in ("before", "after"):
        r = result[name]
        print(
            f"{name:6s}: {r['cpu_us_per_reading']:7.2f} us CPU per reading, {r['cpu_ms_per_batch']:6.2f} ms per "
            f"200-reading batch, {r['core_share_at_10k_per_s']:.0%} of a core at 10k readings/s "
            f"(accepted {r['accepted']}, dead-lettered {r['dead_lettered']}, alerts {r['alerts']})"
        )
    print(f"after/before CPU {result['after_vs_before_cpu']}, same counts: {result['same_counts']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {RESULTS}")
    if not result["same_counts"]:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
