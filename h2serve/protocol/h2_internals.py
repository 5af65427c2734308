"""Where h2serve relies on h2's private internals, named and explained.

Everything here depends on something h2 (4.1-4.4), hpack or hyperframe does
not document. tests/test_h2_internals.py names each private attribute and
method relied on, and fails naming it when a new release changes it. Other
modules use what this one exports, not h2's underscore names.

:class:`ServerConnection` is h2's H2Connection with the answers RFC 9113 asks
for where h2 gives others. Each of these belongs upstream in h2:

* a malformed request (bad pseudo-headers, connection-specific fields,
  content-length mismatch...) is a stream error, RST_STREAM PROTOCOL_ERROR
  (h2 ends the connection);
* an HPACK decoding failure is COMPRESSION_ERROR (h2 says PROTOCOL_ERROR);
  refused streams' header blocks are still decoded, so the HPACK context
  never drifts;
* streams beyond SETTINGS_MAX_CONCURRENT_STREAMS, and new ones after our
  graceful GOAWAY, get REFUSED_STREAM (h2 ends the connection);
* a stream depending on itself is a stream error;
* RST_STREAM on an idle stream is a connection error (h2 ignores it);
* frames on a closed stream get the answer RFC 9113 section 5.1 gives for how
  it closed: discarded (credit returned) after our RST_STREAM, a stream error
  STREAM_CLOSED after the peer's, a connection error STREAM_CLOSED once
  END_STREAM went both ways (h2 answers DATA there with RST_STREAM);
* a CONTINUATION that continues nothing is a connection error PROTOCOL_ERROR
  (section 6.10);
* PRIORITY_UPDATE (RFC 9218) frames are validated and parsed (h2 passes them
  on as unknown frames).

Memory: an idle HTTP/2 connection must be cheap to hold, since a client may
open hundreds (docs/security.md, "Connection slots"). h2 keeps each setting's
values in a ``collections.deque``: about 760 bytes even when it holds one
value, and a connection has two Settings of five to seven settings each, so
about 9 KiB of a held connection's 33 KiB was empty deque blocks
(:class:`CompactSettings`). And an H2Connection is a reference cycle through
its dispatch table (:func:`break_reference_cycle`).

hpack_cache.py's caches need to see every change of an HPACK table
(:class:`GenerationHeaderTable` hooks ``HeaderTable._shrink``) and hpack's
table-size check (:func:`assert_valid_table_size`); quick_frames.py builds
hyperframe's ``Flags`` directly (:func:`make_flags`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import h2.stream
import hpack
from hpack.exceptions import HPACKError, OversizedHeaderListError
from hpack.table import HeaderTable
from hyperframe.flags import Flags
from hyperframe.frame import Frame, GoAwayFrame, HeadersFrame, RstStreamFrame, WindowUpdateFrame

from h2serve import metrics

from .h2_frames import FRAME_TYPE_PRIORITY_UPDATE
from .http2_fields import RequestFields, check_trailer_fields, parse_request_fields

ErrorCodes = h2.errors.ErrorCodes
SettingCodes = h2.settings.SettingCodes

# Closed streams remembered per connection (see ServerConnection).
CLOSED_STREAMS_REMEMBERED = 1024


class _SettingValues(list):
    """One setting's values, current first, then those sent or received but
    not acknowledged yet: the two deque operations h2 uses on it, on a list
    (about 80 bytes)."""

    __slots__ = ()

    def popleft(self) -> Any:
        return self.pop(0)


class CompactSettings(h2.settings.Settings):
    """h2's Settings with its per-setting deques replaced by small lists.

    Relies on ``Settings._settings`` (a dict from setting code to a sequence
    whose first item is the current value), which h2 4.x reads and writes
    only through ``append``, ``popleft``, ``[0]`` and ``len``."""

    def __init__(self, client: bool = True, initial_values: dict[Any, int] | None = None) -> None:
        super().__init__(client=client, initial_values=initial_values)
        self._settings = {code: _SettingValues(values) for code, values in self._settings.items()}

    def __setitem__(self, key: Any, value: int) -> None:
        known = key in self._settings
        super().__setitem__(key, value)   # validates; a new key gets h2's deque
        if not known:
            self._settings[key] = _SettingValues(self._settings[key])


def use_compact_settings(conn: Any) -> None:
    """Give an H2Connection compact remote settings (before any frame: h2's
    defaults, nothing pending). Its local settings are built by the caller as
    a CompactSettings."""
    conn.remote_settings = CompactSettings(client=not conn.config.client_side)


def break_reference_cycle(conn: Any) -> None:
    """Let a finished H2Connection be freed by reference counting.

    h2 keeps a dict of the connection's own bound methods
    (``_frame_dispatch_table``), so every connection is a reference cycle that
    only a full collection frees; a crowd of connections closed under attack
    would stay in memory until then. Only frame reception uses the table: call
    this once no frame will be received any more."""
    conn._frame_dispatch_table = {}


# --------------------------------------------------------------------------
# Events private to the h2 subclass -> HTTP2Protocol hand-off.


@dataclass
class StreamRejected:
    """The connection already queued RST_STREAM for this stream."""

    stream_id: int
    error_code: int
    reason: str


@dataclass
class PriorityUpdateReceived:
    """A valid RFC 9218 PRIORITY_UPDATE frame."""

    stream_id: int
    field_value: str


class ConnectionLevelError(h2.exceptions.ProtocolError):
    """A ProtocolError carrying an explicit error code; h2 turns it into GOAWAY."""

    def __init__(self, message: str, error_code: int) -> None:
        super().__init__(message)
        self.error_code = error_code


# --------------------------------------------------------------------------
# The h2 connection with RFC-accurate error handling.


class ServerConnection(h2.connection.H2Connection):
    """h2's H2Connection with the stream-level error handling RFC 9113 asks for.

    Overrides private frame handlers of h2 4.x (checked against 4.1-4.4).
    """

    # How many closed streams h2 remembers, to answer a late frame on one as
    # its way of closing asks (RFC 9113 5.1). h2 keeps 65,536: about 8 MiB per
    # connection that has served that many requests. Older streams count as
    # closed long ago, which section 5.1 lets an endpoint treat as an error.
    MAX_CLOSED_STREAMS = CLOSED_STREAMS_REMEMBERED

    def __init__(self, config: h2.config.H2Configuration, decode_limit: int,
                 encoder: hpack.Encoder, decoder: hpack.Decoder) -> None:
        super().__init__(config=config)
        # HTTP2Protocol passes hpack_cache.py's caching coders (repeated header
        # blocks, the common case once the dynamic tables are warm, are encoded
        # and decoded once); swapped in before any frame.
        self.encoder = encoder
        self.decoder = decoder
        # Highest stream id still served after our graceful GOAWAY (None: none sent).
        self.refuse_streams_above: int | None = None
        self.decoder.max_header_list_size = decode_limit
        self.decode_limit = decode_limit
        # RST_STREAM frames with an error code queued so far (and 431 answers):
        # HTTP2Protocol charges those a client's frames caused to its reset budget.
        self.errors_answered = 0

    def header_block_open(self) -> bool:
        """h2 holds the start of a header block, waiting for its CONTINUATION
        frames (relies on ``FrameBuffer._headers_buffer``)."""
        return bool(self.incoming_buffer._headers_buffer)

    def frame_buffer_empty(self) -> bool:
        """h2's frame buffer holds no partial frame, preface or header block
        (``FrameBuffer._data``, ``._headers_buffer``, ``._preamble_len``)."""
        buffer = self.incoming_buffer
        return not (buffer._data or buffer._headers_buffer or buffer._preamble_len)

    def receive_frame(self, frame: Frame) -> list:
        """receive_data for one frame its caller has already split off and built."""
        try:
            return self._receive_frame(frame)
        except h2.exceptions.ProtocolError as exc:
            self._terminate_connection(exc.error_code)
            raise

    def _prepare_for_sending(self, frames: list) -> None:
        for frame in frames:
            if isinstance(frame, RstStreamFrame):
                metrics.count(metrics.H2_RESETS_SENT)
                self.errors_answered += frame.error_code != 0
        super()._prepare_for_sending(frames)

    # -- helpers ----------------------------------------------------------

    def _inbound_streams_full(self) -> bool:
        """Would one more client stream exceed our SETTINGS_MAX_CONCURRENT_STREAMS?

        h2 counts by walking every stream it holds; closed streams are dropped
        as soon as they close (forget_closed), so while fewer streams than the
        limit are held the answer is no without the walk.
        """
        limit = self.local_settings.max_concurrent_streams
        return len(self.streams) >= limit and self.open_inbound_streams + 1 > limit

    def forget_closed(self, stream_id: int) -> None:
        """Drop a closed stream's state now, keeping how it closed (as h2 does
        lazily when it next counts streams)."""
        stream = self.streams.get(stream_id)
        if stream is not None and stream.closed:
            del self.streams[stream_id]
            self._closed_streams[stream_id] = stream.closed_by

    def _decode_block(self, data: bytes) -> list[tuple[bytes, bytes]]:
        try:
            return list(self.decoder.decode(data, raw=True))
        except OversizedHeaderListError as exc:
            raise ConnectionLevelError(
                f"header block above {self.decode_limit} bytes", ErrorCodes.ENHANCE_YOUR_CALM
            ) from exc
        except (HPACKError, IndexError, TypeError, UnicodeDecodeError, ValueError) as exc:
            raise ConnectionLevelError(
                f"HPACK decoding failed: {exc}", ErrorCodes.COMPRESSION_ERROR
            ) from exc

    def _open_and_reset(
        self, stream: h2.stream.H2Stream, end_stream: bool, error_code: int
    ) -> list:
        """Move an idle stream through HEADERS (and END_STREAM), then reset it."""
        machine = stream.state_machine
        if machine.state == h2.stream.StreamState.IDLE:
            machine.process_input(h2.stream.StreamInputs.RECV_HEADERS)
            if end_stream:
                machine.process_input(h2.stream.StreamInputs.RECV_END_STREAM)
        return stream.reset_stream(error_code)

    def closed_by(self, stream_id: int) -> h2.stream.StreamClosedBy | None:
        """How a closed stream closed; None if it is idle, still open, closed
        implicitly (a higher id was opened first) or long forgotten."""
        stream = self.streams.get(stream_id)
        if stream is not None:
            return stream.closed_by if stream.closed else None
        return self._closed_streams.get(stream_id)

    def _reset_any(self, stream_id: int, error_code: int) -> list:
        """RST_STREAM for a stream that may be open, closed or never opened."""
        stream = self.streams.get(stream_id)
        if stream is not None and stream.open:
            return stream.reset_stream(error_code)
        frame = RstStreamFrame(stream_id)
        frame.error_code = error_code
        return [frame]

    # -- overridden frame handlers -----------------------------------------

    def _receive_frame(self, frame) -> list:
        """h2's frame dispatch, minus the ``repr(frame)`` it formats for a trace
        log on every frame whether or not anything logs (about 3% of a small
        request's CPU). Closed-stream errors map as in h2: a stream error if
        the stream was reset, else a connection error."""
        try:
            frames, events = self._frame_dispatch_table[frame.__class__](frame)
        except h2.exceptions.StreamClosedError as exc:
            if not self._stream_is_closed_by_reset(exc.stream_id):
                raise
            frames = [RstStreamFrame(exc.stream_id, error_code=exc.error_code)]
            events = exc._events
        except h2.exceptions.StreamIDTooLowError as exc:
            if self._stream_is_closed_by_reset(exc.stream_id):
                frames = [RstStreamFrame(exc.stream_id, error_code=ErrorCodes.STREAM_CLOSED)]
                events = []
            elif self._stream_is_closed_by_end(exc.stream_id):
                raise h2.exceptions.StreamClosedError(exc.stream_id) from exc
            else:
                raise
        self._prepare_for_sending(frames)
        return events

    def _receive_headers_frame(self, frame: HeadersFrame) -> tuple[list, list]:
        # Always decode first: HPACK state is connection-wide.
        headers = self._decode_block(frame.data)
        events = self.state_machine.process_input(h2.connection.ConnectionInputs.RECV_HEADERS)
        end_stream = "END_STREAM" in frame.flags
        stream_id = frame.stream_id
        is_new = (
            stream_id not in self.streams
            and stream_id % 2 == 1
            and stream_id > self.highest_inbound_stream_id
        )
        if is_new:
            refuse_reason = None
            if self.refuse_streams_above is not None and stream_id > self.refuse_streams_above:
                refuse_reason = "stream opened after GOAWAY"
            elif self._inbound_streams_full():
                refuse_reason = "too many concurrent streams"
            if refuse_reason is not None:
                stream = self._begin_new_stream(stream_id, h2.connection.AllowedStreamIDs.ODD)
                frames = self._open_and_reset(stream, end_stream, ErrorCodes.REFUSED_STREAM)
                metrics.count(metrics.H2_STREAMS_REFUSED)
                return frames, events + [
                    StreamRejected(stream_id, ErrorCodes.REFUSED_STREAM, refuse_reason)
                ]
        if self.closed_by(stream_id) == h2.stream.StreamClosedBy.SEND_RST_STREAM:
            # RFC 9113 5.1: after our RST_STREAM, frames the peer had in flight
            # are discarded; the block was decoded above, so HPACK stays in step.
            return [], events
        # Raises StreamIDTooLowError / ProtocolError for ids h2 must refuse.
        stream = self._get_or_create_stream(stream_id, h2.connection.AllowedStreamIDs.ODD)

        if "PRIORITY" in frame.flags and frame.depends_on == stream_id:
            frames = self._open_and_reset(stream, end_stream, ErrorCodes.PROTOCOL_ERROR)
            return frames, events + [
                StreamRejected(stream_id, ErrorCodes.PROTOCOL_ERROR, "stream depends on itself")
            ]
        if is_new and headers and headers[0][0] == b":status":
            frames = self._open_and_reset(stream, end_stream, ErrorCodes.PROTOCOL_ERROR)
            return frames, events + [
                StreamRejected(stream_id, ErrorCodes.PROTOCOL_ERROR, "response pseudo-header")
            ]

        # Our own single-pass checks stand in for h2's (switched off in the
        # config); they run only where h2's state machine accepts a header
        # block, so a block on a closed stream still gets h2's answer.
        state = stream.state_machine.state
        request: RequestFields | None = None
        try:
            if state == h2.stream.StreamState.IDLE:
                request = parse_request_fields(headers)
            elif state in (h2.stream.StreamState.OPEN, h2.stream.StreamState.HALF_CLOSED_LOCAL):
                headers = check_trailer_fields(headers)
            frames, stream_events = stream.receive_headers(
                headers, end_stream, self.config.header_encoding
            )
        except h2.exceptions.StreamClosedError:
            raise
        except h2.exceptions.ProtocolError as exc:
            machine = stream.state_machine
            if machine.state == h2.stream.StreamState.CLOSED and machine.stream_closed_by is None:
                raise  # an illegal state transition: connection error
            if machine.stream_closed_by == h2.stream.StreamClosedBy.RECV_END_STREAM:
                # Malformed trailers whose END_STREAM closed a half-closed (local)
                # stream: h2 applied END_STREAM before validating. The block is
                # still a stream error (RFC 9113 8.1.1), not a frame on a closed
                # stream; answer it and treat the stream as reset by us.
                machine.stream_closed_by = h2.stream.StreamClosedBy.SEND_RST_STREAM
                frames = self._reset_any(stream_id, ErrorCodes.PROTOCOL_ERROR)
                return frames, events + [
                    StreamRejected(
                        stream_id, ErrorCodes.PROTOCOL_ERROR, f"malformed header block: {exc}"
                    )
                ]
            frames = self._open_and_reset(stream, end_stream, ErrorCodes.PROTOCOL_ERROR)
            return frames, events + [
                StreamRejected(stream_id, ErrorCodes.PROTOCOL_ERROR, f"malformed header block: {exc}")
            ]

        if request is not None and stream_events:
            stream_events[0].request_fields = request
        if "PRIORITY" in frame.flags and stream_events:
            update = h2.events.PriorityUpdated()
            update.stream_id = stream_id
            update.depends_on = frame.depends_on
            update.exclusive = frame.exclusive
            update.weight = frame.stream_weight + 1
            stream_events[0].priority_updated = update
        return frames, events + stream_events

    def _receive_data_frame(self, frame) -> tuple[list, list]:
        closed_by = self.closed_by(frame.stream_id)
        if closed_by == h2.stream.StreamClosedBy.SEND_RST_STREAM:
            # RFC 9113 5.1: in flight when we reset the stream. Discard it, but it
            # counts against the connection window, so the credit goes back.
            events = self.state_machine.process_input(h2.connection.ConnectionInputs.RECV_DATA)
            manager = self._inbound_flow_control_window_manager
            manager.window_consumed(frame.flow_controlled_length)
            increment = manager.process_bytes(frame.flow_controlled_length)
            return (self._window_update_frames(increment) if increment else []), events
        if closed_by in (h2.stream.StreamClosedBy.RECV_END_STREAM,
                         h2.stream.StreamClosedBy.SEND_END_STREAM):
            # Both sides sent END_STREAM: RFC 9113 5.1 (RFC 7540 5.1: MUST) makes
            # this a connection error; h2 would only reset the stream.
            self.state_machine.process_input(h2.connection.ConnectionInputs.RECV_DATA)
            raise ConnectionLevelError(
                f"DATA on stream {frame.stream_id} after END_STREAM in both directions",
                ErrorCodes.STREAM_CLOSED,
            )
        try:
            return super()._receive_data_frame(frame)
        except h2.exceptions.InvalidBodyLengthError as exc:
            # The connection window was already charged; the app never sees these bytes.
            frames = []
            increment = self._inbound_flow_control_window_manager.process_bytes(
                frame.flow_controlled_length
            )
            if increment:
                frames.extend(self._window_update_frames(increment))
            frames.extend(self._reset_any(frame.stream_id, ErrorCodes.PROTOCOL_ERROR))
            return frames, [StreamRejected(frame.stream_id, ErrorCodes.PROTOCOL_ERROR, str(exc))]

    @staticmethod
    def _window_update_frames(increment: int) -> list:
        update = WindowUpdateFrame(0)
        update.window_increment = increment
        return [update]

    def _receive_priority_frame(self, frame) -> tuple[list, list]:
        events = self.state_machine.process_input(h2.connection.ConnectionInputs.RECV_PRIORITY)
        if frame.depends_on == frame.stream_id:
            frames = self._reset_any(frame.stream_id, ErrorCodes.PROTOCOL_ERROR)
            return frames, events + [
                StreamRejected(frame.stream_id, ErrorCodes.PROTOCOL_ERROR, "stream depends on itself")
            ]
        update = h2.events.PriorityUpdated()
        update.stream_id = frame.stream_id
        update.depends_on = frame.depends_on
        update.exclusive = frame.exclusive
        update.weight = frame.stream_weight + 1
        return [], events + [update]

    def _receive_rst_stream_frame(self, frame) -> tuple[list, list]:
        stream_id = frame.stream_id
        if stream_id not in self.streams:
            highest = (
                self.highest_inbound_stream_id if stream_id % 2 else self.highest_outbound_stream_id
            )
            if stream_id > highest:
                raise ConnectionLevelError("RST_STREAM on an idle stream", ErrorCodes.PROTOCOL_ERROR)
        return super()._receive_rst_stream_frame(frame)

    def _receive_goaway_frame(self, frame: GoAwayFrame) -> tuple[list, list]:
        # A graceful GOAWAY from the client (RFC 9113 6.8) only says it opens no
        # more streams; the responses it is waiting for still go out. h2 would
        # close the connection state and refuse to send them.
        if frame.error_code != ErrorCodes.NO_ERROR:
            return super()._receive_goaway_frame(frame)
        event = h2.events.ConnectionTerminated()
        event.error_code = ErrorCodes.NO_ERROR
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]

    def _receive_naked_continuation(self, frame) -> tuple[list, list]:
        # h2 answers RST_STREAM when the stream was reset and already culled;
        # RFC 9113 6.10 wants a connection error whatever the stream's state.
        raise ConnectionLevelError(
            f"CONTINUATION on stream {frame.stream_id} without an open header block",
            ErrorCodes.PROTOCOL_ERROR,
        )

    def _receive_unknown_frame(self, frame) -> tuple[list, list]:
        if frame.type != FRAME_TYPE_PRIORITY_UPDATE:
            return [], []  # RFC 9113 section 5.5: ignore unknown frame types
        if frame.stream_id != 0:
            raise ConnectionLevelError("PRIORITY_UPDATE on a stream", ErrorCodes.PROTOCOL_ERROR)
        body = frame.body
        if len(body) < 4:
            raise ConnectionLevelError("PRIORITY_UPDATE too short", ErrorCodes.FRAME_SIZE_ERROR)
        prioritized = int.from_bytes(body[:4], "big") & 0x7FFFFFFF
        if prioritized == 0 or prioritized % 2 == 0:
            # 0 is forbidden; even ids would be push streams, which we never open.
            raise ConnectionLevelError(
                f"PRIORITY_UPDATE for stream {prioritized}", ErrorCodes.PROTOCOL_ERROR
            )
        field_value = body[4:].decode("latin-1")
        return [], [PriorityUpdateReceived(prioritized, field_value)]


def make_flags(valid: frozenset[str], names: set[str]) -> Any:
    """A hyperframe ``Flags`` holding `names`, built without its per-flag
    checks (quick_frames.py builds frames for the hot path); relies on
    ``Flags._valid_flags`` and ``Flags._flags``."""
    flags = Flags.__new__(Flags)
    flags._valid_flags = valid
    flags._flags = names
    return flags


class GenerationHeaderTable(HeaderTable):
    """HeaderTable with a counter that moves on every mutation.

    hpack changes a table only through ``add``, ``_shrink`` (evictions) and the
    ``maxsize`` setter (which also backs ``header_table_size`` on both the
    encoder and the decoder, including size updates read from a block). The
    counter moves even when a call turns out to change nothing (setting the
    same size): a spurious miss is harmless, a missed change is not. Code that
    edits ``dynamic_entries`` directly is not seen; hpack and h2 never do.
    """

    def __init__(self) -> None:
        self.generation = 0
        super().__init__()

    def add(self, name: bytes, value: bytes) -> None:
        self.generation += 1
        super().add(name, value)

    def _shrink(self) -> None:
        self.generation += 1
        super()._shrink()

    def _set_maxsize(self, newmax: int) -> None:
        self.generation += 1
        HeaderTable.maxsize.fset(self, newmax)  # type: ignore[attr-defined]

    maxsize = property(HeaderTable.maxsize.fget, _set_maxsize)  # type: ignore[assignment]


def assert_valid_table_size(decoder: Any) -> None:
    """What hpack's Decoder checks after decoding a block (a table size update
    must not exceed the advertised maximum), for a decode served from the
    cache (hpack_cache.py); relies on ``Decoder._assert_valid_table_size``."""
    decoder._assert_valid_table_size()
