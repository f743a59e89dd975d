"""Shared fixtures: real data shipped in installed packages (no network)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import polars as pl
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def taylor() -> pl.DataFrame:
    """England & Wales half-hourly demand (MW), Mon 5 Jun - Sun 27 Aug 2000 (pmdarima)."""
    from pmdarima.datasets import load_taylor

    y = np.asarray(load_taylor(), float)
    idx = pd.date_range("2000-06-05", periods=len(y), freq="30min", tz="UTC")
    return pl.DataFrame({"period_start": idx, "mean_kw": y})


@pytest.fixture(scope="session")
def tmy() -> pd.DataFrame:
    """Greensboro NC TMY3 (pvlib's bundled file) in gridlake's silver-weather column names."""
    from models.solar.pv import tmy_weather

    df, meta = tmy_weather()
    df.attrs["meta"] = meta
    return df


@pytest.fixture(scope="session")
def hourly_load_with_weather(taylor, tmy) -> pl.DataFrame:
    """Real hourly demand (Taylor, hourly means) beside real temperature (TMY, same dates).

    The two are from different places; the frame exercises the exogenous plumbing with real
    values, not a causal link.
    """
    t = taylor.group_by_dynamic("period_start", every="1h").agg(pl.col("mean_kw").mean())
    w = pl.from_pandas(tmy[["observation_time", "temp_air_c", "ghi_wm2"]]).with_columns(
        pl.col("observation_time").cast(pl.Datetime("us", "UTC")).dt.offset_by("-21y")
    )
    t = t.with_columns(pl.col("period_start").cast(pl.Datetime("us", "UTC")))
    return t.join(w, left_on="period_start", right_on="observation_time", how="left").drop_nulls()
