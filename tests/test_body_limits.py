"""Request bodies are refused where the bytes arrive: before authentication, parsing or
reading them whole, on `Content-Length` and on a chunked stream, with per-route maximums."""

import os
import select
import socket
from urllib.parse import urlsplit

import pytest

from app.auth import service as auth
from app.auth.models import Role
from tests.e2e.conftest import serve
from tests.factories import make_user

MB = 2**20


def test_submit_over_the_limit_is_413_before_authentication(client):
    resp = client.post("/api/v1/tasks/1/submit", content=b'{"text": "' + b"x" * (2 * MB) + b'"}',
                       headers={"content-type": "application/json"})
    assert resp.status_code == 413


def test_a_chunked_body_is_refused_once_past_the_limit_with_a_sentence(client):
    def chunks():  # no Content-Length: counted as it streams in
        yield b'{"text": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}'

    resp = client.post("/api/v1/tasks/1/submit", content=chunks(),
                       headers={"content-type": "application/json"})
    assert resp.status_code == 413
    assert "larger than 1 MB" in resp.json()["detail"]


def test_round_body_over_the_limit_is_413_before_authentication(client):
    resp = client.post("/api/v1/rounds", content=b"[" + b"0," * MB + b"0]",
                       headers={"content-type": "application/json"})
    assert resp.status_code == 413


def test_a_body_within_the_limit_is_still_checked_as_before(client):
    resp = client.post("/api/v1/tasks/1/submit", json={"text": "x" * 1000})
    assert resp.status_code == 401


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def _server_pid() -> int:
    """The uvicorn child of this process (the `serve` helper does not expose it)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = f.read()
        except OSError:
            continue
        if ppid == os.getpid() and b"uvicorn" in command:
            return int(pid)
    raise AssertionError("the test server is not a child of this process")


def _post_raw(base: str, path: str, total: int, headers: dict[str, str], *,
              chunked: bool) -> tuple[int, int]:
    """POST `total` bytes (declared, or chunked); stops sending once the server answers.
    Returns (status, bytes sent)."""
    url = urlsplit(base)
    sock = socket.create_connection((url.hostname, url.port), timeout=5)
    head = [f"POST {path} HTTP/1.1", f"Host: {url.netloc}", "Content-Type: application/json",
            *(f"{k}: {v}" for k, v in headers.items()),
            "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    block, sent = b"1" * MB, 0  # `total` is a whole number of MB
    while sent < total and not select.select([sock], [], [], 0)[0]:
        try:
            sock.sendall(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
        except OSError:  # the server answered and stopped reading, or closed
            break
        sent += len(block)
    if chunked and sent >= total:
        sock.sendall(b"0\r\n\r\n")  # the end of the body
    sock.settimeout(60)
    answer = b""
    while b"\r\n" not in answer:
        answer += sock.recv(65536)
    sock.close()
    return int(answer.split()[1]), sent


@pytest.mark.slow
def test_300_mb_bodies_leave_the_web_process_as_it_was(committed_db):
    staff = make_user(committed_db, Role.researcher)
    _, token = auth.create_token(db=committed_db, user=staff, name="t")
    committed_db.commit()
    with serve() as base:
        pid = _server_pid()
        before = _rss_kb(pid)
        bearer = {"Authorization": f"Bearer {token}"}
        # Over the upload maximum, declared: refused before a byte is read.
        declared = _post_raw(base, "/api/v1/prompts/import", 300 * MB, bearer, chunked=False)
        # Chunked, so nothing is declared: refused once past the route's maximum (1 MB for
        # a submit), unauthenticated, not read to the end and then parsed.
        submit = _post_raw(base, "/api/v1/tasks/1/submit", 100 * MB, {}, chunked=True)
        rounds = _post_raw(base, "/api/v1/rounds", 100 * MB, bearer, chunked=True)
        grown = (_rss_kb(pid) - before) / 1024
        print(f"web RSS {before / 1024:.0f} MB before, grew {grown:.1f} MB; (status, bytes "
              f"sent): {declared}, {submit}, {rounds}")
        assert declared[0] == 413
        assert submit[0] == 413 and submit[1] < 20 * MB
        assert rounds[0] == 413 and rounds[1] < 20 * MB
        assert grown < 30, f"the web process grew by {grown:.0f} MB"
