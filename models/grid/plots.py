"""Pictures for the grid-ML gold tables (PNG bytes; assets put them in Dagster metadata).

Why pictures: an engineer checking a nightly score run wants to see at a glance whether the score
distribution moved against the alert bands, or which transformers top the failure risk, rather than
read a table of numbers. Plain matplotlib (Agg backend), no Dagster import.
"""

from __future__ import annotations

import io

import numpy as np
import polars as pl

from .config import AlertThresholds


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    plt = _plt()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _bands(ax, th: AlertThresholds, vertical: bool = True) -> None:
    line = ax.axvline if vertical else ax.axhline
    for v, c, name in (
        (th.monitoring, "gold", "monitoring"),
        (th.alert, "darkorange", "alert"),
        (th.critical, "red", "critical"),
    ):
        line(v, color=c, linestyle="--", linewidth=1, label=f"{name} {v:g}")


def score_distribution_png(scores: pl.DataFrame, th: AlertThresholds, title: str) -> bytes:
    """Histogram of ensemble scores per asset type (log counts: the tail is what matters) with the bands."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=90)
    bins = np.linspace(0.0, 1.0, 41)
    for kind, colour in (("meter", "tab:blue"), ("transformer", "tab:green")):
        s = scores.filter(pl.col("asset_type") == kind)["score"].to_numpy()
        if len(s):
            ax.hist(s, bins=bins, alpha=0.6, color=colour, label=f"{kind} ({len(s)})")
    _bands(ax, th)
    ax.set_yscale("log")
    ax.set_xlabel("calibrated anomaly score")
    ax.set_ylabel("readings / samples")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return _png(fig)


def top_risk_png(risk: pl.DataFrame, th: AlertThresholds, title: str, top: int = 15) -> bytes:
    """Highest 72 h failure probability of the day per transformer (top ``top``), with the bands."""
    plt = _plt()
    worst = (
        risk.group_by("transformer_id")
        .agg(pl.col("failure_probability_72h").max().alias("p"), pl.col("customers_downstream").first())
        .sort(["p", "transformer_id"], descending=[True, False])
        .head(top)
        .reverse()
    )
    fig, ax = plt.subplots(figsize=(8, 0.3 * max(worst.height, 4) + 1.2), dpi=90)
    labels = [
        f"{t} ({c} cust.)" for t, c in zip(worst["transformer_id"].to_list(), worst["customers_downstream"].to_list())
    ]
    ax.barh(labels, worst["p"].to_list(), color="tab:red")
    _bands(ax, th)
    ax.set_xlim(0, 1)
    ax.set_xlabel("max P(failure within 72 h) over the day")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    return _png(fig)


def dr_forecast_png(forecast: pl.DataFrame, capacity: dict[str, float], tz: str, title: str) -> bytes:
    """Forecast feeder load (time, entity_id, forecast_kw) against each feeder's DR capacity."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=90)
    f = forecast.with_columns(pl.col("time").dt.convert_time_zone(tz).alias("local")).sort("local")
    for (fid,), g in f.group_by("entity_id", maintain_order=True):
        line = ax.plot(g["local"].to_list(), g["forecast_kw"].to_list(), label=f"{fid} forecast")[0]
        if fid in capacity:
            ax.axhline(capacity[fid], color=line.get_color(), linestyle="--", linewidth=1, label=f"{fid} capacity")
    ax.set_ylabel("kW")
    ax.set_xlabel(f"local time ({tz})")
    ax.set_title(title)
    if f["entity_id"].n_unique() <= 6:
        ax.legend(fontsize=7)
    fig.autofmt_xdate()
    return _png(fig)
