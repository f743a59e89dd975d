"""Small matplotlib pictures for asset metadata (PNG bytes; the Dagster UI shows them inline)."""

from __future__ import annotations

import base64
import io

import polars as pl


def pyplot():
    """matplotlib.pyplot on the headless Agg backend, imported on first use: importing it (and matplotlib)
    costs ~0.5 CPU s, which every process loading the Dagster definitions would pay at import otherwise."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def load_profile_png(hourly: pl.DataFrame, tz: str, title: str) -> bytes:
    """Feeder hourly demand (left) and the distribution of transformer peak loading (right)."""
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.4), dpi=90)
    feeders = hourly.filter(pl.col("level") == "feeder").with_columns(
        pl.col("period_start").dt.convert_time_zone(tz).alias("local")
    )
    for fid, grp in feeders.sort("local").group_by("entity_id", maintain_order=True):
        a.plot(grp["local"].to_list(), grp["mean_kw"].to_list(), label=str(fid[0]))
    a.set_title("feeder demand (hourly mean kW)")
    a.set_xlabel(f"local time ({tz})")
    if feeders["entity_id"].n_unique() <= 8:
        a.legend(fontsize=7)
    tr = hourly.filter(pl.col("level") == "transformer").group_by("entity_id").agg(pl.col("loading_pct_max").max())
    b.hist(tr["loading_pct_max"].drop_nulls().to_list(), bins=20, color="tab:orange")
    b.axvline(100, color="red", linestyle="--", linewidth=1)
    b.set_title("transformer peak loading (% of rating)")
    fig.suptitle(title)
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def png_markdown(png: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"
