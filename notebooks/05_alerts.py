# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: gridlake (.venv)
#     name: python3
# ---

# %% [markdown]
# # 05 Alerts: what fired, when, to whom, and how fast it was delivered
#
# Plain SQL on the DuckDB catalog the demo wrote (`make demo`, then run this notebook cell by cell or whole:
# `.venv/bin/python notebooks/05_alerts.py [--catalog warehouse/gridlake.duckdb] [--out notebooks/figures]`).
# `gold_alerts` holds what batch scoring raised; `alerts` and `alert_deliveries` are the catalog's snapshot
# of the streaming bridge's PostgreSQL tables: every alert state Alertmanager notified, once per
# (fingerprint, startsAt, status), and one row per receiver that got it (attempts = Alertmanager's retries).

# %%
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] if "__file__" in globals() else Path.cwd().parent
sys.path.insert(0, str(ROOT / "notebooks"))
import matplotlib.pyplot as plt  # noqa: E402
from _nb import setup  # noqa: E402  (selects the Agg backend, puts the repo on sys.path)

sql, CATALOG, OUT, TZ = setup("Alerts raised and delivered, from the gridlake catalog")

tables = set(
    sql("SELECT table_name FROM duckdb_tables() UNION SELECT view_name FROM duckdb_views()")["table_name"].to_list()
)
assert {"alerts", "alert_deliveries", "gold_alerts"} <= tables, (
    "no delivered alerts in the catalog: run `make demo` (its alerts stage) first"
)
print(
    sql("SELECT (SELECT count(*) FROM alerts) AS alert_states, (SELECT count(*) FROM alert_deliveries) AS deliveries")
)

# %% [markdown]
# ## What fired
# Each delivered batch alert carries the gold row it came from (annotation `gold_fingerprint`) and the hour
# window it reports. Every one of them must be a `gold_alerts` row at the posted severity: nothing is
# delivered that scoring did not raise. The hour windows of one asset and rule carry the same labels, so
# Alertmanager holds them as one alert (annotated with the latest window posted): one per asset and rule.

# %%
fired = sql("""
    SELECT a.alertname, a.severity, a.asset_type, a.asset_id, a.transformer, a.feeder,
           g.date, g.rule, g.severity AS gold_severity, round(g.score, 3) AS score, g.window_start,
           a.starts_at, a.received_at, json_extract_string(a.annotations, '$.gold_fingerprint') AS gold_fingerprint
    FROM alerts a LEFT JOIN gold_alerts g ON g.fingerprint = json_extract_string(a.annotations, '$.gold_fingerprint')
    WHERE a.status = 'firing' AND json_extract_string(a.labels, '$.source') = 'batch'
    ORDER BY g.window_start, a.asset_id
""")
print(
    fired.select(
        "alertname",
        "asset_id",
        "transformer",
        "gold_severity",
        "score",
        fired["window_start"].dt.convert_time_zone(TZ).dt.strftime("%m-%d %H:%M").alias("window (local)"),
    )
)
assert fired.height, "the alerts table holds no batch alert"
assert fired["date"].null_count() == 0, (
    f"delivered alerts without their gold row: {fired.filter(fired['date'].is_null())['gold_fingerprint'].to_list()}"
)
assert (fired["gold_severity"] == "critical").all() and (fired["severity"] == "critical").all()
DAY = fired["date"].max()
# and everything critical that scoring raised that day was delivered
raised = sql(
    """
    SELECT count(*) AS rows, count(DISTINCT (rule, asset_type, asset_id)) AS assets
    FROM gold_alerts WHERE date = $1 AND severity = 'critical'
""",
    [DAY],
).row(0, named=True)
assert fired.filter(fired["date"] == DAY).height == raised["assets"], (
    f"{raised} critical gold alerts on {DAY}, {fired.height} delivered"
)
print(
    f"{fired.height} critical alerts of {DAY} delivered: {raised['rows']} hourly gold rows on {raised['assets']} assets and rules"
)

# %% [markdown]
# ## To whom
# The routing tree (`streaming_bridge/alertmanager.yml`): critical alerts go to the bridge's own receiver
# (the durable table and MQTT), the pager and chat, each once per alert.

# %%
by_receiver = sql("""
    SELECT d.receiver, a.severity, count(*) AS alerts, sum(d.attempts) AS attempts,
           round(median(epoch(d.first_received_at - a.starts_at)), 3) AS latency_p50_s
    FROM alert_deliveries d JOIN alerts a USING (fingerprint, starts_at, status)
    WHERE status = 'firing' GROUP BY ALL ORDER BY ALL
""")
print(by_receiver)
receivers = dict(zip(by_receiver["receiver"], by_receiver["alerts"], strict=True))
assert {"bridge", "pager", "chat"} <= set(receivers), (
    f"critical alerts did not reach every critical receiver: {receivers}"
)
assert len(set(receivers.values())) == 1, f"receivers got different numbers of alerts: {receivers}"

# %% [markdown]
# ## When, and how fast it was delivered
# `startsAt` is when the batch posted the alert (the window it reports is in the annotations), `received_at`
# when the bridge's receiver first stored it: the delivery latency through Alertmanager. Critical routes
# have `group_wait: 0s`, so this is seconds, not the window's age.

# %%
lat = fired.with_columns(
    ((fired["received_at"] - fired["starts_at"]).dt.total_milliseconds() / 1000).alias("latency_s")
)
print(lat.select("latency_s").describe())
assert (lat["latency_s"] >= 0).all(), "an alert received before it started"
assert lat["latency_s"].max() < 60, f"an alert took {lat['latency_s'].max():.1f} s to reach the receiver"

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 3.6), dpi=80)
local = fired["window_start"].dt.convert_time_zone(TZ)
for name in sorted(fired["alertname"].unique()):
    m = fired["alertname"] == name
    ax1.scatter(local.filter(m).to_list(), fired.filter(m)["asset_id"].to_list(), label=name, s=18)
ax1.set_title(f"what fired on {DAY}: window start ({TZ})")
ax1.legend(fontsize=8)
fig.autofmt_xdate()
ax2.hist(lat["latency_s"].to_list(), bins=20, color="tab:red")
ax2.set_xlabel("startsAt -> received_at (s)")
ax2.set_title("delivery latency")
fig.tight_layout()
fig.savefig(OUT / "alerts_fired_and_latency.png")
print(f"figure: {OUT / 'alerts_fired_and_latency.png'}")
