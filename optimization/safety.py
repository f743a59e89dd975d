"""The safety gate: every battery/EV schedule is validated before it reaches a gold table or a device.

An energy-management system does not hand a solver's output to hardware unchecked. :func:`gate_battery`
and :func:`gate_ev` check a schedule against the limits of :class:`~optimization.settings.SafetySettings`
and, if any rule is broken, replace it by a *safe fallback* and say why (:class:`GateResult`); the asset
then publishes the fallback and raises an alert through the batch alert path.

Battery rules (``Violation.rule``), with ``P`` the nameplate power and ``E`` the capacity:

* ``power_rating``: 0 <= charge, discharge <= P (plus the regulation reserve, if any, within P);
* ``derating``: charge, discharge (+ reserve) <= P x derate(ambient temperature) (:func:`derate_factor`);
* ``ramp``: |net(t) - net(t-1)| <= ramp limit, net = discharge - charge, net(-1) = the initial power;
* ``soc_band``: the SOC *recomputed from the powers* (the schedule's own SOC column is not trusted) stays
  in [floor(t), soc_max x E], the floor being soc_min + reserve (:func:`soc_floor_kwh`: ramped up at the
  fastest feasible charge when the day starts below it); ``soc_column`` if the column disagrees with it;
* ``export_limit`` / ``transformer_limit``: the battery must not push site export / import above the limit
  where the no-battery baseline is within it (nor above the baseline where the baseline already breaks it).

Battery fallback: **hold** (no charge, no discharge, SOC stays where the day starts); if the day starts
below the reserve floor, **charge_only**: a constant rate r = min(ramp limit, derated power, transformer
headroom) until the floor is reached. Every step change is <= r, so the fallback respects the ramp limit,
never discharges and never adds import above the limit; it passes the same checks (asserted).

EV rules: ``power_rating`` (0 <= power <= the session's/port's max; discharge only for V2G-opted-in sessions,
within their discharge cap; no power outside the session window), ``soc_band`` (a car's cumulative energy
within [-V2G buffer (0 if not opted in), requested]), ``transformer_limit`` (EV + baseload <= limit) and
``export_limit``. Ramp and temperature derating are battery rules (chargers follow set-points at once).
EV fallback: **charge_only**: earliest-deadline-first charging within the limit, port caps and requests
(:func:`optimization.ev.earliest_deadline_first`), no V2G.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from optimization._inputs import as_series
from optimization.settings import SafetySettings

BATTERY_RULES = ("power_rating", "derating", "ramp", "soc_band", "soc_column", "export_limit", "transformer_limit")
EV_RULES = ("power_rating", "soc_band", "transformer_limit", "export_limit")


@dataclass(frozen=True)
class Violation:
    """One broken rule at one period (or session): the value found and the limit it broke."""

    rule: str
    period: int
    value: float
    limit: float
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.rule} at period {self.period}: {self.value:.6g} vs limit {self.limit:.6g}{' (' + self.detail + ')' if self.detail else ''}"


@dataclass
class GateResult:
    """What the gate decided: ``published`` is the schedule to publish (the input, or the fallback)."""

    published: Any
    violations: list[Violation] = field(default_factory=list)
    fallback: str | None = None  # None = passed; "hold" / "charge_only"
    check_seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.violations

    @property
    def status(self) -> str:
        return "passed" if self.passed else f"fallback:{self.fallback}"

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for v in self.violations:
            out[v.rule] = out.get(v.rule, 0) + 1
        return out


# --------------------------------------------------------------------------------------------
# limits shared by the battery model and the gate (one definition each)
# --------------------------------------------------------------------------------------------
def derate_factor(ambient_c: Any, s: SafetySettings, n: int) -> np.ndarray:
    """Per-period fraction of the power rating usable at the ambient temperature (None = no derating).

    1 up to ``derate_start_c``, linear down to ``derate_min_frac`` at ``derate_full_c``, flat above.
    """
    if ambient_c is None:
        return np.ones(n)
    t = as_series(ambient_c, "ambient_c", n)
    frac = (t - s.derate_start_c) / (s.derate_full_c - s.derate_start_c)
    return 1.0 - (1.0 - s.derate_min_frac) * np.clip(frac, 0.0, 1.0)


def ramp_kw_per_period(power_kw: float, s: SafetySettings, period_minutes: float) -> float | None:
    """Largest change of net power between consecutive periods, kW (None = unlimited)."""
    if s.ramp_frac_per_hour is None:
        return None
    return s.ramp_frac_per_hour * power_kw * period_minutes / 60.0


def recovery_charge_kw(
    spec: Any,
    s: SafetySettings,
    power_cap_kw: np.ndarray,
    ramp_kw: float | None,
    dt_h: float,
    baseline_grid_kw: Any = None,
) -> np.ndarray:
    """Charge-only plan from the day's starting SOC up to soc_min + reserve (zeros if it starts there).

    A constant rate r = min(ramp limit, largest derated power), lowered in a period to the derated power
    and to the transformer headroom (limit - baseline import) there: every step change is <= r, so the
    plan keeps the ramp limit, never discharges and never adds import above the limit.
    """
    n = power_cap_kw.size
    E = spec.energy_kwh
    need = min(spec.soc_min_frac + s.soc_reserve_frac, spec.soc_max_frac) * E - spec.soc_initial_frac * E
    cap = power_cap_kw.copy()
    if baseline_grid_kw is not None and s.transformer_limit_kw is not None:
        cap = np.minimum(
            cap, np.clip(s.transformer_limit_kw - as_series(baseline_grid_kw, "baseline_grid_kw", n), 0.0, None)
        )
    r = float(cap.max(initial=0.0)) if ramp_kw is None else min(float(cap.max(initial=0.0)), ramp_kw)
    ch = np.zeros(n)
    for t in range(n):
        if need <= 1e-12:
            break
        ch[t] = max(0.0, min(r, cap[t], need / (spec.charge_efficiency * dt_h)))
        need -= spec.charge_efficiency * dt_h * ch[t]
    return ch


def soc_floor_kwh(
    spec: Any,
    s: SafetySettings,
    power_cap_kw: np.ndarray,
    ramp_kw: float | None,
    dt_h: float,
    baseline_grid_kw: Any = None,
) -> np.ndarray:
    """Per-period lowest allowed SOC (kWh): soc_min + reserve; a day starting below it follows
    :func:`recovery_charge_kw` (so the model stays feasible and the charge-only fallback meets the floor exactly)."""
    plan = recovery_charge_kw(spec, s, power_cap_kw, ramp_kw, dt_h, baseline_grid_kw)
    E = spec.energy_kwh
    target = min(spec.soc_min_frac + s.soc_reserve_frac, spec.soc_max_frac) * E
    reach = spec.soc_initial_frac * E + spec.charge_efficiency * dt_h * np.cumsum(plan)
    return np.maximum(spec.soc_min_frac * E, np.minimum(target, reach))


def battery_model_limits(
    spec: Any, s: SafetySettings, n: int, period_minutes: float, ambient_c: Any = None, baseline_grid_kw: Any = None
) -> dict[str, Any]:
    """The model-side constraints of the safety settings, as keyword arguments of ``optimize_battery``.

    Ramp limit, SOC reserve floor and temperature-derated power cap; export/transformer limits stay
    gate rules (a site whose PV alone breaks the export limit must not make the battery model infeasible).
    """
    cap = spec.power_kw * derate_factor(ambient_c, s, n)
    ramp = ramp_kw_per_period(spec.power_kw, s, period_minutes)
    floor = soc_floor_kwh(spec, s, cap, ramp, period_minutes / 60.0, baseline_grid_kw)
    return {"power_cap_kw": cap, "ramp_kw_per_period": ramp, "soc_floor_kwh": floor}


# --------------------------------------------------------------------------------------------
# battery
# --------------------------------------------------------------------------------------------
def check_battery(
    charge_kw: Any,
    discharge_kw: Any,
    spec: Any,
    s: SafetySettings,
    *,
    period_minutes: float,
    soc_kwh: Any = None,
    reserve_kw: Any = None,
    baseline_grid_kw: Any = None,
    ambient_c: Any = None,
    initial_power_kw: float = 0.0,
) -> list[Violation]:
    """Every violation of the battery rules (module docstring) by one schedule; [] = safe.

    ``baseline_grid_kw``: site grid exchange without the battery (load - PV, + = import); without it
    the export/transformer rules are not checked (pure arbitrage has no site meter).
    """
    ch = as_series(charge_kw, "charge_kw")
    n = ch.size
    dis = as_series(discharge_kw, "discharge_kw", n)
    res = np.zeros(n) if reserve_kw is None else as_series(reserve_kw, "reserve_kw", n)
    dt = period_minutes / 60.0
    tk, te = s.tolerance_kw, s.tolerance_kwh
    P = spec.power_kw
    lim = battery_model_limits(spec, s, n, period_minutes, ambient_c, baseline_grid_kw)
    cap = lim["power_cap_kw"]
    out: list[Violation] = []

    def flag(rule: str, bad: np.ndarray, value: np.ndarray, limit: np.ndarray | float, detail: str) -> None:
        limit = np.broadcast_to(np.asarray(limit, dtype=float), (n,))
        out.extend(Violation(rule, int(k), float(value[k]), float(limit[k]), detail) for k in np.flatnonzero(bad))

    flag("power_rating", ch < -tk, ch, 0.0, "negative charge")
    flag("power_rating", dis < -tk, dis, 0.0, "negative discharge")
    for name, x in (
        ("charge", ch),
        ("discharge", dis),
        ("net discharge + reserve", dis - ch + res),
        ("net charge + reserve", ch - dis + res),
    ):
        flag("power_rating", x > P + tk, x, P, f"{name} above the rating")
        flag("derating", (x <= P + tk) & (x > cap + tk), x, cap, f"{name} above the temperature-derated rating")
    ramp = lim["ramp_kw_per_period"]
    if ramp is not None:
        net = dis - ch
        step = np.abs(np.diff(np.concatenate([[initial_power_kw], net])))
        flag("ramp", step > ramp + tk, step, ramp, "change of net power from the previous period")
    e0 = spec.soc_initial_frac * spec.energy_kwh
    soc = e0 + np.cumsum(spec.charge_efficiency * dt * ch - dt / spec.discharge_efficiency * dis)
    floor, top = lim["soc_floor_kwh"], spec.soc_max_frac * spec.energy_kwh
    flag("soc_band", soc < floor - te, soc, floor, "SOC (from the powers) below soc_min + reserve")
    flag("soc_band", soc > top + te, soc, top, "SOC (from the powers) above soc_max")
    if soc_kwh is not None:
        col = as_series(soc_kwh, "soc_kwh", n)
        flag(
            "soc_column",
            np.abs(col - soc) > te + 1e-6 * spec.energy_kwh,
            col,
            soc,
            "SOC column disagrees with the powers",
        )
    if baseline_grid_kw is not None:
        base = as_series(baseline_grid_kw, "baseline_grid_kw", n)
        grid = base + ch - dis
        if s.transformer_limit_kw is not None:
            allowed = np.maximum(s.transformer_limit_kw, base)
            flag("transformer_limit", grid > allowed + tk, grid, allowed, "site import with the battery")
        if s.export_limit_kw is not None:
            allowed = np.maximum(s.export_limit_kw, -base)
            flag("export_limit", -grid > allowed + tk, -grid, allowed, "site export with the battery")
    return sorted(out, key=lambda v: (v.period, v.rule))


def battery_fallback(
    spec: Any, s: SafetySettings, n: int, *, period_minutes: float, baseline_grid_kw: Any = None, ambient_c: Any = None
) -> tuple[str, np.ndarray, np.ndarray]:
    """(kind, charge, discharge) of the safe fallback: hold, or charge_only up to the reserve floor (module docstring)."""
    cap = spec.power_kw * derate_factor(ambient_c, s, n)
    ch = recovery_charge_kw(
        spec, s, cap, ramp_kw_per_period(spec.power_kw, s, period_minutes), period_minutes / 60.0, baseline_grid_kw
    )
    return ("charge_only" if ch.any() else "hold"), ch, np.zeros(n)


def gate_battery(
    result: Any, spec: Any, s: SafetySettings, *, period_minutes: float, ambient_c: Any = None
) -> GateResult:
    """Check an :class:`~optimization.battery.BatteryResult`; on any violation publish the fallback instead.

    The fallback's money/carbon breakdown is recomputed on the same inputs
    (:func:`optimization.battery.with_schedule`), so the daily table reports what will actually run.
    """
    from optimization.battery import with_schedule

    t0 = time.perf_counter()
    sch = result.schedule
    base = result.inputs.get("net") if result.inputs else None
    reserve = sch["reserve_kw"] if "reserve_kw" in sch.columns else None
    found = check_battery(sch["charge_kw"], sch["discharge_kw"], spec, s, period_minutes=period_minutes, soc_kwh=sch["soc_kwh"],
                          reserve_kw=reserve, baseline_grid_kw=base, ambient_c=ambient_c)  # fmt: skip
    if not found:
        return GateResult(result, [], None, time.perf_counter() - t0)
    kind, ch, dis = battery_fallback(
        spec, s, sch.height, period_minutes=period_minutes, baseline_grid_kw=base, ambient_c=ambient_c
    )
    again = check_battery(ch, dis, spec, s, period_minutes=period_minutes, baseline_grid_kw=base, ambient_c=ambient_c)
    if again:  # the fallback is safe by construction; if this ever fires, the construction is wrong
        raise AssertionError(f"battery fallback {kind} breaks the safety rules: {again[0]}")
    return GateResult(with_schedule(result, spec, ch, dis), found, kind, time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------
# EV
# --------------------------------------------------------------------------------------------
def check_ev(
    power: pl.DataFrame,
    sessions: pl.DataFrame,
    s: SafetySettings,
    *,
    period_minutes: float,
    horizon: int,
    transformer_limit_kw: float | None,
    baseload_kw: Any = None,
    v2g_buffer_kwh: float = 0.0,
    v2g_max_discharge_kw: float | None = None,
) -> list[Violation]:
    """Every violation of the EV rules by ``power`` (session_id, period, power_kw; negative = V2G).

    ``sessions`` carries ``max_power_kw`` (port caps already applied) and, for V2G, a boolean
    ``v2g_opt_in``; ``Violation.period`` is the period, or for ``soc_band`` the period the car's
    energy left its band.
    """
    dt = period_minutes / 60.0
    tk, te = s.tolerance_kw, s.tolerance_kwh
    opt = pl.col("v2g_opt_in") if "v2g_opt_in" in sessions.columns else pl.lit(False)
    meta = sessions.select(
        "session_id",
        "arrival_period",
        "departure_period",
        "requested_kwh",
        "max_power_kw",
        opt.fill_null(False).alias("v2g"),
    )
    p = power.join(meta, on="session_id", how="left")
    out: list[Violation] = []
    unknown = p.filter(pl.col("arrival_period").is_null())
    out += [
        Violation("power_rating", int(r["period"]), float(r["power_kw"]), 0.0, f"unknown session {r['session_id']}")
        for r in unknown.iter_rows(named=True)
    ]
    p = p.filter(pl.col("arrival_period").is_not_null())
    dis_cap = pl.col("max_power_kw") if v2g_max_discharge_kw is None else pl.lit(float(v2g_max_discharge_kw))
    rules = [
        ((pl.col("period") < pl.col("arrival_period")) | (pl.col("period") >= pl.col("departure_period")))
        & (pl.col("power_kw").abs() > tk),
        pl.col("power_kw") > pl.col("max_power_kw") + tk,
        (pl.col("power_kw") < -tk) & ~pl.col("v2g"),
        (pl.col("power_kw") < -dis_cap - tk) & pl.col("v2g"),
    ]
    what = [
        "power outside the session window",
        "above the session/port maximum",
        "discharge without V2G opt-in",
        "discharge above the V2G cap",
    ]
    limits = [pl.lit(0.0), pl.col("max_power_kw"), pl.lit(0.0), -dis_cap]
    for bad, detail, lim in zip(rules, what, limits):
        for r in p.filter(bad).with_columns(lim.alias("_lim")).iter_rows(named=True):
            out.append(
                Violation(
                    "power_rating",
                    int(r["period"]),
                    float(r["power_kw"]),
                    float(r["_lim"]),
                    f"session {r['session_id']}: {detail}",
                )
            )
    cum = p.sort("session_id", "period").with_columns((pl.col("power_kw") * dt).cum_sum().over("session_id").alias("e"))
    low = pl.when(pl.col("v2g")).then(-float(v2g_buffer_kwh)).otherwise(0.0)
    for r in (
        cum.filter((pl.col("e") < low - te) | (pl.col("e") > pl.col("requested_kwh") + te))
        .group_by("session_id")
        .first()
        .iter_rows(named=True)
    ):
        lim = r["requested_kwh"] if r["e"] > r["requested_kwh"] else (-v2g_buffer_kwh if r["v2g"] else 0.0)
        out.append(
            Violation(
                "soc_band",
                int(r["period"]),
                float(r["e"]),
                float(lim),
                f"session {r['session_id']}: energy outside [buffer, request]",
            )
        )
    if horizon > 0:
        ev = np.bincount(p["period"].to_numpy(), weights=p["power_kw"].to_numpy(), minlength=horizon)[:horizon]
        site = ev + as_series(0.0 if baseload_kw is None else baseload_kw, "baseload_kw", horizon)
        if transformer_limit_kw is not None:
            out += [Violation("transformer_limit", int(t), float(site[t]), float(transformer_limit_kw), "EV + baseload")
                    for t in np.flatnonzero(site > transformer_limit_kw + tk)]  # fmt: skip
        if s.export_limit_kw is not None:
            out += [Violation("export_limit", int(t), float(-site[t]), float(s.export_limit_kw), "site export")
                    for t in np.flatnonzero(-site > s.export_limit_kw + tk)]  # fmt: skip
    return sorted(out, key=lambda v: (v.period, v.rule))


def gate_ev(
    result: Any,
    sessions: pl.DataFrame,
    s: SafetySettings,
    *,
    period_minutes: float,
    transformer_limit_kw: float | None,
    baseload_kw: Any = None,
    price: Any = None,
    v2g_buffer_kwh: float = 0.0,
    v2g_max_discharge_kw: float | None = None,
) -> GateResult:
    """Check an :class:`~optimization.ev.EVResult`; on any violation publish EDF charge-only charging within the limits."""
    from optimization.ev import earliest_deadline_first

    t0 = time.perf_counter()
    horizon = result.profile.height
    kw = dict(period_minutes=period_minutes, horizon=horizon, baseload_kw=baseload_kw)
    found = check_ev(result.power, sessions, s, transformer_limit_kw=transformer_limit_kw, v2g_buffer_kwh=v2g_buffer_kwh,
                     v2g_max_discharge_kw=v2g_max_discharge_kw, **kw)  # fmt: skip
    if not found:
        return GateResult(result, [], None, time.perf_counter() - t0)
    limit = float("inf") if transformer_limit_kw is None else transformer_limit_kw
    fb = earliest_deadline_first(sessions, transformer_limit_kw=limit, price=price, **kw)
    again = check_ev(fb.power, sessions, s, transformer_limit_kw=transformer_limit_kw, **kw)
    if again:
        raise AssertionError(f"EV fallback charge_only breaks the safety rules: {again[0]}")
    return GateResult(fb, found, "charge_only", time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------
# alert payload (plain dicts: the asset turns them into the bridge's Alert)
# --------------------------------------------------------------------------------------------
def gate_alert(
    gate: GateResult, *, alertname: str, asset_type: str, asset_id: str, partition: str, table: str
) -> dict[str, Any]:
    """Labels, annotations and an idempotency key of the alert a replaced schedule raises."""
    counts = gate.counts()
    first = gate.violations[0]
    summary = (f"{alertname}: the {asset_type} schedule of {asset_id} for {partition} broke {sum(counts.values())} safety check(s) "
               f"({', '.join(f'{k} x{v}' for k, v in sorted(counts.items()))}); published the safe fallback '{gate.fallback}' instead")  # fmt: skip
    return {
        "labels": {
            "alertname": alertname,
            "severity": "warning",
            "asset_type": asset_type,
            "asset_id": asset_id,
            "source": "batch",
        },
        "annotations": {
            "summary": summary,
            "first_violation": str(first),
            "fallback": str(gate.fallback),
            "table": table,
            "partition": partition,
            "rules": ",".join(sorted(counts)),
        },  # fmt: skip
        "key": f"safety:{table}:{asset_id}:{partition}:{','.join(sorted(counts))}",
    }
