"""Streaming bridge (streaming_bridge/): live MQTT payloads are validated against the silver
declarations (lake.ingest.validate_file); what fails lands in ``stream_dead_letters`` with its reason.
"""

from __future__ import annotations

import polars as pl

from contracts.reasons import REASON_CODES, STREAM_REASON_CODES
from contracts.tables import _DATE, UTC_TS, Column, Table

STREAM_DEAD_LETTERS = Table(
    "stream_dead_letters",
    "quarantine",
    (
        _DATE,
        Column("received_at", UTC_TS, False, "when the bridge received the MQTT message"),
        Column("topic", pl.Utf8, False, "MQTT topic the message came on"),
        Column("source", pl.Utf8, True, "meter_readings | scada | status, when the topic says"),
        Column(
            "record_index", pl.Int64, True, "0-based position of the record in a head-end batch; null = whole message"
        ),
        Column("reason_code", pl.Utf8, False, "why it was rejected", allowed=REASON_CODES + STREAM_REASON_CODES),
        Column("field", pl.Utf8, True, "the offending field, when one is to blame"),
        Column("value", pl.Utf8, True, "the offending raw value"),
        Column("detail", pl.Utf8, False, "human-readable explanation"),
        Column("payload", pl.Utf8, True, "the payload as received (text; the first 64 KiB of a larger one)"),
        Column("payload_bytes", pl.Int64, False, "size of the whole payload"),
        Column("payload_sha1", pl.Utf8, False, "sha1 of the whole payload (ties a record to its message)"),
        Column(
            "batch_id",
            pl.Utf8,
            False,
            "the bridge spool segment that wrote the row (re-writing a segment after a crash replaces its rows)",
        ),
    ),
    "MQTT payloads (or records in them) the streaming bridge rejected, with a reason",
    partition_by=("date",),
    key=("topic", "payload_sha1", "record_index", "reason_code"),
)
STREAM_TABLES: dict[str, Table] = {STREAM_DEAD_LETTERS.name: STREAM_DEAD_LETTERS}
