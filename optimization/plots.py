"""PNG plots of schedules (bytes), for Dagster asset metadata or reports.

Matplotlib's non-interactive Agg backend is used explicitly so the helpers work in worker
processes without a display.
"""

from __future__ import annotations

import io

import polars as pl

from lake.plots import pyplot


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    pyplot().close(fig)
    return buf.getvalue()


def _x(df: pl.DataFrame) -> tuple[str, list]:
    col = "period_start" if "period_start" in df.columns else df.columns[0]
    return col, df[col].to_list()


def battery_schedule_png(schedule: pl.DataFrame, title: str = "Battery schedule") -> bytes:
    """Net battery power (bars) and price (line) on top, state of charge below."""
    xname, x = _x(schedule)
    fig, (ax1, ax3) = pyplot().subplots(2, 1, figsize=(10, 5.5), sharex=True)
    ax1.bar(
        x,
        schedule["net_kw"].to_list(),
        color=["tab:green" if v > 0 else "tab:red" for v in schedule["net_kw"].to_list()],
        width=0.8 if xname != "period_start" else 0.008,
    )
    ax1.set_ylabel("discharge(+)/charge(-) kW")
    ax2 = ax1.twinx()
    ax2.plot(x, schedule["price"].to_list(), color="black", lw=1)
    ax2.set_ylabel("price $/MWh")
    ax1.set_title(title)
    ax3.plot(x, schedule["soc_frac"].to_list(), color="tab:blue")
    ax3.set_ylabel("SOC (fraction)")
    ax3.set_ylim(0, 1.05)
    ax3.set_xlabel(xname)
    return _png(fig)


def ev_profile_png(
    profiles: dict[str, pl.DataFrame], limit_kw: float | None = None, title: str = "EV charging"
) -> bytes:
    """Site load of several strategies (e.g. uncontrolled / EDF / optimal) against the limit."""
    fig, ax = pyplot().subplots(figsize=(10, 4))
    for name, prof in profiles.items():
        ax.plot(prof["period"].to_list(), prof["site_kw"].to_list(), label=name, lw=1.2)
    if limit_kw is not None:
        ax.axhline(limit_kw, color="red", ls="--", lw=1, label="limit")
    ax.set_xlabel("period")
    ax.set_ylabel("site kW")
    ax.set_title(title)
    ax.legend()
    return _png(fig)


def lmp_png(buses: pl.DataFrame, title: str = "Locational marginal prices") -> bytes:
    fig, ax = pyplot().subplots(figsize=(10, 3.5))
    ax.bar(range(buses.height), buses["lmp"].to_list(), color="tab:purple")
    ax.set_xlabel("bus (order)")
    ax.set_ylabel("LMP $/MWh")
    ax.set_title(title)
    return _png(fig)


def uc_dispatch_png(system: pl.DataFrame, title: str = "Unit commitment") -> bytes:
    fig, ax = pyplot().subplots(figsize=(10, 4))
    h = system["hour"].to_list()
    ax.stackplot(
        h, system["thermal_mw"].to_list(), system["renewable_used_mw"].to_list(), labels=["thermal", "renewable"]
    )
    ax.plot(h, system["load_mw"].to_list(), color="black", lw=1.5, label="load")
    ax2 = ax.twinx()
    ax2.step(h, system["units_on"].to_list(), where="mid", color="tab:red", lw=1)
    ax2.set_ylabel("units on")
    ax.set_xlabel("hour")
    ax.set_ylabel("MW")
    ax.set_title(title)
    ax.legend(loc="upper left")
    return _png(fig)
