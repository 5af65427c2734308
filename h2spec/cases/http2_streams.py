"""RFC 7540 section 5: stream states, identifiers, concurrency, priority,
error handling and extensions."""

from __future__ import annotations

from h2spec import frames
from h2spec.cases.common import PING_PAYLOAD, dummy_headers
from h2spec.cases.http2_starting import UNKNOWN_FRAME_TYPE
from h2spec.frames import ErrorCode, FrameType, SettingId
from h2spec.registry import CaseContext, CaseSkipped, group
from h2spec.verdicts import (
    expect_connection_close,
    expect_connection_error,
    expect_frame,
    expect_goaway,
    expect_stream_end,
    expect_stream_error,
)

# ---------------------------------------------------------------- 5.1

states = group("http2", "5.1", "Stream States")

IDLE_RULE = (
    "RFC 7540, 5.1 (idle): any frame other than HEADERS or PRIORITY on an idle stream "
    "MUST be a connection error of type PROTOCOL_ERROR."
)
HALF_CLOSED_RULE = (
    "RFC 7540, 5.1 (half-closed (remote)): frames other than WINDOW_UPDATE, PRIORITY or "
    "RST_STREAM MUST get a stream error of type STREAM_CLOSED."
)
RESET_RULE = (
    "RFC 7540, 5.1 (closed): any frame other than PRIORITY after RST_STREAM MUST be a "
    "stream error of type STREAM_CLOSED."
)
END_STREAM_RULE = (
    "RFC 7540, 5.1 (closed): frames received after END_STREAM, once the stream is closed, "
    "MUST be a connection error of type STREAM_CLOSED."
)


@states.case("idle: Sends a DATA frame", IDLE_RULE)
def _idle_data(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send(frames.data_frame(1, b"test", end_stream=True))
    expect_connection_error(conn, ErrorCode.PROTOCOL_ERROR)


@states.case("idle: Sends a RST_STREAM frame", IDLE_RULE)
def _idle_rst(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send(frames.rst_stream_frame(1, ErrorCode.CANCEL))
    expect_connection_error(conn, ErrorCode.PROTOCOL_ERROR)


@states.case("idle: Sends a WINDOW_UPDATE frame", IDLE_RULE)
def _idle_window_update(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send(frames.window_update_frame(1, 100))
    expect_connection_error(conn, ErrorCode.PROTOCOL_ERROR)


@states.case("idle: Sends a CONTINUATION frame", IDLE_RULE)
def _idle_continuation(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send(frames.continuation_frame(1, conn.encode_headers(ctx.request_headers())))
    expect_connection_error(conn, ErrorCode.PROTOCOL_ERROR)


@states.case("half closed (remote): Sends a DATA frame", HALF_CLOSED_RULE)
def _half_closed_data(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers())
    conn.send(frames.data_frame(1, b"test", end_stream=True))
    expect_stream_error(conn, ErrorCode.STREAM_CLOSED)


@states.case("half closed (remote): Sends a HEADERS frame", HALF_CLOSED_RULE)
def _half_closed_headers(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers())
    conn.send_request(1, ctx.request_headers())
    expect_stream_error(conn, ErrorCode.STREAM_CLOSED)


@states.case("half closed (remote): Sends a CONTINUATION frame", HALF_CLOSED_RULE)
def _half_closed_continuation(ctx: CaseContext) -> None:
    conn = ctx.connect()
    block = conn.send_request(1, ctx.request_headers())
    conn.send(frames.continuation_frame(1, block))
    # A CONTINUATION after a complete header block is also a PROTOCOL_ERROR (6.10).
    expect_stream_error(conn, ErrorCode.STREAM_CLOSED, ErrorCode.PROTOCOL_ERROR)


@states.case("closed: Sends a DATA frame after sending RST_STREAM frame", RESET_RULE)
def _reset_data(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers(), end_stream=False)
    conn.send(frames.rst_stream_frame(1, ErrorCode.CANCEL))
    conn.send(frames.data_frame(1, b"test", end_stream=True))
    expect_stream_error(conn, ErrorCode.STREAM_CLOSED)


@states.case("closed: Sends a HEADERS frame after sending RST_STREAM frame", RESET_RULE)
def _reset_headers(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers(), end_stream=False)
    conn.send(frames.rst_stream_frame(1, ErrorCode.CANCEL))
    conn.send_request(1, ctx.request_headers())
    expect_stream_error(conn, ErrorCode.STREAM_CLOSED)


@states.case("closed: Sends a CONTINUATION frame after sending RST_STREAM frame", RESET_RULE)
def _reset_continuation(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers(), end_stream=False)
    conn.send(frames.rst_stream_frame(1, ErrorCode.CANCEL))
    conn.send(frames.continuation_frame(1, conn.encode_headers(dummy_headers(1))))
    expect_stream_error(conn, ErrorCode.STREAM_CLOSED, ErrorCode.PROTOCOL_ERROR)


@states.case("closed: Sends a DATA frame", END_STREAM_RULE)
def _closed_data(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers())
    expect_stream_end(conn, 1)
    conn.send(frames.data_frame(1, b"test", end_stream=True))
    expect_connection_error(conn, ErrorCode.STREAM_CLOSED)


@states.case("closed: Sends a HEADERS frame", END_STREAM_RULE)
def _closed_headers(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers())
    expect_stream_end(conn, 1)
    conn.send_request(1, ctx.request_headers())
    expect_connection_error(conn, ErrorCode.STREAM_CLOSED)


@states.case("closed: Sends a CONTINUATION frame", END_STREAM_RULE)
def _closed_continuation(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers())
    expect_stream_end(conn, 1)
    conn.send(frames.continuation_frame(1, conn.encode_headers(dummy_headers(1))))
    expect_connection_error(conn, ErrorCode.STREAM_CLOSED, ErrorCode.PROTOCOL_ERROR)


# ---------------------------------------------------------------- 5.1.1

identifiers = group("http2", "5.1.1", "Stream Identifiers")


@identifiers.case(
    "Sends even-numbered stream identifier",
    "RFC 7540, 5.1.1: a client stream with an even identifier is unexpected; a connection "
    "error of type PROTOCOL_ERROR MUST follow.",
)
def _even_stream(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(2, ctx.request_headers())
    expect_connection_error(conn, ErrorCode.PROTOCOL_ERROR)


@identifiers.case(
    "Sends stream identifier that is numerically smaller than previous",
    "RFC 7540, 5.1.1: new stream identifiers MUST increase; a smaller one is a connection "
    "error of type PROTOCOL_ERROR.",
)
def _decreasing_stream(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(5, ctx.request_headers())
    conn.send_request(3, ctx.request_headers())
    expect_connection_error(conn, ErrorCode.PROTOCOL_ERROR)


# ---------------------------------------------------------------- 5.1.2

concurrency = group("http2", "5.1.2", "Stream Concurrency")

# Opening more streams than this to probe the limit would be a load test.
MAX_STREAMS_PROBED = 1000


@concurrency.case(
    "Sends HEADERS frames that causes their advertised concurrent stream limit to be exceeded",
    "RFC 7540, 5.1.2: a HEADERS frame beyond SETTINGS_MAX_CONCURRENT_STREAMS MUST be a "
    "stream error of type PROTOCOL_ERROR or REFUSED_STREAM.",
)
def _too_many_streams(ctx: CaseContext) -> None:
    conn = ctx.connect()
    limit = conn.max_concurrent_streams
    if limit is None:
        raise CaseSkipped("the server announces no SETTINGS_MAX_CONCURRENT_STREAMS")
    if limit > MAX_STREAMS_PROBED:
        raise CaseSkipped(f"SETTINGS_MAX_CONCURRENT_STREAMS is {limit}, above {MAX_STREAMS_PROBED}")
    # A zero window keeps every response from finishing, so the streams stay open.
    conn.send(frames.settings_frame([(SettingId.INITIAL_WINDOW_SIZE, 0)]))
    block = conn.encode_headers(ctx.request_headers())
    conn.send(
        b"".join(
            frames.headers_frame(1 + 2 * n, block, end_stream=True, end_headers=True)
            for n in range(limit + 1)
        )
    )
    expect_stream_error(conn, ErrorCode.PROTOCOL_ERROR, ErrorCode.REFUSED_STREAM)


# ---------------------------------------------------------------- 5.3.1

dependencies = group("http2", "5.3.1", "Stream Dependencies")


@dependencies.case(
    "Sends HEADERS frame that depends on itself",
    "RFC 7540, 5.3.1: a stream cannot depend on itself; this MUST be a stream error of "
    "type PROTOCOL_ERROR.",
)
def _headers_self_dependency(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers(), priority=(1, 255, False))
    expect_stream_error(conn, ErrorCode.PROTOCOL_ERROR)


@dependencies.case(
    "Sends PRIORITY frame that depend on itself",
    "RFC 7540, 5.3.1: a stream cannot depend on itself; this MUST be a stream error of "
    "type PROTOCOL_ERROR.",
)
def _priority_self_dependency(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send(frames.priority_frame(1, 1, 255))
    expect_stream_error(conn, ErrorCode.PROTOCOL_ERROR)


# ---------------------------------------------------------------- 5.4.1

connection_errors = group("http2", "5.4.1", "Connection Error Handling")

# PING on stream 3: PING must use stream 0 (6.7), so this is a connection error.
_INVALID_PING = frames.frame(FrameType.PING, 0, 3, b"\x00" * 8)


@connection_errors.case(
    "Sends an invalid PING frame for connection close",
    "RFC 7540, 5.4.1: after the GOAWAY for a connection error the endpoint MUST close the "
    "TCP connection.",
)
def _close_after_error(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send(_INVALID_PING)
    expect_connection_close(conn)


@connection_errors.case(
    "Sends an invalid PING frame to receive GOAWAY frame",
    "RFC 7540, 5.4.1: an endpoint that meets a connection error SHOULD first send GOAWAY.",
    strict=True,
)
def _goaway_before_close(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send(_INVALID_PING)
    expect_goaway(conn)


# ---------------------------------------------------------------- 5.5

extending = group("http2", "5.5", "Extending HTTP/2")


@extending.case(
    "Sends an unknown extension frame",
    "RFC 7540, 5.5: unknown or unsupported values in extensible elements MUST be ignored.",
)
def _unknown_extension(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send(frames.frame(UNKNOWN_FRAME_TYPE, 0, 0, b"\x00" * 8))
    conn.send(frames.ping_frame(PING_PAYLOAD))
    expect_frame(conn, FrameType.PING)


@extending.case(
    "Sends an unknown extension frame in the middle of a header block",
    "RFC 7540, 5.5: an extension frame inside a header block MUST be a connection error "
    "of type PROTOCOL_ERROR.",
)
def _unknown_extension_in_block(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers(), end_stream=True, end_headers=False)
    conn.send(frames.frame(UNKNOWN_FRAME_TYPE, 0, 0, b"\x00" * 8))
    expect_connection_error(conn, ErrorCode.PROTOCOL_ERROR)
