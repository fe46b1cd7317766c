"""The SOAP calls' HTTP/1.1 exchange (vsphere/exchange.py) against scripted sockets.

Every reply is handed over in small pieces, so the reader's buffer boundaries fall inside
the status line, the headers, the chunk sizes and the bodies.
"""

from __future__ import annotations

from http.client import HTTPException, IncompleteRead, LineTooLong, RemoteDisconnected

import pytest
from truenas_vmware_coord.vsphere import exchange


class ScriptedSocket:
    """Answers whatever is sent with ``reply``, ``piece`` bytes per recv, then end of stream."""

    def __init__(self, reply: bytes, piece: int = 7) -> None:
        self._reply = reply
        self._piece = piece
        self.sent: list[bytes] = []

    def sendall(self, data: bytes, /) -> None:
        self.sent.append(data)

    def recv(self, size: int, /) -> bytes:
        out, self._reply = self._reply[:min(size, self._piece)], self._reply[min(size, self._piece):]
        return out


BODY = b'<?xml version="1.0"?><soapenv:Envelope>' + b"x" * 300 + b"</soapenv:Envelope>"


def sized(body: bytes = BODY, *headers: str, status: str = "200 OK", version: str = "HTTP/1.1") -> bytes:
    head = [f"{version} {status}", "Content-Type: text/xml; charset=utf-8", *headers,
            f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def chunked(body: bytes, size: int, trailers: str = "") -> bytes:
    parts = [f"{len(body[i:i + size]):x};ext=1\r\n".encode() + body[i:i + size] + b"\r\n"
             for i in range(0, len(body), size)]
    return (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"".join(parts) + b"0\r\n"
            + trailers.encode() + b"\r\n")


@pytest.mark.parametrize("piece", [1, 7, 65536])
def test_a_sized_reply_is_read_whole_and_the_connection_kept(piece: int) -> None:
    raw = sized(BODY, "Set-Cookie: vmware_soap_session=abc")
    reply = exchange.exchange(ScriptedSocket(raw, piece), b"req")
    assert (reply.status, reply.reason, reply.body, reply.keep_alive) == (200, "OK", BODY, True)
    assert reply.headers["set-cookie"] == "vmware_soap_session=abc"
    assert reply.headers["content-type"] == "text/xml; charset=utf-8"


def test_what_follows_the_body_is_left_unread() -> None:
    # The next reply on a kept connection starts after exactly Content-Length bytes.
    reply = exchange.exchange(ScriptedSocket(sized(b"abc") + b"HTTP/1.1 200 OK", piece=65536), b"req")
    assert reply.body == b"abc"


@pytest.mark.parametrize("size", [1, 5, 4096])
def test_a_chunked_reply_is_joined_with_extensions_and_trailers_skipped(size: int) -> None:
    sock = ScriptedSocket(chunked(BODY, size, trailers="X-Trailer: 1\r\nX-Other: 2\r\n"), piece=3)
    reply = exchange.exchange(sock, b"req")
    assert reply.body == BODY and reply.keep_alive


def test_the_request_goes_out_in_one_write() -> None:
    sock = ScriptedSocket(sized())
    headers = {"Cookie": "c", "SOAPAction": '"urn:vim25/8.0"'}
    head = exchange.request_head("/sdk", "vc.example:8443", headers, 4)
    exchange.exchange(sock, head + b"body")
    assert sock.sent == [b'POST /sdk HTTP/1.1\r\nHost: vc.example:8443\r\nCookie: c\r\n'
                         b'SOAPAction: "urn:vim25/8.0"\r\nContent-Length: 4\r\n\r\nbody']


@pytest.mark.parametrize(("raw", "keep"), [
    (sized(BODY, "Connection: close"), False),
    (sized(BODY, version="HTTP/1.0"), False),
    (sized(BODY, "Connection: Keep-Alive", version="HTTP/1.0"), True),
    (b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n\r\n" + BODY, False),   # sized by the end of the stream
])
def test_whether_the_connection_can_carry_the_next_request(raw: bytes, keep: bool) -> None:
    reply = exchange.exchange(ScriptedSocket(raw), b"req")
    assert reply.body == BODY and reply.keep_alive is keep


def test_interim_replies_are_skipped_and_repeated_headers_joined() -> None:
    raw = (b"HTTP/1.1 100 Continue\r\n\r\n"
           + sized(b"<x/>", "Set-Cookie: a=1", "Set-Cookie: b=2", "X-Folded: one", " two",
                   status="500 Internal Server Error"))
    reply = exchange.exchange(ScriptedSocket(raw), b"req")
    assert (reply.status, reply.reason, reply.body) == (500, "Internal Server Error", b"<x/>")
    assert reply.headers["set-cookie"] == "a=1, b=2"
    assert reply.headers["x-folded"] == "one two"


def test_no_content_has_no_body() -> None:
    reply = exchange.exchange(ScriptedSocket(b"HTTP/1.1 204 No Content\r\n\r\n"), b"req")
    assert (reply.status, reply.body, reply.keep_alive) == (204, b"", True)


@pytest.mark.parametrize(("raw", "error"), [
    (b"", RemoteDisconnected),                                   # closed before any reply
    (sized(BODY)[:-10], IncompleteRead),                         # a short body
    (chunked(BODY, 64)[:-40], IncompleteRead),                   # the stream ends inside a chunk
    (b"HTTP/1.1 200 OK\r\nX: " + b"y" * (exchange.MAX_HEAD + 10), LineTooLong),
    (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", HTTPException),             # not HTTP at all
    (b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", HTTPException),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", HTTPException),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n", HTTPException),
])
def test_a_reply_that_is_not_well_formed_raises_as_http_client_does(raw: bytes, error: type) -> None:
    with pytest.raises(error):
        exchange.exchange(ScriptedSocket(raw), b"req")
