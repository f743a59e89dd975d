"""Where nightly grid-ML training spends its memory: the library steps of ``grid_anomaly_model``,
``grid_failure_model`` and ``grid_segment_model`` on an existing lake, in one process, with the process's
resident set size sampled every 20 ms and the peak reported per step (issue 13: peak RSS < 8 GB).

    python -m benchmarks.train_memory --lake benchmarks/work/pipeline/run_nightly_10000m/lake --as-of 2026-11-29

The steps mirror the assets (assets/grid_ml.py) without Dagster or MLflow: the same readers, feature
builders and train pipelines, so a step's peak here is what that step costs inside the asset's run.
Prints one JSON object: per step its wall time, the RSS when it ended and the peak RSS during it (MB).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import threading
import time
from contextlib import contextmanager
from pathlib import Path


def rss_mb() -> float:
    """Resident set size of this process (MB), from /proc."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class RssSampler:
    """Samples :func:`rss_mb` every ``every`` seconds on a thread; :meth:`step` reports the peak per step."""

    def __init__(self, every: float = 0.02):
        self.every, self.peak, self.steps = every, 0.0, {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb())
            time.sleep(self.every)

    @contextmanager
    def step(self, name: str):
        self.peak = rss_mb()
        t = time.perf_counter()
        yield
        self.peak = max(self.peak, rss_mb())
        self.steps[name] = {
            "wall_s": round(time.perf_counter() - t, 2),
            "peak_rss_mb": round(self.peak, 1),
            "end_rss_mb": round(rss_mb(), 1),
        }
        print(f"  {name}: {self.steps[name]}", flush=True)

    def close(self) -> None:
        self._stop.set()
        self._t.join()


def profile(lake_root: Path, as_of: dt.date, window: int, failure: bool) -> dict:
    import polars as pl

    from assets.grid_ml import _METER_COLS, _SCADA_COLS, _WEATHER_COLS, _segment_config
    from assets.resources import GridSettings
    from contracts import TABLES
    from lake.delta import Lake
    from models.grid.config import AlertThresholds, AnomalyConfig, FeatureConfig
    from models.grid.evaluate import training_window
    from models.grid.failure import FailureConfig, failure_snapshots
    from models.grid.features import anomaly_features
    from models.grid.pipelines import labels_known_by, train_anomaly, train_failure, train_segments
    from models.grid.segments import profile_features

    s = RssSampler()
    grid = GridSettings()
    prof, tz = grid.profile(), grid.timezone
    fcfg = FeatureConfig.from_profile(prof)
    lk = Lake(lake_root)
    dates = lk.scan("silver_meter_readings").select(pl.col("date").unique()).collect()["date"].to_list()
    start, end, days = training_window(dates, window, 7, 1, as_of, "train_memory")
    eval_from = days[-1]
    out: dict = {"window": f"{start}..{end}", "baseline_rss_mb": round(rss_mb(), 1)}
    with s.step("read_window"):
        incidents = lk.read(TABLES["silver_incidents"]) if lk.exists("silver_incidents") else None
        events = labels_known_by(incidents, end, tz)
        ref_meters, ref_tx = lk.read("ref_meters"), lk.read("ref_transformers")
        meters = lk.read_days(TABLES["silver_meter_readings"], start, end, _METER_COLS)
        scada = lk.read_days(TABLES["silver_scada"], start, end, _SCADA_COLS)
        weather = lk.read_days(TABLES["silver_weather"], start, end, _WEATHER_COLS)
    out["meter_rows"], out["scada_rows"] = meters.height, scada.height
    with s.step("anomaly_features"):
        feats = anomaly_features(meters, scada, weather, ref_tx, fcfg)
    del meters
    acfg = AnomalyConfig(n_estimators=64, ae_epochs=8, max_train_rows=40_000, seed=0, contamination=0.01)
    th = AlertThresholds.from_bands(prof.alert_bands.anomaly)
    models, metrics = {}, {}
    for kind in ("meter", "transformer"):
        with s.step(f"train_anomaly_{kind}"):
            t = train_anomaly(kind, feats[kind], events, ref_meters, tz, eval_from, end, acfg, fcfg, thresholds=th)
        models[kind], metrics[kind] = t.model, t.metrics
    del feats
    if failure:
        with s.step("failure_snapshots"):
            snaps = failure_snapshots(scada, ref_tx, weather, models["transformer"], fcfg)
        with s.step("train_failure"):
            fev = labels_known_by(incidents, end, tz, types=("transformer_failure",))
            fc = FailureConfig(
                n_estimators=200,
                max_depth=4,
                seed=0,
                thresholds=AlertThresholds.from_bands(prof.alert_bands.failure_risk),
            )
            t = train_failure(snaps, fev, tz, eval_from, end, fc, "profile")
        metrics["failure"] = t.metrics
        del snaps
    del scada
    with s.step("segments"):
        readings = lk.read_days(TABLES["silver_meter_readings"], start, end, _METER_COLS)
        scfg = _segment_config(grid, seed=0, n_segments=14)
        t = train_segments(profile_features(readings, ref_meters, scfg), scfg, start, end)
        del readings
    metrics["segments"] = t.metrics
    s.close()
    out["steps"] = s.steps
    out["peak_rss_mb"] = max(v["peak_rss_mb"] for v in s.steps.values())
    out["metrics"] = metrics
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lake", required=True)
    ap.add_argument("--as-of", required=True, help="last day of the training window (ISO date)")
    ap.add_argument("--window", type=int, default=21)
    ap.add_argument("--no-failure", action="store_true")
    ap.add_argument("--out", help="also write the JSON here")
    a = ap.parse_args(argv)
    res = profile(Path(a.lake), dt.date.fromisoformat(a.as_of), a.window, not a.no_failure)
    text = json.dumps(res, indent=1, default=str)
    print(text)
    if a.out:
        Path(a.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
