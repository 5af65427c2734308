"""RFC 7540 sections 3.5 (connection preface) and 4 (frame format, frame
size, header compression)."""

from __future__ import annotations

import time

from h2spec import frames
from h2spec.cases.common import PING_PAYLOAD, dummy_headers
from h2spec.client import describe
from h2spec.frames import ErrorCode, FrameType, ReceivedFrame, SettingId
from h2spec.registry import CaseContext, CaseFailed, group
from h2spec.verdicts import (
    expect_connection_close,
    expect_connection_error,
    expect_frame,
    expect_stream_error,
)

# An extension frame type that RFC 7540 does not define.
UNKNOWN_FRAME_TYPE = 0x16

# ---------------------------------------------------------------- 3.5

preface = group("http2", "3.5", "HTTP/2 Connection Preface")


@preface.case(
    "Sends client connection preface",
    "RFC 7540, 3.5: the server connection preface, a SETTINGS frame, MUST be the first "
    "frame the server sends.",
)
def _client_preface(ctx: CaseContext) -> None:
    conn = ctx.connect(handshake=False)
    conn.send(frames.CLIENT_PREFACE)
    conn.send(frames.settings_frame([(SettingId.INITIAL_WINDOW_SIZE, frames.DEFAULT_WINDOW_SIZE)]))
    first = conn.next_event(time.monotonic() + conn.timeout)
    if not (isinstance(first, ReceivedFrame) and first.type == FrameType.SETTINGS and not first.is_ack):
        raise CaseFailed(["SETTINGS frame (flags:0x00) as the first frame"], describe(first))


@preface.case(
    "Sends invalid connection preface",
    "RFC 7540, 3.5: an invalid connection preface is a connection error of type "
    "PROTOCOL_ERROR; the server MUST close the connection.",
)
def _invalid_preface(ctx: CaseContext) -> None:
    conn = ctx.connect(handshake=False)
    conn.send(b"INVALID CONNECTION PREFACE\r\n\r\n")
    expect_connection_close(conn)


# ---------------------------------------------------------------- 4.1

frame_format = group("http2", "4.1", "Frame Format")


@frame_format.case(
    "Sends a frame with unknown type",
    "RFC 7540, 4.1: frames of an unknown type MUST be ignored and discarded.",
)
def _unknown_type(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send(frames.frame(UNKNOWN_FRAME_TYPE, 0, 0, b"\x00" * 8))
    conn.send(frames.ping_frame(PING_PAYLOAD))
    expect_frame(conn, FrameType.PING)


@frame_format.case(
    "Sends a frame with undefined flag",
    "RFC 7540, 4.1: flags without a defined meaning for the frame type MUST be ignored.",
)
def _undefined_flag(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send(frames.frame(FrameType.PING, 0x16, 0, PING_PAYLOAD))
    expect_frame(conn, FrameType.PING)


@frame_format.case(
    "Sends a frame with reserved field bit",
    "RFC 7540, 4.1: the reserved bit of the stream identifier MUST be ignored on receipt.",
)
def _reserved_bit(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send(frames.frame(FrameType.PING, 0x16, 0, PING_PAYLOAD, reserved_bit=True))
    expect_frame(conn, FrameType.PING)


# ---------------------------------------------------------------- 4.2

frame_size = group("http2", "4.2", "Frame Size")


@frame_size.case(
    "Sends a DATA frame with 2^14 octets in length",
    "RFC 7540, 4.2: every endpoint MUST be able to receive frames of up to 2^14 octets.",
)
def _data_max_size(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers("POST"), end_stream=False)
    conn.send(frames.data_frame(1, b"x" * conn.max_frame_size, end_stream=True))
    expect_frame(conn, FrameType.HEADERS)


@frame_size.case(
    "Sends a large size DATA frame that exceeds the SETTINGS_MAX_FRAME_SIZE",
    "RFC 7540, 4.2: a frame larger than SETTINGS_MAX_FRAME_SIZE MUST get FRAME_SIZE_ERROR.",
)
def _data_too_big(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers("POST"), end_stream=False)
    conn.send(frames.data_frame(1, b"x" * (conn.max_frame_size + 1), end_stream=True))
    expect_stream_error(conn, ErrorCode.FRAME_SIZE_ERROR)


@frame_size.case(
    "Sends a large size HEADERS frame that exceeds the SETTINGS_MAX_FRAME_SIZE",
    "RFC 7540, 4.2: a frame size error in a frame carrying a header block MUST be a "
    "connection error of type FRAME_SIZE_ERROR.",
)
def _headers_too_big(ctx: CaseContext) -> None:
    conn = ctx.connect()
    count = conn.max_frame_size // 4000 + 2
    block = frames.literal_block([*ctx.request_headers(), *dummy_headers(count)])
    conn.send(frames.headers_frame(1, block, end_stream=True, end_headers=True))
    expect_connection_error(conn, ErrorCode.FRAME_SIZE_ERROR)


# ---------------------------------------------------------------- 4.3

compression = group("http2", "4.3", "Header Compression and Decompression")


@compression.case(
    "Sends invalid header block fragment",
    "RFC 7540, 4.3: a header block that cannot be decoded MUST be a connection error of "
    "type COMPRESSION_ERROR.",
)
def _invalid_block(ctx: CaseContext) -> None:
    conn = ctx.connect()
    # A literal with incremental indexing that stops before its name.
    conn.send(frames.headers_frame(1, b"\x40", end_stream=True, end_headers=True))
    expect_connection_error(conn, ErrorCode.COMPRESSION_ERROR)


@compression.case(
    "Sends a PRIORITY frame while sending the header blocks",
    "RFC 7540, 4.3: a header block MUST be sent as contiguous frames; anything between "
    "them is a connection error of type PROTOCOL_ERROR.",
)
def _priority_inside_block(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers(), end_stream=False, end_headers=False)
    conn.send(frames.priority_frame(1, 0, 255))
    conn.send(frames.continuation_frame(1, conn.encode_headers(dummy_headers(1))))
    expect_connection_error(conn, ErrorCode.PROTOCOL_ERROR)


@compression.case(
    "Sends a HEADERS frame to another stream while sending the header blocks",
    "RFC 7540, 4.3: no frame of another stream may interrupt a header block "
    "(connection error of type PROTOCOL_ERROR).",
)
def _headers_inside_block(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers(), end_stream=False, end_headers=False)
    conn.send_request(3, ctx.request_headers())
    conn.send(frames.continuation_frame(1, conn.encode_headers(dummy_headers(1))))
    expect_connection_error(conn, ErrorCode.PROTOCOL_ERROR)
