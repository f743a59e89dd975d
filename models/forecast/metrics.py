"""Point and probabilistic forecast metrics, and the model-comparison table.

Conventions: MAPE in percent; pinball loss averaged over p10/p50/p90; ``coverage_80`` is the
share of actuals inside [p10, p90] (0.80 for a calibrated model).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from models.forecast.base import QUANTILES

METRICS = ("mape", "rmse", "mae", "r2", "pinball", "coverage_80")
#: metrics where larger is better (everything else ranks ascending)
HIGHER_IS_BETTER = {"r2"}


def mape(actual: np.ndarray, pred: np.ndarray) -> float:
    actual = np.asarray(actual, float)
    if np.any(actual == 0):
        raise ValueError("MAPE is undefined with zero actuals; rank by mae or rmse instead")
    return float(np.mean(np.abs(pred - actual) / np.abs(actual)) * 100.0)


def score(actual, p10, p50, p90) -> dict[str, float]:
    """All metrics for one set of forecasts (arrays of equal length)."""
    # sklearn (with scipy) costs ~0.7 CPU s to import: loaded on first use, not by every process loading the assets
    from sklearn.metrics import mean_absolute_error, mean_pinball_loss, mean_squared_error, r2_score

    a, lo, md, hi = (np.asarray(v, float) for v in (actual, p10, p50, p90))
    if not (np.isfinite(a).all() and np.isfinite(md).all()):
        raise ValueError("score(): actuals and forecasts must be finite")
    out = {
        "mape": mape(a, md) if np.all(a != 0) else float("nan"),
        "rmse": float(np.sqrt(mean_squared_error(a, md))),
        "mae": float(mean_absolute_error(a, md)),
        "r2": float(r2_score(a, md)) if len(a) > 1 else float("nan"),
        "pinball": float(np.mean([mean_pinball_loss(a, q, alpha=al) for q, al in zip((lo, md, hi), QUANTILES)])),
        "coverage_80": float(np.mean((a >= lo) & (a <= hi))),
    }
    return out


def band_score(actual, p05, p10, p50, p90, p95) -> dict[str, float]:
    """Interval metrics of a five-quantile forecast: ``coverage_80`` ([p10, p90]), ``coverage_90``
    ([p05, p95]) and ``pinball_5q``, the pinball loss averaged over the five quantiles (the
    three-quantile ``pinball`` of :func:`score` stays the comparable headline)."""
    from sklearn.metrics import mean_pinball_loss

    a = np.asarray(actual, float)
    qs = {0.05: p05, 0.1: p10, 0.5: p50, 0.9: p90, 0.95: p95}
    qs = {al: np.asarray(q, float) for al, q in qs.items()}
    return {
        "coverage_80": float(np.mean((a >= qs[0.1]) & (a <= qs[0.9]))),
        "coverage_90": float(np.mean((a >= qs[0.05]) & (a <= qs[0.95]))),
        "pinball_5q": float(np.mean([mean_pinball_loss(a, q, alpha=al) for al, q in qs.items()])),
    }


def score_backtest(bt: pl.DataFrame) -> pl.DataFrame:
    """One row per model with every metric (plus MAPE averaged per origin, the Taylor protocol)."""
    if "actual" not in bt.columns:
        raise ValueError("backtest frame has no 'actual' column")
    rows = []
    for (name,), g in bt.group_by(["model"], maintain_order=True):
        m = score(g["actual"].to_numpy(), g["p10"].to_numpy(), g["p50"].to_numpy(), g["p90"].to_numpy())
        m["model"] = name
        m["n_origins"] = g["origin"].n_unique()
        m["n_points"] = g.height
        rows.append(m)
    return pl.DataFrame(rows).select(["model", *METRICS, "n_origins", "n_points"])


def comparison_table(scores: pl.DataFrame, rank_by: str = "mape") -> pl.DataFrame:
    """Rank models by ``rank_by`` (1 = best)."""
    if rank_by not in scores.columns:
        raise ValueError(f"unknown metric {rank_by!r}; choose from {METRICS}")
    desc = rank_by in HIGHER_IS_BETTER
    ranked = scores.sort(rank_by, descending=desc, nulls_last=True)
    return ranked.with_row_index("rank", offset=1)


def finite_metrics(row: Mapping[str, Any]) -> dict[str, float]:
    """The ``METRICS`` in ``row`` (e.g. a ``score_backtest`` row) that are finite numbers, as
    floats: what MLflow can hold. MAPE is NaN for PV's zero nights, so it is left out there."""
    return {k: float(row[k]) for k in METRICS if isinstance(row.get(k), (int, float)) and math.isfinite(float(row[k]))}


def coverage_interval(
    frame: pl.DataFrame,
    lo: str = "p10",
    hi: str = "p90",
    *,
    block: int = 1,
    n_boot: int = 4000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Coverage of the band [``lo``, ``hi``] over the rows of ``frame`` (origin, actual, lo, hi) with a
    bootstrap confidence interval that does not treat the rows as independent.

    The hours of one forecast share its day's level error, and neighbouring days share weather
    regimes, so a coverage over n origins x leads is far less certain than a binomial over the rows
    says. The per-origin hit counts are resampled in circular blocks of ``block`` consecutive
    origins (``block=1``: whole origins; larger blocks also keep day-to-day dependence), seeded.
    Returns ``coverage``, ``ci`` [lower, upper] at ``level``, ``origins``, ``rows``, ``block_origins``
    and ``effective_rows`` (p(1-p) / bootstrap variance: the independent rows the data is worth)."""
    per = (
        frame.group_by("origin")
        .agg(((pl.col("actual") >= pl.col(lo)) & (pl.col("actual") <= pl.col(hi))).sum().alias("hits"), pl.len().alias("n"))
        .sort("origin")
    )  # fmt: skip
    h, n = per["hits"].to_numpy().astype(float), per["n"].to_numpy().astype(float)
    m = len(h)
    if m == 0:
        raise ValueError("coverage_interval: no rows")
    if not 1 <= block <= m:
        raise ValueError(f"coverage_interval: block must be within 1..{m} origins, got {block}")
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, m, size=(n_boot, math.ceil(m / block)))
    idx = ((starts[:, :, None] + np.arange(block)) % m).reshape(n_boot, -1)[:, :m]
    boot = h[idx].sum(axis=1) / n[idx].sum(axis=1)
    p = float(h.sum() / n.sum())
    a = (1 - level) / 2
    var = float(boot.var())
    return {
        "coverage": p,
        "ci": [float(np.quantile(boot, a)), float(np.quantile(boot, 1 - a))],
        "origins": m,
        "rows": int(n.sum()),
        "block_origins": block,
        "effective_rows": round(p * (1 - p) / var, 1) if var > 0 else float("inf"),
    }
