"""A machine's cache of the store: entries by checksum under `data_dir/store-cache/`,
kept under a size bound (RLHF_STORE_CACHE_MAX_GB).

After a download or a publish adds an entry, the least recently used entries (each read
touches its entry's mtime) are evicted until the cache fits: never the entry just added, and
never one in use. An entry is in use while a process holds a shared flock on its lock file
(`.locks/<checksum>`): every read takes one while it looks at or downloads the entry, and
inside `holding()` (a job, for as long as its training child runs) keeps it until the block
ends. Eviction takes the lock exclusively without waiting, so it skips what any process
sharing the directory (two workers on one machine) is reading, and renames the entry away
before removing it, so no reader ever sees half an entry. The bound can be passed by the
entry just added and by entries in use; it holds again once they are released and the next
entry comes in.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

LOCKS = ".locks"  # one lock file per entry, by checksum
TMP = ".tmp-"  # downloads and copies on their way in, entries on their way out

# The lock files of the entries read inside the innermost `holding()` block (per thread).
_held: ContextVar[list[int] | None] = ContextVar("store_held", default=None)


@contextmanager
def holding() -> Iterator[None]:
    """Keep every entry read inside the block from eviction until the block ends."""
    fds: list[int] = []
    token = _held.set(fds)
    try:
        yield
    finally:
        _held.reset(token)
        for fd in fds:
            os.close(fd)  # closing the file releases its lock


def size(path: Path) -> int:
    """Bytes of the files under a directory."""
    total = 0
    for folder, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def touch(entry: Path) -> None:
    """Mark an entry as just used: eviction removes the least recently used first."""
    try:
        os.utime(entry)
    except OSError:
        pass


class Cache:
    """One cache directory; `max_bytes` None: unbounded."""

    def __init__(self, root: Path, max_bytes: int | None = None) -> None:
        self.root = Path(root).resolve()
        self.max_bytes = max_bytes

    def entry(self, checksum: str) -> Path:
        """Where an entry lives (whether or not it is there)."""
        return self.root / checksum

    def scratch(self) -> Path:
        """A new directory in the cache for an entry to be built in, then renamed."""
        self.root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=TMP, dir=self.root))

    def lock(self, checksum: str) -> int:
        """The entry's lock file, open and locked shared: the entry is not evicted until it
        is closed (waits for an eviction under way)."""
        fd = self._locked(checksum, fcntl.LOCK_SH)
        assert fd is not None  # a blocking lock is always granted
        return fd

    def _locked(self, checksum: str, how: int) -> int | None:
        """The entry's lock file, open and locked `how`; None: LOCK_NB and someone has it."""
        path = self.root / LOCKS / checksum
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, how)
            except BlockingIOError:
                os.close(fd)
                return None
            try:  # an eviction removes the lock file it held: lock the one now at the path
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)

    @staticmethod
    def release(fd: int) -> None:
        """Done reading: the lock goes now, or with the `holding()` block around us."""
        held = _held.get()
        if held is None:
            os.close(fd)
        else:
            held.append(fd)

    def adopt(self, local: Path, checksum: str, *, copy: bool = False) -> None:
        """Move (or copy) a directory in as the entry `checksum`; one already there wins."""
        target = self.entry(checksum)
        if target.exists():
            if not copy:
                shutil.rmtree(local, ignore_errors=True)
            touch(target)
            return
        tmp: Path | None = None
        try:
            if copy:  # through a scratch name: the entry appears whole or not at all
                tmp = self.scratch()
                shutil.copytree(local, tmp, dirs_exist_ok=True)
            else:
                self.root.mkdir(parents=True, exist_ok=True)
            os.rename(tmp or local, target)
            touch(target)
        except OSError:  # another disk, or there meanwhile: the cache fills on first read
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)

    def evict(self, *, keep: str) -> list[tuple[str, int]]:
        """Remove the least recently used entries until the cache fits its bound, never
        `keep` (just added) nor one in use; what was removed, with its size."""
        if self.max_bytes is None or not self.root.is_dir():
            return []
        found = []
        for entry in self.root.iterdir():
            if entry.name.startswith(".") or entry.name == keep:
                continue
            try:
                found.append((entry.stat().st_mtime, entry.name, size(entry)))
            except OSError:  # evicted meanwhile by another process
                continue
        excess = sum(n for *_, n in found) + size(self.entry(keep)) - self.max_bytes
        removed = []
        for _, name, n in sorted(found):
            if excess <= 0:
                break
            if self._evict_one(name):
                excess -= n
                removed.append((name, n))
        return removed

    def _evict_one(self, checksum: str) -> bool:
        lock = self._locked(checksum, fcntl.LOCK_EX | fcntl.LOCK_NB)  # in use: skipped
        if lock is None:
            return False
        try:
            gone = self.root / f"{TMP}evict-{secrets.token_hex(4)}"
            try:
                os.rename(self.entry(checksum), gone)
            except OSError:  # evicted meanwhile
                return False
            shutil.rmtree(gone, ignore_errors=True)
            (self.root / LOCKS / checksum).unlink(missing_ok=True)
            return True
        finally:
            os.close(lock)
