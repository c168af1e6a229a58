"""dllabs.fetch against a loopback HTTP server the tests start (never the real network)."""

from __future__ import annotations

import hashlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dllabs.errors import DataError
from dllabs.fetch import RemoteFile, fetch

PAYLOAD = bytes(range(256)) * 64  # 16 KiB


class Server:
    """Serves planned responses per path: ('ok'|'404'|'truncated', body), then repeats the last."""

    def __init__(self) -> None:
        self.plans: dict[str, list[tuple[str, bytes]]] = {}
        self.hits: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                hits = server.hits.get(self.path, 0)
                server.hits[self.path] = hits + 1
                plan = server.plans.get(self.path, [("404", b"")])
                kind, body = plan[min(hits, len(plan) - 1)]
                if kind == "404":
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if kind == "truncated":
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                else:
                    self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DL_LABS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DL_LABS_MIRROR", raising=False)
    srv = Server()
    yield srv
    srv.close()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cache_files(tmp_path: Path) -> list[str]:
    folder = tmp_path / "cache"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("algorithm", ["sha256", "md5"])
def test_good_file_is_verified_and_cached(server: Server, tmp_path: Path, algorithm: str) -> None:
    server.plans["/data.bin"] = [("ok", PAYLOAD)]
    digest = hashlib.new(algorithm, PAYLOAD).hexdigest()
    remote = RemoteFile("data.bin", f"{server.url}/data.bin", f"{algorithm}:{digest}")
    path, seen = fetch(remote, retries=0, progress=False)
    assert path.read_bytes() == PAYLOAD and seen == sha256(PAYLOAD)
    again, _ = fetch(remote, retries=0, progress=False)
    assert again == path and server.hits["/data.bin"] == 1  # reused, re-verified, not re-fetched


def test_wrong_hash_fails_with_both_hashes_and_keeps_nothing(
    server: Server, tmp_path: Path
) -> None:
    server.plans["/data.bin"] = [("ok", PAYLOAD)]
    expected = "0" * 64
    remote = RemoteFile("data.bin", f"{server.url}/data.bin", f"sha256:{expected}")
    with pytest.raises(DataError) as caught:
        fetch(remote, retries=0, progress=False)
    assert expected in str(caught.value) and sha256(PAYLOAD) in str(caught.value)
    assert cache_files(tmp_path) == []


def test_truncated_body_fails_and_keeps_nothing(server: Server, tmp_path: Path) -> None:
    server.plans["/data.bin"] = [("truncated", PAYLOAD)]
    remote = RemoteFile("data.bin", f"{server.url}/data.bin", f"sha256:{sha256(PAYLOAD)}")
    with pytest.raises(DataError, match=r"data\.bin: download from .* failed"):
        fetch(remote, retries=0, progress=False)
    assert cache_files(tmp_path) == []


def test_truncated_once_then_good_succeeds_on_retry(server: Server) -> None:
    server.plans["/data.bin"] = [("truncated", PAYLOAD), ("ok", PAYLOAD)]
    remote = RemoteFile("data.bin", f"{server.url}/data.bin", f"sha256:{sha256(PAYLOAD)}")
    path, _ = fetch(remote, retries=1, progress=False)
    assert path.read_bytes() == PAYLOAD and server.hits["/data.bin"] == 2


def test_404_then_200_succeeds_on_retry(server: Server) -> None:
    server.plans["/data.bin"] = [("404", b""), ("ok", PAYLOAD)]
    remote = RemoteFile("data.bin", f"{server.url}/data.bin", f"sha256:{sha256(PAYLOAD)}")
    path, _ = fetch(remote, retries=1, progress=False)
    assert path.read_bytes() == PAYLOAD and server.hits["/data.bin"] == 2


def test_404_always_is_a_clear_error(server: Server, tmp_path: Path) -> None:
    remote = RemoteFile("gone.bin", f"{server.url}/gone.bin", f"sha256:{sha256(PAYLOAD)}")
    with pytest.raises(DataError, match=r"gone\.bin: download from .* failed: 404"):
        fetch(remote, retries=0, progress=False)
    assert cache_files(tmp_path) == []


def test_corrupted_cache_copy_is_deleted_and_reported(server: Server, tmp_path: Path) -> None:
    server.plans["/data.bin"] = [("ok", PAYLOAD)]
    remote = RemoteFile("data.bin", f"{server.url}/data.bin", f"sha256:{sha256(PAYLOAD)}")
    path, _ = fetch(remote, retries=0, progress=False)
    path.write_bytes(b"bit rot")
    with pytest.raises(DataError) as caught:
        fetch(remote, retries=0, progress=False)
    assert sha256(PAYLOAD) in str(caught.value) and sha256(b"bit rot") in str(caught.value)
    assert not path.exists()
    again, _ = fetch(remote, retries=0, progress=False)  # the next run downloads a good copy
    assert again.read_bytes() == PAYLOAD


def test_unpinned_file_reports_what_it_saw(server: Server) -> None:
    server.plans["/ecg.csv"] = [("ok", b"1,2,3\n")]
    path, seen = fetch(RemoteFile("ecg.csv", f"{server.url}/ecg.csv"), retries=0, progress=False)
    assert seen == sha256(b"1,2,3\n") and path.read_bytes() == b"1,2,3\n"


def test_mirror_url_replaces_the_origin(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    server.plans["/mirror/data.bin"] = [("ok", PAYLOAD)]
    monkeypatch.setenv("DL_LABS_MIRROR", f"{server.url}/mirror/")
    remote = RemoteFile("data.bin", f"{server.url}/origin/data.bin", f"sha256:{sha256(PAYLOAD)}")
    path, _ = fetch(remote, retries=0, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert server.hits == {"/mirror/data.bin": 1}  # the origin was never asked


def test_mirror_folder_replaces_the_origin(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "data.bin").write_bytes(PAYLOAD)
    monkeypatch.setenv("DL_LABS_MIRROR", str(mirror))
    remote = RemoteFile("data.bin", f"{server.url}/origin/data.bin", f"sha256:{sha256(PAYLOAD)}")
    path, _ = fetch(remote, retries=0, progress=False)
    assert path.read_bytes() == PAYLOAD and server.hits == {}
    (mirror / "other.bin").write_bytes(b"wrong bytes")
    bad = RemoteFile("other.bin", f"{server.url}/other.bin", f"sha256:{sha256(PAYLOAD)}")
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch(bad, retries=0, progress=False)
    missing = RemoteFile("absent.bin", f"{server.url}/absent.bin", None)
    with pytest.raises(
        DataError, match=r"absent\.bin: not found in the mirror folder .*DL_LABS_MIRROR"
    ):
        fetch(missing, retries=0, progress=False)


def test_unreachable_origin_points_to_mirror_and_defaults(server: Server) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    remote = RemoteFile("mnist.npz", f"http://127.0.0.1:{port}/mnist.npz", None)
    with pytest.raises(DataError) as caught:
        fetch(remote, retries=0, progress=False)
    message = str(caught.value)
    assert message.startswith("mnist.npz: cannot reach") and "\n" not in message
    assert "DL_LABS_MIRROR" in message and "data.images: digits" in message
