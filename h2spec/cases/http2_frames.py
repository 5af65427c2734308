"""RFC 7540 section 6: frame definitions, flow control and CONTINUATION."""

from __future__ import annotations

from h2spec import frames
from h2spec.cases.common import PING_PAYLOAD, dummy_headers, server_body_length
from h2spec.client import Connection, Event
from h2spec.frames import ErrorCode, FrameType, ReceivedFrame, SettingId
from h2spec.registry import CaseContext, CaseSkipped, group
from h2spec.verdicts import (
    expect_connection_error,
    expect_data_length,
    expect_frame,
    expect_goaway,
    expect_ping_ack,
    expect_reset_or_goaway,
    expect_settings_ack,
    expect_stream_error,
    wait_for,
)

MAX_WINDOW = 2**31 - 1

# ---------------------------------------------------------------- 6.1 DATA

data = group("http2", "6.1", "DATA")


@data.case(
    "Sends a DATA frame with 0x0 stream identifier",
    "RFC 7540, 6.1: DATA on stream 0 MUST be a connection error of type PROTOCOL_ERROR.",
)
def _data_stream_zero(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send(frames.data_frame(0, b"test", end_stream=True))
    expect_connection_error(conn, ErrorCode.PROTOCOL_ERROR)


@data.case(
    'Sends a DATA frame on the stream that is not in "open" or "half-closed (local)" state',
    "RFC 7540, 6.1: DATA on a stream that is not open or half-closed (local) MUST be a "
    "stream error of type STREAM_CLOSED.",
)
def _data_not_open(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers("POST"), end_stream=True)
    conn.send(frames.data_frame(1, b"test", end_stream=True))
    expect_stream_error(conn, ErrorCode.STREAM_CLOSED)


@data.case(
    "Sends a DATA frame with invalid pad length",
    "RFC 7540, 6.1: padding as long as the payload or longer MUST be a connection error "
    "of type PROTOCOL_ERROR.",
)
def _data_bad_padding(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(
        1, [*ctx.request_headers("POST"), ("content-length", "4")], end_stream=False
    )
    # 5 octets of payload, of which the pad length field claims 6 are padding.
    conn.send(frames.frame(FrameType.DATA, frames.Flags.PADDED | frames.Flags.END_STREAM, 1, b"\x06test"))
    expect_connection_error(conn, ErrorCode.PROTOCOL_ERROR)


# ---------------------------------------------------------------- 6.2 HEADERS

headers = group("http2", "6.2", "HEADERS")

END_HEADERS_RULE = (
    "RFC 7540, 6.2: a HEADERS frame without END_HEADERS MUST be followed by CONTINUATION on "
    "the same stream; anything else is a connection error of type PROTOCOL_ERROR."
)


@headers.case(
    "Sends a HEADERS frame without the END_HEADERS flag, and a PRIORITY frame",
    END_HEADERS_RULE,
)
def _headers_then_priority(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers(), end_stream=False, end_headers=False)
    conn.send(frames.priority_frame(1, 0, 255))
    conn.send(frames.continuation_frame(1, conn.encode_headers(dummy_headers(1))))
    expect_connection_error(conn, ErrorCode.PROTOCOL_ERROR)


@headers.case(
    "Sends a HEADERS frame to another stream while sending a HEADERS frame",
    END_HEADERS_RULE,
)
def _headers_then_other_stream(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers(), end_stream=False, end_headers=False)
    conn.send_request(3, ctx.request_headers())
    conn.send(frames.continuation_frame(1, conn.encode_headers(dummy_headers(1))))
    expect_connection_error(conn, ErrorCode.PROTOCOL_ERROR)


@headers.case(
    "Sends a HEADERS frame with 0x0 stream identifier",
    "RFC 7540, 6.2: HEADERS on stream 0 MUST be a connection error of type PROTOCOL_ERROR.",
)
def _headers_stream_zero(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(0, ctx.request_headers())
    expect_connection_error(conn, ErrorCode.PROTOCOL_ERROR)


@headers.case(
    "Sends a HEADERS frame with invalid pad length",
    "RFC 7540, 6.2: padding that exceeds what remains for the header block fragment MUST "
    "be treated as a PROTOCOL_ERROR.",
)
def _headers_bad_padding(ctx: CaseContext) -> None:
    conn = ctx.connect()
    block = conn.encode_headers(ctx.request_headers())
    flags = frames.Flags.PADDED | frames.Flags.END_HEADERS | frames.Flags.END_STREAM
    # The pad length claims two octets more than the whole rest of the payload.
    conn.send(frames.frame(FrameType.HEADERS, flags, 1, bytes([len(block) + 2]) + block))
    expect_stream_error(conn, ErrorCode.PROTOCOL_ERROR)


# ---------------------------------------------------------------- 6.3 PRIORITY

priority = group("http2", "6.3", "PRIORITY")


@priority.case(
    "Sends a PRIORITY frame with 0x0 stream identifier",
    "RFC 7540, 6.3: PRIORITY on stream 0 MUST be a connection error of type PROTOCOL_ERROR.",
)
def _priority_stream_zero(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send(frames.priority_frame(0, 0, 255))
    expect_connection_error(conn, ErrorCode.PROTOCOL_ERROR)


@priority.case(
    "Sends a PRIORITY frame with a length other than 5 octets",
    "RFC 7540, 6.3: a PRIORITY frame whose length is not 5 MUST be a stream error of type "
    "FRAME_SIZE_ERROR.",
)
def _priority_bad_length(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers())
    conn.send(frames.frame(FrameType.PRIORITY, 0, 1, b"\x80\x00\x00\x01"))
    expect_stream_error(conn, ErrorCode.FRAME_SIZE_ERROR)


# ---------------------------------------------------------------- 6.4 RST_STREAM

rst_stream = group("http2", "6.4", "RST_STREAM")


@rst_stream.case(
    "Sends a RST_STREAM frame with 0x0 stream identifier",
    "RFC 7540, 6.4: RST_STREAM on stream 0 MUST be a connection error of type PROTOCOL_ERROR.",
)
def _rst_stream_zero(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send(frames.rst_stream_frame(0, ErrorCode.CANCEL))
    expect_connection_error(conn, ErrorCode.PROTOCOL_ERROR)


@rst_stream.case(
    "Sends a RST_STREAM frame on a idle stream",
    "RFC 7540, 6.4: RST_STREAM on an idle stream MUST be a connection error of type "
    "PROTOCOL_ERROR.",
)
def _rst_idle(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send(frames.rst_stream_frame(1, ErrorCode.CANCEL))
    expect_connection_error(conn, ErrorCode.PROTOCOL_ERROR)


@rst_stream.case(
    "Sends a RST_STREAM frame with a length other than 4 octets",
    "RFC 7540, 6.4: a RST_STREAM frame whose length is not 4 MUST be a connection error of "
    "type FRAME_SIZE_ERROR.",
)
def _rst_bad_length(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers())
    conn.send(frames.frame(FrameType.RST_STREAM, 0, 1, b"\x00\x00\x00"))
    expect_stream_error(conn, ErrorCode.FRAME_SIZE_ERROR)


# ---------------------------------------------------------------- 6.5 SETTINGS

settings = group("http2", "6.5", "SETTINGS")


@settings.case(
    "Sends a SETTINGS frame with ACK flag and payload",
    "RFC 7540, 6.5: a SETTINGS ack with a non-empty payload MUST be a connection error of "
    "type FRAME_SIZE_ERROR.",
)
def _settings_ack_payload(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send(frames.frame(FrameType.SETTINGS, frames.Flags.ACK, 0, b"\x00"))
    expect_connection_error(conn, ErrorCode.FRAME_SIZE_ERROR)


@settings.case(
    "Sends a SETTINGS frame with a stream identifier other than 0x0",
    "RFC 7540, 6.5: SETTINGS on a stream other than 0 MUST be a connection error of type "
    "PROTOCOL_ERROR.",
)
def _settings_on_stream(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send(frames.frame(FrameType.SETTINGS, 0, 1, b"\x00\x03\x00\x00\x00\x64"))
    expect_connection_error(conn, ErrorCode.PROTOCOL_ERROR)


@settings.case(
    "Sends a SETTINGS frame with a length other than a multiple of 6 octets",
    "RFC 7540, 6.5: a SETTINGS length that is not a multiple of 6 MUST be a connection "
    "error of type FRAME_SIZE_ERROR (h2spec also accepts PROTOCOL_ERROR).",
)
def _settings_bad_length(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send(frames.frame(FrameType.SETTINGS, 0, 0, b"\x00\x03\x00\x00\x00\x64\x00\x02\x00"))
    expect_connection_error(conn, ErrorCode.FRAME_SIZE_ERROR, ErrorCode.PROTOCOL_ERROR)


# ---------------------------------------------------------------- 6.5.2

defined_settings = group("http2", "6.5.2", "Defined SETTINGS Parameters")


def _bad_setting(ctx: CaseContext, setting: int, value: int, code: ErrorCode) -> None:
    conn = ctx.connect()
    conn.send(frames.settings_frame([(setting, value)]))
    expect_connection_error(conn, code)


@defined_settings.case(
    "SETTINGS_ENABLE_PUSH (0x2): Sends the value other than 0 or 1",
    "RFC 7540, 6.5.2: SETTINGS_ENABLE_PUSH other than 0 or 1 MUST be a connection error of "
    "type PROTOCOL_ERROR.",
)
def _enable_push_2(ctx: CaseContext) -> None:
    _bad_setting(ctx, SettingId.ENABLE_PUSH, 2, ErrorCode.PROTOCOL_ERROR)


@defined_settings.case(
    "SETTINGS_INITIAL_WINDOW_SIZE (0x4): Sends the value above the maximum flow control window size",
    "RFC 7540, 6.5.2: SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1 MUST be a connection error "
    "of type FLOW_CONTROL_ERROR.",
)
def _initial_window_too_big(ctx: CaseContext) -> None:
    _bad_setting(ctx, SettingId.INITIAL_WINDOW_SIZE, 2**31, ErrorCode.FLOW_CONTROL_ERROR)


@defined_settings.case(
    "SETTINGS_MAX_FRAME_SIZE (0x5): Sends the value below the initial value",
    "RFC 7540, 6.5.2: SETTINGS_MAX_FRAME_SIZE below 2^14 MUST be a connection error of "
    "type PROTOCOL_ERROR.",
)
def _max_frame_size_small(ctx: CaseContext) -> None:
    _bad_setting(ctx, SettingId.MAX_FRAME_SIZE, 2**14 - 1, ErrorCode.PROTOCOL_ERROR)


@defined_settings.case(
    "SETTINGS_MAX_FRAME_SIZE (0x5): Sends the value above the maximum allowed frame size",
    "RFC 7540, 6.5.2: SETTINGS_MAX_FRAME_SIZE above 2^24-1 MUST be a connection error of "
    "type PROTOCOL_ERROR.",
)
def _max_frame_size_big(ctx: CaseContext) -> None:
    _bad_setting(ctx, SettingId.MAX_FRAME_SIZE, 2**24, ErrorCode.PROTOCOL_ERROR)


@defined_settings.case(
    "Sends a SETTINGS frame with unknown identifier",
    "RFC 7540, 6.5.2: a setting with an unknown identifier MUST be ignored.",
)
def _unknown_setting(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send(frames.settings_frame([(0xFF, 1)]))
    conn.send(frames.ping_frame(PING_PAYLOAD))
    expect_frame(conn, FrameType.PING)


# ---------------------------------------------------------------- 6.5.3

synchronization = group("http2", "6.5.3", "Settings Synchronization")


@synchronization.case(
    "Sends multiple values of SETTINGS_INITIAL_WINDOW_SIZE",
    "RFC 7540, 6.5.3: the values of a SETTINGS frame MUST be applied in the order they "
    "appear (the last one wins).",
)
def _settings_in_order(ctx: CaseContext) -> None:
    if server_body_length(ctx) < 1:
        raise CaseSkipped("the response to GET has an empty body")
    conn = ctx.connect()
    conn.send(
        frames.settings_frame(
            [(SettingId.INITIAL_WINDOW_SIZE, 100), (SettingId.INITIAL_WINDOW_SIZE, 1)]
        )
    )
    expect_frame(conn, FrameType.SETTINGS)
    conn.send_request(1, ctx.request_headers())
    expect_data_length(conn, 1, 1)


@synchronization.case(
    "Sends a SETTINGS frame without ACK flag",
    "RFC 7540, 6.5.3: once the values are applied, the receiver MUST immediately send a "
    "SETTINGS frame with ACK.",
)
def _settings_acknowledged(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send(frames.settings_frame([(SettingId.ENABLE_PUSH, 0)]))
    expect_settings_ack(conn)


# ---------------------------------------------------------------- 6.7 PING

ping = group("http2", "6.7", "PING")


@ping.case(
    "Sends a PING frame",
    "RFC 7540, 6.7: a PING without ACK MUST be answered by a PING with ACK and the same "
    "payload.",
)
def _ping(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send(frames.ping_frame(PING_PAYLOAD))
    expect_ping_ack(conn, PING_PAYLOAD)


@ping.case(
    "Sends a PING frame with ACK",
    "RFC 7540, 6.7: a PING with ACK MUST NOT be answered.",
)
def _ping_ack_not_answered(ctx: CaseContext) -> None:
    conn = ctx.connect()
    unexpected = b"invalid\x00"
    conn.send(frames.ping_frame(unexpected, ack=True))
    conn.send(frames.ping_frame(PING_PAYLOAD))
    expect_ping_ack(conn, PING_PAYLOAD, forbidden_data=unexpected)


@ping.case(
    "Sends a PING frame with a stream identifier field value other than 0x0",
    "RFC 7540, 6.7: PING on a stream other than 0 MUST be a connection error of type "
    "PROTOCOL_ERROR.",
)
def _ping_on_stream(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send(frames.frame(FrameType.PING, 0, 1, b"\x00" * 8))
    expect_connection_error(conn, ErrorCode.PROTOCOL_ERROR)


@ping.case(
    "Sends a PING frame with a length field value other than 8",
    "RFC 7540, 6.7: a PING whose length is not 8 MUST be a connection error of type "
    "FRAME_SIZE_ERROR.",
)
def _ping_bad_length(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send(frames.frame(FrameType.PING, 0, 0, b"\x00" * 6))
    expect_connection_error(conn, ErrorCode.FRAME_SIZE_ERROR)


# ---------------------------------------------------------------- 6.8 GOAWAY

goaway = group("http2", "6.8", "GOAWAY")


@goaway.case(
    "Sends a GOAWAY frame with a stream identifier other than 0x0",
    "RFC 7540, 6.8: GOAWAY on a stream other than 0 MUST be a connection error of type "
    "PROTOCOL_ERROR.",
)
def _goaway_on_stream(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send(frames.frame(FrameType.GOAWAY, 0, 1, b"\x00" * 8))
    expect_connection_error(conn, ErrorCode.PROTOCOL_ERROR)


# ---------------------------------------------------------------- 6.9 WINDOW_UPDATE

window_update = group("http2", "6.9", "WINDOW_UPDATE")


@window_update.case(
    "Sends a WINDOW_UPDATE frame with a flow control window increment of 0",
    "RFC 7540, 6.9: an increment of 0 on the connection window MUST be a connection error "
    "of type PROTOCOL_ERROR.",
)
def _window_update_zero(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send(frames.window_update_frame(0, 0))
    expect_connection_error(conn, ErrorCode.PROTOCOL_ERROR)


@window_update.case(
    "Sends a WINDOW_UPDATE frame with a flow control window increment of 0 on a stream",
    "RFC 7540, 6.9: an increment of 0 on a stream MUST be a stream error of type "
    "PROTOCOL_ERROR.",
)
def _window_update_zero_stream(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers(), end_stream=False)
    conn.send(frames.window_update_frame(1, 0))
    expect_stream_error(conn, ErrorCode.PROTOCOL_ERROR)


@window_update.case(
    "Sends a WINDOW_UPDATE frame with a length other than 4 octets",
    "RFC 7540, 6.9: a WINDOW_UPDATE whose length is not 4 MUST be a connection error of "
    "type FRAME_SIZE_ERROR.",
)
def _window_update_bad_length(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send(frames.frame(FrameType.WINDOW_UPDATE, 0, 0, b"\x00\x00\x01"))
    expect_connection_error(conn, ErrorCode.FRAME_SIZE_ERROR)


# ---------------------------------------------------------------- 6.9.1

flow_window = group("http2", "6.9.1", "The Flow-Control Window")


@flow_window.case(
    "Sends SETTINGS frame to set the initial window size to 1 and sends HEADERS frame",
    "RFC 7540, 6.9.1: the sender MUST NOT send a flow-controlled frame larger than the "
    "space available in the receiver's window.",
)
def _window_of_one(ctx: CaseContext) -> None:
    if server_body_length(ctx) < 1:
        raise CaseSkipped("the response to GET has an empty body")
    conn = ctx.connect()
    conn.send(frames.settings_frame([(SettingId.INITIAL_WINDOW_SIZE, 1)]))
    expect_frame(conn, FrameType.SETTINGS)
    conn.send_request(1, ctx.request_headers())
    expect_data_length(conn, 1, 1)


@flow_window.case(
    "Sends multiple WINDOW_UPDATE frames increasing the flow control window to above 2^31-1",
    "RFC 7540, 6.9.1: a WINDOW_UPDATE that takes the connection window above 2^31-1 MUST "
    "be answered by GOAWAY with FLOW_CONTROL_ERROR.",
)
def _connection_window_overflow(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send(frames.window_update_frame(0, MAX_WINDOW) + frames.window_update_frame(0, MAX_WINDOW))
    expect_goaway(conn, ErrorCode.FLOW_CONTROL_ERROR)


@flow_window.case(
    "Sends multiple WINDOW_UPDATE frames increasing the flow control window to above 2^31-1 on a stream",
    "RFC 7540, 6.9.1: a WINDOW_UPDATE that takes a stream window above 2^31-1 MUST be "
    "answered by RST_STREAM with FLOW_CONTROL_ERROR.",
)
def _stream_window_overflow(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers(), end_stream=False)
    conn.send(frames.window_update_frame(1, MAX_WINDOW) + frames.window_update_frame(1, MAX_WINDOW))
    expect_reset_or_goaway(conn, 1, ErrorCode.FLOW_CONTROL_ERROR)


# ---------------------------------------------------------------- 6.9.2


def _expect_data_total(conn: Connection, stream_id: int, total: int) -> None:
    """DATA on `stream_id` adding up to exactly `total` octets (the whole
    window), in as many frames as the server likes."""
    received = 0

    def judge(event: Event) -> bool | None:
        nonlocal received
        if isinstance(event, ReceivedFrame) and event.type == FrameType.DATA:
            if event.stream_id == stream_id:
                received += event.length
                if received > total:
                    return False
                return True if received == total else None
        return None

    wait_for(conn, judge, [f"DATA frames totalling {total} octets on stream {stream_id}"])


initial_window = group("http2", "6.9.2", "Initial Flow-Control Window Size")


@initial_window.case(
    "Changes SETTINGS_INITIAL_WINDOW_SIZE after sending HEADERS frame",
    "RFC 7540, 6.9.2: a change of SETTINGS_INITIAL_WINDOW_SIZE MUST adjust the windows of "
    "all existing streams.",
)
def _window_grows_after_headers(ctx: CaseContext) -> None:
    if server_body_length(ctx) < 1:
        raise CaseSkipped("the response to GET has an empty body")
    conn = ctx.connect()
    conn.send(frames.settings_frame([(SettingId.INITIAL_WINDOW_SIZE, 0)]))
    expect_frame(conn, FrameType.SETTINGS)
    conn.send_request(1, ctx.request_headers())
    conn.send(frames.settings_frame([(SettingId.INITIAL_WINDOW_SIZE, 1)]))
    expect_frame(conn, FrameType.SETTINGS)
    expect_data_length(conn, 1, 1)


@initial_window.case(
    "Sends a SETTINGS frame for window size to be negative",
    "RFC 7540, 6.9.2: the sender MUST track a negative window and send nothing until "
    "WINDOW_UPDATE makes it positive.",
)
def _negative_window(ctx: CaseContext) -> None:
    if server_body_length(ctx) < 5:
        raise CaseSkipped("the response to GET is shorter than 5 octets")
    conn = ctx.connect()
    conn.send(frames.settings_frame([(SettingId.INITIAL_WINDOW_SIZE, 3)]))
    expect_frame(conn, FrameType.SETTINGS)
    conn.send_request(1, ctx.request_headers())
    _expect_data_total(conn, 1, 3)
    # Window 3 used up; shrinking the initial size to 2 leaves it at -1.
    conn.send(frames.settings_frame([(SettingId.INITIAL_WINDOW_SIZE, 2)]))
    expect_frame(conn, FrameType.SETTINGS)
    conn.send(frames.window_update_frame(1, 2))
    expect_data_length(conn, 1, 1)


@initial_window.case(
    "Sends a SETTINGS_INITIAL_WINDOW_SIZE settings with an exceeded maximum window size value",
    "RFC 7540, 6.9.2: a SETTINGS_INITIAL_WINDOW_SIZE that takes a window above the maximum "
    "MUST be a connection error of type FLOW_CONTROL_ERROR.",
)
def _initial_window_overflow(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send(frames.settings_frame([(SettingId.INITIAL_WINDOW_SIZE, 2**31)]))
    expect_connection_error(conn, ErrorCode.FLOW_CONTROL_ERROR)


# ---------------------------------------------------------------- 6.10 CONTINUATION

continuation = group("http2", "6.10", "CONTINUATION")

PRECEDED_RULE = (
    "RFC 7540, 6.10: a CONTINUATION MUST follow HEADERS, PUSH_PROMISE or CONTINUATION "
    "without END_HEADERS; otherwise a connection error of type PROTOCOL_ERROR."
)


@continuation.case(
    "Sends multiple CONTINUATION frames preceded by a HEADERS frame",
    "RFC 7540, 6.10: any number of CONTINUATION frames may follow a HEADERS frame.",
)
def _continuations_accepted(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers(), end_stream=True, end_headers=False)
    conn.send(frames.continuation_frame(1, conn.encode_headers(dummy_headers(1)), end_headers=False))
    conn.send(frames.continuation_frame(1, conn.encode_headers([("x-dummy1", "x" * 4000)])))
    expect_frame(conn, FrameType.HEADERS)


@continuation.case(
    "Sends a CONTINUATION frame followed by any frame other than CONTINUATION",
    "RFC 7540, 6.10: a CONTINUATION without END_HEADERS MUST be followed by another "
    "CONTINUATION; anything else is a connection error of type PROTOCOL_ERROR.",
)
def _continuation_then_data(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers("POST"), end_stream=False, end_headers=False)
    conn.send(frames.continuation_frame(1, conn.encode_headers(dummy_headers(1)), end_headers=False))
    conn.send(frames.data_frame(1, b"test", end_stream=True))
    expect_connection_error(conn, ErrorCode.PROTOCOL_ERROR)


@continuation.case(
    "Sends a CONTINUATION frame with 0x0 stream identifier",
    "RFC 7540, 6.10: CONTINUATION on stream 0 MUST be a connection error of type "
    "PROTOCOL_ERROR.",
)
def _continuation_stream_zero(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers(), end_stream=True, end_headers=False)
    conn.send(frames.continuation_frame(0, conn.encode_headers(dummy_headers(1))))
    expect_connection_error(conn, ErrorCode.PROTOCOL_ERROR)


@continuation.case(
    "Sends a CONTINUATION frame preceded by a HEADERS frame with END_HEADERS flag",
    PRECEDED_RULE,
)
def _continuation_after_end_headers(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers(), end_stream=True, end_headers=True)
    conn.send(frames.continuation_frame(1, conn.encode_headers(dummy_headers(1))))
    expect_connection_error(conn, ErrorCode.PROTOCOL_ERROR)


@continuation.case(
    "Sends a CONTINUATION frame preceded by a CONTINUATION frame with END_HEADERS flag",
    PRECEDED_RULE,
)
def _continuation_after_ended_continuation(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers(), end_stream=True, end_headers=False)
    conn.send(frames.continuation_frame(1, conn.encode_headers(dummy_headers(1))))
    conn.send(frames.continuation_frame(1, conn.encode_headers([("x-dummy1", "x" * 4000)])))
    expect_connection_error(conn, ErrorCode.PROTOCOL_ERROR)


@continuation.case(
    "Sends a CONTINUATION frame preceded by a DATA frame",
    PRECEDED_RULE,
)
def _continuation_after_data(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers("POST"), end_stream=False, end_headers=True)
    conn.send(frames.data_frame(1, b"test"))
    conn.send(frames.continuation_frame(1, conn.encode_headers(dummy_headers(1))))
    expect_connection_error(conn, ErrorCode.PROTOCOL_ERROR)
