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


@pytest.fixture(scope="session")
def event_free_utility():
    """A 40-meter simulated utility (seed 7, from START) with no events of its own, for tests that plant their
    thefts and faults in its readings: ``build(days)`` -> meters, scada, the reference tables, each meter's mean
    demand with its transformer (``use``) and the sorted transformer ids. Built once per length (frames are immutable)."""
    from simulator import EventRates, SimConfig, Simulator

    built: dict[int, dict] = {}

    def build(days: int) -> dict:
        if days not in built:
            none = EventRates(
                theft_per_meter_year=0.0,
                stuck_per_meter_year=0.0,
                zero_per_meter_year=0.0,
                sags_per_transformer_year=0.0,
                failures_per_transformer_year=0.0,
            )
            sim = Simulator(SimConfig(n_meters=40, start=START, days=days, seed=7, events=none))
            frames = [sim.day(START + timedelta(days=i)) for i in range(days)]
            meters = pl.concat([f["meter_readings"] for f in frames])
            ref = sim.reference()
            rm = ref["ref_meters"]
            built[days] = {
                "meters": meters,
                "scada": pl.concat([f["scada"] for f in frames]),
                "ref": ref,
                "use": meters.group_by("meter_id").agg(pl.col("demand_kw").mean()).join(rm, on="meter_id"),
                "txs": sorted(rm["transformer_id"].unique().to_list()),
            }
        return built[days]

    return build
