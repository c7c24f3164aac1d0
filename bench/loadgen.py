"""A lean HTTP/1.1 keep-alive client for the benchmarks' load generators.

Each simulated labeler owns one TCP connection to the server and sends real HTTP requests
(request line, headers, cookies it was given, JSON body) and reads whole responses
(status, headers, a Content-Length or chunked body), one at a time, as a browser's
keep-alive connection does.
It exists because httpx spends ~10 ms of CPU per request on a busy 2-core machine, CPU the
server under test then cannot use; this client spends a small fraction of that, so the
benchmark measures the server rather than its own load generator.
"""

import asyncio
import json
from typing import Any
from urllib.parse import urlencode, urlsplit


class HTTPError(Exception):
    """A failed request: a non-2xx status (with `status`) or a broken connection."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class Response:
    """Status, headers (lower-case names) and body of one response."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)

    def raise_for_status(self) -> None:
        if not 200 <= self.status < 300:
            raise HTTPError(f"HTTP {self.status}: {self.body[:200]!r}", self.status)


class Connection:
    """One keep-alive connection; requests on it run one after another."""

    def __init__(self, base: str, headers: dict[str, str] | None = None) -> None:
        url = urlsplit(base)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.headers = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.cookies: dict[str, str] = {}  # kept like a browser's (the session cookie)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, *, params: dict[str, str] | None = None,
                      json_body: Any = None, on_headers: Any = None) -> Response:
        """Send one request and read its whole response; `on_headers()` runs when the
        status line and headers have arrived (time to first byte)."""
        if params:
            path = f"{path}?{urlencode(params)}"
        body = b"" if json_body is None else json.dumps(json_body).encode()
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self.headers}"
                f"Content-Length: {len(body)}\r\n")
        if json_body is not None:
            head += "Content-Type: application/json\r\n"
        if self.cookies:
            head += "Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items()) + "\r\n"
        for attempt in (0, 1):
            fresh = self.writer is None
            if fresh:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            assert self.reader is not None and self.writer is not None
            try:
                self.writer.write(head.encode() + b"\r\n" + body)
                return await self._read(on_headers)
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                self.close()
                # A keep-alive connection the server closed while idle: retry once on a new
                # one. A fresh connection that fails is a real error.
                if fresh or attempt:
                    raise HTTPError(f"{type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")

    async def _read(self, on_headers: Any) -> Response:
        assert self.reader is not None
        raw = await self.reader.readuntil(b"\r\n\r\n")
        if on_headers is not None:
            on_headers()
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                name, value = name.strip().lower(), value.strip()
                headers[name] = value
                if name == "set-cookie":
                    key, _, val = value.split(";", 1)[0].partition("=")
                    self.cookies[key.strip()] = val.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = await self._chunked()
        else:
            body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return Response(status, headers, body)

    async def _chunked(self) -> bytes:
        assert self.reader is not None
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def run(main: Any) -> Any:
    """asyncio.run on uvloop when it is installed (it is, with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
