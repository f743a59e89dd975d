"""PV systems: pvlib clear-sky (Ineichen) and PVWatts power.

Why pvlib for everything physical: solar position, transposition to the plane of array, cell
temperature and the PVWatts DC/AC models are well-kept there and validated; gridlake only adds
the glue from its tables (``ref_meters``: latitude, longitude, pv_kw_dc, pv_tilt_deg,
pv_azimuth_deg; silver weather: ghi_wm2, dni_wm2, dhi_wm2, temp_air_c, wind_speed_ms).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from models.forecast.data import to_pandas

if TYPE_CHECKING:
    import pvlib

WEATHER_COLUMNS = ("ghi_wm2", "dni_wm2", "dhi_wm2", "temp_air_c", "wind_speed_ms")


def tmy_weather(filename: str = "723170TYA.CSV") -> tuple[pd.DataFrame, dict]:
    """A TMY3 file bundled with pvlib (default Greensboro NC; ``"703165TY.csv"`` is Sand Point AK)
    in silver-weather column names, and its metadata.

    TMY3 stamps the END of each hour; gridlake uses period starts, so times move back one hour.
    """
    from pathlib import Path

    import pvlib

    path = Path(pvlib.__file__).parent / "data" / filename
    data, meta = pvlib.iotools.read_tmy3(path, coerce_year=2021, map_variables=True)
    idx = data.index.tz_convert("UTC") - pd.Timedelta(hours=1)
    w = pd.DataFrame(
        {
            "observation_time": idx,
            "ghi_wm2": data["ghi"].to_numpy(float),
            "dni_wm2": data["dni"].to_numpy(float),
            "dhi_wm2": data["dhi"].to_numpy(float),
            "temp_air_c": data["temp_air"].to_numpy(float),
            "wind_speed_ms": data["wind_speed"].to_numpy(float),
        }
    ).sort_values("observation_time")
    return w.reset_index(drop=True), meta


@dataclass(frozen=True)
class PVSystem:
    """One PV installation (PVWatts parameters; defaults are PVWatts' own)."""

    system_id: str
    latitude: float
    longitude: float
    kw_dc: float
    tilt_deg: float = 25.0
    azimuth_deg: float = 180.0
    altitude_m: float = 0.0
    gamma_pdc: float = -0.0037  # power temperature coefficient, 1/degC
    dc_ac_ratio: float = 1.1
    inverter_eff: float = 0.96
    losses_pct: float = 14.0
    feeder_id: str | None = None
    substation_id: str | None = None

    def __post_init__(self):
        problems = []
        if not -90 <= self.latitude <= 90:
            problems.append(f"latitude {self.latitude}")
        if not -180 <= self.longitude <= 180:
            problems.append(f"longitude {self.longitude}")
        if not self.kw_dc > 0:
            problems.append(f"kw_dc {self.kw_dc}")
        if not 0 <= self.tilt_deg <= 90:
            problems.append(f"tilt_deg {self.tilt_deg}")
        if problems:
            raise ValueError(f"PV system {self.system_id!r}: invalid {', '.join(problems)}")

    @property
    def location(self) -> pvlib.location.Location:
        # pvlib on first use: it imports scipy, which (pyomo loaded) pulls in scipy.stats, ~1 CPU s that every
        # process importing the Dagster definitions would pay
        import pvlib

        return pvlib.location.Location(self.latitude, self.longitude, tz="UTC", altitude=self.altitude_m)

    @property
    def kw_ac(self) -> float:
        return self.kw_dc / self.dc_ac_ratio


def systems_from_meters(ref_meters: Any) -> list[PVSystem]:
    """PV systems for the meters with ``has_pv`` in a ``ref_meters`` frame."""
    df = to_pandas(ref_meters)
    need = ["meter_id", "has_pv", "latitude", "longitude", "pv_kw_dc", "pv_tilt_deg", "pv_azimuth_deg"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"ref_meters frame lacks column(s) {missing}")
    out = []
    for row in df[df["has_pv"].astype(bool)].itertuples(index=False):
        out.append(
            PVSystem(
                system_id=row.meter_id,
                latitude=float(row.latitude),
                longitude=float(row.longitude),
                kw_dc=float(row.pv_kw_dc),
                tilt_deg=float(row.pv_tilt_deg),
                azimuth_deg=float(row.pv_azimuth_deg),
                feeder_id=getattr(row, "feeder_id", None),
                substation_id=getattr(row, "substation_id", None),
            )
        )
    return out


def _utc_index(times: pd.DatetimeIndex) -> pd.DatetimeIndex:
    if times.tz is None:
        raise ValueError("times must be tz-aware (UTC)")
    return times.tz_convert("UTC")


def solar_position(system: PVSystem, times: pd.DatetimeIndex) -> pd.DataFrame:
    return system.location.get_solarposition(_utc_index(times))


def clearsky(system: PVSystem, times: pd.DatetimeIndex) -> pd.DataFrame:
    """Ineichen clear-sky GHI/DNI/DHI (Linke turbidity from pvlib's climatology)."""
    return system.location.get_clearsky(_utc_index(times), model="ineichen")


def pvwatts_ac_kw(
    system: PVSystem,
    times: pd.DatetimeIndex,
    ghi: np.ndarray,
    dni: np.ndarray,
    dhi: np.ndarray,
    temp_air: np.ndarray | float = 20.0,
    wind_speed: np.ndarray | float = 1.0,
    solpos: pd.DataFrame | None = None,
) -> pd.Series:
    """AC power (kW) from irradiance with PVWatts: POA transposition, SAPM cell temp, DC, inverter."""
    import pvlib

    times = _utc_index(times)
    sp = solpos if solpos is not None else solar_position(system, times)
    poa = pvlib.irradiance.get_total_irradiance(
        system.tilt_deg,
        system.azimuth_deg,
        sp["apparent_zenith"],
        sp["azimuth"],
        dni=pd.Series(np.asarray(dni, float), index=times),
        ghi=pd.Series(np.asarray(ghi, float), index=times),
        dhi=pd.Series(np.asarray(dhi, float), index=times),
        dni_extra=pvlib.irradiance.get_extra_radiation(times),
        model="haydavies",
    )
    poa_global = poa["poa_global"].fillna(0.0).clip(lower=0.0)
    params = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"]["open_rack_glass_polymer"]
    t_cell = pvlib.temperature.sapm_cell(poa_global, temp_air, wind_speed, **params)
    pdc0 = system.kw_dc * 1000.0
    dc = pvlib.pvsystem.pvwatts_dc(poa_global, t_cell, pdc0, system.gamma_pdc) * (1 - system.losses_pct / 100)
    # pvlib's inverter pdc0 is the DC input limit: AC rating / nominal efficiency
    ac = pvlib.inverter.pvwatts(dc, system.kw_ac * 1000.0 / system.inverter_eff, system.inverter_eff)
    return (ac.clip(lower=0.0) / 1000.0).rename(system.system_id)


def clearsky_ac_kw(system: PVSystem, times: pd.DatetimeIndex, temp_air: float = 20.0) -> pd.Series:
    """PVWatts AC power under Ineichen clear sky: the ceiling used by the clear-sky index."""
    cs = clearsky(system, times)
    return pvwatts_ac_kw(system, times, cs["ghi"], cs["dni"], cs["dhi"], temp_air=temp_air)


def simulate_power(
    system: PVSystem, weather: Any, *, time_col: str = "observation_time", period_start: bool = True
) -> pd.DataFrame:
    """PV power for observed weather (silver weather columns) -> frame indexed by UTC time.

    gridlake stamps intervals by their start and irradiance is the interval mean, so the sun
    is placed at the interval midpoint (``period_start=False`` for instantaneous samples).

    Columns: ac_kw, clearsky_ac_kw, ghi_wm2, clearsky_ghi_wm2, zenith, azimuth.
    Missing irradiance is an error naming the column and first timestamp (never a NaN power).
    """
    df = to_pandas(weather)
    missing = [c for c in (time_col, "ghi_wm2", "dni_wm2", "dhi_wm2") if c not in df.columns]
    if missing:
        raise ValueError(f"weather frame lacks column(s) {missing}")
    times = pd.DatetimeIndex(pd.to_datetime(df[time_col]))
    times = _utc_index(times)
    for c in ("ghi_wm2", "dni_wm2", "dhi_wm2"):
        bad = df[c].isna().to_numpy()
        if bad.any():
            raise ValueError(f"weather column {c!r} has {int(bad.sum())} missing value(s), first at {times[bad][0]}")
    temp = df["temp_air_c"].to_numpy() if "temp_air_c" in df else 20.0
    wind = df["wind_speed_ms"].to_numpy() if "wind_speed_ms" in df else 1.0
    mid = times
    if period_start and len(times) > 1:
        mid = times + pd.Series(times).diff().median() / 2
    sp = solar_position(system, mid)
    ac = pvwatts_ac_kw(system, mid, df["ghi_wm2"], df["dni_wm2"], df["dhi_wm2"], temp, wind, solpos=sp)
    cs = clearsky(system, mid)
    cs_ac = pvwatts_ac_kw(system, mid, cs["ghi"], cs["dni"], cs["dhi"], temp, wind, solpos=sp)
    return pd.DataFrame(
        {
            "ac_kw": ac.to_numpy(),
            "clearsky_ac_kw": cs_ac.to_numpy(),
            "ghi_wm2": df["ghi_wm2"].to_numpy(float),
            "clearsky_ghi_wm2": cs["ghi"].to_numpy(),
            "temp_air_c": np.broadcast_to(temp, len(times)).astype(float),
            "wind_speed_ms": np.broadcast_to(wind, len(times)).astype(float),
            "zenith": sp["apparent_zenith"].to_numpy(),  # at the interval midpoint
            "azimuth": sp["azimuth"].to_numpy(),
        },
        index=times,
    )
