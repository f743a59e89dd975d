"""EV charging: optimal schedules under a transformer limit, plus the baselines they must beat.

A session is (arrival period, departure period (exclusive), requested kWh, max kW) at a station.
The LP has one charging-rate variable per (session, period inside its window), so a month of real
Caltech ACN sessions (954 sessions, 74k session-periods at 5 minutes) stays a small LP.

Objective (all weights in $, so they can be mixed with tariffs):
    energy cost (price, $/MWh)  +  peak_weight * peak site kW  +  early_weight * lateness
    +  unmet_penalty * unmet kWh  (only with ``allow_unmet=True``)
The unmet penalty is raised automatically above the largest marginal gain any other term can
offer for one kWh, so delivered energy always equals the maximum-energy LP optimum: the other
terms only choose *how* to deliver it. That is what makes "the optimum never delivers less than
EDF" a theorem here rather than a hope: EDF's schedule is feasible for the same LP.

Baselines in the same module, on the same inputs and metrics:
* ``uncontrolled``: every car charges at its max rate from arrival until full (ignores the limit);
* ``earliest_deadline_first``: each period, serve active sessions in order of departure, each up to
  its max rate and remaining energy, until the site limit is used up.

V2G (opt-in per vehicle: a boolean ``v2g_opt_in`` session column; without it every session may): an
opted-in car may discharge in periods whose *export* price (``v2g_export_price``, default the import
price) is at least ``v2g_price_threshold`` (and does not charge there if export net of wear beats import), earning that price minus ``v2g_wear_cost_per_mwh`` (battery
wear) per MWh; its cumulative net energy may dip at most ``v2g_buffer_kwh`` below its arrival level,
never exceeds its request, and it must leave with at least ``v2g_floor_frac`` of its request.

Per-port power caps (:func:`apply_port_caps`) lower sessions' ``max_power_kw`` before any strategy
runs, so the optimum and the baselines see the same hardware. :func:`weights_from_shares` turns the
utility's objective shares (cost 0.5 / peak 0.3 / convenience 0.2) into :class:`EVWeights`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyomo.environ as pyo

from optimization._inputs import as_series, require_positive
from optimization.core import CompiledModel, linear_sum, paused_gc
from optimization.errors import InfeasibleError, InputError

#: the real sessions, shipped with the package (licence and source: optimization/data/NOTICE.md);
#: 5-minute periods from local midnight. GRIDLAKE_CALTECH_SESSIONS points elsewhere.
CALTECH_MARCH_2019 = Path(
    os.environ.get(
        "GRIDLAKE_CALTECH_SESSIONS", Path(__file__).resolve().parent / "data" / "ev_sessions_caltech_2019_03.csv"
    )
)

#: length of a period of the Caltech sessions (arrival/departure periods count 5-minute steps)
CALTECH_PERIOD_MINUTES = 5

SESSION_COLUMNS = ("session_id", "station_id", "arrival_period", "departure_period", "requested_kwh", "max_power_kw")


@dataclass(frozen=True)
class EVWeights:
    """Objective weights. ``energy_cost`` multiplies the price term; the rest are $ per unit."""

    energy_cost: float = 1.0
    #: $ per kW of the horizon's highest site load (EV + baseload)
    peak_per_kw: float = 0.0
    #: $ per kWh delivered one full horizon late (linear in delay): prefers charging early
    early_per_kwh: float = 1e-4
    #: $ per kWh not delivered (with ``allow_unmet``); raised automatically if too small to dominate
    unmet_per_kwh: float = 1.0


@dataclass
class EVResult:
    """Per-(session, period) power, per-session totals, the aggregate profile and the metrics."""

    power: pl.DataFrame
    sessions: pl.DataFrame
    profile: pl.DataFrame
    metrics: dict[str, float]
    solve_seconds: float = 0.0
    build_seconds: float = 0.0
    model: Any = field(default=None, repr=False)


# --------------------------------------------------------------------------------------------
# Sessions
# --------------------------------------------------------------------------------------------


def load_caltech_sessions(path: str | Path = CALTECH_MARCH_2019) -> pl.DataFrame:
    """The real Caltech ACN sessions of March 2019 in this module's session schema (5-minute periods)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: EV session file not found")
    raw = pl.read_csv(path, try_parse_dates=False)
    df = raw.rename({"requested_energy_kwh": "requested_kwh"}).with_columns(
        pl.col("arrival_period").cast(pl.Int64),
        pl.col("departure_period").cast(pl.Int64),
        pl.col("arrival_utc").str.to_datetime(time_zone="UTC"),
        pl.col("departure_utc").str.to_datetime(time_zone="UTC"),
    )
    return validate_sessions(df, source=str(path))


def validate_sessions(df: pl.DataFrame, horizon: int | None = None, source: str = "sessions") -> pl.DataFrame:
    """Check the session frame; errors name the source, the 1-based row and the field."""
    missing = [c for c in SESSION_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"{source}: missing column(s) {missing}; has {df.columns}")
    df = df.with_columns(
        pl.col("arrival_period").cast(pl.Int64),
        pl.col("departure_period").cast(pl.Int64),
        pl.col("requested_kwh").cast(pl.Float64),
        pl.col("max_power_kw").cast(pl.Float64),
        pl.col("session_id").cast(pl.Utf8),
        pl.col("station_id").cast(pl.Utf8),
    )
    checks = [
        ("arrival_period", pl.col("arrival_period").is_null() | (pl.col("arrival_period") < 0), "must be >= 0"),
        ("departure_period", pl.col("departure_period") <= pl.col("arrival_period"), "must be after arrival_period"),
        (
            "requested_kwh",
            pl.col("requested_kwh").is_null() | ~pl.col("requested_kwh").is_finite() | (pl.col("requested_kwh") < 0),
            "must be a finite number >= 0",
        ),
        (
            "max_power_kw",
            pl.col("max_power_kw").is_null() | ~pl.col("max_power_kw").is_finite() | (pl.col("max_power_kw") <= 0),
            "must be > 0",
        ),
    ]
    if horizon is not None:
        checks.append(("departure_period", pl.col("departure_period") > horizon, f"must be <= horizon {horizon}"))
    for name, bad, what in checks:
        rows = df.with_row_index("row").filter(bad.fill_null(True))
        if rows.height:
            r = rows.row(0, named=True)
            raise InputError(
                f"{source}: row {r['row'] + 1} (session {r['session_id']}): {name}={r[name]!r} {what} ({rows.height} bad row(s))"
            )
    dup = df.filter(pl.col("session_id").is_duplicated())
    if dup.height:
        raise InputError(f"{source}: duplicate session_id {dup['session_id'][0]!r}")
    return df


def simulate_sessions(
    n: int,
    *,
    periods: int = 96,
    period_minutes: float = 15.0,
    n_stations: int | None = None,
    max_power_kw: float = 7.2,
    seed: int = 0,
) -> pl.DataFrame:
    """Synthetic workplace-like sessions: morning arrivals, 2-10 h stays, 5-40 kWh requests.

    Requests are capped at what the window allows at full power, so the strict (no-slack) model
    is feasible without a site limit; a tight transformer limit is what makes energy scarce.
    """
    rng = np.random.default_rng(seed)
    per_h = 60.0 / period_minutes
    arr_h = np.clip(rng.normal(9.0, 2.5, n), 0.0, 20.0)
    stay_h = rng.uniform(2.0, 10.0, n)
    arrival = np.floor(arr_h * per_h).astype(np.int64)
    departure = np.minimum(periods, arrival + np.maximum(1, np.round(stay_h * per_h))).astype(np.int64)
    arrival = np.minimum(arrival, departure - 1)
    window_kwh = (departure - arrival) * max_power_kw / per_h
    requested = np.minimum(rng.uniform(5.0, 40.0, n), 0.95 * window_kwh)
    stations = n_stations or n
    return pl.DataFrame(
        {
            "session_id": [f"s{k:05d}" for k in range(n)],
            "station_id": [f"st{k % stations:04d}" for k in range(n)],
            "arrival_period": arrival,
            "departure_period": departure,
            "requested_kwh": requested,
            "max_power_kw": np.full(n, max_power_kw),
        }
    )


# --------------------------------------------------------------------------------------------
# Optimisation
# --------------------------------------------------------------------------------------------


@dataclass
class _Layout:
    """Flattened (session, period) pairs: the LP's column layout."""

    session: np.ndarray
    period: np.ndarray
    starts: np.ndarray  # first pair of each session
    by_period: list[np.ndarray]


def _layout(arr: np.ndarray, dep: np.ndarray, horizon: int) -> _Layout:
    lengths = dep - arr
    session = np.repeat(np.arange(arr.size), lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    period = np.arange(session.size) - np.repeat(starts, lengths) + np.repeat(arr, lengths)
    order = np.argsort(period, kind="stable")
    bounds = np.searchsorted(period[order], np.arange(horizon + 1))
    by_period = [order[bounds[t] : bounds[t + 1]] for t in range(horizon)]
    return _Layout(session, period, starts, by_period)


def optimize_ev(
    sessions: pl.DataFrame,
    *,
    horizon: int | None = None,
    period_minutes: float = 15.0,
    transformer_limit_kw: float | None = None,
    baseload_kw: Any = None,
    price: Any = None,
    weights: EVWeights = EVWeights(),
    allow_unmet: bool = False,
    v2g: bool = False,
    v2g_price_threshold: float = float("inf"),
    v2g_max_discharge_kw: float | None = None,
    v2g_floor_frac: float = 0.8,
    v2g_buffer_kwh: float = 5.0,
    v2g_export_price: Any = None,
    v2g_wear_cost_per_mwh: float = 0.0,
    keep_model: bool = False,
    lp_solver: str = "choose",
) -> EVResult:
    """Optimal charging schedule; raises :class:`InfeasibleError` naming the failing group if strict.

    ``lp_solver`` is passed to HiGHS ("choose", "simplex", "ipm"). ``price`` is $/MWh per period (default 0); ``baseload_kw`` is the forecast non-EV load on the
    transformer. Without ``allow_unmet`` every request must be met exactly; with it, the schedule
    maximises delivered energy and reports the unmet kWh per session.
    """
    t0 = time.perf_counter()
    if horizon is None:
        horizon = int(sessions["departure_period"].max()) if sessions.height else 0
    sessions = validate_sessions(sessions, horizon)
    dt = require_positive(period_minutes, "period_minutes") / 60.0
    n_s = sessions.height
    if n_s == 0:
        raise InputError("sessions: empty")
    arr = sessions["arrival_period"].to_numpy()
    dep = sessions["departure_period"].to_numpy()
    req = sessions["requested_kwh"].to_numpy()
    pmax = sessions["max_power_kw"].to_numpy()
    base = as_series(0.0 if baseload_kw is None else baseload_kw, "baseload_kw", horizon)
    prc = as_series(0.0 if price is None else price, "price", horizon)
    xprc = prc if v2g_export_price is None else as_series(v2g_export_price, "v2g_export_price", horizon)
    wear = require_positive(v2g_wear_cost_per_mwh, "v2g_wear_cost_per_mwh", allow_zero=True)
    limit = (
        None
        if transformer_limit_kw is None
        else require_positive(transformer_limit_kw, "transformer_limit_kw", allow_zero=True)
    )

    window_kwh = (dep - arr) * pmax * dt
    if not allow_unmet:
        over = np.flatnonzero(req > window_kwh + 1e-9)
        if over.size:
            k = over[0]
            raise InfeasibleError(
                f"energy_request: {over.size} session(s) request more than their window allows, e.g. "
                f"{sessions['session_id'][int(k)]} requests {req[k]:.4g} kWh but {dep[k] - arr[k]} periods x "
                f"{pmax[k]:g} kW give at most {window_kwh[k]:.4g} kWh",
                {"energy_request": float((req - window_kwh)[over].sum())},
                hint="pass allow_unmet=True to deliver what is possible and report the unmet energy",
            )
    if limit is not None:
        over = np.flatnonzero(base > limit + 1e-9)
        if over.size:
            raise InfeasibleError(
                f"transformer_limit: forecast baseload alone exceeds the {limit:g} kW limit in {over.size} period(s), "
                f"first at period {over[0]} ({base[over[0]]:.4g} kW)",
                {"transformer_limit": float((base - limit)[over].sum() * dt)},
            )

    lay = _layout(arr, dep, horizon)
    K = lay.session.size
    early = (lay.period - arr[lay.session]) / max(horizon, 1)
    w = weights
    # the unmet penalty must beat any per-kWh gain elsewhere: price, peak (1 kWh in one period
    # can lift the peak by 1/dt kW) and the lateness term
    penalty = max(
        w.unmet_per_kwh,
        10.0
        * (w.energy_cost * max(float(np.abs(prc).max()), 0.0) / 1000.0 + w.peak_per_kw / dt + w.early_per_kwh + 1e-3),
    )

    m = pyo.ConcreteModel(name="ev_charging")
    with paused_gc():
        m.K = pyo.RangeSet(0, K - 1)
        m.S = pyo.RangeSet(0, n_s - 1)
        m.T = pyo.RangeSet(0, horizon - 1)
        v2g_ok = np.zeros(K, dtype=bool)
        opted = np.zeros(n_s, dtype=bool)
        if v2g:
            opted = (
                sessions["v2g_opt_in"].fill_null(False).to_numpy()
                if "v2g_opt_in" in sessions.columns
                else np.ones(n_s, dtype=bool)
            )
            v2g_ok = (xprc[lay.period] >= v2g_price_threshold) & opted[lay.session]
        # where a V2G period's export price net of wear beats its import price, charging and discharging at
        # once would earn that spread on energy that never moves: the LP would exploit it, so the car does
        # not charge there (elsewhere the spread is <= 0 and the LP avoids it without binaries)
        no_charge = v2g_ok & (xprc[lay.period] - wear > prc[lay.period])
        m.charge = pyo.Var(
            m.K,
            bounds=lambda m, k: (0.0, 0.0 if no_charge[k] else float(pmax[lay.session[k]])),
            doc="kW per session-period",
        )
        ch = list(m.charge.values())
        if v2g:
            dis_cap = pmax if v2g_max_discharge_kw is None else np.full(n_s, float(v2g_max_discharge_kw))
            m.discharge = pyo.Var(
                m.K, bounds=lambda m, k: (0.0, float(dis_cap[lay.session[k]]) if v2g_ok[k] else 0.0), doc="V2G kW"
            )
            dis = list(m.discharge.values())
            m.energy_state = pyo.Var(
                m.K,
                bounds=lambda m, k: (-float(v2g_buffer_kwh), float(req[lay.session[k]])),
                doc="cumulative net kWh since arrival (never above the request)",
            )
            es = list(m.energy_state.values())
            first = np.zeros(K, dtype=bool)
            first[lay.starts] = True
            m.energy_dynamics = pyo.Constraint(
                m.K,
                rule=lambda m, k: es[k] == (0.0 if first[k] else es[k - 1]) + dt * ch[k] - dt * dis[k],
                doc="V2G cumulative energy per car",
            )
        ends = np.concatenate([lay.starts[1:], [K]])
        if allow_unmet or v2g:
            slack = (
                np.ones(n_s) if allow_unmet else np.where(opted, 1.0 - v2g_floor_frac, 0.0) if v2g else np.zeros(n_s)
            )
            m.unmet = pyo.Var(m.S, bounds=lambda m, i: (0.0, float(req[i] * slack[i])), doc="kWh not delivered")
        um = list(m.unmet.values()) if (allow_unmet or v2g) else None

        def energy_rule(m: Any, i: int) -> Any:
            ks = range(lay.starts[i], ends[i])
            if v2g:
                expr = m.energy_state[ends[i] - 1]
            else:
                expr = linear_sum([dt] * len(ks), [ch[k] for k in ks])
            if um is not None:
                return expr + um[i] == float(req[i])
            return expr == float(req[i])

        m.energy_request = pyo.Constraint(m.S, rule=energy_rule, doc="requested energy by departure")
        if limit is not None or w.peak_per_kw:
            site_terms: list[Any] = []
            for t in range(horizon):
                ks = lay.by_period[t]
                coefs = [1.0] * ks.size
                vars_ = [ch[k] for k in ks]
                if v2g:
                    coefs += [-1.0] * ks.size
                    vars_ += [dis[k] for k in ks]
                site_terms.append(linear_sum(coefs, vars_))
            if limit is not None:
                m.transformer_limit = pyo.Constraint(
                    m.T,
                    rule=lambda m, t: site_terms[t] <= limit - float(base[t]),
                    doc="transformer limit with forecast baseload",
                )
            if w.peak_per_kw:
                m.peak = pyo.Var(bounds=(0.0, None), doc="highest site load, kW")
                m.peak_def = pyo.Constraint(
                    m.T, rule=lambda m, t: site_terms[t] - m.peak <= -float(base[t]), doc="peak site load"
                )
        cost_c = w.energy_cost * prc[lay.period] * dt / 1000.0 + w.early_per_kwh * early * dt
        coefs = cost_c.tolist()
        vars_all = list(ch)
        if v2g:
            coefs += (w.energy_cost * (wear - xprc[lay.period]) * dt / 1000.0).tolist()
            vars_all += dis
        if um is not None:
            coefs += [penalty] * n_s
            vars_all += um
        if w.peak_per_kw:
            coefs.append(w.peak_per_kw)
            vars_all.append(m.peak)
        m.objective = pyo.Objective(expr=linear_sum(coefs, vars_all), sense=pyo.minimize)
    cm = CompiledModel(m)
    build = time.perf_counter() - t0
    # HiGHS's default (dual simplex) measured best overall here: interior point is up to 2x faster on
    # a loose one-day problem but 10x slower on the tight, degenerate Caltech month; lp_solver overrides
    sol = cm.solve(options={"solver": lp_solver})
    rate = sol.values(m.charge)
    if v2g:
        rate = rate - sol.values(m.discharge)
    res = _result(sessions, lay, rate, horizon, dt, base, prc, limit, export_price=xprc, wear_cost_per_mwh=wear)
    res.solve_seconds, res.build_seconds = sol.solve_seconds, build
    res.metrics["objective"] = sol.objective
    if keep_model:
        res.model = (cm, m, lay)
    return res


def max_energy_sweep(
    sessions: pl.DataFrame,
    limits_kw: list[float],
    *,
    horizon: int | None = None,
    period_minutes: float = 5.0,
    baseload_kw: Any = None,
    price: Any = None,
    weights: EVWeights = EVWeights(),
) -> dict[float, EVResult]:
    """Optimal schedules for several site limits: the LP is built once, only the limit rows change."""
    if not limits_kw:
        return {}
    first = optimize_ev(
        sessions,
        horizon=horizon,
        period_minutes=period_minutes,
        transformer_limit_kw=limits_kw[0],
        baseload_kw=baseload_kw,
        price=price,
        weights=weights,
        allow_unmet=True,
        keep_model=True,
    )
    cm, m, lay = first.model
    horizon = len(lay.by_period)
    base = as_series(0.0 if baseload_kw is None else baseload_kw, "baseload_kw", horizon)
    prc = as_series(0.0 if price is None else price, "price", horizon)
    sessions = validate_sessions(sessions, horizon)
    dt = period_minutes / 60.0
    out = {float(limits_kw[0]): first}
    for lim in limits_kw[1:]:
        lim = require_positive(lim, "limit_kw", allow_zero=True)
        cm.set_bounds(m.transformer_limit, upper=lim - base)
        sol = cm.solve()
        res = _result(sessions, lay, sol.values(m.charge), horizon, dt, base, prc, lim)
        res.solve_seconds = sol.solve_seconds
        res.metrics["objective"] = sol.objective
        out[float(lim)] = res
    first.model = None
    return out


# --------------------------------------------------------------------------------------------
# Baselines
# --------------------------------------------------------------------------------------------


def uncontrolled(
    sessions: pl.DataFrame,
    *,
    horizon: int | None = None,
    period_minutes: float = 15.0,
    baseload_kw: Any = None,
    price: Any = None,
    transformer_limit_kw: float | None = None,
) -> EVResult:
    """Charge at max rate from arrival until full or departed. Ignores the limit (only reports on it)."""
    horizon, sessions, dt, base, prc, lay = _prepare(sessions, horizon, period_minutes, baseload_kw, price)
    arr = sessions["arrival_period"].to_numpy()
    req = sessions["requested_kwh"].to_numpy()
    pmax = sessions["max_power_kw"].to_numpy()
    s = lay.session
    offset = lay.period - arr[s]
    delivered_before = offset * pmax[s] * dt
    rate = np.clip((req[s] - delivered_before) / dt, 0.0, pmax[s])
    return _result(sessions, lay, rate, horizon, dt, base, prc, transformer_limit_kw)


def earliest_deadline_first(
    sessions: pl.DataFrame,
    *,
    transformer_limit_kw: float,
    horizon: int | None = None,
    period_minutes: float = 15.0,
    baseload_kw: Any = None,
    price: Any = None,
) -> EVResult:
    """Each period, give power to active sessions in order of departure until the limit is used."""
    horizon, sessions, dt, base, prc, lay = _prepare(sessions, horizon, period_minutes, baseload_kw, price)
    dep = sessions["departure_period"].to_numpy()
    req = sessions["requested_kwh"].to_numpy().astype(float)
    pmax = sessions["max_power_kw"].to_numpy()
    remaining = req.copy()
    rate = np.zeros(lay.session.size)
    for t in range(horizon):
        ks = lay.by_period[t]
        if ks.size == 0:
            continue
        cap = max(0.0, transformer_limit_kw - base[t])
        ss = lay.session[ks]
        for j in np.argsort(dep[ss], kind="stable"):
            if cap <= 1e-12:
                break
            i = ss[j]
            if remaining[i] <= 1e-12:
                continue
            r = min(pmax[i], remaining[i] / dt, cap)
            rate[ks[j]] = r
            remaining[i] -= r * dt
            cap -= r
    return _result(sessions, lay, rate, horizon, dt, base, prc, transformer_limit_kw)


def compare_strategies(
    sessions: pl.DataFrame,
    price: Any,
    *,
    transformer_limit_kw: float,
    period_minutes: float = CALTECH_PERIOD_MINUTES,
    peak_per_kw: float = 0.0,
    baseload_kw: Any = None,
    weights: EVWeights | None = None,
    **v2g: Any,
) -> dict[str, EVResult]:
    """The optimum and both baselines on the same sessions, price, baseload and limit (horizon = ``len(price)``).

    Keys ``optimal`` (:func:`optimize_ev` with ``allow_unmet=True``, so a binding limit yields
    the maximum deliverable energy instead of an infeasibility), ``edf`` and ``uncontrolled``.
    ``weights`` (default: ``EVWeights(peak_per_kw=peak_per_kw)``) and the ``v2g*`` keywords go to the optimum only.
    """
    kw = dict(
        horizon=len(price),
        period_minutes=period_minutes,
        price=price,
        transformer_limit_kw=transformer_limit_kw,
        baseload_kw=baseload_kw,
    )
    w = weights if weights is not None else EVWeights(peak_per_kw=peak_per_kw)
    return {
        "optimal": optimize_ev(sessions, weights=w, allow_unmet=True, **kw, **v2g),
        "edf": earliest_deadline_first(sessions, **kw),
        "uncontrolled": uncontrolled(sessions, **kw),
    }


def apply_port_caps(sessions: pl.DataFrame, caps: float | dict[str, float] | None) -> pl.DataFrame:
    """Sessions with ``max_power_kw`` lowered to their port's cap: one value for every port, or per
    ``station_id`` (ports not in the dict keep the vehicle's maximum). Caps must be > 0."""
    if caps is None:
        return sessions
    if isinstance(caps, dict):
        bad = {k: v for k, v in caps.items() if not (isinstance(v, (int, float)) and v > 0)}
        if bad:
            raise InputError(f"port caps must be > 0 kW, got {bad}")
        cap = pl.col("station_id").replace_strict(caps, default=None, return_dtype=pl.Float64)
    else:
        cap = pl.lit(require_positive(caps, "port cap"))
    return sessions.with_columns(
        pl.min_horizontal("max_power_kw", cap.fill_null(pl.col("max_power_kw"))).alias("max_power_kw")
    )


def weights_from_shares(
    shares: Any,
    sessions: pl.DataFrame,
    price: Any,
    *,
    horizon: int,
    period_minutes: float,
    baseload_kw: Any = None,
) -> EVWeights:
    """:class:`EVWeights` for objective *shares* (``cost``, ``peak``, ``convenience``, e.g. 0.5 / 0.3 / 0.2).

    Each term is divided by a reference on the same inputs, so a share means the same on any site:
    cost by the cost of the requested energy at the mean price, peak by the uncontrolled site peak
    (:func:`uncontrolled`), convenience (kWh x delay in horizons) by the requested kWh. A reference
    that is 0 (free energy, no load) counts as 1.
    """
    prc = as_series(0.0 if price is None else price, "price", horizon)
    kwh = float(sessions["requested_kwh"].sum())
    cost_ref = kwh * float(np.abs(prc).mean()) / 1000.0
    peak_ref = uncontrolled(
        sessions, horizon=horizon, period_minutes=period_minutes, baseload_kw=baseload_kw, price=prc
    ).metrics["site_peak_kw"]
    ref = lambda x: x if x > 0 else 1.0  # noqa: E731
    return EVWeights(
        energy_cost=shares.cost / ref(cost_ref),
        peak_per_kw=shares.peak / ref(peak_ref),
        early_per_kwh=shares.convenience / ref(kwh),
    )


def savings_vs_uncontrolled(results: dict[str, EVResult]) -> dict[str, float]:
    """Money and peak the optimum saves against uncontrolled charging (same sessions, price, baseload)."""
    o, u = results["optimal"].metrics, results["uncontrolled"].metrics
    return {"cost_savings": u["cost"] - o["cost"], "cost_savings_pct": 100.0 * (u["cost"] - o["cost"]) / u["cost"] if u["cost"] else 0.0,
            "peak_reduction_kw": u["site_peak_kw"] - o["site_peak_kw"]}  # fmt: skip


def strategy_tables(
    results: dict[str, EVResult],
    sessions: pl.DataFrame,
    period_start: pl.Series,
    carbon_kg_per_mwh: Any = None,
    period_minutes: float = CALTECH_PERIOD_MINUTES,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Long (schedule, sessions) frames of several strategies' results, labelled by ``strategy``.

    The schedule has one row per (strategy, session, period) with non-zero power, its
    ``station_id`` and the period's start (``period_start[period]``); the sessions frame has the
    per-session totals plus ``arrival_time`` / ``departure_time`` from ``sessions`` and, with a
    carbon intensity per period, ``carbon_kg`` (net grid energy x intensity; V2G exports count negative).
    """
    station = sessions.select("session_id", "station_id")
    times = sessions.select("session_id", "arrival_time", "departure_time")
    sched = pl.concat(
        [
            r.power.join(station, on="session_id").with_columns(pl.lit(name).alias("strategy"))
            for name, r in results.items()
        ]
    )
    sched = sched.with_columns(pl.Series("period_start", period_start.gather(sched["period"].to_numpy())))
    sess = pl.concat([r.sessions.with_columns(pl.lit(name).alias("strategy")) for name, r in results.items()])
    if carbon_kg_per_mwh is not None:
        ci = as_series(carbon_kg_per_mwh, "carbon_kg_per_mwh", period_start.len())
        kg = sched.select(
            "strategy",
            "session_id",
            (pl.col("power_kw") * pl.Series(ci[sched["period"].to_numpy()]) * (period_minutes / 60.0 / 1000.0)).alias(
                "kg"
            ),
        )
        kg = kg.group_by("strategy", "session_id").agg(pl.col("kg").sum().alias("carbon_kg"))
        sess = sess.join(kg, on=["strategy", "session_id"], how="left").with_columns(pl.col("carbon_kg").fill_null(0.0))
    return sched, sess.join(times, on="session_id")


def _prepare(sessions: pl.DataFrame, horizon: int | None, period_minutes: float, baseload_kw: Any, price: Any) -> tuple:
    if horizon is None:
        horizon = int(sessions["departure_period"].max())
    sessions = validate_sessions(sessions, horizon)
    dt = require_positive(period_minutes, "period_minutes") / 60.0
    base = as_series(0.0 if baseload_kw is None else baseload_kw, "baseload_kw", horizon)
    prc = as_series(0.0 if price is None else price, "price", horizon)
    lay = _layout(sessions["arrival_period"].to_numpy(), sessions["departure_period"].to_numpy(), horizon)
    return horizon, sessions, dt, base, prc, lay


def _result(
    sessions: pl.DataFrame,
    lay: _Layout,
    rate: np.ndarray,
    horizon: int,
    dt: float,
    base: np.ndarray,
    prc: np.ndarray,
    limit: float | None,
    *,
    export_price: np.ndarray | None = None,
    wear_cost_per_mwh: float = 0.0,
) -> EVResult:
    rate = np.where(np.abs(rate) < 1e-9, 0.0, rate)
    n_s = sessions.height
    delivered = np.bincount(lay.session, weights=rate * dt, minlength=n_s)
    # money per session-period: imports at the price, V2G exports at the export price less wear
    xp = prc if export_price is None else export_price
    pos, neg = np.clip(rate, 0, None), np.clip(-rate, 0, None)
    money = (pos * prc[lay.period] - neg * (xp[lay.period] - wear_cost_per_mwh)) * dt / 1000.0
    session_cost = np.bincount(lay.session, weights=money, minlength=n_s)
    req = sessions["requested_kwh"].to_numpy()
    ev = np.bincount(lay.period, weights=rate, minlength=horizon)
    site = ev + base
    total_req = float(req.sum())
    metrics = {
        "energy_requested_kwh": total_req,
        "energy_delivered_kwh": float(delivered.sum()),
        "energy_delivered_pct": 100.0 * float(delivered.sum()) / total_req if total_req > 0 else 100.0,
        "sessions_fully_served_pct": 100.0 * float(np.mean(delivered >= req - 1e-6)),
        "ev_peak_kw": float(ev.max(initial=0.0)),
        "site_peak_kw": float(site.max(initial=0.0)),
        "cost": float(money.sum()),
        "cost_per_session": float(money.sum()) / n_s if n_s else 0.0,
        "v2g_export_kwh": float(neg.sum() * dt),
        "v2g_wear_cost": float(neg.sum() * dt / 1000.0 * wear_cost_per_mwh),
    }
    if limit:
        metrics["transformer_peak_utilisation_pct"] = 100.0 * metrics["site_peak_kw"] / limit
        metrics["transformer_mean_utilisation_pct"] = 100.0 * float(site.mean()) / limit
        metrics["limit_violation_kwh"] = float(np.clip(site - limit, 0, None).sum() * dt)
    power = pl.DataFrame(
        {
            "session_id": sessions["session_id"].gather(lay.session),
            "period": lay.period.astype(np.int64),
            "power_kw": rate,
        }
    ).filter(pl.col("power_kw") != 0.0)
    per_session = sessions.select("session_id", "station_id", "requested_kwh").with_columns(
        pl.Series("delivered_kwh", delivered),
        pl.Series("unmet_kwh", np.clip(req - delivered, 0.0, None)),
        pl.Series("cost", session_cost),
    )
    profile = pl.DataFrame(
        {"period": np.arange(horizon, dtype=np.int64), "ev_kw": ev, "baseload_kw": base, "site_kw": site, "price": prc}
    )
    return EVResult(power, per_session, profile, metrics)
