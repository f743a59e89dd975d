"""The utility profile: validation with named fields, environment overrides, and one zone everywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from contracts.profile import DEMO_PROFILE, ProfileError, read_profile

ROOT = Path(__file__).resolve().parents[2]


def test_demo_profile_is_valid_and_has_one_peak_window():
    p = read_profile(DEMO_PROFILE)
    assert p.tariffs.peak_window.hours == [16, 17, 18, 19, 20]
    assert not set(p.tariffs.wholesale.shoulder_hours) & set(p.tariffs.peak_window.hours)
    assert set(p.demand_response.multiplier) <= set(p.demand_response.reduction_share)


def test_bad_profile_names_the_file_and_the_field(tmp_path):
    data = yaml.safe_load(DEMO_PROFILE.read_text())
    data["timezone"] = "Mars/Olympus"
    data["tariffs"]["retail"]["peak_per_kwh"] = 0.05  # below off-peak
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ProfileError) as e:
        read_profile(bad)
    msg = str(e.value)
    assert str(bad) in msg and "timezone: " in msg and "Mars/Olympus" in msg and "tariffs.retail" in msg


def test_environment_overrides_the_zone_and_start(monkeypatch):
    from contracts.profile import load_profile

    monkeypatch.setenv("GRIDLAKE_TIMEZONE", "Europe/Berlin")
    monkeypatch.setenv("GRIDLAKE_START_DATE", "2025-07-01")
    p = load_profile()
    assert (p.timezone, p.partition_start.isoformat()) == ("Europe/Berlin", "2025-07-01")
    assert load_profile() is p  # loaded once


@pytest.mark.slow
def test_sydney_partitions_day_bounds_peaks_and_schedules_agree():
    """Under Australia/Sydney (DST ends 5 April, starts 4 October 2026), in a fresh interpreter as a deployment."""
    env = {**os.environ, "GRIDLAKE_TIMEZONE": "Australia/Sydney", "PYTHONPATH": str(ROOT)}
    env.pop("GRIDLAKE_PROFILE", None)
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("sydney_check.py"))],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["profile"] == out["partitions"] == out["grid"] == "Australia/Sydney"
    assert out["other_zone_refused"]
    hours = {d: v["window_hours"] for d, v in out["days"].items()}
    assert hours == {"2026-04-05": 25.0, "2026-10-04": 23.0, "2026-07-01": 24.0}
    for day, v in out["days"].items():
        assert v["window_matches_bounds"] and v["open_window_matches"], day
        assert v["schedule_partition"] == day
        assert v["ev_success"] and v["ev_sessions"] > 0 and v["ev_arrivals_inside_day"], day
    # the graph on the 25-hour day: every silver reading inside the local day, 25 hours per meter in gold
    g = out["graph"]
    assert g["success"] and g["silver_rows"] > 0 and g["silver_inside_day"]
    assert g["hours_per_meter"] == [25] and g["daily_meter_rows"] == 12
    assert max(g["readings_per_meter"]) * g["interval_minutes"] == 25 * 60  # a full meter has 25 h of readings
    # 25 local hours of 15-minute readings; the peak window 16..20 local -> mean demand 18
    assert out["readings_in_day"] == 100
    assert out["peak_kw"] == pytest.approx(18.0)


def test_run_config_overrides_of_the_profile_are_validated():
    from pydantic import ValidationError

    from assets.grid_ml import DRConfigDagster
    from assets.optimization import BatteryConfig

    p = read_profile(DEMO_PROFILE)
    assert BatteryConfig(efficiency=0.9).site(p.battery).efficiency == 0.9
    assert BatteryConfig().site(p.battery) == p.battery  # None = the profile's
    assert DRConfigDagster(capacity_share=0.45).programme(p.demand_response).capacity_share == 0.45
    with pytest.raises(ValidationError, match="efficiency"):
        BatteryConfig(efficiency=1.5).site(p.battery)
    with pytest.raises(ValidationError, match="margin"):
        DRConfigDagster(margin=2.0).programme(p.demand_response)
