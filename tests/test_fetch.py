"""dllabs.data.fetch.fetch() against a loopback HTTP server started by the tests.

Nothing here touches the real network: every URL points at 127.0.0.1. The server answers each
path from a scripted list of responses (the last one repeats), and counts requests per path, so
the tests can tell a download from a cache hit and a mirror from the origin.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from dllabs.data.fetch import MIRROR_ENV, RemoteFile, cache_dir, fetch
from dllabs.errors import DataError
from tests.loopback import LoopbackServer, etag

# Deterministic, incompressible-looking bytes the tests own (no fixture files needed).
BODY = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(1024))  # 32 KiB


def digest(data: bytes, algorithm: str = "sha256") -> str:
    return hashlib.new(algorithm, data).hexdigest()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("DL_LABS_CACHE", str(folder))
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    return folder


@pytest.fixture
def server(cache: Path) -> Iterator[LoopbackServer]:
    srv = LoopbackServer()
    try:
        yield srv
    finally:
        srv.close()


def cache_entries(folder: Path) -> list[str]:
    """Everything in the cache folder, hidden temporary files included."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


RECORD = ".data.bin.dl-labs-record"  # fetch's record that it wrote data.bin


def corrupt_in_place(path: Path, data: bytes) -> None:
    """Change a file's bytes and keep its modification time, as a failing disk would."""
    stat = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_cache_dir_follows_the_environment(cache: Path) -> None:
    assert cache_dir() == cache


@pytest.mark.parametrize("algorithm", ["sha256", "md5"])
def test_good_file_is_downloaded_verified_and_then_reused(
    server: LoopbackServer, cache: Path, algorithm: str
) -> None:
    url = server.script("/files/data.bin", ("ok", BODY))
    remote = RemoteFile("data.bin", url, f"{algorithm}:{digest(BODY, algorithm)}")

    path, sha = fetch(remote, retries=1, progress=False)

    assert path == cache / "data.bin"
    assert path.read_bytes() == BODY
    assert sha == digest(BODY)  # always the SHA-256, whatever algorithm was pinned
    assert server.hits == {"/files/data.bin": 1}
    assert cache_entries(cache) == [RECORD, "data.bin"]  # no temporary file left behind

    again, sha_again = fetch(remote, retries=1, progress=False)

    assert (again, sha_again) == (path, sha)
    assert server.hits == {"/files/data.bin": 1}  # served from the cache, no second request


def test_pinned_hash_is_case_insensitive(server: LoopbackServer) -> None:
    url = server.script("/data.bin", ("ok", BODY))
    remote = RemoteFile("data.bin", url, f"sha256:{digest(BODY).upper()}")
    path, sha = fetch(remote, retries=0, progress=False)
    assert path.read_bytes() == BODY and sha == digest(BODY)


def test_unpinned_file_returns_the_sha256_of_its_bytes(server: LoopbackServer, cache: Path) -> None:
    text = b"0.1,0.2,0.3,1\n0.4,0.5,0.6,0\n"
    url = server.script("/ecg.csv", ("ok", text))
    path, sha = fetch(RemoteFile("ecg.csv", url), retries=0, progress=False)
    assert sha == digest(text)
    assert path.read_bytes() == text
    assert path.parent == cache


@pytest.mark.parametrize("algorithm", ["sha256", "md5"])
def test_wrong_hash_fails_with_both_hashes_and_leaves_nothing(
    server: LoopbackServer, cache: Path, algorithm: str
) -> None:
    url = server.script("/data.bin", ("ok", BODY))
    wrong = digest(b"some other bytes", algorithm)
    remote = RemoteFile("data.bin", url, f"{algorithm}:{wrong}")

    with pytest.raises(DataError) as caught:
        fetch(remote, retries=0, progress=False)

    message = str(caught.value)
    assert "data.bin" in message
    assert wrong in message
    assert digest(BODY, algorithm) in message
    assert cache_entries(cache) == []


def test_truncated_body_fails_and_leaves_nothing(server: LoopbackServer, cache: Path) -> None:
    url = server.script("/data.bin", ("truncated", BODY))
    remote = RemoteFile("data.bin", url, f"sha256:{digest(BODY)}")

    with pytest.raises(DataError, match=r"data\.bin"):
        fetch(remote, retries=0, progress=False)

    assert server.hits == {"/data.bin": 1}
    assert cache_entries(cache) == []


def test_truncated_body_on_an_unpinned_file_is_still_an_error(
    server: LoopbackServer, cache: Path
) -> None:
    # Without a pinned hash only the Content-Length check can catch the short body.
    url = server.script("/ecg.csv", ("truncated", BODY))
    with pytest.raises(DataError, match=r"ecg\.csv"):
        fetch(RemoteFile("ecg.csv", url), retries=0, progress=False)
    assert cache_entries(cache) == []


def test_truncated_once_then_good_succeeds_by_retrying(server: LoopbackServer) -> None:
    url = server.script("/data.bin", ("truncated", BODY), ("ok", BODY))
    remote = RemoteFile("data.bin", url, f"sha256:{digest(BODY)}")

    path, sha = fetch(remote, retries=1, progress=False)

    assert path.read_bytes() == BODY and sha == digest(BODY)
    assert server.hits == {"/data.bin": 2}


def test_404_once_then_200_succeeds_by_retrying(server: LoopbackServer) -> None:
    url = server.script("/data.bin", ("404", b""), ("ok", BODY))
    remote = RemoteFile("data.bin", url, f"md5:{digest(BODY, 'md5')}")

    path, _ = fetch(remote, retries=1, progress=False)

    assert path.read_bytes() == BODY
    assert server.hits == {"/data.bin": 2}


def test_404_always_is_a_data_error_naming_the_status(server: LoopbackServer, cache: Path) -> None:
    url = server.script("/missing.bin", ("404", b""))
    remote = RemoteFile("missing.bin", url, f"sha256:{digest(BODY)}")

    with pytest.raises(DataError) as caught:
        fetch(remote, retries=0, progress=False)

    message = str(caught.value)
    assert "404" in message
    assert "missing.bin" in message
    assert server.hits == {"/missing.bin": 1}  # retries=0: exactly one attempt
    assert cache_entries(cache) == []


def test_corrupted_cache_copy_is_reported_and_deleted(server: LoopbackServer, cache: Path) -> None:
    url = server.script("/data.bin", ("ok", BODY))
    remote = RemoteFile("data.bin", url, f"sha256:{digest(BODY)}")
    path, _ = fetch(remote, retries=0, progress=False)
    rotten = b"X" + BODY[1:]
    corrupt_in_place(path, rotten)  # still the file fetch wrote (a file written over it is not)

    with pytest.raises(DataError) as caught:
        fetch(remote, retries=0, progress=False)

    message = str(caught.value)
    assert digest(BODY) in message and digest(rotten) in message
    assert not path.exists()
    assert server.hits == {"/data.bin": 1}  # the bad copy was checked, not silently replaced

    # The next run downloads a fresh, good copy.
    again, sha = fetch(remote, retries=0, progress=False)
    assert again.read_bytes() == BODY and sha == digest(BODY)
    assert server.hits == {"/data.bin": 2}


def test_an_unpinned_cached_copy_changed_in_place_is_reported_and_deleted(
    server: LoopbackServer, cache: Path
) -> None:
    # Without a pinned hash, the SHA-256 seen on download (fetch's record) is the reference.
    url = server.script("/ecg.csv", ("ok", BODY))
    path, _ = fetch(RemoteFile("ecg.csv", url), retries=0, progress=False)
    corrupt_in_place(path, b"X" + BODY[1:])

    with pytest.raises(DataError, match=f"expected sha256 {digest(BODY)}"):
        fetch(RemoteFile("ecg.csv", url), retries=0, progress=False)

    assert cache_entries(cache) == []


def test_a_cut_download_resumes_where_it_stopped(server: LoopbackServer, cache: Path) -> None:
    body = BODY * 8  # 256 KiB, cut after 128 KiB
    url = server.script("/data.bin", ("resumable-truncated", body), ("resumable", body))
    remote = RemoteFile("data.bin", url, f"sha256:{digest(body)}")

    path, sha = fetch(remote, retries=1, progress=False)

    assert path.read_bytes() == body and sha == digest(body)
    first, second = server.headers["/data.bin"]
    assert "Range" not in first and second["If-Range"] == etag(body)
    # From the last whole read: urllib3 drops the bytes of the read that the cut ended.
    start = int(re.fullmatch(r"bytes=(\d+)-", second["Range"]).group(1))
    assert len(body) // 4 <= start <= len(body) // 2
    assert server.sent["/data.bin"] == len(body) // 2 + len(body) - start
    assert cache_entries(cache) == [RECORD, "data.bin"]


def test_a_file_changed_between_tries_is_downloaded_again_from_its_start(
    server: LoopbackServer,
) -> None:
    changed = BODY[::-1]
    url = server.script("/data.bin", ("resumable-truncated", BODY), ("resumable", changed))

    path, sha = fetch(RemoteFile("data.bin", url), retries=1, progress=False)

    assert path.read_bytes() == changed and sha == digest(changed)  # not half of each
    assert server.sent["/data.bin"] == len(BODY) // 2 + len(changed)


def test_mirror_folder_is_used_instead_of_the_origin(
    server: LoopbackServer, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "data.bin").write_bytes(BODY)
    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    remote = RemoteFile("data.bin", f"{server.base}/origin/data.bin", f"sha256:{digest(BODY)}")

    path, sha = fetch(remote, retries=0, progress=False)

    assert path == cache / "data.bin"
    assert path.read_bytes() == BODY and sha == digest(BODY)
    assert server.hits == {}  # the origin was never asked
    assert cache_entries(cache) == [RECORD, "data.bin"]
    assert (mirror / "data.bin").read_bytes() == BODY  # copied, not moved


def test_cached_copy_is_reused_even_when_the_mirror_no_longer_has_it(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "data.bin").write_bytes(BODY)
    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    remote = RemoteFile("data.bin", "http://127.0.0.1:9/data.bin", f"sha256:{digest(BODY)}")
    first, _ = fetch(remote, retries=0, progress=False)
    (mirror / "data.bin").unlink()

    again, sha = fetch(remote, retries=0, progress=False)

    assert again == first and again.read_bytes() == BODY and sha == digest(BODY)


def test_mirror_folder_with_wrong_bytes_fails_the_hash_check(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "data.bin").write_bytes(b"not the published file")
    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    remote = RemoteFile("data.bin", "http://127.0.0.1:9/data.bin", f"sha256:{digest(BODY)}")

    with pytest.raises(DataError) as caught:
        fetch(remote, retries=0, progress=False)

    assert digest(BODY) in str(caught.value)
    assert digest(b"not the published file") in str(caught.value)
    assert cache_entries(cache) == []


def test_mirror_folder_without_the_file_names_the_file_and_the_variable(
    server: LoopbackServer, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "other.bin").write_bytes(BODY)
    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    url = server.script("/absent.bin", ("ok", BODY))  # reachable origin must not be used
    remote = RemoteFile("absent.bin", url, f"sha256:{digest(BODY)}")

    with pytest.raises(DataError) as caught:
        fetch(remote, retries=0, progress=False)

    message = str(caught.value)
    assert "absent.bin" in message
    assert MIRROR_ENV in message
    assert str(mirror) in message
    assert server.hits == {}
    assert cache_entries(cache) == []


@pytest.mark.parametrize("trailing_slash", ["", "/"])
def test_mirror_url_replaces_the_origin(
    server: LoopbackServer, cache: Path, monkeypatch: pytest.MonkeyPatch, trailing_slash: str
) -> None:
    server.script("/mirror/sub/data.bin", ("ok", BODY))
    origin = server.script("/origin/data.bin", ("404", b""))  # would fail if it were used
    monkeypatch.setenv(MIRROR_ENV, f"{server.base}/mirror/sub{trailing_slash}")
    remote = RemoteFile("data.bin", origin, f"sha256:{digest(BODY)}")

    path, sha = fetch(remote, retries=0, progress=False)

    assert path.read_bytes() == BODY and sha == digest(BODY)
    assert server.hits == {"/mirror/sub/data.bin": 1}


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A 127.0.0.1 port that is bound (so nobody else takes it) but not listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_unreachable_origin_points_to_the_mirror_and_offline_defaults(
    cache: Path, dead_port: int
) -> None:
    remote = RemoteFile("mnist.npz", f"http://127.0.0.1:{dead_port}/mnist.npz", None)

    with pytest.raises(DataError) as caught:
        fetch(remote, retries=0, progress=False)

    message = str(caught.value)
    assert "mnist.npz" in message
    assert "DL_LABS_MIRROR" in message
    assert "digits" in message
    assert cache_entries(cache) == []


def test_unreachable_mirror_url_is_reported_with_the_mirror_address(
    cache: Path, dead_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = f"http://127.0.0.1:{dead_port}/m"
    monkeypatch.setenv(MIRROR_ENV, mirror)
    remote = RemoteFile("data.bin", "http://127.0.0.1:9/origin/data.bin", None)

    with pytest.raises(DataError) as caught:
        fetch(remote, retries=0, progress=False)

    assert f"{mirror}/data.bin" in str(caught.value)


@pytest.mark.parametrize("bad", ["sha1:abc", "sha256:", "abc", "md5"])
def test_remote_file_rejects_unsupported_hash_spellings(bad: str) -> None:
    with pytest.raises(ValueError, match=r"x\.bin"):
        RemoteFile("x.bin", "http://127.0.0.1/x.bin", bad)
