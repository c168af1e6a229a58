"""Pinned, verified, mirror-aware downloads.

A :class:`RemoteFile` names a file, where it lives, the hash its publisher gives for it
(``sha256:<hex>`` or ``md5:<hex>``; ``None`` where nobody publishes one), and the most bytes it may
take. :func:`fetch` returns a verified local copy from a per-user cache, so switching sources back
and forth never downloads twice:

- transport is ``requests``, streamed into a temporary file in the cache folder (named
  ``.<name>.<random>.dl-labs-partial``), checked, then renamed into place: a progress bar, retries
  with a growing wait, and a retry resumes where the last try stopped when the server names the
  file's version (an ETag or Last-Modified) and honours ``Range``;
- each download is capped (:attr:`RemoteFile.max_bytes`): a server that announces more is refused
  before its body, and one that sends more (a mirror that never ends) is stopped at the cap;
- no partial file outlives a run: it is removed on any error, on Ctrl-C and on SIGTERM (which
  raises ``KeyboardInterrupt`` while a download runs, so that the callers' cleanups run too).
  ``kill -9`` skips every cleanup: the partial file it leaves is removed by the next fetch of that
  file, unless another process is still writing it (it holds a lock on it);
- the hash is checked before a download enters the cache *and* whenever a cached copy is reused;
  a mismatch fails with both hashes;
- the cache deletes only what it wrote: each file gets a record (``.<name>.dl-labs-record``: its
  size, modification time and SHA-256). A cached copy that fails its check is deleted when it is
  the file the record describes (corrupted in place); any other file there, such as the user's own
  in a folder ``DL_LABS_CACHE`` names, is reported and left as it is;
- ``DL_LABS_MIRROR`` (a folder, or an http(s) base URL) replaces the origin of every file, looked up
  by file name; hashes are unchanged because the bytes must be the same. Its files are read, never
  changed; a mirror folder that is the cache folder is refused;
- ``DL_LABS_CACHE`` moves the cache (default: the platform's user cache folder, ``dl-labs``).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import logging
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from dllabs.errors import DataError

try:
    import fcntl
except ImportError:  # Windows, where a file open in another process cannot be deleted anyway
    fcntl = None  # type: ignore[assignment]

MIRROR_ENV = "DL_LABS_MIRROR"
CACHE_ENV = "DL_LABS_CACHE"
OFFLINE_HINT = (
    f"no network? set {MIRROR_ENV} to a folder or http(s) URL that holds the file, or use the "
    "bundled offline defaults (data.images: digits, data.anomaly: digits, data.text: lee)"
)
# The largest remote file (CIFAR-10's archive) is 163 MiB; sources.REMOTE gives each its own cap.
DEFAULT_MAX_BYTES = 256 << 20
PARTIAL_SUFFIX = ".dl-labs-partial"
RECORD_SUFFIX = ".dl-labs-record"
TIMEOUT = 60  # seconds to connect, and of silence while reading
CHUNK = 1 << 16


@dataclass(frozen=True)
class RemoteFile:
    """One remote file: cache/mirror name, origin URL, published hash (or ``None``), and the most
    bytes a download of it may write (a few times its real size)."""

    name: str
    url: str
    known_hash: str | None = None
    max_bytes: int = DEFAULT_MAX_BYTES

    def __post_init__(self) -> None:
        if self.known_hash is not None:
            algorithm, _, digest = self.known_hash.partition(":")
            if algorithm not in ("sha256", "md5") or not digest:
                raise ValueError(f"{self.name}: hash must be 'sha256:<hex>' or 'md5:<hex>'")
        if self.max_bytes <= 0:
            raise ValueError(f"{self.name}: max_bytes must be positive, not {self.max_bytes}")


def file_hash(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    return _hashes(Path(path), (algorithm,))[algorithm]


def _hashes(path: Path, algorithms: tuple[str, ...]) -> dict[str, str]:
    """Several digests of a file in one read."""
    digests = {algorithm: hashlib.new(algorithm) for algorithm in algorithms}
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            for digest in digests.values():
                digest.update(chunk)
    return {algorithm: digest.hexdigest() for algorithm, digest in digests.items()}


def copy_file(source: str | Path, target: str | Path) -> None:
    """Copy a file's bytes, taking no more disk than the source: the holes of a sparse file stay
    holes (read with ``SEEK_DATA``/``SEEK_HOLE`` where the file system has them), where a plain
    copy would write every zero. A 2 GB sparse file of zeros copies in a moment, into 0 bytes.
    """
    with open(source, "rb") as src, open(target, "wb") as dst:
        size = os.fstat(src.fileno()).st_size
        for start, stop in _data_ranges(src.fileno(), size):
            src.seek(start)
            dst.seek(start)
            left = stop - start
            while left > 0 and (chunk := src.read(min(left, 1 << 20))):
                dst.write(chunk)
                left -= len(chunk)
        dst.truncate(size)  # a hole at the end keeps the size


def _data_ranges(fd: int, size: int) -> list[tuple[int, int]]:
    """The ``(start, stop)`` byte ranges that hold data; the whole file where holes are unknown."""
    if not hasattr(os, "SEEK_DATA"):
        return [(0, size)]
    ranges, offset = [], 0
    try:
        while offset < size:
            start = os.lseek(fd, offset, os.SEEK_DATA)
            stop = os.lseek(fd, start, os.SEEK_HOLE)
            ranges.append((start, stop))
            offset = stop
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # no data after offset: the rest is a hole
            return ranges
        return [(0, size)]  # a file system without SEEK_DATA
    return ranges


def cache_dir() -> Path:
    """Where verified downloads are kept between runs."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    import pooch

    return Path(pooch.os_cache("dl-labs"))


def fetch(remote: RemoteFile, *, retries: int = 3, progress: bool = True) -> tuple[Path, str]:
    """Return ``(path, sha256)`` of a verified local copy of ``remote``, downloading if needed."""
    cache = cache_dir()
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    folder = Path(mirror).expanduser() if mirror and not _is_url(mirror) else None
    if folder is not None and _same_folder(cache, folder):
        # The mirror's files would pass for cached copies, and a cached copy failing its check is
        # deleted: the user's own file would be lost.
        raise DataError(
            f"{CACHE_ENV} and {MIRROR_ENV} name one folder ({folder}): the cache is dl-labs's "
            f"own, and the mirror's files would be taken for cached copies; set {CACHE_ENV} to "
            "another folder"
        )
    target = cache / remote.name
    if target.is_file():
        return target, _check_cached(target, remote)
    cache.mkdir(parents=True, exist_ok=True)
    _record_path(target).unlink(missing_ok=True)  # the record of a copy deleted since
    _remove_leftovers(target)
    with _termination_interrupts(), _partial(target) as (part, handle):
        if folder is not None:
            origin = str(_copy_from_folder(folder, remote, part))
        else:
            origin = f"{mirror.rstrip('/')}/{remote.name}" if mirror else remote.url
            _download(origin, remote, handle, retries=retries, progress=progress)
            handle.flush()
        sha256 = _check_new(part, remote, origin)
        os.replace(part, target)
        _record(target, sha256)
    return target, sha256


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def _same_folder(a: Path, b: Path) -> bool:
    with contextlib.suppress(OSError):  # one of them does not exist (yet)
        return a.samefile(b)
    return a.resolve() == b.resolve()


def _size(count: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.4g} {unit}"
    return f"{count} bytes"


# --- checks: a new file before it enters the cache, a cached copy before it is reused ------------


def _mismatch(remote: RemoteFile, hashes: dict[str, str]) -> str | None:
    """Why ``hashes`` are not the pinned one's, or ``None`` when they are (or none is pinned)."""
    if remote.known_hash is None:
        return None
    algorithm, _, expected = remote.known_hash.partition(":")
    if hashes[algorithm] == expected.lower():
        return None
    return (
        f"{remote.name}: checksum mismatch, expected {algorithm} {expected} but got "
        f"{hashes[algorithm]}"
    )


def _algorithms(remote: RemoteFile) -> tuple[str, ...]:
    pinned = remote.known_hash.partition(":")[0] if remote.known_hash else "sha256"
    return tuple(dict.fromkeys(("sha256", pinned)))


def _check_new(part: Path, remote: RemoteFile, origin: str) -> str:
    """The SHA-256 of a download or mirror copy; fails if it is not the pinned file."""
    hashes = _hashes(part, _algorithms(remote))
    problem = _mismatch(remote, hashes)
    if problem is not None:
        raise DataError(
            f"{problem} from {origin}; nothing was kept (corrupt download or wrong mirror)"
        )
    return hashes["sha256"]


def _check_cached(target: Path, remote: RemoteFile) -> str:
    """The SHA-256 of a cached copy, checked against the pinned hash, and against the one seen
    on download where none is pinned. A copy fetch wrote that fails is deleted (the next run
    downloads it again); any other file is reported and left as it is."""
    record = _written_record(target)
    hashes = _hashes(target, _algorithms(remote))
    problem = _mismatch(remote, hashes)
    if problem is None and record is not None and record.get("sha256") != hashes["sha256"]:
        problem = (
            f"{remote.name}: checksum mismatch, expected sha256 {record.get('sha256')} (as "
            f"downloaded) but got {hashes['sha256']}"
        )
    if problem is None:
        return hashes["sha256"]
    if record is not None:
        target.unlink(missing_ok=True)
        _record_path(target).unlink(missing_ok=True)
        raise DataError(
            f"{problem}; the cached copy {target} was corrupt and is deleted: the "
            "next run downloads it again"
        )
    raise DataError(
        f"{problem}; {target} was not written by dl-labs and is left as it is: move it away, or "
        f"set {CACHE_ENV} to a folder of its own"
    )


# --- what the cache holds: records of what fetch wrote, partial files of downloads --------------


def _record_path(target: Path) -> Path:
    return target.with_name(f".{target.name}{RECORD_SUFFIX}")


def _record(target: Path, sha256: str) -> None:
    """Record ``target`` as written by fetch. A record cut short by a crash reads as none: the
    file is then never deleted, the safe side."""
    stat = target.stat()
    record = {"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    _record_path(target).write_text(json.dumps(record), encoding="utf-8")


def _written_record(target: Path) -> dict[str, Any] | None:
    """The record of ``target`` when it is still the file fetch wrote (same size and modification
    time), else ``None``: a file written over it or in its place is someone else's."""
    try:
        record = json.loads(_record_path(target).read_text(encoding="utf-8"))
        stat = target.stat()
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    if record.get("size") != stat.st_size or record.get("mtime_ns") != stat.st_mtime_ns:
        return None
    return record


@contextlib.contextmanager
def _partial(target: Path) -> Iterator[tuple[Path, BinaryIO]]:
    """A new partial file beside ``target``, locked while it is written, removed on the way out
    unless it was renamed into place."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=PARTIAL_SUFFIX, dir=target.parent)
    part = Path(name)
    try:
        with os.fdopen(fd, "r+b") as handle:
            if fcntl is not None:
                with contextlib.suppress(OSError):  # a file system without locks
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            yield part, handle
    finally:
        part.unlink(missing_ok=True)


def _remove_leftovers(target: Path) -> None:
    """Remove the partial files of ``target`` that killed runs left (``kill -9`` skips every
    cleanup). One that another process is still writing is locked by it, and kept."""
    for leftover in target.parent.glob(f".{glob.escape(target.name)}.*{PARTIAL_SUFFIX}"):
        with contextlib.suppress(OSError), open(leftover, "rb") as handle:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if it is in use
            leftover.unlink()


@contextlib.contextmanager
def _termination_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM (and SIGHUP) raise ``KeyboardInterrupt`` as Ctrl-C does, so that
    the partial file is removed, and a stage's staged outputs discarded, before the process ends:
    their default action ends it at once. Only the main thread can take signals, and a handler
    set by someone else is theirs to keep."""
    signals = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    if threading.current_thread() is not threading.main_thread():
        signals = []
    taken = [number for number in signals if signal.getsignal(number) == signal.SIG_DFL]

    def interrupt(number: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(number).name)

    for number in taken:
        signal.signal(number, interrupt)
    try:
        yield
    finally:
        for number in taken:
            signal.signal(number, signal.SIG_DFL)


# --- sources: a mirror folder, or HTTP ---------------------------------------------------------


def _copy_from_folder(folder: Path, remote: RemoteFile, part: Path) -> Path:
    """Copy the mirror folder's file into ``part``; returns the file copied."""
    source = folder / remote.name
    if not source.is_file():
        raise DataError(f"{remote.name}: not found in the mirror folder {folder} ({MIRROR_ENV})")
    size = source.stat().st_size
    if size > remote.max_bytes:
        raise DataError(
            f"{remote.name}: {source} ({MIRROR_ENV}) is {_size(size)}, over the "
            f"{_size(remote.max_bytes)} this file may be; not copied, and left as it is"
        )
    copy_file(source, part)
    return source


class _ShortBody(Exception):
    """The connection closed before the announced length arrived."""


def _download(
    url: str, remote: RemoteFile, handle: BinaryIO, *, retries: int, progress: bool
) -> None:
    """Stream ``url`` into ``handle``, trying ``retries`` more times with a growing wait."""
    import requests

    logging.getLogger("urllib3").setLevel(logging.WARNING)
    transfer = _Transfer(url, remote, handle, progress)
    with requests.Session() as session:
        for attempt in range(retries + 1):
            try:
                transfer.attempt(session)
                return
            except requests.exceptions.ConnectionError as exc:
                failure = f"cannot reach {url} ({_connection_reason(exc)}); {OFFLINE_HINT}"
            except (requests.exceptions.RequestException, _ShortBody) as exc:
                failure = f"download from {url} failed: {_first_line(exc)}"
            if attempt == retries:
                raise DataError(f"{remote.name}: {failure}")
            time.sleep(min(attempt + 1, 10))


class _Transfer:
    """One file's download into an open partial file, over one or more attempts: an attempt
    after a cut continues from the bytes kept when the server confirms the same version."""

    def __init__(self, url: str, remote: RemoteFile, handle: BinaryIO, progress: bool) -> None:
        self.url, self.remote, self.handle, self.progress = url, remote, handle, progress
        self.version: str | None = None  # the strong ETag or Last-Modified of the bytes kept

    def attempt(self, session: Any) -> None:
        from tqdm import tqdm

        kept = self.handle.tell()
        headers = {"Accept-Encoding": "identity"}  # the file's own bytes, which the hash is of
        if kept and self.version:
            headers |= {"Range": f"bytes={kept}-", "If-Range": self.version}
        with session.get(self.url, headers=headers, stream=True, timeout=TIMEOUT) as response:
            if response.status_code == 416:  # the kept bytes are no start of it: the next try
                self.handle.seek(0)  # starts over
                self.handle.truncate()
            response.raise_for_status()
            if not _continues(response, kept):
                self.handle.seek(0)
                self.handle.truncate()
                kept = 0
            etag = response.headers.get("ETag", "")
            self.version = (etag if etag and not etag.startswith("W/") else None) or (
                response.headers.get("Last-Modified")
            )
            announced = _announced(response)
            expected = None if announced is None else kept + announced
            if expected is not None and expected > self.remote.max_bytes:
                raise DataError(
                    f"{self.remote.name}: {self.url} announces {expected} bytes "
                    f"({_size(expected)}), over the {_size(self.remote.max_bytes)} this file may "
                    "be; nothing was downloaded"
                )
            if self.progress:
                print(f"{self.remote.name}: downloading {self.url}", file=sys.stderr)
            with tqdm(
                total=expected,
                initial=kept,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=self.remote.name,
                disable=not self.progress,
            ) as bar:
                for chunk in response.iter_content(CHUNK):
                    if self.handle.tell() + len(chunk) > self.remote.max_bytes:
                        raise DataError(
                            f"{self.remote.name}: {self.url} sent more than "
                            f"{_size(self.remote.max_bytes)}, the most this file may be; "
                            "download stopped, nothing kept (a wrong URL or mirror?)"
                        )
                    self.handle.write(chunk)
                    bar.update(len(chunk))
            if expected is not None and self.handle.tell() != expected:
                raise _ShortBody(f"got {self.handle.tell()} of {expected} bytes")


def _continues(response: Any, kept: int) -> bool:
    """Whether ``response`` is the rest of the file from byte ``kept`` on."""
    if not kept or response.status_code != 206:
        return False
    return bool(
        re.fullmatch(rf"bytes {kept}-\d+/(\d+|\*)", response.headers.get("Content-Range", ""))
    )


def _announced(response: Any) -> int | None:
    """The body's length, where the headers give it for the bytes as sent."""
    length = response.headers.get("Content-Length", "")
    if not length.isdigit() or response.headers.get("Content-Encoding", "identity") != "identity":
        return None
    return int(length)


def _connection_reason(exc: BaseException) -> str:
    found = re.search(r"\[Errno -?\d+\] [^'\")]+", str(exc))
    return found.group(0) if found else _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
