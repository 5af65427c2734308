"""Reading HTTP/1.1 requests: a complete request head to an event, chunk-size
lines and trailer lines, each vetted against RFC 9112.

Pure functions with no connection state: `HTTP1Protocol` (http1.py) finds
the head's end under the configured limits and keeps the exchange's state;
what the bytes mean is decided here. A refusal is raised as `RequestRejected`
carrying the status to answer and a short reason, which the protocol turns
into a `ProtocolViolation`. Heads are decoded once as latin-1 (one byte, one
char), so the str patterns below see exactly the bytes on the wire.
"""

from __future__ import annotations

import base64
import binascii
import re

from h2serve.protocol.events import Headers, RequestReceived

__all__ = [
    "H2_PREFACE_LINE",
    "HEAD_REQUEST_LINE",
    "MAX_CHUNK_LINE",
    "ParsedHead",
    "RequestRejected",
    "chunk_size",
    "comma_tokens",
    "field_line_problem",
    "h2c_upgrade_requested",
    "parse_request_head",
]

MAX_CHUNK_LINE = 4096  # chunk-size plus extensions, without CRLF
_MAX_CHUNK_SIZE_DIGITS = 16  # 2**64 - 1 at most
_MAX_CONTENT_LENGTH_DIGITS = 18  # fits in a signed 64-bit integer

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
TOKEN_STR_RE = re.compile(_TOKEN)
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

H2_PREFACE_LINE = b"PRI * HTTP/2.0\r\n"

# A well-formed HEAD request line: only then is a refused request known to be a HEAD.
HEAD_REQUEST_LINE = re.compile(rb"HEAD [^\s]+ HTTP/1\.[01]\r\n")
# Methods that skip the token check (they are tokens).
_COMMON_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})

# Request fields that steer parsing, framing or connection handling.
_FRAMING_NAMES = frozenset({"host", "content-length", "transfer-encoding", "connection", "expect", "te"})


class RequestRejected(Exception):
    """Request bytes refused: the status to answer with and a short reason.

    `head_request` is True when the refused head had a well-formed HEAD
    request line, so the error answer must carry no body (RFC 9110 9.3.2)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.head_request = False


# An accepted request head: its event, then what the exchange keeps of it:
# (request, http10, keep_alive, accepts_trailers, chunked). A plain tuple: it
# is built once per request, on the hot path.
ParsedHead = tuple[RequestReceived, bool, bool, bool, bool]


def comma_tokens(value: str) -> list[str]:
    """Lower-cased members of a comma-separated field value, empties dropped."""
    return [item.strip(" \t").lower() for item in value.split(",") if item.strip(" \t")]


def field_line_problem(line: bytes) -> str:
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


# ---------------------------------------------------------------- the request head


def parse_request_head(head: bytes) -> ParsedHead:
    """Check a complete head (every line ends in CRLF, the size limits already
    met) and build its RequestReceived; raises RequestRejected.

    The checks run in a fixed order (request line, field lines, Host, body
    framing) so that one head always gets the same answer."""
    text = head.decode("latin-1")
    eol = text.find("\r\n")
    parts = text[:eol].split(" ")
    if len(parts) != 3:
        raise RequestRejected(400, "invalid-request-line")
    method, target, version = parts
    try:
        if method not in _COMMON_METHODS and TOKEN_STR_RE.fullmatch(method) is None:
            raise RequestRejected(400, "invalid-method")
        http10 = _is_http10(version)
        path, target_authority = _request_target(method, target)
        headers = _field_lines(head, text, eol + 2)
        framing = _framing_fields(headers)
        host = _request_host(framing.get("host"), http10)
        chunked, content_length = _body_framing(framing, http10)
    except RequestRejected as exc:
        exc.head_request = method == "HEAD" and version in ("HTTP/1.1", "HTTP/1.0")
        raise
    keep_alive, expect_continue, accepts_trailers = _connection_options(framing, http10)
    has_body = chunked or bool(content_length)
    request = RequestReceived(
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
    )
    return request, http10, keep_alive, accepts_trailers, chunked


def _is_http10(version: str) -> bool:
    """HTTP/1.1 or HTTP/1.0; any other well-formed version is answered 505."""
    if version == "HTTP/1.1":
        return False
    if version == "HTTP/1.0":
        return True
    if _VERSION_RE.fullmatch(version) is not None:
        raise RequestRejected(505, "unsupported-version")
    raise RequestRejected(400, "invalid-request-line")


def _request_target(method: str, target: str) -> tuple[str, str | None]:
    """The path (with query) and, for absolute-form, the target's authority
    (RFC 9112 3.2.2: it then wins over Host). CONNECT is refused here: a WSGI
    server has nothing to tunnel to."""
    if _TARGET_RE.fullmatch(target) is None:
        raise RequestRejected(400, "invalid-target")
    if method == "CONNECT":
        raise RequestRejected(501, "connect-unsupported")
    if target[0] == "/":  # origin-form, the common case
        return target, None
    if target == "*":
        if method != "OPTIONS":
            raise RequestRejected(400, "invalid-target")
        return target, None
    match = _ABSOLUTE_FORM_RE.fullmatch(target)
    if match is None or not match[2] or "@" in match[2]:
        raise RequestRejected(400, "invalid-target")
    path = match[3] or "/"
    if path[0] != "/":
        path = "/" + path
    return path, match[2]


def _field_lines(head: bytes, text: str, start: int) -> Headers:
    """The header fields, names lower-cased.

    One C-level pass vets and splits every field line; only a failure pays
    for the line-by-line diagnosis that names the problem."""
    end = len(text) - 2  # the closing empty line
    pairs = _FIELD_LINE_RE.findall(text, start, end)
    if len(pairs) != text.count("\n", start, end):
        raise RequestRejected(400, _first_field_problem(head[start:end]))
    return [(name.lower(), value) for name, value in pairs]


def _first_field_problem(fields: bytes) -> str:
    for line in fields.split(b"\r\n"):
        if line:
            reason = field_line_problem(line)
            if reason:
                return reason
    return "invalid-field-line"


def _framing_fields(headers: Headers) -> dict[str, list[str]]:
    """The values of the fields that steer framing and the connection, by name
    (most requests carry only Host of these)."""
    found: dict[str, list[str]] = {}
    for name, value in headers:
        if name in _FRAMING_NAMES:
            values = found.get(name)
            if values is None:
                found[name] = [value]
            else:
                values.append(value)
    return found


def _request_host(values: list[str] | None, http10: bool) -> str | None:
    """The one Host value; HTTP/1.1 requires it (RFC 9112 3.2)."""
    if values is None:
        if not http10:
            raise RequestRejected(400, "missing-host")
        return None
    if len(values) > 1:
        raise RequestRejected(400, "multiple-host")
    host = values[0]
    if _HOST_RE.fullmatch(host) is None:
        raise RequestRejected(400, "invalid-host")
    return host


def _body_framing(framing: dict[str, list[str]], http10: bool) -> tuple[bool, int | None]:
    """(chunked, Content-Length) of the request body. Anything a proxy in
    front of us could read another way is refused: that difference is what
    request smuggling needs."""
    codings = framing.get("transfer-encoding")
    if codings is not None:
        _check_transfer_encoding(codings, "content-length" in framing, http10)
        return True, None
    lengths = framing.get("content-length")
    if lengths is None:
        return False, None
    return False, _content_length(lengths)


def _check_transfer_encoding(values: list[str], has_content_length: bool, http10: bool) -> None:
    """Transfer-Encoding must be the single coding "chunked" (case-insensitive;
    surrounding OWS is not part of a field value). Other codings answer 501,
    malformed lists and repeats 400."""
    if has_content_length:
        raise RequestRejected(400, "content-length-and-transfer-encoding")
    if len(values) > 1:
        raise RequestRejected(400, "multiple-transfer-encoding")
    if http10:
        raise RequestRejected(400, "transfer-encoding-in-http10")
    coding = values[0].lower()
    if coding == "chunked":
        return
    items = [item.strip(" \t") for item in coding.split(",")]
    if not all(TOKEN_STR_RE.fullmatch(item) for item in items):
        raise RequestRejected(400, "invalid-transfer-encoding")
    if any(item != "chunked" for item in items):
        raise RequestRejected(501, "unsupported-transfer-coding")
    raise RequestRejected(400, "invalid-transfer-encoding")


def _content_length(values: list[str]) -> int:
    """One Content-Length of digits; even equal duplicates ("5, 5") are refused."""
    value = values[0]
    if len(values) > 1 or "," in value:
        raise RequestRejected(400, "duplicate-content-length")
    if _CONTENT_LENGTH_RE.fullmatch(value) is None:
        raise RequestRejected(400, "invalid-content-length")
    return int(value)


def _connection_options(framing: dict[str, list[str]], http10: bool) -> tuple[bool, bool, bool]:
    """(keep-alive, Expect: 100-continue, TE: trailers). HTTP/1.0 is never
    kept alive: its responses may be close-delimited, and 1.0 keep-alive needs
    an opt-in few clients still send. A 1.0 client gets no 100 Continue."""
    keep_alive = not http10
    connection = framing.get("connection")
    if keep_alive and connection is not None:
        # The substring test spares the split for "keep-alive".
        keep_alive = not any(
            "close" in value.lower() and "close" in comma_tokens(value) for value in connection
        )
    expect = framing.get("expect")
    expect_continue = expect is not None and not http10 and any(
        "100-continue" in comma_tokens(value) for value in expect
    )
    te = framing.get("te")
    accepts_trailers = te is not None and any(
        item.split(";", 1)[0].strip() == "trailers" for value in te for item in comma_tokens(value)
    )
    return keep_alive, expect_continue, accepts_trailers


# ---------------------------------------------------------------- chunked bodies


def chunk_size(line: bytes) -> int:
    """The size on a chunk-size line (without CRLF); extensions are checked
    and ignored."""
    digits = _HEX_DIGITS_RE.match(line)
    if digits is None or digits.end() > _MAX_CHUNK_SIZE_DIGITS:
        raise RequestRejected(400, "invalid-chunk-size")
    rest = line[digits.end():]
    if rest and _CHUNK_EXT_RE.fullmatch(rest) is None:
        reason = "invalid-chunk-extension" if rest[0] in b" \t;" else "invalid-chunk-size"
        raise RequestRejected(400, reason)
    return int(digits[0], 16)


def trailer_fields(lines: list[bytes]) -> Headers:
    """Checked trailer lines (without CRLF) as fields, names lower-cased."""
    trailers: Headers = []
    for line in lines:
        name, _, value = line.partition(b":")
        trailers.append((name.lower().decode("ascii"), value.strip(b" \t").decode("latin-1")))
    return trailers


# ---------------------------------------------------------------- h2c upgrade


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
            upgrade_tokens.extend(comma_tokens(value))
        elif name == "connection":
            connection_tokens.extend(comma_tokens(value))
        elif name == "http2-settings":
            settings_values.append(value)
    if "h2c" not in upgrade_tokens or len(settings_values) != 1:
        return None
    if "upgrade" not in connection_tokens or "http2-settings" not in connection_tokens:
        return None
    return _decode_http2_settings(settings_values[0])


def _decode_http2_settings(value: str) -> bytes | None:
    """HTTP2-Settings is base64url, padding optional; None when malformed."""
    encoded = value.strip(" \t").encode("latin-1")
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
