"""The HTTP endpoint of a :class:`~spoc.workers.Server`: probes, status, metrics, a page, control.

Imported only when a server is given an ``http`` address (it needs
prometheus_client, the ``http`` extra). Built on the standard library's
:mod:`http.server` for parsing and replies, with its own small serving loop
instead of ``serve_forever``:

* one thread accepts connections and enforces their deadlines; it waits in
  ``select`` on the listening socket and a self-pipe, so it costs nothing
  while nobody asks and :meth:`HttpEndpoint.close` ends it at once (no poll
  interval);
* each connection is handled in a short-lived thread of its own, at most
  :data:`MAX_CONNECTIONS` at a time; while that many are open the listening
  socket is not accepted from, and newcomers wait in the kernel's backlog;
* every connection must be done within :data:`REQUEST_DEADLINE` seconds
  (a slow client has its socket shut down), a request line or header line
  may hold 64 KiB and there may be 100 headers (http.server's limits:
  414/431), and a body at most :data:`MAX_BODY` bytes (413);
* one request per connection (HTTP/1.0 style: the connection is closed after
  the response), so no idle connection holds a slot.

Routes: ``GET /`` (the status page), ``/healthz``, ``/readyz``, ``/status``,
``/metrics`` (``HEAD`` too), and, only when a token is configured,
``POST /workers/NAME/restart`` and ``POST /workers/NAME/stop`` with
``Authorization: Bearer TOKEN``. Other methods on those paths get 405,
other paths 404.
"""

from __future__ import annotations

import hmac
import http.server
import ipaddress
import json
import logging
import os
import re
import selectors
import socket
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from prometheus_client.exposition import choose_encoder

from ._errors import HttpBindError
from ._metrics import build_registry
from ._statuspage import PAGE_HEADERS, render_page

if TYPE_CHECKING:
    from ._server import Server

__all__ = [
    "MAX_BODY",
    "MAX_CONNECTIONS",
    "REQUEST_DEADLINE",
    "HttpEndpoint",
    "check_token",
    "parse_address",
]

logger = logging.getLogger("spoc.workers.http")

MAX_CONNECTIONS = 16
"""Connections handled at once; more wait in the listening socket's backlog."""
BACKLOG = 512
"""Connections the kernel queues for us while :data:`MAX_CONNECTIONS` are being handled."""
REQUEST_DEADLINE = 10.0
"""Seconds a connection may last, from accept to the end of the response."""
MAX_BODY = 1024
"""The largest request body accepted (the control requests need none)."""
JOIN_GRACE = 2.0
"""Seconds :meth:`HttpEndpoint.close` waits, in all, for the request threads to end."""
LINGER = 0.5
"""Seconds a connection is read from after its response, before it is closed (see :func:`_linger`)."""
LINGER_BYTES = 1024 * 1024
"""The most bytes read from a connection after its response."""

_CONTROL = re.compile(r"/workers/(?P<name>[^/]+)/(?P<action>restart|stop)")
_GET_PATHS = ("/", "/healthz", "/readyz", "/status", "/metrics")
_ENDPOINTS: weakref.WeakSet[HttpEndpoint] = weakref.WeakSet()


def parse_address(owner: str, value: str | tuple[str, int]) -> tuple[str, int]:
    """``"127.0.0.1:9000"``, ``"[::1]:9000"``, ``"9000"`` (loopback) or ``(host, port)`` -> ``(host, port)``.

    Raises:
        ValueError: naming ``owner`` and the malformed address.
        TypeError: neither a str nor a pair.
    """
    if isinstance(value, tuple):
        if len(value) != 2 or not isinstance(value[0], str) or not isinstance(value[1], int):
            raise ValueError(f"{owner}: http address must be 'HOST:PORT' or (host, port), got {value!r}")
        host, port = value
    elif isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            host, port_text = "127.0.0.1", text
        else:
            match = re.fullmatch(r"\[(?P<v6>[^\]]+)\]:(?P<port>\d+)|(?P<host>[^:\[\]]+):(?P<port4>\d+)", text)
            if match is None:
                raise ValueError(
                    f"{owner}: http address must look like HOST:PORT ('127.0.0.1:9000', "
                    f"'[::1]:9000', '0.0.0.0:9000') or a bare port, got {value!r}"
                )
            host = match["v6"] or match["host"]
            port_text = match["port"] or match["port4"]
        port = int(port_text)
    else:
        raise TypeError(f"{owner}: http address must be a str or (host, port), got {type(value).__name__}")
    if isinstance(port, bool) or not 0 <= port <= 65535:
        raise ValueError(f"{owner}: http port must be in 0..65535, got {port!r}")
    if not host:
        raise ValueError(f"{owner}: http address {value!r} has no host")
    return host, port


def check_token(owner: str, token: str) -> str:
    """Validate a control token: a non-empty str of visible ASCII characters.

    Raises:
        TypeError: not a str.
        ValueError: empty, or with spaces or characters an HTTP header cannot carry.
    """
    if not isinstance(token, str):
        raise TypeError(f"{owner}: http_token must be a str, got {type(token).__name__}")
    if not token or not all(33 <= ord(char) <= 126 for char in token):
        raise ValueError(
            f"{owner}: http_token must be a non-empty string of visible ASCII characters (no spaces)"
        )
    return token


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _HttpServer(http.server.HTTPServer):
    """http.server's socket set-up and per-request plumbing, served by :class:`HttpEndpoint`."""

    request_queue_size = BACKLOG

    def __init__(self, address: tuple[Any, ...], family: int, endpoint: HttpEndpoint) -> None:
        self.address_family = family
        self.endpoint = endpoint
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        super().server_bind()


class HttpEndpoint:
    """One server's HTTP endpoint: bound at construction, served by :meth:`serve`, ended by :meth:`close`.

    Raises:
        HttpBindError: the address cannot be bound (in use, not local), with the server and address named.
    """

    def __init__(self, server: Server, address: tuple[str, int], token: str | None) -> None:
        self.server = server
        self.token = token
        host, port = address
        owner = f"server {server.name!r}"
        try:
            family, _, _, _, sockaddr = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
            self._httpd = _HttpServer(sockaddr, family, self)
        except OSError as exc:
            why = exc.strerror or str(exc)
            raise HttpBindError(exc.errno, f"{owner}: cannot serve HTTP on {host}:{port}: {why}") from exc
        self._listener = self._httpd.socket
        self._listener.setblocking(False)
        bound = self._listener.getsockname()
        self.address: tuple[str, int] = (bound[0], bound[1])
        self.registry = build_registry(server)
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._lock = threading.Lock()
        self._open: dict[socket.socket, float | None] = {}  # connection -> deadline (None: expired)
        self._threads: set[threading.Thread] = set()
        self._closing = False
        self._closed = False
        self._thread: threading.Thread | None = None
        _ENDPOINTS.add(self)
        shown = f"[{bound[0]}]" if family == socket.AF_INET6 else bound[0]
        self.url = f"http://{shown}:{bound[1]}/"
        control = "remote control on (Bearer token)" if token else "no remote control (no token)"
        logger.info("%s: HTTP endpoint on %s, %s", owner, self.url, control)
        if token is None and not _is_loopback(bound[0]):
            logger.warning(
                "%s: the HTTP endpoint listens on %s, beyond this machine, without a token: "
                "remote control (POST /workers/NAME/restart|stop) is off; set http_token "
                "(--http-token, $SPOC_WORKERS_HTTP_TOKEN) to enable it",
                owner,
                self.url,
            )

    # -- lifetime -------------------------------------------------------------

    def serve(self) -> None:
        """Start answering requests, in a thread of this endpoint's."""
        if self._thread is not None or self._closing:
            return
        self._thread = threading.Thread(target=self._serve, name=f"{self.server.name}:http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop answering, end every open connection and thread, release every file descriptor."""
        if self._closed:
            return
        self._closing = True
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._httpd.server_close()
        with self._lock:
            connections, threads = list(self._open), list(self._threads)
        for connection in connections:
            _shut(connection)
        deadline = time.monotonic() + JOIN_GRACE
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._closed = True
            for fd in (self._wake_read, self._wake_write):
                os.close(fd)
        _ENDPOINTS.discard(self)

    def _wake(self) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                os.write(self._wake_write, b"\0")
            except OSError:  # full: a wake-up is pending anyway
                pass

    def _forget_in_child(self) -> None:
        """In a child forked while serving: close the copies of our descriptors (no thread is here)."""
        if self._closed:
            return
        self._closed = self._closing = True
        self._listener.close()
        for connection in list(self._open):
            connection.close()
        for fd in (self._wake_read, self._wake_write):
            try:
                os.close(fd)
            except OSError:
                pass

    # -- the accepting thread ---------------------------------------------------

    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._wake_read, selectors.EVENT_READ)
            listening = False
            while not self._closing:
                with self._lock:
                    room = MAX_CONNECTIONS - len(self._open)
                    deadlines = [d for d in self._open.values() if d is not None]
                if (room > 0) != listening:
                    if listening:
                        selector.unregister(self._listener)
                    else:
                        selector.register(self._listener, selectors.EVENT_READ)
                    listening = not listening
                timeout = None if not deadlines else max(0.0, min(deadlines) - time.monotonic())
                for key, _ in selector.select(timeout):
                    if key.fileobj is self._listener:
                        self._accept(room)
                    else:
                        try:
                            while os.read(self._wake_read, 4096):
                                pass
                        except OSError:
                            pass
                self._expire()

    def _accept(self, room: int) -> None:
        for _ in range(room):
            try:
                connection, client = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. too many open files: try again at the next wake-up
                logger.warning("server %r: HTTP accept failed: %s", self.server.name, exc)
                return
            connection.settimeout(REQUEST_DEADLINE)
            thread = threading.Thread(
                target=self._handle,
                args=(connection, client),
                name=f"{self.server.name}:http-request",
                daemon=True,
            )
            with self._lock:
                self._open[connection] = time.monotonic() + REQUEST_DEADLINE
                self._threads.add(thread)
            thread.start()

    def _expire(self) -> None:
        now = time.monotonic()
        with self._lock:
            late = [c for c, deadline in self._open.items() if deadline is not None and deadline <= now]
            for connection in late:
                self._open[connection] = None
        for connection in late:
            logger.info("server %r: HTTP client too slow; its connection is closed", self.server.name)
            _shut(connection)

    def _handle(self, connection: socket.socket, client: Any) -> None:
        try:
            self._httpd.finish_request(connection, client)
        except OSError as exc:  # the client went away, or was too slow
            logger.debug("server %r: HTTP connection from %s ended: %s", self.server.name, client, exc)
        except Exception:
            logger.exception("server %r: HTTP request from %s failed", self.server.name, client)
        finally:
            _linger(connection)
            self._httpd.close_request(connection)
            with self._lock:
                self._open.pop(connection, None)
                self._threads.discard(threading.current_thread())
            self._wake()


def _linger(connection: socket.socket) -> None:
    """Say we are done (FIN), then read what the client still sends, for a bounded while.

    Closing a socket with unread input makes the kernel answer with a reset,
    which may destroy the response before the client has read it: the reply
    to a request refused for its size (413, 414, 431) would be lost.
    """
    try:
        connection.shutdown(socket.SHUT_WR)
        connection.settimeout(LINGER)
        drained = 0
        while drained < LINGER_BYTES:
            chunk = connection.recv(65536)
            if not chunk:
                return
            drained += len(chunk)
    except OSError:
        pass


def _shut(connection: socket.socket) -> None:
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _forget_endpoints_in_child() -> None:
    for endpoint in list(_ENDPOINTS):
        endpoint._forget_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_endpoints_in_child)


class _Handler(http.server.BaseHTTPRequestHandler):
    """Routes one request; see the module docstring."""

    server: _HttpServer
    protocol_version = "HTTP/1.0"
    default_request_version = "HTTP/1.0"  # a refusal of garbage has a status line too
    server_version = "spoc-workers"
    sys_version = ""
    error_content_type = "text/plain; charset=utf-8"
    error_message_format = "%(code)d %(message)s\n"

    # -- dispatch ----------------------------------------------------------------

    def do_GET(self) -> None:
        self._route("GET")

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def do_PATCH(self) -> None:
        self._route("PATCH")

    def do_OPTIONS(self) -> None:
        self._route("OPTIONS")

    def _route(self, method: str) -> None:
        if not self._read_body():
            return
        endpoint = self.server.endpoint
        path = urlsplit(self.path).path
        if path in _GET_PATHS:
            if method not in ("GET", "HEAD"):
                self._json(405, {"error": f"{method} is not allowed on {path}"}, Allow="GET, HEAD")
                return
            getattr(self, "_get_" + (path.strip("/") or "page"))()
            return
        match = _CONTROL.fullmatch(path)
        if match is None:
            self._json(404, {"error": f"no such path: {path}"})
        elif endpoint.token is None:
            self._json(404, {"error": "remote control is off: the server has no http_token"})
        elif method != "POST":
            self._json(405, {"error": f"{method} is not allowed on {path}"}, Allow="POST")
        elif self._authorised(endpoint.token):
            self._control(unquote(match["name"]), match["action"])

    def _read_body(self) -> bool:
        """Read and drop a small body; refuse a large, chunked or malformed one."""
        if self.headers.get("Transfer-Encoding"):
            self._json(400, {"error": "a chunked request body is not accepted"})
            return False
        length_text = self.headers.get("Content-Length", "0").strip()
        if not length_text.isdigit():
            self._json(400, {"error": f"malformed Content-Length: {length_text!r}"})
            return False
        length = int(length_text)
        if length > MAX_BODY:
            self._json(413, {"error": f"a request body may hold at most {MAX_BODY} bytes"})
            return False
        if length:
            self.rfile.read(length)
        return True

    def _authorised(self, token: str) -> bool:
        scheme, _, given = self.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            logger.info("server %r: control request from %s without a token", self._server_name, self._client)
            challenge = {"WWW-Authenticate": 'Bearer realm="spoc-workers"'}
            self._json(401, {"error": "a Bearer token is required"}, **challenge)
            return False
        if not hmac.compare_digest(given.strip().encode("utf-8", "replace"), token.encode("utf-8")):
            logger.warning(
                "server %r: control request from %s with a wrong token", self._server_name, self._client
            )
            self._json(403, {"error": "wrong token"})
            return False
        return True

    def _control(self, name: str, action: str) -> None:
        server = self.server.endpoint.server
        try:
            if action == "restart":
                server.restart_worker(name)
            else:
                server.stop_worker(name)
        except KeyError:
            self._json(404, {"error": f"no worker named {name!r}"})
            return
        except RuntimeError as exc:
            self._json(409, {"error": str(exc)})
            return
        logger.info("server %r: %s of worker %r asked by %s", server.name, action, name, self._client)
        self._json(202, {"accepted": True, "worker": name, "action": action})

    # -- the GET routes ------------------------------------------------------------

    def _get_page(self) -> None:
        server = self.server.endpoint.server
        body = render_page(server.name, server.status())
        self._send(200, body, "text/html; charset=utf-8", **PAGE_HEADERS)

    def _get_healthz(self) -> None:
        result = self.server.endpoint.server.liveness()
        self._json(200 if result["alive"] else 503, result)

    def _get_readyz(self) -> None:
        result = self.server.endpoint.server.readiness()
        self._json(200 if result["ready"] else 503, result)

    def _get_status(self) -> None:
        self._json(200, self.server.endpoint.server.status())

    def _get_metrics(self) -> None:
        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        self._send(200, encoder(self.server.endpoint.registry), content_type)

    # -- replies ---------------------------------------------------------------------

    def _json(self, status: int, payload: Any, **headers: str) -> None:
        body = json.dumps(payload, default=str).encode("utf-8") + b"\n"
        self._send(status, body, "application/json", **headers)

    def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    @property
    def _server_name(self) -> str:
        return self.server.endpoint.server.name

    @property
    def _client(self) -> str:
        return str(self.client_address[0])

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("server %r: HTTP %s: %s", self._server_name, self._client, format % args)
