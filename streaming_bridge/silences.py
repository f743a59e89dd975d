"""``gridlake-bridge silence add|list|expire``: silences through Alertmanager's API (what operators also do
with amtool or the Alertmanager UI; a silence mutes notifications, the alert itself stays visible).

    gridlake-bridge silence add asset_id=TX-17 alertname=~"Transformer.*" --duration 2h --comment "crew on site"
    gridlake-bridge silence list [--filter transformer=TX-17] [--expired] [--json]
    gridlake-bridge silence expire <id> [<id> ...]

The console entry point calls :func:`register` on its subparsers and then ``args.func(args)`` (an exit
code); ``python -m streaming_bridge.silences ...`` runs the same commands on their own.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from dataclasses import asdict
from datetime import datetime, timedelta

from .am_client import AlertmanagerClient, AlertmanagerError
from .amproc import parse_duration


def _when(text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from e
    if t.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset (write e.g. 2026-12-02T18:00:00Z)")
    return t


def _duration(text: str) -> timedelta:
    try:
        s = parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e
    if s <= 0:
        raise argparse.ArgumentTypeError(f"duration {text!r} must be positive")
    return timedelta(seconds=s)


def _client(args: argparse.Namespace) -> AlertmanagerClient:
    return AlertmanagerClient(args.alertmanager_url)


def cmd_add(args: argparse.Namespace) -> int:
    sid = _client(args).create_silence(
        args.matchers,
        duration=args.duration if args.until is None else None,
        ends_at=args.until,
        created_by=args.author,
        comment=args.comment,
    )
    print(sid)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    silences = _client(args).silences(args.filter, include_expired=args.expired)
    if args.json:
        print(json.dumps([asdict(s) for s in silences], indent=1))
        return 0
    if not silences:
        print("no silences")
        return 0
    print(f"{'ID':36}  {'STATE':8}  {'ENDS':24}  {'CREATED BY':14}  MATCHERS / COMMENT")
    for s in sorted(silences, key=lambda s: s.ends_at):
        print(f"{s.id:36}  {s.state:8}  {s.ends_at:24}  {s.created_by[:14]:14}  {' '.join(s.matchers)}  # {s.comment}")
    return 0


def cmd_expire(args: argparse.Namespace) -> int:
    c = _client(args)
    for sid in args.ids:
        c.expire_silence(sid)
        print(f"expired {sid}")
    return 0


def _guard(fn):
    """Turn API and input errors into a one-line message and exit code 1 (no traceback for operators)."""

    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (AlertmanagerError, ValueError) as e:
            print(f"gridlake-bridge silence: {e}", file=sys.stderr)
            return 1

    return run


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``silence {add,list,expire}`` to a CLI's subparsers; each sets ``args.func``."""
    p = subparsers.add_parser(
        "silence",
        help="add, list or expire Alertmanager silences",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--alertmanager-url", default=None, help="default: $GRIDLAKE_ALERTMANAGER_URL or http://127.0.0.1:9093"
    )
    sub = p.add_subparsers(dest="silence_cmd", required=True)

    a = sub.add_parser("add", help="silence alerts matching all matchers")
    a.add_argument("matchers", nargs="+", help="label matchers: name=value, name!=value, name=~regex, name!~regex")
    when = a.add_mutually_exclusive_group()
    when.add_argument("--duration", type=_duration, default=timedelta(hours=1), help="e.g. 30m, 2h, 1d (default 1h)")
    when.add_argument("--until", type=_when, default=None, help="end time with UTC offset, e.g. 2026-12-02T18:00:00Z")
    a.add_argument("--comment", required=True, help="why (shown to every operator)")
    a.add_argument("--author", default=getpass.getuser(), help="created by (default: the login name)")
    a.set_defaults(func=_guard(cmd_add))

    ls = sub.add_parser("list", help="active and pending silences")
    ls.add_argument("--filter", action="append", default=[], help="only silences with this matcher (repeatable)")
    ls.add_argument("--expired", action="store_true", help="include expired silences")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_guard(cmd_list))

    e = sub.add_parser("expire", help="end silences now")
    e.add_argument("ids", nargs="+")
    e.set_defaults(func=_guard(cmd_expire))
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m streaming_bridge.silences [--alertmanager-url URL] add|list|expire ...``."""
    ap = argparse.ArgumentParser(prog="python -m streaming_bridge")
    register(ap.add_subparsers(dest="cmd", required=True))
    args = ap.parse_args(["silence", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
