"""Feature transforms as small composable pieces.

Each transform maps a pandas frame indexed by UTC time -- the target column (NaN in the future
rows) plus exogenous columns -- to a frame of new feature columns on the same index. A
:class:`FeaturePipeline` concatenates them. Transforms never look at the target beyond their
lag, so a model using lags >= its horizon cannot peek at the future (``min_target_lag`` tells).

Pieces: :class:`Lags` (same time yesterday, last week, ...), :class:`RollingStats`,
:class:`Calendar` (local hour/day, weekend, public holidays from the ``holidays`` package),
:class:`Cyclic` (sin/cos of hour of day, day of week, day of year),
:class:`TemperatureFeatures` (heating/cooling degree hours, smoothed temperature),
:class:`WeatherInteractions` (temperature x time of day, irradiance x daylight).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

import numpy as np
import pandas as pd


class Transform(Protocol):
    def transform(self, frame: pd.DataFrame, target: str) -> pd.DataFrame: ...


def _steps(frame: pd.DataFrame, span: pd.Timedelta) -> int:
    step = frame.index[1] - frame.index[0]
    return int(round(pd.Timedelta(span) / step))


@dataclass(frozen=True)
class Lags:
    """Target values ``lag`` ago. Defaults: same time yesterday and same time last week."""

    lags: tuple[pd.Timedelta, ...] = (pd.Timedelta(days=1), pd.Timedelta(days=7))

    def transform(self, frame: pd.DataFrame, target: str) -> pd.DataFrame:
        y = frame[target]
        return pd.DataFrame(
            {f"lag_{int(lag / pd.Timedelta(hours=1))}h": y.shift(_steps(frame, lag)) for lag in self.lags},
            index=frame.index,
        )


@dataclass(frozen=True)
class RollingStats:
    """Mean / std / min / max of the target over ``windows``, ending ``shift`` before the row.

    ``shift`` must be >= the forecast horizon so the window is fully observed at the origin.
    """

    windows: tuple[pd.Timedelta, ...] = (pd.Timedelta(days=1), pd.Timedelta(days=7))
    shift: pd.Timedelta = pd.Timedelta(days=1)
    stats: tuple[str, ...] = ("mean", "std", "min", "max")

    def transform(self, frame: pd.DataFrame, target: str) -> pd.DataFrame:
        y = frame[target].shift(_steps(frame, self.shift))
        sh = int(self.shift / pd.Timedelta(hours=1))
        out = {}
        for w in self.windows:
            r = y.rolling(_steps(frame, w), min_periods=max(1, _steps(frame, w) // 2))
            wh = int(w / pd.Timedelta(hours=1))
            for st in self.stats:
                out[f"roll{wh}h_{st}_s{sh}h"] = getattr(r, st)()
        return pd.DataFrame(out, index=frame.index)


@dataclass(frozen=True)
class Calendar:
    """Local-time calendar: hour, day of week, weekend and public-holiday flags.

    Local time (``tz``) because people wake up by the wall clock, not UTC. Holidays from the
    maintained ``holidays`` package (``country``/``subdiv``, e.g. "US"/"NC" or "GB"/"ENG").
    """

    tz: str  # the utility's zone (the profile's ``timezone``): no default, a wrong zone shifts every hour
    country: str = "US"
    subdiv: str | None = None

    @cached_property
    def _calendar(self):
        import holidays

        return holidays.country_holidays(self.country, subdiv=self.subdiv)

    def holiday_flags(self, idx: pd.DatetimeIndex) -> np.ndarray:
        local = idx.tz_convert(self.tz)
        return np.array([d in self._calendar for d in local.date], dtype=float)

    def transform(self, frame: pd.DataFrame, target: str) -> pd.DataFrame:
        local = frame.index.tz_convert(self.tz)
        hol = self.holiday_flags(frame.index)
        dow = local.dayofweek.to_numpy()
        return pd.DataFrame(
            {
                "hour": local.hour + local.minute / 60.0,
                "dow": dow,
                "weekend": (dow >= 5).astype(float),
                "holiday": hol,
                "off_day": np.maximum(hol, (dow >= 5).astype(float)),
            },
            index=frame.index,
        )


@dataclass(frozen=True)
class Cyclic:
    """sin/cos encodings so 23:30 sits next to 00:00 and Sunday next to Monday."""

    tz: str  # the utility's zone (the profile's ``timezone``)
    harmonics: int = 2
    #: day-of-year terms; off by default: with less than a year of history a tree model uses
    #: them to memorise the training period's level and extrapolates it badly
    yearly: bool = False

    def transform(self, frame: pd.DataFrame, target: str) -> pd.DataFrame:
        local = frame.index.tz_convert(self.tz)
        hod = (local.hour + local.minute / 60.0).to_numpy() / 24.0
        how = (local.dayofweek.to_numpy() + hod) / 7.0
        doy = local.dayofyear.to_numpy() / 365.25
        out = {}
        for k in range(1, self.harmonics + 1):
            for nm, v in (("hod", hod), ("how", how)):
                out[f"{nm}_sin{k}"] = np.sin(2 * np.pi * k * v)
                out[f"{nm}_cos{k}"] = np.cos(2 * np.pi * k * v)
        if self.yearly:
            out["doy_sin"] = np.sin(2 * np.pi * doy)
            out["doy_cos"] = np.cos(2 * np.pi * doy)
        return pd.DataFrame(out, index=frame.index)


@dataclass(frozen=True)
class TemperatureFeatures:
    """Temperature, heating/cooling degrees and a smoothed temperature (building inertia)."""

    column: str = "temp_air_c"
    heat_base_c: float = 15.5
    cool_base_c: float = 22.0
    smooth: pd.Timedelta = pd.Timedelta(hours=24)

    def transform(self, frame: pd.DataFrame, target: str) -> pd.DataFrame:
        t = frame[self.column]
        sm = t.rolling(_steps(frame, self.smooth), min_periods=1).mean()
        return pd.DataFrame(
            {
                "temp": t,
                "hdd": np.maximum(self.heat_base_c - t, 0.0),
                "cdd": np.maximum(t - self.cool_base_c, 0.0),
                "temp_smooth": sm,
                "cdd_smooth": np.maximum(sm - self.cool_base_c, 0.0),
            },
            index=frame.index,
        )


@dataclass(frozen=True)
class WeatherInteractions:
    """Products that let a tree/linear model see 'hot afternoon' or 'sunny midday' directly."""

    temp_col: str = "temp_air_c"
    ghi_col: str | None = "ghi_wm2"
    tz: str = field(kw_only=True)  # the utility's zone (the profile's ``timezone``)

    def transform(self, frame: pd.DataFrame, target: str) -> pd.DataFrame:
        local = frame.index.tz_convert(self.tz)
        hod = (local.hour + local.minute / 60.0).to_numpy()
        afternoon = ((hod >= 12) & (hod < 20)).astype(float)
        weekend = (local.dayofweek.to_numpy() >= 5).astype(float)
        out = {
            "temp_x_afternoon": frame[self.temp_col] * afternoon,
            "temp_x_weekend": frame[self.temp_col] * weekend,
            "temp_x_hod_sin": frame[self.temp_col] * np.sin(2 * np.pi * hod / 24),
        }
        if self.ghi_col and self.ghi_col in frame:
            out["ghi_x_temp"] = frame[self.ghi_col] * frame[self.temp_col] / 1000.0
        return pd.DataFrame(out, index=frame.index)


@dataclass
class FeaturePipeline:
    """Apply transforms and concatenate their columns (order = transform order)."""

    transforms: Sequence[Transform] = field(default_factory=list)

    def transform(self, frame: pd.DataFrame, target: str) -> pd.DataFrame:
        parts = [t.transform(frame, target) for t in self.transforms]
        out = pd.concat(parts, axis=1) if parts else pd.DataFrame(index=frame.index)
        dup = out.columns[out.columns.duplicated()]
        if len(dup):
            raise ValueError(f"feature name clash: {list(dup)}")
        return out

    def min_target_lag(self) -> pd.Timedelta | None:
        """Shortest look-back on the target: the largest horizon this pipeline can serve."""
        lags = []
        for t in self.transforms:
            if isinstance(t, Lags):
                lags.extend(t.lags)
            elif isinstance(t, RollingStats):
                lags.append(t.shift)
        return min(lags) if lags else None


def default_load_pipeline(
    horizon: pd.Timedelta,
    *,
    exog: Sequence[str] = (),
    tz: str,
    country: str = "US",
    subdiv: str | None = None,
) -> FeaturePipeline:
    """Lags/rolling windows no shorter than ``horizon`` + calendar + weather when available.

    'Same time yesterday' becomes 'same time on the latest fully observed day' (lag = the
    horizon rounded up to whole days), so one direct model serves every lead 1..horizon.
    """
    day = pd.Timedelta(days=1)
    base = day * int(np.ceil(horizon / day))
    lags = tuple(sorted({base, base + day, pd.Timedelta(days=7), pd.Timedelta(days=7) + base}))
    parts: list[Transform] = [
        Lags(lags),
        RollingStats(windows=(day, pd.Timedelta(days=7)), shift=base),
        Calendar(tz=tz, country=country, subdiv=subdiv),
        Cyclic(tz=tz),
    ]
    if "temp_air_c" in exog:
        parts.append(TemperatureFeatures())
        parts.append(WeatherInteractions(ghi_col="ghi_wm2" if "ghi_wm2" in exog else None, tz=tz))
    return FeaturePipeline(parts)
