"""Generic cases: a server accepts every ordinary, valid use of the protocol.

Section numbers are h2spec's own (1 Starting HTTP/2 ... 5 HPACK); each case
cites the RFC 7540 / RFC 7541 section it exercises.
"""

from __future__ import annotations

import time

from h2spec import frames
from h2spec.cases.common import PING_PAYLOAD
from h2spec.client import describe
from h2spec.frames import (
    LITERAL_INCREMENTAL,
    LITERAL_NEVER_INDEXED,
    LITERAL_WITHOUT_INDEXING,
    ErrorCode,
    FrameType,
    SettingId,
)
from h2spec.registry import CaseContext, CaseFailed, group
from h2spec.verdicts import (
    expect_connection_close,
    expect_frame,
    expect_ping_ack,
    expect_response_headers,
    expect_settings_ack,
    expect_stream_end,
)

# ---------------------------------------------------------------- 1

starting = group("generic", "1", "Starting HTTP/2")


@starting.case(
    "Sends a client connection preface",
    "RFC 7540, 3.5: the server's first frame is its connection preface, a SETTINGS frame.",
)
def _preface(ctx: CaseContext) -> None:
    conn = ctx.connect(handshake=False)
    conn.send(frames.CLIENT_PREFACE)
    conn.send(frames.settings_frame([(SettingId.INITIAL_WINDOW_SIZE, frames.DEFAULT_WINDOW_SIZE)]))
    first = conn.next_event(time.monotonic() + conn.timeout)
    if not (
        isinstance(first, frames.ReceivedFrame)
        and first.type == FrameType.SETTINGS
        and not first.is_ack
    ):
        raise CaseFailed(["SETTINGS frame (flags:0x00) as the first frame"], describe(first))


# ---------------------------------------------------------------- 2

streams = group("generic", "2", "Streams and Multiplexing")


@streams.case(
    "Sends a PRIORITY frame on idle stream",
    "RFC 7540, 5.1: PRIORITY is allowed on an idle stream.",
)
def _priority_idle(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send(frames.priority_frame(1, 0, 255))
    conn.send(frames.ping_frame(PING_PAYLOAD))
    expect_ping_ack(conn, PING_PAYLOAD)


def _request_with_closed_window(ctx: CaseContext):
    """Open stream 1 while our initial window is 0, so the server can send
    its headers but no DATA: the stream stays half-closed (remote)."""
    conn = ctx.connect()
    conn.send(frames.settings_frame([(SettingId.INITIAL_WINDOW_SIZE, 0)]))
    conn.send_request(1, ctx.request_headers())
    return conn


@streams.case(
    "Sends a WINDOW_UPDATE frame on half-closed (remote) stream",
    "RFC 7540, 5.1: WINDOW_UPDATE is allowed on a half-closed (remote) stream.",
)
def _window_update_half_closed(ctx: CaseContext) -> None:
    conn = _request_with_closed_window(ctx)
    conn.send(frames.window_update_frame(1, 1))
    expect_frame(conn, FrameType.DATA)


@streams.case(
    "Sends a PRIORITY frame on half-closed (remote) stream",
    "RFC 7540, 5.1: PRIORITY is allowed on a half-closed (remote) stream.",
)
def _priority_half_closed(ctx: CaseContext) -> None:
    conn = _request_with_closed_window(ctx)
    conn.send(frames.priority_frame(1, 0, 255))
    conn.send(frames.window_update_frame(1, 1))
    expect_frame(conn, FrameType.DATA)


@streams.case(
    "Sends a RST_STREAM frame on half-closed (remote) stream",
    "RFC 7540, 5.1: RST_STREAM is allowed on a half-closed (remote) stream.",
)
def _rst_half_closed(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers())
    conn.send(frames.rst_stream_frame(1, ErrorCode.CANCEL))
    conn.send(frames.ping_frame(PING_PAYLOAD))
    expect_ping_ack(conn, PING_PAYLOAD, close_ok=True)


@streams.case(
    "Sends a PRIORITY frame on closed stream",
    "RFC 7540, 5.1: PRIORITY is allowed on a closed stream.",
)
def _priority_closed(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers())
    expect_stream_end(conn, 1)
    conn.send(frames.priority_frame(1, 0, 255))
    conn.send(frames.ping_frame(PING_PAYLOAD))
    expect_ping_ack(conn, PING_PAYLOAD)


# ---------------------------------------------------------------- 3.1 DATA

data = group("generic", "3.1", "DATA")


@data.case("Sends a DATA frame", "RFC 7540, 6.1: a request body arrives in DATA frames.")
def _data(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers("POST"), end_stream=False)
    conn.send(frames.data_frame(1, b"test", end_stream=True))
    expect_response_headers(conn, 1)


@data.case("Sends multiple DATA frames", "RFC 7540, 6.1: a body may span several DATA frames.")
def _data_multiple(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers("POST"), end_stream=False)
    conn.send(frames.data_frame(1, b"test"))
    conn.send(frames.data_frame(1, b"test", end_stream=True))
    expect_response_headers(conn, 1)


@data.case("Sends a DATA frame with padding", "RFC 7540, 6.1: DATA frames may carry padding.")
def _data_padded(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers("POST"), end_stream=False)
    conn.send(frames.data_frame(1, b"test", end_stream=True, pad_length=6))
    expect_response_headers(conn, 1)


# ---------------------------------------------------------------- 3.2 HEADERS

headers = group("generic", "3.2", "HEADERS")


@headers.case("Sends a HEADERS frame", "RFC 7540, 6.2: HEADERS opens a stream.")
def _headers(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers())
    expect_response_headers(conn, 1)


@headers.case("Sends a HEADERS frame with padding", "RFC 7540, 6.2: HEADERS may carry padding.")
def _headers_padded(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers(), pad_length=8)
    expect_response_headers(conn, 1)


@headers.case(
    "Sends a HEADERS frame with priority",
    "RFC 7540, 6.2: HEADERS may carry priority fields.",
)
def _headers_priority(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers(), priority=(0, 255, False))
    expect_response_headers(conn, 1)


# ---------------------------------------------------------------- 3.3 PRIORITY

priority = group("generic", "3.3", "PRIORITY")


def _priority_then_request(ctx: CaseContext, priority_stream: int, dependency: int, weight: int, exclusive: bool) -> None:
    conn = ctx.connect()
    conn.send(frames.priority_frame(priority_stream, dependency, weight, exclusive))
    conn.send_request(1, ctx.request_headers())
    expect_response_headers(conn, 1)


@priority.case(
    "Sends a PRIORITY frame with priority 1",
    "RFC 7540, 6.3: PRIORITY with the lowest weight (wire value 0) is valid.",
)
def _priority_weight_1(ctx: CaseContext) -> None:
    _priority_then_request(ctx, 1, 0, 0, False)


@priority.case(
    "Sends a PRIORITY frame with priority 256",
    "RFC 7540, 6.3: PRIORITY with the highest weight (wire value 255) is valid.",
)
def _priority_weight_256(ctx: CaseContext) -> None:
    _priority_then_request(ctx, 1, 0, 255, False)


@priority.case(
    "Sends a PRIORITY frame with stream dependency",
    "RFC 7540, 6.3: a stream may depend on another stream.",
)
def _priority_dependency(ctx: CaseContext) -> None:
    _priority_then_request(ctx, 3, 1, 0, False)


@priority.case(
    "Sends a PRIORITY frame with exclusive",
    "RFC 7540, 6.3: the exclusive flag of a dependency is valid.",
)
def _priority_exclusive(ctx: CaseContext) -> None:
    _priority_then_request(ctx, 1, 0, 0, True)


@priority.case(
    "Sends a PRIORITY frame for an idle stream, then send a HEADER frame for a lower stream ID",
    "RFC 7540, 6.3: PRIORITY may name an idle stream; it does not open that stream, "
    "so a lower stream id is still usable.",
)
def _priority_idle_then_lower(ctx: CaseContext) -> None:
    _priority_then_request(ctx, 3, 0, 255, False)


# ---------------------------------------------------------------- 3.4 RST_STREAM

rst_stream = group("generic", "3.4", "RST_STREAM")


@rst_stream.case(
    "Sends a RST_STREAM frame",
    "RFC 7540, 6.4: RST_STREAM ends a stream at once; the connection stays usable.",
)
def _rst_stream(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers(), end_stream=False)
    conn.send(frames.rst_stream_frame(1, ErrorCode.CANCEL))
    conn.send(frames.ping_frame(PING_PAYLOAD))
    expect_ping_ack(conn, PING_PAYLOAD, close_ok=True)


# ---------------------------------------------------------------- 3.5 SETTINGS

settings = group("generic", "3.5", "SETTINGS")


@settings.case(
    "Sends a SETTINGS frame",
    "RFC 7540, 6.5: every defined setting is accepted and acknowledged.",
)
def _settings(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send(
        frames.settings_frame(
            [
                (SettingId.HEADER_TABLE_SIZE, 4096),
                (SettingId.ENABLE_PUSH, 1),
                (SettingId.MAX_CONCURRENT_STREAMS, 100),
                (SettingId.INITIAL_WINDOW_SIZE, 65535),
                (SettingId.MAX_FRAME_SIZE, 16384),
                (SettingId.MAX_HEADER_LIST_SIZE, 100),
            ]
        )
    )
    expect_settings_ack(conn)


# ---------------------------------------------------------------- 3.7 PING

ping = group("generic", "3.7", "PING")


@ping.case("Sends a PING frame", "RFC 7540, 6.7: a PING is answered by a PING with ACK.")
def _ping(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send(frames.ping_frame(PING_PAYLOAD))
    expect_ping_ack(conn, PING_PAYLOAD)


# ---------------------------------------------------------------- 3.8 GOAWAY

goaway = group("generic", "3.8", "GOAWAY")


@goaway.case(
    "Sends a GOAWAY frame",
    "RFC 7540, 6.8: GOAWAY starts the shutdown of the connection (h2spec expects the server "
    "to close it).",
)
def _goaway(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send(frames.goaway_frame(0, ErrorCode.NO_ERROR, b"h2spec"))
    expect_connection_close(conn)


# ---------------------------------------------------------------- 3.9 WINDOW_UPDATE

window_update = group("generic", "3.9", "WINDOW_UPDATE")


@window_update.case(
    "Sends a WINDOW_UPDATE frame with stream ID 0",
    "RFC 7540, 6.9: WINDOW_UPDATE on stream 0 credits the connection window.",
)
def _window_update_connection(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send(frames.window_update_frame(0, 1))
    conn.send(frames.ping_frame(PING_PAYLOAD))
    expect_ping_ack(conn, PING_PAYLOAD)


@window_update.case(
    "Sends a WINDOW_UPDATE frame with arbitrary stream ID",
    "RFC 7540, 6.9: WINDOW_UPDATE on a stream credits that stream's window.",
)
def _window_update_stream(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers())
    conn.send(frames.window_update_frame(1, 1))
    expect_response_headers(conn, 1)


# ---------------------------------------------------------------- 3.10 CONTINUATION

continuation = group("generic", "3.10", "CONTINUATION")


@continuation.case(
    "Sends a CONTINUATION frame",
    "RFC 7540, 6.10: a header block may continue in a CONTINUATION frame.",
)
def _continuation(ctx: CaseContext) -> None:
    conn = ctx.connect()
    block = conn.encode_headers(ctx.request_headers())
    conn.send(frames.headers_frame(1, block[:5], end_stream=True, end_headers=False))
    conn.send(frames.continuation_frame(1, block[5:], end_headers=True))
    expect_response_headers(conn, 1)


@continuation.case(
    "Sends multiple CONTINUATION frames",
    "RFC 7540, 6.10: any number of CONTINUATION frames may follow.",
)
def _continuation_multiple(ctx: CaseContext) -> None:
    conn = ctx.connect()
    block = conn.encode_headers(ctx.request_headers())
    conn.send(frames.headers_frame(1, block[:5], end_stream=True, end_headers=False))
    conn.send(frames.continuation_frame(1, block[5:10], end_headers=False))
    conn.send(frames.continuation_frame(1, block[10:], end_headers=True))
    expect_response_headers(conn, 1)


# ---------------------------------------------------------------- 4 HTTP

messages = group("generic", "4", "HTTP Message Exchanges")


@messages.case("Sends a GET request", "RFC 7540, 8.1: the server answers a request on its stream.")
def _get(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers("GET"))
    expect_response_headers(conn, 1)


@messages.case("Sends a HEAD request", "RFC 7540, 8.1: the server answers a request on its stream.")
def _head(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers("HEAD"))
    expect_response_headers(conn, 1)


@messages.case("Sends a POST request", "RFC 7540, 8.1: the server answers a request on its stream.")
def _post(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers("POST"), end_stream=False)
    conn.send(frames.data_frame(1, b"test", end_stream=True))
    expect_response_headers(conn, 1)


@messages.case(
    "Sends a POST request with trailers",
    "RFC 7540, 8.1: a request may end with a trailing header block.",
)
def _post_trailers(ctx: CaseContext) -> None:
    conn = ctx.connect()
    conn.send_request(1, [*ctx.request_headers("POST"), ("trailer", "x-test")], end_stream=False)
    conn.send(frames.data_frame(1, b"test"))
    conn.send_request(1, [("x-test", "ok")], end_stream=True)
    expect_response_headers(conn, 1)


# ---------------------------------------------------------------- 5 HPACK

hpack_group = group("generic", "5", "HPACK")

USER_AGENT_INDEX = 58  # static table: user-agent, empty value (RFC 7541, appendix A)


def _request_with_extra_field(ctx: CaseContext, representation: bytes, *, prefix: bytes = b"") -> None:
    conn = ctx.connect()
    block = prefix + conn.encode_headers(ctx.request_headers()) + representation
    conn.send(frames.headers_frame(1, block, end_stream=True, end_headers=True))
    expect_response_headers(conn, 1)


@hpack_group.case(
    "Sends a indexed header field representation",
    "RFC 7541, 6.1: a field may be sent as an index into the static table.",
)
def _hpack_indexed(ctx: CaseContext) -> None:
    _request_with_extra_field(ctx, frames.indexed_field(USER_AGENT_INDEX))


def _literal_case(kind: tuple[int, int], indexed_name: bool, huffman: bool):
    def run(ctx: CaseContext) -> None:
        name: bytes | int = USER_AGENT_INDEX if indexed_name else b"x-test"
        _request_with_extra_field(
            ctx, frames.literal_field(name, b"h2spec", kind=kind, huffman=huffman)
        )

    return run


_LITERAL_KINDS = [
    ("with incremental indexing", LITERAL_INCREMENTAL, "6.2.1"),
    ("without indexing", LITERAL_WITHOUT_INDEXING, "6.2.2"),
    ("never indexed", LITERAL_NEVER_INDEXED, "6.2.3"),
]

for _label, _kind, _section in _LITERAL_KINDS:
    for _indexed_name in (True, False):
        for _huffman in (False, True):
            _name_kind = "indexed name" if _indexed_name else "new name"
            _suffix = " (with Huffman coding)" if _huffman else ""
            hpack_group.case(
                f"Sends a literal header field {_label} - {_name_kind}{_suffix}",
                f"RFC 7541, {_section}: the literal representation {_label} is accepted.",
            )(_literal_case(_kind, _indexed_name, _huffman))


@hpack_group.case(
    "Sends a dynamic table size update",
    "RFC 7541, 6.3: a header block may start with a dynamic table size update.",
)
def _hpack_size_update(ctx: CaseContext) -> None:
    _request_with_extra_field(ctx, b"", prefix=frames.table_size_update(0))


@hpack_group.case(
    "Sends multiple dynamic table size update",
    "RFC 7541, 4.2: up to two size updates may open a header block.",
)
def _hpack_size_updates(ctx: CaseContext) -> None:
    prefix = frames.table_size_update(0) + frames.table_size_update(frames.DEFAULT_HEADER_TABLE_SIZE)
    _request_with_extra_field(ctx, b"", prefix=prefix)
