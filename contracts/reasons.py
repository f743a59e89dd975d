"""Reason codes a rejected record can carry, each with the sentence that explains it to people
reading a quarantine (or dead-letter) table. Declared once: the ``allowed`` values of the
``reason_code`` columns are the keys of these dicts, in this order.
"""

from __future__ import annotations

#: Reasons a quarantined landing record (or file, recorded once as row 0) can carry.
REASON_TEXT: dict[str, str] = {
    "malformed_line": "the line has the wrong number of fields or is not valid JSON",
    "missing_column": "the file lacks a column the contract requires; the whole file is quarantined",
    "empty_file": "the file has a header but no data rows",
    "unreadable_file": "the file cannot be decoded in its declared format; the day's files_readable check blocks until it is fixed or waived",
    "unsafe_name": "the file's name is not a safe landing key, so it was not read; the day blocks until it is renamed or waived",
    "skipped_file": "a hidden or system file (.DS_Store, ._x.csv, Thumbs.db), not data",
    "waived_file": "an operator moved the file to rejected/ with a reason (lake.waiver); the day no longer waits for it",
    "duplicate_column": "two header names map to one contract column; which holds the value is unknown, the whole file is quarantined",
    "missing_value": "a required field is empty",
    "wrong_type": "a field does not parse as its declared type",
    "out_of_range": "a value lies outside the hard acceptance bounds (NaN and infinities included; a time outside the year window or with an offset beyond +-14:00)",
    "unknown_entity": "the id is not in the reference table",
    "dst_nonexistent_time": "naive local time inside the spring-forward gap: it never happened",
    "dst_ambiguous_time": "naive local time in the repeated fall-back hour that the meter's sequence in the file does not prove daylight or standard",
    "late_data": "the reading belongs to an earlier day than the partition being ingested",
    "future_data": "the reading belongs to a later day than the partition being ingested",
    "duplicate": "the same key was received again; the later-received copy is kept",
}
REASON_CODES = tuple(REASON_TEXT)

#: Reasons only the stream can give, beside the record-level REASON_CODES it shares with files.
STREAM_REASON_TEXT: dict[str, str] = {
    "malformed_payload": "not UTF-8 JSON, or not the object/array shape the topic expects",
    "oversized_payload": "larger than the bridge's payload limit (kept: size, sha1, a prefix)",
    "unknown_topic": "a topic outside the documented scheme",
    "entity_mismatch": "the id in the payload differs from the id in the topic",
    "stale_time": "timestamp older than the bridge's accepted window (days)",
    "future_time": "timestamp ahead of the bridge clock by more than the allowed skew",
}
STREAM_REASON_CODES = tuple(STREAM_REASON_TEXT)
