"""Battery scheduling: arbitrage, peak shaving, PV self-consumption, carbon, frequency regulation.

One LP (or MILP) covers all use cases; which terms exist depends on the inputs:

* ``price`` only: pure energy arbitrage against a wholesale price (grid flow = discharge - charge);
* ``load_kw`` / ``pv_kw`` given: a site with a meter; grid import/export variables, a separate
  ``export_price`` (feed-in tariff, default = price) makes PV self-consumption valuable, and a
  ``demand_charge_per_kw`` adds peak shaving on the horizon's highest import;
* ``carbon_kg_per_mwh`` with ``carbon_price_per_t``: the weighted cost + carbon objective;
* ``reg_price``: symmetric frequency-regulation capacity co-optimised with arbitrage (power headroom
  both ways and enough stored energy to deliver it for ``reserve_duration_h``);
* ``milp=True``: one binary per period forbids simultaneous charge and discharge. With losses and a
  positive price the LP already avoids it, but with negative prices it would happily burn energy
  in a charge+discharge loop, so the MILP is the honest model there.

Units: power kW, energy kWh, prices $/MWh (market convention), demand charge $/kW, degradation
$/MWh of throughput (charge + discharge), carbon kg/MWh and $/t, regulation price $/MW per hour.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl
import pyomo.environ as pyo

from optimization._inputs import as_series, period_starts, require_positive
from optimization.core import CompiledModel, _members, linear_sum, paused_gc, templated_constraints
from optimization.errors import InfeasibleError, InputError


@dataclass(frozen=True)
class BatterySpec:
    """Physical and economic battery parameters."""

    power_kw: float
    energy_kwh: float
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95
    soc_min_frac: float = 0.0
    soc_max_frac: float = 1.0
    soc_initial_frac: float = 0.5
    #: end-of-horizon SOC lower bound as a fraction; ``None`` = the initial SOC (no free energy)
    soc_terminal_frac: float | None = None
    degradation_cost_per_mwh: float = 0.0
    #: hours a regulation award must be sustainable from stored energy
    reserve_duration_h: float = 0.25

    def validate(self) -> None:
        require_positive(self.power_kw, "power_kw")
        require_positive(self.energy_kwh, "energy_kwh")
        for name in ("charge_efficiency", "discharge_efficiency"):
            v = getattr(self, name)
            if not 0 < v <= 1:
                raise InputError(f"{name} must be in (0, 1], got {v}")
        if not 0 <= self.soc_min_frac <= self.soc_max_frac <= 1:
            raise InputError(
                f"need 0 <= soc_min_frac <= soc_max_frac <= 1, got {self.soc_min_frac}, {self.soc_max_frac}"
            )
        for name in ("soc_initial_frac", "soc_terminal_frac"):
            v = getattr(self, name)
            if v is not None and not self.soc_min_frac - 1e-12 <= v <= self.soc_max_frac + 1e-12:
                raise InputError(f"{name}={v} outside the SOC window [{self.soc_min_frac}, {self.soc_max_frac}]")
        require_positive(self.degradation_cost_per_mwh, "degradation_cost_per_mwh", allow_zero=True)
        require_positive(self.reserve_duration_h, "reserve_duration_h", allow_zero=True)


@dataclass
class BatteryResult:
    """Schedule (one row per period) plus the money/carbon breakdown of the horizon."""

    schedule: pl.DataFrame
    breakdown: dict[str, float]
    objective: float
    build_seconds: float
    solve_seconds: float
    model: CompiledModel | None = field(default=None, repr=False)
    #: coerced inputs and options of the run (to re-evaluate another schedule on them: :func:`with_schedule`)
    inputs: dict[str, Any] = field(default_factory=dict, repr=False)


def build_battery_model(
    spec: BatterySpec,
    price: Any,
    *,
    period_minutes: float = 15.0,
    load_kw: Any = None,
    pv_kw: Any = None,
    export_price: Any = None,
    carbon_kg_per_mwh: Any = None,
    carbon_price_per_t: float = 0.0,
    demand_charge_per_kw: float = 0.0,
    reg_price: Any = None,
    grid_import_limit_kw: float | None = None,
    grid_export_limit_kw: float | None = None,
    milp: bool = False,
    allow_unmet: bool = False,
    unmet_penalty_per_mwh: float = 10_000.0,
    power_cap_kw: Any = None,
    ramp_kw_per_period: float | None = None,
    soc_floor_kwh: Any = None,
    initial_power_kw: float = 0.0,
) -> tuple[pyo.ConcreteModel, dict[str, Any]]:
    """Build the pyomo model; returns it with the coerced input arrays (for the breakdown).

    Safety constraints (values from :func:`optimization.safety.battery_model_limits`): ``power_cap_kw``
    per period (temperature derating, <= the rating), ``ramp_kw_per_period`` (|net(t) - net(t-1)|, from
    ``initial_power_kw``), ``soc_floor_kwh`` per period (soc_min + reserve).
    """
    spec.validate()
    p = as_series(price, "price")
    n = p.size
    if n == 0:
        raise InputError("price: empty horizon")
    dt = require_positive(period_minutes, "period_minutes") / 60.0
    load = as_series(load_kw, "load_kw", n, allow_none=True, min_value=0.0)
    pv = as_series(pv_kw, "pv_kw", n, allow_none=True, min_value=0.0)
    site = load is not None or pv is not None
    if demand_charge_per_kw and not site:
        raise InputError("demand_charge_per_kw needs load_kw (peak shaving acts on the site's grid import)")
    xp = as_series(export_price, "export_price", n, allow_none=True)
    ci = as_series(carbon_kg_per_mwh, "carbon_kg_per_mwh", n, allow_none=True, min_value=0.0)
    reg = as_series(reg_price, "reg_price", n, allow_none=True, min_value=0.0)
    P, E = spec.power_kw, spec.energy_kwh
    ec, ed = spec.charge_efficiency, spec.discharge_efficiency
    e_min, e_max = spec.soc_min_frac * E, spec.soc_max_frac * E
    e0 = spec.soc_initial_frac * E
    e_end = (spec.soc_terminal_frac if spec.soc_terminal_frac is not None else spec.soc_initial_frac) * E
    cap = (
        np.full(n, P)
        if power_cap_kw is None
        else np.minimum(P, as_series(power_cap_kw, "power_cap_kw", n, min_value=0.0))
    )
    floor = (
        np.full(n, e_min)
        if soc_floor_kwh is None
        else np.clip(as_series(soc_floor_kwh, "soc_floor_kwh", n), e_min, e_max)
    )
    if ramp_kw_per_period is not None:
        require_positive(ramp_kw_per_period, "ramp_kw_per_period")
    reachable = e0 + ec * dt * P * n
    if e_end > min(reachable, e_max) + 1e-9 and not allow_unmet:
        raise InfeasibleError(
            f"terminal_soc: {e_end:.6g} kWh cannot be reached from {e0:.6g} kWh in {n} periods at "
            f"{P:g} kW (at most {min(reachable, e_max):.6g} kWh)",
            {"terminal_soc": e_end - min(reachable, e_max)},
            hint="pass allow_unmet=True to report the shortfall instead",
        )
    net = None
    if site:
        net = (load if load is not None else 0.0) - (pv if pv is not None else 0.0)
        net = np.asarray(net, dtype=float) * np.ones(n)
        if grid_import_limit_kw is not None and not allow_unmet:
            need = net - P - grid_import_limit_kw
            if (need > 1e-9).any():
                k = int(np.argmax(need))
                raise InfeasibleError(
                    f"grid_import_limit: net load {net[k]:.6g} kW at period {k} exceeds the import limit "
                    f"{grid_import_limit_kw:g} kW plus battery power {P:g} kW",
                    {"grid_import_limit": float(need[need > 0].sum() * dt)},
                    hint="pass allow_unmet=True to serve what is possible and report unserved energy",
                )

    m = pyo.ConcreteModel(name="battery")
    with paused_gc():
        m.T = pyo.RangeSet(0, n - 1)
        m.T1 = pyo.RangeSet(1, n - 1)
        m.cap = pyo.Param(m.T, initialize=cap.tolist(), doc="power cap (derated rating), kW")
        m.floor = pyo.Param(m.T, initialize=floor.tolist(), doc="lowest SOC (soc_min + reserve), kWh")
        m.charge = pyo.Var(m.T, bounds=lambda m, t: (0.0, float(cap[t])), doc="charging power, kW")
        m.discharge = pyo.Var(m.T, bounds=lambda m, t: (0.0, float(cap[t])), doc="discharging power, kW")
        m.soc = pyo.Var(
            m.T, bounds=lambda m, t: (float(floor[t]), e_max), doc="stored energy at the end of the period, kWh"
        )
        if allow_unmet:
            m.soc_shortfall = pyo.Var(bounds=(0.0, None), doc="terminal SOC not reached, kWh")
            m.terminal = pyo.Constraint(expr=m.soc[n - 1] + m.soc_shortfall >= e_end, doc="terminal SOC")
        else:
            m.soc[n - 1].setlb(max(float(floor[n - 1]), e_end))
        # terms written charge, discharge, soc: the order pyomo meets the variables in is the
        # column order, so the compiled matrix is already in declaration order (no permutation)
        m.soc_balance_0 = pyo.Constraint(
            expr=(-ec * dt) * m.charge[0] + (dt / ed) * m.discharge[0] + m.soc[0] == e0, doc="initial state of charge"
        )
        with templated_constraints():
            m.soc_balance = pyo.Constraint(
                m.T1,
                rule=lambda m, t: (
                    (-ec * dt) * m.charge[t] + (dt / ed) * m.discharge[t] + m.soc[t] - m.soc[t - 1] == 0.0
                ),
                doc="state-of-charge balance",
            )
        if ramp_kw_per_period is not None:
            R, p0 = float(ramp_kw_per_period), float(initial_power_kw)
            m.ramp_0 = pyo.Constraint(
                expr=(p0 - R, m.discharge[0] - m.charge[0], p0 + R), doc="ramp limit from the initial power"
            )
            with templated_constraints():
                m.ramp = pyo.Constraint(
                    m.T1,
                    rule=lambda m, t: (-R, m.discharge[t] - m.charge[t] - m.discharge[t - 1] + m.charge[t - 1], R),
                    doc="ramp limit",
                )
        coefs: list[np.ndarray] = []
        vars_: list[Any] = []
        to_mwh = dt / 1000.0
        deg = spec.degradation_cost_per_mwh * to_mwh
        carbon_cost = 0.0 if ci is None else ci * carbon_price_per_t / 1000.0  # $/MWh
        if site:
            m.net_load = pyo.Param(m.T, initialize=net.tolist(), doc="load - PV, kW")
            m.grid_import = pyo.Var(m.T, bounds=(0.0, grid_import_limit_kw), doc="kW")
            m.grid_export = pyo.Var(m.T, bounds=(0.0, grid_export_limit_kw), doc="kW")
            if allow_unmet:
                m.unserved = pyo.Var(m.T, bounds=(0.0, None), doc="load not served, kW")
            with templated_constraints():
                if allow_unmet:
                    m.site_balance = pyo.Constraint(
                        m.T,
                        rule=lambda m, t: (
                            m.grid_import[t] - m.grid_export[t] + m.unserved[t] + m.discharge[t] - m.charge[t]
                            == m.net_load[t]
                        ),
                        doc="site power balance",
                    )
                else:
                    m.site_balance = pyo.Constraint(
                        m.T,
                        rule=lambda m, t: (
                            m.grid_import[t] - m.grid_export[t] + m.discharge[t] - m.charge[t] == m.net_load[t]
                        ),
                        doc="site power balance",
                    )
            buy = (p + carbon_cost) * to_mwh
            sell = -(p if xp is None else xp) * to_mwh
            coefs += [np.full(n, deg), np.full(n, deg), buy, sell]
            vars_ += [m.charge, m.discharge, m.grid_import, m.grid_export]
            if allow_unmet:
                coefs.append(np.full(n, unmet_penalty_per_mwh * to_mwh))
                vars_.append(m.unserved)
            if demand_charge_per_kw:
                m.peak = pyo.Var(bounds=(0.0, None), doc="highest grid import, kW")
                with templated_constraints():
                    m.peak_def = pyo.Constraint(m.T, rule=lambda m, t: m.grid_import[t] <= m.peak, doc="peak import")
        else:
            coefs += [(p + carbon_cost) * to_mwh + deg, -(p + carbon_cost) * to_mwh + deg]
            vars_ += [m.charge, m.discharge]
        if reg is not None:
            D = spec.reserve_duration_h
            m.reserve = pyo.Var(m.T, bounds=(0.0, P), doc="regulation capacity offered, kW")
            with templated_constraints():
                m.reserve_up = pyo.Constraint(
                    m.T,
                    rule=lambda m, t: m.discharge[t] - m.charge[t] + m.reserve[t] <= m.cap[t],
                    doc="power headroom up",
                )
                m.reserve_down = pyo.Constraint(
                    m.T,
                    rule=lambda m, t: m.charge[t] - m.discharge[t] + m.reserve[t] <= m.cap[t],
                    doc="power headroom down",
                )
                m.reserve_energy_up = pyo.Constraint(
                    m.T,
                    rule=lambda m, t: m.soc[t] - (D / ed) * m.reserve[t] >= m.floor[t],
                    doc="energy to deliver up-regulation",
                )
                m.reserve_energy_down = pyo.Constraint(
                    m.T,
                    rule=lambda m, t: m.soc[t] + (D * ec) * m.reserve[t] <= e_max,
                    doc="room to absorb down-regulation",
                )
            coefs.append(-reg * to_mwh)
            vars_.append(m.reserve)
        if milp:
            m.charging = pyo.Var(m.T, within=pyo.Binary, doc="1 = charging mode, 0 = discharging mode")
            with templated_constraints():
                m.mode_charge = pyo.Constraint(
                    m.T, rule=lambda m, t: m.charge[t] <= P * m.charging[t], doc="charge only in charging mode"
                )
                m.mode_discharge = pyo.Constraint(
                    m.T,
                    rule=lambda m, t: m.discharge[t] <= P - P * m.charging[t],
                    doc="discharge only in discharging mode",
                )
        all_coefs = np.concatenate(coefs).tolist()
        all_vars = [v for comp in vars_ for v in _members(comp).values()]
        extra_c, extra_v = [], []
        if site and demand_charge_per_kw:
            extra_c.append(float(demand_charge_per_kw))
            extra_v.append(m.peak)
        if allow_unmet:
            extra_c.append(unmet_penalty_per_mwh / 1000.0)
            extra_v.append(m.soc_shortfall)
        m.objective = pyo.Objective(expr=linear_sum(all_coefs + extra_c, all_vars + extra_v), sense=pyo.minimize)
    data = dict(
        n=n,
        dt=dt,
        price=p,
        load=load,
        pv=pv,
        net=net,
        export_price=xp,
        ci=ci,
        reg=reg,
        site=site,
        e0=e0,
        e_end=e_end,
        carbon_price_per_t=float(carbon_price_per_t or 0.0),
        demand_charge_per_kw=float(demand_charge_per_kw or 0.0),
    )
    return m, data


def optimize_battery(
    spec: BatterySpec,
    price: Any,
    *,
    start: datetime | None = None,
    period_minutes: float = 15.0,
    mip_rel_gap: float = 1e-4,
    time_limit: float | None = None,
    **kwargs: Any,
) -> BatteryResult:
    """Optimal battery schedule for the horizon of ``price``; see :func:`build_battery_model` for options.

    Returns per period: charge/discharge/net kW, SOC kWh, grid import/export (site mode), reserve,
    and a breakdown of energy cost vs the no-battery baseline, demand charge, degradation, carbon,
    regulation revenue and unmet amounts (with ``allow_unmet=True``).
    """
    t0 = time.perf_counter()
    m, d = build_battery_model(spec, price, period_minutes=period_minutes, **kwargs)
    cm = CompiledModel(m)
    build = time.perf_counter() - t0
    sol = cm.solve(mip_rel_gap=mip_rel_gap, time_limit=time_limit)
    ch, dis, soc = sol.values(m.charge), sol.values(m.discharge), sol.values(m.soc)
    site = {}
    if d["site"]:
        site = dict(
            imp=sol.values(m.grid_import),
            exp=sol.values(m.grid_export),
            unserved=sol.values(m.unserved) if kwargs.get("allow_unmet") else np.zeros(d["n"]),
        )
    reserve = sol.values(m.reserve) if d["reg"] is not None else None
    shortfall = float(sol.values(m.soc_shortfall)[0]) if kwargs.get("allow_unmet") else None
    d.update(start=start, period_minutes=period_minutes)
    schedule, bd = _assemble(spec, d, ch, dis, soc, site, reserve, shortfall, sol.objective)
    return BatteryResult(schedule, bd, sol.objective, build, sol.solve_seconds, cm, d)


def with_schedule(result: BatteryResult, spec: BatterySpec, charge_kw: Any, discharge_kw: Any) -> BatteryResult:
    """The same run's inputs with another charge/discharge schedule (e.g. the safety gate's fallback).

    SOC follows from the powers, the site's grid exchange from the net load (no unserved load, no
    regulation offered); the breakdown is recomputed the same way, and ``objective`` is its total cost.
    """
    d = result.inputs
    n, dt = d["n"], d["dt"]
    ch, dis = as_series(charge_kw, "charge_kw", n), as_series(discharge_kw, "discharge_kw", n)
    soc = d["e0"] + np.cumsum(spec.charge_efficiency * dt * ch - dt / spec.discharge_efficiency * dis)
    site = {}
    if d["site"]:
        grid = d["net"] + ch - dis
        site = dict(imp=np.clip(grid, 0, None), exp=np.clip(-grid, 0, None), unserved=np.zeros(n))
    schedule, bd = _assemble(
        spec, d, ch, dis, soc, site, np.zeros(n) if d["reg"] is not None else None, None, float("nan")
    )
    bd["objective"] = bd["total_cost"] + d["carbon_price_per_t"] / 1000.0 * bd.get("carbon_kg", 0.0)
    return BatteryResult(schedule, bd, bd["objective"], result.build_seconds, result.solve_seconds, None, d)


def _assemble(
    spec: BatterySpec,
    d: dict[str, Any],
    ch: np.ndarray,
    dis: np.ndarray,
    soc: np.ndarray,
    site: dict[str, np.ndarray],
    reserve: np.ndarray | None,
    shortfall: float | None,
    objective: float,
) -> tuple[pl.DataFrame, dict[str, float]]:
    """Schedule frame and money/carbon breakdown of one schedule on the run's inputs ``d``."""
    n, dt = d["n"], d["dt"]
    cols: dict[str, Any] = {
        "price": d["price"],
        "charge_kw": ch,
        "discharge_kw": dis,
        "net_kw": dis - ch,
        "soc_kwh": soc,
        "soc_frac": soc / spec.energy_kwh,
    }
    to_mwh = dt / 1000.0
    p = d["price"]
    bd: dict[str, float] = {}
    ci = d["ci"]
    if d["site"]:
        imp, exp, unserved = site["imp"], site["exp"], site["unserved"]
        cols.update(grid_import_kw=imp, grid_export_kw=exp, net_load_kw=d["net"], unserved_kw=unserved)
        xp = p if d["export_price"] is None else d["export_price"]
        base_imp, base_exp = np.clip(d["net"], 0, None), np.clip(-d["net"], 0, None)
        bd["energy_cost"] = float(((imp * p - exp * xp) * to_mwh).sum())
        bd["baseline_energy_cost"] = float(((base_imp * p - base_exp * xp) * to_mwh).sum())
        dc = d["demand_charge_per_kw"]
        bd["demand_charge"] = dc * float(imp.max())
        bd["baseline_demand_charge"] = dc * float(base_imp.max())
        bd["peak_import_kw"] = float(imp.max())
        bd["baseline_peak_import_kw"] = float(base_imp.max())
        bd["self_consumption_frac"] = _self_consumption(d["pv"], exp, n)
        bd["unserved_kwh"] = float(unserved.sum() * dt)
        if ci is not None:
            bd["carbon_kg"] = float((imp * ci * to_mwh).sum())
            bd["baseline_carbon_kg"] = float((base_imp * ci * to_mwh).sum())
    else:
        bd["energy_cost"] = float(((ch - dis) * p * to_mwh).sum())
        bd["baseline_energy_cost"] = 0.0
        if ci is not None:
            bd["carbon_kg"] = float(((ch - dis) * ci * to_mwh).sum())
            bd["baseline_carbon_kg"] = 0.0
    throughput = float((ch + dis).sum() * to_mwh)
    bd["throughput_mwh"] = throughput
    bd["equivalent_full_cycles"] = float(dis.sum() * dt / spec.energy_kwh)
    bd["degradation_cost"] = spec.degradation_cost_per_mwh * throughput
    if reserve is not None:
        cols["reserve_kw"] = reserve
        bd["reserve_revenue"] = float((reserve * d["reg"] * to_mwh).sum())
    else:
        bd["reserve_revenue"] = 0.0
    if shortfall is not None:
        bd["terminal_soc_shortfall_kwh"] = shortfall
    cp = d["carbon_price_per_t"]
    carbon_money = cp / 1000.0 * (bd.get("carbon_kg", 0.0) - bd.get("baseline_carbon_kg", 0.0))
    bd["total_cost"] = bd["energy_cost"] + bd.get("demand_charge", 0.0) + bd["degradation_cost"] - bd["reserve_revenue"]
    bd["baseline_total_cost"] = bd["baseline_energy_cost"] + bd.get("baseline_demand_charge", 0.0)
    bd["savings"] = bd["baseline_total_cost"] - bd["total_cost"] - carbon_money
    bd["objective"] = objective
    ps = period_starts(d["start"], n, d["period_minutes"])
    schedule = pl.DataFrame({ps.name: ps, **cols})
    return schedule, bd


#: breakdown entries of :func:`daily_summary` (site mode, with a carbon intensity)
DAILY_BREAKDOWN = (
    "energy_cost", "baseline_energy_cost", "demand_charge", "baseline_demand_charge", "degradation_cost", "carbon_kg",
    "baseline_carbon_kg", "savings", "peak_import_kw", "baseline_peak_import_kw", "equivalent_full_cycles", "reserve_revenue",
)  # fmt: skip


def site_schedule_table(result: BatteryResult, load_kw: Any, pv_kw: Any, carbon_kg_per_mwh: Any) -> pl.DataFrame:
    """The per-period schedule of a site-mode :func:`optimize_battery` run (given ``start``) with its inputs alongside.

    Columns: ``period_start``, ``price_per_mwh``, ``carbon_kg_per_mwh``, ``load_kw``, ``pv_kw``,
    ``charge_kw``, ``discharge_kw``, ``soc_kwh``, ``soc_frac``, ``grid_import_kw``,
    ``grid_export_kw``, ``baseline_grid_kw`` (the grid exchange without the battery, load - PV) and
    ``reserve_kw`` (regulation capacity, 0 if none was offered).
    """
    n = result.schedule.height
    sch = (
        result.schedule
        if "reserve_kw" in result.schedule.columns
        else result.schedule.with_columns(pl.lit(0.0).alias("reserve_kw"))
    )
    return sch.select(
        "period_start", pl.col("price").alias("price_per_mwh"), pl.Series("carbon_kg_per_mwh", as_series(carbon_kg_per_mwh, "carbon_kg_per_mwh", n)),
        pl.Series("load_kw", as_series(load_kw, "load_kw", n)), pl.Series("pv_kw", as_series(pv_kw, "pv_kw", n)),
        "charge_kw", "discharge_kw", "soc_kwh", "soc_frac", "grid_import_kw", "grid_export_kw", pl.col("net_load_kw").alias("baseline_grid_kw"),
        "reserve_kw",
    )  # fmt: skip


def daily_summary(result: BatteryResult, spec: BatterySpec) -> dict[str, float]:
    """Size, :data:`DAILY_BREAKDOWN` entries, objective and solve time of a site-mode run, as one flat row."""
    return {
        "power_kw": spec.power_kw, "energy_kwh": spec.energy_kwh, **{k: result.breakdown[k] for k in DAILY_BREAKDOWN},
        "objective": result.objective, "solve_seconds": result.solve_seconds,
    }  # fmt: skip


def _self_consumption(pv: np.ndarray | None, export: np.ndarray, n: int) -> float:
    if pv is None or pv.sum() <= 0:
        return float("nan")
    return float(1.0 - min(export.sum(), pv.sum()) / pv.sum())


# --------------------------------------------------------------------------------------------
# 10-year projection
# --------------------------------------------------------------------------------------------


def project_roi(
    annual_savings: float,
    capex: float,
    *,
    annual_cycles: float,
    years: int = 10,
    discount_rate: float = 0.07,
    opex_per_year: float = 0.0,
    calendar_fade_per_year: float = 0.01,
    cycle_life: float = 6000.0,
    end_of_life_capacity: float = 0.8,
    replacement_cost: float | None = None,
) -> tuple[pl.DataFrame, dict[str, float]]:
    """Capacity fade, cell replacement, cash flows, NPV, IRR and payback over ``years``.

    ``replacement_year`` is the first year whose end-of-year capacity falls below
    ``end_of_life_capacity``; with ``replacement_cost`` given, the cells are replaced then (that
    cost is paid in that year, capacity is back to 1 for the next), else the fade continues.

    Fade model (a linear first-order model, as in most planning tools): each year the usable
    capacity drops by ``calendar_fade_per_year`` plus the cycling share
    ``annual_cycles * (1 - end_of_life_capacity) / cycle_life``. Yearly savings are assumed
    proportional to usable capacity, a fair first-order view for arbitrage/peak value that is
    limited by energy. IRR is the root of NPV(rate) = 0 (``None``/NaN if cash flows never turn positive).
    """
    if capex <= 0:
        raise InputError(f"capex must be > 0, got {capex}")
    if years < 1:
        raise InputError(f"years must be >= 1, got {years}")
    fade = calendar_fade_per_year + annual_cycles * (1.0 - end_of_life_capacity) / cycle_life
    rows = []
    cap = 1.0
    cum = -capex
    payback = float("nan")
    replacement_year = float("nan")
    for y in range(1, years + 1):
        cap_start = cap
        cap = max(0.0, cap - fade)
        mean_cap = 0.5 * (cap_start + cap)
        cash = annual_savings * mean_cap - opex_per_year
        replaced = cap < end_of_life_capacity and replacement_cost is not None
        if cap < end_of_life_capacity and np.isnan(replacement_year):
            replacement_year = float(y)
        if replaced:
            cash -= replacement_cost
        prev = cum
        cum += cash
        if np.isnan(payback) and cum >= 0 > prev and cash > 0:
            payback = (y - 1) + (-prev) / cash
        rows.append(
            {
                "year": y,
                "capacity_frac": cap,
                "replaced": replaced,
                "savings": annual_savings * mean_cap,
                "cash_flow": cash,
                "discounted_cash_flow": cash / (1 + discount_rate) ** y,
                "cumulative_cash_flow": cum,
            }
        )
        if replaced:
            cap = 1.0
    df = pl.DataFrame(rows)
    flows = np.concatenate([[-capex], df["cash_flow"].to_numpy()])

    def npv(rate: float) -> float:
        return float(np.sum(flows / (1 + rate) ** np.arange(flows.size)))

    # scipy on first use: with pyomo loaded, importing scipy also imports scipy.stats (pyomo's deferred-import
    # hook), ~1 CPU s that every process importing the Dagster definitions would pay
    from scipy.optimize import brentq

    try:
        irr = brentq(npv, -0.99, 10.0) if npv(-0.99) * npv(10.0) < 0 else float("nan")
    except ValueError:
        irr = float("nan")
    summary = {
        "npv": npv(discount_rate),
        "irr": irr,
        "payback_years": payback,
        "final_capacity_frac": cap,
        "annual_fade": fade,
        "replacement_year": replacement_year,
    }
    return df, summary


def battery_economics(daily: pl.DataFrame, econ: Any) -> tuple[pl.DataFrame, dict[str, float]]:
    """:func:`project_roi` of a battery from the daily results its schedules produced.

    ``daily``: rows of ``gold_battery_daily`` of one site (power_kw, energy_kwh, savings,
    equivalent_full_cycles), the last ``econ.lookback_days`` days; their mean daily savings and
    cycles x 365 are the annual figures (the days produced are the evidence; no other extrapolation).
    ``econ``: :class:`optimization.settings.EconomicsSettings` (capex per kWh and kW, O&M, discount
    rate, lifetime, fade, cycle life, end of life, replacement cost). Uses the latest day's size.
    """
    need = ("power_kw", "energy_kwh", "savings", "equivalent_full_cycles")
    missing = [c for c in need if c not in daily.columns]
    if missing:
        raise InputError(f"battery daily rows lack column(s) {missing}")
    if daily.height == 0:
        raise InputError("battery economics: no daily battery results to project from")
    last = daily.row(daily.height - 1, named=True)
    capex = last["energy_kwh"] * econ.capex_per_kwh + last["power_kw"] * econ.capex_per_kw
    annual_savings = float(daily["savings"].mean()) * 365.0
    annual_cycles = float(daily["equivalent_full_cycles"].mean()) * 365.0
    df, summary = project_roi(
        annual_savings, capex, annual_cycles=annual_cycles, years=econ.years, discount_rate=econ.discount_rate,
        opex_per_year=econ.opex_frac_per_year * capex, calendar_fade_per_year=econ.calendar_fade_per_year, cycle_life=econ.cycle_life,
        end_of_life_capacity=econ.end_of_life_capacity, replacement_cost=econ.replacement_cost_frac * capex,
    )  # fmt: skip
    summary.update(
        capex=capex, annual_savings=annual_savings, annual_cycles=annual_cycles, days_used=float(daily.height)
    )
    return df, summary
