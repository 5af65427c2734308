"""Sans-I/O HTTP/1.1 server protocol: a strict parser and a small exchange state machine.

Every received byte is vetted here against RFC 9112 and the configured limits
before anything is reported, and response bytes are built here too. There is
no third-party HTTP/1.1 library underneath: the exchange is small enough (one
request at a time, a response that follows it, then either the next request
or the end of the connection) to be tracked by a handful of fields, and
keeping it in one place lets the hot path stay a few C-level passes over each
head instead of per-field Python work.

Choices worth knowing:

* Bare LF line endings are rejected with 400 (RFC 9112 section 2.2 lets a
  server accept them; a proxy in front of us that does not would see another
  message boundary, which is the desync smuggling needs). A bare CR anywhere in
  the head is rejected too. Equal duplicate Content-Length values, obs-fold,
  loose Transfer-Encoding lists and malformed chunk extensions are refused.
* ``limit_request_field_size`` is measured on the whole field line with its
  CRLF ("Name: value\r\n"), as gunicorn does: the default 8190 allows a line of
  8188 bytes before the CRLF. The request line limit excludes CRLF (as gunicorn's).
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
* HTTP/1.0 connections are never kept alive: their responses may be
  close-delimited, and 1.0 keep-alive needs an opt-in few clients still send.
* A request without a body still produces ``BodyEnded`` right after
  ``RequestReceived(end_stream=True)``, so a driver can rely on BodyEnded alone.

Responses: an app's Content-Length is kept and enforced (more or fewer body
bytes raise ValueError and end keep-alive); without one the body is chunked
for HTTP/1.1 clients and close-delimited for HTTP/1.0. HEAD, 204 and 304 carry
no body. An app's Transfer-Encoding is dropped: framing is ours. Header names
must be tokens and values free of control characters other than HTAB, so a
value cannot smuggle CR/LF into the head.
"""

from __future__ import annotations

import base64
import binascii
import re
from http import HTTPStatus

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

# How the response body is framed once its head is out.
_RESP_NO_BODY = 0  # HEAD, 204, 304: body bytes are dropped
_RESP_LENGTH = 1  # the app's Content-Length, counted down
_RESP_CHUNKED = 2  # HTTP/1.1 without Content-Length
_RESP_CLOSE = 3  # HTTP/1.0 without Content-Length: the close ends the body

_MAX_CHUNK_LINE = 4096  # chunk-size plus extensions, without CRLF
_MAX_CHUNK_SIZE_DIGITS = 16  # 2**64 - 1 at most
_MAX_CONTENT_LENGTH_DIGITS = 18  # fits in a signed 64-bit integer

# --- request side. Heads are decoded once as latin-1 (one byte, one char), so
# the str patterns below see exactly the bytes on the wire.
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TOKEN_STR_RE = re.compile(_TOKEN)
_TOKEN_RE = re.compile(_TOKEN.encode("ascii"))
# Field value after OWS is stripped: VCHAR, obs-text, inner SP/HTAB. No CTLs.
_FIELD_VALUE_RE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
# Origin-form and friends: visible ASCII without "#" (no fragments on the wire).
_TARGET_RE = re.compile(r"[\x21\x22\x24-\x7e]+")
_ABSOLUTE_FORM_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://([^/?]*)(.*)")
_VERSION_RE = re.compile(r"HTTP/[0-9]\.[0-9]")
_HOST_RE = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=%:\[\]]*")
_CONTENT_LENGTH_RE = re.compile(rf"[0-9]{{1,{_MAX_CONTENT_LENGTH_DIGITS}}}")
_HEX_DIGITS_RE = re.compile(rb"[0-9A-Fa-f]+")
_QUOTED_STRING = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_CHUNK_EXT_RE = re.compile(
    rb"(?:[ \t]*;[ \t]*" + _TOKEN_RE.pattern + rb"(?:[ \t]*=[ \t]*(?:"
    + _TOKEN_RE.pattern + rb"|" + _QUOTED_STRING + rb"))?)*"
)
# One field line with its CRLF, anchored at a line start: token ":" OWS
# [value] OWS CRLF; groups are name and value. A value holds no CR or LF, so a
# match never spans two lines, and findall() returns one match per line exactly
# when every line is valid.
_FIELD_LINE_RE = re.compile(
    r"^(" + _TOKEN + r"):[ \t]*"
    r"([\x21-\x7e\x80-\xff](?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?[ \t]*\r\n",
    re.MULTILINE,
)
_BASE64URL_RE = re.compile(rb"[A-Za-z0-9_\-]*={0,2}")

_H2_PREFACE_LINE = b"PRI * HTTP/2.0\r\n"

# Methods that skip the token check (they are tokens).
# A well-formed HEAD request line: only then is a refused request known to be a HEAD.
_HEAD_REQUEST_LINE = re.compile(rb"HEAD [^\s]+ HTTP/1\.[01]\r\n")
_COMMON_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})

# Request fields that steer parsing, framing or connection handling.
_FRAMING_NAMES = frozenset({"host", "content-length", "transfer-encoding", "connection", "expect", "te"})

# --- response side.
# Response fields as one text ("Name: value\r\n" lines and the final CRLF):
# no control character but HTAB inside a line. Paired with a count of LFs equal
# to the number of lines, so a CRLF inside a value cannot pass for a line end.
_RESPONSE_FIELDS_RE = re.compile(r"(?:[^\x00-\x08\x0a-\x1f\x7f]*\r\n)*")
_REASON_RE = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")
_RESPONSE_CONTENT_LENGTH_RE = re.compile(r"[0-9]{1,20}")

# Response fields the framing code owns.
_RESPONSE_FRAMING_NAMES = frozenset({"content-length", "transfer-encoding", "connection"})
# A 1xx ends with its header section: these would only mislead.
_INFORMATIONAL_DROPPED = frozenset({"content-length", "transfer-encoding"})
# Response trailers that would change framing or routing are never sent.
_FORBIDDEN_TRAILERS = frozenset({
    "content-length", "transfer-encoding", "host", "connection", "keep-alive",
    "te", "trailer", "upgrade", "proxy-connection",
})

# Apps send the same few header names and status lines over and over. These
# remember the ones already checked (name -> lower-case name; (status, reason)
# -> status line), bounded so odd input cannot grow them without end. Plain
# dict get/set is safe to share between threads.
_CHECKED_NAMES: dict[str, str] = {}
_STATUS_LINES: dict[tuple[int, str], str] = {}
_CACHE_MAX = 512

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


def _status_line(status: int, reason: str) -> str:
    """ "HTTP/1.1 200 OK\\r\\n" for (status, reason); an empty reason takes the
    standard phrase. Cached: most responses reuse a handful of these."""
    line = _STATUS_LINES.get((status, reason))
    if line is None:
        phrase = reason or _phrase(status)
        if _REASON_RE.fullmatch(phrase) is None:
            raise ValueError(f"invalid reason phrase {phrase!r}")
        line = f"HTTP/1.1 {status} {phrase}\r\n"
        if len(_STATUS_LINES) < _CACHE_MAX:
            _STATUS_LINES[(status, reason)] = line
    return line


def _checked_lower_name(name: str) -> str:
    """The lower-case form of a response field name, once it is known to be a
    token (no CR, LF, colon or space can hide in it)."""
    if _TOKEN_STR_RE.fullmatch(name) is None:
        raise ValueError(f"invalid header name {name!r}")
    lower = name.lower()
    if len(_CHECKED_NAMES) < _CACHE_MAX:
        _CHECKED_NAMES[name] = lower
    return lower


def _response_content_length(value: str) -> str:
    """The app's Content-Length as digits; "5, 5" is folded to "5" as a
    recipient would, conflicting lists and non-digits are refused."""
    if _RESPONSE_CONTENT_LENGTH_RE.fullmatch(value) is not None:
        return value
    lengths = {item.strip() for item in value.split(",")}
    if len(lengths) == 1:
        (length,) = lengths
        if _RESPONSE_CONTENT_LENGTH_RE.fullmatch(length) is not None:
            return length
    raise ValueError(f"invalid Content-Length {value!r}")


def _encode_head(lines: list[str], start: str) -> bytes:
    """Join `start` (a checked status line, or "0\\r\\n" for trailers) and the
    field lines (each ending in CRLF; the last one is the empty line), vet them
    in one pass and encode them."""
    fields = "".join(lines)
    if fields.count("\n") != len(lines) or _RESPONSE_FIELDS_RE.fullmatch(fields) is None:
        raise ValueError("control character in a header name or value")
    return (start + fields).encode("latin-1")


def _field_lines(headers: Headers, dropped: frozenset[str]) -> list[str]:
    """ "Name: value\\r\\n" for each header whose lower-cased name is not in
    `dropped`, plus the closing empty line."""
    checked = _CHECKED_NAMES.get
    lines = []
    for name, value in headers:
        lower = checked(name) or _checked_lower_name(name)
        if lower not in dropped:
            lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    return lines


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
        "_limit_line", "_limit_fields", "_limit_field_size", "_limit_head", "_fast_head_limit",
        "_buf", "_state", "_eof",
        "_scan", "_head_start", "_line_count",
        "_method", "_http10", "_keep_alive", "_accepts_trailers",
        "_chunked", "_body_remaining", "_chunk_state", "_chunk_remaining",
        "_trailer_lines", "_trailer_bytes", "_body_complete",
        "_response_started", "_response_done", "_resp_mode", "_resp_remaining", "_resp_failed",
    )

    def __init__(
        self,
        *,
        limit_request_line: int = 4094,
        limit_request_fields: int = 100,
        limit_request_field_size: int = 8190,
        limit_request_head: int = 0,
    ) -> None:
        if limit_request_line <= 0 or limit_request_fields <= 0 or limit_request_field_size <= 0:
            raise ValueError("HTTP/1.1 request limits must be positive")
        self._limit_line = limit_request_line
        self._limit_fields = limit_request_fields
        self._limit_field_size = limit_request_field_size
        # Whole header section (leading empty lines, request line, fields, CRLFs).
        self._limit_head = limit_request_fields * limit_request_field_size + limit_request_line
        if limit_request_head > 0:
            # What a connection may hold of an unfinished head: fields x field size
            # alone allows ~800 KB per connection with the defaults.
            self._limit_head = min(self._limit_head, limit_request_head)
        # A complete head no longer than this cannot break a per-line or
        # whole-head limit, so it skips the line-by-line scan.
        self._fast_head_limit = min(
            limit_request_line, limit_request_field_size, self._limit_head - 4
        )
        self._buf = bytearray()
        self._state = _HEAD
        self._eof = False
        self._reset_exchange()

    def _reset_exchange(self) -> None:
        self._scan = 0
        self._head_start = 0
        self._line_count = 0
        self._method = ""  # "" until a request head is accepted: nothing to answer yet
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
        self._resp_mode = _RESP_NO_BODY
        self._resp_remaining = 0
        self._resp_failed = False

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
        if (self._state == _HEAD and not self._method
                and _HEAD_REQUEST_LINE.match(self._buf, self._head_start) is not None):
            # A HEAD rejected while its head is read: the error answer has no
            # body either (RFC 9110 9.3.2), so error_response must know.
            self._method = "HEAD"
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
        if self._line_count == 0 and self._scan == 0:
            # Fast path: the whole head is here and small enough that no line
            # limit can be hit; only line endings and the field count need a
            # look, and both are C-level counts. Anything unusual (leading
            # empty lines, bare LF, the HTTP/2 preface, too many fields) falls
            # through to the line-by-line scan, which names the problem.
            end = buf.find(b"\r\n\r\n")
            if 0 < end <= self._fast_head_limit and buf[0] != 0x0D and buf[0] != 0x0A:
                size = end + 4
                crlf_count = buf.count(b"\r\n", 0, size)
                if (
                    crlf_count == buf.count(b"\n", 0, size)
                    and crlf_count - 2 <= self._limit_fields
                    and not buf.startswith(_H2_PREFACE_LINE)
                ):
                    if size == len(buf):
                        head = bytes(buf)
                        buf.clear()
                    else:
                        head = bytes(buf[:size])
                        del buf[:size]
                    return self._process_head(head, events)
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
                elif partial > self._limit_field_size - 1:
                    # even if its last byte is the CR, line plus CRLF is over the limit
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
                if length + 2 > self._limit_field_size:   # the CRLF counts, as in gunicorn
                    return self._violation(events, 431, "field-too-large")
                if self._line_count > self._limit_fields:  # this line would be one too many
                    return self._violation(events, 431, "too-many-fields")
                self._line_count += 1
            pos = next_pos

    def _process_head(self, head: bytes, events: list[Event]) -> bool:
        """Check a complete head (every line ends in CRLF, limits already met)
        and emit RequestReceived; True when a body follows."""
        text = head.decode("latin-1")
        eol = text.find("\r\n")
        parts = text[:eol].split(" ")
        if len(parts) != 3:
            return self._violation(events, 400, "invalid-request-line")
        method, target, version = parts
        if method == "HEAD" and version in ("HTTP/1.1", "HTTP/1.0"):
            self._method = method  # for error_response, should this head be refused below
        if method not in _COMMON_METHODS and _TOKEN_STR_RE.fullmatch(method) is None:
            return self._violation(events, 400, "invalid-method")
        if version == "HTTP/1.1":
            http10 = False
        elif version == "HTTP/1.0":
            http10 = True
        elif _VERSION_RE.fullmatch(version) is not None:
            return self._violation(events, 505, "unsupported-version")
        else:
            return self._violation(events, 400, "invalid-request-line")
        if _TARGET_RE.fullmatch(target) is None:
            return self._violation(events, 400, "invalid-target")
        if method == "CONNECT":
            return self._violation(events, 501, "connect-unsupported")
        target_authority: str | None = None
        if target[0] == "/":  # origin-form, the common case
            path = target
        elif target == "*":
            if method != "OPTIONS":
                return self._violation(events, 400, "invalid-target")
            path = target
        else:
            match = _ABSOLUTE_FORM_RE.fullmatch(target)
            if match is None or not match[2] or "@" in match[2]:
                return self._violation(events, 400, "invalid-target")
            target_authority = match[2]
            path = match[3] or "/"
            if path[0] != "/":
                path = "/" + path

        # One C-level pass vets and splits every field line; only a failure
        # pays for the line-by-line diagnosis that names the problem.
        fields_start = eol + 2
        fields_end = len(text) - 2  # the closing empty line
        pairs = _FIELD_LINE_RE.findall(text, fields_start, fields_end)
        if len(pairs) != text.count("\n", fields_start, fields_end):
            for line in head[fields_start:fields_end].split(b"\r\n"):
                if line:
                    reason = _field_line_problem(line)
                    if reason:
                        return self._violation(events, 400, reason)
            return self._violation(events, 400, "invalid-field-line")
        headers: Headers = [(name.lower(), value) for name, value in pairs]

        host: str | None = None
        host_count = 0
        content_length_value: str | None = None
        content_length_count = 0
        transfer_encoding: str | None = None
        transfer_encoding_count = 0
        keep_alive = not http10
        expect_continue = False
        accepts_trailers = False
        for name, value in headers:
            if name not in _FRAMING_NAMES:
                continue
            if name == "host":
                host_count += 1
                if host is None:
                    host = value
            elif name == "content-length":
                content_length_count += 1
                if content_length_value is None:
                    content_length_value = value
            elif name == "transfer-encoding":
                transfer_encoding_count += 1
                if transfer_encoding is None:
                    transfer_encoding = value
            elif name == "connection":
                # The substring test spares the split for "keep-alive".
                if "close" in value.lower() and "close" in _comma_tokens(value):
                    keep_alive = False
            elif name == "expect":
                if not http10 and "100-continue" in _comma_tokens(value):
                    expect_continue = True
            elif name == "te":
                if any(item.split(";", 1)[0].strip() == "trailers" for item in _comma_tokens(value)):
                    accepts_trailers = True

        if host_count > 1:
            return self._violation(events, 400, "multiple-host")
        if host is None:
            if not http10:
                return self._violation(events, 400, "missing-host")
        elif _HOST_RE.fullmatch(host) is None:
            return self._violation(events, 400, "invalid-host")

        content_length: int | None = None
        chunked = False
        if transfer_encoding is not None:
            if content_length_count:
                return self._violation(events, 400, "content-length-and-transfer-encoding")
            if transfer_encoding_count > 1:
                return self._violation(events, 400, "multiple-transfer-encoding")
            if http10:
                return self._violation(events, 400, "transfer-encoding-in-http10")
            coding = transfer_encoding.lower()
            if coding != "chunked":
                items = [item.strip(" \t") for item in coding.split(",")]
                if not all(_TOKEN_STR_RE.fullmatch(item) for item in items):
                    return self._violation(events, 400, "invalid-transfer-encoding")
                if any(item != "chunked" for item in items):
                    return self._violation(events, 501, "unsupported-transfer-coding")
                return self._violation(events, 400, "invalid-transfer-encoding")
            chunked = True
        elif content_length_value is not None:
            if content_length_count > 1 or "," in content_length_value:
                return self._violation(events, 400, "duplicate-content-length")
            if _CONTENT_LENGTH_RE.fullmatch(content_length_value) is None:
                return self._violation(events, 400, "invalid-content-length")
            content_length = int(content_length_value)

        has_body = chunked or bool(content_length)
        self._method = method
        self._http10 = http10
        self._keep_alive = keep_alive
        self._accepts_trailers = accepts_trailers
        self._chunked = chunked
        self._body_remaining = content_length or 0
        events.append(RequestReceived(
            stream_id=1,
            method=method,
            target=path,
            headers=headers,
            authority=target_authority if target_authority is not None else host,
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
        """Emit body bytes straight from our buffer, framed by Content-Length or chunked."""
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
        if not self._method:
            raise ValueError("no request to answer")
        return _encode_head(_field_lines(headers, _INFORMATIONAL_DROPPED), _status_line(status, ""))

    def response_head(self, status: int, reason: str, headers: Headers) -> bytes:
        """Bytes of the status line and header section; framing headers are ours.

        An app-supplied Transfer-Encoding is dropped (framing is decided here);
        Content-Length is kept and enforced by body()/end()."""
        if self._response_started:
            raise RuntimeError("response head already sent")
        if not 200 <= status <= 999:
            raise ValueError(f"final response status out of range: {status}")
        try:
            if not self._method:
                raise ValueError("no request to answer")
            return self._response_head(status, reason, headers)
        except ValueError as exc:
            self._keep_alive = False
            raise ValueError(f"response head rejected: {exc}") from exc

    def _response_head(self, status: int, reason: str, headers: Headers) -> bytes:
        status_line = _STATUS_LINES.get((status, reason)) or _status_line(status, reason)
        lines: list[str] = []
        length: str | None = None
        connection_fields: Headers | None = None
        checked = _CHECKED_NAMES.get
        for name, value in headers:
            lower = checked(name) or _checked_lower_name(name)
            if lower in _RESPONSE_FRAMING_NAMES:
                if lower == "content-length":
                    if status == 204:
                        continue  # RFC 9110 8.6: never on a 204
                    value = _response_content_length(value)
                    if length is not None:
                        if value != length:
                            raise ValueError("conflicting Content-Length headers")
                        continue
                    length = value
                elif lower == "transfer-encoding":
                    continue
                else:  # connection: placed after the framing decision
                    if connection_fields is None:
                        connection_fields = []
                    connection_fields.append((name, value))
                    continue
            lines.append(f"{name}: {value}\r\n")

        closing = not self._keep_alive
        # The app's own Connection fields (rare: the WSGI layer strips them)
        # pass through while the connection stays open; when it closes they
        # fold into the one "Connection: close, ..." line written below.
        connection_tokens: set[str] = set()
        if connection_fields is not None:
            for _, value in connection_fields:
                connection_tokens.update(_comma_tokens(value))
            if "close" in connection_tokens:
                closing = True
            elif not closing:
                lines.extend(f"{name}: {value}\r\n" for name, value in connection_fields)
        # HEAD gets the framing headers a GET would have (RFC 9110 9.3.2).
        if length is None and status != 204 and status != 304 and not self._http10:
            lines.append("Transfer-Encoding: chunked\r\n")
        if closing:
            connection_tokens.discard("keep-alive")
            connection_tokens.discard("close")
            lines.append(", ".join(["Connection: close", *sorted(connection_tokens)]) + "\r\n")
        lines.append("\r\n")
        out = _encode_head(lines, status_line)

        if status == 204 or status == 304 or self._method == "HEAD":
            self._resp_mode = _RESP_NO_BODY
        elif length is not None:
            self._resp_mode = _RESP_LENGTH
            self._resp_remaining = int(length)
        elif self._http10:
            self._resp_mode = _RESP_CLOSE
        else:
            self._resp_mode = _RESP_CHUNKED
        if closing:
            self._keep_alive = False
        self._response_started = True
        return out

    def body(self, data: bytes) -> bytes:
        """Frame a piece of the response body (chunked or raw); nothing for HEAD/204/304."""
        if not self._response_started or self._response_done:
            raise RuntimeError("body() outside a response")
        mode = self._resp_mode
        if not data or mode == _RESP_NO_BODY:
            return b""
        if self._resp_failed:
            raise ValueError("the response already failed")
        if mode == _RESP_CHUNKED:
            return b"".join((b"%x\r\n" % len(data), data, b"\r\n"))
        if mode == _RESP_LENGTH:
            remaining = self._resp_remaining - len(data)
            if remaining < 0:
                self._resp_failed = True
                self._keep_alive = False
                raise ValueError(
                    f"{len(data)} body bytes exceed the {self._resp_remaining} left of Content-Length"
                )
            self._resp_remaining = remaining
        return data if type(data) is bytes else bytes(data)

    def end(self, trailers: Headers | None = None) -> bytes:
        """Finish the response. Trailers go out only on a chunked response to a
        client that sent "TE: trailers"; otherwise they are dropped."""
        if not self._response_started or self._response_done:
            raise RuntimeError("end() outside a response")
        self._response_done = True
        if self._resp_failed:
            raise ValueError("the response already failed")
        mode = self._resp_mode
        if mode == _RESP_CHUNKED:
            if trailers and self._accepts_trailers:
                try:
                    return _encode_head(_field_lines(trailers, _FORBIDDEN_TRAILERS), "0\r\n")
                except ValueError:
                    self._resp_failed = True
                    self._keep_alive = False
                    raise
            return b"0\r\n\r\n"
        if mode == _RESP_LENGTH and self._resp_remaining:
            self._resp_failed = True
            self._keep_alive = False
            raise ValueError(f"response ended {self._resp_remaining} bytes short of Content-Length")
        return b""

    def error_response(self, status: int, reason: str) -> bytes:
        """A complete minimal text/plain response with Connection: close, built
        so it works whatever state the exchange is in. `reason` is an optional
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
        return head if self._method == "HEAD" else head + payload

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
