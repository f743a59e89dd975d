"""gridlake-bridge replay / status and argument errors."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest

from contracts import DEFAULT_TIMEZONE, SOURCES
from streaming_bridge import cli
from streaming_bridge.service import replay
from tests.streaming_bridge.bridge_helpers import ListSink

DAY = dt.date(2026, 11, 2)
T0 = dt.datetime(2026, 11, 2, 15, 0, tzinfo=dt.UTC)


def _silver_scada(lake, tx: str) -> None:
    src = SOURCES["scada"]
    hot = [70.0, 142.0, 141.0, 120.0, 80.0]
    df = pl.DataFrame(
        {
            "date": [DAY] * 5,
            "transformer_id": [tx] * 5,
            "sample_time": [T0 + dt.timedelta(minutes=15 * k) for k in range(5)],
            "load_kva": [20.0] * 5,
            "top_oil_temp_c": [50.0] * 5,
            "hot_spot_temp_c": hot,
            "voltage_v": [233.0] * 5,
            "frequency_hz": [60.0] * 5,
            "quality_flag": ["ok"] * 5,
            "source_file": ["x"] * 5,
            "source_row": list(range(1, 6)),
        }
    )
    lake.write_partition(src.silver, src.silver.conform(df), DAY)


def test_replay_rescoring_the_lake_fires_and_resolves_in_time_order(lake_and_landing):
    lake, _ = lake_and_landing
    tx = lake.read("ref_transformers")["transformer_id"][0]
    _silver_scada(lake, tx)
    sink = ListSink()
    out = replay(lake, T0 - dt.timedelta(hours=1), sink, until=T0 + dt.timedelta(days=1), tz=DEFAULT_TIMEZONE)
    crit = [a for a in sink.alerts if a.labels["alertname"] == "TransformerHotSpotCritical"]
    assert [(a.resolved, a.starts_at) for a in crit] == [
        (False, T0 + dt.timedelta(minutes=15)),
        (True, T0 + dt.timedelta(minutes=15)),
    ]
    assert crit[1].ends_at == T0 + dt.timedelta(minutes=45)  # 120 degC is below the 130 degC clear threshold
    # the warning (> 110) needs 5 minutes below 105 to resolve: one sample at 80 is not enough yet
    assert out["rows"] == 5 and out["still_active"] == 1
    # replay from after the excursion sees nothing
    sink2 = ListSink()
    replay(lake, T0 + dt.timedelta(minutes=50), sink2, until=T0 + dt.timedelta(days=1), tz=DEFAULT_TIMEZONE)
    assert not sink2.alerts


def test_replay_dry_run_prints_alertmanager_json(lake_and_landing, monkeypatch, capsys):
    lake, _ = lake_and_landing
    tx = lake.read("ref_transformers")["transformer_id"][0]
    _silver_scada(lake, tx)
    monkeypatch.setenv("GRIDLAKE_LAKE_ROOT", lake.root)
    assert (
        cli.main(["replay", "--from", "2026-11-02T00:00:00+00:00", "--to", "2026-11-03T00:00:00+00:00", "--dry-run"])
        == 0
    )
    out = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert {x["labels"]["alertname"] for x in out} == {
        "TransformerHotSpotCritical",
        "TransformerHotSpotHigh",
        "TransformerHotSpotRisingFast",
    }
    lines = [x for x in out if x["labels"]["alertname"] == "TransformerHotSpotCritical"]
    assert len(lines) == 2
    assert "endsAt" not in lines[0] and lines[1]["endsAt"] == "2026-11-02T15:45:00.000Z"


def test_cli_refuses_times_without_offset_and_reports_an_absent_bridge(capsys):
    with pytest.raises(SystemExit):
        cli.main(["replay", "--from", "2026-11-02T00:00:00", "--dry-run"])
    assert "has no UTC offset" in capsys.readouterr().err
    assert cli.main(["status", "--url", "http://127.0.0.1:9"]) == 1
    assert "no bridge answering" in capsys.readouterr().err
    assert cli.main(["status", "--url", "file:///etc/passwd"]) == 2
