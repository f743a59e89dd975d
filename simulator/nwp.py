"""Simulated numerical weather prediction (NWP): forecasts issued like a weather service's, from the
simulator's own (real, TMY) weather.

Why an error model at all: every skill figure of the load and PV forecasters that use forecast
weather depends on how good the weather forecast is; a feed better than real ones would make them
meaningless. The model is calibrated to published operational accuracy (checked by
:func:`error_stats`, printed by ``make bench-forecast``):

* day-ahead 2 m temperature MAE about 1.5-2.5 degC;
* hourly GHI day-ahead RMSE about 25-40 % of the daytime mean GHI;
* errors growing with lead time.

Issues: four a day, runs at 00/06/12/18 UTC published ``latency`` (4 h) later; ``issued_at`` is the
publication time (what a consumer can know), each issue covers valid hours ``issued_at + 1 h`` ..
``issued_at + max_lead_h`` (54 h: more than two days from every issue). Each issue is missing with
probability ``p_missing`` (a failed run or a lost file).

Errors of issue ``i`` at lead ``L`` hours (all drawn from ``numpy.random.default_rng([seed, i])``, so a
given issue is the same whatever period is generated):

* temperature: ``T(v) + bias_t + e(L)``, ``e`` an AR(1) along the lead (``rho``) with standard
  deviation growing linearly from ``t_sd0`` to ``t_sd48`` at 48 h;
* cloud/irradiance: the forecast clear-sky index is the true index (smoothed over 3 h: NWP does not
  resolve single cumulus) read at ``v + delta_i(L)`` -- a timing error of the cloud fronts,
  ``delta_i(L) = s_i * (tim_sd0 + (tim_sd48 - tim_sd0) * L / 48)`` hours, ``s_i ~ N(0, 1)`` per issue --
  plus an AR(1) index error (``k_sd0`` .. ``k_sd48``) and a bias ``k_bias`` (NWP over-forecasts
  irradiance under cloud); GHI = index x Ineichen clear-sky GHI, DNI/DHI by the Erbs decomposition;
* wind: ``wind + N(0, w_sd(L))``, clipped at 0.

The simulator lands these issues as the ``weather_forecast`` source (``Simulator.weather_forecast(day)``:
the issues published during a local day, seeded by the config's seed), one file set per day like the
other sources; docs/NWP.md gives the format a real NWP export must have.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: columns of a weather forecast issue (the ``weather_forecast`` landing source, one row per valid hour)
FORECAST_COLUMNS = (
    "station_id",
    "issued_at",
    "valid_at",
    "lead_h",
    "temp_air_c",
    "ghi_wm2",
    "dni_wm2",
    "dhi_wm2",
    "cloud_cover",
    "wind_speed_ms",
)


@dataclass(frozen=True)
class NWPErrorModel:
    """Parameters of the error model (see the module docstring); defaults are the calibrated ones."""

    runs_utc: tuple[int, ...] = (0, 6, 12, 18)
    latency_h: int = 4
    max_lead_h: int = 54
    p_missing: float = 0.04
    bias_t: float = 0.4
    t_sd0: float = 0.9
    t_sd48: float = 2.6
    t_rho: float = 0.92
    tim_sd0: float = 1.0
    tim_sd48: float = 3.0
    k_sd0: float = 0.10
    k_sd48: float = 0.16
    k_rho: float = 0.85
    k_bias: float = 0.03
    w_sd0: float = 0.8
    w_sd48: float = 1.8


def _ar1(rng: np.random.Generator, n: int, rho: float, sd: np.ndarray) -> np.ndarray:
    z = rng.standard_normal(n)
    e = np.empty(n)
    e[0] = z[0]
    for j in range(1, n):
        e[j] = rho * e[j - 1] + np.sqrt(1 - rho**2) * z[j]
    return e * sd


def _clear_index(ghi: np.ndarray, cs: np.ndarray) -> np.ndarray:
    """GHI / clear-sky GHI where the sun is high enough (> 50 W/m2 clear sky), interpolated across nights."""
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.where(cs > 50.0, np.clip(ghi / cs, 0.0, 1.2), np.nan)
    idx = np.arange(k.size)
    ok = ~np.isnan(k)
    return np.interp(idx, idx[ok], k[ok]) if ok.any() else np.ones_like(k)


def issue_forecasts(
    weather: pd.DataFrame,
    latitude: float,
    longitude: float,
    altitude: float = 0.0,
    *,
    station_id: str = "GSO",
    seed: int = 0,
    model: NWPErrorModel = NWPErrorModel(),
) -> pd.DataFrame:
    """Every forecast issue whose whole range lies inside ``weather`` (hourly, ``observation_time`` =
    period start UTC, ``ghi_wm2``, ``temp_air_c``, ``wind_speed_ms``). Returns ``FORECAST_COLUMNS``,
    valid times as period starts, sorted by (issued_at, valid_at)."""
    import pvlib

    w = weather.sort_values("observation_time").reset_index(drop=True)
    t = pd.DatetimeIndex(pd.to_datetime(w["observation_time"], utc=True))
    if len(t) < 2 or (t[1:] - t[:-1] != pd.Timedelta(hours=1)).any():
        raise ValueError("weather for NWP issues must be on a complete hourly grid")
    loc = pvlib.location.Location(latitude, longitude, altitude=altitude)
    mid = t + pd.Timedelta(minutes=30)
    cs = loc.get_clearsky(mid, model="ineichen")["ghi"].to_numpy(float)
    zen = loc.get_solarposition(mid)["apparent_zenith"].to_numpy(float)
    ghi = w["ghi_wm2"].to_numpy(float)
    k_true = pd.Series(_clear_index(ghi, cs)).rolling(3, center=True, min_periods=1).mean().to_numpy()
    temp, wind = w["temp_air_c"].to_numpy(float), w["wind_speed_ms"].to_numpy(float)
    m = model
    L = np.arange(1, m.max_lead_h + 1)
    ramp = np.minimum(L, 48) / 48.0
    t_sd, k_sd = m.t_sd0 + (m.t_sd48 - m.t_sd0) * ramp, m.k_sd0 + (m.k_sd48 - m.k_sd0) * ramp
    tim_sd, w_sd = m.tim_sd0 + (m.tim_sd48 - m.tim_sd0) * ramp, m.w_sd0 + (m.w_sd48 - m.w_sd0) * ramp
    first = t[0].floor("D")
    runs = pd.date_range(first, t[-1], freq="h")
    runs = runs[runs.hour.isin(m.runs_utc)]
    out = []
    hours0 = t[0].value // 3_600_000_000_000
    for run in runs:
        issued = run + pd.Timedelta(hours=m.latency_h)
        i0 = int(issued.value // 3_600_000_000_000 - hours0)  # row of the issue hour
        if i0 < 0 or i0 + m.max_lead_h >= len(t):
            continue
        rng = np.random.default_rng([seed, int(run.value // 3_600_000_000_000)])
        if rng.random() < m.p_missing:
            continue
        rows = i0 + L
        shift = rng.standard_normal() * tim_sd
        kf = np.interp(rows + shift, np.arange(len(t)), k_true) + m.k_bias + _ar1(rng, len(L), m.k_rho, k_sd)
        kf = np.clip(kf, 0.02, 1.1)
        g = np.where(cs[rows] > 0, kf * cs[rows], 0.0)
        doy = t[rows].dayofyear.to_numpy()
        parts = pvlib.irradiance.erbs(g, zen[rows], doy)
        tf = temp[rows] + m.bias_t + _ar1(rng, len(L), m.t_rho, t_sd)
        wf = np.clip(wind[rows] + rng.standard_normal(len(L)) * w_sd, 0.0, None)
        out.append(
            pd.DataFrame(
                {
                    "station_id": station_id,
                    "issued_at": issued,
                    "valid_at": t[rows],
                    "lead_h": L.astype(float),
                    "temp_air_c": np.round(tf, 2),
                    "ghi_wm2": np.round(g, 1),
                    "dni_wm2": np.round(np.nan_to_num(np.asarray(parts["dni"], float)), 1),
                    "dhi_wm2": np.round(np.nan_to_num(np.asarray(parts["dhi"], float)), 1),
                    "cloud_cover": np.round(np.clip(1.0 - kf, 0.0, 1.0), 4),
                    "wind_speed_ms": np.round(wf, 2),
                }
            )
        )
    if not out:
        raise ValueError("weather span too short for one complete forecast issue")
    return pd.concat(out, ignore_index=True)


def error_stats(forecasts: pd.DataFrame, weather: pd.DataFrame, bands=((1, 6), (7, 24), (25, 48))) -> dict:
    """What the issued forecasts actually score against the weather they were made from, by lead band:
    temperature MAE and bias (degC), GHI RMSE and bias in % of the daytime (truth > 0) mean GHI,
    plus the share of issues missing."""
    truth = weather.assign(valid_at=pd.to_datetime(weather["observation_time"], utc=True))[
        ["valid_at", "temp_air_c", "ghi_wm2"]
    ]
    j = forecasts.merge(truth, on="valid_at", suffixes=("", "_obs"))
    out: dict = {}
    for lo, hi in bands:
        b = j[(j["lead_h"] >= lo) & (j["lead_h"] <= hi)]
        day = b[b["ghi_wm2_obs"] > 0]
        mean = float(day["ghi_wm2_obs"].mean())
        eg = day["ghi_wm2"] - day["ghi_wm2_obs"]
        et = b["temp_air_c"] - b["temp_air_c_obs"]
        out[f"lead_{lo}_{hi}h"] = {
            "temp_mae_c": round(float(et.abs().mean()), 3),
            "temp_bias_c": round(float(et.mean()), 3),
            "ghi_rmse_pct_daytime_mean": round(100 * float(np.sqrt((eg**2).mean())) / mean, 1),
            "ghi_bias_pct_daytime_mean": round(100 * float(eg.mean()) / mean, 1),
            "n": int(len(b)),
        }
    issued = pd.to_datetime(forecasts["issued_at"]).drop_duplicates().sort_values()
    span = issued.iloc[-1] - issued.iloc[0]
    expected = int(span / pd.Timedelta(hours=6)) + 1
    out["issues"] = int(len(issued))
    out["issues_missing_share"] = round(1 - len(issued) / expected, 4)
    return out
