"""One HTTP/1.1 request and its reply on an open socket, for the SOAP calls ``wire`` makes.

``http.client`` cost ~150 µs of CPU per SOAP call (the request sent in two writes, a
buffered reader over the socket, the ``email`` package parsing the reply's headers): with a
create and a remove per VM, 0.3 ms of CPU per VM, a sixth of the engine's (bench/README.md).
A SOAP reply needs less: a status line, a few headers, a body sized by ``Content-Length``
or sent in chunks. The request goes out in one write; the reply is read in blocks as large
as the socket gives.

What is not a well-formed reply raises ``http.client.HTTPException`` (the end of the stream
before a reply, ``RemoteDisconnected``; a short body, ``IncompleteRead``); a socket error or
timeout raises ``OSError``, both as ``http.client`` raises them.
"""

from __future__ import annotations

import dataclasses
from http.client import HTTPException, IncompleteRead, LineTooLong, RemoteDisconnected
from typing import Protocol

MAX_HEAD = 65536         # status line and headers together, as http.client bounds them
BLOCK = 65536            # one read asks for this much (a TLS record is at most 16 KiB)
_COMPACT = 1 << 20       # consumed bytes kept in the buffer before it is shifted


class Socket(Protocol):
    def sendall(self, data: bytes, /) -> None: ...

    def recv(self, size: int, /) -> bytes: ...


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    reason: str
    headers: dict[str, str]   # lower-case names; repeated headers joined with ", "
    body: bytes
    keep_alive: bool          # the connection may carry the next request


def request_head(path: str, host: str, headers: dict[str, str], length: int) -> bytes:
    """The start of a POST whose body is ``length`` bytes."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers.items()),
             f"Content-Length: {length}", "", ""]
    return "\r\n".join(lines).encode("latin-1")


def exchange(sock: Socket, request: bytes) -> Reply:
    """Send a whole request; read its reply (interim 1xx replies skipped)."""
    sock.sendall(request)
    reader = _Reader(sock)
    while True:
        version, status, reason, headers = reader.head()
        if not 100 <= status < 200:
            break
    connection = headers.get("connection", "").lower()
    keep_alive = "close" not in connection and (version != "HTTP/1.0" or "keep-alive" in connection)
    if status in (204, 304):
        body = b""
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        body = reader.chunked()
    elif "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise HTTPException(f"bad Content-Length {headers['content-length']!r}") from None
        body = reader.take(length)
    else:   # sized by the end of the stream: nothing can follow it
        body, keep_alive = reader.rest(), False
    return Reply(status, reason, headers, body, keep_alive)


class _Reader:
    """A reply read from a socket in large blocks."""

    def __init__(self, sock: Socket) -> None:
        self._sock = sock
        self._buf = bytearray()
        self._pos = 0
        self._started = False

    def _fill(self) -> None:
        if self._pos >= _COMPACT:
            del self._buf[:self._pos]
            self._pos = 0
        data = self._sock.recv(BLOCK)
        if not data:
            if not self._started:
                raise RemoteDisconnected("the server closed the connection without a reply")
            raise IncompleteRead(bytes(self._buf[self._pos:]))
        self._started = True
        self._buf += data

    def until(self, marker: bytes, limit: int) -> bytes:
        """The bytes before ``marker`` (which is consumed), at most ``limit`` of them."""
        while (end := self._buf.find(marker, self._pos)) < 0:
            if len(self._buf) - self._pos > limit:
                raise LineTooLong("reply head")
            self._fill()
        if end - self._pos > limit:
            raise LineTooLong("reply head")
        out = bytes(self._buf[self._pos:end])
        self._pos = end + len(marker)
        return out

    def take(self, size: int) -> bytes:
        while len(self._buf) - self._pos < size:
            self._fill()
        out = bytes(self._buf[self._pos:self._pos + size])
        self._pos += size
        return out

    def rest(self) -> bytes:
        while data := self._sock.recv(BLOCK):
            self._buf += data
        return bytes(self._buf[self._pos:])

    def head(self) -> tuple[str, int, str, dict[str, str]]:
        """(version, status, reason, headers) of the next reply."""
        lines = self.until(b"\r\n\r\n", MAX_HEAD).decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.strip().partition(" ")
        if not version.startswith("HTTP/") or not code.isdigit() or len(code) != 3:
            raise HTTPException(f"not an HTTP reply: {lines[0][:80]!r}")
        headers: dict[str, str] = {}
        name = ""
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and name:   # an obsolete folded continuation
                headers[name] += " " + line.strip()
                continue
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return version, int(code), reason.strip(), headers

    def chunked(self) -> bytes:
        parts = []
        while True:
            size_line = self.until(b"\r\n", MAX_HEAD).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise HTTPException(f"bad chunk size {size_line[:20]!r}") from None
            if size == 0:
                break
            parts.append(self.take(size))
            if self.take(2) != b"\r\n":
                raise HTTPException("a chunk does not end where its size says")
        while self.until(b"\r\n", MAX_HEAD):   # trailers, up to the empty line
            pass
        return b"".join(parts)
