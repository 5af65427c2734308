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
import time
from collections.abc import Callable

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.frame_buffer
import h2.settings
import h2.stream
from hyperframe.frame import Frame, GoAwayFrame, RstStreamFrame

from .events import (
    ConnectionTerminated,
    ProtocolViolation,
    RequestReceived,
    StreamReset,
)
from .floods import FloodGuard
from .h2_frames import (
    FRAME_HEADER_LEN,
    FRAME_TYPE_DATA,
    FRAME_TYPE_HEADERS,
    FRAME_TYPE_PRIORITY,
    FRAME_TYPE_SETTINGS,
    FRAME_TYPE_WINDOW_UPDATE,
    MAX_WINDOW,
    PREFACE,
)
from .h2_internals import (
    CompactSettings,
    ErrorCodes,
    ServerConnection,
    SettingCodes,
    break_reference_cycle,
    use_compact_settings,
)
from .h2_limits import MAX_CONNECTION_WINDOW, HTTP2Limits
from .h2_requests import RequestTranslation
from .h2_responses import ResponseSending
from .h2_state import StreamRecord
from .hpack_cache import CachingDecoder, CachingEncoder
from .priority import DEFAULT_URGENCY, priority_dict
from .quick_frames import data_frame, headers_frame


class HTTP2Protocol(RequestTranslation, ResponseSending):
    """One server-side HTTP/2 connection, sans I/O.

    Its jobs are split by module: frames in, floods and connection errors here;
    h2 events into request events in h2_requests.py; response frames out in
    h2_responses.py. All three work on the state set up in __init__."""

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
        self._streams: dict[int, StreamRecord] = {}
        # Streams the app is done with while the client is still sending, oldest first.
        self._draining: dict[int, StreamRecord] = {}
        self._pending_priority: dict[int, tuple[int, bool]] = {}  # stream -> (urgency, incremental)
        self._connection_owed = 0
        self._terminated = False
        self._goaway_sent = False
        self._peer_goaway = False     # the client said it opens no more streams
        # Flood accounting (docs/security.md).
        self._started_at = clock()
        self._requests = 0
        self._client_resets = 0       # RST_STREAM from the client on streams the app still had
        self._floods = FloodGuard(self._conn, clock, reset_budget=limits.reset_budget,
                                  max_control_frames=limits.max_control_frames,
                                  dribble_frame_size=limits.dribble_frame_size)
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
                request.priority = request.priority or priority_dict(
                    {"urgency": DEFAULT_URGENCY, "incremental": False}, None, None
                )
                self._streams[1] = StreamRecord(
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
        block_started = self._floods.block_started
        if block_started and now - block_started > timeout:
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
            abuse = self._floods.overflow
            if not abuse:
                if (frame_type == FRAME_TYPE_HEADERS and self._cap_goaway_due
                        and stream_id > self._conn.highest_inbound_stream_id):
                    self._send_cap_goaway()  # before the refusal it explains
                abuse = self._floods.judge(frame_type, flags, length, stream_id, frame_bytes)
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
                self._floods.header_block_done()
            abuse = self._floods.charge_resets(self._conn.errors_answered - errors_before
                                               + self._client_resets - resets_before)
            if abuse:
                events.extend(self._connection_error(ErrorCodes.ENHANCE_YOUR_CALM, abuse))
                return

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

    def acknowledge_unread(self, stream_id: int) -> None:
        """The app will read no more of this stream's body: the credit of every
        byte handed to it and not acknowledged goes back (this object alone
        counts it; the driver only says what the app consumed)."""
        record = self._streams.get(stream_id)
        if record is not None and record.unacked:
            self.acknowledge(stream_id, record.unacked)

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
