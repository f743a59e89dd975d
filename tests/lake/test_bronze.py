"""Bronze record view: every received record, with (source_file, source_row, ingested_at), read back
from the byte-exact archive; it reconciles with silver + quarantine + duplicates."""

from __future__ import annotations

import datetime as dt
import io

import polars as pl

from contracts import DEFAULT_TIMEZONE, SOURCES
from lake.bronze import read_records
from lake.ingest import ingest_partition

SRC = SOURCES["meter_readings"]
DAY = dt.date(2026, 11, 2)
HEADER = "meter_id,reading_time,consumption_kwh,demand_kw,voltage,current_amps,power_factor"


def test_bronze_records_cover_every_received_record_with_its_address(lake_and_landing):
    lake, zone = lake_and_landing
    ids = lake.read("ref_meters", columns=["meter_id"])["meter_id"]
    m1, m2 = ids[0], ids[1]
    csv = "\n".join(
        [
            HEADER,
            f"{m1},2026-11-02 01:00:00,0.5,1.0,231.0,4.3,0.95",
            f"{m1},2026-11-02 01:30:00,0.5",
            f"{m2},2026-11-02 02:00:00,0.7,1.4,999,6.0,0.9",
            "",
        ]
    )
    zone.put_bytes(f"meter_readings/{DAY}/a.csv", csv.encode())
    pq = pl.DataFrame(
        {
            "meter_id": [m2],
            "reading_time": [dt.datetime(2026, 11, 2, 12, tzinfo=dt.timezone.utc)],
            "consumption_kwh": [0.25],
            "demand_kw": [0.5],
            "voltage": [230.0],
            "current_amps": [2.0],
            "power_factor": [0.97],
        }
    )
    buf = io.BytesIO()
    pq.write_parquet(buf)
    zone.put_bytes(f"meter_readings/{DAY}/b.parquet", buf.getvalue())
    zone.put_bytes(
        f"meter_readings/{DAY}/c.jsonl",
        f'{{"meter_id": "{m1}", "reading_time": "2026-11-02 01:00:00", "consumption_kwh": 0.6, "demand_kw": 1.2, "voltage": 230, "current_amps": 5, "power_factor": 0.9}}\n'.encode(),
    )
    zone.put_bytes(f"meter_readings/{DAY}/d.csv", (HEADER + "\n").encode())  # empty file: no records

    res = ingest_partition(zone, lake, SRC, DAY, ids, tz=DEFAULT_TIMEZONE)
    b = read_records(lake, SRC, DAY)
    assert b.height == res.raw_rows == 5 == res.silver_rows + res.quarantined_rows + res.duplicate_rows
    assert b.columns[:4] == ["date", "source_file", "source_row", "ingested_at"] and b["ingested_at"].null_count() == 0
    # the malformed line is kept whole; the out-of-range value as received
    a = b.filter(pl.col("source_file") == f"meter_readings/{DAY}/a.csv").sort("source_row")
    assert a["source_row"].to_list() == [1, 2, 3]
    assert a["unparsed"][1] == f"{m1},2026-11-02 01:30:00,0.5" and a["voltage"][2] == "999"
    # every silver and quarantine row points at exactly one bronze record (the empty file's marker row 0 aside)
    q = lake.read(SRC.quarantine, DAY).filter(pl.col("source_row") > 0)
    s = lake.read(SRC.silver, DAY)
    addr = ["source_file", "source_row"]
    both = pl.concat([s.select(addr), q.select(addr)])
    assert both.height == b.height and both.join(b, on=addr, how="anti").height == 0
    # the duplicate's kept copy is the later file (JSON lines), its value as received there
    kept = s.filter(pl.col("meter_id") == m1).join(b.select(*addr, pl.col("consumption_kwh").alias("raw_kwh")), on=addr)
    assert kept["raw_kwh"].to_list() == ["0.6"] and kept["consumption_kwh"].to_list() == [0.6]
