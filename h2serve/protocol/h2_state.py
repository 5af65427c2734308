"""The state one server-side HTTP/2 connection keeps beside h2's own, shared
by the parts of HTTP2Protocol: http2.py (frames in, credit), h2_requests.py
(events in) and h2_responses.py (frames out). Sans-I/O; the driver
serialises every call."""

from __future__ import annotations

from .events import Headers
from .floods import FloodGuard
from .h2_internals import ServerConnection
from .h2_limits import HTTP2Limits


class StreamRecord:
    """What we keep for a live stream; dropped as soon as it closes or resets."""

    __slots__ = (
        "content_length",
        "received",
        "unacked",
        "owed",
        "priority",
        "remote_ended",
        "trailers",
        "request_done",
        "header_weight",
    )

    def __init__(self, content_length: int | None, priority: dict, remote_ended: bool) -> None:
        self.content_length = content_length
        self.received = 0          # DATA payload bytes seen
        self.unacked = 0           # flow-controlled bytes handed to the app, not yet acknowledged
        self.owed = 0              # acknowledged bytes not yet returned on the stream window
        self.priority = priority
        self.remote_ended = remote_ended
        self.trailers: Headers | None = None
        self.request_done = remote_ended
        self.header_weight = 0     # extra reset-budget units if the client cancels it


class ProtocolState:
    """What HTTP2Protocol.__init__ sets up and its parts read and change."""

    limits: HTTP2Limits
    _conn: ServerConnection                # h2's state machines, windows, HPACK
    _streams: dict[int, StreamRecord]      # live streams
    _draining: dict[int, StreamRecord]     # answered, the request body still arriving
    _floods: FloodGuard
    _terminated: bool
    _outbound: bytearray                   # frames queued for the driver
