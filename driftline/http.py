"""The metrics port: `/metrics` (Prometheus), `/` (dashboard page), `/api/stats`, `/healthz`.

A small threaded HTTP server, so that one port serves both Prometheus and people; every byte of
the page is served from the package (no CDN).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from driftline.metrics import CONTENT_TYPE_LATEST, Metrics

log = logging.getLogger("driftline.http")


def _static(name: str) -> bytes:
    return (resources.files("driftline") / "static" / name).read_bytes()


class StatusServer:
    """Serves the metrics and dashboard on `host:port` from a daemon thread."""

    def __init__(
        self, host: str, port: int, metrics: Metrics, status: Callable[[], dict[str, Any]]
    ) -> None:
        page = _static("index.html")

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, metrics.render())
                elif path in ("/", "/index.html"):
                    self._send(200, "text/html; charset=utf-8", page)
                elif path == "/api/stats":
                    body = json.dumps(status()).encode()
                    self._send(200, "application/json", body)
                elif path == "/healthz":
                    self._send(200, "text/plain", b"ok\n")
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _send(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug(format, *args)  # scrapes every few seconds would flood the log

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            from driftline.errors import ConfigError

            raise ConfigError(f"metrics.port: cannot listen on {host}:{port}: {exc}") from None
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever, so only if it runs
            self._server.shutdown()
        self._server.server_close()
