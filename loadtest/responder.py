"""A trivial HTTP endpoint for the harness calibration: a fixed reply to every request, nothing else.

Run as ``python -m serveoff.loadtest.responder PORT``; it binds 127.0.0.1 only, parses requests with
httptools and imports nothing of the load generator (locust would patch this process with gevent).
"""

from __future__ import annotations

import asyncio
import socket
import sys

import httptools

REPLY = b'{"outputs": [[0.0]]}'
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(REPLY)).encode() + b"\r\n\r\n" + REPLY)  # fmt: skip


class _Reply(asyncio.Protocol):
    """One connection: the fixed reply to every complete request, in order."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_complete(self) -> None:
        self.transport.write(RESPONSE)


def serve(port: int) -> None:
    """Answer every request on 127.0.0.1:``port`` with the fixed reply, until killed."""

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Reply, "127.0.0.1", port, backlog=1024)
        await server.serve_forever()

    asyncio.run(main())


if __name__ == "__main__":
    serve(int(sys.argv[1]))
