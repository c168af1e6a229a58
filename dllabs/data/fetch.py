"""Pinned, verified, mirror-aware downloads.

A :class:`RemoteFile` names a file, where it lives, and the hash its publisher gives for it
(``sha256:<hex>`` or ``md5:<hex>``; ``None`` where nobody publishes one). :func:`fetch` returns a
verified local copy from a per-user cache, so switching sources back and forth never downloads
twice:

- transport is `pooch <https://www.fatiando.org/pooch>`_: progress bar, retries with a growing
  wait, and an atomic write (temporary file in the cache folder, renamed when complete);
- the hash is checked after every download *and* whenever a cached copy is reused; a mismatch
  deletes the file and fails with both hashes;
- ``DL_LABS_MIRROR`` (a folder, or an http(s) base URL) replaces the origin of every file, looked up
  by file name; hashes are unchanged because the bytes must be the same;
- ``DL_LABS_CACHE`` moves the cache (default: the platform's user cache folder, ``dl-labs``).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dllabs.errors import DataError

MIRROR_ENV = "DL_LABS_MIRROR"
CACHE_ENV = "DL_LABS_CACHE"
OFFLINE_HINT = (
    f"no network? set {MIRROR_ENV} to a folder or http(s) URL that holds the file, or use the "
    "bundled offline defaults (data.images: digits, data.anomaly: digits, data.text: lee)"
)


@dataclass(frozen=True)
class RemoteFile:
    """One remote file: cache/mirror name, origin URL, and published hash (or ``None``)."""

    name: str
    url: str
    known_hash: str | None = None

    def __post_init__(self) -> None:
        if self.known_hash is not None:
            algorithm, _, digest = self.known_hash.partition(":")
            if algorithm not in ("sha256", "md5") or not digest:
                raise ValueError(f"{self.name}: hash must be 'sha256:<hex>' or 'md5:<hex>'")


def file_hash(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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


def verify(path: Path, remote: RemoteFile) -> str:
    """Check ``path`` against the pinned hash; delete it and fail on a mismatch.

    Returns the file's SHA-256, which callers record whether or not a hash was pinned.
    """
    if remote.known_hash is not None:
        algorithm, _, expected = remote.known_hash.partition(":")
        actual = file_hash(path, algorithm)
        if actual != expected.lower():
            path.unlink(missing_ok=True)
            raise DataError(
                f"{remote.name}: checksum mismatch, expected {algorithm} {expected} "
                f"but got {actual}; the file was deleted (corrupt download or wrong mirror)"
            )
    return file_hash(path, "sha256")


def cache_dir() -> Path:
    """Where verified downloads are kept between runs."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    import pooch

    return Path(pooch.os_cache("dl-labs"))


def fetch(remote: RemoteFile, *, retries: int = 3, progress: bool = True) -> tuple[Path, str]:
    """Return ``(path, sha256)`` of a verified local copy of ``remote``, downloading if needed."""
    target = cache_dir() / remote.name
    if target.is_file():
        return target, verify(target, remote)
    target.parent.mkdir(parents=True, exist_ok=True)
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if mirror and not _is_url(mirror):
        _copy_from_folder(Path(mirror).expanduser(), remote, target)
    else:
        url = f"{mirror.rstrip('/')}/{remote.name}" if mirror else remote.url
        _download(url, remote, target, retries=retries, progress=progress)
    return target, verify(target, remote)


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def _copy_from_folder(folder: Path, remote: RemoteFile, target: Path) -> None:
    source = folder / remote.name
    if not source.is_file():
        raise DataError(f"{remote.name}: not found in the mirror folder {folder} ({MIRROR_ENV})")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    try:
        copy_file(source, tmp)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _download(url: str, remote: RemoteFile, target: Path, *, retries: int, progress: bool) -> None:
    """Stream ``url`` into ``target`` through pooch (atomic, retried); the hash is ours to check."""
    import pooch
    import requests

    logging.getLogger("pooch").setLevel(logging.INFO)
    fetcher = pooch.create(
        path=target.parent,
        base_url="",
        registry={target.name: None},
        urls={target.name: url},
        retry_if_failed=retries,
    )
    downloader = pooch.HTTPDownloader(progressbar=progress, timeout=60)
    try:
        fetcher.fetch(target.name, downloader=downloader)
    except requests.exceptions.ConnectionError as exc:
        errno = re.search(r"\[Errno -?\d+\] [^'\")]+", str(exc))
        reason = errno.group(0) if errno else _first_line(exc)
        raise DataError(f"{remote.name}: cannot reach {url} ({reason}); {OFFLINE_HINT}") from None
    except requests.exceptions.RequestException as exc:
        raise DataError(f"{remote.name}: download from {url} failed: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
