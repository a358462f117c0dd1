"""Resumable, checksummed downloads against a local HTTP server (127.0.0.1 only, no internet)."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
import time
import urllib.error
from pathlib import Path

import pytest

from bdlib.runtime.download import (
    ChecksumError,
    IncompleteDownloadError,
    corrupt_path,
    download,
    part_path,
    sha256_of,
)
from bdlib.worlds.paper.checkpoints import (
    DOWNLOAD_COMMAND,
    MissingCheckpointError,
    checkpoint_path,
    load_unet_state_dict,
)

DATA = os.urandom(3 * 65536 + 123)  # a little over 192 KiB
DATA_SHA = hashlib.sha256(DATA).hexdigest()
CUT_AT = len(DATA) // 2


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves DATA at /file. Behaviour is chosen by the server's attributes (see ``_serve``)."""

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        server = self.server
        server.requests.append(self.headers.get("Range"))
        if self.path != "/file":
            self.send_error(404)
            return
        start = 0
        header = self.headers.get("Range")
        if header and server.wrong_range:  # a broken server: 206 but from byte 0
            self.send_response(206)
            self.send_header("Content-Range", f"bytes 0-{len(DATA) - 1}/{len(DATA)}")
        elif header and server.honour_range:
            start = int(header.removeprefix("bytes=").rstrip("-"))
            if start >= len(DATA):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(DATA)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(DATA) - 1}/{len(DATA)}")
        else:
            self.send_response(200)
        body = DATA[start:]
        if not server.no_length:  # without it, the body ends when the connection closes (HTTP/1.0)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.stall:  # headers, then silence
            time.sleep(server.stall)
            return
        if server.cuts_left > 0:
            server.cuts_left -= 1
            self.wfile.write(body[: CUT_AT - start])  # promise everything, send half, hang up
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def serve():
    """Start a server; ``serve(honour_range=True, cuts=0, wrong_range=False, no_length=False, stall=0)`` returns
    (url, server)."""
    servers = []

    def start(honour_range: bool = True, cuts: int = 0, wrong_range: bool = False, no_length=False, stall=0.0):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.honour_range, server.cuts_left, server.requests = honour_range, cuts, []
        server.wrong_range, server.no_length, server.stall = wrong_range, no_length, stall
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/file", server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_sha256_of_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(DATA)
    assert sha256_of(path, chunk_size=1000) == DATA_SHA


def test_fresh_download_is_verified_and_moved_into_place(serve, tmp_path: Path) -> None:
    url, _ = serve()
    dest = tmp_path / "sub" / "model.pt"
    assert download(url, dest, DATA_SHA, size=len(DATA), chunk_size=8192, progress=False) == dest
    assert dest.read_bytes() == DATA
    assert not part_path(dest).exists()


def test_resume_after_a_cut_connection(serve, tmp_path: Path) -> None:
    url, server = serve(cuts=1)
    dest = tmp_path / "model.pt"
    with pytest.raises(IncompleteDownloadError, match="resumes"):
        download(url, dest, DATA_SHA, chunk_size=8192, retries=0, progress=False)
    assert not dest.exists()
    assert part_path(dest).read_bytes() == DATA[:CUT_AT]  # the partial file is kept

    download(url, dest, DATA_SHA, chunk_size=8192, progress=False)
    assert dest.read_bytes() == DATA
    assert server.requests == [None, f"bytes={CUT_AT}-"]  # the second request asked for the rest only


def test_retries_resume_within_one_call(serve, tmp_path: Path) -> None:
    url, server = serve(cuts=2)
    dest = tmp_path / "model.pt"
    download(url, dest, DATA_SHA, chunk_size=8192, retries=2, progress=False)
    assert dest.read_bytes() == DATA
    assert server.requests == [None, f"bytes={CUT_AT}-", f"bytes={CUT_AT}-"]


def test_server_ignoring_range_restarts_from_zero(serve, tmp_path: Path) -> None:
    url, server = serve(honour_range=False)
    dest = tmp_path / "model.pt"
    part_path(dest).write_bytes(b"stale bytes that are not a prefix of the file")
    download(url, dest, DATA_SHA, chunk_size=8192, progress=False)
    assert dest.read_bytes() == DATA
    assert server.requests[0] is not None  # we asked to resume; the 200 answer made us restart


def test_mismatched_content_range_restarts(serve, tmp_path: Path) -> None:
    url, server = serve(wrong_range=True)
    dest = tmp_path / "model.pt"
    part_path(dest).write_bytes(DATA[:1000])
    download(url, dest, DATA_SHA, retries=1, progress=False)
    assert dest.read_bytes() == DATA
    assert server.requests == ["bytes=1000-", None]


def test_oversized_partial_file_416_restarts(serve, tmp_path: Path) -> None:
    url, server = serve()
    dest = tmp_path / "model.pt"
    part_path(dest).write_bytes(DATA + b"extra")
    download(url, dest, DATA_SHA, progress=False)
    assert dest.read_bytes() == DATA
    assert server.requests == [f"bytes={len(DATA) + 5}-", None]


def test_complete_partial_file_is_verified_without_network(serve, tmp_path: Path) -> None:
    url, server = serve()
    dest = tmp_path / "model.pt"
    part_path(dest).write_bytes(DATA)  # an earlier run stopped between the last byte and the check
    download(url, dest, DATA_SHA, size=len(DATA), progress=False)
    assert dest.read_bytes() == DATA and server.requests == []


def test_checksum_failure_keeps_the_existing_file(serve, tmp_path: Path) -> None:
    url, _ = serve()
    dest = tmp_path / "model.pt"
    dest.write_bytes(b"the user's previous, good file")
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as info:
        download(url, dest, wrong, progress=False)
    message = str(info.value)
    assert wrong in message and DATA_SHA in message  # expected and actual
    assert "untouched" in message and "again" in message  # what happened, what to do
    assert dest.read_bytes() == b"the user's previous, good file"
    assert not part_path(dest).exists()  # so the next run does not resume bad bytes
    assert corrupt_path(dest).read_bytes() == DATA  # kept for inspection
    assert isinstance(info.value, ValueError)


def test_size_mismatch_is_a_checksum_error(serve, tmp_path: Path) -> None:
    url, _ = serve()
    with pytest.raises(ChecksumError, match=f"{len(DATA)} bytes"):
        download(url, tmp_path / "model.pt", None, size=len(DATA) + 1, progress=False)


def test_verified_existing_file_needs_no_network(serve, tmp_path: Path) -> None:
    url, server = serve()
    dest = tmp_path / "model.pt"
    dest.write_bytes(DATA)
    assert download(url, dest, DATA_SHA.upper(), progress=False) == dest
    assert server.requests == []


def test_existing_file_with_wrong_hash_is_replaced_after_verification(serve, tmp_path: Path) -> None:
    url, _ = serve()
    dest = tmp_path / "model.pt"
    dest.write_bytes(b"an old version")
    download(url, dest, DATA_SHA, progress=False)
    assert dest.read_bytes() == DATA


def test_unpinned_download_prints_its_digest(serve, tmp_path: Path, capsys) -> None:
    url, _ = serve()
    download(url, tmp_path / "model.pt", None, progress=True)
    assert DATA_SHA in capsys.readouterr().err


def test_http_errors_are_not_retried(serve, tmp_path: Path) -> None:
    url, server = serve()
    with pytest.raises(urllib.error.HTTPError):
        download(url.replace("/file", "/missing"), tmp_path / "x.pt", None, retries=3, progress=False)
    assert len(server.requests) == 1


def test_bad_sha256_string_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="64 hexadecimal"):
        download("http://127.0.0.1:9/never", tmp_path / "x", "abc", progress=False)


def test_missing_checkpoint_error_names_file_directory_and_command(tmp_path: Path) -> None:
    with pytest.raises(MissingCheckpointError) as info:
        checkpoint_path("unet", cache_dir=tmp_path)
    message = str(info.value)
    assert "256x256_diffusion_uncond.pt" in message and str(tmp_path) in message
    assert DOWNLOAD_COMMAND in message
    assert isinstance(info.value, FileNotFoundError)

    with pytest.raises(MissingCheckpointError, match=DOWNLOAD_COMMAND):
        load_unet_state_dict(tmp_path / "256x256_diffusion_uncond.pt")


# ----------------------------------------------------------------------------- failures say what to do (issue 16)
def test_a_cut_body_without_content_length_is_resumed_not_discarded(serve, tmp_path: Path) -> None:
    url, server = serve(cuts=1, no_length=True)
    dest = tmp_path / "model.pt"
    assert download(url, dest, DATA_SHA, chunk_size=8192, progress=False) == dest
    assert dest.read_bytes() == DATA and not corrupt_path(dest).exists()
    assert server.requests == [None, f"bytes={CUT_AT}-"]  # the second request asked for the rest


def test_a_wrong_body_without_content_length_is_judged_once_the_server_says_it_is_complete(serve, tmp_path) -> None:
    url, server = serve(no_length=True)
    dest = tmp_path / "model.pt"
    with pytest.raises(ChecksumError):
        download(url, dest, "0" * 64, progress=False)
    assert corrupt_path(dest).read_bytes() == DATA
    assert server.requests == [None, f"bytes={len(DATA)}-"]  # 416 for bytes past the end: the file was complete


def test_a_stalled_server_fails_after_one_timeout(serve, tmp_path: Path) -> None:
    url, server = serve(stall=3.0)
    began = time.monotonic()
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        download(url, tmp_path / "model.pt", DATA_SHA, timeout=0.5, retries=3, progress=False)
    assert time.monotonic() - began < 1.4 and len(server.requests) == 1  # not 4 x the timeout


def test_a_later_verified_download_removes_the_bad_bytes_of_an_earlier_one(serve, tmp_path: Path) -> None:
    url, _ = serve()
    dest = tmp_path / "model.pt"
    corrupt_path(dest).write_bytes(b"bad bytes kept from an earlier attempt")
    download(url, dest, DATA_SHA, progress=False)
    assert dest.read_bytes() == DATA and not corrupt_path(dest).exists()


def _download_cli(monkeypatch, url: str, cache) -> int:
    from bdlib.__main__ import main
    from bdlib.worlds.paper import checkpoints as paper

    fake = paper.PaperFile("256x256_diffusion_uncond.pt", url, DATA_SHA, len(DATA), "test")
    monkeypatch.setitem(paper.PAPER_FILES, "unet", fake)
    return main(["download", "paper", "--only", "unet", "--cache-dir", str(cache)])


def test_the_download_command_says_what_to_do_for_each_failure(serve, tmp_path: Path, monkeypatch, capsys) -> None:
    url, _ = serve()
    assert _download_cli(monkeypatch, url.replace("/file", "/moved"), tmp_path / "cache") == 2
    err = capsys.readouterr().err
    assert "answered 404" in err and "will not help" in err and "resume" not in err
    (tmp_path / "plain").write_text("a file, not a folder")
    assert _download_cli(monkeypatch, url, tmp_path / "plain" / "cache") == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and "--cache-dir" in err and "resume" not in err and "Traceback" not in err
    assert _download_cli(monkeypatch, url, tmp_path / "cache") == 0
    assert (tmp_path / "cache" / "256x256_diffusion_uncond.pt").read_bytes() == DATA
