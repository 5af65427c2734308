"""Sans-I/O HTTP/2 server protocol built on the ``h2`` state machine.

Bytes go in through :meth:`HTTP2Protocol.receive`, events from
:mod:`h2serve.protocol.events` come out; response calls queue bytes that
:meth:`HTTP2Protocol.data_to_send` hands back. No sockets, no threads, no
locking: the connection driver serialises every call.

``h2`` does most of RFC 9113, but a few of its answers are not the ones the
RFC asks for: :class:`h2serve.protocol.h2_internals.ServerConnection`
overrides the frame handlers where that matters (the list is there, with
everything else that relies on h2's private internals).

h2's own header checks are switched off: http2_fields.py does them in one
pass (and a request block's split with them), and hpack_cache.py skips HPACK
for blocks that repeat; both measured in docs/performance.md.

When the application is done with a stream whose request is still being
sent (:meth:`HTTP2Protocol.finish_stream`), the stream is not reset at once:
it stays half-closed (local) and "drains". The rest of the body is discarded
but credited as if read (some clients, httpx among them, wait for window
forever after a RST_STREAM(NO_ERROR) in the middle of an upload), and every
frame is still judged as RFC 9113 says for that state, so the answer to a
frame never depends on whether the app happened to finish before it came.
The stream leaves the application's count at once; it gives up its
concurrency slot with RST_STREAM(NO_ERROR) (section 8.1 allows it) only when
a new stream would otherwise be refused.

Inbound bytes are split into frames here before h2 sees them, so that a
frame longer than our SETTINGS_MAX_FRAME_SIZE is refused from its header
(h2 would first buffer up to 16 MiB of it), the preface is checked byte by
byte, and events produced before a connection error are not lost.

That splitter is also where floods are counted (docs/security.md), with no
help from the driver beyond the events it already handles: a reset budget
(the client's cancels of live streams, plus the resets and 431s its frames
make us send, against completed responses: rapid reset and MadeYouReset), a
control-frame budget (PING, SETTINGS, PRIORITY, empty and redundant frames,
and window updates that return no used credit), header blocks bounded in
bytes and frames before they are buffered, a cap on requests per connection,
and deadlines for the preface and for each header block (check_timeouts).
Exceeding a budget queues GOAWAY ENHANCE_YOUR_CALM and reports
ProtocolViolation plus ConnectionTerminated. receive() can also stop at a
deadline and keep the remaining frames (has_backlog), so the caller can give
other connections their turn.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.frame_buffer
import h2.settings
import h2.stream
from hyperframe.frame import Frame, GoAwayFrame, RstStreamFrame

from h2serve import metrics

from .events import (
    BodyEnded,
    BodyReceived,
    ConnectionTerminated,
    Headers,
    PriorityUpdated,
    ProtocolViolation,
    RequestReceived,
    StreamReset,
    WindowUpdated,
)
from .h2_internals import (
    FRAME_TYPE_PRIORITY_UPDATE,
    CompactSettings,
    PriorityUpdateReceived,
    ServerConnection,
    StreamRejected,
    break_reference_cycle,
    use_compact_settings,
)
from .hpack_cache import CachingDecoder, CachingEncoder
from .http2_fields import (
    RequestFields,
    check_request_target,
    response_fields,
)
from .quick_frames import (
    FLAG_END_HEADERS,
    FLAG_END_STREAM,
    FRAME_TYPE_CONTINUATION,
    FRAME_TYPE_DATA,
    FRAME_TYPE_HEADERS,
    data_frame,
    frame_header,
    headers_frame,
)

ErrorCodes = h2.errors.ErrorCodes
SettingCodes = h2.settings.SettingCodes

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER_LEN = 9
FRAME_TYPE_PRIORITY = 0x2
FRAME_TYPE_RST_STREAM = 0x3
FRAME_TYPE_SETTINGS = 0x4
FRAME_TYPE_PING = 0x6
FRAME_TYPE_GOAWAY = 0x7
FRAME_TYPE_WINDOW_UPDATE = 0x8
FLAG_ACK = 0x1
FLAG_PADDED = 0x8
# h2 refuses a header block of more CONTINUATION frames than this with
# PROTOCOL_ERROR; we answer the same flood first, with ENHANCE_YOUR_CALM.
MAX_CONTINUATION_FRAMES = h2.frame_buffer.CONTINUATION_BACKLOG
# The flood budgets refill by a tenth of their size per second: a well-behaved
# client never notices them, a flood meets them within a fraction of a second.
BUDGET_REFILL_S = 10.0
# Requests earn back budget: one window raise and one reprioritisation each.
CONTROL_REFUND_PER_REQUEST = 2
# A reset (or 431) costs one unit of the reset budget, plus one per this many
# bytes (RFC 9113 size) of header block it made us decode: the budget follows CPU.
HEADER_BYTES_PER_RESET = 4096
MAX_WINDOW = 2**31 - 1
# Upper bound on the connection receive window we advertise.
MAX_CONNECTION_WINDOW = 16 * 1024 * 1024

_SF_KEY = re.compile(r"^[a-z*][a-z0-9_\-.*]*$")
_SF_INTEGER = re.compile(r"^-?[0-9]{1,15}$")

DEFAULT_URGENCY = 3
# Longest Priority field value parsed: real ones are a few bytes ("u=1, i"); a
# longer one is ignored whole, so a 16 KB PRIORITY_UPDATE costs no more CPU
# or memory than a short one.
MAX_PRIORITY_FIELD = 1024

@dataclass
class HTTP2Limits:
    """Per-connection limits; advertised in our SETTINGS where HTTP/2 has one."""

    max_concurrent_streams: int = 100
    initial_window_size: int = 65535          # our receive window per stream
    # Our receive window for the whole connection: request body bytes the client
    # may send before the application reads them, over all its streams together
    # (0: the streams' windows added up, at most MAX_CONNECTION_WINDOW).
    connection_window_size: int = 0
    max_frame_size: int = 16384
    max_header_list_size: int = 65536
    limit_request_fields: int = 100
    limit_request_field_size: int = 8190
    # Flood defences (0 disables each); see docs/security.md.
    max_requests: int = 1000          # requests per connection, then a graceful GOAWAY
    reset_budget: int = 200           # resets (client's, or ours for client errors) beyond completed requests
    max_control_frames: int = 1000    # PING, SETTINGS, PRIORITY, empty and redundant frames
    dribble_frame_size: int = 1024    # flow-control credit below this is not worth a DATA frame
    stall_timeout: float = 5.0        # seconds for the preface, and for each header block


class _Budget:
    """A leaky bucket: charges fill it, refunds and time drain it (a tenth of
    its size per second). Past its size the connection is abusing us."""

    __slots__ = ("size", "level", "stamp", "clock")

    def __init__(self, size: int, clock: Callable[[], float]) -> None:
        self.size = size
        self.level = 0.0
        self.clock = clock
        self.stamp = clock()

    def charge(self, cost: float = 1) -> bool:
        """Add `cost`; True once the bucket overflows."""
        if self.size <= 0:
            return False
        now = self.clock()
        drained = (now - self.stamp) * self.size / BUDGET_REFILL_S
        self.stamp = now
        self.level = max(0.0, self.level - drained) + cost
        return self.level > self.size

    def refund(self, amount: float) -> None:
        self.level = max(0.0, self.level - amount)


# --------------------------------------------------------------------------
# RFC 9218 priority parsing.


def _split_top_level(text: str, sep: str) -> list[str] | None:
    """Split on `sep` outside quoted strings and parentheses; None if unbalanced."""
    parts: list[str] = []
    depth = 0
    in_string = False
    escaped = False
    start = 0
    for index, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                return None
        elif char == sep and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    if in_string or depth:
        return None
    parts.append(text[start:])
    return parts


def parse_priority_field(value: str | None) -> dict:
    """Parse an RFC 9218 Priority field value (an RFC 8941 dictionary).

    Returns {"urgency": 0..7, "incremental": bool}. A value that does not parse
    as a dictionary is ignored as a whole; out-of-range or mistyped u / i
    members and unknown keys are ignored one by one (RFC 9218 section 4).
    """
    priority = {"urgency": DEFAULT_URGENCY, "incremental": False}
    if not value or len(value) > MAX_PRIORITY_FIELD or not value.strip(" \t"):
        return priority
    members = _split_top_level(value, ",")
    if members is None:
        return priority
    parsed: dict[str, str | None] = {}
    for member in members:
        member = member.strip(" \t")
        if not member:
            return {"urgency": DEFAULT_URGENCY, "incremental": False}
        item = (_split_top_level(member, ";") or [member])[0].strip(" \t")
        key, has_value, bare = item.partition("=")
        if not _SF_KEY.match(key):
            return {"urgency": DEFAULT_URGENCY, "incremental": False}
        parsed[key] = bare if has_value else None
    urgency = parsed.get("u", "absent")
    if urgency not in ("absent", None) and _SF_INTEGER.match(urgency):
        number = int(urgency)
        if 0 <= number <= 7:
            priority["urgency"] = number
    if "i" in parsed:
        incremental = parsed["i"]
        if incremental is None or incremental == "?1":
            priority["incremental"] = True
        elif incremental == "?0":
            priority["incremental"] = False
    return priority


# --------------------------------------------------------------------------
# Per-stream bookkeeping.


class _StreamRecord:
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


# --------------------------------------------------------------------------


_SENDABLE_STATES = (h2.stream.StreamState.OPEN, h2.stream.StreamState.HALF_CLOSED_REMOTE)


def response_head(status: int, headers: Headers) -> list[tuple[bytes, bytes]]:
    """The checked field list of a final response head, :status first.

    Pure and thread-safe, so an app thread can raise on a bad status or field
    before handing the response to the thread that frames it."""
    if not 200 <= status <= 999:
        raise ValueError(f"invalid final status {status}")
    return [(b":status", str(status).encode())] + response_fields(headers)


class HTTP2Protocol:
    """One server-side HTTP/2 connection, sans I/O."""

    def __init__(self, limits: HTTP2Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            # parse_request_fields and check_trailer_fields do both, in one pass.
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
            # response_fields (http2_fields.py) does what h2's outbound checks would.
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        # Decode up to twice the advertised list size so an oversized (but not
        # abusive) block can still get a clean 431 instead of a dead connection.
        decode_limit = max(2 * limits.max_header_list_size, 16384)
        self._conn = ServerConnection(config, decode_limit, CachingEncoder(), CachingDecoder())
        use_compact_settings(self._conn)
        self._conn.local_settings = CompactSettings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
                SettingCodes.INITIAL_WINDOW_SIZE: limits.initial_window_size,
                SettingCodes.MAX_FRAME_SIZE: limits.max_frame_size,
                SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_list_size,
                SettingCodes.ENABLE_PUSH: 0,
            },
        )
        # ENABLE_CONNECT_PROTOCOL stays at its default 0 and is not advertised.
        del self._conn.local_settings[SettingCodes.ENABLE_CONNECT_PROTOCOL]
        self._conn.max_inbound_frame_size = limits.max_frame_size
        self._connection_window = max(65535, limits.connection_window_size or min(
            MAX_CONNECTION_WINDOW, limits.initial_window_size * max(1, limits.max_concurrent_streams)))
        self._outbound = bytearray()
        self._inbound = bytearray()
        self._preface_seen = 0        # bytes of the client preface matched so far
        self._settings_seen = False   # first frame after the preface checked
        self._streams: dict[int, _StreamRecord] = {}
        # Streams the app is done with while the client is still sending, oldest first.
        self._draining: dict[int, _StreamRecord] = {}
        self._pending_priority: dict[int, tuple[int, bool]] = {}  # stream -> (urgency, incremental)
        self._connection_owed = 0
        self._terminated = False
        self._goaway_sent = False
        self._peer_goaway = False     # the client said it opens no more streams
        # Flood accounting (docs/security.md).
        self._started_at = clock()
        self._requests = 0
        self._client_resets = 0       # RST_STREAM from the client on streams the app still had
        self._resets = _Budget(limits.reset_budget, clock)
        self._control = _Budget(limits.max_control_frames, clock)
        self._control_overflow = ""   # set when our own sending overflowed the control budget
        self._settings_acks = 0
        self._goaways_received = 0
        self._window_peak = 65535     # the largest connection send window the client granted
        self._block_started = 0.0     # when the header block still waiting for END_HEADERS began
        self._block_bytes = 0
        self._block_frames = 0
        self._cap_goaway_due = False   # max_requests reached, its GOAWAY not sent yet
        self._until: float | None = None  # receive()'s time slice ends then

    # -- connection setup ---------------------------------------------------

    def initiate(
        self,
        upgrade_settings: bytes | None = None,
        upgrade_request: RequestReceived | None = None,
    ) -> list:
        """Queue the server preface; for h2c Upgrade also adopt stream 1.

        `upgrade_settings` is the raw HTTP2-Settings header value (base64url,
        padding optional). Returns the upgraded request (stream 1) if any.
        """
        events: list = []
        if upgrade_request is None and upgrade_settings is None:
            self._conn.initiate_connection()
        else:
            header = (upgrade_settings or b"").strip()
            header += b"=" * (-len(header) % 4)
            try:
                base64.urlsafe_b64decode(header)  # validates before h2 applies it
                self._conn.initiate_upgrade_connection(header)
            except Exception as exc:  # binascii.Error, hyperframe and h2 errors alike
                return self._connection_error(
                    ErrorCodes.PROTOCOL_ERROR, f"invalid HTTP2-Settings: {exc}"
                )
            if upgrade_request is not None:
                request = dataclasses.replace(upgrade_request, stream_id=1, end_stream=True)
                request.priority = request.priority or self._priority_dict(
                    {"urgency": DEFAULT_URGENCY, "incremental": False}, None, None
                )
                self._streams[1] = _StreamRecord(
                    request.content_length, request.priority, remote_ended=True
                )
                events.append(request)
        self._grow_connection_window()
        self._pull()
        return events

    def _grow_connection_window(self) -> None:
        extra = self._connection_window - 65535
        if extra > 0:
            self._conn.increment_flow_control_window(extra)

    # -- inbound ------------------------------------------------------------

    def dispose(self) -> None:
        """The connection is gone: receive nothing more, and free h2's state now
        rather than at the next full garbage collection."""
        self._terminated = True
        break_reference_cycle(self._conn)

    def receive(self, data: bytes, until: float | None = None) -> list:
        """Feed received bytes; return the events they complete.

        With `until` (a time of the protocol's clock), frames left when it
        passes stay buffered (see has_backlog) for a later call, so that one
        connection's flood cannot hold the caller's thread for long."""
        if self._terminated:
            return []
        self._inbound += data
        self._until = until
        events: list = []
        try:
            self._feed_frames(events)
        except Exception as exc:  # never let anything escape into the driver
            if not self._terminated:
                events.extend(
                    self._connection_error(ErrorCodes.INTERNAL_ERROR, f"internal error: {exc!r}")
                )
        self._pull()
        return self._drop_cancelled(events)

    @property
    def has_backlog(self) -> bool:
        """A complete frame is buffered that receive() left for later."""
        inbound = self._inbound
        if self._terminated or self._preface_seen < len(PREFACE) or len(inbound) < FRAME_HEADER_LEN:
            return False
        length = int.from_bytes(inbound[:3], "big")
        return len(inbound) >= FRAME_HEADER_LEN + length or length > self._conn.max_inbound_frame_size

    @staticmethod
    def _drop_cancelled(events: list) -> list:
        """A request reset in the same read that opened it never reaches the app:
        rapid reset (CVE-2023-44487) then costs a dictionary entry, not a thread."""
        reset_ids = {e.stream_id for e in events if type(e) is StreamReset}
        if not reset_ids:
            return events
        cancelled = {e.stream_id for e in events if type(e) is RequestReceived} & reset_ids
        if not cancelled:
            return events
        return [e for e in events
                if type(e) is ProtocolViolation or getattr(e, "stream_id", 0) not in cancelled]

    def check_timeouts(self) -> list:
        """Call now and then (the driver does, on its tick). A client preface, or a
        header block, still incomplete after `stall_timeout` ends the connection:
        a slowloris over HTTP/2 holds nothing for long."""
        timeout = self.limits.stall_timeout
        if self._terminated or timeout <= 0:
            return []
        now = self._clock()
        if not self._settings_seen and now - self._started_at > timeout:
            return self._connection_error(
                ErrorCodes.NO_ERROR, f"client preface not complete within {timeout:g} s")
        if self._block_started and now - self._block_started > timeout:
            return self._connection_error(
                ErrorCodes.ENHANCE_YOUR_CALM, f"header block not complete within {timeout:g} s")
        return []

    def _feed_frames(self, events: list) -> None:
        inbound = self._inbound
        if self._preface_seen < len(PREFACE):
            take = min(len(PREFACE) - self._preface_seen, len(inbound))
            expected = PREFACE[self._preface_seen : self._preface_seen + take]
            if bytes(inbound[:take]) != expected:
                events.extend(self._connection_error(ErrorCodes.PROTOCOL_ERROR, "invalid preface"))
                return
            self._preface_seen += take
            if not self._h2_receive(bytes(inbound[:take]), events):
                return
            del inbound[:take]
            if self._preface_seen < len(PREFACE):
                return
        first = True
        while not self._terminated and len(inbound) >= FRAME_HEADER_LEN:
            if not first and self._until is not None and self._clock() >= self._until:
                return  # the caller's time slice is over; has_backlog tells it to come back
            first = False
            length = int.from_bytes(inbound[:3], "big")
            frame_type = inbound[3]
            flags = inbound[4]
            stream_id = int.from_bytes(inbound[5:9], "big") & 0x7FFFFFFF
            if not self._settings_seen:
                if frame_type != FRAME_TYPE_SETTINGS or flags & 0x1:
                    events.extend(
                        self._connection_error(
                            ErrorCodes.PROTOCOL_ERROR, "preface not followed by SETTINGS"
                        )
                    )
                    return
                self._settings_seen = True
            if length > self._conn.max_inbound_frame_size:
                events.extend(
                    self._connection_error(
                        ErrorCodes.FRAME_SIZE_ERROR, f"frame of {length} bytes exceeds our limit"
                    )
                )
                return
            if frame_type == FRAME_TYPE_SETTINGS and flags & 0x1 and length:
                # RFC 9113 6.5 (h2 says PROTOCOL_ERROR).
                events.extend(
                    self._connection_error(
                        ErrorCodes.FRAME_SIZE_ERROR, "SETTINGS acknowledgement with a payload"
                    )
                )
                return
            if len(inbound) < FRAME_HEADER_LEN + length:
                return
            frame_bytes = bytes(inbound[: FRAME_HEADER_LEN + length])
            del inbound[: FRAME_HEADER_LEN + length]
            abuse = self._control_overflow or self._account_frame(
                frame_type, flags, length, stream_id, frame_bytes)
            if abuse:
                events.extend(self._connection_error(ErrorCodes.ENHANCE_YOUR_CALM, abuse))
                return
            if frame_type == FRAME_TYPE_HEADERS and self._draining:
                self._make_room_for(stream_id)
            errors_before = self._conn.errors_answered
            resets_before = self._client_resets
            if not (stream_id and self._stream_error_frame(
                    frame_type, length, stream_id, frame_bytes, events)):
                self._h2_receive(frame_bytes, events,
                                 self._quick_frame(frame_type, flags, stream_id, frame_bytes))
            if self._terminated:
                return
            if not self._conn.header_block_open():
                self._block_started = 0.0
            charged = (self._conn.errors_answered - errors_before
                       + self._client_resets - resets_before)
            if charged and self._resets.charge(charged):
                events.extend(self._connection_error(
                    ErrorCodes.ENHANCE_YOUR_CALM,
                    f"too many reset streams (reset budget {self.limits.reset_budget})"))
                return

    def _account_frame(
        self, frame_type: int, flags: int, length: int, stream_id: int, frame_bytes: bytes
    ) -> str:
        """Charge a frame that makes us work without advancing any request to the
        control-frame budget, and bound header blocks. Returns why the connection
        must end (ENHANCE_YOUR_CALM), or "" to go on."""
        cost = 0
        kind = ""
        if frame_type == FRAME_TYPE_HEADERS:
            if self._cap_goaway_due and stream_id > self._conn.highest_inbound_stream_id:
                self._send_cap_goaway()  # before the refusal it explains
            if not flags & FLAG_END_HEADERS and not self._block_started:
                self._block_started = self._clock()
                self._block_bytes = length
                self._block_frames = 0
        elif frame_type == FRAME_TYPE_CONTINUATION:
            if self._block_started:
                self._block_bytes += length
                self._block_frames += 1
                if self._block_bytes > self._conn.decode_limit:
                    return f"header block above {self._conn.decode_limit} bytes"
                if self._block_frames >= MAX_CONTINUATION_FRAMES:
                    return f"header block of more than {MAX_CONTINUATION_FRAMES} CONTINUATION frames"
            if not length and not flags & FLAG_END_HEADERS:
                cost, kind = 1, "empty CONTINUATION"
        elif frame_type == FRAME_TYPE_DATA:
            padding = frame_bytes[FRAME_HEADER_LEN] + 1 if flags & FLAG_PADDED and length else 0
            if length - padding <= 0 and not flags & FLAG_END_STREAM:
                cost, kind = 1, "empty DATA"
        elif frame_type == FRAME_TYPE_PING:
            cost, kind = 1, "PING"
        elif frame_type == FRAME_TYPE_SETTINGS:
            if flags & FLAG_ACK:
                self._settings_acks += 1
                cost = 1 if self._settings_acks > 1 else 0  # we sent one SETTINGS
            else:
                cost = max(1, length // 6)  # h2 applies every entry
            kind = "SETTINGS"
        elif frame_type in (FRAME_TYPE_PRIORITY, FRAME_TYPE_PRIORITY_UPDATE):
            cost, kind = 1, "PRIORITY"
        elif frame_type == FRAME_TYPE_RST_STREAM:
            metrics.count(metrics.H2_RESETS_RECEIVED)
            stream = self._conn.streams.get(stream_id)
            if stream is None or stream.closed:
                cost, kind = 1, "RST_STREAM on a closed stream"
        elif frame_type == FRAME_TYPE_WINDOW_UPDATE:
            if length == 4 and self._useless_window_update(stream_id, frame_bytes):
                cost, kind = 1, "WINDOW_UPDATE"
        elif frame_type == FRAME_TYPE_GOAWAY:
            self._goaways_received += 1
            cost, kind = (1, "GOAWAY") if self._goaways_received > 1 else (0, "")
        else:
            cost, kind = 1, f"frame of unknown type {frame_type:#x}"
        if cost and self._control.charge(cost):
            return f"too many control frames ({kind} flood)"
        return ""

    def _useless_window_update(self, stream_id: int, frame_bytes: bytes) -> bool:
        """A WINDOW_UPDATE is worth its cost when it returns credit we used. One
        for a closed stream, one that only grows a window we never drew on, or
        one that leaves the window too small for a useful DATA frame (a data
        dribble, CVE-2019-9511) is charged as a control frame."""
        increment = int.from_bytes(frame_bytes[9:13], "big") & 0x7FFFFFFF
        dribble = self.limits.dribble_frame_size
        conn = self._conn
        if stream_id == 0:
            before = conn.outbound_flow_control_window
            after = before + increment
            useless = before >= self._window_peak or after < dribble
            self._window_peak = max(self._window_peak, min(after, MAX_WINDOW))
            return useless
        stream = conn.streams.get(stream_id)
        if stream is None or stream.closed:
            return True
        before = stream.outbound_flow_control_window
        after = before + increment
        peak = max(getattr(stream, "h2serve_window_peak", 0),
                   conn.remote_settings.initial_window_size)
        stream.h2serve_window_peak = max(peak, min(after, MAX_WINDOW))
        return before >= peak or after < dribble

    def _stream_error_frame(
        self, frame_type: int, length: int, stream_id: int, frame_bytes: bytes, events: list
    ) -> bool:
        """Handle frames h2 would answer with a connection error where RFC 9113
        asks for a stream error. Returns True if the frame was consumed."""
        if self._conn.header_block_open():
            return False  # inside a header block: h2 reports the CONTINUATION violation
        error_code = None
        reason = ""
        if frame_type == FRAME_TYPE_PRIORITY and length != 5:
            error_code, reason = ErrorCodes.FRAME_SIZE_ERROR, "PRIORITY frame length != 5"
        elif (
            frame_type == FRAME_TYPE_WINDOW_UPDATE
            and length == 4
            and int.from_bytes(frame_bytes[9:13], "big") & 0x7FFFFFFF == 0
        ):
            stream = self._conn.streams.get(stream_id)
            if stream is None and stream_id > self._conn.highest_inbound_stream_id:
                return False  # idle stream: h2 makes it a connection error, as it must be
            error_code, reason = ErrorCodes.PROTOCOL_ERROR, "WINDOW_UPDATE increment of 0"
        if error_code is None:
            return False
        self._reset_h2_stream(stream_id, error_code)
        events.append(ProtocolViolation(reason, stream_id=stream_id, error_code=error_code))
        if self._forget(stream_id):
            events.append(StreamReset(stream_id, error_code))
        return True

    def _make_room_for(self, stream_id: int) -> None:
        """Before a HEADERS that opens a stream beyond our concurrency limit,
        end draining streams (oldest first) with RST_STREAM(NO_ERROR): their
        responses are complete (RFC 9113 8.1), so a client that never finishes
        its upload cannot hold slots with them."""
        conn = self._conn
        if (
            stream_id % 2 == 0
            or stream_id <= conn.highest_inbound_stream_id
            or conn.header_block_open()
            or (conn.refuse_streams_above is not None and stream_id > conn.refuse_streams_above)
        ):
            return
        limit = conn.local_settings.max_concurrent_streams
        while self._draining and conn.open_inbound_streams + 1 > limit:
            oldest = next(iter(self._draining))
            self._stop_draining(oldest)

    def _reset_h2_stream(self, stream_id: int, error_code: int) -> None:
        stream = self._conn.streams.get(stream_id)
        if stream is not None and stream.open:
            self._conn.reset_stream(stream_id, error_code)
        else:
            self._pull()
            frame = RstStreamFrame(stream_id)
            frame.error_code = error_code
            self._outbound += frame.serialize()
            self._conn.errors_answered += 1

    def _quick_frame(self, frame_type: int, flags: int, stream_id: int,
                     frame_bytes: bytes) -> Frame | None:
        """The frame object for a common HEADERS or DATA frame, built directly,
        while h2's own buffer holds nothing (no preface left, no open header
        block); None: h2 parses the bytes itself."""
        if not self._conn.frame_buffer_empty():
            return None
        if frame_type == FRAME_TYPE_HEADERS:
            return headers_frame(stream_id, flags, frame_bytes[FRAME_HEADER_LEN:])
        if frame_type == FRAME_TYPE_DATA:
            return data_frame(stream_id, flags, frame_bytes[FRAME_HEADER_LEN:])
        return None

    def _h2_receive(self, chunk: bytes, events: list, frame: Frame | None = None) -> bool:
        """Give h2 one frame (as bytes, or already built) or the preface bytes;
        False once the connection is dead."""
        try:
            if frame is None:
                h2_events = self._conn.receive_data(chunk)
            else:
                h2_events = self._conn.receive_frame(frame)
            self._pull()  # h2 drops its queued output when a GOAWAY arrives
        except h2.exceptions.ProtocolError as exc:
            # h2 already queued GOAWAY with exc.error_code.
            events.extend(self._after_h2_goaway(int(exc.error_code), f"{type(exc).__name__}: {exc}"))
            return False
        for event in h2_events:
            self._translate(event, events)
            if self._terminated:
                return False
        return True

    # -- h2 event translation -------------------------------------------------

    def _translate(self, event, out: list) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self._on_request(event, out)
        elif isinstance(event, h2.events.DataReceived):
            self._on_data(event, out)
        elif isinstance(event, h2.events.TrailersReceived):
            self._on_trailers(event, out)
        elif isinstance(event, h2.events.StreamEnded):
            self._on_stream_ended(event.stream_id, out)
        elif isinstance(event, h2.events.StreamReset):
            self._on_stream_reset(event, out)
        elif isinstance(event, h2.events.WindowUpdated):
            if event.stream_id == 0 or event.stream_id in self._streams:
                out.append(WindowUpdated(event.stream_id))
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            changed = event.changed_settings
            if SettingCodes.INITIAL_WINDOW_SIZE in changed or SettingCodes.MAX_FRAME_SIZE in changed:
                out.append(WindowUpdated(0))
        elif isinstance(event, h2.events.PriorityUpdated):
            record = self._streams.get(event.stream_id)
            if record is not None:
                record.priority = dict(
                    record.priority, weight=event.weight, depends_on=event.depends_on
                )
                out.append(PriorityUpdated(event.stream_id, dict(record.priority)))
        elif isinstance(event, PriorityUpdateReceived):
            self._on_priority_update(event, out)
        elif isinstance(event, StreamRejected):
            out.append(
                ProtocolViolation(event.reason, stream_id=event.stream_id, error_code=event.error_code)
            )
            if self._forget(event.stream_id):
                out.append(StreamReset(event.stream_id, event.error_code))
        elif isinstance(event, h2.events.ConnectionTerminated):
            reason = (event.additional_data or b"").decode("latin-1")
            if int(event.error_code) == ErrorCodes.NO_ERROR:
                # Graceful (see ServerConnection._receive_goaway_frame): the
                # streams it opened are still answered; it just opens no more.
                self._peer_goaway = True
            else:
                self._terminated = True
                self._release_all()
            out.append(ConnectionTerminated(int(event.error_code), event.last_stream_id or 0, reason))

    def _on_request(self, event: h2.events.RequestReceived, out: list) -> None:
        stream_id = event.stream_id
        end_stream = event.stream_ended is not None
        fields: RequestFields = event.request_fields
        pseudo = fields.pseudo
        headers = fields.headers
        header_weight = fields.list_size // HEADER_BYTES_PER_RESET
        problem = check_request_target(pseudo)
        if problem:
            self._conn.errors_answered += header_weight
            self._conn.reset_stream(stream_id, ErrorCodes.PROTOCOL_ERROR)
            out.append(
                ProtocolViolation(problem, stream_id=stream_id, error_code=ErrorCodes.PROTOCOL_ERROR)
            )
            return

        if (
            fields.longest > self.limits.limit_request_field_size
            or len(headers) > self.limits.limit_request_fields
            or fields.list_size > self.limits.max_header_list_size
        ):
            self._conn.errors_answered += header_weight
            self._reject_431(stream_id, end_stream, out)
            return

        content_length = fields.content_length
        host = fields.host
        priority_values = fields.priority
        if content_length and end_stream:
            self._conn.reset_stream(stream_id, ErrorCodes.PROTOCOL_ERROR)
            out.append(
                ProtocolViolation(
                    "content-length on a request without body",
                    stream_id=stream_id,
                    error_code=ErrorCodes.PROTOCOL_ERROR,
                )
            )
            return

        pending = self._pending_priority.pop(stream_id, None)
        if pending is not None:   # a PRIORITY_UPDATE before the request replaces its field
            parsed = {"urgency": pending[0], "incremental": pending[1]}
        else:
            parsed = parse_priority_field(", ".join(priority_values))
        update = event.priority_updated
        priority = self._priority_dict(
            parsed,
            update.weight if update is not None else None,
            update.depends_on if update is not None else None,
        )
        method = pseudo[b":method"].decode("latin-1")
        authority = pseudo.get(b":authority")
        if method == "CONNECT":
            target = (authority or b"").decode("latin-1")
        else:
            target = pseudo[b":path"].decode("latin-1")
        scheme = pseudo.get(b":scheme")
        record = self._streams[stream_id] = _StreamRecord(content_length, priority, end_stream)
        record.header_weight = header_weight
        self._control.refund(CONTROL_REFUND_PER_REQUEST)
        self._requests += 1
        if self._requests == self.limits.max_requests and self._conn.refuse_streams_above is None:
            # nginx's keepalive_requests: this request is served, later ones are
            # refused. The GOAWAY saying so waits until the responses under way
            # are sent (clients such as httpx fail any stream still open when
            # a GOAWAY arrives), or until a refused stream needs explaining.
            self._conn.refuse_streams_above = stream_id
            self._cap_goaway_due = True
        out.append(
            RequestReceived(
                stream_id=stream_id,
                method=method,
                target=target,
                headers=headers,
                authority=authority.decode("latin-1") if authority is not None else host,
                scheme=scheme.decode("latin-1") if scheme is not None else None,
                http_version="2",
                end_stream=end_stream,
                priority=dict(priority),
                content_length=content_length,
            )
        )

    @staticmethod
    def _priority_dict(parsed: dict, weight: int | None, depends_on: int | None) -> dict:
        return {
            "urgency": parsed["urgency"],
            "incremental": parsed["incremental"],
            "weight": weight,
            "depends_on": depends_on,
        }

    def _reject_431(self, stream_id: int, end_stream: bool, out: list) -> None:
        self._conn.errors_answered += 1  # an answer a client's error cost us, like a reset
        self._conn.send_headers(stream_id, [(b":status", b"431")], end_stream=True)
        if not end_stream:
            # The response is complete; ask the client to stop sending the body.
            self._conn.reset_stream(stream_id, ErrorCodes.NO_ERROR)
        out.append(
            ProtocolViolation(
                "request header fields too large", status=431, stream_id=stream_id, error_code=0
            )
        )

    def _on_data(self, event: h2.events.DataReceived, out: list) -> None:
        stream_id = event.stream_id
        record = self._streams.get(stream_id)
        length = event.flow_controlled_length
        if record is None:
            self._release(length)
            if stream_id in self._draining:
                self._drain(stream_id, length)
            return
        data = event.data
        record.received += len(data)
        if data:
            record.unacked += length
            out.append(BodyReceived(stream_id, data, length))
        elif length:
            self._release(length)  # padding-only frame: nothing for the app to consume

    def _on_trailers(self, event: h2.events.TrailersReceived, out: list) -> None:
        stream_id = event.stream_id
        record = self._streams.get(stream_id)
        if record is None:
            return
        trailers: Headers = []
        size = 0
        for name, value in event.headers:
            size += len(name) + len(value) + 32
            if len(name) + len(value) > self.limits.limit_request_field_size:
                size = -1
                break
            trailers.append((name.decode("latin-1"), value.decode("latin-1")))
        if size < 0 or size > self.limits.max_header_list_size or (
            len(trailers) > self.limits.limit_request_fields
        ):
            self._conn.reset_stream(stream_id, ErrorCodes.ENHANCE_YOUR_CALM)
            self._forget(stream_id)
            out.append(
                ProtocolViolation(
                    "request trailers too large",
                    status=431,
                    stream_id=stream_id,
                    error_code=ErrorCodes.ENHANCE_YOUR_CALM,
                )
            )
            out.append(StreamReset(stream_id, ErrorCodes.ENHANCE_YOUR_CALM))
            return
        record.trailers = trailers

    def _on_stream_ended(self, stream_id: int, out: list) -> None:
        if self._draining.pop(stream_id, None) is not None:
            self._flush_connection_credit()  # the discarded body's credit, at the latest now
            return
        record = self._streams.get(stream_id)
        if record is None or record.request_done:
            if record is not None:
                record.remote_ended = True
                self._maybe_forget(stream_id)
            return
        if record.content_length is not None and record.content_length != record.received:
            self._conn.reset_stream(stream_id, ErrorCodes.PROTOCOL_ERROR)
            self._forget(stream_id)
            out.append(
                ProtocolViolation(
                    "content-length does not match the body",
                    stream_id=stream_id,
                    error_code=ErrorCodes.PROTOCOL_ERROR,
                )
            )
            out.append(StreamReset(stream_id, ErrorCodes.PROTOCOL_ERROR))
            return
        record.remote_ended = True
        record.request_done = True
        trailers, record.trailers = record.trailers, None
        out.append(BodyEnded(stream_id, trailers))
        if record.unacked == 0:
            self._flush_connection_credit()
        self._maybe_forget(stream_id)

    def _on_stream_reset(self, event: h2.events.StreamReset, out: list) -> None:
        stream_id = event.stream_id
        record = self._streams.get(stream_id)
        known = self._forget(stream_id)
        if event.remote_reset:
            if record is not None:
                # Cancelled while the app still had it: the rapid-reset pattern.
                self._client_resets += 1 + record.header_weight
                out.append(StreamReset(stream_id, int(event.error_code)))
            return
        out.append(
            ProtocolViolation(
                f"stream reset by us (error code {int(event.error_code)})",
                stream_id=stream_id,
                error_code=int(event.error_code),
            )
        )
        if known:
            out.append(StreamReset(stream_id, int(event.error_code)))

    def _on_priority_update(self, event: PriorityUpdateReceived, out: list) -> None:
        stream_id = event.stream_id
        record = self._streams.get(stream_id)
        if record is not None:
            parsed = parse_priority_field(event.field_value)
            record.priority = dict(record.priority, **parsed)
            out.append(PriorityUpdated(stream_id, dict(record.priority)))
        elif stream_id > self._conn.highest_inbound_stream_id:
            # Not opened yet: keep the latest signal for when it is, parsed (a
            # 16 KB value costs what a small one does) and for a bounded count.
            parsed = parse_priority_field(event.field_value)
            self._pending_priority.pop(stream_id, None)
            self._pending_priority[stream_id] = (parsed["urgency"], parsed["incremental"])
            while len(self._pending_priority) > max(1, self.limits.max_concurrent_streams):
                self._pending_priority.pop(next(iter(self._pending_priority)))
        # else: a closed stream; nothing to reprioritise.

    # -- connection errors ------------------------------------------------------

    def _connection_error(self, error_code: int, reason: str) -> list:
        """Queue GOAWAY(error_code) ourselves and report it."""
        self._pull()
        last_stream_id = self._conn.highest_inbound_stream_id
        frame = GoAwayFrame(0)
        frame.last_stream_id = last_stream_id
        frame.error_code = error_code
        self._outbound += frame.serialize()
        try:
            self._conn.state_machine.process_input(h2.connection.ConnectionInputs.SEND_GOAWAY)
        except h2.exceptions.ProtocolError:
            pass
        self._conn.clear_outbound_data_buffer()
        return self._terminate(error_code, last_stream_id, reason)

    def _after_h2_goaway(self, error_code: int, reason: str) -> list:
        return self._terminate(error_code, self._conn.highest_inbound_stream_id, reason)

    def _terminate(self, error_code: int, last_stream_id: int, reason: str) -> list:
        self._terminated = True
        self._inbound.clear()
        self._release_all()
        return [
            ProtocolViolation(reason, stream_id=0, error_code=error_code),
            ConnectionTerminated(error_code, last_stream_id, reason),
        ]

    # -- flow-control credit -------------------------------------------------

    def _release(self, nbytes: int) -> None:
        """Return connection credit for bytes the app will never consume."""
        if nbytes <= 0:
            return
        self._connection_owed += nbytes
        if self._connection_owed >= self._connection_window // 2:
            self._flush_connection_credit()

    def _flush_connection_credit(self) -> None:
        owed = self._connection_owed
        if owed <= 0 or self._terminated:
            return
        self._connection_owed = 0
        try:
            self._conn.increment_flow_control_window(min(owed, MAX_WINDOW))
        except (h2.exceptions.ProtocolError, ValueError):
            pass

    def _forget(self, stream_id: int) -> bool:
        """Drop what we keep for a stream; True if the app still knew it."""
        if self._draining.pop(stream_id, None) is not None:
            self._flush_connection_credit()
        record = self._streams.pop(stream_id, None)
        if record is not None and record.unacked:
            self._release(record.unacked)
            self._flush_connection_credit()
        return record is not None

    def _maybe_forget(self, stream_id: int) -> None:
        stream = self._conn.streams.get(stream_id)
        if stream is None or stream.closed:
            self._forget(stream_id)
            self._conn.forget_closed(stream_id)

    def _release_all(self) -> None:
        self._streams.clear()
        self._draining.clear()
        self._pending_priority.clear()

    def acknowledge(self, stream_id: int, nbytes: int) -> None:
        """Give back flow-control credit for `nbytes` the app has consumed.

        Batched: a WINDOW_UPDATE goes out once half a window is owed, and the
        connection credit is always flushed when a finished request body has
        been consumed completely. Unknown (closed or reset) streams: no-op,
        their credit was already returned when they ended.
        """
        record = self._streams.get(stream_id)
        if record is None or nbytes <= 0 or self._terminated:
            return
        nbytes = min(nbytes, record.unacked)
        if not nbytes:
            return
        record.unacked -= nbytes
        self._connection_owed += nbytes
        finished = record.remote_ended and record.unacked == 0
        if finished or self._connection_owed >= self._connection_window // 2:
            self._flush_connection_credit()
        if not record.remote_ended:
            record.owed += nbytes
            if record.owed >= self.limits.initial_window_size // 2:
                owed, record.owed = record.owed, 0
                try:
                    self._conn.increment_flow_control_window(owed, stream_id)
                except (h2.exceptions.ProtocolError, ValueError, KeyError):
                    pass
        self._pull()

    # -- outbound -------------------------------------------------------------

    def _pull(self) -> None:
        chunk = self._conn.data_to_send()
        if chunk:
            self._outbound += chunk

    def _send_cap_goaway(self) -> None:
        self._cap_goaway_due = False
        self.goaway(ErrorCodes.NO_ERROR, last_stream_id=self._conn.refuse_streams_above,
                    debug=b"max requests per connection")

    def data_to_send(self) -> bytes:
        """Everything queued since the last call."""
        return bytes(self.take_output())

    def take_output(self) -> bytearray:
        """Everything queued since the last call, as the buffer itself: the
        caller owns it, and a 1 MiB body is not copied once more on its way."""
        if self._cap_goaway_due and not self._streams and not self._terminated:
            self._send_cap_goaway()
        self._pull()
        data = self._outbound
        self._outbound = bytearray()
        return data

    def _sendable(self, stream_id: int) -> bool:
        if self._terminated:
            return False
        stream = self._conn.streams.get(stream_id)
        return stream is not None and stream.state_machine.state in _SENDABLE_STATES

    def send_informational(self, stream_id: int, status: int, headers: Headers) -> None:
        """Send a 1xx (for example 103 Early Hints) before the final response."""
        if not 100 <= status <= 199 or status == 101:
            raise ValueError(f"{status} is not an informational status usable in HTTP/2")
        fields = response_fields(headers)
        if not self._sendable(stream_id):
            return
        self._conn.send_headers(stream_id, [(b":status", str(status).encode())] + fields)
        self._pull()

    def send_response(
        self, stream_id: int, status: int, headers: Headers, end_stream: bool = False
    ) -> None:
        """Send the final response head. No-op if the stream is gone."""
        self.send_response_head(stream_id, response_head(status, headers), end_stream)

    def send_response_head(
        self, stream_id: int, head: list[tuple[bytes, bytes]], end_stream: bool = False
    ) -> None:
        """Send a head that response_head() built (and checked) beforehand."""
        if not self._sendable(stream_id):
            return
        self._conn.send_headers(stream_id, head, end_stream=end_stream)
        if end_stream:
            self._after_local_end(stream_id)
        self._pull()

    def send_whole_response(self, stream_id: int, head: list[tuple[bytes, bytes]],
                            body: bytes) -> int:
        """Send a response_head() head and its body, ending the stream; return the
        body bytes taken (fewer when the windows are short: send_body the rest).

        A body that fits the windows and one frame is framed here directly:
        the same state-machine inputs, HPACK encoder and window accounting as
        h2's send_headers and send_data, without building a frame object per
        frame, which is most of what sending a small response costs."""
        conn = self._conn
        stream = None if self._terminated else conn.streams.get(stream_id)
        if stream is None or stream.state_machine.state not in _SENDABLE_STATES:
            return 0
        size = len(body)
        frame_limit = conn.max_outbound_frame_size
        if (size > frame_limit or size > conn.outbound_flow_control_window
                or size > stream.outbound_flow_control_window):
            self.send_response_head(stream_id, head)
            return self.send_body(stream_id, body, end_stream=True)
        machine = stream.state_machine
        conn.state_machine.process_input(h2.connection.ConnectionInputs.SEND_HEADERS)
        machine.process_input(h2.stream.StreamInputs.SEND_HEADERS)
        block = conn.encoder.encode(head)
        if not size:
            machine.process_input(h2.stream.StreamInputs.SEND_END_STREAM)
        self._pull()   # whatever h2 queued first goes out first
        out = self._outbound
        head_flags = 0 if size else FLAG_END_STREAM
        if len(block) <= frame_limit:
            out += frame_header(len(block), FRAME_TYPE_HEADERS,
                                 head_flags | FLAG_END_HEADERS, stream_id)
            out += block
        else:   # HEADERS then CONTINUATION frames, END_HEADERS on the last
            view = memoryview(block)
            pieces = [view[i:i + frame_limit] for i in range(0, len(view), frame_limit)]
            for index, piece in enumerate(pieces):
                kind = FRAME_TYPE_HEADERS if index == 0 else FRAME_TYPE_CONTINUATION
                flags = (head_flags if index == 0 else 0) | (
                    FLAG_END_HEADERS if index == len(pieces) - 1 else 0)
                out += frame_header(len(piece), kind, flags, stream_id)
                out += piece
        if size:
            self._frame_data(stream, body, True)
        self._after_local_end(stream_id)
        return size

    def _frame_data(self, stream: h2.stream.H2Stream, piece: bytes | memoryview,
                    last: bool) -> None:
        """One DATA frame that the windows and frame size allow, as h2's
        send_data would make it, straight into our output buffer."""
        conn = self._conn
        conn.state_machine.process_input(h2.connection.ConnectionInputs.SEND_DATA)
        stream.state_machine.process_input(h2.stream.StreamInputs.SEND_DATA)
        if last:
            stream.state_machine.process_input(h2.stream.StreamInputs.SEND_END_STREAM)
        size = len(piece)
        conn.outbound_flow_control_window -= size
        stream.outbound_flow_control_window -= size
        out = self._outbound
        out += frame_header(size, FRAME_TYPE_DATA, FLAG_END_STREAM if last else 0,
                            stream.stream_id)
        out += piece

    def send_body(self, stream_id: int, data: bytes | memoryview, end_stream: bool = False) -> int:
        """Frame as much of `data` as the send windows allow; return bytes taken."""
        if not self._sendable(stream_id):
            return 0
        view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
        total = len(view)
        taken = 0
        conn = self._conn
        stream = conn.streams[stream_id]
        frame_limit = conn.max_outbound_frame_size
        # Credit below this is not worth a frame while more data waits (data
        # dribble, CVE-2019-9511): it is held back, or, if the client's whole
        # stream window is that small, sent but charged as a control frame.
        dribble = self.limits.dribble_frame_size
        hold_back = dribble <= conn.remote_settings.initial_window_size
        self._pull()   # what h2 queued before goes out before these frames
        while taken < total:
            window = min(conn.outbound_flow_control_window, stream.outbound_flow_control_window)
            if window <= 0:
                break
            want = min(frame_limit, total - taken)
            if window < want and window < dribble:
                if hold_back:
                    break
                if self._control.charge(1):
                    self._control_overflow = "too many control frames (tiny flow-control window)"
            size = min(window, want)
            last = end_stream and taken + size == total
            self._frame_data(stream, view[taken : taken + size], last)
            taken += size
        if end_stream and taken == total:
            if total == 0:
                self._conn.end_stream(stream_id)
            self._after_local_end(stream_id)
        self._pull()
        return taken

    def end_stream(self, stream_id: int, trailers: Headers | None = None) -> None:
        """Finish the response, optionally with trailers."""
        if trailers:
            fields = response_fields(trailers)
            if not self._sendable(stream_id):
                return
            self._conn.send_headers(stream_id, fields, end_stream=True)
        else:
            if not self._sendable(stream_id):
                return
            self._conn.end_stream(stream_id)
        self._after_local_end(stream_id)
        self._pull()

    def _after_local_end(self, stream_id: int) -> None:
        self._resets.refund(1)  # a completed response earns back a reset (as in h2o)
        self._maybe_forget(stream_id)

    def finish_stream(self, stream_id: int) -> None:
        """The application is done with the stream: forget it.

        Call it once the response is complete (or the app gave up) instead of
        acknowledging the body bytes the app never read: they are credited
        here. A response that was never completed is reset (INTERNAL_ERROR).

        If the client is still sending its request, the stream drains (see the
        module docstring): it stays half-closed (local), what the client sends
        is discarded and credited as if read, so every client can finish its
        upload, and it gives its slot up -- RST_STREAM(NO_ERROR), RFC 9113 8.1
        -- only when a new stream would otherwise be refused.
        """
        if self._terminated or stream_id in self._draining:
            return
        record = self._streams.pop(stream_id, None)
        unread = record.unacked if record is not None else 0
        self._release(unread)
        stream = self._conn.streams.get(stream_id)
        if stream is not None and stream.open:
            if self._sendable(stream_id):
                self._conn.reset_stream(stream_id, ErrorCodes.INTERNAL_ERROR)
            elif record is None:
                self._conn.reset_stream(stream_id, ErrorCodes.NO_ERROR)
            else:
                record.unacked = 0
                self._draining[stream_id] = record
                self._drain(stream_id, unread)
        self._flush_connection_credit()
        self._pull()

    def _drain(self, stream_id: int, nbytes: int) -> None:
        """Credit `nbytes` discarded from a draining stream (its connection share
        is already released): the stream window reopens as for a read body."""
        record = self._draining[stream_id]
        stream = self._conn.streams.get(stream_id)
        if stream is None or not stream.open:
            del self._draining[stream_id]
            self._flush_connection_credit()
            return
        record.owed += nbytes
        if record.owed >= self.limits.initial_window_size // 2:
            owed, record.owed = record.owed, 0
            self._conn.increment_flow_control_window(owed, stream_id)

    def _stop_draining(self, stream_id: int) -> None:
        """RST_STREAM(NO_ERROR) a draining stream: its response is complete and
        the rest of the request is not wanted (RFC 9113 8.1)."""
        self._draining.pop(stream_id, None)
        stream = self._conn.streams.get(stream_id)
        if stream is not None and stream.open:
            self._conn.reset_stream(stream_id, ErrorCodes.NO_ERROR)
        self._flush_connection_credit()

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        """RST_STREAM a stream; no-op if it is already closed."""
        if self._terminated:
            return
        stream = self._conn.streams.get(stream_id)
        if stream is not None and stream.open:
            self._conn.reset_stream(stream_id, error_code)
        self._forget(stream_id)
        self._pull()

    def goaway(self, error_code: int = 0, last_stream_id: int | None = None, debug: bytes = b"") -> None:
        """Send GOAWAY. NO_ERROR is graceful: streams up to `last_stream_id`
        keep being served, newer ones are refused. Any other code ends the
        connection at once."""
        if self._terminated:
            return
        if last_stream_id is None:
            last_stream_id = self._conn.highest_inbound_stream_id
        previous = self._conn.refuse_streams_above
        if previous is not None:
            last_stream_id = min(last_stream_id, previous)  # may only go down (RFC 9113 6.8)
        self._pull()
        frame = GoAwayFrame(0)
        frame.last_stream_id = last_stream_id
        frame.error_code = error_code
        frame.additional_data = debug
        self._outbound += frame.serialize()
        metrics.count(metrics.H2_GOAWAYS_SENT)
        self._goaway_sent = True
        self._conn.refuse_streams_above = last_stream_id
        if error_code != 0:
            try:
                self._conn.state_machine.process_input(h2.connection.ConnectionInputs.SEND_GOAWAY)
            except h2.exceptions.ProtocolError:
                pass
            self._conn.clear_outbound_data_buffer()
            self._terminated = True
            self._inbound.clear()
            self._release_all()

    # -- state queries -------------------------------------------------------

    def send_window(self, stream_id: int) -> int:
        """Bytes send_body could frame right now (0 if closed or window exhausted)."""
        if not self._sendable(stream_id):
            return 0
        return max(0, self._conn.local_flow_control_window(stream_id))

    def peer_window_closed(self) -> bool:
        """True while the client lets no response DATA through: its connection
        window is spent, or it gives every stream a window of zero."""
        conn = self._conn
        return (conn.outbound_flow_control_window <= 0
                or conn.remote_settings.initial_window_size == 0)

    def is_stream_open(self, stream_id: int) -> bool:
        """True while we may still send on the stream."""
        return self._sendable(stream_id)

    @property
    def last_stream_id(self) -> int:
        """Highest client stream id seen."""
        return self._conn.highest_inbound_stream_id

    @property
    def open_streams(self) -> int:
        """Streams the application still knows about."""
        return len(self._streams)

    @property
    def closed(self) -> bool:
        """The connection is over: a fatal GOAWAY went either way, or a graceful
        GOAWAY went either way and no stream is left."""
        return self._terminated or (
            (self._goaway_sent or self._peer_goaway) and not self._streams)
