"""RFC 7540 sections 7 (error codes) and 8 (HTTP message exchanges)."""

from __future__ import annotations

from h2spec import frames
from h2spec.cases.common import PING_PAYLOAD
from h2spec.frames import ErrorCode, FrameType
from h2spec.registry import CaseContext, group
from h2spec.verdicts import (
    expect_connection_close,
    expect_connection_error,
    expect_frame,
    expect_stream_error,
)

UNKNOWN_ERROR_CODE = 0xFF

# ---------------------------------------------------------------- 7

error_codes = group("http2", "7", "Error Codes")


@error_codes.case(
    "Sends a GOAWAY frame with unknown error code",
    "RFC 7540, 7: an unknown error code MUST NOT trigger any special behaviour (the "
    "GOAWAY is honoured as usual: h2spec expects the server to close).",
)
def _goaway_unknown_code(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send(frames.goaway_frame(0, UNKNOWN_ERROR_CODE))
    expect_connection_close(conn)


@error_codes.case(
    "Sends a RST_STREAM frame with unknown error code",
    "RFC 7540, 7: an unknown error code MUST NOT trigger any special behaviour (the "
    "connection keeps working).",
)
def _rst_unknown_code(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers("POST"), end_stream=False)
    conn.send(frames.rst_stream_frame(1, UNKNOWN_ERROR_CODE))
    conn.send(frames.ping_frame(PING_PAYLOAD))
    expect_frame(conn, FrameType.PING)


# ---------------------------------------------------------------- 8.1

exchange = group("http2", "8.1", "HTTP Request/Response Exchange")


@exchange.case(
    "Sends a second HEADERS frame without the END_STREAM flag",
    "RFC 7540, 8.1: trailers MUST end the stream; a second HEADERS without END_STREAM makes "
    "the request malformed (stream error of type PROTOCOL_ERROR).",
)
def _trailers_without_end_stream(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers("POST"), end_stream=False)
    conn.send(frames.data_frame(1, b"test"))
    conn.send_request(1, [("x-test", "ok")], end_stream=False)
    expect_stream_error(conn, ErrorCode.PROTOCOL_ERROR)


# ---------------------------------------------------------------- 8.1.2

header_fields = group("http2", "8.1.2", "HTTP Header Fields")

MALFORMED = "a malformed request MUST be a stream error of type PROTOCOL_ERROR (8.1.2.6)."


def _malformed_request(ctx: CaseContext, headers: list[tuple[str, str]]) -> None:
    """Send a request whose header list is exactly `headers` (plain literals,
    so nothing is normalised on the way) and expect a stream error."""
    conn = ctx.connect()
    conn.send(frames.headers_frame(1, frames.literal_block(headers), end_stream=True, end_headers=True))
    expect_stream_error(conn, ErrorCode.PROTOCOL_ERROR)


@header_fields.case(
    "Sends a HEADERS frame that contains the header field name in uppercase letters",
    f"RFC 7540, 8.1.2: field names MUST be lowercase; {MALFORMED}",
)
def _uppercase_name(ctx: CaseContext) -> None:
    _malformed_request(ctx, [*ctx.request_headers(), ("X-TEST", "ok")])


# ---------------------------------------------------------------- 8.1.2.1

pseudo = group("http2", "8.1.2.1", "Pseudo-Header Fields")


@pseudo.case(
    "Sends a HEADERS frame that contains a unknown pseudo-header field",
    f"RFC 7540, 8.1.2.1: undefined pseudo-header fields are invalid; {MALFORMED}",
)
def _unknown_pseudo(ctx: CaseContext) -> None:
    _malformed_request(ctx, [*ctx.request_headers(), (":test", "ok")])


@pseudo.case(
    "Sends a HEADERS frame that contains the pseudo-header field defined for response",
    f"RFC 7540, 8.1.2.1: response pseudo-headers MUST NOT appear in requests; {MALFORMED}",
)
def _response_pseudo(ctx: CaseContext) -> None:
    _malformed_request(ctx, [*ctx.request_headers(), (":status", "200")])


@pseudo.case(
    "Sends a HEADERS frame that contains a pseudo-header field as trailers",
    f"RFC 7540, 8.1.2.1: pseudo-header fields MUST NOT appear in trailers; {MALFORMED}",
)
def _pseudo_in_trailers(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers("POST"), end_stream=False)
    conn.send(frames.data_frame(1, b"test"))
    trailers = frames.literal_block([(":method", "POST")])
    conn.send(frames.headers_frame(1, trailers, end_stream=True, end_headers=True))
    expect_stream_error(conn, ErrorCode.PROTOCOL_ERROR)


@pseudo.case(
    "Sends a HEADERS frame that contains a pseudo-header field that appears in a header block after a regular header field",
    f"RFC 7540, 8.1.2.1: pseudo-header fields MUST come before regular fields; {MALFORMED}",
)
def _pseudo_after_regular(ctx: CaseContext) -> None:
    _malformed_request(ctx, [("x-test", "ok"), *ctx.request_headers()])


# ---------------------------------------------------------------- 8.1.2.2

connection_specific = group("http2", "8.1.2.2", "Connection-Specific Header Fields")


@connection_specific.case(
    "Sends a HEADERS frame that contains the connection-specific header field",
    f"RFC 7540, 8.1.2.2: connection-specific fields MUST NOT appear in HTTP/2; {MALFORMED}",
)
def _connection_header(ctx: CaseContext) -> None:
    _malformed_request(ctx, [*ctx.request_headers(), ("connection", "keep-alive")])


@connection_specific.case(
    'Sends a HEADERS frame that contains the TE header field with any value other than "trailers"',
    f'RFC 7540, 8.1.2.2: TE MUST NOT hold any value other than "trailers"; {MALFORMED}',
)
def _te_header(ctx: CaseContext) -> None:
    _malformed_request(
        ctx, [*ctx.request_headers(), ("trailers", "test"), ("te", "trailers, deflate")]
    )


# ---------------------------------------------------------------- 8.1.2.3

request_pseudo = group("http2", "8.1.2.3", "Request Pseudo-Header Fields")

EXACTLY_ONE = (
    "RFC 7540, 8.1.2.3: every request MUST carry exactly one valid :method, :scheme and "
    f":path (CONNECT aside); {MALFORMED}"
)


def _without(headers: list[tuple[str, str]], name: str) -> list[tuple[str, str]]:
    return [(n, v) for n, v in headers if n != name]


def _duplicated(headers: list[tuple[str, str]], name: str) -> list[tuple[str, str]]:
    value = dict(headers)[name]
    pseudo_fields = [h for h in headers if h[0].startswith(":")]
    return [*pseudo_fields, (name, value)]


@request_pseudo.case(
    'Sends a HEADERS frame with empty ":path" pseudo-header field',
    f"RFC 7540, 8.1.2.3: :path MUST NOT be empty for http or https URIs; {MALFORMED}",
)
def _empty_path(ctx: CaseContext) -> None:
    headers = [(n, "" if n == ":path" else v) for n, v in ctx.request_headers()]
    _malformed_request(ctx, headers)


@request_pseudo.case('Sends a HEADERS frame that omits ":method" pseudo-header field', EXACTLY_ONE)
def _no_method(ctx: CaseContext) -> None:
    _malformed_request(ctx, _without(ctx.request_headers(), ":method"))


@request_pseudo.case('Sends a HEADERS frame that omits ":scheme" pseudo-header field', EXACTLY_ONE)
def _no_scheme(ctx: CaseContext) -> None:
    _malformed_request(ctx, _without(ctx.request_headers(), ":scheme"))


@request_pseudo.case('Sends a HEADERS frame that omits ":path" pseudo-header field', EXACTLY_ONE)
def _no_path(ctx: CaseContext) -> None:
    _malformed_request(ctx, _without(ctx.request_headers(), ":path"))


@request_pseudo.case('Sends a HEADERS frame with duplicated ":method" pseudo-header field', EXACTLY_ONE)
def _two_methods(ctx: CaseContext) -> None:
    _malformed_request(ctx, _duplicated(ctx.request_headers(), ":method"))


@request_pseudo.case('Sends a HEADERS frame with duplicated ":scheme" pseudo-header field', EXACTLY_ONE)
def _two_schemes(ctx: CaseContext) -> None:
    _malformed_request(ctx, _duplicated(ctx.request_headers(), ":scheme"))


@request_pseudo.case('Sends a HEADERS frame with duplicated ":path" pseudo-header field', EXACTLY_ONE)
def _two_paths(ctx: CaseContext) -> None:
    _malformed_request(ctx, _duplicated(ctx.request_headers(), ":path"))


# ---------------------------------------------------------------- 8.1.2.6

malformed = group("http2", "8.1.2.6", "Malformed Requests and Responses")

CONTENT_LENGTH = (
    "RFC 7540, 8.1.2.6: a content-length that differs from the sum of the DATA payloads "
    "makes the request malformed: stream error of type PROTOCOL_ERROR."
)


@malformed.case(
    'Sends a HEADERS frame with the "content-length" header field which does not equal the DATA frame payload length',
    CONTENT_LENGTH,
)
def _content_length_one_frame(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, [*ctx.request_headers("POST"), ("content-length", "1")], end_stream=False)
    conn.send(frames.data_frame(1, b"test", end_stream=True))
    expect_stream_error(conn, ErrorCode.PROTOCOL_ERROR)


@malformed.case(
    'Sends a HEADERS frame with the "content-length" header field which does not equal the sum of the multiple DATA frames payload length',
    CONTENT_LENGTH,
)
def _content_length_two_frames(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, [*ctx.request_headers("POST"), ("content-length", "1")], end_stream=False)
    conn.send(frames.data_frame(1, b"test"))
    conn.send(frames.data_frame(1, b"test", end_stream=True))
    expect_stream_error(conn, ErrorCode.PROTOCOL_ERROR)


# ---------------------------------------------------------------- 8.2

server_push = group("http2", "8.2", "Server Push")


@server_push.case(
    "Sends a PUSH_PROMISE frame",
    "RFC 7540, 8.2: a client cannot push; a server MUST treat PUSH_PROMISE as a connection "
    "error of type PROTOCOL_ERROR.",
)
def _push_promise(ctx: CaseContext) -> None:
    conn = ctx.connect()
    block = conn.encode_headers(ctx.request_headers())
    conn.send(frames.push_promise_frame(1, 3, block))
    expect_connection_error(conn, ErrorCode.PROTOCOL_ERROR)
