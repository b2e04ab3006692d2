"""A tiny HTTP/1.1 responder for the load generator's own tests: a fixed reply on 127.0.0.1.

Run as ``python tests/http_responder.py STATUS DELAY_S CLOSE``: every request on a keep-alive connection
is answered ``STATUS`` after ``DELAY_S``; ``CLOSE`` 1 closes the connection after each reply without
saying so (as a server whose idle connections time out does). It prints its port, then serves until
killed. Plain threads and sockets: it stands in for a real server, which cannot be as predictable.
"""

from __future__ import annotations

import socket
import socketserver
import sys
import time

REASONS = {200: "OK", 503: "Service Unavailable"}


class Handler(socketserver.BaseRequestHandler):
    status, delay_s, close = 200, 0.0, False

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = b""
        while True:
            while b"\r\n\r\n" not in buffer:
                data = sock.recv(65_536)
                if not data:
                    return
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            while len(buffer) < length:
                buffer += sock.recv(65_536)
            buffer = buffer[length:]
            time.sleep(self.delay_s)
            body = b'{"ok": true}'
            reason = REASONS.get(self.status, "Status")
            sock.sendall(
                f"HTTP/1.1 {self.status} {reason}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
            )
            if self.close:
                return


def main() -> None:
    Handler.status, Handler.delay_s, Handler.close = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3] == "1"
    socketserver.ThreadingTCPServer.daemon_threads = True
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler) as server:
        print(server.server_address[1], flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
