"""Inputs of a daily schedule on a local day: periods, tariff and carbon, load and PV, EV sessions.

The daily optimisation assets (``assets/optimization.py``) read the lake and hand the frames to
these functions; nothing here reads or writes the lake or imports Dagster.

* :func:`day_periods` / :func:`periods_from_midnight`: UTC period starts of a local day (23 or
  25 hours on DST days).
* :func:`time_of_use`: a time-of-use energy tariff and a carbon-intensity profile by the local
  hour each period starts in (configuration, not market data: gridlake has no price feed).
* :func:`newest_issue_p50`: the hourly p50 of a gold forecast table, newest issue per hour.
* :func:`same_hour_last_week`: the weekly seasonal naive from ``gold_load_hourly`` (fallback).
* :func:`gross_load`: gross site load from the metered net load and the PV forecast.
* :func:`load_peak`: the checked peak of a load input (0 all day refused, except for the battery).
* :func:`ev_sessions_for_day`: the bundled real Caltech sessions re-timed to a local day.
* :func:`opf_generation`: emission factors and renewable forecasts of a DC-OPF case's generators.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from contracts import SYSTEM_ENTITY as SYSTEM  # entity_id of the whole utility (level system)
from contracts import day_bounds_utc
from contracts.profile import DispatchSettings, RenewableUnits, Tariffs
from optimization._inputs import period_starts
from optimization.errors import InputError
from optimization.ev import CALTECH_PERIOD_MINUTES, load_caltech_sessions


# --------------------------------------------------------------------------------------------
# periods
# --------------------------------------------------------------------------------------------
def periods_from_midnight(day: dt.date, tz: str, n: int, minutes: float) -> pl.Series:
    """UTC starts (``period_start``, Datetime us UTC) of ``n`` periods of ``minutes`` from local midnight of ``day``.

    The periods run on absolute time, so they may run past the local day (EV sessions departing
    after midnight) and a DST day holds 23 or 25 hours of them.
    """
    return period_starts(day_bounds_utc(day, tz)[0], n, minutes)


def day_periods(day: dt.date, tz: str, minutes: int) -> pl.Series:
    """UTC starts of the ``minutes``-long periods of local day ``day`` (23/25 hours on DST days)."""
    start, end = day_bounds_utc(day, tz)
    return periods_from_midnight(day, tz, int((end - start) / dt.timedelta(minutes=minutes)), minutes)


# --------------------------------------------------------------------------------------------
# tariff and carbon
# --------------------------------------------------------------------------------------------
def check_local_hours(hours: Sequence[int]) -> Sequence[int]:
    """``hours`` unchanged if every one is a local hour 0..23, else :class:`InputError` naming the bad ones."""
    bad = [h for h in hours if not 0 <= h <= 23]
    if bad:
        raise InputError(f"tariff hours must be local hours 0..23, got {bad}")
    return hours


def check_carbon_profile(values: Sequence[float]) -> Sequence[float]:
    """``values`` unchanged if it is one flat or 24 local-hour intensities, finite and >= 0."""
    if len(values) not in (1, 24):
        raise InputError(f"carbon_kg_per_mwh needs 1 (flat) or 24 (local-hour profile) values, got {len(values)}")
    if any(not np.isfinite(x) or x < 0 for x in values):
        raise InputError(f"carbon_kg_per_mwh values must be finite and >= 0, got {list(values)}")
    return values


def time_of_use(
    stamps: pl.Series,
    tz: str,
    *,
    off_peak_per_mwh: float,
    shoulder_per_mwh: float,
    peak_per_mwh: float,
    shoulder_hours: Sequence[int],
    peak_hours: Sequence[int],
    carbon_kg_per_mwh: Sequence[float],
) -> tuple[np.ndarray, np.ndarray]:
    """(price $/MWh, carbon kg/MWh) for UTC period starts, by the local hour each period starts in.

    A period is priced at the peak rate if its local hour is in ``peak_hours`` (peak wins over
    shoulder), else at the shoulder rate if in ``shoulder_hours``, else off-peak. The carbon
    intensity is flat (one value) or a 24-value profile indexed by local hour.
    """
    check_local_hours(shoulder_hours), check_local_hours(peak_hours)
    profile = np.asarray(check_carbon_profile(carbon_kg_per_mwh), dtype=float)
    hour = stamps.dt.convert_time_zone(tz).dt.hour().to_numpy()
    price = np.full(hour.size, off_peak_per_mwh, dtype=float)
    price[np.isin(hour, shoulder_hours)] = shoulder_per_mwh
    price[np.isin(hour, peak_hours)] = peak_per_mwh
    carbon = np.full(hour.size, profile[0]) if profile.size == 1 else profile[hour]
    return price, carbon


def tariff_prices(tariffs: Tariffs, stamps: pl.Series, tz: str) -> tuple[np.ndarray, np.ndarray]:
    """(price $/MWh, carbon kg/MWh) of the utility profile's wholesale time-of-use tariff for UTC period
    starts: peak in the profile's one peak window, shoulder in its shoulder hours, off-peak otherwise."""
    w = tariffs.wholesale
    return time_of_use(
        stamps,
        tz,
        off_peak_per_mwh=w.off_peak_per_mwh,
        shoulder_per_mwh=w.shoulder_per_mwh,
        peak_per_mwh=w.peak_per_mwh,
        shoulder_hours=w.shoulder_hours,
        peak_hours=tariffs.peak_window.hours,
        carbon_kg_per_mwh=tariffs.carbon_kg_per_mwh,
    )


# --------------------------------------------------------------------------------------------
# load and PV
# --------------------------------------------------------------------------------------------
def newest_issue_p50(
    forecasts: pl.DataFrame, entity_id: str, day: dt.date, tz: str, source: str = "forecast"
) -> tuple[np.ndarray | None, str]:
    """Hourly p50 of ``entity_id`` over local ``day`` from gold forecast rows, and a description.

    ``forecasts`` holds rows of a gold forecast table (entity_id, issued_at, period_start, p50,
    model, model_version), typically the partitions day-3..day. For each hour of the day the row
    of the newest issue covering it wins. Returns ``(None, why)`` if the rows do not cover every
    hour of the day (the caller then falls back and says so). ``source`` names the table in the
    description.
    """
    hours = day_periods(day, tz, 60)
    f = (
        forecasts.filter((pl.col("entity_id") == entity_id) & pl.col("period_start").is_in(hours.implode()))
        .sort("issued_at")
        .group_by("period_start")
        .last()
        .sort("period_start")
    )
    if f.height < hours.len():
        return None, f"{source} covers {f.height}/{hours.len()} hours of {day} for entity {entity_id!r}"
    issues = sorted({str(t) for t in f["issued_at"].to_list()})
    models = sorted({f"{m}:{v}" for m, v in f.select("model", "model_version").iter_rows()})
    return (
        f["p50"].to_numpy(),
        f"{source} p50 of {entity_id!r}, newest issue per hour (issued {', '.join(issues)}; {', '.join(models)})",
    )


def same_hour_last_week(hourly: pl.DataFrame, entity_id: str, day: dt.date, tz: str) -> pl.DataFrame:
    """Weekly seasonal naive: ``mean_kw`` at the same *local* hour 7 days before each hour of ``day``.

    ``hourly`` holds ``gold_load_hourly`` rows (level, entity_id, period_start, mean_kw) of the
    day a week earlier; for :data:`SYSTEM` the feeders are summed. Returns one row per hour of
    ``day`` (period_start, mean_kw), with a null ``mean_kw`` where last week lacks that hour.
    """
    if entity_id == SYSTEM:
        h = hourly.filter(pl.col("level") == "feeder").group_by("period_start").agg(pl.col("mean_kw").sum())
    else:
        h = hourly.filter(pl.col("entity_id") == entity_id).select("period_start", "mean_kw")
    shifted = h.select(
        pl.col("period_start")
        .dt.convert_time_zone(tz)
        .dt.offset_by("7d")
        .dt.convert_time_zone("UTC")
        .alias("period_start"),
        "mean_kw",
    )
    return day_periods(day, tz, 60).to_frame().join(shifted, on="period_start", how="left")


def gross_load(net_kw: np.ndarray, pv_kw: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(gross load, PV) in kW from the metered net load and a PV forecast (None = no PV: zeros).

    Meters measure net load (imports minus rooftop exports), so gross = net + PV. PV is clipped
    at 0, and so is the gross load: independent p50s can make net + PV dip below 0 at noon.
    """
    pv = np.zeros_like(net_kw, dtype=float) if pv_kw is None else np.clip(pv_kw, 0.0, None)
    return np.clip(net_kw + pv, 0.0, None), pv


def load_peak(load_kw: np.ndarray, *, consumer: str, entity_id: str, day: dt.date, allow_zero: bool = False) -> float:
    """The day's peak (kW) of a load input, checked: every value finite and >= 0, and the peak > 0.

    The schedules that take their *shape* from the load (the OPF's bus loads, the UC's system load,
    the EV site's baseload) divide by this peak, so a load that is 0 all day is an
    :class:`~optimization.errors.InputError` naming ``consumer`` (the asset), ``entity_id`` and ``day``.
    ``allow_zero=True`` is for the battery, which arbitrates on price without any load: 0.0 comes back.
    """
    load = np.asarray(load_kw, dtype=float)
    if load.size == 0 or not np.isfinite(load).all() or (load < 0).any():
        bad = "no values" if load.size == 0 else "non-finite or negative values"
        raise InputError(f"{consumer} {day}: the load input of {entity_id!r} has {bad}")
    peak = float(load.max())
    if peak > 0 or allow_zero:
        return peak
    raise InputError(f"{consumer} {day}: the load input of {entity_id!r} is 0 all day; cannot derive a load shape")


# --------------------------------------------------------------------------------------------
# EV sessions
# --------------------------------------------------------------------------------------------
def ev_sessions_for_day(day: dt.date, tz: str, sessions: pl.DataFrame | None = None) -> tuple[pl.DataFrame, dt.date]:
    """Real Caltech sessions of a March 2019 day with the same weekday, re-timed to local ``day``.

    Workplace charging is weekly-periodic, so the weekday is kept; the candidate March days rotate
    week by week so consecutive weeks do not repeat. Sessions keep their offsets from local
    midnight (periods of 5 minutes of elapsed time), so local clock times are kept except after the
    clock change on the two DST days, where they shift by that hour; sessions running past midnight
    keep their length. ``sessions``
    defaults to :func:`optimization.ev.load_caltech_sessions` (periods counted from 2019-03-01).
    Returns the day's sessions with periods from local midnight of ``day`` and UTC
    ``arrival_time`` / ``departure_time``, and the source date.
    """
    s = load_caltech_sessions() if sessions is None else sessions
    candidates = [dt.date(2019, 3, d) for d in range(1, 32) if dt.date(2019, 3, d).weekday() == day.weekday()]
    src = candidates[(day.toordinal() // 7) % len(candidates)]
    per_day = 24 * 60 // CALTECH_PERIOD_MINUTES
    d0 = (src.day - 1) * per_day
    sub = s.filter((pl.col("arrival_period") >= d0) & (pl.col("arrival_period") < d0 + per_day))
    sub = sub.with_columns(pl.col("arrival_period") - d0, pl.col("departure_period") - d0)
    midnight = day_bounds_utc(day, tz)[0]
    to_ts = lambda c: (pl.lit(midnight) + pl.duration(minutes=pl.col(c) * CALTECH_PERIOD_MINUTES)).cast(
        pl.Datetime("us", "UTC")
    )  # noqa: E731
    return sub.with_columns(
        to_ts("arrival_period").alias("arrival_time"), to_ts("departure_period").alias("departure_time")
    ), src


# --------------------------------------------------------------------------------------------
# hourly inputs on shorter periods; ambient temperature
# --------------------------------------------------------------------------------------------
def hourly_to_periods(hourly: np.ndarray, n: int, minutes: float) -> np.ndarray:
    """``n`` periods of ``minutes`` from an hourly series starting at the same instant; past its end the
    series repeats from its first hour (a day's profile stands in for the small hours after midnight)."""
    per_h = 60.0 / minutes
    if per_h != int(per_h) or per_h < 1:
        raise InputError(f"period length {minutes} min must divide an hour")
    return np.resize(np.repeat(np.asarray(hourly, dtype=float), int(per_h)), n)


def persistence_temperature(weather: pl.DataFrame, day: dt.date, tz: str) -> tuple[np.ndarray | None, str]:
    """Hourly ambient temperature for local ``day``: the mean ``temp_air_c`` of all stations at the same
    local hour the day before (persistence, the usual day-ahead fallback without a weather forecast).

    ``weather``: ``silver_weather`` rows (observation_time UTC, temp_air_c) of the day before.
    Returns ``(None, why)`` if any hour is missing (the caller then applies no derating and says so).
    """
    if weather.height == 0 or "temp_air_c" not in weather.columns:
        return None, "no silver_weather rows for the day before"
    prev = (
        weather.filter(pl.col("temp_air_c").is_not_null())
        .group_by(pl.col("observation_time").dt.convert_time_zone(tz).dt.hour().alias("hour"))
        .agg(pl.col("temp_air_c").mean())
    )
    hours = day_periods(day, tz, 60).dt.convert_time_zone(tz).dt.hour().alias("hour").to_frame()
    got = hours.join(prev, on="hour", how="left")
    if got["temp_air_c"].null_count():
        return (
            None,
            f"silver_weather of {day - dt.timedelta(days=1)} lacks {got['temp_air_c'].null_count()} local hour(s)",
        )
    return got[
        "temp_air_c"
    ].to_numpy(), f"persistence: silver_weather mean temp_air_c of {day - dt.timedelta(days=1)} by local hour"


# --------------------------------------------------------------------------------------------
# DC-OPF generation: types, emission factors, renewable caps
# --------------------------------------------------------------------------------------------
@dataclass
class OPFGeneration:
    """What :func:`opf_generation` derives for one case and day (ppc generator rows throughout)."""

    #: the case with the renewable generators' costs set to zero (the input is not changed)
    ppc: dict[str, Any]
    #: generator type per ppc gen row (``merit_types`` for thermal rows, ``solar`` / ``wind``)
    types: list[str]
    #: t CO2/MWh per ppc gen row, from the type
    co2_t_per_mwh: np.ndarray
    #: renewable gen row -> hourly forecast (MW), the cap of its output
    forecast_mw: dict[int, np.ndarray]
    #: where the emission factors and the renewable caps came from, human-readable
    source: str


def merit_order_types(ppc: dict[str, Any], thermal: np.ndarray, dispatch: DispatchSettings) -> list[str]:
    """Types of the ``thermal`` gen rows of a case without fuel data: sorted by marginal cost at mid output
    (cheapest first), each takes the ``merit_types`` entry whose share of thermal capacity covers its midpoint."""
    from optimization.dcopf import COST, MODEL, NCOST, PMAX, PMIN, _poly

    gen, gencost = np.asarray(ppc["gen"], dtype=float), np.asarray(ppc["gencost"], dtype=float)
    mc = np.empty(thermal.size)
    for j, g in enumerate(thermal):
        row = gencost[g]
        if row[MODEL] == 1:  # piecewise linear: mean slope over its points
            n = int(row[NCOST])
            x, y = row[COST : COST + 2 * n : 2], row[COST + 1 : COST + 2 * n : 2]
            mc[j] = (y[-1] - y[0]) / (x[-1] - x[0]) if x[-1] > x[0] else 0.0
        else:
            _, c1, c2 = _poly(row)
            mc[j] = c1 + c2 * (gen[g, PMIN] + gen[g, PMAX])
    cap = np.clip(gen[thermal, PMAX], 0.0, None)
    order = np.argsort(mc, kind="stable")
    mid = (np.cumsum(cap[order]) - 0.5 * cap[order]) / max(float(cap.sum()), 1e-12)
    bounds = np.cumsum([m.capacity_share for m in dispatch.merit_types])
    names = [m.type for m in dispatch.merit_types]
    out = [""] * thermal.size
    for rank, j in enumerate(order):
        out[j] = names[min(int(np.searchsorted(bounds, mid[rank], side="left")), len(names) - 1)]
    return out


def opf_generation(
    ppc: dict[str, Any], dispatch: DispatchSettings, case_name: str, solar_mw: np.ndarray | None, hours: int
) -> OPFGeneration:
    """Generator types, emission factors and renewable caps of a DC-OPF case for ``hours`` hours.

    Renewable generators are the case's entry in ``dispatch.renewables`` (none if it has no entry). Solar:
    ``solar_mw`` (the utility's PV forecast on the case's scale, one value per hour) split over the solar
    generators by Pmax, each capped at its Pmax; ``None`` (no PV forecast) caps solar at 0, the
    conservative reading: energy nobody forecast is not scheduled. Wind: gridlake has no wind forecast
    table, so a flat ``wind_capacity_factor`` x Pmax (the documented fallback). Renewables run at zero
    marginal cost; thermal generators are typed by :func:`merit_order_types`.
    """
    from optimization.dcopf import COST, GEN_STATUS, MODEL, PMAX

    gen = np.asarray(ppc["gen"], dtype=float)
    n_gen = gen.shape[0]
    units = dispatch.renewables.get(case_name, RenewableUnits())
    bad = [g for g in units.solar + units.wind if g >= n_gen]
    if bad:
        raise InputError(f"dispatch.renewables[{case_name!r}]: generator(s) {bad} do not exist (the case has {n_gen})")
    types = [""] * n_gen
    for kind, rows in (("solar", units.solar), ("wind", units.wind)):
        for g in rows:
            types[g] = kind
    thermal = np.array([g for g in range(n_gen) if types[g] == ""], dtype=np.int64)
    for g, name in zip(thermal, merit_order_types(ppc, thermal, dispatch)):
        types[g] = name
    factors = dispatch.emission_factors_t_per_mwh
    co2 = np.array([factors[t] for t in types], dtype=float)
    forecast: dict[int, np.ndarray] = {}
    solar = np.array(units.solar, dtype=np.int64)
    if solar.size:
        pmax = np.where(gen[solar, GEN_STATUS] > 0, np.clip(gen[solar, PMAX], 0.0, None), 0.0)
        if solar_mw is None:
            total = np.zeros(hours)
        else:
            total = np.clip(np.asarray(solar_mw, dtype=float), 0.0, None)
            if total.shape != (hours,) or not np.isfinite(total).all():
                raise InputError(f"solar_mw needs {hours} finite hourly values, got shape {total.shape}")
        share = pmax / pmax.sum() if pmax.sum() > 0 else np.zeros(solar.size)
        for j, g in enumerate(solar):
            forecast[int(g)] = np.minimum(total * share[j], pmax[j])
    for g in units.wind:
        forecast[int(g)] = np.full(hours, dispatch.wind_capacity_factor * max(0.0, float(gen[g, PMAX])))
    out = {k: (np.array(v, dtype=float, copy=True) if isinstance(v, np.ndarray) else v) for k, v in ppc.items()}
    gc = out["gencost"]
    for g in forecast:
        if gc[g, MODEL] == 1:
            gc[g, COST + 1 :: 2] = 0.0  # PWL: every cost point 0
        else:
            gc[g, COST:] = 0.0
    src = (
        "emission factors by type from the utility profile (optimization.dispatch); thermal types by merit order; "
        + (f"solar {list(units.solar)}: PV forecast on the case's scale" if solar_mw is not None else f"solar {list(units.solar)}: no PV forecast, capped at 0")
        + f"; wind {list(units.wind)}: fallback {dispatch.wind_capacity_factor:g} x Pmax (no wind forecast table)"
        if forecast
        else f"emission factors by type from the utility profile; thermal types by merit order; no renewables listed for {case_name!r}"
    )  # fmt: skip
    return OPFGeneration(out, types, co2, forecast, src)
