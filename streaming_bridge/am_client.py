"""A small client for Prometheus Alertmanager's API v2 (0.25): post alerts, read them, manage silences.

The stream (through the durable outbox) and the batch path (``streaming_bridge.batch``) both post through
:meth:`AlertmanagerClient.post_alerts`: one code path. A resolved alert is the same label set posted with
``endsAt`` (``Alert.resolve``).

The base URL comes from the argument or env ``GRIDLAKE_ALERTMANAGER_URL`` (default http://127.0.0.1:9093).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import requests

from .alerts import Alert, _rfc3339

DEFAULT_URL = "http://127.0.0.1:9093"
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MATCHER = re.compile(r"^\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>=~|!~|!=|=)\s*(?P<value>.*?)\s*$")


class AlertmanagerError(RuntimeError):
    """Alertmanager answered with a non-2xx status (``status``) or could not be reached (``status`` None)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status

    @property
    def retryable(self) -> bool:
        """Unreachable, 5xx and 429 are worth retrying; other 4xx mean the request itself is wrong."""
        return self.status is None or self.status >= 500 or self.status == 429


def parse_matcher(text: str) -> dict:
    """``name=value``, ``name!=value``, ``name=~regex``, ``name!~regex`` -> an API v2 matcher object.

    The value may be double-quoted (``alertname="Transformer Hot"``).
    """
    m = _MATCHER.match(text)
    if not m:
        raise ValueError(f"matcher {text!r}: want name=value, name!=value, name=~regex or name!~regex")
    value = m["value"]
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    if value == "" and m["op"] in ("=", "=~"):
        raise ValueError(f"matcher {text!r}: an empty value would match every alert without that label")
    return {"name": m["name"], "value": value, "isRegex": "~" in m["op"], "isEqual": not m["op"].startswith("!")}


def matcher_text(m: Mapping) -> str:
    op = ("=" if m.get("isEqual", True) else "!=") if not m["isRegex"] else ("=~" if m.get("isEqual", True) else "!~")
    return f'{m["name"]}{op}"{m["value"]}"'


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[str, ...]
    starts_at: str
    ends_at: str
    created_by: str
    comment: str
    state: str

    @classmethod
    def from_api(cls, d: Mapping) -> Silence:
        return cls(
            d["id"],
            tuple(matcher_text(m) for m in d["matchers"]),
            d["startsAt"],
            d["endsAt"],
            d.get("createdBy", ""),
            d.get("comment", ""),
            d["status"]["state"],
        )


def _check_url(url: str) -> str:
    p = urlsplit(url)
    if p.scheme not in ("http", "https") or not p.hostname or p.query or p.fragment:
        raise ValueError(f"Alertmanager URL {url!r}: want http(s)://host[:port][/prefix]")
    return url.rstrip("/")


class AlertmanagerClient:
    def __init__(self, url: str | None = None, timeout: float = 5.0):
        self.url = _check_url(url or os.environ.get("GRIDLAKE_ALERTMANAGER_URL", DEFAULT_URL))
        self.timeout = timeout
        self._http = requests.Session()
        self._lean = threading.local()  # per thread: one keep-alive connection for post_alerts
        u = urlsplit(self.url)
        self._conn_args = (u.scheme, u.hostname, u.port or (443 if u.scheme == "https" else 80), u.path)

    def _call(self, method: str, path: str, **kw) -> requests.Response:
        try:
            r = self._http.request(method, f"{self.url}/api/v2{path}", timeout=self.timeout, **kw)
        except requests.RequestException as e:
            raise AlertmanagerError(f"Alertmanager {self.url} unreachable: {e}") from e
        if not 200 <= r.status_code < 300:
            raise AlertmanagerError(
                f"Alertmanager {method} {path}: HTTP {r.status_code}: {r.text.strip()[:500]}", r.status_code
            )
        return r

    # ---- alerts ---------------------------------------------------------------------------------------
    def post_alerts(self, alerts: Sequence[Alert | Mapping | str]) -> None:
        """POST the alerts (``Alert``, encoded dicts, or their JSON text as the outbox stores it) in one request;
        raises AlertmanagerError.

        The one hot call (the outbox drainer posts every detection): stdlib ``http.client`` on a keep-alive
        connection per thread instead of requests' stack, ~6x less CPU per POST on the bridge's GIL
        (docs/DECISIONS.md "bench-bridge round 5"). A connection the server closed meanwhile is re-opened and the
        POST sent once more (posting the same alerts twice is harmless: Alertmanager merges by label set)."""
        docs = [
            a if isinstance(a, str) else json.dumps(a.to_alertmanager() if isinstance(a, Alert) else dict(a))
            for a in alerts
        ]
        if docs:
            self._post_raw("/alerts", ("[" + ",".join(docs) + "]").encode())

    def _post_raw(self, path: str, body: bytes) -> None:
        scheme, host, port, prefix = self._conn_args
        url = f"{prefix}/api/v2{path}"
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        for attempt in (0, 1):
            conn = getattr(self._lean, "conn", None)
            fresh = conn is None
            if fresh:
                cls = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
                conn = self._lean.conn = cls(host, port, timeout=self.timeout)
            try:
                conn.request("POST", url, body, headers)
                r = conn.getresponse()
                text = r.read()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                self._lean.conn = None
                if fresh or attempt:  # a new connection failed: Alertmanager is down (retryable)
                    raise AlertmanagerError(f"Alertmanager {self.url} unreachable: {e!r}") from e
                continue  # a kept-alive connection the server had closed: once more on a new one
            if r.will_close:
                conn.close()
                self._lean.conn = None
            if not 200 <= r.status < 300:
                msg = text.decode(errors="replace").strip()[:500]
                raise AlertmanagerError(f"Alertmanager POST {path}: HTTP {r.status}: {msg}", r.status)
            return

    def alerts(
        self, filters: Iterable[str] = (), active: bool = True, silenced: bool = True, inhibited: bool = True
    ) -> list[dict]:
        params = [
            ("active", str(active).lower()),
            ("silenced", str(silenced).lower()),
            ("inhibited", str(inhibited).lower()),
        ]
        params += [("filter", matcher_text(parse_matcher(f))) for f in filters]
        return self._call("GET", "/alerts", params=params).json()

    def ready(self) -> bool:
        try:
            return self._http.get(f"{self.url}/-/ready", timeout=self.timeout).status_code == 200
        except requests.RequestException:
            return False

    # ---- silences -------------------------------------------------------------------------------------
    def create_silence(
        self,
        matchers: Sequence[str],
        duration: timedelta | None = None,
        ends_at: datetime | None = None,
        starts_at: datetime | None = None,
        created_by: str = "gridlake-bridge",
        comment: str = "",
    ) -> str:
        """Silence alerts matching all ``matchers`` (``name=value`` ...); returns the silence id."""
        if not matchers:
            raise ValueError("a silence needs at least one matcher")
        if (duration is None) == (ends_at is None):
            raise ValueError("give exactly one of duration or ends_at")
        if not comment.strip():
            raise ValueError("a silence needs a comment (why it is silenced)")
        start = starts_at or datetime.now(UTC)
        end = ends_at or start + duration
        if end <= start:
            raise ValueError(f"silence ends {end} before it starts {start}")
        body = {
            "matchers": [parse_matcher(m) for m in matchers],
            "startsAt": _rfc3339(start),
            "endsAt": _rfc3339(end),
            "createdBy": created_by,
            "comment": comment,
        }
        return self._call("POST", "/silences", json=body).json()["silenceID"]

    def silences(self, filters: Iterable[str] = (), include_expired: bool = False) -> list[Silence]:
        params = [("filter", matcher_text(parse_matcher(f))) for f in filters]
        out = [Silence.from_api(d) for d in self._call("GET", "/silences", params=params).json()]
        return [s for s in out if include_expired or s.state != "expired"]

    def expire_silence(self, silence_id: str) -> None:
        try:
            sid = str(uuid.UUID(silence_id))
        except ValueError as e:
            raise ValueError(f"silence id {silence_id!r} is not a UUID") from e
        self._call("DELETE", f"/silence/{sid}")
