"""Events the sans-I/O protocol classes hand to the connection drivers.

HTTP/1.1 and HTTP/2 speak the same small vocabulary, so the WSGI adapter and
the drivers never need to know which parser produced a request.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Headers = list[tuple[str, str]]


@dataclass(slots=True)
class RequestReceived:
    """A complete request head. Header names are lower-case str, values str
    (latin-1 decoded); HTTP/2 pseudo-headers are removed and carried in the
    fields below."""

    stream_id: int              # HTTP/2 stream id; 1 for HTTP/1.1 requests
    method: str
    target: str                 # request-target / :path, undecoded (path + "?" + query)
    headers: Headers
    authority: str | None       # :authority, else the Host header
    scheme: str | None          # :scheme (HTTP/2 only); never trusted for url_scheme
    http_version: str           # "1.0", "1.1" or "2"
    end_stream: bool = False    # True: no body follows
    priority: dict | None = None  # {"urgency": int, "incremental": bool, "weight": int|None, "depends_on": int|None}
    expect_continue: bool = False  # HTTP/1.1 "Expect: 100-continue"
    content_length: int | None = None


@dataclass(slots=True)
class BodyReceived:
    stream_id: int
    data: bytes
    flow_controlled_length: int = 0  # HTTP/2: credit to give back once the app consumed it


@dataclass(slots=True)
class BodyEnded:
    stream_id: int
    trailers: Headers | None = None


@dataclass(slots=True)
class StreamReset:
    """The peer reset this stream (HTTP/2) or the server reset it after an error."""

    stream_id: int
    error_code: int = 0


@dataclass(slots=True)
class WindowUpdated:
    """Send window grew: writers blocked on stream_id (0: every stream) may retry."""

    stream_id: int


@dataclass(slots=True)
class PriorityUpdated:
    stream_id: int
    priority: dict = field(default_factory=dict)


@dataclass(slots=True)
class ConnectionTerminated:
    """The peer sent GOAWAY, or the server answered a connection error with one.
    No new request will come on this connection."""

    error_code: int = 0
    last_stream_id: int = 0
    reason: str = ""


@dataclass(slots=True)
class ProtocolViolation:
    """Bad input. HTTP/1.1: `status` is the response to send (400/413/414/431/501)
    before closing. HTTP/2: the protocol class has already queued the GOAWAY or
    RST_STREAM; the driver logs it once."""

    reason: str
    status: int = 400
    stream_id: int = 0       # HTTP/2: 0 for a connection error
    error_code: int = 0      # HTTP/2 error code sent
