"""DC optimal power flow (bus-angle formulation) on MATPOWER-style cases, with LMPs from the duals.

The formulation follows MATPOWER's ``makeBdc``/``dcopf`` exactly, which is why the objectives
match MATPOWER's reference optima to 1e-6 relative:

* branch susceptance ``b = 1 / (x * tap)`` (tap 0 means 1), flow ``P_f = baseMVA * b * (theta_f -
  theta_t - shift)``; out-of-service branches, generators and isolated buses are dropped;
* nodal balance in MW: ``sum(Pg at bus) - sum(flows out) + sum(flows in) = Pd + Gs`` (``Gs``: shunt
  conductance, consumed at 1 p.u. voltage in the DC model), whose dual is the LMP in $/MWh;
* ``|P_f| <= rateA`` where ``rateA > 0`` (0 means unlimited, MATPOWER's convention);
* the angle of every reference (REF) bus fixed at its VA, as MATPOWER does; polynomial (<= quadratic) costs as a QP, piecewise-linear costs (data
  or an approximation of the quadratic with ``pwl_segments`` pieces) as an LP epigraph.

Input: a pandapower net (any of ``pandapower.networks.case*``), a case name like ``"case118"`` or a
PYPOWER/MATPOWER ppc dict.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyomo.environ as pyo

from optimization._inputs import as_series
from optimization.core import CompiledModel, paused_gc
from optimization.errors import InfeasibleError, InputError

# MATPOWER column indices (0-based), as in pypower.idx_*
BUS_I, BUS_TYPE, PD, GS, VA = 0, 1, 2, 4, 8
F_BUS, T_BUS, BR_X, RATE_A, TAP, SHIFT, BR_STATUS = 0, 1, 3, 5, 8, 9, 10
GEN_BUS, GEN_STATUS, PMAX, PMIN = 0, 7, 8, 9
MODEL, NCOST, COST = 0, 3, 4
REF, ISOLATED = 3, 4

#: MATPOWER reference DC-OPF optima ($/h) where PYPOWER rundcopf and pandapower rundcopp agree
REFERENCE_OBJECTIVES = {
    "case9": 5216.026608,
    "case14": 7642.593735,
    "case57": 41006.735304,
    "case118": 125947.872679,
    "case300": 706292.303841,
}


@dataclass
class OPFResult:
    objective: float
    generators: pl.DataFrame
    branches: pl.DataFrame
    buses: pl.DataFrame
    build_seconds: float
    solve_seconds: float
    unserved_mw: float = 0.0


def load_case(case: Any) -> dict[str, Any]:
    """A PYPOWER ppc dict from a pandapower net, a bundled case name, or a ppc dict (returned as is)."""
    if isinstance(case, dict) and "baseMVA" in case:
        for key in ("baseMVA", "bus", "gen", "branch", "gencost"):
            if key not in case:
                raise InputError(f"ppc case lacks {key!r}")
        return case
    import pandapower.networks as pn
    from pandapower.converter.pypower.to_ppc import to_ppc

    if isinstance(case, str):
        factory = getattr(pn, case, None)
        if factory is None or not case.startswith("case"):
            raise InputError(f"unknown pandapower case {case!r} (try case9, case14, case57, case118, case300)")
        case = factory()
    # to_ppc logs a warning per generator voltage set-point outside bus limits (irrelevant to DC)
    pp_log = logging.getLogger("pandapower")
    level = pp_log.level
    pp_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return to_ppc(case, init="flat", mode="opf")
    finally:
        pp_log.setLevel(level)


def build_dcopf(
    ppc: dict[str, Any],
    *,
    cost_model: str = "auto",
    pwl_segments: int = 10,
    line_limits: bool = True,
    allow_load_shedding: bool = False,
    voll_per_mwh: float = 10_000.0,
) -> tuple[pyo.ConcreteModel, dict[str, Any]]:
    """The pyomo DC-OPF model and the arrays needed to report on it."""
    if cost_model not in ("auto", "quadratic", "pwl"):
        raise InputError(f"cost_model must be 'auto', 'quadratic' or 'pwl', got {cost_model!r}")
    base = float(ppc["baseMVA"])
    bus = np.asarray(ppc["bus"], dtype=float)
    gen = np.asarray(ppc["gen"], dtype=float)
    branch = np.asarray(ppc["branch"], dtype=float)
    gencost = np.asarray(ppc["gencost"], dtype=float)
    if gencost.shape[0] < gen.shape[0]:
        raise InputError(f"gencost has {gencost.shape[0]} rows for {gen.shape[0]} generators")
    live_bus = bus[:, BUS_TYPE] != ISOLATED
    bus_ids = bus[live_bus, BUS_I].astype(int)
    pos = {b: k for k, b in enumerate(bus_ids)}
    nb = bus_ids.size
    g_on = (gen[:, GEN_STATUS] > 0) & np.isin(gen[:, GEN_BUS].astype(int), bus_ids)
    gi = np.flatnonzero(g_on)
    br_on = (branch[:, BR_STATUS] > 0) & np.isin(branch[:, F_BUS].astype(int), bus_ids) & np.isin(branch[:, T_BUS].astype(int), bus_ids)
    li = np.flatnonzero(br_on)
    x = branch[li, BR_X]
    if (x == 0).any():
        raise InputError(f"branch {li[np.flatnonzero(x == 0)[0]]} has zero reactance; the DC model needs x != 0")
    tap = np.where(branch[li, TAP] == 0, 1.0, branch[li, TAP])
    b = 1.0 / (x * tap)
    shift = np.deg2rad(branch[li, SHIFT])
    f = np.array([pos[int(v)] for v in branch[li, F_BUS]])
    t = np.array([pos[int(v)] for v in branch[li, T_BUS]])
    demand = bus[live_bus, PD] + bus[live_bus, GS]
    pmax, pmin = gen[gi, PMAX], gen[gi, PMIN]
    gbus = np.array([pos[int(v)] for v in gen[gi, GEN_BUS]])
    # MATPOWER/PYPOWER/pandapower (opf_setup: Val(refs) = Vau(refs) = Va(refs)) fix the angle of
    # EVERY reference bus at its VA, not just the first; without a REF bus the first generator's bus is one
    refs = np.flatnonzero(bus[live_bus, BUS_TYPE] == REF)
    if not refs.size:
        refs = np.array([int(gbus[0])]) if gbus.size else np.array([0])
    va_ref = np.deg2rad(bus[live_bus, VA][refs])
    cap = float(pmax.sum())
    if demand.sum() > cap + 1e-9 and not allow_load_shedding:
        raise InfeasibleError(
            f"power_balance: total demand {demand.sum():.6g} MW is above in-service generation capacity {cap:.6g} MW",
            {"power_balance": float(demand.sum() - cap)},
            hint="pass allow_load_shedding=True to shed load at the value of lost load",
        )
    if (pmin > pmax + 1e-9).any():
        k = int(gi[np.flatnonzero(pmin > pmax)[0]])
        raise InputError(f"generator {k}: Pmin {gen[k, PMIN]} > Pmax {gen[k, PMAX]}")

    rate = branch[li, RATE_A]
    m = pyo.ConcreteModel(name="dcopf")
    with paused_gc():
        m.B = pyo.RangeSet(0, nb - 1)
        m.G = pyo.RangeSet(0, gi.size - 1)
        m.L = pyo.RangeSet(0, li.size - 1)
        m.pg = pyo.Var(m.G, bounds=lambda m, g: (float(pmin[g]), float(pmax[g])), doc="generator output, MW")
        m.va = pyo.Var(m.B, doc="bus voltage angle, rad")
        for r, a in zip(refs, va_ref):
            m.va[int(r)].fix(float(a))
        m.flow = pyo.Var(m.L, doc="branch flow from->to, MW")
        m.flow_def = pyo.Constraint(
            m.L,
            rule=lambda m, k: m.flow[k] == base * b[k] * (m.va[int(f[k])] - m.va[int(t[k])]) - base * b[k] * shift[k],
            doc="DC branch flow",
        )
        if line_limits:
            lim = [k for k in range(li.size) if rate[k] > 0]
            m.line_limit = pyo.Constraint(
                lim, rule=lambda m, k: pyo.inequality(-float(rate[k]), m.flow[k], float(rate[k])), doc="branch thermal limit (rateA)"
            )
        out_of = [[] for _ in range(nb)]
        into = [[] for _ in range(nb)]
        gens_at = [[] for _ in range(nb)]
        for k in range(li.size):
            out_of[f[k]].append(k)
            into[t[k]].append(k)
        for g in range(gi.size):
            gens_at[gbus[g]].append(g)
        if allow_load_shedding:
            m.shed = pyo.Var(m.B, bounds=lambda m, i: (0.0, max(0.0, float(demand[i]))), doc="load shed, MW")
        m.power_balance = pyo.Constraint(
            m.B,
            rule=lambda m, i: sum(m.pg[g] for g in gens_at[i])
            - sum(m.flow[k] for k in out_of[i])
            + sum(m.flow[k] for k in into[i])
            + (m.shed[i] if allow_load_shedding else 0.0)
            == float(demand[i]),
            doc="nodal power balance (dual = LMP)",
        )
        cost_rows = gencost[gi]
        use_pwl = cost_model == "pwl" or (cost_model == "auto" and (cost_rows[:, MODEL] == 1).all())
        terms = []
        if use_pwl:
            segs = []
            for g in range(gi.size):
                segs.append(_pwl_points(cost_rows[g], pmin[g], pmax[g], pwl_segments))
            m.cost = pyo.Var(m.G, doc="generator cost epigraph, $/h")
            idx = [(g, s) for g in range(gi.size) for s in range(len(segs[g][0]) - 1)]
            m.pwl = pyo.Constraint(
                idx,
                rule=lambda m, g, s: m.cost[g] >= segs[g][1][s] + (segs[g][1][s + 1] - segs[g][1][s]) / max(segs[g][0][s + 1] - segs[g][0][s], 1e-12) * (m.pg[g] - segs[g][0][s]),
                doc="piecewise-linear cost",
            )
            terms.append(sum(m.cost[g] for g in m.G))
        else:
            if (cost_rows[:, MODEL] != 2).any():
                raise InputError("quadratic cost_model needs polynomial (model 2) gencost rows for every generator")
            for g in range(gi.size):
                c = _poly(cost_rows[g])
                if c[2] < 0:
                    raise InputError(f"generator {gi[g]}: negative quadratic cost coefficient {c[2]} (non-convex)")
                terms.append(c[2] * m.pg[g] ** 2 + c[1] * m.pg[g] + c[0])
        if allow_load_shedding:
            # a 1e-6 relative tie-break between buses: with uniform VOLL every split of the shed load
            # costs the same, and that dual degeneracy makes HiGHS's QP active-set method cycle
            terms.append(sum(voll_per_mwh * (1.0 + 1e-6 * i) * m.shed[i] for i in m.B))
        m.objective = pyo.Objective(expr=sum(terms), sense=pyo.minimize)
    data = dict(b=b, shift=shift, bus_ids=bus_ids, gi=gi, li=li, f=f, t=t, rate=rate, gbus=gbus, demand=demand, pmin=pmin, pmax=pmax, base=base)
    return m, data


def solve_dcopf(case: Any, **kwargs: Any) -> OPFResult:
    """Solve the DC-OPF of ``case``; returns dispatch, branch flows (with loading) and bus LMPs."""
    t0 = time.perf_counter()
    ppc = load_case(case)
    m, d = build_dcopf(ppc, **kwargs)
    cm = CompiledModel(m)
    build = time.perf_counter() - t0
    sol = cm.solve()
    pg = sol.values(m.pg)
    va = sol.values(m.va)
    flow = sol.values(m.flow)
    lmp = sol.duals(m.power_balance)
    gens = pl.DataFrame({"gen": d["gi"], "bus": d["bus_ids"][d["gbus"]], "p_mw": pg, "pmin_mw": d["pmin"], "pmax_mw": d["pmax"]})
    rate = d["rate"]
    branches = pl.DataFrame(
        {
            "branch": d["li"],
            "from_bus": d["bus_ids"][d["f"]],
            "to_bus": d["bus_ids"][d["t"]],
            "p_mw": flow,
            "rate_a_mw": rate,
            "loading_pct": np.where(rate > 0, 100.0 * np.abs(flow) / np.where(rate > 0, rate, 1.0), np.nan),
        }
    )
    buses = pl.DataFrame({"bus": d["bus_ids"], "va_deg": np.rad2deg(va), "demand_mw": d["demand"], "lmp": lmp})
    unserved = float(sol.values(m.shed).sum()) if kwargs.get("allow_load_shedding") else 0.0
    return OPFResult(sol.objective, gens, branches, buses, build, sol.solve_seconds, unserved)



def scaled_case(ppc: dict[str, Any], factor: float) -> dict[str, Any]:
    """A copy of a ppc dict with every bus demand (Pd) multiplied by ``factor`` (the input is not changed)."""
    out = {k: (np.array(v, dtype=float, copy=True) if isinstance(v, np.ndarray) else v) for k, v in ppc.items()}
    out["bus"][:, 2] *= factor
    return out


@dataclass
class OPFSeries:
    """DC-OPFs of consecutive periods, one long table (see :func:`solve_dcopf_periods`)."""

    table: pl.DataFrame
    objectives: list[float]
    solve_seconds: float
    #: the solution of the period with the largest load scale
    peak: OPFResult


def solve_dcopf_periods(case: Any, period_start: pl.Series, load_scale: Any, **kwargs: Any) -> OPFSeries:
    """One DC-OPF per period on ``case`` with its bus loads times ``load_scale[k]``.

    ``table`` is long, one row per (period, ``kind``, ``element``) with ``period_start`` and
    ``load_scale``: ``system`` (total demand ``p_mw`` and ``cost_per_h``), ``bus`` (``demand_mw``,
    ``lmp``), ``generator`` (``p_mw``, bus as ``from_bus``, ``limit_mw`` = pmax) and ``branch``
    (``p_mw``, ``from_bus``/``to_bus``, ``limit_mw`` = rate A, ``loading_pct``). ``kwargs`` go to
    :func:`build_dcopf`. An infeasible period raises :class:`InfeasibleError` naming the period
    and its scale, with the groups and hint of the underlying error.
    """
    base = load_case(case)
    scales = as_series(load_scale, "load_scale", period_start.len())
    frames, costs, solve_s, peak = [], [], 0.0, None
    for k, (ts, f) in enumerate(zip(period_start.to_list(), scales)):
        try:
            r = solve_dcopf(scaled_case(base, float(f)), **kwargs)
        except InfeasibleError as exc:
            err = InfeasibleError(f"period {ts} (load scale {f:.3f}): {exc}", exc.groups)
            err.hint = exc.hint
            raise err from exc
        solve_s += r.solve_seconds
        costs.append(r.objective)
        common = [pl.lit(ts).cast(pl.Datetime("us", "UTC")).alias("period_start"), pl.lit(float(f)).alias("load_scale")]
        frames += [
            pl.DataFrame({"kind": ["system"], "element": [0], "p_mw": [float(r.buses["demand_mw"].sum())], "cost_per_h": [r.objective]}).with_columns(common),
            r.buses.select(pl.lit("bus").alias("kind"), pl.col("bus").alias("element"), "demand_mw", "lmp").with_columns(common),
            r.generators.select(pl.lit("generator").alias("kind"), pl.col("gen").alias("element"), pl.col("bus").alias("from_bus"),
                                "p_mw", pl.col("pmax_mw").alias("limit_mw")).with_columns(common),
            r.branches.select(pl.lit("branch").alias("kind"), pl.col("branch").alias("element"), "from_bus", "to_bus", "p_mw",
                              pl.col("rate_a_mw").alias("limit_mw"), "loading_pct").with_columns(common),
        ]  # fmt: skip
        if k == int(np.argmax(scales)):
            peak = r
    table = pl.concat([f.with_columns(pl.col(pl.Int32, pl.Int64).cast(pl.Int64)) for f in frames], how="diagonal_relaxed")
    return OPFSeries(table, costs, solve_s, peak)

def _poly(row: np.ndarray) -> tuple[float, float, float]:
    """(c0, c1, c2) from a MATPOWER polynomial gencost row (highest order first)."""
    n = int(row[NCOST])
    coefs = row[COST : COST + n][::-1]  # now c0, c1, c2, ...
    if n > 3 and np.any(coefs[3:] != 0):
        raise InputError("polynomial costs above quadratic are not supported by the DC-OPF QP")
    c = np.zeros(3)
    c[: min(n, 3)] = coefs[:3]
    return float(c[0]), float(c[1]), float(c[2])


def _pwl_points(row: np.ndarray, pmin: float, pmax: float, segments: int) -> tuple[list[float], list[float]]:
    if row[MODEL] == 1:
        n = int(row[NCOST])
        pts = row[COST : COST + 2 * n]
        return list(pts[0::2]), list(pts[1::2])
    c0, c1, c2 = _poly(row)
    if segments < 1:
        raise InputError(f"pwl_segments must be >= 1, got {segments}")
    ps = np.linspace(pmin, pmax if pmax > pmin else pmin + 1e-6, segments + 1)
    return list(ps), list(c0 + c1 * ps + c2 * ps**2)
