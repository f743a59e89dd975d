"""Run Prometheus Alertmanager (Debian's ``prometheus-alertmanager`` 0.25) from the repository's config.

- :func:`render_config` reads ``streaming_bridge/alertmanager.yml`` and returns it with the receivers'
  addresses replaced (webhook base URL, SMTP smarthost) and the route timings optionally capped, by
  structured YAML edits: no string templating, every value checked.
- :func:`check_config` runs ``amtool check-config`` on a file and raises with its output if it fails.
- :class:`AlertmanagerProcess` starts a private single-node instance (free port, own storage directory)
  and can stop/restart it on the same port and storage (the outage tests do that).

``.ci/services.sh`` starts the shared instance on 127.0.0.1:9093 with ``python -m streaming_bridge.amproc``.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import requests
import yaml

REPO_CONFIG = Path(__file__).with_name("alertmanager.yml")
DEFAULT_LISTEN = "127.0.0.1:9093"

_DURATION = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_DURATION_UNITS = (365 * 86400.0, 7 * 86400.0, 86400.0, 3600.0, 60.0, 1.0, 0.001)
_TIMING_KEYS = ("group_wait", "group_interval", "repeat_interval")
_HOSTPORT = re.compile(r"^[A-Za-z0-9.\-]+:\d{1,5}$")


def binary(name: str = "prometheus-alertmanager") -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        raise FileNotFoundError(
            f"{name} is not installed: `apt-get install -y prometheus-alertmanager` (.ci/services.sh does it)"
        )
    return path


def parse_duration(s: str) -> float:
    """Prometheus duration text (``0s``, ``5s``, ``1h30m``, ``250ms``) -> seconds."""
    m = _DURATION.match(str(s))
    if not m or not str(s):
        raise ValueError(f"not a Prometheus duration: {s!r}")
    return sum(float(v) * u for v, u in zip(m.groups(), _DURATION_UNITS) if v)


def _check_base_url(url: str) -> str:
    parts = urlsplit(url)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.port is None
        or parts.query
        or parts.fragment
    ):
        raise ValueError(f"webhook base URL {url!r}: want http(s)://host:port[/path] without query or fragment")
    return url.rstrip("/")


def render_config(
    webhook_base: str | None = None,
    smarthost: str | None = None,
    cap: Mapping[str, str] | None = None,
    template: Path = REPO_CONFIG,
) -> dict:
    """The repository's Alertmanager config with its local addresses replaced.

    webhook_base: ``http://host:port`` (optionally with a path prefix) replacing scheme/host/port of every
    webhook URL; each URL keeps its own path (``/hook/bridge`` ...).
    smarthost: ``host:port`` of the SMTP server for e-mail receivers.
    cap: e.g. ``{"group_wait": "1s"}``: every route timing above the cap is lowered to it (routes below it,
    such as the critical 0s group_wait, keep their value), so tests run in seconds with the same tree.
    """
    cfg = yaml.safe_load(Path(template).read_text())
    if webhook_base is not None:
        base = _check_base_url(webhook_base)
        for r in cfg.get("receivers", []):
            for w in r.get("webhook_configs", []):
                w["url"] = base + urlsplit(w["url"]).path
    if smarthost is not None:
        if not _HOSTPORT.match(smarthost):
            raise ValueError(f"smarthost {smarthost!r}: want host:port")
        cfg.setdefault("global", {})["smtp_smarthost"] = smarthost
        for r in cfg.get("receivers", []):
            for e in r.get("email_configs", []):
                e.pop("smarthost", None)
    if cap:
        bad = set(cap) - set(_TIMING_KEYS)
        if bad:
            raise ValueError(f"cap: unknown timing(s) {sorted(bad)}; allowed {_TIMING_KEYS}")
        limits = {k: parse_duration(v) for k, v in cap.items()}

        def walk(route: dict) -> None:
            for k, lim in limits.items():
                if k in route and parse_duration(route[k]) > lim:
                    route[k] = cap[k]
            for child in route.get("routes", []):
                walk(child)

        walk(cfg["route"])
    return cfg


def write_config(cfg: Mapping, path: Path) -> Path:
    path = Path(path)
    path.write_text(yaml.safe_dump(copy.deepcopy(dict(cfg)), sort_keys=False))
    return path


def check_config(path: Path) -> str:
    """``amtool check-config PATH``; returns its output, raises ValueError with it when the config is invalid."""
    r = subprocess.run(
        [binary("amtool"), "check-config", str(path)], capture_output=True, text=True, timeout=30, check=False
    )
    out = (r.stdout + r.stderr).strip()
    if r.returncode != 0:
        raise ValueError(f"amtool check-config {path} failed:\n{out}")
    return out


def route_receivers(path: Path, labels: Mapping[str, str]) -> list[str]:
    """The receivers the config's routing tree picks for a label set (``amtool config routes test``)."""
    for k, v in labels.items():
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k) or "\n" in v:
            raise ValueError(f"label {k!r}={v!r} is not a valid label")
    args = [binary("amtool"), "config", "routes", "test", f"--config.file={path}"] + [
        f"{k}={v}" for k, v in labels.items()
    ]
    r = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
    if r.returncode != 0:
        raise ValueError(f"amtool config routes test failed: {r.stderr.strip()}")
    return r.stdout.strip().split(",")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_ready(url: str, timeout: float = 1.0) -> bool:
    try:
        return requests.get(f"{url}/-/ready", timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


class AlertmanagerProcess:
    """A private single-node Alertmanager: ``with AlertmanagerProcess(cfg_path) as am: am.url``.

    port 0 picks a free port once; :meth:`stop` + :meth:`start` bring it back on the same port and storage
    (silences and the notification log survive, as in a real restart).
    """

    def __init__(self, config_path: Path, port: int = 0, storage_dir: Path | None = None, host: str = "127.0.0.1"):
        self.config_path = Path(config_path)
        self.host = host
        self.port = port or free_port()
        self._own_storage = storage_dir is None
        self.storage_dir = Path(storage_dir) if storage_dir else Path(tempfile.mkdtemp(prefix="gridlake-am-"))
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.storage_dir / "alertmanager.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> AlertmanagerProcess:
        if self.proc is not None and self.proc.poll() is None:
            return self
        args = [
            binary(),
            f"--config.file={self.config_path}",
            f"--storage.path={self.storage_dir}",
            f"--web.listen-address={self.host}:{self.port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"alertmanager exited with {self.proc.returncode}:\n{self.log_tail()}")
            if is_ready(self.url, 0.5):
                return self
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"alertmanager on {self.url} not ready after {timeout} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def reload(self) -> None:
        """Re-read the config file (POST /-/reload); raises if Alertmanager rejects it."""
        r = requests.post(f"{self.url}/-/reload", timeout=10)
        if r.status_code != 200:
            raise ValueError(f"alertmanager rejected the reloaded config: {r.status_code} {r.text.strip()}")

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def close(self) -> None:
        self.stop()
        if self._own_storage:
            shutil.rmtree(self.storage_dir, ignore_errors=True)

    def __enter__(self) -> AlertmanagerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    """Start the shared instance from the repo config unless one already answers (idempotent).

    ``python -m streaming_bridge.amproc [--listen 127.0.0.1:9093] [--storage DIR]``: detaches the process
    (it outlives this command) and returns once ``/-/ready`` answers.
    """
    ap = argparse.ArgumentParser(prog="python -m streaming_bridge.amproc", description=main.__doc__)
    ap.add_argument("--listen", default=os.environ.get("GRIDLAKE_ALERTMANAGER_LISTEN", DEFAULT_LISTEN))
    ap.add_argument(
        "--storage",
        type=Path,
        default=Path(os.environ.get("GRIDLAKE_ALERTMANAGER_STORAGE", "/tmp/gridlake-alertmanager")),
    )
    ap.add_argument("--config", type=Path, default=REPO_CONFIG)
    a = ap.parse_args(argv)
    if not _HOSTPORT.match(a.listen):
        ap.error(f"--listen {a.listen!r}: want host:port")
    url = f"http://{a.listen}"
    if is_ready(url):
        print(f"alertmanager already answers on {url}")
        return 0
    check_config(a.config)
    a.storage.mkdir(parents=True, exist_ok=True)
    args = [
        binary(),
        f"--config.file={a.config.resolve()}",
        f"--storage.path={a.storage}",
        f"--web.listen-address={a.listen}",
        "--cluster.listen-address=",
    ]
    with open(a.storage / "alertmanager.log", "ab") as log:
        subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    for _ in range(100):
        if is_ready(url):
            print(f"alertmanager started on {url} (config {a.config}, storage {a.storage})")
            return 0
        time.sleep(0.1)
    print(f"alertmanager did not become ready on {url}; see {a.storage / 'alertmanager.log'}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
