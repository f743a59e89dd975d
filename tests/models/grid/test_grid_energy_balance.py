"""Issue 14: energy balance per transformer/feeder/day and the NTL suspect list, on a simulated fleet
where a bypassed meter hides part of its customer's consumption from the meter (not from SCADA)."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest

from models.grid.energy_balance import BalanceConfig, suspects_from_readings, theft_detection

CFG = BalanceConfig(timezone="America/New_York")
pytestmark = pytest.mark.slow  # simulates 24 days of 120 meters (~25 s on an idle machine)


@pytest.fixture(scope="module")
def theft_fleet():
    from simulator import EventRates, SimConfig, Simulator

    rates = EventRates(
        theft_per_meter_year=1.5,
        theft_share=(0.6, 0.8),
        theft_days=(10.0, 20.0),
        stuck_per_meter_year=0.0,
        zero_per_meter_year=0.0,
        sags_per_transformer_year=0.0,
        failures_per_transformer_year=0.0,
    )
    start, days = date(2026, 6, 1), 24
    sim = Simulator(SimConfig(n_meters=120, start=start, days=days, seed=6, events=rates))
    frames = [sim.day(start + timedelta(days=i)) for i in range(days)]
    data = {k: pl.concat([f[k] for f in frames]) for k in ("meter_readings", "scada")}
    ref = sim.reference()
    bal, sus = suspects_from_readings(
        data["meter_readings"], data["scada"], ref["ref_meters"], ref["ref_transformers"], CFG
    )
    return sim, bal, sus, start, days


def test_the_balance_adds_up_and_is_declared(theft_fleet):
    from contracts import GOLD_ENERGY_BALANCE

    sim, bal, _, _, _ = theft_fleet
    GOLD_ENERGY_BALANCE.conform(bal)  # every declared column, castable
    gap = bal["supplied_kwh"] - bal["metered_kwh"] - bal["technical_loss_kwh"] - bal["unexplained_kwh"]
    assert gap.abs().max() < 1e-6
    tx = (
        bal.filter(pl.col("level") == "transformer")
        .group_by("feeder_id", "date")
        .agg(pl.col("supplied_kwh", "unexplained_kwh").sum())
    )
    fd = bal.filter(pl.col("level") == "feeder").select(
        pl.col("entity_id").alias("feeder_id"), "date", "supplied_kwh", "unexplained_kwh"
    )
    j = tx.join(fd, on=["feeder_id", "date"], suffix="_f")
    assert j.height == fd.height and (j["supplied_kwh"] - j["supplied_kwh_f"]).abs().max() < 1e-6
    assert (bal["technical_loss_kwh"] > 0).all()
    # where nobody steals, the balance closes to within a few percent of the supply
    thieves = sim.truth()["truth_events"].filter(pl.col("event_type") == "theft")["asset_id"]
    ref = sim.reference()["ref_meters"]
    honest = set(ref["transformer_id"]) - set(ref.filter(pl.col("meter_id").is_in(thieves.implode()))["transformer_id"])
    clean = bal.filter((pl.col("level") == "transformer") & pl.col("entity_id").is_in(list(honest)))
    assert clean.height and (clean["unexplained_kwh"].abs() / clean["supplied_kwh"]).median() < 0.03


def test_a_theft_raises_its_transformers_unexplained_loss_and_names_some_thieves(theft_fleet):
    sim, bal, sus, start, days = theft_fleet
    ev = sim.truth()["truth_events"]
    th = ev.filter((pl.col("event_type") == "theft") & (pl.col("start_time").dt.date() >= start + timedelta(days=8)))
    assert th.height >= 3
    ref = sim.reference()["ref_meters"].select(pl.col("meter_id").alias("asset_id"), "transformer_id")
    rises = (
        th.join(ref, on="asset_id")
        .join(bal.filter(pl.col("level") == "transformer").rename({"entity_id": "transformer_id"}), on="transformer_id")
        .filter((pl.col("date") > pl.col("start_time").dt.date()) & (pl.col("date") < pl.col("end_time").dt.date()))
    )
    assert rises["unexplained_rise_kwh"].median() > 2.0  # the hidden energy shows at the transformer
    r = theft_detection(sus, th, ev, 120, days)
    assert r["detected_within"] >= 1 and set(sus.columns) >= {
        "date",
        "transformer_id",
        "meter_id",
        "rank",
        "score",
        "reason",
    }
    assert sus["rank"].max() <= CFG.top_n and sus["score"].is_between(0.0, 1.0).all()
    assert set(sus["kind"]) <= {"theft", "meter_fault"}


def test_missing_columns_are_named():
    from models.grid.features import FeatureInputError

    with pytest.raises(FeatureInputError, match="power_factor"):
        suspects_from_readings(
            pl.DataFrame({"meter_id": ["M1"], "reading_time": [None], "demand_kw": [1.0]}),
            pl.DataFrame(),
            pl.DataFrame(),
            pl.DataFrame(),
            CFG,
        )
