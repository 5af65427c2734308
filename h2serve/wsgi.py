"""The WSGI adapter: one request in, one PEP 3333 call out, for either protocol.

The connection drivers hand us a request event and an `Exchange` (their view
of one request/response). Everything WSGI-specific lives here, so HTTP/1.1
and HTTP/2 behave the same to an application.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import unquote_to_bytes

from h2serve import SERVER_SOFTWARE, metrics
from h2serve.protocol.events import Headers, RequestReceived
from h2serve.protocol.priority import parse_priority_field
from h2serve.transport.forwarded import ForwardedPolicy, apply_root_path

log = logging.getLogger("h2serve.error")

# Response headers that describe one connection, not the message (RFC 9110
# §7.6.1); an app must not set them (PEP 3333), and HTTP/2 forbids them.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te",
    "proxy-authenticate", "proxy-authorization",
})
NO_BODY_STATUSES = frozenset({204, 304})

# RFC 9110 5.1 and 5.5: a field name is a token; a field value (and, by RFC
# 9112 4, a reason phrase) holds no control character but HTAB. The app's
# mistakes are caught in start_response, before a byte is sent, so the client
# gets a 500 rather than a cut connection or a reset stream.
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_FIELD_TEXT = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_CHECKED_NAMES: set[str] = set()  # names already found valid (bounded below)
_ERROR_BODY = b"Internal Server Error\n"


class ClientDisconnected(OSError):
    """The peer went away or reset the stream; the app's write cannot complete."""


class Exchange(Protocol):
    """What a connection driver offers the adapter for one request."""

    protocol: str          # SERVER_PROTOCOL: "HTTP/1.1", "HTTP/1.0" or "HTTP/2.0" (as gunicorn and nginx say it)

    def read(self, size: int) -> bytes:
        """Up to size bytes of request body (size < 0: all); b"" at the end."""

    def request_trailers(self) -> Headers | None: ...

    def send_informational(self, status: int, headers: Headers) -> None: ...

    def send_head(self, status: int, reason: str, headers: Headers, end_stream: bool) -> None: ...

    def send_body(self, data: bytes, end_stream: bool = False) -> None:
        """Blocks while the peer's window or the socket buffer is full."""

    def send_end(self, trailers: Headers | None) -> None: ...

    def send_complete(self, status: int, reason: str, headers: Headers, body: bytes,
                      trailers: Headers | None) -> None:
        """The whole response at once: the fast path for one-chunk bodies."""

    def abort(self) -> None:
        """The app failed after the head went out: reset the stream or close."""


class InputStream:
    """wsgi.input over an Exchange: reads pull body bytes from the driver,
    which returns flow-control credit as they are consumed."""

    __slots__ = ("_exchange", "_buffer", "_eof")

    def __init__(self, exchange: Exchange) -> None:
        self._exchange = exchange
        self._buffer = b""
        self._eof = False

    def _fill(self, want: int) -> bool:
        if self._eof:
            return False
        chunk = self._exchange.read(max(want, 16384))
        if not chunk:
            self._eof = True
            return False
        self._buffer += chunk
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            parts = [self._buffer]
            self._buffer = b""
            while not self._eof:
                chunk = self._exchange.read(-1)
                if not chunk:
                    self._eof = True
                    break
                parts.append(chunk)
            return b"".join(parts)
        while len(self._buffer) < size and self._fill(size - len(self._buffer)):
            pass
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        limit = sys.maxsize if size is None or size < 0 else size
        start = 0
        while True:
            newline = self._buffer.find(b"\n", start)
            if newline >= 0 and newline < limit:
                end = newline + 1
                break
            if len(self._buffer) >= limit:
                end = limit
                break
            start = len(self._buffer)
            if not self._fill(8192):
                end = min(len(self._buffer), limit)
                break
        line, self._buffer = self._buffer[:end], self._buffer[end:]
        return line

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines, total = [], 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


class FileWrapper:
    """wsgi.file_wrapper: streams a file-like object in blocks."""

    def __init__(self, filelike: Any, blksize: int = 65536) -> None:
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        read = self.filelike.read
        while True:
            block = read(self.blksize)
            if not block:
                return
            yield block


def connection_environ(*, server_addr: tuple | str, peer_addr: tuple | str, url_scheme: str,
                       alpn: str, multiprocess: bool, errors: Any) -> dict[str, Any]:
    """The part of the environ that is the same for every request of one connection."""
    if isinstance(server_addr, tuple):
        server_name, server_port = str(server_addr[0]), str(server_addr[1])
    else:
        server_name, server_port = str(server_addr or "localhost"), ""
    if isinstance(peer_addr, tuple):
        remote_addr, remote_port = str(peer_addr[0]), str(peer_addr[1])
    else:
        remote_addr, remote_port = "", ""
    return {
        "SERVER_NAME": server_name,
        "SERVER_PORT": server_port,
        "REMOTE_ADDR": remote_addr,
        "REMOTE_PORT": remote_port,
        "SCRIPT_NAME": "",
        "SERVER_SOFTWARE": SERVER_SOFTWARE,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": url_scheme,
        "wsgi.errors": errors,
        "wsgi.multithread": True,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
        "wsgi.file_wrapper": FileWrapper,
        "h2serve.alpn": alpn,
    }


def build_environ(base: dict[str, Any], request: RequestReceived, protocol: str,
                  forwarded: ForwardedPolicy | None) -> dict[str, Any]:
    """PEP 3333 environ for one request, from the connection's base."""
    environ = base.copy()
    target = request.target
    if "://" in target[:10] and not target.startswith("/"):
        # absolute-form (RFC 9112 §3.2.2): keep the path and query only
        after_scheme = target.split("://", 1)[1]
        slash = after_scheme.find("/")
        target = after_scheme[slash:] if slash >= 0 else "/"
    path, _, query = target.partition("?")
    environ["REQUEST_METHOD"] = request.method
    environ["PATH_INFO"] = unquote_to_bytes(path).decode("latin-1") if "%" in path else path
    environ["QUERY_STRING"] = query
    environ["RAW_URI"] = request.target
    environ["SERVER_PROTOCOL"] = protocol
    environ["h2serve.stream_id"] = request.stream_id
    if request.priority is not None:
        environ["h2serve.priority"] = request.priority

    forwarded_for = None
    trusted = forwarded is not None and forwarded.trusts(base["REMOTE_ADDR"])
    scheme_votes: list[bool] = []
    set_by_proxy: dict[str, str] = {}
    for name, value in request.headers:
        if "_" in name:
            # CGI maps "-" to "_": never let "x_a" pose as "x-a" (or SCRIPT_NAME), unless
            # a trusted proxy sets it as one of forwarder_headers.
            if trusted and name.upper() in forwarded.forwarder_headers:  # type: ignore[union-attr]
                set_by_proxy[name.upper()] = value
            continue
        if trusted and name in forwarded.secure_scheme_headers:  # type: ignore[union-attr]
            scheme_votes.append(value == forwarded.secure_scheme_headers[name])  # type: ignore[union-attr]
        if name == "content-type":
            environ["CONTENT_TYPE"] = value
            continue
        if name == "content-length":
            environ["CONTENT_LENGTH"] = value
            continue
        if name == "x-forwarded-for":
            forwarded_for = value if forwarded_for is None else f"{forwarded_for},{value}"
        elif name == "priority" and request.priority is None:
            environ["h2serve.priority"] = parse_priority_field(value)  # RFC 9218 on HTTP/1.1
        key = "HTTP_" + name.upper().replace("-", "_")
        if key in environ:
            separator = "; " if name == "cookie" else ","
            environ[key] = environ[key] + separator + value
        else:
            environ[key] = value
    if request.authority is not None:
        environ["HTTP_HOST"] = request.authority
    if "HTTP_HOST" in environ:
        host = environ["HTTP_HOST"]
        if host.startswith("["):
            environ["SERVER_NAME"] = host[: host.find("]") + 1]
        else:
            environ["SERVER_NAME"] = host.rsplit(":", 1)[0] if ":" in host else host
    if forwarded is None:
        return environ
    if trusted:
        if forwarded_for:
            environ["REMOTE_ADDR"] = forwarded.client_address(base["REMOTE_ADDR"], forwarded_for)
        scheme = forwarded.scheme(scheme_votes)
        if scheme is not None:
            environ["wsgi.url_scheme"] = scheme
        environ.update((key, value) for key, value in set_by_proxy.items() if key != "SCRIPT_NAME")
    apply_root_path(environ, set_by_proxy.get("SCRIPT_NAME", forwarded.root_path))
    return environ


class Responder:
    """Runs one WSGI call and carries its response to the Exchange."""

    __slots__ = (
        "exchange", "environ", "method", "status", "status_code", "reason", "headers",
        "head_sent", "trailers", "bytes_sent", "no_body",
    )

    def __init__(self, exchange: Exchange, environ: dict[str, Any]) -> None:
        self.exchange = exchange
        self.environ = environ
        self.method = environ["REQUEST_METHOD"]
        self.status = ""
        self.status_code = 0
        self.reason = ""
        self.headers: Headers = []
        self.head_sent = False
        self.trailers: Headers | None = None
        self.bytes_sent = 0
        self.no_body = False

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status:
            raise AssertionError("start_response called twice without exc_info")
        if not isinstance(status, str):
            raise TypeError(f"status must be str, got {type(status).__name__}")
        code_text, _, reason = status.partition(" ")
        if len(code_text) != 3 or not code_text.isdigit():
            raise ValueError(f"malformed status {status!r}")
        if _BAD_FIELD_TEXT.search(reason) is not None:
            raise ValueError(f"invalid character in the reason phrase {reason!r}")
        clean: Headers = []
        for name, value in headers:
            if not isinstance(name, str) or not isinstance(value, str):
                raise TypeError(f"header names and values must be str: {name!r}: {value!r}")
            if name not in _CHECKED_NAMES:
                if _FIELD_NAME.fullmatch(name) is None:
                    raise ValueError(f"invalid header name {name!r}")
                if len(_CHECKED_NAMES) < 4096:
                    _CHECKED_NAMES.add(name)
            if _BAD_FIELD_TEXT.search(value) is not None:
                raise ValueError(f"invalid character in the value of header {name!r}")
            if name.lower() in HOP_BY_HOP:
                continue  # PEP 3333 leaves connection management to the server
            clean.append((name, value))
        self.status = status
        self.status_code = int(code_text)
        self.reason = reason
        self.headers = clean
        self.no_body = (self.method == "HEAD" or self.status_code in NO_BODY_STATUSES
                        or self.status_code < 200)
        return self.write

    def early_hints(self, headers: list[tuple[str, str]]) -> None:
        """wsgi.early_hints: a 103 ahead of the final response."""
        if self.head_sent:
            raise RuntimeError("early hints after the response started")
        self.exchange.send_informational(103, [(str(n), str(v)) for n, v in headers])

    def set_trailers(self, headers: list[tuple[str, str]]) -> None:
        """h2serve.send_trailers: sent after the last body byte."""
        self.trailers = [(str(n).lower(), str(v)) for n, v in headers]

    def _send_head(self, end_stream: bool) -> None:
        if not self.status:
            raise AssertionError("the application wrote a body before calling start_response")
        self.head_sent = True
        self.exchange.send_head(self.status_code, self.reason, self.headers, end_stream)

    def write(self, data: bytes) -> None:
        """The legacy write() callable, and the path for every chunk."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"response body chunks must be bytes, got {type(data).__name__}")
        if not self.head_sent:
            # HEAD/204/304: the head ends the stream (no empty DATA frame after it)
            self._send_head(end_stream=self.no_body)
        if data and not self.no_body:
            self.exchange.send_body(data)
            self.bytes_sent += len(data)

    def finish(self) -> None:
        if not self.head_sent:
            if self.trailers and not self.no_body:
                self._send_head(end_stream=False)
                self.exchange.send_end(self.trailers)
            else:
                self._send_head(end_stream=True)
            return
        if not self.no_body:  # a bodiless response already ended with its head
            self.exchange.send_end(self.trailers)

    def run(self, app: Callable) -> None:
        """Call the app and stream its result; one-chunk bodies go out in one piece."""
        result = app(self.environ, self.start_response)
        try:
            if isinstance(result, (list, tuple)) and len(result) <= 1 and not self.head_sent:
                body = result[0] if result else b""
                if not isinstance(body, (bytes, bytearray)):
                    raise TypeError(f"response body chunks must be bytes, got {type(body).__name__}")
                if not self.status:
                    raise AssertionError("the application returned without calling start_response")
                if (self.status_code >= 200 and self.status_code not in NO_BODY_STATUSES
                        and not self.trailers
                        and not any(n.lower() == "content-length" for n, _ in self.headers)):
                    # (not with trailers: HTTP/1.1 can only carry them in a chunked body)
                    # HEAD too: it announces the length a GET would get (RFC 9110 §9.3.2)
                    self.headers.append(("Content-Length", str(len(body))))
                if self.no_body:
                    body = b""
                self.head_sent = True
                self.exchange.send_complete(self.status_code, self.reason, self.headers,
                                            bytes(body), None if self.no_body else self.trailers)
                self.bytes_sent += len(body)
                return
            for chunk in result:
                self.write(chunk)
                if self.no_body and self.head_sent:
                    break
            self.finish()
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()


def serve_request(app: Callable, exchange: Exchange, request: RequestReceived,
                  base_environ: dict[str, Any], forwarded: ForwardedPolicy | None,
                  access_log: Any, gunicorn_aliases: bool = True,
                  hooks: Any = None) -> Responder:
    """Run the app for one request. Never raises: app errors become a 500 or an abort.
    hooks (h2serve.hooks.RequestHooks) runs pre_request and post_request around it."""
    start_wall = time.time()
    started = time.perf_counter()
    environ = build_environ(base_environ, request, exchange.protocol, forwarded)
    responder = Responder(exchange, environ)
    metrics.request_started(request, environ)
    environ["wsgi.input"] = InputStream(exchange)
    environ["wsgi.early_hints"] = responder.early_hints
    environ["h2serve.send_trailers"] = responder.set_trailers
    environ["h2serve.request_trailers"] = exchange.request_trailers
    if gunicorn_aliases:
        environ["gunicorn.http2.send_trailers"] = responder.set_trailers
        priority = request.priority or {}
        environ["gunicorn.http2.priority_weight"] = priority.get("weight") or 16
        environ["gunicorn.http2.priority_depends_on"] = priority.get("depends_on") or 0
    hook_request = None
    try:
        if hooks is not None:
            hook_request = hooks.before(request, environ)
        responder.run(app)
    except ClientDisconnected:
        log.debug("client went away during %s %s", request.method, request.target)
        if not responder.status_code:
            responder.status_code = 499
    except Exception:
        log.exception("Error handling request %s %s", request.method, request.target)
        if not responder.head_sent:
            responder.status_code = 500
            responder.status = "500 Internal Server Error"
            responder.headers = [("Content-Type", "text/plain"),
                                 ("Content-Length", str(len(_ERROR_BODY)))]
            body = b"" if request.method == "HEAD" else _ERROR_BODY
            try:
                exchange.send_complete(500, "Internal Server Error", responder.headers, body, None)
                responder.bytes_sent = len(body)   # the access log counts it, as gunicorn's does
            except (ClientDisconnected, OSError):
                pass
        else:
            exchange.abort()
    metrics.request_finished(exchange.protocol, responder.status_code, time.perf_counter() - started)
    if access_log is not None and access_log.enabled:
        try:
            access_log.log(environ, responder.status or str(responder.status_code),
                           responder.headers, responder.bytes_sent, start_wall,
                           time.perf_counter() - started)
        except Exception:
            log.exception("access log failed")
    if hooks is not None:
        hooks.after(hook_request, request, environ, responder)
    return responder

