"""Waiving a landing file: the audited way an operator releases a day blocked by a file that cannot be read.

A day whose folder holds a file that cannot be read (``unreadable_file``) or whose name is not a safe
landing key (``unsafe_name``) fails its blocking ``files_readable`` check: nothing downstream of it runs.
The operator either fixes the file (re-exports it, renames it) and re-runs the day, or waives it:

    python -m lake.waiver <landing-uri> meter_readings/2026-11-02/part-7.csv --reason "head-end bug #412" --by alice

moves the file to ``rejected/<same key>`` next to ``rejected/<same key>.waiver.json`` (reason, who, when,
size, sha256); the landing sensor then re-runs the day, which records a ``waived_file`` row in the bronze index and the
quarantine (the audit trail, listed in the check metadata) instead of blocking. Moving the file back
undoes the waiver. A file with an unsafe name has no safe key to waive by: rename it in the landing zone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys

from lake.ingest import REJECTED_PREFIX, WAIVER_SUFFIX
from lake.landing import LandingZone, check_key, open_landing


def waive_file(zone: LandingZone, key: str, reason: str, by: str, now: dt.datetime | None = None) -> str:
    """Move ``key`` to ``rejected/<key>`` with its waiver record; returns the waiver record's key."""
    check_key(key)
    if key.startswith(f"{REJECTED_PREFIX}/"):
        raise ValueError(f"{key!r} is already under {REJECTED_PREFIX}/")
    if not reason.strip() or not by.strip():
        raise ValueError("a waiver needs a reason and the operator's name")
    data = zone.get_bytes(key)
    dest = f"{REJECTED_PREFIX}/{key}"
    record = {
        "key": key,
        "reason": reason.strip(),
        "by": by.strip(),
        "at": (now or dt.datetime.now(dt.timezone.utc)).isoformat(timespec="seconds"),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    zone.put_bytes(dest, data)
    zone.put_bytes(dest + WAIVER_SUFFIX, json.dumps(record, indent=1).encode())
    zone.delete(key)  # last: until here the day still sees (and blocks on) the file
    return dest + WAIVER_SUFFIX


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("landing", help="landing zone: a local path or s3://bucket/prefix")
    ap.add_argument("key", help="the file's landing key, e.g. meter_readings/2026-11-02/part-7.csv")
    ap.add_argument("--reason", required=True)
    ap.add_argument("--by", required=True, help="who waives it (recorded)")
    args = ap.parse_args(argv)
    print(waive_file(open_landing(args.landing), args.key, args.reason, args.by))
    return 0


if __name__ == "__main__":
    sys.exit(main())
