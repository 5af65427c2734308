"""Writing HTTP/1.1 responses: status lines, header sections, the framing
decision for the body, chunks, trailers and the canned answers.

Pure functions with no connection state: `HTTP1Protocol` (http1.py) passes
in what it knows of the exchange (the request's method and version, whether
the connection stays open) and keeps the framing decided here to apply it to
body() and end().

Header names must be tokens and values free of control characters other than
HTAB, so a value cannot smuggle CR/LF into the head; anything refused raises
ValueError. An app's Content-Length is kept (the protocol enforces it); its
Transfer-Encoding is dropped: framing is ours.
"""

from __future__ import annotations

import re
from http import HTTPStatus

from h2serve.protocol.events import Headers
from h2serve.protocol.http1_read import TOKEN_STR_RE, comma_tokens

__all__ = [
    "FORBIDDEN_TRAILERS",
    "RESP_CHUNKED",
    "RESP_CLOSE",
    "RESP_LENGTH",
    "RESP_NO_BODY",
    "SWITCHING_PROTOCOLS",
    "ResponseHead",
    "error_response",
    "informational_head",
    "response_head",
    "switching_protocols_response",
    "trailer_section",
]

# How the response body is framed once its head is out.
RESP_NO_BODY = 0  # HEAD, 204, 304: body bytes are dropped
RESP_LENGTH = 1  # the app's Content-Length, counted down
RESP_CHUNKED = 2  # HTTP/1.1 without Content-Length
RESP_CLOSE = 3  # HTTP/1.0 without Content-Length: the close ends the body

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
FORBIDDEN_TRAILERS = frozenset({
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

SWITCHING_PROTOCOLS = (
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
)


# A final response head: (bytes, body mode (a RESP_* value), the
# Content-Length to count down for RESP_LENGTH else 0, whether the head says
# Connection: close). A plain tuple: it is built once per response.
ResponseHead = tuple[bytes, int, int, bool]


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
    if TOKEN_STR_RE.fullmatch(name) is None:
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


def informational_head(status: int, headers: Headers) -> bytes:
    """Bytes of a 1xx head (100 Continue, 103 Early Hints), framing fields dropped."""
    return _encode_head(_field_lines(headers, _INFORMATIONAL_DROPPED), _status_line(status, ""))


def trailer_section(trailers: Headers) -> bytes:
    """The last chunk and the trailer section; fields that would change framing
    or routing are left out."""
    return _encode_head(_field_lines(trailers, FORBIDDEN_TRAILERS), "0\r\n")


def response_head(status: int, reason: str, headers: Headers, *, method: str, http10: bool,
                  keep_alive: bool) -> ResponseHead:
    """A final response head for a request with this method and version, and
    its body framing. Raises ValueError for a field or reason we must not send."""
    status_line = _STATUS_LINES.get((status, reason)) or _status_line(status, reason)
    lines, length, connection_fields = _app_fields(status, headers)
    closing = not keep_alive
    # The app's own Connection fields (rare: the WSGI layer strips them)
    # pass through while the connection stays open; when it closes they
    # fold into the one "Connection: close, ..." line written below.
    connection_tokens: set[str] = set()
    if connection_fields is not None:
        for _, value in connection_fields:
            connection_tokens.update(comma_tokens(value))
        if "close" in connection_tokens:
            closing = True
        elif not closing:
            lines.extend(f"{name}: {value}\r\n" for name, value in connection_fields)
    # HEAD gets the framing headers a GET would have (RFC 9110 9.3.2).
    if length is None and status != 204 and status != 304 and not http10:
        lines.append("Transfer-Encoding: chunked\r\n")
    if closing:
        connection_tokens.discard("keep-alive")
        connection_tokens.discard("close")
        lines.append(", ".join(["Connection: close", *sorted(connection_tokens)]) + "\r\n")
    lines.append("\r\n")
    data = _encode_head(lines, status_line)
    mode = _body_mode(status, method, length, http10)
    return data, mode, int(length) if mode == RESP_LENGTH else 0, closing


def _app_fields(status: int, headers: Headers) -> tuple[list[str], str | None, Headers | None]:
    """The app's field lines but for the framing ones, its one Content-Length
    (none on a 204, RFC 9110 8.6) and its Connection fields, placed later."""
    lines: list[str] = []
    length: str | None = None
    connection_fields: Headers | None = None
    checked = _CHECKED_NAMES.get
    for name, value in headers:
        lower = checked(name) or _checked_lower_name(name)
        if lower not in _RESPONSE_FRAMING_NAMES:
            lines.append(f"{name}: {value}\r\n")
        elif lower == "content-length":
            if status == 204:
                continue
            value = _response_content_length(value)
            if length is None:  # kept, as digits; equal repeats are dropped
                length = value
                lines.append(f"{name}: {value}\r\n")
            elif value != length:
                raise ValueError("conflicting Content-Length headers")
        elif lower == "connection":
            if connection_fields is None:
                connection_fields = []
            connection_fields.append((name, value))
    return lines, length, connection_fields


def _body_mode(status: int, method: str, length: str | None, http10: bool) -> int:
    if status == 204 or status == 304 or method == "HEAD":
        return RESP_NO_BODY
    if length is not None:
        return RESP_LENGTH
    return RESP_CLOSE if http10 else RESP_CHUNKED


def error_response(status: int, reason: str, *, head_request: bool) -> bytes:
    """A complete minimal text/plain response with Connection: close. `reason`
    is an optional detail (e.g. ProtocolViolation.reason) shown in the body,
    which a HEAD request does not get."""
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
    return head if head_request else head + payload


def switching_protocols_response() -> bytes:
    """The bytes of "101 Switching Protocols" to h2c."""
    return SWITCHING_PROTOCOLS
