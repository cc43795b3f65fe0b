"""Upload limits, over real HTTP against a real ``ragserve api`` process.

A hostile client streams 300 MB without a Content-Length: the API must answer 413 once the body
passes ``RAGSERVE_MAX_UPLOAD_MB`` and its memory must stay flat, because the body is counted and
spooled as it streams in, never held whole.
"""

from __future__ import annotations

import json
import os
import select
import socket
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
import pytest

from support.config import service_env

if TYPE_CHECKING:
    from support import Proc

MB = 1024 * 1024
LIMIT_MB = 20
HOSTILE_MB = 300
BOUNDARY = "ragserve-test-boundary"


@pytest.fixture
def api(
    new_database_url: Callable[[], str], start_service: Callable[..., tuple[str, Proc]]
) -> tuple[str, Proc]:
    env = service_env(new_database_url(), max_upload_mb=LIMIT_MB, max_files_per_upload=5)
    return start_service(env, command="api")


def rss_bytes(pid: int) -> int:
    for line in open(f"/proc/{pid}/status").read().splitlines():  # noqa: SIM115
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def multipart_stream(filename: str, size: int, chunk: int = MB) -> Iterator[bytes]:
    """A multipart body of ``size`` random bytes, made one chunk at a time."""
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; '
        f'filename="{filename}"\r\nContent-Type: text/plain\r\n\r\n'
    ).encode()
    sent = 0
    while sent < size:
        piece = os.urandom(min(chunk, size - sent))
        sent += len(piece)
        yield piece
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def send_raw(
    url: str, headers: dict[str, str], body: Iterator[bytes], on_chunk: Callable[[], None]
) -> bytes:
    """Send a request by hand (chunked when no Content-Length) and return the raw response.

    Stops sending as soon as the server answers, the way a client should after an early 413.
    """
    parts = urlsplit(url)
    request_head = f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
    chunked = "Content-Length" not in headers
    if chunked:
        headers = {**headers, "Transfer-Encoding": "chunked"}
    request_head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(request_head.encode())
        response = b""
        try:
            for piece in body:
                if select.select([sock], [], [], 0)[0]:
                    break  # the server has answered early
                sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece)
                on_chunk()
            else:
                if chunked:
                    sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            while b"\r\n\r\n" not in response or not _complete(response):
                data = sock.recv(65536)
                if not data:
                    break
                response += data
        except ConnectionResetError:
            pass
        return response


def _complete(response: bytes) -> bool:
    head, _, body = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def status_and_body(response: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


def job_count(url: str) -> int:
    return len(httpx.get(f"{url}/v1/jobs", params={"limit": 1000}, timeout=10).json()["jobs"])


def test_streamed_300mb_upload_is_cut_with_413_and_memory_stays_flat(api: tuple[str, Proc]) -> None:
    url, proc = api
    pid = proc.popen.pid
    before = rss_bytes(pid)
    peak = before

    def sample() -> None:
        nonlocal peak
        peak = max(peak, rss_bytes(pid))

    started = time.monotonic()
    response = send_raw(
        f"{url}/v1/collections/kb/documents",
        {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        multipart_stream("big.txt", HOSTILE_MB * MB),
        sample,
    )
    sample()
    status, body = status_and_body(response)
    assert status == 413, response[:500]
    assert "RAGSERVE_MAX_UPLOAD_MB" in json.dumps(body)
    growth = peak - before
    print(
        f"RSS before {before / MB:.1f} MB, peak {peak / MB:.1f} MB, growth {growth / MB:.1f} MB, "
        f"{time.monotonic() - started:.1f} s"
    )
    assert growth < 100 * MB
    assert job_count(url) == 0


def test_announced_too_large_body_gets_413_before_it_is_sent(api: tuple[str, Proc]) -> None:
    url, _ = api
    size = (LIMIT_MB + 1) * MB
    started = time.monotonic()
    response = send_raw(
        f"{url}/v1/collections/kb/documents",
        {
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            "Content-Length": str(size),
        },
        iter([b"--" + BOUNDARY.encode()]),  # a prefix only: the answer must not wait for more
        lambda: None,
    )
    status, body = status_and_body(response)
    assert status == 413
    assert "RAGSERVE_MAX_UPLOAD_MB" in json.dumps(body)
    assert time.monotonic() - started < 10
    assert job_count(url) == 0


@pytest.mark.parametrize("filename", ["setup.exe", "archive.zip", "noextension", "notes.doc"])
def test_unsupported_file_type_gets_415_naming_it_and_no_job(
    api: tuple[str, Proc], filename: str
) -> None:
    url, _ = api
    files = [("files", ("fine.txt", b"hello")), ("files", (filename, b"MZ\x90\x00binary"))]
    response = httpx.post(f"{url}/v1/collections/kb/documents", files=files, timeout=10)
    assert response.status_code == 415, response.text
    assert filename in response.json()["error"]["message"]
    assert job_count(url) == 0


def test_too_many_files_gets_413_naming_the_limit(api: tuple[str, Proc]) -> None:
    url, _ = api
    files = [("files", (f"f{i}.txt", b"hello")) for i in range(6)]
    response = httpx.post(f"{url}/v1/collections/kb/documents", files=files, timeout=10)
    assert response.status_code == 413, response.text
    assert "RAGSERVE_MAX_FILES_PER_UPLOAD" in response.json()["error"]["message"]
    documents = [{"source": f"d{i}", "text": "hello"} for i in range(6)]
    response = httpx.post(
        f"{url}/v1/collections/kb/documents", json={"documents": documents}, timeout=10
    )
    assert response.status_code == 413, response.text
    assert "RAGSERVE_MAX_FILES_PER_UPLOAD" in response.json()["error"]["message"]
    assert job_count(url) == 0


def test_uploads_within_the_limits_are_accepted(api: tuple[str, Proc]) -> None:
    url, _ = api
    files = [("files", (f"f{i}.txt", f"text {i}".encode())) for i in range(4)]
    files.append(("files", ("big.md", b"# title\n" + b"word " * (2 * MB))))
    response = httpx.post(f"{url}/v1/collections/kb/documents", files=files, timeout=30)
    assert response.status_code == 202, response.text
    response = httpx.post(
        f"{url}/v1/collections/kb/documents",
        json={"documents": [{"source": "a", "text": "some text"}]},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    assert job_count(url) == 2
