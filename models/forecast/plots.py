"""Forecast-vs-actual figure for MLflow runs and notebooks (matplotlib, headless)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402


def forecast_vs_actual(bt: pl.DataFrame, *, model: str | None = None, max_origins: int = 7):
    """Plot p50 with the p10-p90 band against actuals for the last ``max_origins`` origins."""
    if model is not None:
        bt = bt.filter(pl.col("model") == model)
    if bt.height == 0:
        raise ValueError("nothing to plot: empty backtest frame")
    origins = bt["origin"].unique().sort()[-max_origins:]
    d = bt.filter(pl.col("origin").is_in(origins.implode())).sort("period_start").to_pandas()
    fig, ax = plt.subplots(figsize=(10, 3.5))
    for _, g in d.groupby("origin"):
        ax.fill_between(g["period_start"], g["p10"], g["p90"], color="tab:blue", alpha=0.2, lw=0)
        ax.plot(g["period_start"], g["p50"], color="tab:blue", lw=1)
    ax.plot(d["period_start"], d["actual"], color="black", lw=0.8, label="actual")
    ax.set_title(f"{d['model'].iloc[0]}: forecast (p50, p10-p90) vs actual")
    ax.legend(loc="upper right")
    fig.tight_layout()
    return fig
