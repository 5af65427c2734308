"""HTTP/2 responses out: heads, bodies within flow control, trailers,
resets and GOAWAY, framed through h2's state machines into the connection's
output buffer; and the "draining" of a stream whose response is done while
its request body still arrives (see http2.py).

ResponseSending is mixed into HTTP2Protocol (http2.py), whose rules hold
here too: no I/O, no threads, every call serialised by the driver.
"""

from __future__ import annotations

import h2.stream
from hyperframe.frame import GoAwayFrame

from h2serve import metrics

from .events import Headers
from .h2_frames import (
    FLAG_END_HEADERS,
    FLAG_END_STREAM,
    FRAME_TYPE_CONTINUATION,
    FRAME_TYPE_DATA,
    FRAME_TYPE_HEADERS,
    frame_header,
)
from .h2_internals import ErrorCodes
from .h2_state import ProtocolState
from .http2_fields import response_fields

_SENDABLE_STATES = (h2.stream.StreamState.OPEN, h2.stream.StreamState.HALF_CLOSED_REMOTE)


def response_head(status: int, headers: Headers) -> list[tuple[bytes, bytes]]:
    """The checked field list of a final response head, :status first.

    Pure and thread-safe, so an app thread can raise on a bad status or field
    before handing the response to the thread that frames it."""
    if not 200 <= status <= 999:
        raise ValueError(f"invalid final status {status}")
    return [(b":status", str(status).encode())] + response_fields(headers)


class ResponseSending(ProtocolState):
    """Response calls in, frames queued (part of HTTP2Protocol)."""

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
                self._floods.tiny_window_frame()
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
        self._floods.request_completed()
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
