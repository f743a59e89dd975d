"""The daily operator report: one self-contained HTML file (images embedded as PNG data URIs, no
scripts, no server) built from the gold tables of one utility-local day.

Sections: per feeder the day-ahead load forecast with its p10-p90 band against the metered load,
the PV forecast, the battery schedule (SOC, charge/discharge against price), EV charging against
the transformer limit, the transformer risk ranking, the anomaly timeline, the segment mix and the
alert timeline (delivered alerts, when a table of them is handed in).

:func:`build_report` reads the lake and returns a :class:`Report` (its HTML and its figures, so a
Dagster asset can attach the key plots to its materialisation); :func:`write_report` writes
``index.html`` atomically. A table that does not exist yet gives a section saying which table is
missing, not an error: the report shows what the lake holds. No Dagster here (assets/report.py is
the thin asset).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import os
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from contracts import SYSTEM_ENTITY, TABLES, UtilityProfile, day_bounds_utc
from lake.delta import Lake
from lake.plots import pyplot as _plt
from models.forecast.plots import png_bytes

_T = TABLES

#: columns a delivered-alerts table must have for the alert timeline (the bridge's ``alerts`` table)
ALERT_COLUMNS = ("starts_at", "severity", "alertname", "asset_id")


def _png(fig) -> bytes:
    fig.tight_layout()
    return png_bytes(fig)


@dataclass(frozen=True)
class Figure:
    key: str
    title: str
    png: bytes

    def img(self) -> str:
        return (
            f'<img alt="{html.escape(self.title)}" src="data:image/png;base64,{base64.b64encode(self.png).decode()}">'
        )


@dataclass
class Section:
    title: str
    figures: list[Figure] = field(default_factory=list)
    text: str = ""  # already-escaped HTML (notes and small tables)


@dataclass
class Report:
    day: dt.date
    sections: list[Section]

    @property
    def figures(self) -> dict[str, Figure]:
        return {f.key: f for s in self.sections for f in s.figures}

    def html(self) -> str:
        body = []
        for s in self.sections:
            body.append(
                f"<section><h2>{html.escape(s.title)}</h2>{s.text}{''.join(f.img() for f in s.figures)}</section>"
            )
        return (
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>gridlake daily report {self.day}</title><style>"
            "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
            "h1{border-bottom:2px solid #444}section{margin:2em 0}img{max-width:100%;display:block;margin:.5em 0}"
            "table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}"
            "th{background:#f3f3f3}.note{color:#666;font-style:italic}"
            f"</style></head><body><h1>gridlake daily report: {self.day}</h1>{''.join(body)}</body></html>\n"
        )


def write_report(report: Report, out_dir: str | os.PathLike) -> Path:
    """Write ``<out_dir>/index.html`` (temp file + rename: a reader never sees half a report)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".index.html.tmp"
    tmp.write_text(report.html(), encoding="utf-8")
    os.replace(tmp, out / "index.html")
    return out / "index.html"


def _note(msg: str) -> str:
    return f"<p class='note'>{html.escape(msg)}</p>"


def _table(df: pl.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in df.columns)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r) + "</tr>" for r in df.iter_rows())
    return f"<table><tr>{head}</tr>{rows}</table>"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return "" if v is None else str(v)


def _local(s: pl.Series | pl.Expr, tz: str):
    return s.dt.convert_time_zone(tz)


# ============================================================================================
# forecasts
# ============================================================================================
def day_ahead(forecast: pl.DataFrame, day: dt.date, tz: str) -> pl.DataFrame:
    """Per entity, the newest issue made before local ``day`` began, over the hours of the day
    (the day-ahead forecast an operator planned the day with)."""
    lo, hi = day_bounds_utc(day, tz)
    fc = forecast.filter(pl.col("period_start") >= lo, pl.col("period_start") < hi, pl.col("issued_at") <= lo)
    newest = fc.group_by("entity_id").agg(pl.col("issued_at").max().alias("_newest"))
    return (
        fc.join(newest, on="entity_id")
        .filter(pl.col("issued_at") == pl.col("_newest"))
        .drop("_newest")
        .sort("entity_id", "period_start")
    )


def load_forecast_figure(fc: pl.DataFrame, actual: pl.DataFrame, entity: str, tz: str) -> bytes:
    """p10-p90 band and p50 of one entity's forecast against its metered hourly load."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 3), dpi=80)
    f = fc.filter(pl.col("entity_id") == entity).with_columns(_local(pl.col("period_start"), tz).alias("t"))
    a = (
        actual.filter(pl.col("entity_id") == entity)
        .sort("period_start")
        .with_columns(_local(pl.col("period_start"), tz).alias("t"))
    )
    if f.height:
        ax.fill_between(
            f["t"].to_list(), f["p10"].to_list(), f["p90"].to_list(), color="tab:blue", alpha=0.25, label="p10-p90"
        )
        ax.plot(
            f["t"].to_list(),
            f["p50"].to_list(),
            color="tab:blue",
            lw=1.5,
            label=f"p50 ({f['model'][0]} v{f['model_version'][0]})",
        )
    ax.plot(a["t"].to_list(), a["mean_kw"].to_list(), color="black", lw=1.2, label="metered")
    ax.set_ylabel("kW")
    ax.set_title(f"{entity}: day-ahead load forecast vs metered load ({tz})")
    ax.legend(fontsize=7, loc="upper left")
    fig.autofmt_xdate()
    return _png(fig)


def solar_forecast_figure(fc: pl.DataFrame, tz: str) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 3), dpi=80)
    for entity, g in fc.sort("period_start").group_by("entity_id", maintain_order=True):
        t = _local(g["period_start"], tz).to_list()
        line = ax.plot(t, g["p50"].to_list(), lw=1.5, label=f"{entity[0]} p50")[0]
        ax.fill_between(t, g["p10"].to_list(), g["p90"].to_list(), color=line.get_color(), alpha=0.2)
    ax.set_ylabel("kW AC")
    ax.set_title(f"PV fleet forecast, day-ahead, p10-p90 bands ({tz})")
    ax.legend(fontsize=7, loc="upper left")
    fig.autofmt_xdate()
    return _png(fig)


# ============================================================================================
# schedules
# ============================================================================================
def battery_figure(sched: pl.DataFrame, tz: str) -> bytes:
    """Charge (-) / discharge (+) bars against the price, and the state of charge below."""
    plt = _plt()
    s = sched.sort("period_start")
    t = _local(s["period_start"], tz).to_list()
    net = (s["discharge_kw"] - s["charge_kw"]).to_list()
    fig, (a, b) = plt.subplots(2, 1, figsize=(9, 4.5), dpi=80, sharex=True)
    a.bar(t, net, width=1 / 96 * 0.9, color=["tab:green" if v >= 0 else "tab:red" for v in net])
    a.set_ylabel("discharge(+)/charge(-) kW")
    p = a.twinx()
    p.step(t, s["price_per_mwh"].to_list(), where="post", color="black", lw=1)
    p.set_ylabel("price $/MWh")
    a.set_title(f"battery at {s['site_id'][0]}: schedule vs time-of-use price ({tz})")
    b.plot(t, s["soc_frac"].to_list(), color="tab:blue")
    b.set_ylim(0, 1.05)
    b.set_ylabel("state of charge")
    fig.autofmt_xdate()
    return _png(fig)


def ev_figure(sched: pl.DataFrame, limit_kw: float | None, tz: str) -> bytes:
    """Site EV load per strategy against the transformer limit."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 3), dpi=80)
    site = sched.group_by("strategy", "period_start").agg(pl.col("power_kw").sum()).sort("strategy", "period_start")
    for strategy, g in site.group_by("strategy", maintain_order=True):
        ax.step(
            _local(g["period_start"], tz).to_list(), g["power_kw"].to_list(), where="post", lw=1.2, label=strategy[0]
        )
    if limit_kw is not None:
        ax.axhline(limit_kw, color="red", ls="--", lw=1, label=f"transformer limit {limit_kw:g} kW")
    ax.set_ylabel("EV site load kW")
    ax.set_title(f"EV charging per strategy vs the transformer limit ({tz})")
    ax.legend(fontsize=7)
    fig.autofmt_xdate()
    return _png(fig)


# ============================================================================================
# grid ML
# ============================================================================================
def anomaly_timeline_figure(scores: pl.DataFrame, alerts: pl.DataFrame, tz: str) -> bytes:
    """Top: readings/samples per hour in each status band; bottom: each alert's window, per asset."""
    plt = _plt()
    fig, (a, b) = plt.subplots(2, 1, figsize=(9, 5), dpi=80, sharex=True, gridspec_kw={"height_ratios": [1, 1.3]})
    hourly = (scores.filter(pl.col("status") != "normal")
              .with_columns(_local(pl.col("time"), tz).dt.truncate("1h").alias("h"))
              .group_by("h", "status").len().sort("h"))  # fmt: skip
    colours = {"monitoring": "gold", "alert": "darkorange", "critical": "red"}
    for status, g in hourly.group_by("status", maintain_order=True):
        a.plot(g["h"].to_list(), g["len"].to_list(), marker=".", lw=1, color=colours.get(status[0]), label=status[0])
    a.set_ylabel("points / hour")
    a.set_title(f"anomaly timeline ({tz}): scored points above normal, and the alerts raised")
    if hourly.height:
        a.legend(fontsize=7)
    al = alerts.sort("asset_type", "asset_id")
    assets = (
        al.select(pl.concat_str("asset_type", pl.lit(" "), "asset_id").alias("k"))["k"]
        .unique(maintain_order=True)
        .to_list()
    )
    for row in al.iter_rows(named=True):
        y = assets.index(f"{row['asset_type']} {row['asset_id']}")
        t0, t1 = row["window_start"].astimezone(_zone(tz)), row["window_end"].astimezone(_zone(tz))
        b.plot(
            [t0, t1],
            [y, y],
            lw=5,
            solid_capstyle="butt",
            color={"critical": "red", "alert": "darkorange"}.get(row["severity"], "gold"),
        )
    b.set_yticks(range(len(assets)), assets, fontsize=6)
    b.set_ylabel("alerts")
    fig.autofmt_xdate()
    return _png(fig)


def _zone(tz: str):
    from zoneinfo import ZoneInfo

    return ZoneInfo(tz)


def segment_figure(seg: pl.DataFrame) -> bytes:
    plt = _plt()
    mix = seg.group_by("segment").len().sort("len", "segment")
    fig, ax = plt.subplots(figsize=(8, 0.28 * mix.height + 1.2), dpi=80)
    ax.barh(mix["segment"].to_list(), mix["len"].to_list(), color="tab:purple")
    ax.set_xlabel("meters")
    ax.set_title(f"customer segment mix ({seg.height} meters)")
    return _png(fig)


def delivered_alerts_figure(alerts: pl.DataFrame, tz: str) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 2.8), dpi=80)
    sev = ["info", "warning", "critical"]
    for i, s in enumerate(sev):
        g = alerts.filter(pl.col("severity") == s)
        ax.scatter(_local(g["starts_at"], tz).to_list(), [i] * g.height, label=f"{s} ({g.height})", s=14)
    ax.set_yticks(range(len(sev)), sev)
    ax.set_title(f"alerts delivered, by the time the condition was observed ({tz})")
    fig.autofmt_xdate()
    return _png(fig)


# ============================================================================================
# the report
# ============================================================================================
def _read(lk: Lake, name: str, lo: dt.date, hi: dt.date) -> pl.DataFrame | None:
    """Rows of ``name`` for lo..hi, or None if the table does not exist yet."""
    return lk.read_days(_T[name], lo, hi) if lk.exists(name) else None


def _missing(name: str) -> str:
    return _note(f"{name} has no rows for this day yet (materialise it to fill this section).")


def build_report(lk: Lake, day: dt.date, profile: UtilityProfile, *, ev_limit_kw: float | None = None, delivered_alerts: pl.DataFrame | None = None,
                 max_feeders: int = 8) -> Report:  # fmt: skip
    """The report of local ``day`` from the gold tables of ``lk``, for the utility ``profile`` (its zone and
    alert bands: the asset hands it over, this module reads no configuration itself).

    ``delivered_alerts``: the alerts the delivery path notified (columns :data:`ALERT_COLUMNS`, optionally
    ``occurred_at``: when the condition was observed, e.g. a batch alert's window, else ``starts_at`` is used;
    and ``received_at``: the delivery latency is shown), or None when there is no such table (the section
    then says that none were delivered).
    """
    tz = profile.timezone
    lo, hi = day_bounds_utc(day, tz)
    sections: list[Section] = []

    # -- load forecast per feeder, and PV ----------------------------------------------------------
    sec = Section("Load forecast vs metered load (day-ahead issue, p10-p90 band)")
    fc = _read(lk, "gold_load_forecast", day - dt.timedelta(days=3), day)
    fc = day_ahead(fc, day, tz) if fc is not None else None
    hourly = _read(lk, "gold_load_hourly", day - dt.timedelta(days=1), day)
    if fc is None or fc.height == 0:
        sec.text = _missing("gold_load_forecast (an issue made before the day began)")
    else:
        actual = (hourly.filter(pl.col("level") == "feeder").select("entity_id", "period_start", "mean_kw") if hourly is not None
                  else pl.DataFrame(schema={"entity_id": pl.Utf8, "period_start": pl.Datetime("us", "UTC"), "mean_kw": pl.Float64}))  # fmt: skip
        actual = pl.concat(
            [
                actual,
                actual.group_by("period_start")
                .agg(pl.col("mean_kw").sum())
                .select(pl.lit(SYSTEM_ENTITY).alias("entity_id"), "period_start", "mean_kw"),
            ]
        )
        day_actual = actual.filter(pl.col("period_start") >= lo, pl.col("period_start") < hi)
        acc = (fc.join(day_actual, on=["entity_id", "period_start"])
               .group_by("entity_id").agg(
                   (100 * ((pl.col("p50") - pl.col("mean_kw")).abs() / pl.col("mean_kw")).mean()).alias("MAPE %"),
                   (100 * pl.col("mean_kw").is_between(pl.col("p10"), pl.col("p90")).mean()).alias("in p10-p90 %"),
                   pl.len().alias("hours")).sort("entity_id"))  # fmt: skip
        sec.text = (
            _table(acc) if acc.height else _note("no metered load for this day yet: the plots show the forecast only")
        )
        entities = [SYSTEM_ENTITY] + sorted(e for e in fc["entity_id"].unique().to_list() if e != SYSTEM_ENTITY)[
            :max_feeders
        ]
        for e in entities:
            if fc.filter(pl.col("entity_id") == e).height:
                sec.figures.append(
                    Figure(f"load_forecast_{e}", f"{e} load forecast", load_forecast_figure(fc, actual, e, tz))
                )
    sections.append(sec)

    sec = Section("PV forecast (day-ahead issue)")
    pv = _read(lk, "gold_solar_forecast", day - dt.timedelta(days=3), day)
    pv = day_ahead(pv, day, tz) if pv is not None else None
    if pv is None or pv.height == 0:
        sec.text = _missing("gold_solar_forecast")
    else:
        sec.figures.append(
            Figure("solar_forecast", "PV forecast", solar_forecast_figure(pv.filter(pl.col("level") == "feeder"), tz))
        )
    sections.append(sec)

    # -- schedules ---------------------------------------------------------------------------------
    sec = Section("Battery schedule")
    bs, bd = _read(lk, "gold_battery_schedule", day, day), _read(lk, "gold_battery_daily", day, day)
    if bs is None or bs.height == 0:
        sec.text = _missing("gold_battery_schedule")
    else:
        if bd is not None and bd.height:
            sec.text = _table(
                bd.select(
                    "site_id",
                    "power_kw",
                    "energy_kwh",
                    "savings",
                    "baseline_peak_import_kw",
                    "peak_import_kw",
                    "equivalent_full_cycles",
                )
            )
        sec.figures.append(Figure("battery_schedule", "battery schedule", battery_figure(bs, tz)))
    sections.append(sec)

    sec = Section("EV charging vs the transformer limit")
    ev, evs = _read(lk, "gold_ev_schedule", day, day), _read(lk, "gold_ev_sessions", day, day)
    if ev is None or ev.height == 0:
        sec.text = _missing("gold_ev_schedule")
    else:
        if evs is not None and evs.height:
            sec.text = _table(evs.group_by("strategy").agg(pl.len().alias("sessions"), pl.col("requested_kwh").sum(), pl.col("delivered_kwh").sum(),
                                                         pl.col("unmet_kwh").sum()).sort("strategy"))  # fmt: skip
        sec.figures.append(Figure("ev_charging", "EV charging", ev_figure(ev, ev_limit_kw, tz)))
    sections.append(sec)

    # -- grid ML -----------------------------------------------------------------------------------
    sec = Section("Transformer risk ranking (P(failure within 72 h))")
    risk = _read(lk, "gold_transformer_risk", day, day)
    if risk is None or risk.height == 0:
        sec.text = _missing("gold_transformer_risk")
    else:
        from models.grid.config import AlertThresholds
        from models.grid.plots import top_risk_png

        top = (risk.sort("failure_probability_72h", descending=True).unique("transformer_id", keep="first", maintain_order=True).head(10)
               .select("transformer_id", "failure_probability_72h", "rul_hours", "status", "customers_downstream", "anomaly_count_7d"))  # fmt: skip
        sec.text = _table(top)
        sec.figures.append(
            Figure(
                "transformer_risk",
                "transformer risk",
                top_risk_png(
                    risk,
                    AlertThresholds.from_bands(profile.alert_bands.failure_risk),
                    f"transformer failure risk {day}",
                ),
            )
        )
    sections.append(sec)

    sec = Section("Anomaly timeline")
    scores, alerts = _read(lk, "gold_anomaly_scores", day, day), _read(lk, "gold_alerts", day, day)
    if scores is None or scores.height == 0:
        sec.text = _missing("gold_anomaly_scores")
    else:
        alerts = alerts if alerts is not None else pl.DataFrame(schema=_T["gold_alerts"].polars_schema())
        counts = alerts.group_by("asset_type", "rule", "severity").len("alerts").sort("asset_type", "rule", "severity")
        sec.text = _table(counts) if counts.height else _note("no alerts raised on this day")
        sec.figures.append(Figure("anomaly_timeline", "anomaly timeline", anomaly_timeline_figure(scores, alerts, tz)))
    sections.append(sec)

    sec = Section("Customer segment mix")
    seg = lk.read(_T["gold_customer_segments"], day) if lk.exists("gold_customer_segments") else None
    if seg is None or seg.height == 0:
        sec.text = _missing("gold_customer_segments")
    else:
        sec.figures.append(Figure("segment_mix", "segment mix", segment_figure(seg)))
    sections.append(sec)

    sec = Section("Alert timeline (delivered)")
    if delivered_alerts is None:
        sec.text = _note(
            "No alerts delivered: there is no delivered-alerts table (the alert delivery path has not run)."
        )
    else:
        missing = [c for c in ALERT_COLUMNS if c not in delivered_alerts.columns]
        if missing:
            raise ValueError(f"delivered_alerts lacks columns {missing} (needs {list(ALERT_COLUMNS)})")
        at = "occurred_at" if "occurred_at" in delivered_alerts.columns else "starts_at"
        d = delivered_alerts.with_columns(pl.col(at).dt.convert_time_zone("UTC").alias("at")).filter(
            pl.col("at") >= lo, pl.col("at") < hi
        )
        if d.height == 0:
            sec.text = _note("No alerts delivered on this day.")
        else:
            aggs = [pl.len().alias("delivered"), pl.col("asset_id").n_unique().alias("assets")]
            if "received_at" in d.columns:
                lat = (pl.col("received_at") - pl.col("starts_at")).dt.total_milliseconds() / 1000
                aggs += [lat.median().round(3).alias("latency p50 s"), lat.max().round(3).alias("latency max s")]
            sec.text = _table(d.group_by("severity", "alertname").agg(aggs).sort("severity", "alertname"))
            sec.figures.append(
                Figure(
                    "alert_timeline",
                    "alert timeline",
                    delivered_alerts_figure(d.with_columns(pl.col("at").alias("starts_at")), tz),
                )
            )
    sections.append(sec)
    return Report(day, sections)
