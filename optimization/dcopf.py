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

Input: a pandapower net (any of ``pandapower.networks``), a network name like ``"case118"`` or
``"GBnetwork"``, a MATPOWER ``.m`` case file, or a PYPOWER/MATPOWER ppc dict.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import highspy
import numpy as np
import polars as pl
import pyomo.environ as pyo

from optimization._inputs import as_series
from optimization.core import INF, CompiledModel, paused_gc
from optimization.errors import InfeasibleError, InputError
from optimization.matpower import read_matpower_case

# MATPOWER column indices (0-based), as in pypower.idx_*
BUS_I, BUS_TYPE, PD, GS, VA = 0, 1, 2, 4, 8
F_BUS, T_BUS, BR_X, RATE_A, TAP, SHIFT, BR_STATUS = 0, 1, 3, 5, 8, 9, 10
GEN_BUS, GEN_STATUS, PMAX, PMIN = 0, 7, 8, 9
MODEL, NCOST, COST = 0, 3, 4
REF, ISOLATED = 3, 4

COST_MODELS = ("auto", "quadratic", "pwl", "cuts")
#: relative gap at which the tangent-cut (LP) fallback stops refining the cost
CUT_REL_GAP = 1e-9
#: power balance / flow definition / limits / bounds: largest violation (MW) a solution may keep,
#: relative to the case's total demand (absolute floor 1e-6 MW)
CHECK_REL_TOL = 1e-8
#: angle precision allowed in the flow-vs-angle check (radians)
ANGLE_TOL_RAD = 1e-10

#: reference DC-OPF optima ($/h) of pandapower's bundled networks. case9-case118: MATPOWER's
#: published optima, where PYPOWER's rundcopf and pandapower's rundcopp agree. case300: NOT
#: MATPOWER's figure but pandapower's rundcopp on pandapower's *converted* net (its conversion
#: differs slightly); MATPOWER's own case300.m gives MATPOWER_CASE300_M_OBJECTIVE (2.9e-8 apart).
REFERENCE_OBJECTIVES = {
    "case9": 5216.026608,
    "case14": 7642.593735,
    "case57": 41006.735304,
    "case118": 125947.872679,
    "case300": 706292.303841,
}
#: where each REFERENCE_OBJECTIVES figure comes from
REFERENCE_SOURCES = {
    "case9": "MATPOWER case9.m (= pandapower rundcopp)",
    "case14": "MATPOWER case14.m (= pandapower rundcopp)",
    "case57": "MATPOWER case57.m (= pandapower rundcopp)",
    "case118": "MATPOWER case118.m (= pandapower rundcopp)",
    "case300": "pandapower rundcopp on pandapower's converted case300 (MATPOWER case300.m: 706292.324247)",
}
#: MATPOWER's DC-OPF optimum of its own case300.m ($/h)
MATPOWER_CASE300_M_OBJECTIVE = 706292.324247


@dataclass
class OPFResult:
    objective: float
    generators: pl.DataFrame
    branches: pl.DataFrame
    buses: pl.DataFrame
    build_seconds: float
    solve_seconds: float
    unserved_mw: float = 0.0
    #: the solver path whose solution passed :func:`check_dcopf_solution`
    method: str = ""
    #: its largest constraint violation, MW
    max_violation_mw: float = 0.0
    #: paths tried before it, each with why it was rejected
    failed_paths: list[str] = field(default_factory=list)
    #: t CO2 per hour of the dispatch (NaN when emission factors were not given)
    emissions_t_per_h: float = float("nan")
    #: renewable output / total output
    renewable_share: float = 0.0
    #: the arrays of :func:`build_dcopf` the result was built from (branch positions, susceptances, ...)
    data: dict[str, Any] = field(default_factory=dict, repr=False)


def load_case(case: Any) -> dict[str, Any]:
    """A PYPOWER ppc dict from a pandapower net, a bundled network name, a MATPOWER ``.m`` file
    (path or ``str`` ending in ``.m``, see :mod:`optimization.matpower`) or a ppc dict (returned as is)."""
    if isinstance(case, Path) or (isinstance(case, str) and case.endswith(".m")):
        case = read_matpower_case(case)
        if "gencost" not in case:
            raise InputError(f"MATPOWER case {case['name']!r} has no mpc.gencost: an OPF needs generator costs")
    if isinstance(case, dict) and "baseMVA" in case:
        for key in ("baseMVA", "bus", "gen", "branch", "gencost"):
            if key not in case:
                raise InputError(f"ppc case lacks {key!r}")
        return case
    import pandapower.networks as pn
    from pandapower.converter.pypower.to_ppc import to_ppc

    if isinstance(case, str):
        factory = getattr(pn, case, None)
        if not case.isidentifier() or case.startswith("_") or not callable(factory):
            raise InputError(
                f"unknown pandapower network {case!r} (try case9, case14, case57, case118, case300, GBnetwork, iceland)"
            )
        case = factory()
    # to_ppc logs a warning per generator voltage set-point outside bus limits (irrelevant to DC)
    pp_log = logging.getLogger("pandapower")
    level = pp_log.level
    pp_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ppc = to_ppc(case, init="flat", mode="opf")
            except KeyError as exc:
                if "OPF parameters" not in str(exc):
                    raise
                # to_ppc validates AC-OPF inputs (generator P limits, voltage limits) that rundcopp does not
                # ask for: convert the way rundcopp does (an unlimited generator gets pandapower's +-1e9 MW)
                import sys
                from unittest import mock

                with mock.patch.object(
                    sys.modules["pandapower.converter.pypower.to_ppc"],
                    "_check_necessary_opf_parameters",
                    lambda *a: None,
                ):
                    ppc = to_ppc(case, init="flat", mode="opf")
    finally:
        pp_log.setLevel(level)
    return unrated_as_unlimited(case, ppc)


#: pandapower's MATPOWER converter stands in for a missing rating (rateA = 0, "unlimited" in
#: MATPOWER) with these values: transformers get sn_mva = 99.999 in the bundled PEGASE/RTE nets
#: (99999 in today's converter), lines max_i_ka = 99999
_PP_UNRATED_TRAFO_MVA = (99.999, 99999.0)
_PP_UNRATED_LINE_KA = 99999.0


def unrated_as_unlimited(net: Any, ppc: dict[str, Any]) -> dict[str, Any]:
    """Set rateA = 0 (unlimited) on ``ppc`` branches that pandapower's converter gave a placeholder rating.

    MATPOWER leaves most PEGASE/RTE transformers unrated; pandapower's conversion rates them at
    99.999 MVA, which makes those DC-OPFs infeasible in every solver. Read as MATPOWER reads them,
    they solve. Only elements at the default ``max_loading_percent`` of 100 with exactly the
    placeholder rating are touched (a genuine 99.999 MVA transformer would be read as unlimited too).
    """
    lookup = getattr(net, "_pd2ppc_lookups", {}).get("branch", {})
    spans = sorted((lo, hi, el) for el, (lo, hi) in lookup.items())
    # to_ppc in OPF mode drops out-of-service branches: element rows are then the in-service ones
    keep_only_in_service = ppc["branch"].shape[0] != sum(hi - lo for lo, hi, _ in spans)
    start = 0
    rows: dict[str, tuple[int, Any]] = {}
    for lo, hi, el in spans:
        df = net[el] if el in net else None
        if df is None or len(df) != hi - lo:
            return ppc  # a layout this function does not know: leave the ratings as converted
        if keep_only_in_service:
            df = df[df["in_service"].to_numpy(dtype=bool)]
        rows[el] = (start, df)
        start += len(df)
    if start != ppc["branch"].shape[0]:
        return ppc
    for el, col, values in (("trafo", "sn_mva", _PP_UNRATED_TRAFO_MVA), ("line", "max_i_ka", (_PP_UNRATED_LINE_KA,))):
        if el not in rows:
            continue
        lo, df = rows[el]
        load = (
            df["max_loading_percent"].to_numpy(dtype=float) if "max_loading_percent" in df else np.full(len(df), 100.0)
        )
        unrated = np.isin(np.round(df[col].to_numpy(dtype=float), 6), values) & np.isclose(load, 100.0)
        sl = slice(lo, lo + len(df))
        ppc["branch"][sl, RATE_A] = np.where(unrated, 0.0, ppc["branch"][sl, RATE_A])
    return ppc


def dcopf_data(
    ppc: dict[str, Any],
    *,
    cost_model: str = "auto",
    line_limits: bool = True,
    allow_load_shedding: bool = False,
    renewable_forecast_mw: Mapping[int, float] | None = None,
    gen_co2_t_per_mwh: Any = None,
) -> dict[str, Any]:
    """The live network of ``ppc`` as arrays (no model): buses, in-service generators and branches, susceptances,
    demand, generator limits (renewables capped at their forecast), reference buses, cost rows.

    Raises :class:`InputError` / :class:`InfeasibleError` for cases no DC-OPF can solve. Shared by the pyomo
    model (:func:`build_dcopf`) and the reduced (PTDF) QP of :func:`solve_dcopf`.
    """
    if cost_model not in COST_MODELS:
        raise InputError(f"cost_model must be one of {COST_MODELS}, got {cost_model!r}")
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
    g_on = (gen[:, GEN_STATUS] > 0) & np.isin(gen[:, GEN_BUS].astype(int), bus_ids)
    gi = np.flatnonzero(g_on)
    br_on = (
        (branch[:, BR_STATUS] > 0)
        & np.isin(branch[:, F_BUS].astype(int), bus_ids)
        & np.isin(branch[:, T_BUS].astype(int), bus_ids)
    )
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
    renewable, co2 = _renewables_and_co2(gen.shape[0], gi, pmin, pmax, renewable_forecast_mw, gen_co2_t_per_mwh)
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

    return dict(b=b, shift=shift, bus_ids=bus_ids, gi=gi, li=li, f=f, t=t, rate=branch[li, RATE_A], gbus=gbus, demand=demand,
                pmin=pmin, pmax=pmax, base=base, refs=refs, va_ref=va_ref, cost_rows=gencost[gi], line_limits=line_limits,
                cost_model=cost_model, renewable=renewable, co2=co2, poly=None, security=[], security_rating_factor=1.0)  # fmt: skip


def build_dcopf(
    ppc: dict[str, Any],
    *,
    cost_model: str = "auto",
    pwl_segments: int = 10,
    line_limits: bool = True,
    allow_load_shedding: bool = False,
    voll_per_mwh: float = 10_000.0,
    renewable_forecast_mw: Mapping[int, float] | None = None,
    gen_co2_t_per_mwh: Any = None,
    security: Mapping[int, np.ndarray] | None = None,
    security_rating_factor: float = 1.0,
) -> tuple[pyo.ConcreteModel, dict[str, Any]]:
    """The pyomo DC-OPF model and the arrays needed to report on it.

    ``renewable_forecast_mw`` maps ppc generator rows that are renewable to their forecast (MW): such
    a generator may produce anything from 0 (curtailment) to ``min(Pmax, forecast)``.
    ``gen_co2_t_per_mwh`` is one emission factor (t CO2/MWh) per ppc generator row, or one for all;
    without it emissions are reported as unknown (NaN).
    ``security`` maps an outaged branch (position among the live branches) to its LODF column: the
    post-outage flow of every rated branch must then stay within ``security_rating_factor`` x rate A
    (see :mod:`optimization.contingency`).
    """
    d = dcopf_data(ppc, cost_model=cost_model, line_limits=line_limits, allow_load_shedding=allow_load_shedding,
                   renewable_forecast_mw=renewable_forecast_mw, gen_co2_t_per_mwh=gen_co2_t_per_mwh)  # fmt: skip
    b, shift, bus_ids, gi, li, f, t, gbus = (d[k] for k in ("b", "shift", "bus_ids", "gi", "li", "f", "t", "gbus"))
    demand, pmin, pmax, base, refs, va_ref, rate = (
        d[k] for k in ("demand", "pmin", "pmax", "base", "refs", "va_ref", "rate")
    )
    nb = bus_ids.size
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
                lim,
                rule=lambda m, k: pyo.inequality(-float(rate[k]), m.flow[k], float(rate[k])),
                doc="branch thermal limit (rateA)",
            )
        sec = [(k, l_, float(col[l_])) for k, col in (security or {}).items() for l_ in range(li.size)
               if l_ != k and rate[l_] > 0 and np.isfinite(col[l_]) and abs(col[l_]) > 1e-9]  # fmt: skip
        if sec:
            rf = float(security_rating_factor)
            m.security = pyo.Constraint(
                range(len(sec)),
                rule=lambda m, j: pyo.inequality(
                    -rf * float(rate[sec[j][1]]),
                    m.flow[sec[j][1]] + sec[j][2] * m.flow[sec[j][0]],
                    rf * float(rate[sec[j][1]]),
                ),
                doc="post-contingency branch limit (N-1)",
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
            rule=lambda m, i: (
                sum(m.pg[g] for g in gens_at[i])
                - sum(m.flow[k] for k in out_of[i])
                + sum(m.flow[k] for k in into[i])
                + (m.shed[i] if allow_load_shedding else 0.0)
                == float(demand[i])
            ),
            doc="nodal power balance (dual = LMP)",
        )
        cost_rows = d["cost_rows"]
        use_pwl = cost_model == "pwl" or (cost_model == "auto" and (cost_rows[:, MODEL] == 1).all())
        terms = []
        poly = None
        if cost_model == "cuts":
            poly = _convex_poly(cost_rows, gi)
            # outer approximation: cost[g] >= tangent of the polynomial at pwl_segments + 1 points;
            # solve_dcopf adds tangents at the solution until the gap to the true cost vanishes
            pts = [
                np.linspace(pmin[g], pmax[g], max(pwl_segments, 1) + 1) if poly[g, 2] > 0 else np.array([pmin[g]])
                for g in range(gi.size)
            ]
            m.cost = pyo.Var(m.G, doc="generator cost epigraph, $/h")
            idx = [(g, s) for g in range(gi.size) for s in range(pts[g].size)]
            m.tangent = pyo.Constraint(
                idx,
                rule=lambda m, g, s: m.cost[g] - _slope(poly[g], pts[g][s]) * m.pg[g] >= _intercept(poly[g], pts[g][s]),
                doc="tangent cut of the cost",
            )
            terms.append(sum(m.cost[g] for g in m.G))
        elif use_pwl:
            segs = []
            for g in range(gi.size):
                segs.append(_pwl_points(cost_rows[g], pmin[g], pmax[g], pwl_segments))
            m.cost = pyo.Var(m.G, doc="generator cost epigraph, $/h")
            idx = [(g, s) for g in range(gi.size) for s in range(len(segs[g][0]) - 1)]
            m.pwl = pyo.Constraint(
                idx,
                rule=lambda m, g, s: (
                    m.cost[g]
                    >= segs[g][1][s]
                    + (segs[g][1][s + 1] - segs[g][1][s])
                    / max(segs[g][0][s + 1] - segs[g][0][s], 1e-12)
                    * (m.pg[g] - segs[g][0][s])
                ),
                doc="piecewise-linear cost",
            )
            terms.append(sum(m.cost[g] for g in m.G))
        else:
            poly = _convex_poly(cost_rows, gi)
            for g in range(gi.size):
                c = poly[g]
                terms.append(c[2] * m.pg[g] ** 2 + c[1] * m.pg[g] + c[0])
        if allow_load_shedding:
            # a 1e-6 relative tie-break between buses: with uniform VOLL every split of the shed load
            # costs the same, and that dual degeneracy makes HiGHS's QP active-set method cycle
            terms.append(sum(voll_per_mwh * (1.0 + 1e-6 * i) * m.shed[i] for i in m.B))
        m.objective = pyo.Objective(expr=sum(terms), sense=pyo.minimize)
    d.update(poly=poly, security=[(k, l_, a) for k, l_, a in sec], security_rating_factor=float(security_rating_factor))
    return m, d


def check_dcopf_solution(
    d: dict[str, Any], pg: np.ndarray, va: np.ndarray, flow: np.ndarray, shed: np.ndarray | None = None
) -> dict[str, float]:
    """Largest violation (MW) per constraint group of a DC-OPF solution, recomputed in physical units.

    ``d`` is the data dict of :func:`build_dcopf`. Groups: ``flow_def`` (flow vs the angles),
    ``power_balance`` (per bus), ``line_limit`` (rate A, when line limits are on) and
    ``generator_limits`` (Pmin/Pmax). A solver's own "optimal" is not taken on trust: HiGHS's QP
    method works unscaled and can claim optimality with balance rows off by tens of MW.
    """
    nb = d["bus_ids"].size
    f, t = d["f"], d["t"]
    flow_dc = d["base"] * d["b"] * (va[f] - va[t] - d["shift"]) if f.size else np.zeros(0)
    inj = np.bincount(d["gbus"], pg, nb) - np.bincount(f, flow, nb) + np.bincount(t, flow, nb) - d["demand"]
    if shed is not None:
        inj = inj + shed
    # angles carry ~1e-10 rad of solver precision: on a near-zero-impedance branch (b = 1e5 p.u.) that
    # is a few kW of "flow_def" mismatch, which is precision, not a wrong dispatch
    slack = ANGLE_TOL_RAD * d["base"] * np.abs(d["b"])
    out = {
        "flow_def": float(np.maximum(np.abs(flow - flow_dc) - slack, 0.0).max(initial=0.0)),
        "power_balance": float(np.abs(inj).max(initial=0.0)),
        "generator_limits": float(max(0.0, (d["pmin"] - pg).max(initial=0.0), (pg - d["pmax"]).max(initial=0.0))),
    }
    if d["line_limits"]:
        lim = d["rate"] > 0
        out["line_limit"] = float(max(0.0, (np.abs(flow[lim]) - d["rate"][lim]).max(initial=0.0)))
    if d.get("security"):
        k, l_, a = (np.array(v) for v in zip(*d["security"]))
        k, l_ = k.astype(int), l_.astype(int)
        post = np.abs(flow[l_] + a * flow[k]) - d["security_rating_factor"] * d["rate"][l_]
        out["security"] = float(max(0.0, post.max(initial=0.0)))
    return out


def check_tolerance_mw(d: dict[str, Any], pg: np.ndarray, flow: np.ndarray) -> float:
    """The violation (MW) :func:`solve_dcopf` accepts: ``CHECK_REL_TOL`` x the largest of total demand,
    generator output and branch flow (double precision is relative), at least 1e-6 MW."""
    scale = max(
        float(np.abs(d["demand"]).sum()), float(np.abs(pg).max(initial=0.0)), float(np.abs(flow).max(initial=0.0))
    )
    return max(1e-6, CHECK_REL_TOL * scale)


#: the reduced (PTDF) QP is tried first when its dense flow rows hold at most this many entries
#: (rated branches x generator buses); above it the bus-angle model is smaller
REDUCED_MAX_ENTRIES = 2_000_000
REDUCED_LABEL = "qp reduced (PTDF, HiGHS active set)"


def _solver_paths(
    kwargs: dict[str, Any], polynomial_costs: bool, reduced: bool
) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(label, build_dcopf kwargs, HiGHS options) to try in order until one passes the check."""
    cm_ = kwargs.get("cost_model", "auto")
    if cm_ in ("cuts", "quadratic") or (cm_ == "auto" and polynomial_costs):
        first = [] if cm_ == "cuts" else [("qp (HiGHS active set)", {**kwargs, "cost_model": cm_}, {})]
        if reduced and cm_ != "cuts":
            first = [(REDUCED_LABEL, kwargs, {}), *first]
        cuts = {**kwargs, "cost_model": "cuts"}
        return first + [
            ("lp tangent cuts (dual simplex)", cuts, {"solver": "simplex"}),
            ("lp tangent cuts (interior point)", cuts, {"solver": "ipm"}),
        ]
    return [("lp (dual simplex)", kwargs, {"solver": "simplex"}), ("lp (interior point)", kwargs, {"solver": "ipm"})]


def _reduced_eligible(kwargs: dict[str, Any]) -> bool:
    """The reduced QP covers the plain case: no load shedding, no security rows (their own paths)."""
    return not kwargs.get("allow_load_shedding") and not kwargs.get("security")


def b_matrices(d: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(C, Bf, Bbus) of the live network in :func:`dcopf_data`'s ``d``: branch-bus incidence (+1 from, -1 to),
    branch flow per bus angle (MW/rad, CSR) and the bus susceptance matrix ``C' Bf`` (CSC)."""
    import scipy.sparse as sp

    nb, nl = d["bus_ids"].size, d["li"].size
    rows = np.arange(nl)
    C = sp.csr_array((np.r_[np.ones(nl), -np.ones(nl)], (np.r_[rows, rows], np.r_[d["f"], d["t"]])), shape=(nl, nb))
    Bf = (sp.diags_array(d["base"] * d["b"]) @ C).tocsr()
    return C, Bf, (C.T @ Bf).tocsc()


def _solve_reduced_qp(d: dict[str, Any]) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The DC-OPF QP over generator outputs only: one balance row and PTDF rows for the rated branches.

    Angles and flows are eliminated with one sparse LU of the reduced B matrix, so the QP has one
    column per generator and no B-matrix coefficients at all: the PTDF entries are within [-1, 1]
    whatever the reactances (pandapower's ``GBnetwork`` has 1e-5..2 p.u., B entries up to 1e7, which
    is what defeats HiGHS's unscaled QP method on the bus-angle model). Angles are recovered by a DC
    power flow of the optimal injections and flows from the angles, so :func:`check_dcopf_solution`
    checks exactly what the bus-angle model would. LMP = balance dual + PTDF' x flow-row duals.
    Raises ``RuntimeError`` (the caller tries the next path) if the case has more than one reference
    bus, an island (singular B), more dense entries than ``REDUCED_MAX_ENTRIES`` or HiGHS does not finish.
    """
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    if d["refs"].size != 1:
        raise RuntimeError(f"{d['refs'].size} reference buses (the reduced model has one slack)")
    nb, ng, gbus = d["bus_ids"].size, d["gi"].size, d["gbus"]
    rated = np.flatnonzero(d["rate"] > 0) if d["line_limits"] else np.zeros(0, dtype=np.int64)
    ubus, ginv = np.unique(gbus, return_inverse=True)
    if rated.size * ubus.size > REDUCED_MAX_ENTRIES:
        raise RuntimeError(f"{rated.size} rated branches x {ubus.size} generator buses above {REDUCED_MAX_ENTRIES:,}")
    poly = d["poly"] if d["poly"] is not None else _convex_poly(d["cost_rows"], d["gi"])
    bw = d["base"] * d["b"]  # MW per radian
    C, Bf, Bbus = b_matrices(d)
    ref, theta_ref = int(d["refs"][0]), float(d["va_ref"][0])
    keep = np.flatnonzero(np.arange(nb) != ref)
    pos = np.full(nb, -1)
    pos[keep] = np.arange(keep.size)
    Bkk = Bbus[keep][:, keep].tocsc()
    b_kref = Bbus[keep][:, [ref]].toarray().ravel()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a "matrix is exactly singular" warning is an island, not a solve
            lu = spla.splu(Bkk)
    except (RuntimeError, Warning) as exc:
        raise RuntimeError(f"the B matrix is singular (more than one island?): {exc}") from None
    fshift = bw * d["shift"]
    p_fixed = -d["demand"] + C.T @ fshift  # injections that do not depend on the dispatch, MW

    def angles(p_inj: np.ndarray) -> np.ndarray:
        th = np.full(nb, theta_ref)
        th[keep] = lu.solve(p_inj[keep] - b_kref * theta_ref)
        return th

    theta0 = angles(p_fixed)
    flow0 = Bf @ theta0 - fshift
    # sensitivity of the rated flows to 1 MW at each generator bus (0 at the slack)
    E = np.zeros((keep.size, ubus.size))
    at = pos[ubus]
    E[at[at >= 0], np.flatnonzero(at >= 0)] = 1.0
    S = (Bf[rated][:, keep] @ lu.solve(E)) if rated.size else np.zeros((0, ubus.size))
    Sg = S[:, ginv]
    A = sp.csc_array(np.vstack([np.ones((1, ng)), Sg]))
    rate = d["rate"][rated]
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = ng, 1 + rated.size
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = poly[:, 1], d["pmin"], d["pmax"]
    total = float(d["demand"].sum())
    lp.row_lower_ = np.r_[total, -rate - flow0[rated]]
    lp.row_upper_ = np.r_[total, rate - flow0[rated]]
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = A.indptr, A.indices, A.data
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    quad = np.flatnonzero(poly[:, 2] > 0)
    if quad.size:
        hess = highspy.HighsHessian()
        hess.dim_, hess.format_ = ng, highspy.HessianFormat.kTriangular
        start = np.zeros(ng + 1, dtype=np.int32)
        start[1:] = np.cumsum(poly[:, 2] > 0)
        hess.start_, hess.index_, hess.value_ = start, quad.astype(np.int32), 2.0 * poly[quad, 2]
        model = highspy.HighsModel()
        model.lp_, model.hessian_ = lp, hess
        h.passModel(model)
    else:
        h.passModel(lp)
    h.run()
    status = h.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        raise RuntimeError(f"HiGHS did not solve the reduced QP to optimality: {h.modelStatusToString(status)}")
    sol = h.getSolution()
    pg = np.asarray(sol.col_value, dtype=float)
    y = np.asarray(sol.row_dual, dtype=float)
    va = angles(p_fixed + np.bincount(gbus, pg, nb))
    flow = Bf @ va - fshift
    lmp = np.full(nb, y[0])
    if rated.size:
        lmp[keep] += lu.solve(Bf[rated][:, keep].T @ y[1:])
    objective = float((poly[:, 0] + poly[:, 1] * pg + poly[:, 2] * pg**2).sum())
    return objective, pg, va, flow, lmp


def _solve_with_cuts(
    cm: CompiledModel, m: pyo.ConcreteModel, d: dict[str, Any], options: dict[str, Any], max_rounds: int = 100
) -> Any:
    """Solve the tangent-cut LP, adding the tangent at each generator's output until the cost gap closes.

    Every LP is a lower bound on the QP optimum; the true (quadratic) cost of its dispatch is an upper
    bound; rounds stop when they are ``CUT_REL_GAP`` apart, and the true cost is reported. Re-solves
    are warm-started dual simplex (or IPM) on the same HiGHS instance.
    """
    import dataclasses

    poly = d["poly"]
    h = cm.highs
    col_pg = np.array([cm.col_of[id(v)] for v in m.pg.values()], dtype=np.int32)
    col_cost = np.array([cm.col_of[id(v)] for v in m.cost.values()], dtype=np.int32)
    for k in range(max_rounds):
        # after the first round, skip presolve: re-solves warm-start from the last basis (the added
        # tangent rows are cuts; ~150 dual simplex iterations a round on GBnetwork)
        sol = cm.solve(options=options if k == 0 else {**options, "presolve": "off"})
        pg, cost = sol.values(m.pg), sol.values(m.cost)
        true = poly[:, 0] + poly[:, 1] * pg + poly[:, 2] * pg**2
        gap = true - cost
        total = sol.objective + float(gap.sum())
        if gap.sum() <= CUT_REL_GAP * max(1.0, abs(total)):
            return dataclasses.replace(sol, objective=total)
        for g in np.flatnonzero(gap > 0.1 * CUT_REL_GAP * max(1.0, abs(total)) / max(1, gap.size)):
            h.addRow(
                _intercept(poly[g], pg[g]),
                INF,
                2,
                np.array([col_cost[g], col_pg[g]], dtype=np.int32),
                np.array([1.0, -_slope(poly[g], pg[g])]),
            )
    raise RuntimeError(f"tangent cuts did not close the cost gap in {max_rounds} rounds (gap {gap.sum():.3g} $/h)")


def solve_dcopf(case: Any, **kwargs: Any) -> OPFResult:
    """Solve the DC-OPF of ``case``; returns dispatch, branch flows (with loading) and bus LMPs.

    The solution is verified against the constraints in MW (:func:`check_dcopf_solution`) before
    it is returned. Quadratic costs go first to the reduced QP (generator outputs only, PTDF rows for
    the rated branches; :func:`_solve_reduced_qp`), then to HiGHS's QP solver on the bus-angle model;
    if both fail or their solutions fail the check, the bus-angle problem is solved as an LP whose
    cost epigraph is refined with tangent cuts until the cost gap is below ``CUT_REL_GAP`` (dual
    simplex, then interior point; HiGHS scales LPs, its QP method does not). A linear/PWL problem
    tries dual simplex, then interior point. ``OPFResult.method`` names the path that passed; if none
    passes, ``RuntimeError`` lists each path's failure. ``reduced=False`` skips the reduced QP.
    """
    reduced = bool(kwargs.pop("reduced", True))
    ppc = load_case(case)
    gencost = np.asarray(ppc["gencost"], dtype=float)
    polynomial_costs = not (gencost[:, MODEL] == 1).all()
    failures: list[str] = []
    build = solve_s = 0.0
    for label, build_kw, options in _solver_paths(kwargs, polynomial_costs, reduced and _reduced_eligible(kwargs)):
        t1 = time.perf_counter()
        try:
            if label == REDUCED_LABEL:
                data_kw = ("cost_model", "line_limits", "renewable_forecast_mw", "gen_co2_t_per_mwh")
                d = dcopf_data(ppc, **{k: v for k, v in build_kw.items() if k in data_kw})
                build += time.perf_counter() - t1
                t1 = time.perf_counter()
                objective, pg, va, flow, lmp = _solve_reduced_qp(d)
                shed = None
            else:
                m, d = build_dcopf(ppc, **build_kw)
                cm = CompiledModel(m)
                build += time.perf_counter() - t1
                t1 = time.perf_counter()
                sol = (
                    _solve_with_cuts(cm, m, d, options)
                    if build_kw.get("cost_model") == "cuts"
                    else cm.solve(options=options)
                )
                objective, pg, va, flow = sol.objective, sol.values(m.pg), sol.values(m.va), sol.values(m.flow)
                shed = sol.values(m.shed) if kwargs.get("allow_load_shedding") else None
                lmp = sol.duals(m.power_balance)
        except RuntimeError as exc:
            solve_s += time.perf_counter() - t1
            failures.append(f"{label}: {exc}")
            continue
        solve_s += time.perf_counter() - t1
        viol = check_dcopf_solution(d, pg, va, flow, shed)
        worst = max(viol, key=viol.get)
        tol = check_tolerance_mw(d, pg, flow)
        if viol[worst] <= tol:
            break
        failures.append(f"{label}: solution violates {worst} by {viol[worst]:.3g} MW (tolerance {tol:.3g} MW)")
    else:
        raise RuntimeError(
            "DC-OPF: no solver path returned a solution that meets the constraints: " + "; ".join(failures)
        )
    gens = pl.DataFrame({"gen": d["gi"], "bus": d["bus_ids"][d["gbus"]], "p_mw": pg, "pmin_mw": d["pmin"], "pmax_mw": d["pmax"],
                         "renewable": d["renewable"], "co2_t_per_h": pg * d["co2"]})  # fmt: skip
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
    unserved = float(shed.sum()) if shed is not None else 0.0
    total = float(pg.sum())
    return OPFResult(objective, gens, branches, buses, build, solve_s, unserved, method=label, max_violation_mw=viol[worst], failed_paths=failures,
                     emissions_t_per_h=float((pg * d["co2"]).sum()), renewable_share=float(pg[d["renewable"]].sum() / total) if total > 0 else 0.0,
                     data=d)  # fmt: skip


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
    :func:`build_dcopf`; ``renewable_forecast_mw`` may map a generator to one value per period.
    System rows also carry ``co2_t_per_h`` and ``renewable_share``, generator rows ``co2_t_per_h``.
    An infeasible period raises :class:`InfeasibleError` naming the period and its scale, with the
    groups and hint of the underlying error.
    """
    base = load_case(case)
    n = period_start.len()
    scales = as_series(load_scale, "load_scale", n)
    forecasts = {
        g: as_series(v, f"renewable_forecast_mw[{g}]", n, min_value=0.0)
        for g, v in (kwargs.pop("renewable_forecast_mw", None) or {}).items()
    }
    frames, costs, solve_s, peak = [], [], 0.0, None
    for k, (ts, f) in enumerate(zip(period_start.to_list(), scales)):
        try:
            r = solve_dcopf(
                scaled_case(base, float(f)), renewable_forecast_mw={g: v[k] for g, v in forecasts.items()}, **kwargs
            )
        except InfeasibleError as exc:
            err = InfeasibleError(f"period {ts} (load scale {f:.3f}): {exc}", exc.groups)
            err.hint = exc.hint
            raise err from exc
        solve_s += r.solve_seconds
        costs.append(r.objective)
        common = [pl.lit(ts).cast(pl.Datetime("us", "UTC")).alias("period_start"), pl.lit(float(f)).alias("load_scale")]
        frames += [
            pl.DataFrame({"kind": ["system"], "element": [0], "p_mw": [float(r.buses["demand_mw"].sum())], "cost_per_h": [r.objective],
                          "co2_t_per_h": [r.emissions_t_per_h], "renewable_share": [r.renewable_share]}).with_columns(common),
            r.buses.select(pl.lit("bus").alias("kind"), pl.col("bus").alias("element"), "demand_mw", "lmp").with_columns(common),
            r.generators.select(pl.lit("generator").alias("kind"), pl.col("gen").alias("element"), pl.col("bus").alias("from_bus"),
                                "p_mw", pl.col("pmax_mw").alias("limit_mw"), "co2_t_per_h").with_columns(common),
            r.branches.select(pl.lit("branch").alias("kind"), pl.col("branch").alias("element"), "from_bus", "to_bus", "p_mw",
                              pl.col("rate_a_mw").alias("limit_mw"), "loading_pct").with_columns(common),
        ]  # fmt: skip
        if k == int(np.argmax(scales)):
            peak = r
    table = pl.concat(
        [f.with_columns(pl.col(pl.Int32, pl.Int64).cast(pl.Int64)) for f in frames], how="diagonal_relaxed"
    )
    return OPFSeries(table, costs, solve_s, peak)


def _renewables_and_co2(
    n_gen: int, gi: np.ndarray, pmin: np.ndarray, pmax: np.ndarray, forecast: Mapping[int, float] | None, co2: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Cap renewable generators at their forecast (``pmin``/``pmax`` changed in place); per in-service generator
    a renewable flag and an emission factor (NaN = unknown)."""
    renewable = np.zeros(gi.size, dtype=bool)
    at = {int(g): j for j, g in enumerate(gi)}
    for k, v in (forecast or {}).items():
        if not 0 <= int(k) < n_gen:
            raise InputError(f"renewable_forecast_mw: generator {k} does not exist (the case has {n_gen})")
        v = float(v)
        if not np.isfinite(v) or v < 0:
            raise InputError(f"renewable_forecast_mw: generator {k}: forecast {v!r} must be a finite number >= 0")
        j = at.get(int(k))
        if j is not None:
            renewable[j] = True
            pmax[j] = min(pmax[j], v)
            pmin[j] = 0.0
    if co2 is None:
        factors = np.full(gi.size, np.nan)
    else:
        full = as_series(co2, "gen_co2_t_per_mwh", n_gen, min_value=0.0)
        factors = full[gi]
    return renewable, np.where(renewable, 0.0, factors)


def _convex_poly(cost_rows: np.ndarray, gi: np.ndarray) -> np.ndarray:
    """(G, 3) array of (c0, c1, c2) per generator; polynomial rows only, convex only."""
    if (cost_rows[:, MODEL] != 2).any():
        raise InputError("quadratic cost_model needs polynomial (model 2) gencost rows for every generator")
    poly = np.array([_poly(r) for r in cost_rows]).reshape(-1, 3)
    bad = np.flatnonzero(poly[:, 2] < 0)
    if bad.size:
        raise InputError(f"generator {gi[bad[0]]}: negative quadratic cost coefficient {poly[bad[0], 2]} (non-convex)")
    return poly


def _slope(c: np.ndarray, p: float) -> float:
    return float(c[1] + 2.0 * c[2] * p)


def _intercept(c: np.ndarray, p: float) -> float:
    return float(c[0] - c[2] * p * p)


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
