"""The simulator: one utility-local day of meter readings, SCADA and weather at a time.

Determinism. Every random draw for day ``d`` comes from generators seeded by ``(seed, stream,
d.toordinal())``; the fleet and the event plan come from ``(seed, stream)``. Nothing depends on which
days were generated before, so a day is byte-identical whatever the order (the small per-day cache
only avoids recomputing the same thing).

State across days. Two things flow over midnight: EV sessions that started the evening before (their
draws are cheap, so day ``d`` re-draws day ``d-1``'s sessions), and transformer temperatures, which
day ``d`` obtains by running the thermal model over day ``d-1`` as a warm-up (24 h is 8 top-oil time
constants, so the arbitrary initial state is forgotten to ~0.03 %).

Physics, in order: archetype shape (+-1 h personal shift) x customer scale x day jitter, plus heating
and cooling degree loads from the real TMY3 temperature, x lognormal interval noise; EV charging
sessions; rooftop PV via pvlib (isotropic POA, Faiman cell temperature, PVWatts DC + inverter) and a
self-consumption battery; transformer P/Q sums; secondary voltage falling with loading; the IEEE
C57.91 thermal model. Then the labelled events and the metering faults are applied to what the meters
and SCADA *report*, never to the physical truth (a thief's transformer still carries the real load).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd
import polars as pl

from contracts import SOURCES, UTC_TS

from . import thermal
from .archetypes import COOL_BASE_C, HEAT_BASE_C, SHAPE_STEP_MIN
from .config import SimConfig
from .events import EventPlan, local_midnight_utc, plan_events
from .fleet import PV_DC_AC_RATIO, Fleet, build_fleet
from .weather import STATION_ID, load_tmy, weather_at, weather_hours

STREAM_METER = 10
STREAM_EV = 11
STREAM_SCADA = 12

#: volts lost on the secondary per unit of real-power loading of the transformer
V_DROP_PER_PU = 9.0
#: voltage band the service stays within outside sags (ANSI C84.1 range B-ish around 230 V)
V_BAND = (207.0, 253.0)
DECIMALS = 4


def _r(a: np.ndarray) -> np.ndarray:
    """[time, entity] -> entity-major flat array rounded to DECIMALS (+ 0.0 turns -0.0 into 0.0)."""
    return np.round(a.T.ravel(), DECIMALS) + 0.0


def raw_conform(source: str, df: pl.DataFrame) -> pl.DataFrame:
    """Select/cast ``df`` to the raw contract of ``source``: entity (str), time (UTC us), measures (f64)."""
    src = SOURCES[source]
    missing = [c for c in src.raw_columns if c not in df.columns]
    if missing:
        raise ValueError(f"source {source}: frame lacks column(s) {missing}; has {df.columns}")
    return df.select(
        [pl.col(src.entity).cast(pl.Utf8), pl.col(src.time).cast(UTC_TS)]
        + [pl.col(m.name).cast(pl.Float64) for m in src.measures]
        + [pl.col(a.name).cast(a.dtype) for a in src.attributes]
    )


@functools.lru_cache(maxsize=8)
def _us_holidays(year: int):
    import holidays

    return holidays.country_holidays("US", years=year)


def is_day_off(d: date) -> bool:
    """Weekend or US federal public holiday (observed dates included)."""
    return d.weekday() >= 5 or d in _us_holidays(d.year)


@dataclass
class _Core:
    """The physical truth of one local day (before anything a meter or SCADA misreports)."""

    times: np.ndarray  # interval starts, datetime64[us] UTC, (T,)
    net_kw: np.ndarray  # (T, M) true net demand; 0 during outages
    pf: np.ndarray  # (T, M)
    voltage: np.ndarray  # (T, M) true service voltage before sags
    outage: np.ndarray  # (T, M) bool: no supply (transformer failed)
    tx_p: np.ndarray  # (T, X) kW
    tx_s: np.ndarray  # (T, X) kVA


class Simulator:
    """Generates reference data, ground truth and daily frames for a :class:`SimConfig`."""

    def __init__(self, cfg: SimConfig):
        self.cfg = cfg
        self.fleet: Fleet = build_fleet(cfg)
        self.plan: EventPlan = plan_events(cfg, self.fleet)
        self._cache: OrderedDict[date, _Core] = OrderedDict()
        self._step = np.timedelta64(cfg.interval_minutes, "m")
        self._dt_h = cfg.interval_minutes / 60.0

    # ------------------------------------------------------------------ public API
    def reference(self) -> dict[str, pl.DataFrame]:
        """Reference tables: ``ref_meters``, ``ref_transformers``, ``ref_weather_stations``."""
        return {k: v.clone() for k, v in self.fleet.ref.items()}

    def truth(self) -> dict[str, pl.DataFrame]:
        """Ground truth for the whole period: ``truth_customers`` and ``truth_events``."""
        return {"truth_customers": self.fleet.customers.clone(), "truth_events": self.plan.frame.clone()}

    def incident_records(self) -> pl.DataFrame:
        """Every incident operations record in the period (:mod:`simulator.incidents`), with ``event_id``
        linking it to the true event it reports (null for a false report): for evaluation only."""
        if getattr(self, "_incidents", None) is None:
            from .incidents import plan_incidents

            self._incidents = plan_incidents(self.cfg, self.plan, self.fleet.meter_ids, self.fleet.tx_ids)
        return self._incidents.clone()

    def incidents(self, d: date | None = None) -> pl.DataFrame:
        """The incidents export (raw contract of ``incidents``): those confirmed on local day ``d``,
        or in the whole period when ``d`` is None."""
        from .incidents import incidents_raw

        df = self.incident_records()
        if d is not None:
            self.cfg.check_day(d)
            lo, hi = self.day_bounds(d)
            df = df.filter(
                (pl.col("confirmed_at") >= pl.lit(lo).dt.replace_time_zone("UTC"))
                & (pl.col("confirmed_at") < pl.lit(hi).dt.replace_time_zone("UTC"))
            )
        return incidents_raw(df.sort("asset_id", "confirmed_at"))

    def day(self, d: date) -> dict[str, pl.DataFrame]:
        """Clean frames for utility-local day ``d``: ``meter_readings``, ``scada``, ``weather``.

        Columns follow the raw contract (``contracts.SOURCES``); times are interval/sample starts in
        UTC; every row's local date is ``d``. Measures are rounded to 4 decimals, the precision the text
        landing formats carry, so a value is identical in CSV, JSON lines and Parquet.
        """
        self.cfg.check_day(d)
        return {"meter_readings": self.meter_readings(d), "scada": self.scada(d), "weather": self.weather(d)}

    def day_bounds(self, d: date) -> tuple[np.datetime64, np.datetime64]:
        """[start, end) of local day ``d`` as UTC datetime64[us]."""
        return local_midnight_utc(d, self.cfg.timezone), local_midnight_utc(d + timedelta(days=1), self.cfg.timezone)

    # ------------------------------------------------------------------ weather
    def weather(self, d: date) -> pl.DataFrame:
        t0, t1 = self.day_bounds(d)
        w = weather_hours(pd.Timestamp(t0, tz="UTC"), pd.Timestamp(t1, tz="UTC"))
        df = pl.DataFrame(
            {
                "station_id": [STATION_ID] * len(w),
                "observation_time": pl.Series(w.index.tz_localize(None).to_numpy().astype("datetime64[us]")),
                "ghi_wm2": w["ghi"].to_numpy(),
                "dni_wm2": w["dni"].to_numpy(),
                "dhi_wm2": w["dhi"].to_numpy(),
                "temp_air_c": w["temp_air"].to_numpy(),
                "wind_speed_ms": w["wind_speed"].to_numpy(),
                "cloud_cover": np.round(w["cloud"].to_numpy(), DECIMALS),
            }
        ).with_columns(pl.col("observation_time").dt.replace_time_zone("UTC"))
        return raw_conform("weather", df)

    def weather_forecast(self, d: date) -> pl.DataFrame:
        """The weather-service issues published during local day ``d`` (raw contract of
        ``weather_forecast``): :func:`simulator.nwp.issue_forecasts` on the station's own weather,
        seeded by the config's seed (an issue is the same whichever day asks for it; about 4 % of
        issues are missing, as a failed run or a lost file would be)."""
        from .nwp import issue_forecasts

        self.cfg.check_day(d)
        t0, t1 = (pd.Timestamp(t, tz="UTC") for t in self.day_bounds(d))
        w = weather_hours(t0 - pd.Timedelta(days=1), t1 + pd.Timedelta(days=3))
        obs = pd.DataFrame(
            {
                "observation_time": w.index,
                "ghi_wm2": w["ghi"].to_numpy(),
                "temp_air_c": w["temp_air"].to_numpy(),
                "wind_speed_ms": w["wind_speed"].to_numpy(),
            }
        )
        tmy = load_tmy()
        fc = issue_forecasts(obs, tmy.latitude, tmy.longitude, tmy.altitude, station_id=STATION_ID, seed=self.cfg.seed)
        fc = fc[(fc["issued_at"] >= t0) & (fc["issued_at"] < t1)]
        df = pl.from_pandas(fc.reset_index(drop=True)).with_columns(
            pl.col("issued_at", "valid_at").dt.cast_time_unit("us").dt.convert_time_zone("UTC")
        )
        return raw_conform("weather_forecast", df.sort("station_id", "issued_at", "valid_at"))

    # ------------------------------------------------------------------ physics of one day
    def _core(self, d: date) -> _Core:
        if d in self._cache:
            self._cache.move_to_end(d)
            return self._cache[d]
        core = self._compute_core(d)
        self._cache[d] = core
        while len(self._cache) > 4:  # d-2..d: SCADA warm-up and late files of the previous day
            self._cache.popitem(last=False)
        return core

    def _local_clock_h(self, times: np.ndarray) -> np.ndarray:
        loc = pd.DatetimeIndex(times).tz_localize("UTC").tz_convert(self.cfg.timezone)
        return (loc.hour + loc.minute / 60.0 + loc.second / 3600.0).to_numpy(dtype=float)

    def _ev_sessions(self, d: date) -> tuple[np.ndarray, np.ndarray]:
        """(start clock hour, duration h) per EV customer for day ``d``; NaN start = no session."""
        f = self.fleet
        rng = np.random.default_rng(np.random.SeedSequence([self.cfg.seed, STREAM_EV, d.toordinal()]))
        n = f.ev_idx.size
        p = 0.55 if is_day_off(d) else 0.75
        present = rng.random(n) < p
        start = np.clip(f.ev_habit_h + rng.normal(0.0, 0.75, n), 16.0, 23.75)
        energy = rng.uniform(6.0, 24.0, n)
        return np.where(present, start, np.nan), energy / f.ev_kw

    def _compute_core(self, d: date) -> _Core:
        cfg, f = self.cfg, self.fleet
        t0, t1 = self.day_bounds(d)
        times = np.arange(t0, t1, self._step)
        mid = times + self._step // 2
        T, M = times.size, f.meter_ids.size
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, STREAM_METER, d.toordinal()]))
        clock = self._local_clock_h(mid)
        daytype = 1 if is_day_off(d) else 0

        # base load: archetype shape at the customer's own (shifted) clock
        n_slots = f.shapes.shape[2]
        slot = np.floor(clock * 60.0 / SHAPE_STEP_MIN).astype(int)
        idx = (slot[:, None] - f.shift_slots[None, :]) % n_slots
        mix = f.blend[None, :]
        unit = (1.0 - mix) * f.shapes[f.arch[None, :], daytype, idx] + mix * f.shapes[f.arch2[None, :], daytype, idx]
        # occupancy relative to a working day: a closed office on Sunday barely runs its HVAC
        unit_mean = f.shapes[:, 0, :].mean(axis=1)[f.arch]
        w = weather_at(mid)
        temp = w["temp_air"]
        hdd = np.maximum(0.0, HEAT_BASE_C - temp)[:, None]
        cdd = np.maximum(0.0, temp - COOL_BASE_C)[:, None]
        # HVAC runs harder when the premises are in use (occupancy follows the shape)
        occ = np.clip(unit / unit_mean[None, :], 0.2, 2.0)
        hvac = (f.heat_kw_per_c[None, :] * hdd + f.cool_kw_per_c[None, :] * cdd) * occ
        day_factor = rng.lognormal(0.0, 0.10, M)
        sig = f.noise_sigma[None, :]
        noise = np.exp(rng.standard_normal((T, M)) * sig - 0.5 * sig**2)
        gross = (f.scale_kw[None, :] * unit + hvac) * day_factor[None, :] * noise

        # EV charging: today's sessions plus yesterday's that run past midnight
        if f.ev_idx.size:
            a = clock - self._dt_h / 2  # interval start/end on the local clock
            b = a + self._dt_h
            ev = np.zeros((T, f.ev_idx.size))
            for offset, day_ in ((0.0, d), (24.0, d - timedelta(days=1))):
                s, dur = self._ev_sessions(day_)
                s = s - offset
                ov = np.clip(np.minimum(b[:, None], (s + dur)[None, :]) - np.maximum(a[:, None], s[None, :]), 0, None)
                ev += np.nan_to_num(ov / self._dt_h) * f.ev_kw[None, :]
            gross[:, f.ev_idx] += ev

        pf = np.clip(f.pf_base[None, :] + rng.normal(0.0, 0.01, (T, M)), 0.6, 0.999)
        net = gross.copy()
        if f.solar_idx.size:
            net[:, f.solar_idx] = self._pv_battery(mid, w, gross[:, f.solar_idx])

        # outages: no supply below a failed transformer until repaired
        outage = np.zeros((T, M), dtype=bool)
        for e in self.plan.overlapping("transformer_failure", t0, t1):
            rows = (times >= self.plan.start[e]) & (times < self.plan.end[e])
            outage[np.ix_(rows, f.tx_of_meter == self.plan.asset[e])] = True
        net[outage] = 0.0
        gross[outage] = 0.0

        q = gross * np.tan(np.arccos(pf))  # PV and battery inverters run at unity power factor
        tx_p = np.add.reduceat(net, f.tx_start, axis=1)
        tx_q = np.add.reduceat(q, f.tx_start, axis=1)
        tx_s = np.hypot(tx_p, tx_q)

        v_tx = f.v0_tx[None, :] - V_DROP_PER_PU * tx_p / f.rating_kva[None, :]
        voltage = (
            v_tx[:, f.tx_of_meter]
            - f.v_drop[None, :] * net / f.scale_kw[None, :]
            + f.v_offset[None, :]
            + rng.normal(0.0, 0.5, (T, M))
        )
        voltage = np.clip(voltage, *V_BAND)
        return _Core(times=times, net_kw=net, pf=pf, voltage=voltage, outage=outage, tx_p=tx_p, tx_s=tx_s)

    def _pv_ac(self, mid: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
        """AC output (kW) of every rooftop system [T, solar customer] at interval midpoints, via pvlib."""
        import pvlib

        f = self.fleet
        tmy = load_tmy()
        idx = pd.DatetimeIndex(mid).tz_localize("UTC")
        sp = pvlib.solarposition.get_solarposition(idx, tmy.latitude, tmy.longitude, altitude=tmy.altitude)
        zen = sp["apparent_zenith"].to_numpy()[:, None]
        azi = sp["azimuth"].to_numpy()[:, None]
        poa = pvlib.irradiance.get_total_irradiance(
            f.pv_tilt[None, :],
            f.pv_azimuth[None, :],
            zen,
            azi,
            w["dni"][:, None],
            w["ghi"][:, None],
            w["dhi"][:, None],
            model="isotropic",
        )["poa_global"]
        poa = np.where(zen < 90.0, np.nan_to_num(np.asarray(poa, dtype=float)), 0.0)
        tcell = pvlib.temperature.faiman(poa, w["temp_air"][:, None], w["wind_speed"][:, None])
        losses = pvlib.pvsystem.pvwatts_losses() / 100.0
        pdc = pvlib.pvsystem.pvwatts_dc(poa, tcell, f.pv_kw_dc[None, :], -0.0037) * (1.0 - losses)
        pac0 = f.pv_kw_dc / PV_DC_AC_RATIO
        pac = pvlib.inverter.pvwatts(pdc, pac0[None, :] / 0.96, eta_inv_nom=0.96)
        return np.clip(np.nan_to_num(np.asarray(pac, dtype=float)), 0.0, None)

    def _pv_battery(self, mid: np.ndarray, w: dict[str, np.ndarray], load: np.ndarray) -> np.ndarray:
        """Net demand of the solar_battery customers: load - PV +- battery."""
        f = self.fleet
        pv = self._pv_ac(mid, w)
        # self-consumption battery, reset to its reserve at local midnight (it is drained every evening)
        eta, reserve = 0.95, 0.1
        soc = reserve * f.batt_kwh
        out = np.empty_like(load)
        dt = self._dt_h
        for t in range(load.shape[0]):
            surplus = pv[t] - load[t]
            charge = np.clip(np.minimum(surplus, f.batt_kw), 0.0, None)
            charge = np.minimum(charge, (f.batt_kwh - soc) / (eta * dt))
            discharge = np.clip(np.minimum(-surplus, f.batt_kw), 0.0, None)
            discharge = np.minimum(discharge, np.maximum(soc - reserve * f.batt_kwh, 0.0) * eta / dt)
            soc = soc + charge * eta * dt - discharge / eta * dt
            out[t] = load[t] - pv[t] + charge - discharge
        return out

    def pv_kw(self, d: date) -> np.ndarray:
        """AC PV output (kW) per interval [T, solar customer] for day ``d`` (diagnostics and tests)."""
        t0, t1 = self.day_bounds(d)
        times = np.arange(t0, t1, self._step)
        mid = times + self._step // 2
        return self._pv_ac(mid, weather_at(mid))

    # ------------------------------------------------------------------ meter readings
    def meter_readings(self, d: date) -> pl.DataFrame:
        f, plan = self.fleet, self.plan
        core = self._core(d)
        t0, t1 = self.day_bounds(d)
        times, T, M = core.times, core.times.size, f.meter_ids.size
        dem = core.net_kw.copy()
        volt = core.voltage.copy()
        pf = core.pf.copy()

        for e in plan.overlapping("theft", t0, t1):
            rows = (times >= plan.start[e]) & (times < plan.end[e])
            dem[rows, plan.asset[e]] *= 1.0 - plan.magnitude[e]
        ends = times + self._step
        for e in plan.overlapping("voltage_sag", t0, t1):
            ov = np.clip(np.minimum(ends, plan.end[e]) - np.maximum(times, plan.start[e]), np.timedelta64(0), None)
            frac = ov / self._step
            cols = np.flatnonzero(f.tx_of_meter == plan.asset[e])
            volt[:, cols] *= (1.0 - plan.magnitude[e] * frac)[:, None]
        cons = np.maximum(dem, 0.0) * self._dt_h
        amps = np.abs(dem) * 1000.0 / (volt * pf)
        for e in plan.overlapping("zero_meter", t0, t1):
            rows = (times >= plan.start[e]) & (times < plan.end[e])
            m = plan.asset[e]
            cons[rows, m] = dem[rows, m] = amps[rows, m] = 0.0
        for e in plan.overlapping("stuck_meter", t0, t1):
            rows = (times >= plan.start[e]) & (times < plan.end[e])
            m = plan.asset[e]
            kw, v, p = plan.frozen_kw[e], plan.frozen_v[e], plan.frozen_pf[e]
            dem[rows, m], volt[rows, m], pf[rows, m] = kw, v, p
            cons[rows, m] = max(kw, 0.0) * self._dt_h
            amps[rows, m] = abs(kw) * 1000.0 / (v * p)
        out = core.outage
        if out.any():
            cons[out] = dem[out] = amps[out] = 0.0
            volt[out] = np.nan
            pf[out] = np.nan

        frame = pl.DataFrame(
            {
                "meter_id": pl.Series(f.meter_ids).gather(np.repeat(np.arange(M), T)),
                "reading_time": pl.Series(np.tile(times, M)).dt.replace_time_zone("UTC"),
                "consumption_kwh": _r(cons),
                "demand_kw": _r(dem),
                "voltage": _r(volt),
                "current_amps": _r(amps),
                "power_factor": _r(pf),
            }
        ).with_columns(pl.col("voltage", "power_factor").fill_nan(None))
        if out.any() and self.cfg.outage_readings == "absent":
            frame = frame.filter(pl.Series(~out.T.ravel()))
        return raw_conform("meter_readings", frame)

    # ------------------------------------------------------------------ SCADA
    def scada(self, d: date) -> pl.DataFrame:
        cfg, f, plan = self.cfg, self.fleet, self.plan
        prev = self._core(d - timedelta(days=1))
        core = self._core(d)
        tw, _ = self.day_bounds(d - timedelta(days=1))
        t0, t1 = self.day_bounds(d)
        step = np.timedelta64(cfg.scada_interval_minutes, "m")
        samples = np.arange(tw, t1, step)  # warm-up day + the day
        keep = samples >= t0
        times = np.concatenate([prev.times, core.times])
        tx_s = np.concatenate([prev.tx_s, core.tx_s])
        tx_p = np.concatenate([prev.tx_p, core.tx_p])
        # a sample reports the mean over the SCADA interval just before it
        k = np.clip(np.searchsorted(times, samples - np.timedelta64(1, "us"), side="right") - 1, 0, None)
        load = tx_s[k]
        p_pu = tx_p[k] / f.rating_kva[None, :]
        amb = weather_at(samples)["temp_air"]

        S, X = samples.size, f.tx_ids.size
        extra = np.zeros((S, X))
        for e in plan.overlapping("transformer_overheat", tw, t1):
            s, en = plan.start[e], plan.end[e]
            rows = (samples >= s) & (samples < en)
            extra[rows, plan.asset[e]] = plan.magnitude[e] * ((samples[rows] - s) / (en - s))
        top, hot = thermal.simulate(load / f.rating_kva[None, :], amb, cfg.scada_interval_minutes, extra)

        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, STREAM_SCADA, d.toordinal()]))
        n = int(keep.sum())
        load_m = load[keep] * (1.0 + rng.normal(0.0, 0.005, (n, X)))
        volt = f.v0_tx[None, :] - V_DROP_PER_PU * p_pu[keep] + rng.normal(0.0, 0.3, (n, X))
        st = samples[keep]
        for e in plan.overlapping("voltage_sag", t0, t1):
            rows = (st >= plan.start[e]) & (st < plan.end[e])
            volt[rows, plan.asset[e]] *= 1.0 - plan.magnitude[e]
        for e in plan.overlapping("transformer_failure", t0, t1):
            rows = (st >= plan.start[e]) & (st < plan.end[e])
            volt[rows, plan.asset[e]] = 0.0
            load_m[rows, plan.asset[e]] = 0.0
        # system frequency: a mean-reverting wander shared by all, plus measurement noise
        phi = np.exp(-cfg.scada_interval_minutes / 60.0)
        shocks = rng.normal(0.0, 0.012 * np.sqrt(1 - phi**2), n)
        dev = np.empty(n)
        dev[0] = rng.normal(0.0, 0.012)
        for i in range(1, n):
            dev[i] = phi * dev[i - 1] + shocks[i]
        freq = 60.0 + dev[:, None] + rng.normal(0.0, 0.002, (n, X))

        frame = pl.DataFrame(
            {
                "transformer_id": pl.Series(f.tx_ids).gather(np.repeat(np.arange(X), n)),
                "sample_time": pl.Series(np.tile(st, X)).dt.replace_time_zone("UTC"),
                "load_kva": _r(np.clip(load_m, 0.0, None)),
                "top_oil_temp_c": _r(top[keep]),
                "hot_spot_temp_c": _r(hot[keep]),
                "voltage_v": _r(volt),
                "frequency_hz": _r(freq),
            }
        )
        return raw_conform("scada", frame)
