"""Config validation: a bad config fails at once, naming the field at fault."""

from __future__ import annotations

from datetime import date

import pytest

from lake.landing import LocalLanding
from simulator import ARCHETYPE_NAMES, BadRecordRates, EventRates, SimConfig, Simulator, write_landing_day


def test_the_twelve_segments_are_the_archetypes():
    assert sorted(ARCHETYPE_NAMES) == sorted(
        [
            "evening_residential_peak",
            "business_hours_commercial",
            "early_morning_industrial",
            "solar_battery",
            "ev_charging",
            "night_owl",
            "weekend_shift",
            "retired_all_day",
            "seasonal_heavy_hvac",
            "efficiency_optimiser",
            "high_all_day",
            "low_use",
        ]
    )


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"interval_minutes": 20}, "interval_minutes"),
        ({"n_meters": 0}, "n_meters"),
        ({"days": 0}, "days"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"meters_per_transformer": (5, 2)}, "meters_per_transformer"),
        ({"archetype_weights": {"vampire": 1.0}}, "vampire"),
        ({"archetype_weights": {"low_use": 0.0}}, "archetype_weights"),
        ({"outage_readings": "maybe"}, "outage_readings"),
    ],
)
def test_bad_config_names_the_field(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        SimConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"theft_per_meter_year": -1.0}, "theft_per_meter_year"),
        ({"sag_depth": (0.3, 0.1)}, "sag_depth"),
        ({"theft_share": (0.5, 1.5)}, "theft_share"),
    ],
)
def test_bad_event_rates_name_the_field(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        EventRates(**kwargs)


def test_bad_record_rates_are_checked():
    with pytest.raises(ValueError, match="wrong_type"):
        BadRecordRates(wrong_type=1.5)
    with pytest.raises(ValueError, match="sum"):
        BadRecordRates(malformed_line=0.3, duplicate=0.3)
    with pytest.raises(ValueError, match="empty_files"):
        BadRecordRates(empty_files=-1)
    assert BadRecordRates().clean and not BadRecordRates(late_files=1).clean


def test_archetype_weights_select_the_mix():
    sim = Simulator(SimConfig(n_meters=30, days=1, archetype_weights={"low_use": 1.0, "night_owl": 1.0}))
    assert set(sim.truth()["truth_customers"]["archetype"]) <= {"low_use", "night_owl"}


def test_days_outside_the_period_and_bad_writer_arguments_are_refused(tmp_path):
    sim = Simulator(SimConfig(n_meters=10, start=date(2026, 3, 1), days=2))
    with pytest.raises(ValueError, match="outside the simulated period"):
        sim.day(date(2026, 3, 3))
    zone = LocalLanding(tmp_path)
    with pytest.raises(ValueError, match="xml"):
        write_landing_day(sim, date(2026, 3, 1), zone, formats={"meter_readings": ("csv", "xml")})
    with pytest.raises(ValueError, match="unknown source"):
        write_landing_day(sim, date(2026, 3, 1), zone, formats={"telemetry": "csv"})
    with pytest.raises(ValueError, match="rows_per_file"):
        write_landing_day(sim, date(2026, 3, 1), zone, rows_per_file=0)
