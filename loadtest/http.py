"""The load generator's REST client: one request prepared once as bytes, sent on a keep-alive connection.

Each ``HttpConnection`` is one persistent gevent TCP socket (Nagle off). It sends the prepared bytes
and parses the reply with httptools (the llhttp binding uvicorn uses); the body is counted, not kept.
A connection the server closed (``Connection: close``, or gone when the next request is sent on it) is
opened again; any failure closes it, so a late reply is never read as the next one's.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import gevent
import httptools
from gevent import socket as gsocket

RECV_BYTES = 65_536
SKIPPED_HEADERS = {"host", "content-length", "connection"}  # written by ``prepare`` itself


@dataclass(frozen=True)
class PreparedRequest:
    """Where to send, and the whole request as it goes on the wire."""

    host: str
    port: int
    data: bytes

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port


def prepare(address: str, path: str, headers: dict[str, str], body: bytes) -> PreparedRequest:
    """``POST path`` to ``address`` (``http://host:port``) with ``headers`` and ``body``, as bytes."""
    url = urlsplit(address)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    lines = [f"POST {path or '/'} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in SKIPPED_HEADERS]
    lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return PreparedRequest(host, port, head + body)


def error_kind(err: BaseException) -> str:
    """The kind of a request that got no HTTP answer: ``timeout`` or ``connection <reason>``."""
    if isinstance(err, TimeoutError | socket.timeout | gevent.Timeout):
        return "timeout"
    return f"connection {type(err).__name__}"


class ServerClosed(ConnectionError):
    """The server closed the connection before its reply was complete."""


class HttpConnection:
    """One keep-alive connection sending ``request`` again and again, one request at a time."""

    def __init__(self, request: PreparedRequest, timeout_s: float) -> None:
        self.request, self.timeout_s = request, timeout_s
        self.sock: gsocket.socket | None = None
        self.received = 0  # bytes of the last reply
        self._complete = self._keep_alive = False
        self._parser: httptools.HttpResponseParser | None = None

    def on_message_complete(self) -> None:  # httptools' callback, while the reply's state is still there
        self._complete, self._keep_alive = True, self._parser.should_keep_alive()

    def exchange(self) -> str | None:
        """Send the request, read its whole reply: ``None`` for HTTP 200, else the kind of failure."""
        reused = self.sock is not None
        try:
            try:
                status = self._exchange()
            except ConnectionError:  # reset, broken pipe, or ServerClosed
                if not (reused and self.received == 0):
                    raise
                self.close()  # a kept-alive connection the server had closed: once more on a new one
                status = self._exchange()
        except (OSError, httptools.HttpParserError) as err:
            self.close()
            return error_kind(err)
        return None if status == 200 else f"HTTP {status}"

    def _exchange(self) -> int:
        if self.sock is None:
            self._connect()
        sock, parser = self.sock, self._parser
        self._complete, self.received = False, 0
        started = time.monotonic()
        data = self.request.data
        while data:  # send, not sendall: gevent's sendall asks the kernel for the buffer size every call
            data = data[sock.send(data) :]
        reads = 0
        while not self._complete:
            if reads:  # a reply in several reads: the timeout is for the whole request
                sock.settimeout(max(started + self.timeout_s - time.monotonic(), 1e-6))
            data = sock.recv(RECV_BYTES)
            if not data:
                raise ServerClosed("server closed the connection")
            self.received += len(data)
            reads += 1
            parser.feed_data(data)
        status = parser.get_status_code()
        if reads > 1:
            sock.settimeout(self.timeout_s)
        if not self._keep_alive:
            self.close()
        return status

    def _connect(self) -> None:
        self.sock = gsocket.create_connection(self.request.address, timeout=self.timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._parser = httptools.HttpResponseParser(self)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self._parser = None, None
