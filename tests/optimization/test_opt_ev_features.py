"""EV library features the asset uses: port caps, V2G (export price, wear, per-vehicle opt-in), cost per session, objective shares."""

import numpy as np
import polars as pl
import pytest

from optimization.errors import InputError
from optimization.ev import (
    EVWeights,
    apply_port_caps,
    compare_strategies,
    optimize_ev,
    savings_vs_uncontrolled,
    simulate_sessions,
    weights_from_shares,
)
from optimization.settings import EVObjectiveShares

H, MIN = 96, 15.0
HOUR = np.arange(H) // 4
PRICE = np.where((HOUR >= 16) & (HOUR < 21), 180.0, np.where((HOUR >= 7) & (HOUR < 16), 90.0, 50.0))
BASE = 15.0 + 10.0 * np.exp(-(((HOUR - 18) / 2.0) ** 2))


@pytest.fixture(scope="module")
def sessions():
    # evening-long stays so that V2G at the 16-21 h peak is possible
    s = simulate_sessions(10, periods=H, period_minutes=MIN, seed=5)
    return s.with_columns(pl.lit(40).cast(pl.Int64).alias("arrival_period"), pl.lit(H).cast(pl.Int64).alias("departure_period"),
                          (pl.int_range(pl.len()) % 2 == 0).alias("v2g_opt_in"))  # fmt: skip


def test_port_caps_lower_every_strategy_and_are_validated(sessions):
    capped = apply_port_caps(sessions, {"st0000": 3.3, "st0001": 2.0})
    assert capped.filter(pl.col("station_id") == "st0000")["max_power_kw"][0] == 3.3
    assert capped.filter(pl.col("station_id") == "st0002")["max_power_kw"][0] == sessions["max_power_kw"][2]
    res = compare_strategies(capped, PRICE, transformer_limit_kw=200.0, period_minutes=MIN, baseload_kw=BASE)
    for r in res.values():
        p = r.power.filter(pl.col("session_id") == "s00000")
        assert p["power_kw"].max() <= 3.3 + 1e-9
    assert apply_port_caps(sessions, 4.0)["max_power_kw"].max() == 4.0
    with pytest.raises(InputError, match="port caps"):
        apply_port_caps(sessions, {"st0000": 0.0})


def test_v2g_only_opted_in_vehicles_export_and_wear_cost_reduces_it(sessions):
    kw = dict(horizon=H, period_minutes=MIN, price=PRICE, baseload_kw=BASE, transformer_limit_kw=200.0, v2g=True, v2g_price_threshold=150.0,
              v2g_export_price=np.where(PRICE >= 180.0, 200.0, 0.0), v2g_buffer_kwh=5.0)  # fmt: skip
    cheap = optimize_ev(sessions, v2g_wear_cost_per_mwh=20.0, **kw)
    opted = set(sessions.filter(pl.col("v2g_opt_in"))["session_id"])
    exporters = set(cheap.power.filter(pl.col("power_kw") < 0)["session_id"])
    assert exporters and exporters <= opted
    assert cheap.metrics["v2g_export_kwh"] > 0
    # every session still gets its full request (the unmet penalty dominates), opted-in or not
    assert cheap.sessions["unmet_kwh"].max() < 1e-6
    dear = optimize_ev(sessions, v2g_wear_cost_per_mwh=500.0, **kw)  # wear above the export margin: no V2G
    assert dear.metrics["v2g_export_kwh"] < 1e-6
    # cost per session adds up to the total, exports counted at the export price net of wear
    assert cheap.sessions["cost"].sum() == pytest.approx(cheap.metrics["cost"])
    assert cheap.metrics["cost"] < dear.metrics["cost"]


def test_objective_shares_trade_cost_for_peak(sessions):
    late = sessions.with_columns(pl.lit(64).cast(pl.Int64).alias("arrival_period"))  # arrive 16:00, in the peak
    kw = dict(horizon=H, period_minutes=MIN, baseload_kw=BASE)
    cost_only = weights_from_shares(EVObjectiveShares(cost=1.0, peak=0.0, convenience=0.0), late, PRICE, **kw)
    default = weights_from_shares(EVObjectiveShares(), late, PRICE, **kw)
    assert isinstance(default, EVWeights) and default.peak_per_kw > 0
    r_cost = compare_strategies(
        late, PRICE, transformer_limit_kw=200.0, period_minutes=MIN, baseload_kw=BASE, weights=cost_only
    )
    r_mix = compare_strategies(
        late, PRICE, transformer_limit_kw=200.0, period_minutes=MIN, baseload_kw=BASE, weights=default
    )
    o_cost, o_mix = r_cost["optimal"].metrics, r_mix["optimal"].metrics
    assert o_mix["site_peak_kw"] < o_cost["site_peak_kw"] - 1.0
    assert o_mix["cost"] >= o_cost["cost"] - 1e-9
    sv = savings_vs_uncontrolled(r_mix)
    assert sv["cost_savings"] > 0 and sv["peak_reduction_kw"] > 0
