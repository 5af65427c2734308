"""Verdicts: read the server's answer and decide, with h2spec's leniency.

Every helper reads events until it can decide, or until `conn.timeout`
seconds pass. They return on a pass and raise `CaseFailed` (expected
answers and the actual one) otherwise.

The leniency follows h2spec:
- a connection error is met by GOAWAY with an accepted code, or by the
  connection closing;
- a stream error is met by RST_STREAM or GOAWAY with an accepted code, or by
  the connection closing (RFC 9113, 5.4.2 lets an endpoint escalate).
A GOAWAY or RST_STREAM with another code does not pass by itself; when the
close that follows makes the case pass anyway, a note says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from h2spec.client import Closed, Connection, Event, TimedOut, describe
from h2spec.frames import ErrorCode, FrameType, ReceivedFrame, error_name
from h2spec.registry import CaseFailed

# A judge looks at one event: True passes, False fails now, None reads on.
Judge = Callable[[Event], bool | None]

CONNECTION_CLOSED = "Connection closed"


def goaway_text(code: int) -> str:
    return f"GOAWAY frame (error_code:{error_name(code)})"


def rst_stream_text(code: int) -> str:
    return f"RST_STREAM frame (error_code:{error_name(code)})"


def wait_for(conn: Connection, judge: Judge, expected: list[str]) -> Event:
    """Feed events to `judge` until it decides; time out as a failure.

    The reported actual answer is the last frame seen (or the close), with
    the timeout mentioned when nothing decisive came."""
    deadline = time.monotonic() + conn.timeout
    last_frame: ReceivedFrame | None = None
    while True:
        event = conn.next_event(deadline)
        verdict = judge(event)
        if verdict is True:
            return event
        if isinstance(event, ReceivedFrame):
            last_frame = event
        if verdict is False or isinstance(event, Closed | TimedOut):
            actual = describe(event)
            if not isinstance(event, ReceivedFrame) and last_frame is not None:
                actual += f"; last frame received: {last_frame.describe()}"
            raise CaseFailed(expected, actual)


def _codes(codes: Iterable[int]) -> set[int]:
    return {int(code) for code in codes}


def expect_connection_error(conn: Connection, *codes: ErrorCode) -> None:
    """GOAWAY with one of `codes`, or the connection closing."""
    accepted = _codes(codes)
    expected = [goaway_text(code) for code in codes] + [CONNECTION_CLOSED]

    def judge(event: Event) -> bool | None:
        if isinstance(event, Closed):
            return True
        if isinstance(event, ReceivedFrame) and event.type == FrameType.GOAWAY:
            if event.error_code in accepted:
                return True
            conn.notes.append(f"received {event.describe()}, not an accepted code")
        return None

    wait_for(conn, judge, expected)


def expect_stream_error(conn: Connection, *codes: ErrorCode) -> None:
    """RST_STREAM or GOAWAY with one of `codes`, or the connection closing."""
    accepted = _codes(codes)
    expected = [text(code) for code in codes for text in (goaway_text, rst_stream_text)]
    expected.append(CONNECTION_CLOSED)

    def judge(event: Event) -> bool | None:
        if isinstance(event, Closed):
            return True
        if isinstance(event, ReceivedFrame) and event.type in (FrameType.GOAWAY, FrameType.RST_STREAM):
            if event.error_code in accepted:
                return True
            conn.notes.append(f"received {event.describe()}, not an accepted code")
        return None

    wait_for(conn, judge, expected)


def expect_connection_close(conn: Connection) -> None:
    """The server closes the connection (frames before the close are fine)."""
    wait_for(conn, lambda event: True if isinstance(event, Closed) else None, [CONNECTION_CLOSED])


def expect_goaway(conn: Connection, *codes: ErrorCode) -> ReceivedFrame:
    """A GOAWAY frame, with one of `codes` when any are given; a bare close
    does not count."""
    accepted = _codes(codes)
    expected = [goaway_text(code) for code in codes] or ["GOAWAY frame"]

    def judge(event: Event) -> bool | None:
        if isinstance(event, ReceivedFrame) and event.type == FrameType.GOAWAY:
            return not accepted or event.error_code in accepted
        return None

    event = wait_for(conn, judge, expected)
    assert isinstance(event, ReceivedFrame)
    return event


def expect_reset_or_goaway(conn: Connection, stream_id: int, *codes: ErrorCode) -> None:
    """RST_STREAM on `stream_id` or GOAWAY, with one of `codes`; a bare close
    does not count (the RFC names the frame to send)."""
    accepted = _codes(codes)
    expected = [rst_stream_text(code) for code in codes] + [goaway_text(code) for code in codes]

    def judge(event: Event) -> bool | None:
        if not isinstance(event, ReceivedFrame):
            return None
        if event.type == FrameType.RST_STREAM and event.stream_id == stream_id:
            return event.error_code in accepted
        if event.type == FrameType.GOAWAY:
            return event.error_code in accepted
        return None

    wait_for(conn, judge, expected)


def _error_frame_for(event: Event, stream_id: int) -> bool:
    """An answer that rules out a normal response on `stream_id`."""
    if not isinstance(event, ReceivedFrame):
        return False
    if event.type == FrameType.RST_STREAM and event.stream_id == stream_id:
        return True
    return event.type == FrameType.GOAWAY and event.error_code != ErrorCode.NO_ERROR


def expect_response_headers(conn: Connection, stream_id: int) -> ReceivedFrame:
    """A HEADERS frame on `stream_id`: the server accepted the request."""

    def judge(event: Event) -> bool | None:
        if isinstance(event, ReceivedFrame) and event.type == FrameType.HEADERS:
            if event.stream_id == stream_id:
                return True
        if _error_frame_for(event, stream_id):
            return False
        return None

    event = wait_for(conn, judge, [f"HEADERS frame (stream_id:{stream_id})"])
    assert isinstance(event, ReceivedFrame)
    return event


def expect_frame(conn: Connection, frame_type: FrameType) -> ReceivedFrame:
    """Any frame of the given type (h2spec's "event type" verdict)."""

    def judge(event: Event) -> bool | None:
        if isinstance(event, ReceivedFrame) and event.type == frame_type:
            return True
        return None

    event = wait_for(conn, judge, [f"{frame_type.name} frame"])
    assert isinstance(event, ReceivedFrame)
    return event


def expect_ping_ack(
    conn: Connection,
    opaque_data: bytes,
    *,
    close_ok: bool = False,
    forbidden_data: bytes | None = None,
) -> None:
    """A PING with ACK carrying `opaque_data`; `close_ok` also accepts the
    connection closing, and a PING echoing `forbidden_data` fails."""
    expected = [f"PING frame (flags:0x01, opaque_data:{opaque_data!r})"]
    if close_ok:
        expected.append(CONNECTION_CLOSED)

    def judge(event: Event) -> bool | None:
        if isinstance(event, Closed):
            return True if close_ok else None
        if isinstance(event, ReceivedFrame) and event.type == FrameType.PING:
            if forbidden_data is not None and event.payload == forbidden_data:
                return False
            if event.is_ack and event.payload == opaque_data:
                return True
        return None

    wait_for(conn, judge, expected)


def expect_settings_ack(conn: Connection) -> None:
    """The next SETTINGS frame is an acknowledgement."""

    def judge(event: Event) -> bool | None:
        if isinstance(event, ReceivedFrame) and event.type == FrameType.SETTINGS:
            return event.is_ack
        return None

    wait_for(conn, judge, ["SETTINGS frame (flags:0x01)"])


def expect_stream_end(conn: Connection, stream_id: int) -> None:
    """The response on `stream_id` ends (END_STREAM, or RST_STREAM NO_ERROR):
    the stream is closed on both sides when this returns."""

    def judge(event: Event) -> bool | None:
        if not isinstance(event, ReceivedFrame) or event.stream_id != stream_id:
            return None
        if event.ends_stream:
            return True
        if event.type == FrameType.RST_STREAM:
            return event.error_code == ErrorCode.NO_ERROR
        return None

    wait_for(conn, judge, [f"END_STREAM on stream {stream_id}"])


def expect_data_length(conn: Connection, stream_id: int, length: int) -> None:
    """The next non-empty DATA frame on `stream_id` carries exactly `length`
    octets: the server respects the flow-control window it was given."""

    def judge(event: Event) -> bool | None:
        if _error_frame_for(event, stream_id):
            return False
        if isinstance(event, ReceivedFrame) and event.type == FrameType.DATA:
            if event.stream_id == stream_id and event.length:
                return event.length == length
        return None

    wait_for(conn, judge, [f"DATA frame (length:{length}, stream_id:{stream_id})"])
