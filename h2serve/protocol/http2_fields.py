"""HTTP/2 header fields: request blocks checked as RFC 9113 asks, response
fields made ready to send. Sans I/O, no h2 state: plain functions over lists.

h2's own checks are a chain of generators, one pass over the block each,
and the protocol then walked the list again to split it; here a request
block is checked and split in one pass (parse_request_fields). Response
fields an application sends are mostly the same few pairs again and again,
so each distinct pair is checked and encoded once per process.
"""

from __future__ import annotations

import re

import h2.exceptions
from hpack import NeverIndexedHeaderTuple

from .events import Headers

# Fields that only make sense hop-by-hop in HTTP/1.1 (RFC 9113 section 8.2.2).
CONNECTION_SPECIFIC = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}
)

# -- requests --------------------------------------------------------------

_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_SCHEME = re.compile(rb"^[A-Za-z][A-Za-z0-9+\-.]*$")
_COMMON_METHODS = frozenset({b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"})
_WEB_SCHEMES = frozenset({b"http", b"https"})

# RFC 9113 section 8.2.1: a field name holds no controls, spaces, upper-case
# letters, DEL or non-ASCII bytes, and no colon past the first character.
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x40\x5b-\x7e]+")
# ... and a value holds no NUL, CR or LF, and no leading or trailing SP/HTAB.
_BAD_FIELD_VALUE = re.compile(rb"[\x00\n\r]|\A[ \t]|[ \t]\Z")
_REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path", b":protocol"})
CONNECTION_SPECIFIC_BYTES = frozenset(name.encode() for name in CONNECTION_SPECIFIC)


class RequestFields:
    """A request header block, validated and split in one pass.

    h2's own inbound checks are a chain of generators, one pass each, and
    HTTP2Protocol then walked the list again to split it; this is both, once.
    """

    __slots__ = ("pseudo", "headers", "list_size", "longest", "content_length", "priority", "host")

    def __init__(self) -> None:
        self.pseudo: dict[bytes, bytes] = {}
        self.headers: Headers = []            # regular fields, latin-1 text, cookies joined last
        self.list_size = 0                    # RFC 9113 size (name + value + 32 per field)
        self.longest = 0                      # longest name + value of one field
        self.content_length: int | None = None
        self.priority: list[str] = []         # Priority field values, in order
        self.host: str | None = None


def _check_field(name: bytes, value: bytes) -> None:
    """RFC 9113 8.2 rules for one regular field; raises ProtocolError."""
    if not _FIELD_NAME.fullmatch(name):
        raise h2.exceptions.ProtocolError(f"invalid field name {name!r}")
    if value and _BAD_FIELD_VALUE.search(value):
        raise h2.exceptions.ProtocolError(f"invalid value for field {name!r}")
    if name in CONNECTION_SPECIFIC_BYTES:
        raise h2.exceptions.ProtocolError(f"connection-specific field {name!r}")
    if name == b"te" and value.lower() != b"trailers":
        raise h2.exceptions.ProtocolError(f"te other than trailers: {value!r}")


def parse_request_fields(fields: list[tuple[bytes, bytes]]) -> RequestFields:
    """Validate a decoded request header block (RFC 9113 8.2 and 8.3).

    Raises h2.exceptions.ProtocolError for a malformed block (a stream error).
    """
    parsed = RequestFields()
    pseudo = parsed.pseudo
    headers = parsed.headers
    cookies: list[bytes] = []
    list_size = longest = 0
    for name, value in fields:
        if name[:1] == b":":
            if headers or cookies:
                raise h2.exceptions.ProtocolError(f"pseudo-header {name!r} after a regular field")
            if name not in _REQUEST_PSEUDO:
                raise h2.exceptions.ProtocolError(f"pseudo-header {name!r} not allowed in a request")
            if name in pseudo:
                raise h2.exceptions.ProtocolError(f"duplicate pseudo-header {name!r}")
            if value and _BAD_FIELD_VALUE.search(value):
                raise h2.exceptions.ProtocolError(f"invalid value for {name!r}")
            pseudo[name] = value
            list_size += len(name) + len(value) + 32
            continue
        _check_field(name, value)
        if name == b"cookie":
            cookies.append(value)  # joined below (RFC 9113 8.2.3)
            continue
        size = len(name) + len(value)
        list_size += size + 32
        if size > longest:
            longest = size
        text = value.decode("latin-1")
        headers.append((name.decode("latin-1"), text))
        if name == b"content-length":
            if not value.isdigit() or (
                parsed.content_length is not None and int(value) != parsed.content_length
            ):
                raise h2.exceptions.ProtocolError(f"invalid content-length {value!r}")
            parsed.content_length = int(value)
        elif name == b"host":
            if parsed.host is not None:
                raise h2.exceptions.ProtocolError("more than one host field")
            parsed.host = text
        elif name == b"priority":
            parsed.priority.append(text)
    if cookies:
        cookie = b"; ".join(cookies)
        size = len(cookie) + 6
        list_size += size + 32
        longest = max(longest, size)
        headers.append(("cookie", cookie.decode("latin-1")))
    parsed.list_size = list_size
    parsed.longest = longest

    method = pseudo.get(b":method")
    if method is None:
        raise h2.exceptions.ProtocolError("request without :method")
    if method == b"CONNECT" and b":protocol" not in pseudo:
        if b":scheme" in pseudo or b":path" in pseudo:
            raise h2.exceptions.ProtocolError("CONNECT with :scheme or :path")
    elif b":scheme" not in pseudo or not pseudo.get(b":path"):
        raise h2.exceptions.ProtocolError("request without :scheme or :path")
    authority = pseudo.get(b":authority")
    if authority is None and parsed.host is None:
        raise h2.exceptions.ProtocolError("request without :authority or host")
    if authority is not None and parsed.host is not None and authority.decode("latin-1") != parsed.host:
        raise h2.exceptions.ProtocolError(":authority and host differ")
    return parsed


def check_trailer_fields(fields: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Validate a trailer block (no pseudo-headers); cookies joined last."""
    checked: list[tuple[bytes, bytes]] = []
    cookies: list[bytes] = []
    for name, value in fields:
        if name[:1] == b":":
            raise h2.exceptions.ProtocolError(f"pseudo-header {name!r} in trailers")
        _check_field(name, value)
        if name == b"cookie":
            cookies.append(value)
        else:
            checked.append((name, value))
    if cookies:
        checked.append((b"cookie", b"; ".join(cookies)))
    return checked



def check_request_target(pseudo: dict[bytes, bytes]) -> str:
    """RFC 9113 section 8.3.1 checks of the pseudo-header values (the block
    itself passed parse_request_fields). Empty string: fine."""
    if b":protocol" in pseudo:
        return ":protocol without SETTINGS_ENABLE_CONNECT_PROTOCOL"
    method = pseudo.get(b":method", b"")
    if method not in _COMMON_METHODS and not _TOKEN.match(method):
        return "invalid :method"
    authority = pseudo.get(b":authority")
    if method == b"CONNECT":
        if not authority:
            return "CONNECT without :authority"
        return ""
    scheme = pseudo.get(b":scheme", b"")
    if scheme not in _WEB_SCHEMES and not _SCHEME.match(scheme):
        return "invalid :scheme"
    path = pseudo.get(b":path", b"")
    if scheme in _WEB_SCHEMES or scheme.lower() in _WEB_SCHEMES:
        if not (path.startswith(b"/") or (path == b"*" and method == b"OPTIONS")):
            return "invalid :path"
        if authority is not None and b"@" in authority:
            return ":authority with userinfo"
    return ""



# -- responses -------------------------------------------------------------

_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9a-z]+$")
_BAD_VALUE_CHARS = re.compile(r"[\x00\r\n]")

# Distinct response fields kept checked and encoded, and the largest kept.
CHECKED_FIELDS_KEPT = 1024
CHECKED_FIELD_MAX_SIZE = 256
_CHECKED_FIELDS: dict[tuple[str, str], tuple[bytes, bytes]] = {}
_DROPPED = (b"", b"")
# Kept out of HPACK's dynamic table (as h2 and nghttp2 do): guessable secrets.
_NEVER_INDEXED = frozenset({b"authorization", b"proxy-authorization"})



def _check_response_field(name: str, value: str) -> tuple[bytes, bytes]:
    """One response field as HTTP/2 sends it, _DROPPED if it is hop-by-hop;
    ValueError if it cannot be sent."""
    name = name.lower()
    if name in CONNECTION_SPECIFIC or name == "te":
        return _DROPPED
    if not _HEADER_NAME.match(name):
        raise ValueError(f"invalid response header name {name!r}")
    value = value.strip(" \t")
    if _BAD_VALUE_CHARS.search(value):
        raise ValueError(f"invalid value for response header {name!r}")
    name_bytes, value_bytes = name.encode("latin-1"), value.encode("latin-1")
    if name_bytes in _NEVER_INDEXED or (name_bytes == b"cookie" and len(value_bytes) < 20):
        return NeverIndexedHeaderTuple(name_bytes, value_bytes)
    return name_bytes, value_bytes



def response_fields(headers: Headers) -> list[tuple[bytes, bytes]]:
    """Lower-case names, drop connection-specific fields, refuse invalid ones.

    Raising here (ValueError) happens before h2 or HPACK see anything, so
    the connection stays usable and the caller can reset the stream.
    """
    fields: list[tuple[bytes, bytes]] = []
    for field in headers:
        checked = _CHECKED_FIELDS.get(field)
        if checked is None:
            name, value = field
            checked = _check_response_field(name, value)
            if len(name) + len(value) <= CHECKED_FIELD_MAX_SIZE:
                if len(_CHECKED_FIELDS) >= CHECKED_FIELDS_KEPT:
                    _CHECKED_FIELDS.clear()
                _CHECKED_FIELDS[field] = checked
        if checked is not _DROPPED:
            fields.append(checked)
    return fields
