"""The metrics port: `/metrics` (Prometheus), `/` (dashboard page), `/api/stats`, `/api/history`,
`/healthz` (alive), `/readyz` (consuming).

A small threaded HTTP server, so that one port serves both Prometheus and people; every byte of
the page (HTML, CSS, JavaScript, icon) is served from the package (no CDN). A sampler thread
records the status once a second in a ring buffer, so that the page's charts show the last
minutes as soon as it opens.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import math
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from driftline.metrics import CONTENT_TYPE_LATEST, Metrics

log = logging.getLogger("driftline.http")

IDLE_TIMEOUT = 10.0  # seconds a connection may wait to send its request (or the rest of it)
MAX_CONNECTIONS = 64  # connections served at once; each holds a thread and a descriptor
HISTORY_INTERVAL = 1.0  # seconds between two samples of the status
HISTORY_SECONDS = 900.0  # how far back /api/history goes
_GZIP_MIN = 2048  # smaller bodies are sent as they are

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
}


def _static_files() -> dict[str, tuple[str, bytes]]:
    """Every file of the package's static folder: name -> (content type, bytes)."""
    files = {}
    for entry in (resources.files("driftline") / "static").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        if entry.is_file() and suffix in _CONTENT_TYPES:
            files[entry.name] = (_CONTENT_TYPES[suffix], entry.read_bytes())
    return files


def _plain(value: Any) -> Any:
    """`value` made strict JSON and compact: floats rounded to 6 decimals, NaN and infinities
    as null (a browser's JSON.parse rejects NaN)."""
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class History:
    """The status sampled every `interval` seconds over the last `seconds`, by a daemon thread.

    Each sample is the status dict (compacted, kept as JSON bytes) with `t`, the Unix time it
    was taken. An empty status (the service not started yet) is not recorded; a status call
    that fails is skipped.
    """

    def __init__(
        self,
        status: Callable[[], dict[str, Any]],
        interval: float = HISTORY_INTERVAL,
        seconds: float = HISTORY_SECONDS,
    ) -> None:
        self.interval = interval
        self.seconds = seconds
        self._status = status
        # Each sample as (t, its compact JSON): a full buffer of the status dicts themselves
        # (some 9 kB each with the default model set) added 8.5 MiB of RSS over the first
        # `seconds` of a run; as JSON bytes (some 2.5 kB), 1.4 MiB.
        self._samples: deque[tuple[float, bytes]] = deque(
            maxlen=max(1, round(seconds / interval)))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="driftline-history", daemon=True)

    def sample(self) -> None:
        """Record the status now."""
        try:
            status = self._status()
        except Exception:  # e.g. the pipeline swapped by a restore mid-call: next second
            log.debug("status sample failed", exc_info=True)
            return
        if not status:
            return
        entry = _plain(status)
        t = entry["t"] = round(time.time(), 3)
        data = json.dumps(entry, separators=(",", ":")).encode()
        with self._lock:
            self._samples.append((t, data))

    def since(self, t: float | None = None) -> list[dict[str, Any]]:
        """The samples taken after Unix time `t` (all of them when `t` is None), oldest first."""
        with self._lock:
            samples = list(self._samples)
        if t is not None:
            i = len(samples)
            while i > 0 and samples[i - 1][0] > t:
                i -= 1
            samples = samples[i:]
        return [json.loads(data) for _, data in samples]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            self.sample()
            due += self.interval
            delay = due - time.monotonic()
            if delay < 0:  # fell behind (a slow status call): no burst to catch up
                due, delay = time.monotonic(), 0.0
            self._stop.wait(delay)


class _BoundedServer(ThreadingHTTPServer):
    """A threaded server that holds at most `max_connections` connections.

    A connection that has not sent its whole request times out after `idle_timeout`
    seconds of silence (the handler's socket timeout). When all slots are taken, a new
    connection takes the slot of the connection that has waited longest without a whole request
    (that one is shut down); if every slot is busy serving a request, the new connection is
    closed at once. So idle or slow clients cannot exhaust threads and descriptors, nor keep a
    scrape or a health check out.
    """

    daemon_threads = True
    request_queue_size = 128  # the listen backlog: a burst of connects is not refused

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 max_connections: int) -> None:
        self.max_connections = max_connections
        self._lock = threading.Lock()
        self._open: dict[Any, float] = {}  # socket -> when it connected, while open
        self._waiting: set[Any] = set()  # sockets that have not sent a whole request yet
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            if len(self._open) >= self.max_connections:
                idle = min(self._waiting, key=self._open.__getitem__, default=None)
                if idle is None:  # every slot is serving a request
                    log.debug("%d connections: refusing %s", len(self._open), client_address)
                    self.shutdown_request(request)
                    return
                self._evict(idle)
            self._open[request] = time.monotonic()
            self._waiting.add(request)
        try:
            super().process_request(request, client_address)
        except Exception:
            self._forget(request)
            raise

    def _evict(self, sock: Any) -> None:
        """Wake the handler of an idle connection (its read ends) and free its slot."""
        self._waiting.discard(sock)
        self._open.pop(sock, None)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    def request_started(self, sock: Any) -> None:
        with self._lock:
            self._waiting.discard(sock)

    def _forget(self, sock: Any) -> None:
        with self._lock:
            self._waiting.discard(sock)
            self._open.pop(sock, None)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._forget(request)

    def open_connections(self) -> int:
        with self._lock:
            return len(self._open)


class StatusServer:
    """Serves the metrics and dashboard on `host:port` from a daemon thread."""

    def __init__(
        self,
        host: str,
        port: int,
        metrics: Metrics,
        status: Callable[[], dict[str, Any]],
        *,
        ready: Callable[[], bool] = lambda: True,
        history_interval: float = HISTORY_INTERVAL,
        history_seconds: float = HISTORY_SECONDS,
        idle_timeout: float = IDLE_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        static = _static_files()
        page = static["index.html"][1]
        history = self.history = History(status, history_interval, history_seconds)

        class Handler(BaseHTTPRequestHandler):
            timeout = idle_timeout  # a socket timeout on every read: idle clients are dropped

            def parse_request(self) -> bool:
                ok = super().parse_request()
                # Request line and headers are in: from now on this connection is served (until
                # then it may be evicted for a new one).
                server.request_started(self.connection)
                return ok

            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                if path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, metrics.render())
                elif path in ("/", "/index.html"):
                    self._send(200, "text/html; charset=utf-8", page)
                elif path == "/api/stats":
                    body = json.dumps(status()).encode()
                    self._send(200, "application/json", body)
                elif path == "/api/history":
                    self._history(query)
                elif path.startswith("/static/") and path[len("/static/"):] in static:
                    self._send(200, *static[path[len("/static/"):]])
                elif path == "/favicon.ico" and "favicon.svg" in static:
                    self._send(200, *static["favicon.svg"])
                elif path == "/healthz":
                    self._send(200, "text/plain", b"ok\n")
                elif path == "/readyz":
                    if ready():
                        self._send(200, "text/plain", b"ready\n")
                    else:
                        self._send(503, "text/plain", b"not consuming\n")
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _history(self, query: str) -> None:
                since = parse_qs(query).get("since", [None])[-1]
                try:
                    t = None if since is None else float(since)
                except ValueError:
                    self._send(400, "text/plain", b"since: a Unix time in seconds\n")
                    return
                body = json.dumps({
                    "interval_seconds": history.interval,
                    "retention_seconds": history.seconds,
                    "now": round(time.time(), 3),
                    "samples": history.since(t),
                }, separators=(",", ":")).encode()
                self._send(200, "application/json", body)

            def _send(self, code: int, ctype: str, body: bytes) -> None:
                encoding = None
                if len(body) >= _GZIP_MIN and "gzip" in self.headers.get("Accept-Encoding", ""):
                    body, encoding = gzip.compress(body, compresslevel=5), "gzip"
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                if encoding:
                    self.send_header("Content-Encoding", encoding)
                    self.send_header("Vary", "Accept-Encoding")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug(format, *args)  # scrapes every few seconds would flood the log

        try:
            server = self._server = _BoundedServer((host, port), Handler, max_connections)
        except OSError as exc:
            from driftline.errors import ConfigError

            raise ConfigError(f"metrics.port: cannot listen on {host}:{port}: {exc}") from None
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()
        self.history.start()

    def stop(self) -> None:
        self.history.stop()
        if self._thread.is_alive():  # shutdown() waits for serve_forever, so only if it runs
            self._server.shutdown()
        self._server.server_close()
