"""Input coercion shared by the models: numpy/pandas/polars in, float arrays out, with named errors."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from optimization.errors import InputError


def as_series(
    x: Any, name: str, n: int | None = None, *, allow_none: bool = False, min_value: float | None = None
) -> np.ndarray | None:
    """Coerce a numpy/pandas/polars/list series or a scalar (broadcast to ``n``) to a float array.

    Raises :class:`InputError` naming the input and the first offending position, because a NaN
    price at step 7,311 otherwise surfaces as an opaque HiGHS "model error".
    """
    if x is None:
        if allow_none:
            return None
        raise InputError(f"{name}: a value is required")
    if isinstance(x, pl.Series):
        arr = x.cast(pl.Float64).to_numpy()
    elif hasattr(x, "to_numpy"):
        arr = np.asarray(x.to_numpy(), dtype=float)
    elif np.isscalar(x):
        if n is None:
            raise InputError(f"{name}: a scalar needs a horizon length")
        arr = np.full(n, float(x))
    else:
        try:
            arr = np.asarray(x, dtype=float)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{name}: not numeric ({exc})") from None
    arr = np.array(arr, dtype=float).reshape(-1)
    if n is not None and arr.size != n:
        raise InputError(f"{name}: length {arr.size}, expected {n} (one value per period)")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise InputError(f"{name}: non-finite value {arr[bad[0]]} at position {bad[0]} ({bad.size} in total)")
    if min_value is not None:
        low = np.flatnonzero(arr < min_value)
        if low.size:
            raise InputError(f"{name}: value {arr[low[0]]} at position {low[0]} is below {min_value}")
    return arr


def period_starts(start: datetime | None, n: int, minutes: float) -> pl.Series:
    """UTC period starts if ``start`` is given (naive means UTC), else the integer step number."""
    if start is None:
        return pl.Series("step", np.arange(n, dtype=np.int64))
    if start.tzinfo is None:
        from datetime import timezone

        start = start.replace(tzinfo=timezone.utc)
    stamps = [start + timedelta(minutes=minutes * k) for k in range(n)]
    return pl.Series("period_start", stamps).dt.convert_time_zone("UTC").cast(pl.Datetime("us", "UTC"))


def require_positive(value: float, name: str, *, allow_zero: bool = False) -> float:
    v = float(value)
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise InputError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return v
