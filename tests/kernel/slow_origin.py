"""An origin that takes its time: an HTTP server that sleeps before it answers, for nginx's
``proxy_pass`` in the proxy tests (``python3 slow_origin.py ADDR PORT SLEEP_MS``). Run in the
server namespace on its loopback, it stands for the application behind a reverse proxy: what a
capture at the client sees as server time, not as round trips (issue 11, DESIGN.md §6).
"""

from __future__ import annotations

import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY = b"slow ok"


class SlowHandler(BaseHTTPRequestHandler):
    sleep_s = 0.0

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        time.sleep(self.sleep_s)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        """Reads the whole body first, as an application does (nginx passes it on whole)."""
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.do_GET()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's name
        sys.stderr.write(f"{time.monotonic():.6f} {format % args}\n")


if __name__ == "__main__":
    address, port, sleep_ms = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    SlowHandler.sleep_s = sleep_ms / 1000
    ThreadingHTTPServer((address, port), SlowHandler).serve_forever()
