"""The durable outbox between the bridge and Alertmanager: at-least-once, survives crashes and outages.

``Outbox.submit(alerts)`` commits the encoded alerts to a SQLite file (WAL) before it returns, and wakes a drainer thread that POSTs them to Alertmanager in batches, oldest first, deleting rows
only after Alertmanager answered 2xx. If Alertmanager is unreachable (or answers 5xx/429) the drainer
retries with exponential backoff and jitter; if the process dies, the rows are still in the file and the
next ``Outbox`` on it delivers them. A row may be posted twice (crash between POST and delete): harmless,
Alertmanager deduplicates by label set, and the receivers are idempotent on (fingerprint, startsAt, status).

Durability: WAL with ``synchronous=NORMAL`` (default) survives a crash of the process (every commit is in
the WAL file before ``submit`` returns) but not of the operating system; ``fsync=True`` (``synchronous=FULL``)
survives power loss too, at an fsync per commit (submit -> accepted p50 8.3 ms instead of 4.6 ms here; see
benchmarks/results/alert_delivery.json).

A request Alertmanager rejects as invalid (4xx other than 429) is split to find the offending alerts;
those move to the ``rejected`` table with Alertmanager's reason (nothing is silently lost), the rest go on.

Alertmanager keeps alerts in memory only (its storage holds silences and the notification log), and
expires a firing alert ``resolve_timeout`` (5 min) after it last heard of it. So, as Prometheus does, the
outbox keeps the set of firing alerts (``active`` table: a firing submit adds or replaces by label set, a
resolve removes, an ``endsAt`` passing drops it) and re-posts it every ``resend_interval`` seconds and at
once after an outage: a restarted Alertmanager learns every alert that is still firing, and alerts it had
accepted but not yet notified before it stopped are not lost.

A resolve is held back until Alertmanager has had the firing alert for ``min_firing_s`` (6 s: above the
largest ``group_wait`` of the webhook routes, 5 s). Alertmanager's dedup stage sends nothing for the first
flush of a group that holds only resolved alerts, so a condition that fired and resolved inside one outbox
batch (or inside ``group_wait``) reached Alertmanager and no receiver ever heard of it (9 of 6,001 conditions
in ``make bench-bridge``). Held rows keep their order per alert: nothing of the same label set overtakes
a held resolve. Only short incidents pay the wait (their resolved notification comes up to 6 s later).
"""

from __future__ import annotations

import json
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path

from .alerts import Alert, label_fingerprint
from .am_client import AlertmanagerClient, AlertmanagerError

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    payload TEXT NOT NULL,            -- one Alertmanager /api/v2/alerts element (JSON)
    enqueued_at REAL NOT NULL,        -- unix time of submit()
    fingerprint TEXT,                 -- the label set's fingerprint (NULL in files from before it was kept)
    resolve INTEGER NOT NULL DEFAULT 0, -- 1: a resolve (endsAt set), held until its firing is min_firing_s old
    resend INTEGER NOT NULL DEFAULT 0   -- 1: a periodic re-post of the firing set (goes after fresh alerts)
);
CREATE TABLE IF NOT EXISTS fired (   -- when Alertmanager first accepted the firing alert of an open incident
    fingerprint TEXT PRIMARY KEY,
    accepted_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS confirmed (  -- firing notifications a receiver confirmed (confirm()): release held resolves
    fingerprint TEXT NOT NULL,
    starts_ms INTEGER NOT NULL,       -- the incident's startsAt, unix ms
    confirmed_at REAL NOT NULL,
    PRIMARY KEY (fingerprint, starts_ms)
);
CREATE TABLE IF NOT EXISTS submitted_keys (  -- submit(..., keys=): each key enqueued once, ever
    key TEXT PRIMARY KEY,
    submitted_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS active (  -- firing alerts, re-posted every resend_interval and after an outage
    fingerprint TEXT PRIMARY KEY,     -- Alert.fingerprint(): the label set
    payload TEXT NOT NULL,
    ends_at REAL                      -- unix time of endsAt, if the alert carries one (e.g. batch alerts)
);
CREATE TABLE IF NOT EXISTS rejected (
    id INTEGER PRIMARY KEY,
    payload TEXT NOT NULL,
    enqueued_at REAL NOT NULL,
    rejected_at REAL NOT NULL,
    reason TEXT NOT NULL
);
"""


def _ms(rfc3339: str | None) -> int | None:
    """An RFC 3339 / ISO time (``Z`` or an offset, up to microseconds) as unix milliseconds."""
    if not rfc3339:
        return None
    return round(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1000)


_MISSING = object()

#: called after each successful POST with the delivered (payload, enqueued_at) pairs (metrics, latency)
OnPosted = Callable[[list[tuple[dict, float]]], None]


class Outbox:
    """Durable at-least-once queue of alerts for Alertmanager; implements ``AlertSink``.

    path: the SQLite file (created if missing). client: where to post (``AlertmanagerClient``).
    start: run the drainer thread now (False: call :meth:`start` later, e.g. to inspect a file).
    """

    def __init__(
        self,
        path: Path | str,
        client: AlertmanagerClient,
        batch_size: int = 500,
        min_backoff: float = 0.05,
        max_backoff: float = 5.0,
        on_posted: OnPosted | None = None,
        resend_interval: float = 60.0,
        fsync: bool = False,
        start: bool = True,
        min_firing_s: float = 6.0,
        confirm_timeout_s: float | None = None,
        repost_batch_size: int = 50,
    ):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.client = client
        self.batch_size = batch_size
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
        self.on_posted = on_posted
        self.resend_interval = resend_interval
        self.fsync = fsync
        self.min_firing_s = min_firing_s
        #: None: a resolve waits min_firing_s only. A number: it also waits until a receiver confirmed the firing
        #: notification (confirm()), or this many seconds after the firing was accepted (an alert no receiver
        #: is ever sent, silenced or inhibited, is not held for ever)
        self.confirm_timeout_s = confirm_timeout_s
        self.repost_batch_size = repost_batch_size
        self._next_due: float | None = None  # when the earliest held resolve may go (drainer's wake-up)
        self.resends = 0  # times the active set was re-posted
        self.posted = 0  # alerts posted by this instance
        self.failures = 0  # failed POST attempts
        self.last_error: str | None = None
        self.post_started_at: float | None = None
        #: a held resolve's payload -> its startsAt (unix ms): a held resolve is looked at on every drainer pass for
        #: seconds; parsing its payload each time was a third of the drainer's GIL time (py-spy, bench-bridge)
        self._starts_ms: dict[str, int | None] = {}
        self._lock = threading.Lock()
        self._db = self._connect()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._thread: threading.Thread | None = None
        if start:
            self.start()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if self.fsync else 'NORMAL'}")
        db.executescript(_SCHEMA)
        cols = {r[1] for r in db.execute("PRAGMA table_info(outbox)")}
        if "fingerprint" not in cols:  # an outbox file written before resolves were held
            db.execute("ALTER TABLE outbox ADD COLUMN fingerprint TEXT")
            db.execute("ALTER TABLE outbox ADD COLUMN resolve INTEGER NOT NULL DEFAULT 0")
        if "resend" not in cols:
            db.execute("ALTER TABLE outbox ADD COLUMN resend INTEGER NOT NULL DEFAULT 0")
        db.execute("CREATE INDEX IF NOT EXISTS outbox_fingerprint ON outbox (fingerprint)")
        db.execute("CREATE INDEX IF NOT EXISTS outbox_resend ON outbox (resend, id)")
        return db

    # ---- producer side --------------------------------------------------------------------------------
    def submit(self, alerts: Sequence[Alert], keys: Sequence[str] | None = None) -> int:
        """Durably enqueue ``alerts`` (committed when this returns) and wake the drainer; returns how many.

        keys: one idempotency key per alert (e.g. the gold row's fingerprint for batch alerts): an alert whose
        key was submitted before, by any process using this file, is skipped.
        """
        if keys is not None and len(keys) != len(alerts):
            raise ValueError(f"submit: {len(alerts)} alerts but {len(keys)} keys")
        if not alerts:
            return 0
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if keys is not None:
                    fresh = []
                    for a, k in zip(alerts, keys):
                        if self._db.execute("INSERT OR IGNORE INTO submitted_keys VALUES (?, ?)", (k, now)).rowcount:
                            fresh.append(a)
                    alerts = fresh
                rows = []
                for a in alerts:
                    doc, fp = a.to_alertmanager(), a.fingerprint()
                    end = a.ends_at.timestamp() if a.ends_at is not None else None
                    # one incident keeps one startsAt (the receivers' idempotency key) however often scoring
                    # re-submits it, also to an Alertmanager that restarted and forgot it
                    prev = self._db.execute("SELECT payload FROM active WHERE fingerprint = ?", (fp,)).fetchone()
                    if prev is not None and "startsAt" in (first := json.loads(prev[0])):
                        doc["startsAt"] = first["startsAt"]
                    payload = json.dumps(doc, separators=(",", ":"))
                    rows.append((payload, now, fp, int(end is not None)))
                    if end is not None and end <= now:
                        self._db.execute("DELETE FROM active WHERE fingerprint = ?", (fp,))
                    else:
                        self._db.execute("INSERT OR REPLACE INTO active VALUES (?, ?, ?)", (fp, payload, end))
                # a fresh alert supersedes a re-post of the same label set still waiting (keeps the order per alert)
                self._db.executemany("DELETE FROM outbox WHERE resend = 1 AND fingerprint = ?", [(r[2],) for r in rows])
                self._db.executemany(
                    "INSERT INTO outbox (payload, enqueued_at, fingerprint, resolve) VALUES (?, ?, ?, ?)", rows
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        if alerts:
            self._idle.clear()
            self._wake.set()
        return len(alerts)

    def confirm(self, notified: Sequence[tuple[Mapping[str, str], str]]) -> int:
        """Record that a receiver got the firing notification of these alerts, each (labels, startsAt as RFC 3339),
        e.g. from the webhook receiver's MQTT message; wakes the drainer (a held resolve may go now)."""
        now = time.time()
        rows = []
        for labels, starts in notified:
            try:
                ms = _ms(starts)
                if ms is None:
                    raise ValueError("no startsAt")
                rows.append((label_fingerprint(labels), ms, now))
            except (TypeError, ValueError, AttributeError) as e:
                log.warning("outbox: ignoring a confirmation with startsAt %r: %s", starts, e)
        if rows:
            with self._lock:
                self._db.executemany("INSERT OR IGNORE INTO confirmed VALUES (?, ?, ?)", rows)
            self._wake.set()
        return len(rows)

    def confirm_message(self, payload: bytes) -> bool:
        """``confirm`` from one message of the webhook receiver's MQTT topics (``streaming_bridge.receiver``: one
        JSON per alert state it stored, with ``status``, ``labels`` and ``startsAt``); True if it confirmed a firing."""
        try:
            msg = json.loads(payload)
        except ValueError:
            log.warning("outbox: a confirmation message is not JSON; ignored")
            return False
        if not (isinstance(msg, dict) and msg.get("status") == "firing" and isinstance(msg.get("labels"), dict)):
            return False
        return self.confirm([(msg["labels"], msg.get("startsAt"))]) == 1

    def depth(self) -> int:
        """Alerts enqueued and not yet accepted by Alertmanager."""
        with self._lock:
            return self._db.execute("SELECT count(*) FROM outbox").fetchone()[0]

    def active(self) -> int:
        """Firing alerts the outbox keeps re-posting."""
        with self._lock:
            return self._db.execute("SELECT count(*) FROM active").fetchone()[0]

    def resend_active(self) -> int:
        """Enqueue every firing alert again (dropping those whose endsAt has passed); returns how many."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM active WHERE ends_at IS NOT NULL AND ends_at <= ?", (now,))
            # confirmations of incidents that never resolve here (e.g. batch alerts): kept a day
            self._db.execute(
                "DELETE FROM confirmed WHERE confirmed_at < ? AND fingerprint NOT IN (SELECT fingerprint FROM fired)",
                (now - 86400,),
            )
            n = self._db.execute(
                "INSERT INTO outbox (payload, enqueued_at, fingerprint, resolve, resend) SELECT payload, ?, fingerprint, 0, 1 FROM active "
                "WHERE fingerprint NOT IN (SELECT fingerprint FROM outbox WHERE fingerprint IS NOT NULL) ORDER BY rowid",
                (now,),
            ).rowcount
            self._db.execute("COMMIT")
        self.resends += 1
        self._idle.clear()
        self._wake.set()
        return n

    def rejected(self) -> list[tuple[dict, str]]:
        """Alerts Alertmanager refused as invalid, with its reason."""
        with self._lock:
            return [(json.loads(p), r) for p, r in self._db.execute("SELECT payload, reason FROM rejected ORDER BY id")]

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the outbox is empty (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.depth() == 0:
                return True
            self._wake.set()
            self._idle.wait(min(0.05, max(0.0, deadline - time.monotonic())))
        return self.depth() == 0

    # ---- drainer --------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"outbox-{self.path.name}", daemon=True)
            self._thread.start()

    def close(self, flush_timeout: float | None = None) -> bool:
        """Drain for up to ``flush_timeout`` s (SIGTERM path; default 5 s + ``min_firing_s``, the longest a
        resolve is held), stop the thread; True if nothing is left (what is left is delivered by the next run)."""
        if flush_timeout is None:
            flush_timeout = 5.0 + self.min_firing_s
        empty = self.flush(flush_timeout) if self._thread is not None and flush_timeout > 0 else self.depth() == 0
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        with self._lock:
            self._db.close()
        return empty

    def _holds_resolves(self) -> bool:
        return self.min_firing_s > 0 or self.confirm_timeout_s is not None

    def _batch(self) -> list[tuple[int, str, float]]:
        """The next rows to post, oldest first, minus held resolves (and whatever follows them for the same
        alert): a resolve goes once its firing was accepted ``min_firing_s`` ago, never in the POST that
        carries its firing. Sets ``_next_due`` to when the earliest held resolve may go."""
        now = time.time()
        out: list[tuple[int, str, float]] = []
        blocked: set[str] = set()
        firing: set[str] = set()
        next_due: float | None = None
        with self._lock:
            # fresh alerts first, re-posts of the firing set after them: the minute's re-post of thousands of
            # firing alerts must not queue new detections behind it (a label set is never in both). Two indexed
            # queries: the re-posts are fetched only as many as one POST takes (one ORDER BY over the whole table
            # fetched 2,000 payloads per POST of 50 while ~5,400 re-posts were queued, on the drainer's GIL)
            rows = self._db.execute(
                "SELECT id, payload, enqueued_at, fingerprint, resolve, resend FROM outbox WHERE resend = 0 "
                "ORDER BY id LIMIT ?",
                (4 * self.batch_size,),
            ).fetchall()
            if len(rows) < 4 * self.batch_size:
                rows += self._db.execute(
                    "SELECT id, payload, enqueued_at, fingerprint, resolve, resend FROM outbox WHERE resend = 1 "
                    "ORDER BY id LIMIT ?",
                    (min(self.repost_batch_size, 4 * self.batch_size - len(rows)),),
                ).fetchall()
            fps = list({r[3] for r in rows if r[4] and r[3] is not None})
            marks = ",".join("?" * len(fps))
            fired = (
                dict(
                    self._db.execute(f"SELECT fingerprint, accepted_at FROM fired WHERE fingerprint IN ({marks})", fps)
                )
                if fps
                else {}
            )
            confirmed = (
                set(
                    self._db.execute(
                        f"SELECT fingerprint, starts_ms FROM confirmed WHERE fingerprint IN ({marks})", fps
                    )
                )
                if fps and self.confirm_timeout_s is not None
                else set()
            )
        reposts = 0
        for rid, payload, enq, fp, resolve, resend in rows:
            if resend:
                # re-posts go in small POSTs: a fresh alert arriving meanwhile waits for one of those, not for
                # a POST of batch_size (500) re-posts
                if reposts >= self.repost_batch_size:
                    break
                reposts += 1
            if fp is not None and self._holds_resolves():
                if fp in blocked:
                    continue
                if resolve:
                    acc = fired.get(fp)
                    if fp in firing:  # its firing goes in this POST: the resolve waits for the next
                        blocked.add(fp)
                        next_due = now if next_due is None else min(next_due, now)
                        continue
                    if acc is not None:
                        due = acc + self.min_firing_s
                        if (
                            self.confirm_timeout_s is not None
                            and (fp, self._resolve_starts_ms(payload)) not in confirmed
                        ):
                            due = max(due, acc + self.confirm_timeout_s)  # no receiver has the firing yet
                        if due > now:
                            blocked.add(fp)
                            next_due = due if next_due is None else min(next_due, due)
                            continue
                else:
                    firing.add(fp)
            out.append((rid, payload, enq))
            if len(out) >= self.batch_size:
                break
        self._next_due = next_due
        return out

    def _resolve_starts_ms(self, payload: str) -> int | None:
        got = self._starts_ms.get(payload, _MISSING)
        if got is _MISSING:
            if len(self._starts_ms) >= 10_000:  # a bound (held resolves are a few hundred at a time)
                self._starts_ms.clear()
            got = self._starts_ms[payload] = _ms(json.loads(payload).get("startsAt"))
        return got

    def _delete(self, ids: list[int], payloads: Sequence[dict] = ()) -> None:
        """Delete posted rows; remember when each incident's firing was first accepted (forget it on resolve)."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])
            if self._holds_resolves():
                fps = [(label_fingerprint(p["labels"]) if "labels" in p else None, "endsAt" in p) for p in payloads]
                self._db.executemany(
                    "INSERT OR IGNORE INTO fired VALUES (?, ?)", [(fp, now) for fp, res in fps if fp and not res]
                )
                self._db.executemany(
                    "DELETE FROM fired WHERE fingerprint = ?", [(fp,) for fp, res in fps if fp and res]
                )
                self._db.executemany(
                    "DELETE FROM confirmed WHERE fingerprint = ?", [(fp,) for fp, res in fps if fp and res]
                )
            self._db.execute("COMMIT")

    def _reject(self, row: tuple[int, str, float], reason: str) -> None:
        log.error("Alertmanager rejected alert %s: %s", row[1], reason)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO rejected VALUES (?, ?, ?, ?, ?)", (row[0], row[1], row[2], time.time(), reason)
            )
            self._db.execute("DELETE FROM outbox WHERE id = ?", (row[0],))
            self._db.execute("COMMIT")

    def _post(self, rows: list[tuple[int, str, float]]) -> None:
        """POST rows; on a non-retryable rejection bisect to isolate and set aside the invalid alerts."""
        payloads = [json.loads(p) for _, p, _ in rows]
        self.post_started_at = time.time()  # the posted log's diagnosis: drainer pick-up -> POST -> accepted
        try:
            self.client.post_alerts([p for _, p, _ in rows])  # the stored JSON text, not encoded again
        except AlertmanagerError as e:
            if e.retryable:
                raise
            if len(rows) == 1:
                self._reject(rows[0], str(e))
                return
            mid = len(rows) // 2
            self._post(rows[:mid])
            self._post(rows[mid:])
            return
        if self.on_posted is not None:  # accepted now (before the delete's commit)
            try:
                self.on_posted([(p, r[2]) for p, r in zip(payloads, rows)])
            except Exception:  # a metrics callback must not stop delivery
                log.exception("outbox on_posted callback failed")
        self._delete([r[0] for r in rows], payloads)
        self.posted += len(rows)

    def _run(self) -> None:
        backoff = self.min_backoff
        last_resend, outage = time.monotonic(), False
        while not self._stop.is_set():
            self._wake.clear()
            if time.monotonic() - last_resend >= self.resend_interval:
                self.resend_active()
                last_resend = time.monotonic()
            rows = self._batch()
            if not rows:
                self._idle.set()
                wait = min(1.0, max(0.01, self.resend_interval - (time.monotonic() - last_resend)))
                if self._next_due is not None:  # a held resolve falls due
                    wait = min(wait, max(0.005, self._next_due - time.time()))
                self._wake.wait(wait)
                continue
            try:
                self._post(rows)
                backoff = self.min_backoff
                self.last_error = None
                if outage:  # Alertmanager is back, maybe restarted empty: tell it everything still firing
                    outage = False
                    self.resend_active()
                    last_resend = time.monotonic()
            except AlertmanagerError as e:
                self.failures += 1
                self.last_error = str(e)
                outage = True
                log.warning("outbox: %d alerts not delivered (%s); retrying in %.2f s", len(rows), e, backoff)
                self._stop.wait(backoff * random.uniform(0.5, 1.0))
                backoff = min(self.max_backoff, backoff * 2)
            except Exception as e:  # never let the drainer die: log, back off, retry
                self.failures += 1
                self.last_error = repr(e)
                log.exception("outbox drainer error; retrying in %.2f s", backoff)
                self._stop.wait(backoff)
                backoff = min(self.max_backoff, backoff * 2)
