"""Sans-I/O HTTP/1.1 server protocol: h11 behind a strict front gate.

h11 runs the message exchange well (keep-alive, response framing, pausing
between pipelined requests) but it is lenient exactly where request smuggling
lives: equal duplicate Content-Length values, obs-fold, bare LF, any bytes in
chunk extensions, loose Transfer-Encoding lists. So every received byte is
vetted here first, against RFC 9112 and the configured limits, and only bytes
that passed reach h11, and only in condensed form: the method, version and
keep-alive/100-continue fields of the head, and a bare end-of-body marker. The
request body itself is framed and emitted here. h11 keeps what it is good at:
the exchange state machine and response framing. Bytes of the next pipelined
request wait in our buffer until start_next_request().

Choices worth knowing:

* Bare LF line endings are rejected with 400 (RFC 9112 section 2.2 lets a
  server accept them; a proxy in front of us that does not would see another
  message boundary, which is the desync smuggling needs). A bare CR anywhere in
  the head is rejected too.
* ``limit_request_field_size`` is measured on the whole field line without its
  CRLF ("Name: value"), as gunicorn does. The request line limit excludes CRLF.
* Absolute-form targets (proxy form) are accepted; ``RequestReceived.target``
  then carries only path and query, and ``authority`` comes from the target
  (RFC 9112 section 3.2.2), not from Host.
* Transfer-Encoding must be the single coding "chunked" (case-insensitive;
  surrounding OWS is not part of a field value, so "chunked " is the same
  value). Other codings answer 501, malformed lists and repeats 400.
* EOF after a complete request yields nothing at once (the response still goes
  out); start_next_request() then reports ConnectionTerminated, or
  ProtocolViolation "incomplete" if a partial next request was buffered.
* CONNECT is answered 501: a WSGI server has nothing to tunnel to.
* HTTP/1.0 connections are never kept alive (h11 does not support it).
* A request without a body still produces ``BodyEnded`` right after
  ``RequestReceived(end_stream=True)``, so a driver can rely on BodyEnded alone.
"""

from __future__ import annotations

import base64
import binascii
import re
from http import HTTPStatus

import h11

from h2serve.protocol.events import (
    BodyEnded,
    BodyReceived,
    ConnectionTerminated,
    Headers,
    ProtocolViolation,
    RequestReceived,
)

# What receive() and start_next_request() can return (events.py defines no union).
Event = RequestReceived | BodyReceived | BodyEnded | ProtocolViolation | ConnectionTerminated

__all__ = [
    "HTTP1Protocol",
    "h2c_upgrade_requested",
    "switching_protocols_response",
]

# Receive-side states.
_HEAD = 0  # reading a request head
_BODY = 1  # reading the request body
_DONE = 2  # request complete; later bytes wait for start_next_request()
_CLOSED = 3  # violation, EOF or protocol switch: nothing more is parsed

# Chunked framing states.
_CHUNK_SIZE = 0
_CHUNK_DATA = 1
_CHUNK_DATA_END = 2
_CHUNK_TRAILER = 3
_CHUNK_DONE = 4

_MAX_CHUNK_LINE = 4096  # chunk-size plus extensions, without CRLF
_MAX_CHUNK_SIZE_DIGITS = 16  # 2**64 - 1 at most
_MAX_CONTENT_LENGTH_DIGITS = 18  # fits in a signed 64-bit integer

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TOKEN_RE = re.compile(_TOKEN)
# Field value after OWS is stripped: VCHAR, obs-text, inner SP/HTAB. No CTLs.
_FIELD_VALUE_RE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
# Origin-form and friends: visible ASCII without "#" (no fragments on the wire).
_TARGET_RE = re.compile(rb"[\x21\x22\x24-\x7e]+")
_ABSOLUTE_FORM_RE = re.compile(rb"([A-Za-z][A-Za-z0-9+.\-]*)://([^/?]*)(.*)")
_VERSION_RE = re.compile(rb"HTTP/[0-9]\.[0-9]")
_HOST_RE = re.compile(rb"[A-Za-z0-9\-._~!$&'()*+,;=%:\[\]]*")
_CONTENT_LENGTH_RE = re.compile(rb"[0-9]{1,%d}" % _MAX_CONTENT_LENGTH_DIGITS)
_HEX_DIGITS_RE = re.compile(rb"[0-9A-Fa-f]+")
_QUOTED_STRING = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_CHUNK_EXT_RE = re.compile(
    rb"(?:[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + rb"|" + _QUOTED_STRING + rb"))?)*"
)
# A field line with its CRLF: token ":" OWS [value] OWS CRLF; groups are name and value.
_FIELD_LINE = (
    rb"(" + _TOKEN + rb"):[ \t]*"
    rb"([\x21-\x7e\x80-\xff](?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?[ \t]*\r\n"
)
_FIELD_LINE_RE = re.compile(_FIELD_LINE)
_FIELD_BLOCK_RE = re.compile(rb"(?:" + _FIELD_LINE + rb")*")
_BASE64URL_RE = re.compile(rb"[A-Za-z0-9_\-]*={0,2}")

_H2_PREFACE_LINE = b"PRI * HTTP/2.0\r\n"

# Decoding common names once saves a str per header per request.
_KNOWN_NAMES = {
    name.encode("ascii"): name
    for name in (
        "host", "user-agent", "accept", "accept-encoding", "accept-language",
        "connection", "content-length", "content-type", "cookie", "transfer-encoding",
        "expect", "te", "upgrade", "http2-settings", "authorization", "referer",
        "origin", "cache-control", "pragma", "if-none-match", "if-modified-since",
        "x-forwarded-for", "x-forwarded-proto", "x-request-id", "range", "priority",
    )
}

# Request fields that steer parsing, framing or connection handling.
_FRAMING_NAMES = frozenset({"host", "content-length", "transfer-encoding", "connection", "expect", "te"})

# Response trailers that would change framing or routing are never sent.
_FORBIDDEN_TRAILERS = frozenset({
    "content-length", "transfer-encoding", "host", "connection", "keep-alive",
    "te", "trailer", "upgrade", "proxy-connection",
})

_SWITCHING_PROTOCOLS = (
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
)


def _comma_tokens(value: str) -> list[str]:
    """Lower-cased members of a comma-separated field value, empties dropped."""
    return [item.strip(" \t").lower() for item in value.split(",") if item.strip(" \t")]


def _field_line_problem(line: bytes) -> str:
    """Why a field line (without CRLF) is invalid, or "" when it is valid.

    Shared by headers and trailers so both obey the same rules.
    """
    first = line[0]
    if first == 0x20 or first == 0x09:
        return "obs-fold"
    colon = line.find(b":")
    if colon <= 0:
        return "invalid-field-line"
    name = line[:colon]
    if _TOKEN_RE.fullmatch(name) is None:
        last = name[-1]
        return "whitespace-before-colon" if last == 0x20 or last == 0x09 else "invalid-field-name"
    if _FIELD_VALUE_RE.fullmatch(line[colon + 1:].strip(b" \t")) is None:
        return "invalid-field-value"
    return ""


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def h2c_upgrade_requested(request: RequestReceived) -> bytes | None:
    """The decoded HTTP2-Settings payload if the request asks to upgrade to h2c
    (RFC 7540 3.2), else None. Note b"" (empty SETTINGS) is a valid answer."""
    if request.http_version != "1.1":
        return None
    upgrade_tokens: list[str] = []
    connection_tokens: list[str] = []
    settings_values: list[str] = []
    for name, value in request.headers:
        if name == "upgrade":
            upgrade_tokens.extend(_comma_tokens(value))
        elif name == "connection":
            connection_tokens.extend(_comma_tokens(value))
        elif name == "http2-settings":
            settings_values.append(value)
    if "h2c" not in upgrade_tokens or len(settings_values) != 1:
        return None
    if "upgrade" not in connection_tokens or "http2-settings" not in connection_tokens:
        return None
    encoded = settings_values[0].strip(" \t").encode("latin-1")
    if _BASE64URL_RE.fullmatch(encoded) is None:
        return None
    encoded = encoded.rstrip(b"=")
    if len(encoded) % 4 == 1:
        return None
    try:
        payload = base64.urlsafe_b64decode(encoded + b"=" * (-len(encoded) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(payload) % 6:
        return None  # SETTINGS entries are 6 bytes each
    return payload


def switching_protocols_response() -> bytes:
    """The bytes of "101 Switching Protocols" to h2c."""
    return _SWITCHING_PROTOCOLS


class HTTP1Protocol:
    """One server-side HTTP/1.1 connection: bytes in, events out; responses in, bytes out.

    Requests are handled one at a time. After the response has ended and the
    request body has been fully received, ``start_next_request()`` moves on to
    the next (possibly already buffered) request.
    """

    __slots__ = (
        "_limit_line", "_limit_fields", "_limit_field_size", "_limit_head",
        "_h11", "_buf", "_state", "_eof",
        "_scan", "_head_start", "_line_count",
        "_method", "_http10", "_keep_alive", "_accepts_trailers",
        "_chunked", "_body_remaining", "_chunk_state", "_chunk_remaining",
        "_trailer_lines", "_trailer_bytes", "_body_complete",
        "_response_started", "_response_done", "_resp_chunked", "_resp_no_body",
    )

    def __init__(
        self,
        *,
        limit_request_line: int = 4094,
        limit_request_fields: int = 100,
        limit_request_field_size: int = 8190,
    ) -> None:
        if limit_request_line <= 0 or limit_request_fields <= 0 or limit_request_field_size <= 0:
            raise ValueError("HTTP/1.1 request limits must be positive")
        self._limit_line = limit_request_line
        self._limit_fields = limit_request_fields
        self._limit_field_size = limit_request_field_size
        # Whole header section (leading empty lines, request line, fields, CRLFs).
        self._limit_head = limit_request_fields * limit_request_field_size + limit_request_line
        # h11 only ever receives complete, vetted heads, so its own cap is a
        # backstop that matches ours (it also bounds the trailer section).
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=self._limit_head + 4)
        self._buf = bytearray()
        self._state = _HEAD
        self._eof = False
        self._reset_exchange()

    def _reset_exchange(self) -> None:
        self._scan = 0
        self._head_start = 0
        self._line_count = 0
        self._method = b""
        self._http10 = False
        self._keep_alive = True
        self._accepts_trailers = False
        self._chunked = False
        self._body_remaining = 0
        self._chunk_state = _CHUNK_SIZE
        self._chunk_remaining = 0
        self._trailer_lines: list[bytes] = []
        self._trailer_bytes = 0
        self._body_complete = False
        self._response_started = False
        self._response_done = False
        self._resp_chunked = False
        self._resp_no_body = False

    # ------------------------------------------------------------------ receiving

    def receive(self, data: bytes) -> list[Event]:
        """Feed bytes read from the peer (b"" for EOF) and return the events they complete."""
        if self._state == _CLOSED:
            return []
        if not data:
            return self._on_eof()
        if self._eof:
            return []
        self._buf += data
        if self._state == _DONE:
            return []  # next pipelined request: parsed by start_next_request()
        events: list[Event] = []
        self._advance(events)
        return events

    def _advance(self, events: list[Event]) -> None:
        if self._state == _HEAD and not self._read_head(events):
            return
        if self._state == _BODY and self._buf:
            self._read_body(events)

    def _violation(self, events: list[Event], status: int, reason: str) -> bool:
        events.append(ProtocolViolation(reason=reason, status=status))
        self._state = _CLOSED
        self._keep_alive = False
        return False

    def _on_eof(self) -> list[Event]:
        self._eof = True
        if self._state == _HEAD:
            return self._eof_between_requests()
        if self._state == _BODY:
            events: list[Event] = []
            self._violation(events, 400, "incomplete")
            return events
        return []  # request complete: reported by start_next_request()

    def _eof_between_requests(self) -> list[Event]:
        events: list[Event] = []
        if self._buf.strip(b"\r\n"):
            self._violation(events, 400, "incomplete")
        else:
            self._state = _CLOSED
            events.append(ConnectionTerminated(reason="peer closed the connection"))
        return events

    def _read_head(self, events: list[Event]) -> bool:
        """Vet head lines as they arrive; True once a request head has been emitted
        and its body (if any) should be read next."""
        buf = self._buf
        size = len(buf)
        pos = self._scan
        limit_head = self._limit_head
        while True:
            newline = buf.find(b"\n", pos)
            if newline < 0:
                partial = size - pos
                if self._line_count == 0:
                    if partial > self._limit_line + 1:
                        return self._violation(events, 414, "request-line-too-long")
                elif partial > self._limit_field_size + 1:
                    return self._violation(events, 431, "field-too-large")
                if size > limit_head:
                    return self._violation(events, 431, "header-section-too-large")
                self._scan = pos
                return False
            if newline == pos or buf[newline - 1] != 0x0D:
                return self._violation(events, 400, "bare-lf")
            length = newline - 1 - pos
            next_pos = newline + 1
            if next_pos > limit_head:
                return self._violation(events, 431, "header-section-too-large")
            if self._line_count == 0:
                if length == 0:  # RFC 9112 2.2: empty lines before a request are ignored
                    pos = self._head_start = next_pos
                    continue
                if length > self._limit_line:
                    return self._violation(events, 414, "request-line-too-long")
                if buf.startswith(_H2_PREFACE_LINE, pos):
                    # Buffer left intact: the driver may hand it to HTTP/2 (h2c).
                    return self._violation(events, 400, "h2-preface")
                self._line_count = 1
            elif length == 0:
                head = bytes(buf[self._head_start:next_pos])
                del buf[:next_pos]
                self._scan = self._head_start = 0
                return self._process_head(head, events)
            else:
                if length > self._limit_field_size:
                    return self._violation(events, 431, "field-too-large")
                if self._line_count > self._limit_fields:  # this line would be one too many
                    return self._violation(events, 431, "too-many-fields")
                self._line_count += 1
            pos = next_pos

    def _process_head(self, head: bytes, events: list[Event]) -> bool:
        eol = head.find(b"\r\n")
        parts = head[:eol].split(b" ")
        if len(parts) != 3:
            return self._violation(events, 400, "invalid-request-line")
        method, target, version = parts
        if _TOKEN_RE.fullmatch(method) is None:
            return self._violation(events, 400, "invalid-method")
        if version == b"HTTP/1.1":
            http10 = False
        elif version == b"HTTP/1.0":
            http10 = True
        elif _VERSION_RE.fullmatch(version) is not None:
            return self._violation(events, 505, "unsupported-version")
        else:
            return self._violation(events, 400, "invalid-request-line")
        if _TARGET_RE.fullmatch(target) is None:
            return self._violation(events, 400, "invalid-target")
        if method == b"CONNECT":
            return self._violation(events, 501, "connect-unsupported")
        target_authority: str | None = None
        if target[0] == 0x2F:  # "/": origin-form, the common case
            path = target
        elif target == b"*":
            if method != b"OPTIONS":
                return self._violation(events, 400, "invalid-target")
            path = target
        else:
            match = _ABSOLUTE_FORM_RE.fullmatch(target)
            if match is None or not match[2] or b"@" in match[2]:
                return self._violation(events, 400, "invalid-target")
            target_authority = match[2].decode("ascii")
            path = match[3] or b"/"
            if path[0] != 0x2F:
                path = b"/" + path

        # One C-level pass vets every field line; only a failure pays for the
        # line-by-line diagnosis that names the problem.
        block = head[eol + 2:-2]
        if _FIELD_BLOCK_RE.fullmatch(block) is None:
            for line in block.split(b"\r\n"):
                if line:
                    reason = _field_line_problem(line)
                    if reason:
                        return self._violation(events, 400, reason)
            return self._violation(events, 400, "invalid-field-line")

        headers: Headers = []
        host_values: list[bytes] = []
        content_lengths: list[bytes] = []
        transfer_encodings: list[bytes] = []
        keep_alive = not http10
        expect_continue = False
        accepts_trailers = False
        for raw_name, raw_value in _FIELD_LINE_RE.findall(block):
            lower = raw_name.lower()
            name = _KNOWN_NAMES.get(lower) or lower.decode("ascii")
            value = raw_value.decode("latin-1")
            headers.append((name, value))
            if name not in _FRAMING_NAMES:
                continue
            if name == "host":
                host_values.append(raw_value)
            elif name == "content-length":
                content_lengths.append(raw_value)
            elif name == "transfer-encoding":
                transfer_encodings.append(raw_value)
            elif name == "connection":
                if "close" in _comma_tokens(value):
                    keep_alive = False
            elif name == "expect":
                if not http10 and "100-continue" in _comma_tokens(value):
                    expect_continue = True
            elif name == "te":
                if any(item.split(";", 1)[0].strip() == "trailers" for item in _comma_tokens(value)):
                    accepts_trailers = True

        if len(host_values) > 1:
            return self._violation(events, 400, "multiple-host")
        if not host_values:
            if not http10:
                return self._violation(events, 400, "missing-host")
        elif _HOST_RE.fullmatch(host_values[0]) is None:
            return self._violation(events, 400, "invalid-host")

        content_length: int | None = None
        chunked = False
        if transfer_encodings:
            if content_lengths:
                return self._violation(events, 400, "content-length-and-transfer-encoding")
            if len(transfer_encodings) > 1:
                return self._violation(events, 400, "multiple-transfer-encoding")
            if http10:
                return self._violation(events, 400, "transfer-encoding-in-http10")
            coding = transfer_encodings[0].lower()
            if coding != b"chunked":
                items = [item.strip(b" \t") for item in coding.split(b",")]
                if not all(_TOKEN_RE.fullmatch(item) for item in items):
                    return self._violation(events, 400, "invalid-transfer-encoding")
                if any(item != b"chunked" for item in items):
                    return self._violation(events, 501, "unsupported-transfer-coding")
                return self._violation(events, 400, "invalid-transfer-encoding")
            chunked = True
        elif content_lengths:
            if len(content_lengths) > 1 or b"," in content_lengths[0]:
                return self._violation(events, 400, "duplicate-content-length")
            if _CONTENT_LENGTH_RE.fullmatch(content_lengths[0]) is None:
                return self._violation(events, 400, "invalid-content-length")
            content_length = int(content_lengths[0])

        # The head is sound. h11 needs only what steers the exchange (method,
        # version, body framing, keep-alive, 100-continue), so it gets a
        # condensed head instead of re-parsing every field. Upgrade is left
        # out: the h2c switch is handled here, never by h11.
        has_body = chunked or bool(content_length)
        summary = [method, b" / ", version, b"\r\nhost: h\r\n"]
        if has_body:
            summary.append(b"transfer-encoding: chunked\r\n")
        if not keep_alive and not http10:
            summary.append(b"connection: close\r\n")
        if expect_continue:
            summary.append(b"expect: 100-continue\r\n")
        summary.append(b"\r\n")
        h11_conn = self._h11
        try:
            h11_conn.receive_data(b"".join(summary))
            request = h11_conn.next_event()
            if type(request) is not h11.Request:
                return self._violation(events, 400, "invalid-request")
            if not has_body and type(h11_conn.next_event()) is not h11.EndOfMessage:
                return self._violation(events, 400, "invalid-request")
        except h11.RemoteProtocolError as exc:
            return self._violation(events, exc.error_status_hint, "invalid-request")

        self._method = method
        self._http10 = http10
        self._keep_alive = keep_alive
        self._accepts_trailers = accepts_trailers
        self._chunked = chunked
        self._body_remaining = content_length or 0
        events.append(RequestReceived(
            stream_id=1,
            method=method.decode("ascii"),
            target=path.decode("ascii"),
            headers=headers,
            authority=target_authority if target_authority is not None
            else (host_values[0].decode("latin-1") if host_values else None),
            scheme=None,
            http_version="1.0" if http10 else "1.1",
            end_stream=not has_body,
            expect_continue=expect_continue,
            content_length=content_length,
        ))
        if has_body:
            self._state = _BODY
            return True
        events.append(BodyEnded(stream_id=1, trailers=None))
        self._body_complete = True
        self._state = _DONE
        return False

    def _read_body(self, events: list[Event]) -> None:
        """Emit body bytes straight from our buffer. h11 was told "chunked" for
        every request with a body and only ever gets the terminating
        "0\\r\\n\\r\\n": it tracks the exchange, we own the request framing."""
        buf = self._buf
        if self._chunked:
            self._scan_chunked(events)
            return
        take = min(self._body_remaining, len(buf))
        if take == len(buf):
            data = bytes(buf)
            buf.clear()
        else:
            data = bytes(buf[:take])
            del buf[:take]
        self._body_remaining -= take
        events.append(BodyReceived(stream_id=1, data=data))
        if self._body_remaining == 0:
            self._finish_body(events, None)

    def _finish_body(self, events: list[Event], trailers: Headers | None) -> None:
        try:
            self._h11.receive_data(b"0\r\n\r\n")
            if type(self._h11.next_event()) is not h11.EndOfMessage:
                self._violation(events, 400, "invalid-body")
                return
        except h11.RemoteProtocolError as exc:
            self._violation(events, exc.error_status_hint, "invalid-body")
            return
        events.append(BodyEnded(stream_id=1, trailers=trailers))
        self._body_complete = True
        self._state = _DONE

    def _scan_chunked(self, events: list[Event]) -> None:
        """Decode and validate chunked framing as far as the buffer allows."""
        buf = self._buf
        size = len(buf)
        offset = 0
        state = self._chunk_state
        pieces: list[bytes] = []
        problem: tuple[int, str] | None = None
        while offset < size:
            if state == _CHUNK_DATA:
                take = min(self._chunk_remaining, size - offset)
                pieces.append(bytes(buf[offset:offset + take]))
                offset += take
                self._chunk_remaining -= take
                if self._chunk_remaining == 0:
                    state = _CHUNK_DATA_END
                continue
            if state == _CHUNK_DATA_END:
                if buf[offset] != 0x0D or (size - offset > 1 and buf[offset + 1] != 0x0A):
                    problem = (400, "missing-chunk-crlf")
                    break
                if size - offset < 2:
                    break
                offset += 2
                state = _CHUNK_SIZE
                continue
            line_limit = _MAX_CHUNK_LINE if state == _CHUNK_SIZE else self._limit_field_size
            newline = buf.find(b"\n", offset, offset + line_limit + 2)
            if newline < 0:
                if size - offset > line_limit + 1:
                    if state == _CHUNK_SIZE:
                        problem = (400, "chunk-line-too-long")
                    else:
                        problem = (431, "field-too-large")
                break
            if newline == offset or buf[newline - 1] != 0x0D:
                problem = (400, "bare-lf")
                break
            line = bytes(buf[offset:newline - 1])
            offset = newline + 1
            if state == _CHUNK_SIZE:
                digits = _HEX_DIGITS_RE.match(line)
                if digits is None or digits.end() > _MAX_CHUNK_SIZE_DIGITS:
                    problem = (400, "invalid-chunk-size")
                    break
                rest = line[digits.end():]
                if rest and _CHUNK_EXT_RE.fullmatch(rest) is None:
                    reason = "invalid-chunk-extension" if rest[0] in b" \t;" else "invalid-chunk-size"
                    problem = (400, reason)
                    break
                chunk_size = int(digits[0], 16)
                if chunk_size == 0:
                    state = _CHUNK_TRAILER
                else:
                    state = _CHUNK_DATA
                    self._chunk_remaining = chunk_size
                continue
            # trailer section
            if not line:
                state = _CHUNK_DONE
                break
            self._trailer_bytes += len(line) + 2
            if len(self._trailer_lines) >= self._limit_fields:
                problem = (431, "too-many-fields")
                break
            if self._trailer_bytes > self._limit_head:
                problem = (431, "header-section-too-large")
                break
            reason = _field_line_problem(line)
            if reason:
                problem = (400, reason)
                break
            self._trailer_lines.append(line)
        self._chunk_state = state
        del buf[:offset]
        if pieces:
            data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            events.append(BodyReceived(stream_id=1, data=data))
        if problem is not None:
            self._violation(events, *problem)
        elif state == _CHUNK_DONE:
            trailers: Headers = []
            for line in self._trailer_lines:
                name, _, value = line.partition(b":")
                trailers.append((name.lower().decode("ascii"), value.strip(b" \t").decode("latin-1")))
            self._finish_body(events, trailers or None)

    # ------------------------------------------------------------------ sending

    def informational(self, status: int, headers: Headers) -> bytes:
        """Bytes of a 1xx response (100 Continue, 103 Early Hints); b"" for
        HTTP/1.0 clients, which must not receive one (RFC 9110 15.2)."""
        if not 100 <= status < 200 or status == 101:
            raise ValueError(f"not an informational status usable here: {status}")
        if self._response_started:
            raise RuntimeError("informational response after the final response head")
        if self._http10:
            return b""
        try:
            return self._h11.send(h11.InformationalResponse(
                status_code=status,
                headers=[(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers],
                reason=_phrase(status).encode("ascii"),
            ))
        except h11.LocalProtocolError as exc:
            raise ValueError(str(exc)) from exc

    def response_head(self, status: int, reason: str, headers: Headers) -> bytes:
        """Bytes of the status line and header section; framing headers are ours.

        An app-supplied Transfer-Encoding is dropped (framing is decided here);
        Content-Length is kept and enforced by body()/end()."""
        if self._response_started:
            raise RuntimeError("response head already sent")
        if not 200 <= status <= 999:
            raise ValueError(f"final response status out of range: {status}")
        no_body = status == 204 or status == 304 or self._method == b"HEAD"
        encoded: list[tuple[bytes, bytes]] = []
        has_length = False
        app_close = False
        for name, value in headers:
            lower = name.lower()
            if lower == "transfer-encoding":
                continue
            if lower == "content-length":
                if status == 204:
                    continue
                has_length = True
            elif lower == "connection" and "close" in _comma_tokens(value):
                app_close = True
            encoded.append((name.encode("latin-1"), value.encode("latin-1")))
        if app_close:
            self._keep_alive = False
        elif not self._keep_alive:
            encoded.append((b"Connection", b"close"))
        self._resp_no_body = no_body
        self._resp_chunked = not no_body and not has_length and not self._http10
        try:
            out = self._h11.send(h11.Response(
                status_code=status,
                headers=encoded,
                reason=(reason or _phrase(status)).encode("latin-1"),
            ))
        except (h11.LocalProtocolError, UnicodeEncodeError) as exc:
            self._keep_alive = False
            raise ValueError(f"response head rejected: {exc}") from exc
        self._response_started = True
        return out

    def body(self, data: bytes) -> bytes:
        """Frame a piece of the response body (chunked or raw); nothing for HEAD/204/304."""
        if not self._response_started or self._response_done:
            raise RuntimeError("body() outside a response")
        if not data or self._resp_no_body:
            return b""
        try:
            return self._h11.send(h11.Data(data=data))
        except h11.LocalProtocolError as exc:  # more than Content-Length promised
            self._keep_alive = False
            raise ValueError(str(exc)) from exc

    def end(self, trailers: Headers | None = None) -> bytes:
        """Finish the response. Trailers go out only on a chunked response to a
        client that sent "TE: trailers"; otherwise they are dropped."""
        if not self._response_started or self._response_done:
            raise RuntimeError("end() outside a response")
        encoded: list[tuple[bytes, bytes]] = []
        if trailers and self._resp_chunked and self._accepts_trailers:
            encoded = [
                (name.encode("latin-1"), value.encode("latin-1"))
                for name, value in trailers
                if name.lower() not in _FORBIDDEN_TRAILERS
            ]
        try:
            out = self._h11.send(h11.EndOfMessage(headers=encoded))
        except h11.LocalProtocolError as exc:  # fewer bytes than Content-Length promised
            self._keep_alive = False
            self._response_done = True
            raise ValueError(str(exc)) from exc
        self._response_done = True
        return out or b""

    def error_response(self, status: int, reason: str) -> bytes:
        """A complete minimal text/plain response with Connection: close, built
        by hand so it works whatever state h11 is in. `reason` is an optional
        detail (e.g. ProtocolViolation.reason) shown in the body."""
        phrase = _phrase(status)
        detail = "".join(ch for ch in reason if " " <= ch <= "~")
        text = f"{status} {phrase}\n" if not detail or detail == phrase else f"{status} {phrase}\n{detail}\n"
        payload = text.encode("ascii")
        head = (
            f"HTTP/1.1 {status} {phrase}\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(payload)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode("ascii")
        self._keep_alive = False
        self._response_started = self._response_done = True
        return head if self._method == b"HEAD" else head + payload

    # ------------------------------------------------------------------ lifecycle

    def start_next_request(self) -> list[Event]:
        """Begin the next exchange on a kept-alive connection and parse any
        request bytes that were already buffered (pipelining)."""
        if self._state == _CLOSED:
            return []
        if self._state != _DONE or not self._response_done:
            raise RuntimeError("the current request/response exchange is not complete")
        if not self.keep_alive:
            raise RuntimeError("connection is not reusable; close it")
        self._h11.start_next_cycle()
        self._reset_exchange()
        self._state = _HEAD
        events: list[Event] = []
        if self._buf:
            self._advance(events)
        if self._eof:
            if self._state == _HEAD:
                events.extend(self._eof_between_requests())
            elif self._state == _BODY:
                self._violation(events, 400, "incomplete")
        return events

    def close_after_response(self) -> None:
        """Shutdown: the current response carries Connection: close (if its head
        is not out yet) and the connection is not reused."""
        self._keep_alive = False

    def switching_protocols_response(self) -> bytes:
        """The 101 answer to an h2c upgrade; this object parses nothing afterwards.
        Collect bytes that followed the request with take_trailing_data()."""
        self._state = _CLOSED
        self._keep_alive = False
        self._response_started = self._response_done = True
        return _SWITCHING_PROTOCOLS

    h2c_upgrade_requested = staticmethod(h2c_upgrade_requested)

    def take_trailing_data(self) -> bytes:
        """Buffered bytes not parsed as HTTP/1.1 (after an h2c upgrade, or the
        HTTP/2 preface after an "h2-preface" violation). Clears the buffer."""
        data = bytes(self._buf)
        self._buf.clear()
        return data

    @property
    def trailing_data(self) -> bytes:
        """Buffered bytes not parsed as HTTP/1.1, without clearing them (see
        take_trailing_data)."""
        return bytes(self._buf)

    @property
    def keep_alive(self) -> bool:
        """Whether the connection may carry another request after this response."""
        return self._keep_alive and self._state != _CLOSED

    @property
    def accepts_trailers(self) -> bool:
        """The client sent "TE: trailers"."""
        return self._accepts_trailers

    @property
    def request_body_complete(self) -> bool:
        """The whole request body (and trailers) has been received."""
        return self._body_complete

    @property
    def pending_bytes(self) -> int:
        """Received bytes not yet consumed; a driver can stop reading above a threshold."""
        return len(self._buf)
