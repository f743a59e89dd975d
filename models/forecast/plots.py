"""Figures for MLflow runs, asset metadata and notebooks (matplotlib, headless Agg backend):
forecast vs actual on a backtest, a forecast after its history, feature importances; and
``png_bytes`` to turn any of them into PNG bytes."""

from __future__ import annotations

import io

import numpy as np
import polars as pl

from lake.plots import pyplot


def png_bytes(fig, dpi: int = 80) -> bytes:
    """The figure as PNG bytes; the figure is closed (log it elsewhere before)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    pyplot().close(fig)
    return buf.getvalue()


def forecast_vs_actual(bt: pl.DataFrame, *, model: str | None = None, max_origins: int = 7):
    """Plot p50 with the p10-p90 band against actuals for the last ``max_origins`` origins."""
    if model is not None:
        bt = bt.filter(pl.col("model") == model)
    if bt.height == 0:
        raise ValueError("nothing to plot: empty backtest frame")
    origins = bt["origin"].unique().sort()[-max_origins:]
    d = bt.filter(pl.col("origin").is_in(origins.implode())).sort("period_start").to_pandas()
    fig, ax = pyplot().subplots(figsize=(10, 3.5))
    for _, g in d.groupby("origin"):
        ax.fill_between(g["period_start"], g["p10"], g["p90"], color="tab:blue", alpha=0.2, lw=0)
        ax.plot(g["period_start"], g["p50"], color="tab:blue", lw=1)
    ax.plot(d["period_start"], d["actual"], color="black", lw=0.8, label="actual")
    ax.set_title(f"{d['model'].iloc[0]}: forecast (p50, p10-p90) vs actual")
    ax.legend(loc="upper right")
    fig.tight_layout()
    return fig


def forecast_figure(hist: pl.DataFrame, fc: pl.DataFrame, title: str, *, history_hours: int = 72):
    """The last ``history_hours`` rows of observed ``hist`` (period_start, mean_kw) in black,
    then the forecast ``fc``: p50 with the p10-p90 band."""
    fig, ax = pyplot().subplots(figsize=(10, 3.2))
    h = hist.tail(history_hours).to_pandas()
    f = fc.to_pandas()
    ax.plot(h["period_start"], h["mean_kw"], color="black", lw=0.9, label="observed")
    ax.fill_between(f["period_start"], f["p10"], f["p90"], color="tab:orange", alpha=0.25, lw=0, label="p10-p90")
    ax.plot(f["period_start"], f["p50"], color="tab:orange", lw=1.2, label="p50")
    ax.set_title(title)
    ax.set_ylabel("kW")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def feature_importance(model) -> tuple[list[str], np.ndarray] | None:
    """(feature names, gain importances) of an XGBoost-backed forecaster -- ``XGBoostForecaster``
    or ``models.solar.SolarXGBForecaster`` (mean over its per-lead boosters) -- after ``fit``;
    None for models without them. A calibrated wrapper (``ConformalForecaster``) shows its
    fitted model's."""
    model = getattr(model, "inner", None) or model
    booster = getattr(model, "model", None)
    cols = getattr(model, "_columns", None)
    if booster is None or cols is None or not hasattr(booster, "feature_importances_"):
        return None
    return list(cols), np.asarray(booster.feature_importances_, float)


def importance_figure(names: list[str], values: np.ndarray, title: str, top: int = 15):
    """Horizontal bars of the ``top`` largest importances, the largest at the top."""
    order = np.argsort(values)[::-1][:top][::-1]
    fig, ax = pyplot().subplots(figsize=(6, 0.3 * len(order) + 1))
    ax.barh([names[i] for i in order], values[order], color="tab:green")
    ax.set_title(title)
    fig.tight_layout()
    return fig
