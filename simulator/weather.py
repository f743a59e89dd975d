"""Real weather: the TMY3 year for Greensboro NC that ships inside pvlib, re-timed to simulated dates.

TMY3 rows are hour-ending values in *local standard time* (UTC-5 here, all year, no DST). A row stamped
``MM/DD hh:00`` covers the hour before it. We keep that convention: an observation at UTC time ``t``
is the TMY3 row whose LST stamp is ``t + TZ`` on the same month/day, whatever the simulated year
(29 February re-uses 28 February). Temperature and irradiance are therefore the recorded values,
just moved in time, so solar geometry and temperature-driven load stay physically coherent.

The cloud proxy is ``1 - GHI / GHI_clear`` with pvlib's Ineichen clear-sky model evaluated at the
middle of each hour. It is undefined in the dark, so night hours are filled by linear interpolation
between the evening and the next morning (around the year end as well): a smooth, plausible value
rather than a hole or a made-up constant.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd

#: the one weather station the simulator serves
STATION_ID = "GSO"

#: clear-sky GHI below which the clear-sky index is too noisy to use (W/m2)
_MIN_CLEARSKY_GHI = 50.0


@dataclass(frozen=True)
class TMY:
    """The TMY3 year as plain arrays, 8760 rows in file order (Jan 1 01:00 .. Dec 31 24:00 LST)."""

    ghi: np.ndarray
    dni: np.ndarray
    dhi: np.ndarray
    temp_air: np.ndarray
    wind_speed: np.ndarray
    cloud: np.ndarray
    date_str: np.ndarray  # "MM/DD/YYYY" as in the file
    time_str: np.ndarray  # "HH:MM", 01:00 .. 24:00
    name: str
    latitude: float
    longitude: float
    altitude: float
    tz_hours: float  # local standard time offset, e.g. -5.0


def tmy3_path() -> str:
    import pvlib

    return os.path.join(os.path.dirname(pvlib.__file__), "data", "723170TYA.CSV")


@functools.lru_cache(maxsize=1)
def load_tmy() -> TMY:
    """Read the bundled TMY3 file once and derive the cloud proxy (cached for the process)."""
    import pvlib

    data, meta = pvlib.iotools.read_tmy3(tmy3_path(), map_variables=True)
    if len(data) != 8760:
        raise ValueError(f"{tmy3_path()}: expected 8760 hourly rows, found {len(data)}")
    loc = pvlib.location.Location(
        meta["latitude"], meta["longitude"], tz=f"Etc/GMT{-int(meta['TZ']):+d}", altitude=meta["altitude"]
    )
    # hour-ending values: compare with the clear sky at the middle of the hour
    mid = data.index - pd.Timedelta(minutes=30)
    cs = loc.get_clearsky(mid, model="ineichen")
    ghi = data["ghi"].to_numpy(dtype=float)
    cs_ghi = cs["ghi"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        cloud = np.where(cs_ghi >= _MIN_CLEARSKY_GHI, np.clip(1.0 - ghi / cs_ghi, 0.0, 1.0), np.nan)
    # fill the dark hours by interpolating across the night, periodic over the year
    idx = np.arange(cloud.size)
    ok = ~np.isnan(cloud)
    cloud = np.interp(idx, idx[ok], cloud[ok], period=cloud.size)
    return TMY(
        ghi=ghi,
        dni=data["dni"].to_numpy(dtype=float),
        dhi=data["dhi"].to_numpy(dtype=float),
        temp_air=data["temp_air"].to_numpy(dtype=float),
        wind_speed=data["wind_speed"].to_numpy(dtype=float),
        cloud=cloud,
        date_str=data["Date (MM/DD/YYYY)"].to_numpy(dtype=str),
        time_str=data["Time (HH:MM)"].to_numpy(dtype=str),
        name=str(meta["Name"]).strip('"'),
        latitude=float(meta["latitude"]),
        longitude=float(meta["longitude"]),
        altitude=float(meta["altitude"]),
        tz_hours=float(meta["TZ"]),
    )


_DOY_NONLEAP = np.cumsum([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30])


def tmy_rows(utc_hours: np.ndarray) -> np.ndarray:
    """Row numbers in the TMY year for hour-ending observation times (datetime64 UTC, on the hour).

    The LST stamp is ``t + tz``; its hour ``h`` (1..24, 24 = midnight of the previous day) and
    month/day select row ``(doy - 1) * 24 + h - 1`` in the file, with 29 Feb mapped to 28 Feb.
    """
    tmy = load_tmy()
    t = np.asarray(utc_hours, dtype="datetime64[us]")
    if np.any(t.astype("datetime64[h]") != t):
        raise ValueError("weather observation times must be on the hour")
    # the hour an hour-ending value covers starts at (LST - 1 h)
    begin = (t + np.timedelta64(int(tmy.tz_hours * 60), "m") - np.timedelta64(1, "h")).astype("datetime64[h]")
    day = begin.astype("datetime64[D]")
    hour = (begin - day).astype(int)
    months = day.astype("datetime64[M]")
    month = months.astype(int) % 12  # 0..11
    dom = (day - months).astype(int)  # 0-based day of month
    dom = np.where((month == 1) & (dom == 28), 27, dom)  # 29 Feb -> 28 Feb
    doy0 = _DOY_NONLEAP[month] + dom
    return doy0 * 24 + hour


def weather_hours(start_utc: datetime, end_utc: datetime) -> pd.DataFrame:
    """TMY weather for every whole UTC hour in [start_utc, end_utc), as a pandas frame indexed by UTC."""
    tmy = load_tmy()
    first = pd.Timestamp(start_utc).ceil("h")
    times = pd.date_range(first, pd.Timestamp(end_utc), freq="h", inclusive="left", tz=timezone.utc)
    rows = tmy_rows(times.tz_localize(None).to_numpy())
    return pd.DataFrame(
        {
            "ghi": tmy.ghi[rows],
            "dni": tmy.dni[rows],
            "dhi": tmy.dhi[rows],
            "temp_air": tmy.temp_air[rows],
            "wind_speed": tmy.wind_speed[rows],
            "cloud": tmy.cloud[rows],
        },
        index=times,
    )


def weather_at(times_utc: np.ndarray) -> dict[str, np.ndarray]:
    """Weather interpolated at arbitrary UTC instants (datetime64[us]).

    Each hour-ending value is treated as the mean of its hour and placed at the hour's middle, then
    interpolated linearly; that keeps the half-hour meter intervals and 15-minute SCADA samples on a
    smooth, unbiased version of the hourly record.
    """
    t = np.asarray(times_utc, dtype="datetime64[us]")
    lo = t.min().astype(datetime).replace(tzinfo=timezone.utc) - timedelta(hours=2)
    hi = t.max().astype(datetime).replace(tzinfo=timezone.utc) + timedelta(hours=3)
    w = weather_hours(lo, hi)
    centres = (w.index.tz_localize(None) - pd.Timedelta(minutes=30)).to_numpy().astype("datetime64[us]")
    x = centres.astype(np.int64).astype(float)
    xt = t.astype(np.int64).astype(float)
    return {c: np.interp(xt, x, w[c].to_numpy()) for c in w.columns}
