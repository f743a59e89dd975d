"""Input checking and conversion for every forecaster.

Why one module: every model must reject the same bad inputs the same way (too little history,
gaps, constant series, missing weather) with an error that names the column / timestamp / row,
instead of letting NaNs travel silently into a forecast that feeds the optimisation graphs.

Input contract (gridlake gold/silver tables, or any frame shaped like them):

* a polars **or** pandas frame;
* one time column (default ``period_start``), timezone-aware; it is converted to UTC;
* one numeric target column (default ``mean_kw``);
* optional exogenous columns (e.g. ``temp_air_c`` from silver weather), aligned on the same time.

The frame must be on a regular grid (hourly, half-hourly, ...). Gaps of at most
``max_fill_steps`` consecutive missing steps are filled by time interpolation *and reported*
(``PreparedSeries.filled``); longer gaps raise :class:`GapError`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

log = logging.getLogger(__name__)

#: Output columns of every forecaster (see ``Forecaster.predict``).
FORECAST_COLUMNS = ("period_start", "horizon_h", "p10", "p50", "p90", "model")


class ForecastInputError(ValueError):
    """Bad forecaster input. Subclasses say which rule was broken."""


class InsufficientHistoryError(ForecastInputError):
    """Fewer observations than the model needs (e.g. two weeks for weekly seasonality)."""


class GapError(ForecastInputError):
    """Missing timestamps / values longer than the allowed interpolation."""


class ConstantSeriesError(ForecastInputError):
    """Target has (almost) no variance: seasonal and ML models are undefined on it."""


class MissingExogenousError(ForecastInputError):
    """A required exogenous column (e.g. weather) is absent or has missing values."""


class ForecastOutputError(RuntimeError):
    """A model produced a non-finite forecast. Raised instead of returning NaN silently."""


@dataclass
class PreparedSeries:
    """A validated series on a regular UTC grid.

    ``y`` is the target (float, no NaN), ``exog`` the exogenous columns on the same index,
    ``freq`` the step, ``filled`` the timestamps that were interpolated (reported to callers).
    """

    y: pd.Series
    exog: pd.DataFrame
    freq: pd.Timedelta
    filled: list[pd.Timestamp] = field(default_factory=list)

    @property
    def steps_per_day(self) -> int:
        return int(pd.Timedelta(days=1) / self.freq)

    def steps(self, span: pd.Timedelta) -> int:
        """Number of grid steps in ``span`` (must be a whole multiple of the step)."""
        n = span / self.freq
        if abs(n - round(n)) > 1e-9:
            raise ForecastInputError(f"span {span} is not a multiple of the series step {self.freq}")
        return int(round(n))


def to_pandas(frame: Any) -> pd.DataFrame:
    """Accept polars or pandas; return a pandas copy."""
    if isinstance(frame, pl.DataFrame):
        return frame.to_pandas()
    if isinstance(frame, pd.DataFrame):
        return frame.copy()
    raise TypeError(f"expected a polars or pandas DataFrame, got {type(frame).__name__}")


def prepare(
    frame: Any,
    *,
    time_col: str = "period_start",
    target: str = "mean_kw",
    exog: tuple[str, ...] | list[str] = (),
    max_fill_steps: int = 2,
    min_rel_std: float = 1e-6,
    freq: pd.Timedelta | None = None,
) -> PreparedSeries:
    """Validate ``frame`` and put it on a regular UTC grid.

    Raises
    ------
    ForecastInputError
        missing columns, naive or duplicated timestamps, a non-numeric target;
    GapError
        a run of more than ``max_fill_steps`` missing steps (or NaN targets);
    ConstantSeriesError
        target std below ``min_rel_std`` x mean magnitude;
    MissingExogenousError
        a requested exogenous column absent or NaN anywhere in the history.
    """
    df = to_pandas(frame)
    missing = [c for c in (time_col, target, *exog) if c not in df.columns]
    if missing:
        kind = MissingExogenousError if set(missing) <= set(exog) else ForecastInputError
        raise kind(f"input lacks column(s) {missing}; has {list(df.columns)}")
    if len(df) == 0:
        raise InsufficientHistoryError("input frame is empty")
    ts = pd.to_datetime(df[time_col])
    if ts.dt.tz is None:
        raise ForecastInputError(
            f"column {time_col!r} holds naive timestamps; gridlake times are UTC: make them tz-aware"
        )
    ts = ts.dt.tz_convert("UTC")
    if ts.isna().any():
        row = int(np.flatnonzero(ts.isna().to_numpy())[0])
        raise ForecastInputError(f"column {time_col!r} has a null timestamp at row {row}")
    df = df.assign(**{time_col: ts}).sort_values(time_col)
    dup = df[time_col].duplicated()
    if dup.any():
        raise ForecastInputError(
            f"column {time_col!r} has duplicate timestamp(s), first {df.loc[dup, time_col].iloc[0]}"
        )
    try:
        yv = pd.to_numeric(df[target], errors="raise").astype(float)
    except (TypeError, ValueError) as exc:
        raise ForecastInputError(f"target column {target!r} is not numeric: {exc}") from None
    df[target] = yv
    df = df.set_index(time_col)
    if freq is None:
        if len(df) < 3:
            raise InsufficientHistoryError(f"need at least 3 rows to infer the step, got {len(df)}")
        freq = pd.Series(df.index).diff().dropna().median()
    if freq <= pd.Timedelta(0):
        raise ForecastInputError(f"cannot infer a positive time step from column {time_col!r}")
    off_grid = ((df.index - df.index[0]) % freq) != pd.Timedelta(0)
    if off_grid.any():
        raise ForecastInputError(f"timestamp {df.index[off_grid][0]} is not on the {freq} grid starting {df.index[0]}")
    grid = pd.date_range(df.index[0], df.index[-1], freq=freq)
    df = df.reindex(grid)
    y = df[target]
    filled: list[pd.Timestamp] = []
    if y.isna().any():
        run_id = y.notna().cumsum()
        runs = y.isna().groupby(run_id).sum()
        longest = int(runs.max())
        first_missing = y.index[y.isna().to_numpy()][0]
        if longest > max_fill_steps:
            raise GapError(
                f"target {target!r} has a gap of {longest} consecutive missing step(s) of {freq} "
                f"(first missing {first_missing}); at most {max_fill_steps} are interpolated"
            )
        filled = list(y.index[y.isna().to_numpy()])
        if y.iloc[0] != y.iloc[0] or y.iloc[-1] != y.iloc[-1]:  # pragma: no cover - reindex keeps ends
            raise GapError(f"target {target!r} is missing at the series ends")
        log.warning("interpolated %d missing step(s) of %r, first %s", len(filled), target, filled[0])
        y = y.interpolate(method="time")
    scale = float(np.nanmean(np.abs(y.to_numpy()))) or 1.0
    if float(np.nanstd(y.to_numpy())) <= min_rel_std * scale:
        raise ConstantSeriesError(
            f"target {target!r} is constant ({y.iloc[0]!r}) over {len(y)} steps: nothing to learn; "
            "use a baseline forecaster (see models.forecast.forecast_with_fallback)"
        )
    ex = df[list(exog)].astype(float) if exog else pd.DataFrame(index=y.index)
    check_exog(ex, exog, where="history")
    return PreparedSeries(y=y.astype(float), exog=ex, freq=freq, filled=filled)


def check_exog(ex: pd.DataFrame | None, required: tuple[str, ...] | list[str], *, where: str) -> None:
    """Raise MissingExogenousError naming the column and first timestamp lacking a value."""
    if not required:
        return
    if ex is None:
        raise MissingExogenousError(f"{where}: exogenous column(s) {list(required)} required but none given")
    for c in required:
        if c not in ex.columns:
            raise MissingExogenousError(f"{where}: exogenous column {c!r} missing; has {list(ex.columns)}")
        bad = ex[c].isna().to_numpy()
        if bad.any():
            raise MissingExogenousError(
                f"{where}: exogenous column {c!r} has {int(bad.sum())} missing value(s), first at {ex.index[bad][0]}"
            )


def future_index(last: pd.Timestamp, freq: pd.Timedelta, steps: int) -> pd.DatetimeIndex:
    """The ``steps`` timestamps following ``last`` on the grid."""
    return pd.date_range(last + freq, periods=steps, freq=freq)


def prepare_future_exog(
    future: Any, *, time_col: str, columns: tuple[str, ...] | list[str], index: pd.DatetimeIndex
) -> pd.DataFrame:
    """Align future exogenous values (e.g. a weather forecast) to the forecast grid."""
    if not columns:
        return pd.DataFrame(index=index)
    if future is None:
        raise MissingExogenousError(
            f"future: exogenous column(s) {list(columns)} required for {index[0]}..{index[-1]} but none given"
        )
    df = to_pandas(future)
    if time_col not in df.columns:
        raise MissingExogenousError(f"future exogenous frame lacks time column {time_col!r}")
    ts = pd.to_datetime(df[time_col])
    if ts.dt.tz is None:
        raise ForecastInputError(f"future exogenous {time_col!r} holds naive timestamps; use UTC")
    df = df.assign(**{time_col: ts.dt.tz_convert("UTC")}).set_index(time_col)
    missing_cols = [c for c in columns if c not in df.columns]
    if missing_cols:
        raise MissingExogenousError(f"future exogenous frame lacks column(s) {missing_cols}")
    ex = df[list(columns)].astype(float).reindex(index)
    check_exog(ex, columns, where="future")
    return ex


def to_utc_frame(df: pd.DataFrame, time_col: str = "period_start") -> pl.DataFrame:
    """pandas -> polars with a ``Datetime('us','UTC')`` time column (the lake convention)."""
    out = pl.from_pandas(df.reset_index(drop=True))
    return out.with_columns(pl.col(time_col).cast(pl.Datetime("us", "UTC")))
