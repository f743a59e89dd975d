"""A small simulated fleet with frequent events, shared by the grid ML tests (built once)."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest

START = date(2026, 6, 1)
DAYS = 8


@pytest.fixture(scope="session")
def grid_sim():
    from simulator import EventRates, SimConfig, Simulator

    rates = EventRates(
        failures_per_transformer_year=12.0,
        stuck_per_meter_year=3.0,
        zero_per_meter_year=3.0,
        theft_per_meter_year=1.0,
        sags_per_transformer_year=40.0,
    )
    return Simulator(SimConfig(n_meters=120, start=START, days=DAYS, seed=5, events=rates))


@pytest.fixture(scope="session")
def grid_data(grid_sim):
    days = [grid_sim.day(START + timedelta(days=i)) for i in range(DAYS)]
    return {k: pl.concat([d[k] for d in days]) for k in ("meter_readings", "scada", "weather")}
