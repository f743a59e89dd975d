"""The landing zone: where raw files arrive. A local folder by default, or an S3 bucket via boto3.

Keys are '/'-separated relative paths such as ``meter_readings/2026-01-05/part-000.csv``.
Every key is validated (no absolute paths, no '..', a conservative character set) before it
touches a filesystem path or an S3 request.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=\-]*(/[A-Za-z0-9][A-Za-z0-9._=\-]*)*$")


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative landing key, else raise ValueError."""
    if not isinstance(key, str) or not _KEY_RE.match(key) or ".." in key.split("/"):
        raise ValueError(f"unsafe landing key {key!r}: use relative 'a/b/c.ext' names of [A-Za-z0-9._=-]")
    return key


#: names operating systems and file managers leave behind; never data
_JUNK_NAMES = {"thumbs.db", "desktop.ini", "icon\r"}


def skip_reason(key: str) -> tuple[str, str] | None:
    """Why a listed landing key is not read, as (problem code, sentence), or None if it is readable.

    Hidden and system files (``.DS_Store``, AppleDouble ``._x.csv``, ``Thumbs.db``) are ``skipped_file``:
    they never hold readings. Any other name that fails ``check_key`` (a space, a ``;``, non-ASCII) is
    ``unsafe_name``: it may well hold readings, so it is not read (its name never becomes a path or an
    S3 request) and it blocks the day until it is renamed or waived.
    """
    name = key.rsplit("/", 1)[-1]
    if name.startswith(".") or name.lower() in _JUNK_NAMES:
        return "skipped_file", f"hidden or system file {name!r}: not a landing file, skipped"
    try:
        check_key(key)
    except ValueError:
        return "unsafe_name", (
            f"file name {key!r} is not a safe landing key (use [A-Za-z0-9._=-], no spaces): not read; "
            "rename it to a safe name, or waive it (lake.waiver), then re-run the day"
        )
    return None


@dataclass(frozen=True)
class LandedFile:
    key: str
    size: int
    modified: float  # epoch seconds


class LandingZone(Protocol):
    uri: str

    def put_bytes(self, key: str, data: bytes) -> None: ...
    def get_bytes(self, key: str) -> bytes: ...
    def open(self, key: str) -> BinaryIO: ...
    def delete(self, key: str) -> None: ...
    def list(self, prefix: str = "") -> list[LandedFile]: ...
    def exists(self, key: str) -> bool: ...


class LocalLanding:
    """A landing zone on the local filesystem."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put_bytes(self, key: str, data: bytes) -> None:
        p = self._path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(p)  # atomic: a reader never sees half a file

    def get_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def open(self, key: str) -> BinaryIO:
        """The file as a seekable binary stream (read in pieces: memory does not grow with its size)."""
        return open(self._path(key), "rb")

    def delete(self, key: str) -> None:
        self._path(key).unlink()

    def local_path(self, key: str) -> Path:
        return self._path(key)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[LandedFile]:
        base = self.root / check_key(prefix.rstrip("/")) if prefix else self.root
        if not base.exists():
            return []
        out = []
        for p in sorted(base.rglob("*")):
            if p.is_file() and not p.name.endswith(".tmp"):
                st = p.stat()
                out.append(LandedFile(p.relative_to(self.root).as_posix(), st.st_size, st.st_mtime))
        return out


class S3Landing:
    """A landing zone in an S3 bucket (any S3-protocol endpoint), through boto3.

    Credentials come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...), as
    boto3 reads them; ``endpoint_url`` points at a non-AWS endpoint such as MinIO or moto.
    """

    def __init__(self, uri: str, endpoint_url: str | None = None, region: str | None = None, client=None):
        m = re.match(r"^s3://([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(/.*)?$", uri)
        if not m:
            raise ValueError(f"not an s3://bucket[/prefix] URI: {uri!r}")
        self.bucket = m.group(1)
        self.prefix = (m.group(2) or "").strip("/")
        if self.prefix:
            check_key(self.prefix)
        self.uri = uri.rstrip("/")
        if client is None:
            import boto3

            client = boto3.client(
                "s3",
                endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL"),
                region_name=region or os.environ.get("AWS_REGION", "us-east-1"),
            )
        self.client = client

    def _k(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._k(key), Body=data)

    def get_bytes(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self._k(key))["Body"].read()

    def open(self, key: str) -> BinaryIO:
        """The object as a seekable binary stream (held in memory: S3 bodies cannot seek)."""
        return io.BytesIO(self.get_bytes(key))

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._k(key))

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._k(key))
            return True
        except ClientError:
            return False

    def list(self, prefix: str = "") -> list[LandedFile]:
        full = self._k(prefix.rstrip("/")) + "/" if prefix else (self.prefix + "/" if self.prefix else "")
        out: list[LandedFile] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
            for o in page.get("Contents", []):
                key = o["Key"][len(self.prefix) + 1 :] if self.prefix else o["Key"]
                out.append(LandedFile(key, int(o["Size"]), o["LastModified"].timestamp()))
        return sorted(out, key=lambda f: f.key)


def open_landing(uri: str, endpoint_url: str | None = None) -> LocalLanding | S3Landing:
    """A landing zone for a local path or an ``s3://bucket/prefix`` URI."""
    if uri.startswith("s3://"):
        return S3Landing(uri, endpoint_url=endpoint_url)
    if "://" in uri:
        raise ValueError(f"unsupported landing URI scheme: {uri!r} (use a local path or s3://)")
    return LocalLanding(uri)


# ----------------------------------------------------------------------------- change detection
@dataclass(frozen=True)
class LandingCursor:
    """What a poller has already seen: the newest modification time, and every key modified at exactly it.

    S3 ``LastModified`` has one-second resolution, so "newer than the newest time seen" alone would skip
    an object that lands in the same second as the cursor but after the listing that set it. Keeping the
    keys seen *at* that time makes the comparison ``modified > t or (modified == t and key not seen)``,
    which never skips a new key. (An existing key overwritten within that same second keeps its time
    and is not seen again; S3 gives no finer clock to tell the two writes apart.)
    """

    modified: float = 0.0
    keys_at_modified: frozenset[str] = frozenset()

    def is_new(self, f: LandedFile) -> bool:
        return f.modified > self.modified or (f.modified == self.modified and f.key not in self.keys_at_modified)

    def advance(self, seen: list[LandedFile]) -> LandingCursor:
        """The cursor after ``seen`` (the new files of one poll) have been handled."""
        if not seen:
            return self
        newest = max(self.modified, max(f.modified for f in seen))
        at = {f.key for f in seen if f.modified == newest}
        if newest == self.modified:
            at |= self.keys_at_modified
        return LandingCursor(newest, frozenset(at))

    def serialize(self) -> str:
        import json

        return json.dumps({"modified": self.modified, "keys": sorted(self.keys_at_modified)})

    @classmethod
    def parse(cls, text: str | None) -> LandingCursor:
        """A cursor from :meth:`serialize`'s JSON; a bare number (the older format) is read as a time only."""
        import json

        if not text:
            return cls()
        try:
            d = json.loads(text)
        except ValueError as e:
            raise ValueError(f"landing cursor {text[:80]!r} is neither JSON nor a number") from e
        if isinstance(d, (int, float)):
            return cls(float(d))
        if (
            not isinstance(d, dict)
            or not isinstance(d.get("modified"), (int, float))
            or not isinstance(d.get("keys", []), list)
        ):
            raise ValueError(f"landing cursor {text[:80]!r} lacks a numeric 'modified' and a 'keys' list")
        return cls(float(d["modified"]), frozenset(map(str, d.get("keys", []))))


def new_files(files: list[LandedFile], cursor: LandingCursor) -> tuple[list[LandedFile], LandingCursor]:
    """The files of a listing the cursor has not seen, and the cursor that has seen them."""
    fresh = [f for f in files if cursor.is_new(f)]
    return fresh, cursor.advance(fresh)
