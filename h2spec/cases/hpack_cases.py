"""RFC 7541 (HPACK) decoding errors. Each is a decoding error, which HTTP/2
turns into a connection error of type COMPRESSION_ERROR (RFC 7540, 4.3)."""

from __future__ import annotations

from h2spec import frames
from h2spec.client import Connection
from h2spec.frames import LITERAL_INCREMENTAL, LITERAL_WITHOUT_INDEXING, ErrorCode
from h2spec.registry import CaseContext, group
from h2spec.verdicts import expect_connection_error

DECODING_ERROR = "a decoding error: connection error of type COMPRESSION_ERROR (RFC 7540, 4.3)"


def _send_block(ctx: CaseContext, build) -> None:
    """Send a request whose header block is the regular request headers with
    a crafted representation added (see `build`), expect COMPRESSION_ERROR."""
    conn = ctx.connect()
    block = build(conn, conn.encode_headers(ctx.request_headers()))
    conn.send(frames.headers_frame(1, block, end_stream=True, end_headers=True))
    expect_connection_error(conn, ErrorCode.COMPRESSION_ERROR)


def _invalid_index(conn: Connection) -> int:
    """An index past both tables, with room to spare (RFC 7541, 2.3.3)."""
    return frames.STATIC_TABLE_LENGTH + conn.dynamic_table_entries + 8


# ---------------------------------------------------------------- 2.3.3

address_space = group("hpack", "2.3.3", "Index Address Space")


@address_space.case(
    "Sends a indexed header field representation with invalid index",
    f"RFC 7541, 2.3.3: an index beyond both tables MUST be treated as {DECODING_ERROR}",
)
def _indexed_out_of_range(ctx: CaseContext) -> None:
    _send_block(ctx, lambda conn, block: block + frames.indexed_field(_invalid_index(conn)))


@address_space.case(
    "Sends a literal header field representation with invalid index",
    f"RFC 7541, 2.3.3: a name index beyond both tables MUST be treated as {DECODING_ERROR}",
)
def _literal_name_out_of_range(ctx: CaseContext) -> None:
    _send_block(
        ctx,
        lambda conn, block: block
        + frames.literal_field(_invalid_index(conn), b"", kind=LITERAL_INCREMENTAL),
    )


# ---------------------------------------------------------------- 4.2

table_size = group("hpack", "4.2", "Maximum Table Size")


@table_size.case(
    "Sends a dynamic table size update at the end of header block",
    "RFC 7541, 4.2: a dynamic table size update MUST come at the start of a header block; "
    f"elsewhere it is {DECODING_ERROR}",
)
def _size_update_at_end(ctx: CaseContext) -> None:
    _send_block(ctx, lambda conn, block: block + frames.table_size_update(1))


# ---------------------------------------------------------------- 5.2

string_literals = group("hpack", "5.2", "String Literal Representation")

# "test" Huffman coded is 20 bits: one octet boundary leaves 4 bits of padding.
_TEST_HUFFMAN = frames.huffman_encode(b"test")


def _literal_with_value(encoded_value: bytes) -> bytes:
    """x-test: <value>, literal without indexing, value octets as given."""
    name = frames.hpack_string(b"x-test", huffman=True)
    return bytes([LITERAL_WITHOUT_INDEXING[0]]) + name + frames.raw_string(encoded_value)


@string_literals.case(
    "Sends a Huffman-encoded string literal representation with padding longer than 7 bits",
    f"RFC 7541, 5.2: padding longer than 7 bits MUST be treated as {DECODING_ERROR}",
)
def _long_padding(ctx: CaseContext) -> None:
    value = _TEST_HUFFMAN + b"\xff"
    _send_block(ctx, lambda conn, block: block + _literal_with_value(value))


@string_literals.case(
    "Sends a Huffman-encoded string literal representation padded by zero",
    "RFC 7541, 5.2: padding that is not the most significant bits of EOS (all ones) MUST be "
    f"treated as {DECODING_ERROR}",
)
def _zero_padding(ctx: CaseContext) -> None:
    value = _TEST_HUFFMAN[:-1] + bytes([_TEST_HUFFMAN[-1] & 0xF0])
    _send_block(ctx, lambda conn, block: block + _literal_with_value(value))


@string_literals.case(
    "Sends a Huffman-encoded string literal representation containing the EOS symbol",
    f"RFC 7541, 5.2: a string containing the EOS symbol MUST be treated as {DECODING_ERROR}",
)
def _eos_inside(ctx: CaseContext) -> None:
    value = frames.huffman_bits([ord("t"), ord("e"), 256, ord("s"), ord("t")])
    _send_block(ctx, lambda conn, block: block + _literal_with_value(value))


# ---------------------------------------------------------------- 6.1

indexed = group("hpack", "6.1", "Indexed Header Field Representation")


@indexed.case(
    "Sends a indexed header field representation with index 0",
    f"RFC 7541, 6.1: index 0 MUST be treated as {DECODING_ERROR}",
)
def _index_zero(ctx: CaseContext) -> None:
    _send_block(ctx, lambda conn, block: block + frames.indexed_field(0))


# ---------------------------------------------------------------- 6.3

size_update = group("hpack", "6.3", "Dynamic Table Size Update")


@size_update.case(
    "Sends a dynamic table size update larger than the value of SETTINGS_HEADER_TABLE_SIZE",
    "RFC 7541, 6.3: a new maximum size above SETTINGS_HEADER_TABLE_SIZE MUST be treated as "
    f"{DECODING_ERROR}",
)
def _size_update_too_big(ctx: CaseContext) -> None:
    _send_block(
        ctx, lambda conn, block: frames.table_size_update(conn.header_table_size + 1) + block
    )
