"""The safety gate: solver schedules pass, a schedule crafted to break each rule is caught and replaced."""

import numpy as np
import polars as pl
import pytest

from optimization.battery import BatterySpec, optimize_battery
from optimization.ev import optimize_ev, simulate_sessions
from optimization.safety import (
    BATTERY_RULES,
    battery_model_limits,
    check_battery,
    check_ev,
    derate_factor,
    gate_alert,
    gate_battery,
    gate_ev,
)
from optimization.settings import SafetySettings

N, MIN = 96, 15.0
DT = MIN / 60
PRICE = np.where((np.arange(N) // 4 >= 16) & (np.arange(N) // 4 < 21), 180.0, 50.0)
HOT = np.where((np.arange(N) // 4 >= 12) & (np.arange(N) // 4 < 18), 47.0, 25.0)  # hot afternoon
LOAD = 80.0 + 60.0 * np.exp(-((((np.arange(N) / 4) - 18.5) / 2.5) ** 2))
PV = 70.0 * np.clip(np.sin(np.pi * ((np.arange(N) / 4) - 6.5) / 12), 0, None)
SPEC = BatterySpec(50.0, 200.0, soc_initial_frac=0.5, degradation_cost_per_mwh=2.0)
S = SafetySettings(ramp_frac_per_hour=1.0, soc_reserve_frac=0.2, export_limit_kw=40.0, transformer_limit_kw=150.0)


def _solve(spec=SPEC, s=S, ambient=HOT):
    return optimize_battery(spec, PRICE, period_minutes=MIN, load_kw=LOAD, pv_kw=PV, demand_charge_per_kw=0.5,
                            **battery_model_limits(spec, s, N, MIN, ambient))  # fmt: skip


def test_derate_factor_is_linear_between_the_temperatures():
    f = derate_factor([20.0, 35.0, 42.5, 50.0, 60.0], S, 5)
    assert f == pytest.approx([1.0, 1.0, 0.75, 0.5, 0.5])


def test_solver_schedule_obeys_the_limits_as_model_constraints_and_passes_the_gate():
    res = _solve()
    sch = res.schedule
    net = sch["net_kw"].to_numpy()
    ramp = S.ramp_frac_per_hour * SPEC.power_kw * DT
    assert np.abs(np.diff(np.concatenate([[0.0], net]))).max() <= ramp + 1e-6
    assert sch["soc_kwh"].min() >= (SPEC.soc_min_frac + S.soc_reserve_frac) * SPEC.energy_kwh - 1e-6
    cap = SPEC.power_kw * derate_factor(HOT, S, N)
    assert (sch["discharge_kw"].to_numpy() <= cap + 1e-6).all() and (sch["charge_kw"].to_numpy() <= cap + 1e-6).all()
    gate = gate_battery(res, SPEC, S, period_minutes=MIN, ambient_c=HOT)
    assert gate.passed and gate.published is res and gate.status == "passed"
    # the constraints bind: the same LP without them breaks the ramp and derating rules
    free = optimize_battery(SPEC, PRICE, period_minutes=MIN, load_kw=LOAD, pv_kw=PV, demand_charge_per_kw=0.5)
    rules = {v.rule for v in check_battery(free.schedule["charge_kw"], free.schedule["discharge_kw"], SPEC, S, period_minutes=MIN,
                                           ambient_c=HOT)}  # fmt: skip
    assert {"ramp", "derating"} <= rules
    assert res.breakdown["savings"] <= free.breakdown["savings"] + 1e-9  # safety never earns money


def _crafted(rule: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """A charge/discharge pair that breaks ``rule`` (and as little else as possible)."""
    ch, dis, kw = np.zeros(N), np.zeros(N), {}
    if rule == "power_rating":
        ch[4:6] = [30.0, 60.0]  # 60 > 50 kW
        dis[40:42] = [30.0, 30.0]
    elif rule == "derating":
        dis[52:56] = [10.0, 20.0, 32.0, 20.0]  # 32 kW: within the 50 kW rating, above the 30 kW left at 47 degC (x 0.6)
    elif rule == "ramp":
        ch[10] = 12.5 + 5.0  # 0 -> 17.5 kW in one 15-minute step, limit 12.5
        dis[60] = 12.0
    elif rule in ("soc_band", "soc_column"):
        dis[30:36] = 10.0  # 100 kWh - 6 x 2.5 / 0.95 = 84 kWh > floor 40: fine for the band ...
        if rule == "soc_band":
            dis[30:50] = 12.0  # ... 20 x 3 / 0.95 = 63 kWh out of 100: below the 40 kWh floor
        else:
            kw["soc_kwh"] = np.full(N, 100.0)  # a column claiming the SOC never moved
    elif rule == "export_limit":
        base = LOAD - PV
        k = int(np.argmin(base))
        dis[k] = base[k] + 5.0  # exports 5 kW at the hour of least import, where the baseline exported nothing
        kw["baseline_grid_kw"] = base
        kw["update"] = {"export_limit_kw": 0.0}
    elif rule == "transformer_limit":
        base = LOAD - PV
        k = int(np.argmax(base))
        ch[k - 1 : k + 2] = [10.0, 12.0, 10.0]
        kw["baseline_grid_kw"] = base
        kw["update"] = {"transformer_limit_kw": float(base[k] + 5.0)}
    return ch, dis, kw


@pytest.mark.parametrize("rule", list(BATTERY_RULES))
def test_each_battery_rule_catches_a_crafted_schedule_and_the_gate_replaces_it(rule):
    ch, dis, kw = _crafted(rule)
    s = S.model_copy(update=kw.pop("update", {}))
    found = check_battery(ch, dis, SPEC, s, period_minutes=MIN, ambient_c=HOT, **kw)
    assert rule in {v.rule for v in found}, found
    # through the gate: a solved result whose schedule is swapped for the crafted one
    res = _solve(s=s)
    bad = res.schedule.with_columns(pl.Series("charge_kw", ch), pl.Series("discharge_kw", dis),
                                    pl.Series("soc_kwh", kw.get("soc_kwh", SPEC.soc_initial_frac * SPEC.energy_kwh
                                              + np.cumsum(0.95 * DT * ch - DT / 0.95 * dis))))  # fmt: skip
    res.schedule = bad
    gate = gate_battery(res, SPEC, s, period_minutes=MIN, ambient_c=HOT)
    assert not gate.passed and rule in gate.counts()
    assert gate.fallback == "hold" and gate.status == "fallback:hold"
    pub = gate.published.schedule
    assert (pub["charge_kw"] == 0).all() and (pub["discharge_kw"] == 0).all()
    assert pub["soc_kwh"].to_numpy() == pytest.approx(np.full(N, 100.0))
    assert gate.published.breakdown["savings"] == pytest.approx(
        0.0, abs=1e-9
    )  # holding saves nothing and costs nothing
    alert = gate_alert(gate, alertname="UnsafeBatterySchedule", asset_type="battery", asset_id="system", partition="2026-03-05",
                       table="gold_battery_schedule")  # fmt: skip
    assert (
        alert["labels"]["severity"] == "warning"
        and rule in alert["annotations"]["rules"]
        and "hold" in alert["annotations"]["summary"]
    )


def test_below_the_reserve_the_fallback_charges_only_within_ramp_and_transformer_headroom():
    spec = BatterySpec(50.0, 200.0, soc_initial_frac=0.05)  # 10 kWh, floor (0 + 0.2) x 200 = 40 kWh
    s = S.model_copy(update={"transformer_limit_kw": 100.0})
    res = optimize_battery(
        spec, PRICE, period_minutes=MIN, load_kw=LOAD, pv_kw=PV, **battery_model_limits(spec, s, N, MIN)
    )
    assert res.schedule["soc_kwh"][-1] >= 40.0 - 1e-6  # the model recovers the reserve
    res.schedule = res.schedule.with_columns(pl.Series("discharge_kw", np.full(N, 1.0)))  # drains: breaks the band
    gate = gate_battery(res, spec, s, period_minutes=MIN)
    assert gate.fallback == "charge_only"
    pub = gate.published.schedule
    assert (pub["discharge_kw"] == 0).all()
    assert pub["soc_kwh"][-1] == pytest.approx(40.0)
    ramp = s.ramp_frac_per_hour * spec.power_kw * DT
    assert np.abs(np.diff(np.concatenate([[0.0], pub["charge_kw"].to_numpy(), [0.0]]))).max() <= ramp + 1e-9
    assert (pub["grid_import_kw"].to_numpy() <= np.maximum(100.0, LOAD - PV) + 1e-9).all()
    assert (
        check_battery(pub["charge_kw"], pub["discharge_kw"], spec, s, period_minutes=MIN, baseline_grid_kw=LOAD - PV)
        == []
    )


# ---------------------------------------------------------------------------------------------- EV
H = 96


@pytest.fixture(scope="module")
def ev_case():
    sessions = simulate_sessions(12, periods=H, period_minutes=MIN, seed=3).with_columns(
        (pl.int_range(pl.len()) % 3 == 0).alias("v2g_opt_in"))  # fmt: skip
    base = np.full(H, 10.0)
    res = optimize_ev(
        sessions,
        horizon=H,
        period_minutes=MIN,
        transformer_limit_kw=45.0,
        baseload_kw=base,
        price=PRICE,
        allow_unmet=True,
    )
    return sessions, base, res


def _gate(sessions, base, res, s=S):
    return gate_ev(
        res,
        sessions,
        s,
        period_minutes=MIN,
        transformer_limit_kw=45.0,
        baseload_kw=base,
        price=PRICE,
        v2g_buffer_kwh=5.0,
    )


def test_optimal_ev_schedule_passes(ev_case):
    sessions, base, res = ev_case
    gate = _gate(sessions, base, res)
    assert gate.passed, gate.violations[:3]


def _tamper(res, fn):
    out = type(res)(fn(res.power), res.sessions, res.profile, res.metrics)
    return out


@pytest.mark.parametrize("rule,detail", [
    ("power_rating", "above the session/port maximum"),
    ("power_rating", "discharge without V2G opt-in"),
    ("power_rating", "outside the session window"),
    ("soc_band", "energy outside"),
    ("transformer_limit", "EV + baseload"),
])  # fmt: skip
def test_each_ev_rule_catches_a_crafted_schedule_and_the_gate_falls_back_to_charge_only(ev_case, rule, detail):
    sessions, base, res = ev_case
    first = res.power.row(0, named=True)
    sid = first["session_id"]
    s0 = sessions.filter(pl.col("session_id") == sid).row(0, named=True)
    not_opted = sessions.filter(~pl.col("v2g_opt_in")).row(0, named=True)
    if "maximum" in detail:
        bad = res.power.with_columns(
            pl.when(pl.col("session_id") == sid)
            .then(pl.col("power_kw") * 0 + 9.0)
            .otherwise(pl.col("power_kw"))
            .alias("power_kw")
        )
    elif "opt-in" in detail:
        extra = pl.DataFrame(
            {"session_id": [not_opted["session_id"]], "period": [not_opted["arrival_period"]], "power_kw": [-3.0]}
        )
        bad = pl.concat([res.power.filter(pl.col("session_id") != not_opted["session_id"]), extra])
    elif "window" in detail:
        bad = pl.concat(
            [
                res.power,
                pl.DataFrame({"session_id": [sid], "period": [max(0, s0["arrival_period"] - 1)], "power_kw": [1.0]}),
            ]
        )
        if s0["arrival_period"] == 0:
            bad = pl.concat(
                [res.power, pl.DataFrame({"session_id": [sid], "period": [s0["departure_period"]], "power_kw": [1.0]})]
            )
    elif rule == "soc_band":
        periods = list(range(s0["arrival_period"], s0["departure_period"]))
        bad = pl.concat(
            [
                res.power.filter(pl.col("session_id") != sid),
                pl.DataFrame({"session_id": [sid] * len(periods), "period": periods, "power_kw": [7.2] * len(periods)}),
            ]
        )
        bad = bad.cast({"period": pl.Int64})
    else:
        t = int(res.profile["ev_kw"].arg_max())
        bad = res.power.with_columns(
            pl.when(pl.col("period") == t).then(pl.col("power_kw") * 3).otherwise(pl.col("power_kw")).alias("power_kw")
        )
    bad = bad.cast({"period": pl.Int64})
    gate = _gate(sessions, base, _tamper(res, lambda _: bad))
    assert not gate.passed
    assert any(v.rule == rule and detail in v.detail for v in gate.violations), gate.violations[:5]
    assert gate.fallback == "charge_only"
    fb = gate.published
    assert (fb.power["power_kw"] >= 0).all()
    assert fb.profile["site_kw"].max() <= 45.0 + 1e-6
    assert (
        check_ev(fb.power, sessions, S, period_minutes=MIN, horizon=H, transformer_limit_kw=45.0, baseload_kw=base)
        == []
    )
