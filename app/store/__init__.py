"""The store several machines share: model directories and dataset snapshots, published
under RLHF_STORE_URL (file:// or s3://, through fsspec) and cached where they are read.

An entry is `STORE/AREA/NAME` (e.g. s3://rlhf/models/sft-job7). Its files are uploaded under
`NAME/<token>/`, a name nobody reads, and the entry appears only when `NAME/commit.json` is
written last, in one PUT (on a local disk: a rename): it lists every file with its size and
sha256 and names the token. A failed upload leaves no commit, so nothing is visible, and a
second publish of the same name switches readers to the new files at once. The entry's
checksum, which the registry records, is the sha256 of that list of files (not of the
token): the same files published twice have the same checksum.

A reader downloads an entry into `data_dir/store-cache/<checksum>/`, checking every file's
sha256 on the way; a later read finds it there. Keyed by checksum, a name published again is
downloaded again, never served stale. Training children only ever see these local paths.

The cache is bounded, and nothing in use is evicted from it: see app/store/cache.py.

This module is the core's: it imports settings, the standard library and fsspec, no domain.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec

from app.config import Settings, get_settings
from app.store.cache import Cache, touch
from app.store.cache import holding as holding  # store.holding(): a job keeps what it reads

COMMIT = "commit.json"
SCHEMES = ("file", "s3")
Log = Callable[[str], None]


class StoreError(Exception):
    """The store cannot be reached, refuses us, or holds something other than expected."""


class NotCommitted(StoreError):
    """Nothing is committed under that name (a failed upload, or a removed entry)."""


@dataclass(frozen=True)
class Stored:
    """One committed entry: where it is, its checksum, what was moved to put it there."""

    url: str
    sha256: str
    files: int
    bytes: int


@dataclass
class Moved:
    """Transfers of this process, for the measures (docs/deploy.md)."""

    up_files: int = 0
    up_bytes: int = 0
    down_files: int = 0
    down_bytes: int = 0
    cache_hits: int = 0
    evicted: int = 0  # cache entries removed to keep the cache in its bound
    evicted_bytes: int = 0
    by_url: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Entry:
    """A committed entry as listed: its URL, its name, and when its commit was written."""

    url: str
    name: str
    committed_at: datetime


def is_url(value: str) -> bool:
    """Whether a path as recorded (a version's, a snapshot's) is a store URL."""
    scheme, sep, _ = str(value).partition("://")
    return bool(sep) and scheme in SCHEMES


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _checksum(files: list[dict[str, Any]]) -> str:
    """An entry's checksum: over each file's path, size and sha256, in path order."""
    canonical = sorted((f["path"], int(f["bytes"]), f["sha256"]) for f in files)
    return hashlib.sha256(json.dumps(canonical).encode()).hexdigest()


def dir_checksum(local: Path) -> str:
    """The checksum a directory has as an entry of the store (reads every file)."""
    files = [{"path": f.relative_to(local).as_posix(), "bytes": f.stat().st_size,
              "sha256": _sha256(f)} for f in sorted(p for p in local.rglob("*") if p.is_file())]
    return _checksum(files)


def _modified(info: dict[str, Any]) -> datetime:
    """When an object was last written, from fsspec's info (S3's LastModified, a file's mtime)."""
    stamp = info.get("LastModified") or info.get("mtime") or info.get("created")
    if isinstance(stamp, datetime):
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    if isinstance(stamp, int | float):
        return datetime.fromtimestamp(stamp, UTC)
    raise StoreError(f"the store gives no time for {info.get('name')}")


def _reason(exc: BaseException) -> str:
    """A failure in a sentence: the wrong credentials and the unreachable host named."""
    text = f"{type(exc).__name__}: {exc}"
    if any(code in text for code in ("InvalidAccessKeyId", "SignatureDoesNotMatch",
                                     "AccessDenied", "Forbidden", "PermissionError")):
        return (f"the store refused our credentials or their permissions "
                f"(RLHF_STORE_ACCESS_KEY/SECRET_KEY): {text}")
    if any(code in text for code in ("Could not connect", "EndpointConnectionError",
                                     "Connection refused", "ConnectTimeout",
                                     "Name or service not known", "ClientConnectorError")):
        return f"the store cannot be reached (RLHF_STORE_URL/ENDPOINT_URL): {text}"
    return text


class Store:
    """One store URL with this machine's cache."""

    def __init__(self, url: str, *, cache_dir: Path, endpoint_url: str = "",
                 access_key: str = "", secret_key: str = "",
                 cache_max_bytes: int | None = None) -> None:
        self.url = url.rstrip("/")
        self.cache = Cache(cache_dir, cache_max_bytes)  # None: not bounded
        options: dict[str, Any] = {}
        if self.url.startswith("s3://"):
            # Short timeouts and few retries: an unreachable store fails a job (and start-up)
            # in seconds with its reason, not after minutes of silent back-off.
            options = {"config_kwargs": {"connect_timeout": 5, "read_timeout": 60,
                                         "retries": {"max_attempts": 2}},
                       "skip_instance_cache": True}
            if endpoint_url:
                options["endpoint_url"] = endpoint_url
            if access_key:
                options["key"], options["secret"] = access_key, secret_key
        self.fs, self.root = fsspec.core.url_to_fs(self.url, **options)
        if hasattr(self.fs, "retries"):
            self.fs.retries = 1  # s3fs's own loop around botocore's, with back-off
        self.root = self.root.rstrip("/")
        self.moved = Moved()

    # names

    def url_for(self, area: str, name: str) -> str:
        """The URL an entry of this store has (what the registry records)."""
        return f"{self.url}/{area}/{name}"

    def _split(self, url: str) -> tuple[str, str]:
        """(the entry's path in the filesystem, the file inside it or "")."""
        if not url.startswith(self.url + "/"):
            raise StoreError(f"{url} is not in the configured store ({self.url}); set "
                             "RLHF_STORE_URL to the store it was published to.")
        parts = url[len(self.url) + 1:].split("/", 2)
        if len(parts) < 2 or not all(parts[:2]):
            raise StoreError(f"{url} names no entry of the store (STORE/AREA/NAME).")
        return f"{self.root}/{parts[0]}/{parts[1]}", parts[2] if len(parts) > 2 else ""

    def entry_of(self, url: str) -> str | None:
        """The URL of the entry a URL names (the entry, or a file in it); None: the URL is
        not in this store."""
        try:
            base, _ = self._split(url.rstrip("/"))
        except StoreError:
            return None
        return f"{self.url}/{base[len(self.root) + 1:]}"

    # writing

    def publish(self, local: Path, area: str, name: str, log: Log | None = None, *,
                keep_local: bool = False) -> Stored:
        """Upload a finished directory and commit it; afterwards it lives in the cache
        (under its checksum) rather than at `local` (with `keep_local`: in both)."""
        base = f"{self.root}/{area}/{name}"
        token = secrets.token_hex(8)
        listing: list[dict[str, Any]] = []
        size = 0
        try:
            for file in sorted(p for p in Path(local).rglob("*") if p.is_file()):
                rel = file.relative_to(local).as_posix()
                n = file.stat().st_size
                if self._local:  # a disk wants the folders; S3 has only keys
                    self.fs.makedirs(f"{base}/{token}/{rel}".rsplit("/", 1)[0], exist_ok=True)
                self.fs.put_file(str(file), f"{base}/{token}/{rel}")
                listing.append({"path": rel, "bytes": n, "sha256": _sha256(file)})
                size += n
            if not listing:
                raise StoreError(f"{local} has no files to publish")
            commit = json.dumps({"version": token, "files": listing}, indent=1,
                                sort_keys=True).encode()
            self._write_commit(f"{base}/{COMMIT}", commit)
        except Exception as exc:
            self._remove(f"{base}/{token}")
            raise StoreError(f"Publishing {name} to the store failed: {_reason(exc)}") from exc
        self._drop_old(base, keep=token)
        stored = Stored(url=self.url_for(area, name), sha256=_checksum(listing),
                        files=len(listing), bytes=size)
        self.moved.up_files += stored.files
        self.moved.up_bytes += stored.bytes
        if log:
            log(f"store: uploaded {stored.files} files ({stored.bytes} bytes) to {stored.url}")
        self.cache.adopt(Path(local), stored.sha256, copy=keep_local)
        self._evict(stored.sha256, log)
        return stored

    @property
    def _local(self) -> bool:
        return "file" in self.fs.protocol or "local" in self.fs.protocol

    def _write_commit(self, path: str, data: bytes) -> None:
        if self._local:
            tmp = f"{path}.tmp-{secrets.token_hex(4)}"  # a rename: whole or not at all
            self.fs.pipe_file(tmp, data)
            os.replace(tmp, path)
        else:
            self.fs.pipe_file(path, data)  # one PUT: S3 shows the whole object or none

    def _drop_old(self, base: str, keep: str) -> None:
        """Remove the files of earlier publishes of the same name (no commit names them)."""
        try:
            for child in self.fs.ls(base, detail=False, refresh=True):
                name = child.rstrip("/").rsplit("/", 1)[-1]
                if name not in (keep, COMMIT):
                    self._remove(child)
        except OSError:
            pass

    def _remove(self, path: str) -> None:
        try:
            self.fs.rm(path, recursive=True)
        except (OSError, ValueError):
            pass

    def discard(self, url: str) -> None:
        """Remove an entry (its commit first, so it disappears at once)."""
        base, _ = self._split(url)
        self._remove(f"{base}/{COMMIT}")
        self._remove(base)

    def entries(self, area: str) -> list[Entry]:
        """The committed entries of an area, each with the time its commit was written (an
        upload without a commit is not an entry)."""
        found = []
        try:
            children = self.fs.ls(f"{self.root}/{area}", detail=False, refresh=True)
        except FileNotFoundError:
            return []
        except Exception as exc:
            raise StoreError(f"Listing {area} in the store failed: {_reason(exc)}") from exc
        for child in sorted(children):
            name = child.rstrip("/").rsplit("/", 1)[-1]
            try:
                info = self._commit_info(f"{self.root}/{area}/{name}")
            except FileNotFoundError:
                continue
            found.append(Entry(url=self.url_for(area, name), name=name,
                               committed_at=_modified(info)))
        return found

    def _commit_info(self, base: str) -> dict[str, Any]:
        path = f"{base}/{COMMIT}"
        self.fs.invalidate_cache(path)
        try:
            return dict(self.fs.info(path))
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise StoreError(f"Reading {path} from the store failed: {_reason(exc)}") from exc

    def retire(self, entry: Entry) -> bool:
        """Remove an entry as `entries` listed it: its commit first, so it disappears at
        once, then the files that commit names. One committed again since it was listed
        (the same name published anew) is left alone: False."""
        base, _ = self._split(entry.url)
        try:
            if _modified(self._commit_info(base)) != entry.committed_at:
                return False
            version = json.loads(self._commit(base, entry.url))["version"]
        except (FileNotFoundError, NotCommitted):
            return False
        self._remove(f"{base}/{COMMIT}")
        self._remove(f"{base}/{version}")
        if self._local:  # S3 has no folders; a disk keeps the empty one
            try:
                os.rmdir(base)
            except OSError:  # not empty: an upload under way there
                pass
        return True

    # reading

    def _commit(self, base: str, url: str) -> bytes:
        try:
            return bytes(self.fs.cat_file(f"{base}/{COMMIT}"))
        except FileNotFoundError:
            raise NotCommitted(f"{url} is not in the store: nothing was committed there (an "
                             "upload that failed, or an entry removed).") from None
        except Exception as exc:
            raise StoreError(f"Reading {url} from the store failed: {_reason(exc)}") from exc

    def committed(self, url: str) -> bool:
        """Whether the entry exists, whole (a store that fails to answer raises)."""
        try:
            self._commit(self._split(url)[0], url)
        except NotCommitted:
            return False
        return True

    def checksum(self, url: str) -> str:
        """The entry's checksum: the sha256 of its list of files."""
        return _checksum(json.loads(self._commit(self._split(url)[0], url))["files"])

    def fetch(self, url: str, *, sha256: str | None = None, log: Log | None = None) -> Path:
        """The entry (or the file inside it that `url` names) on this machine's disk,
        downloaded once per checksum; refuses an entry whose checksum is not `sha256`."""
        base, inside = self._split(url)
        commit = json.loads(self._commit(base, url))
        checksum = _checksum(commit["files"])
        if sha256 and sha256 != checksum:
            raise StoreError(f"{url} in the store has checksum {checksum[:12]}…, not the "
                             f"{sha256[:12]}… registered for it: refusing to use it.")
        target = self.cache.entry(checksum)
        lock = self.cache.lock(checksum)  # not evicted while we look, download and use it
        try:
            if target.is_dir():
                touch(target)
                self.moved.cache_hits += 1
                if log:
                    log(f"store: {self.url_for(*base[len(self.root) + 1:].split('/', 1))} "
                        "from the cache")
            else:
                self._download(base, commit, target, url, log)
                touch(target)
                self._evict(checksum, log)
        except BaseException:
            os.close(lock)
            raise
        self.cache.release(lock)
        return target / inside if inside else target

    def _download(self, base: str, commit: dict[str, Any], target: Path, url: str,
                  log: Log | None) -> None:
        tmp = self.cache.scratch()
        size = 0
        try:
            for entry in commit["files"]:
                dest = tmp / entry["path"]
                dest.parent.mkdir(parents=True, exist_ok=True)
                self.fs.get_file(f"{base}/{commit['version']}/{entry['path']}", str(dest))
                if _sha256(dest) != entry["sha256"]:
                    raise StoreError(f"{url}: {entry['path']} does not match the sha256 its "
                                     "commit lists: refusing the download.")
                size += int(entry["bytes"])
            try:
                os.rename(tmp, target)
            except OSError:  # the same entry, downloaded meanwhile by another job
                shutil.rmtree(tmp, ignore_errors=True)
        except StoreError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        except Exception as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise StoreError(f"Downloading {url} from the store failed: {_reason(exc)}") from exc
        self.moved.down_files += len(commit["files"])
        self.moved.down_bytes += size
        if log:
            log(f"store: downloaded {len(commit['files'])} files ({size} bytes) from {url}")

    def _evict(self, keep: str, log: Log | None) -> None:
        """Keep the cache in its bound, now that `keep` came in."""
        for checksum, size in self.cache.evict(keep=keep):
            self.moved.evicted += 1
            self.moved.evicted_bytes += size
            if log:
                log(f"store: evicted {checksum[:12]}… ({size} bytes) from the cache")

    def localize(self, value: str, *, sha256: str | None = None, log: Log | None = None) -> str:
        """A local path for a recorded path: a store URL fetched, anything else as it is."""
        return str(self.fetch(value, sha256=sha256, log=log)) if is_url(value) else value

    def check(self) -> None:
        """Write, read and remove a probe: the store is reachable and takes our
        credentials (at start-up: a wrong setting fails there, not in a round)."""
        probe = f"{self.root}/.probe-{secrets.token_hex(4)}"
        try:
            self.fs.pipe_file(probe, b"ok")
            if bytes(self.fs.cat_file(probe)) != b"ok":
                raise StoreError("the probe read back differently")
            self.fs.rm(probe)
        except Exception as exc:
            raise StoreError(f"The store at {self.url} does not work: {_reason(exc)}") from exc


_current: dict[tuple[Any, ...], Store] = {}


def current(settings: Settings | None = None) -> Store | None:
    """The configured store (one per process and setting), or None: local disk only."""
    settings = settings or get_settings()
    if not settings.store_url:
        return None
    key = (settings.store_url, settings.data_dir, settings.store_endpoint_url,
           settings.store_access_key, settings.store_secret_key.get_secret_value(),
           settings.store_cache_max_bytes)
    if key not in _current:
        _current[key] = Store(settings.store_url, cache_dir=settings.data_dir / "store-cache",
                              endpoint_url=settings.store_endpoint_url,
                              access_key=settings.store_access_key,
                              secret_key=settings.store_secret_key.get_secret_value(),
                              cache_max_bytes=settings.store_cache_max_bytes)
    return _current[key]


def localize(value: str, *, sha256: str | None = None, log: Log | None = None) -> str:
    """A local path for a recorded path (see Store.localize); a store URL with no store
    configured is refused with what to set."""
    if not is_url(value):
        return value
    store = current()
    if store is None:
        raise StoreError(f"{value} is in a store, and RLHF_STORE_URL is not set on this "
                         "machine.")
    return store.localize(value, sha256=sha256, log=log)


def discard(value: str) -> None:
    """Remove a store entry that will not be registered (a local path: nothing to do)."""
    store = current()
    if store is not None and is_url(value):
        try:
            store.discard(value)
        except StoreError:
            pass
