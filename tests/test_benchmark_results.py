"""The committed benchmark results parse and carry the keys the issues ask for (a merge once left
conflict markers inside one of them)."""

import json
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
REQUIRED = {
    "bridge.json": ["readings_per_s", "detection_p50_ms", "detection_p99_ms", "e2e_critical_p99_ms", "lost"],
    "optimisation.json": ["opf_bundled", "n1_seconds", "safety_gate_overhead"],
    "pipeline.json": ["meters", "nightly_stage_s", "peak_rss_mb", "scaling_exponents", "capacity_table"],
    "forecast.json": [
        "taylor_mape",
        "taylor_peer_mape",
        "protocol",
        "utility_feeder",
        "solar_coverage_80",
        "solar_coverage_90",
        "solar_skill",
        "solar_rmse_pct_capacity",
    ],
    "ml.json": ["precision_at_budget", "best_f1", "segment_ari_unsupervised", "anomaly_champion_selected"],
}


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*.json")), ids=lambda p: p.name)
def test_result_file_parses_and_has_its_keys(path):
    data = json.loads(path.read_text())
    assert isinstance(data, dict) and data
    missing = [k for k in REQUIRED.get(path.name, []) if k not in data]
    assert not missing, f"{path.name}: missing {missing}"


def test_forecast_result_states_its_protocol_and_measures_both_bands():
    """forecast.json says how each section was measured, and no interval figure is left unmeasured."""
    data = json.loads((RESULTS / "forecast.json").read_text())
    proto = data["protocol"]
    for section in ("taylor", "solar", "utility"):
        assert {"train_window", "origins", "leads", "weather", "intervals"} <= set(proto[section]), section
    assert set(proto["solar"]["sites"]) == set(data["solar_coverage_80"])
    for model, m in data["utility_feeder"].items():
        assert all(isinstance(m[k], float) for k in ("coverage_80", "coverage_90", "pinball")), model
    for by_variant in data["solar_coverage_90"].values():
        assert all(0 < v <= 1 for per_lead in by_variant.values() for v in per_lead.values())
