"""`make demo` (pipelines.demo) end to end on a small utility, twice, as a user runs it.

The first run goes through every stage (simulate -> ingest with late-data replays -> gold ->
nightly training -> scoring of the last day -> optimisation -> alert delivery through a private Alertmanager to
the bridge's receivers (PostgreSQL schema of this test, MQTT) -> catalog + report) on the embedded
SQLite instance and prints the operator's summary; the second run, on the same home (the MLflow
registry is kept, the lake rebuilt), prints exactly the same figures while its retrained models
meet the champions as challengers. Also checked on the demo's output: demo.json (stage timings,
gold row counts), the self-contained HTML report, and the analysts' notebook on the demo's catalog.
One demo home per module (two runs): ~3-5 minutes on the 2-core machine, hence ``slow``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# 60 meters x 20 days (the shortest demo), seed 3: two transformer failures before the training window ends
ARGS = ["--meters", "60", "--days", "20", "--seed", "3"]
STAGES = ["simulate", "ingest", "gold", "training", "scoring", "optimisation", "alerts", "publish"]
GOLD = ["gold_load_hourly", "gold_load_daily", "gold_load_monthly", "gold_grid_health_daily", "gold_load_forecast", "gold_solar_forecast",
        "gold_peak_demand", "gold_anomaly_scores", "gold_alerts", "gold_transformer_risk", "gold_customer_segments", "gold_recommendations",
        "gold_dr_events", "gold_battery_schedule", "gold_battery_daily", "gold_ev_schedule", "gold_ev_sessions", "gold_opf_dispatch",
        "gold_uc_schedule"]  # fmt: skip

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.mqtt]


def _demo(home: Path, schema: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRIDLAKE_", "DAGSTER_", "MLFLOW_"))}
    p = subprocess.run(
        [sys.executable, "-m", "pipelines.demo", *ARGS, "--home", str(home), "--results", str(home / "demo.json"), "--alerts-schema", schema],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    return p.stdout


def _figures(out: str) -> list[str]:
    """The summary's printed tables and headings (no timestamps, no timings)."""
    summary = out[out.index("Operator summary") : out.index("Stage timings")]
    return [line for line in summary.splitlines() if line.startswith(("│", "┌", "└", "╞", "=="))]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict:
    """Two demo runs on one home: {'home', 'first', 'second'} (what each printed)."""
    from streaming_bridge.stack import drop_schema

    home = tmp_path_factory.mktemp("demo") / "home"
    schema = f"gl_demo_{uuid.uuid4().hex[:10]}"  # the demo's alerts tables, apart from a `make demo` running beside
    try:
        first = _demo(home, schema)
        results = json.loads((home / "demo.json").read_text())
        yield {"home": home, "first": first, "results": results, "second": _demo(home, schema)}
    finally:
        drop_schema(schema)


def test_every_stage_runs_in_order_on_the_embedded_instance(demo):
    out = demo["first"]
    assert "FAILED" not in out and "SqliteRunStorage" in out
    done = list(re.findall(r"\[\d/\d\] (\w+) done in", out))
    assert done == STAGES
    assert "backfill of the history, one run): ok" in out
    assert "late records forwarded from a later day: replay): ok" in out  # the late-data replays ran
    for job in (
        "forecast_training",
        "grid_ml_training",
        "forecast_scoring",
        "grid_ml_scoring",
        "optimization_daily",
        "publish_report",
    ):
        assert re.search(rf"  {job}\b.*: ok in", out), job
    # the first night: every model becomes the first champion
    assert re.search(r"gridlake_load_system v1: champion", out) and re.search(
        r"grid_transformer_failure:v1: champion", out
    )


def test_summary_has_the_operator_figures(demo):
    out, summary = demo["first"], demo["results"]["summary"]
    for title in ("Load forecast for", "Top transformer risks", "Alerts raised", "Customer segments", "Battery at the system meter",
                  "EV charging", "DC-OPF over the day", "Unit commitment of the day", "Alerts delivered for", "Analyst query"):  # fmt: skip
        assert f"== {title}" in out, title
    (system,) = [r for r in summary["forecast_mape"] if r["entity_id"] == "system"]
    assert system["hours"] == 24 and 0 < system["mape_champion"] < 50 and system["mape_naive_day"] > 0
    assert summary["top_risks"] and all(0 <= r["p_fail_72h"] <= 1 for r in summary["top_risks"])
    assert sum(r["meters"] for r in summary["segments"]) == 60
    (battery,) = summary["battery"]
    assert battery["savings"] > 0 and battery["cost_with_battery"] < battery["baseline_cost"]
    ev = {r["strategy"]: r for r in summary["ev"]}
    assert (
        set(ev) == {"edf", "optimal", "uncontrolled"}
        and ev["optimal"]["energy_cost"] <= ev["uncontrolled"]["energy_cost"] + 1e-6
    )
    (opf,) = summary["opf"]
    assert opf["opf_cost_day"] > 0 and 0 < opf["lmp_min"] <= opf["lmp_max"]
    assert summary["uc"]["cost"] > 0 and summary["uc"]["units"] == 50
    # every critical gold alert of the day reached the bridge, pager and chat receivers, once per asset and rule
    # (the hour windows of one asset carry the same labels: one Alertmanager alert)
    critical = sum(r["assets"] for r in summary["alerts"] if r["severity"] == "critical")
    delivered: dict[str, int] = {}
    for r in summary["alerts_delivered"]:
        assert r["severity"] == "critical", r
        delivered[r["receiver"]] = delivered.get(r["receiver"], 0) + r["alerts"]
    assert critical > 0 and delivered == {"bridge": critical, "chat": critical, "pager": critical}
    lat = summary["alert_delivery_latency_s"]
    assert lat["alerts"] == critical and 0 <= lat["p50_s"] <= lat["max_s"] < 60
    notes = demo["results"]["alert_delivery"]
    assert (
        notes["eligible"]
        == notes["posted"]
        == sum(r["alerts"] for r in summary["alerts"] if r["severity"] == "critical")
    )
    assert notes["alertmanager_alerts"] == notes["emailed_alerts"] == critical and notes["emails"] > 0


def test_second_run_prints_the_same_figures_and_meets_the_champions(demo):
    assert _figures(demo["second"]) == _figures(demo["first"])
    assert len(_figures(demo["first"])) > 40
    # the registry was kept: the nightly retrain registered v2 of each model and compared it to the champion
    assert re.search(r"gridlake_load_system v2: (champion|challenger)", demo["second"])
    assert re.search(r"grid_anomaly_meter:v2: (champion|challenger)", demo["second"])


def test_results_file_has_stage_timings_and_gold_row_counts(demo):
    r = demo["results"]
    assert list(r["stage_seconds"]) == STAGES and all(s > 0 for s in r["stage_seconds"].values())
    assert r["total_seconds"] >= sum(r["stage_seconds"].values())
    rows = r["gold_table_rows"]
    assert set(GOLD) <= set(rows), f"gold tables not written: {sorted(set(GOLD) - set(rows))}"
    # no feeder of the small demo needs demand response (events are planned only above capacity): 0 rows is right
    missing = [t for t in GOLD if not rows[t] and t != "gold_dr_events"]
    assert not missing, f"gold tables without rows: {missing}"
    assert rows["gold_load_hourly"] > rows["gold_load_daily"] > 0


def test_report_is_self_contained_html(demo):
    page = (demo["home"] / "warehouse" / "report" / "index.html").read_text()
    pngs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(pngs) >= 8 and all(base64.b64decode(p).startswith(b"\x89PNG") for p in pngs)
    assert not re.search(r"(src|href)=\"(https?:|//|/)", page)  # nothing to fetch: opens from disk
    for section in ("Load forecast vs metered load", "PV forecast", "Battery schedule", "EV charging", "Transformer risk ranking",
                    "Anomaly timeline", "Customer segment mix", "Alert timeline"):  # fmt: skip
        assert f"<h2>{section}" in page, section
    assert "No alerts delivered" not in page  # the alerts stage delivered the day's critical alerts
    alerts_section = page[page.index("<h2>Alert timeline") :]
    assert (
        "<td>critical</td>" in alerts_section
        and "latency p50 s" in alerts_section
        and "data:image/png" in alerts_section
    )
    assert "has no rows for this day yet" not in page  # every other section has its data


def test_analyst_notebook_runs_on_the_demo_catalog(demo, tmp_path):
    out = tmp_path / "figures"
    p = subprocess.run(
        [sys.executable, "notebooks/lake_tour.py", "--catalog", str(demo["home"] / "warehouse" / "gridlake.duckdb"), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "counts reconcile on all 20 days" in p.stdout
    for reason in ("missing_column", "duplicate", "late_data", "unknown_entity", "out_of_range"):
        assert f"│ {reason}" in p.stdout  # the simulator's faults are all accounted for, by reason
    for png in ("feeder_load.png", "voltage_outside_band.png"):
        assert (out / png).stat().st_size > 10_000


@pytest.mark.parametrize("notebook,figures", [
    ("01_data_quality.py", ["meter_completeness.png", "meter_flags.png"]),
    ("02_forecasting.py", ["forecaster_comparison.png"]),
    ("03_anomalies_and_risk.py", ["risk_vs_failures.png"]),
    ("04_schedules.py", ["battery_import.png", "ev_strategies.png", "uc_dispatch.png"]),
    ("05_alerts.py", ["alerts_fired_and_latency.png"]),
])  # fmt: skip
def test_analyst_notebooks_run_on_the_demo_catalog(demo, tmp_path, notebook, figures):
    """Each notebook runs whole on the demo's catalog; a failing cell (or one of its assertions) fails here."""
    p = subprocess.run(
        [sys.executable, f"notebooks/{notebook}", "--catalog", str(demo["home"] / "warehouse" / "gridlake.duckdb"), "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    for png in figures:
        assert (tmp_path / png).stat().st_size > 5_000, png
