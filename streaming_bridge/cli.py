"""``gridlake-bridge``: the streaming bridge's console entry point.

    gridlake-bridge run [--flush-seconds 60] [--http-port 9108]      # the service (SIGTERM: flush and exit)
    gridlake-bridge replay --from 2026-11-02T00:00:00Z [--to ...] [--dry-run]   # re-score what the lake holds
    gridlake-bridge status [--url http://127.0.0.1:9108]              # a running bridge's health document
    gridlake-bridge silence add|list|expire ...                      # Alertmanager silences (streaming_bridge.silences)

Settings come from the environment (README: GRIDLAKE_MQTT_HOST/PORT, GRIDLAKE_LAKE_ROOT, GRIDLAKE_LANDING,
GRIDLAKE_ALERTMANAGER_URL, GRIDLAKE_BRIDGE_* ...); flags override them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import urllib.error
import urllib.request


def _time(text: str) -> dt.datetime:
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from e
    if t.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset (write e.g. 2026-11-02T00:00:00Z)")
    return t


def make_sink(outbox_path: str | None = None, alertmanager_url: str | None = None):
    """The durable outbox in front of Alertmanager (streaming_bridge.outbox), drained by its thread."""
    from streaming_bridge.am_client import AlertmanagerClient
    from streaming_bridge.outbox import Outbox

    path = outbox_path or os.environ.get("GRIDLAKE_BRIDGE_OUTBOX", ".demo/bridge/outbox.sqlite")
    return Outbox(path, AlertmanagerClient(alertmanager_url))


class _PrintSink:
    def submit(self, alerts) -> None:
        for a in alerts:
            print(json.dumps(a.to_alertmanager()))


def cmd_run(args: argparse.Namespace) -> int:
    from streaming_bridge.service import Bridge, BridgeConfig

    over = {
        k: v
        for k, v in {"flush_seconds": args.flush_seconds, "http_port": args.http_port, "model_name": args.model}.items()
        if v is not None
    }
    cfg = BridgeConfig.from_env(**over)
    scorer = None
    if cfg.model_name:
        from streaming_bridge.model import ChampionScorer

        scorer = ChampionScorer(cfg.model_name, check_every_s=cfg.model_check_s)
    Bridge(cfg, make_sink(args.outbox, args.alertmanager_url), scorer=scorer).run_forever()
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from contracts import load_profile
    from lake.delta import Lake
    from streaming_bridge.service import replay

    sink = _PrintSink() if args.dry_run else make_sink(args.outbox, args.alertmanager_url)
    lake = Lake(os.environ.get("GRIDLAKE_LAKE_ROOT", ".demo/lake"))
    out = replay(lake, args.since, sink, until=args.until, tz=load_profile().timezone)
    if not args.dry_run:
        sink.close()
    print(json.dumps(out), file=sys.stderr if args.dry_run else sys.stdout)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    url = (args.url or f"http://127.0.0.1:{os.environ.get('GRIDLAKE_BRIDGE_HTTP_PORT', '9108')}").rstrip("/")
    if not url.startswith(("http://", "https://")):
        print(f"status: {url!r} is not an http(s) URL", file=sys.stderr)
        return 2
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=5) as r:
            doc, code = json.loads(r.read()), r.status
    except urllib.error.HTTPError as e:
        doc, code = json.loads(e.read() or b"{}"), e.code
    except OSError as e:
        print(f"status: no bridge answering at {url}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(doc, indent=1))
    return 0 if code == 200 else 1


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="gridlake-bridge", description="gridlake streaming bridge: MQTT -> validation and scoring -> Alertmanager"
    )
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="command", required=True)
    for name in ("run", "replay"):
        p = sub.add_parser(name)
        p.add_argument(
            "--outbox",
            default=None,
            help="outbox SQLite file (default $GRIDLAKE_BRIDGE_OUTBOX or .demo/bridge/outbox.sqlite)",
        )
        p.add_argument(
            "--alertmanager-url", default=None, help="default $GRIDLAKE_ALERTMANAGER_URL or http://127.0.0.1:9093"
        )
        if name == "run":
            p.add_argument("--flush-seconds", type=float, default=None, help="land the spool this often (default 60)")
            p.add_argument(
                "--http-port", type=int, default=None, help="metrics/health port (default 9108; 0 = free port)"
            )
            p.add_argument("--model", default=None, help="MLflow registered anomaly model to score with (its champion)")
            p.set_defaults(func=cmd_run)
        else:
            p.add_argument("--from", dest="since", type=_time, required=True, help="ISO time with offset")
            p.add_argument("--to", dest="until", type=_time, default=None)
            p.add_argument(
                "--dry-run", action="store_true", help="print the alerts as JSON lines instead of posting them"
            )
            p.set_defaults(func=cmd_replay)
    p = sub.add_parser("status")
    p.add_argument(
        "--url", default=None, help="the bridge's HTTP base URL (default http://127.0.0.1:$GRIDLAKE_BRIDGE_HTTP_PORT)"
    )
    p.set_defaults(func=cmd_status)
    try:
        from streaming_bridge import silences
    except ImportError:  # delivery side not installed
        silences = None
    if silences is not None:
        silences.register(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    # the bridge runs many small polars operations per batch: one polars thread avoids handing each to a
    # pool (measured under load: validate_file 15 -> 4.5 ms per 200-row batch). Takes effect when polars
    # is first imported, i.e. in the console command, not in a process that already uses polars.
    os.environ.setdefault("POLARS_MAX_THREADS", "1")
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
