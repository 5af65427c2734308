"""Byte-level HTTP/2 frame and HPACK building blocks.

A conformance runner must be able to send frames that no well-behaved
library would produce (DATA on stream 0, a PING of 6 octets, a length field
that lies), so every builder here writes the 9-octet header itself and never
validates. Received frames are decoded just as loosely: the server under test
decides what arrives, and the runner only has to describe it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH

CLIENT_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER_LENGTH = 9
DEFAULT_WINDOW_SIZE = 65535
DEFAULT_MAX_FRAME_SIZE = 16384
DEFAULT_HEADER_TABLE_SIZE = 4096
STATIC_TABLE_LENGTH = 61


class FrameType(IntEnum):
    DATA = 0x0
    HEADERS = 0x1
    PRIORITY = 0x2
    RST_STREAM = 0x3
    SETTINGS = 0x4
    PUSH_PROMISE = 0x5
    PING = 0x6
    GOAWAY = 0x7
    WINDOW_UPDATE = 0x8
    CONTINUATION = 0x9


class ErrorCode(IntEnum):
    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


class SettingId(IntEnum):
    HEADER_TABLE_SIZE = 0x1
    ENABLE_PUSH = 0x2
    MAX_CONCURRENT_STREAMS = 0x3
    INITIAL_WINDOW_SIZE = 0x4
    MAX_FRAME_SIZE = 0x5
    MAX_HEADER_LIST_SIZE = 0x6


class Flags:
    """Flag bits; the same bit means different things per frame type."""

    END_STREAM = 0x1
    ACK = 0x1
    END_HEADERS = 0x4
    PADDED = 0x8
    PRIORITY = 0x20


def error_name(code: int) -> str:
    """Name of an error code, or its hex value when the code is unknown."""
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"0x{code:x}"


def frame_type_name(frame_type: int) -> str:
    try:
        return FrameType(frame_type).name
    except ValueError:
        return f"UNKNOWN(0x{frame_type:02x})"


# --------------------------------------------------------------------------
# Building frames
# --------------------------------------------------------------------------


def frame(
    frame_type: int,
    flags: int,
    stream_id: int,
    payload: bytes = b"",
    *,
    reserved_bit: bool = False,
    length: int | None = None,
) -> bytes:
    """One frame exactly as given: nothing is checked, so invalid frames are
    as easy to make as valid ones. `length` overrides the length field (the
    payload is still written whole)."""
    size = len(payload) if length is None else length
    stream_field = (stream_id & 0x7FFFFFFF) | (0x80000000 if reserved_bit else 0)
    header = struct.pack(">I", size)[1:] + struct.pack(">BBI", frame_type, flags, stream_field)
    return header + payload


def _padded(payload: bytes, pad_length: int | None) -> tuple[bytes, int]:
    if pad_length is None:
        return payload, 0
    return bytes([pad_length]) + payload + b"\x00" * pad_length, Flags.PADDED


def priority_fields(depends_on: int, weight: int, exclusive: bool = False) -> bytes:
    """The 5-octet priority block (weight as sent on the wire, 0-255)."""
    dependency = (depends_on & 0x7FFFFFFF) | (0x80000000 if exclusive else 0)
    return struct.pack(">IB", dependency, weight)


def data_frame(
    stream_id: int, data: bytes, *, end_stream: bool = False, pad_length: int | None = None
) -> bytes:
    payload, flags = _padded(data, pad_length)
    if end_stream:
        flags |= Flags.END_STREAM
    return frame(FrameType.DATA, flags, stream_id, payload)


def headers_frame(
    stream_id: int,
    block: bytes,
    *,
    end_stream: bool = False,
    end_headers: bool = True,
    priority: tuple[int, int, bool] | None = None,
    pad_length: int | None = None,
) -> bytes:
    """HEADERS; `priority` is (depends_on, weight, exclusive)."""
    payload = block
    flags = 0
    if priority is not None:
        payload = priority_fields(*priority) + payload
        flags |= Flags.PRIORITY
    payload, pad_flag = _padded(payload, pad_length)
    flags |= pad_flag
    if end_stream:
        flags |= Flags.END_STREAM
    if end_headers:
        flags |= Flags.END_HEADERS
    return frame(FrameType.HEADERS, flags, stream_id, payload)


def priority_frame(stream_id: int, depends_on: int = 0, weight: int = 255, exclusive: bool = False) -> bytes:
    return frame(FrameType.PRIORITY, 0, stream_id, priority_fields(depends_on, weight, exclusive))


def rst_stream_frame(stream_id: int, error_code: int) -> bytes:
    return frame(FrameType.RST_STREAM, 0, stream_id, struct.pack(">I", error_code))


def settings_frame(settings: Iterable[tuple[int, int]] = (), *, ack: bool = False) -> bytes:
    payload = b"".join(struct.pack(">HI", ident, value) for ident, value in settings)
    return frame(FrameType.SETTINGS, Flags.ACK if ack else 0, 0, payload)


def push_promise_frame(stream_id: int, promised_stream_id: int, block: bytes, *, end_headers: bool = True) -> bytes:
    payload = struct.pack(">I", promised_stream_id & 0x7FFFFFFF) + block
    return frame(FrameType.PUSH_PROMISE, Flags.END_HEADERS if end_headers else 0, stream_id, payload)


def ping_frame(opaque_data: bytes = b"\x00" * 8, *, ack: bool = False) -> bytes:
    return frame(FrameType.PING, Flags.ACK if ack else 0, 0, opaque_data)


def goaway_frame(last_stream_id: int, error_code: int, debug_data: bytes = b"") -> bytes:
    payload = struct.pack(">II", last_stream_id & 0x7FFFFFFF, error_code) + debug_data
    return frame(FrameType.GOAWAY, 0, 0, payload)


def window_update_frame(stream_id: int, increment: int) -> bytes:
    return frame(FrameType.WINDOW_UPDATE, 0, stream_id, struct.pack(">I", increment & 0x7FFFFFFF))


def continuation_frame(stream_id: int, block: bytes, *, end_headers: bool = True) -> bytes:
    return frame(FrameType.CONTINUATION, Flags.END_HEADERS if end_headers else 0, stream_id, block)


# --------------------------------------------------------------------------
# Reading frames
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedFrame:
    """A frame from the server, kept raw; the properties decode on demand."""

    type: int
    flags: int
    stream_id: int
    payload: bytes

    @property
    def length(self) -> int:
        return len(self.payload)

    @property
    def is_ack(self) -> bool:
        return self.type in (FrameType.SETTINGS, FrameType.PING) and bool(self.flags & Flags.ACK)

    @property
    def ends_stream(self) -> bool:
        return self.type in (FrameType.DATA, FrameType.HEADERS) and bool(self.flags & Flags.END_STREAM)

    @property
    def error_code(self) -> int | None:
        """Error code of a RST_STREAM or GOAWAY frame, None for the others."""
        if self.type == FrameType.RST_STREAM and len(self.payload) >= 4:
            return struct.unpack(">I", self.payload[:4])[0]
        if self.type == FrameType.GOAWAY and len(self.payload) >= 8:
            return struct.unpack(">I", self.payload[4:8])[0]
        return None

    @property
    def last_stream_id(self) -> int | None:
        if self.type == FrameType.GOAWAY and len(self.payload) >= 4:
            return struct.unpack(">I", self.payload[:4])[0] & 0x7FFFFFFF
        return None

    @property
    def settings(self) -> list[tuple[int, int]]:
        if self.type != FrameType.SETTINGS:
            return []
        usable = len(self.payload) - len(self.payload) % 6
        return [struct.unpack(">HI", self.payload[i : i + 6]) for i in range(0, usable, 6)]

    @property
    def window_increment(self) -> int | None:
        if self.type == FrameType.WINDOW_UPDATE and len(self.payload) >= 4:
            return struct.unpack(">I", self.payload[:4])[0] & 0x7FFFFFFF
        return None

    def describe(self) -> str:
        """One line in the style used for expected/actual in reports."""
        name = frame_type_name(self.type)
        parts = [f"length:{self.length}", f"flags:0x{self.flags:02x}", f"stream_id:{self.stream_id}"]
        if self.type in (FrameType.RST_STREAM, FrameType.GOAWAY) and self.error_code is not None:
            parts.append(f"error_code:{error_name(self.error_code)}")
        if self.type == FrameType.GOAWAY and len(self.payload) > 8:
            debug = self.payload[8:72].decode("utf-8", "replace")
            parts.append(f"debug:{debug!r}")
        if self.type == FrameType.PING:
            parts.append(f"opaque_data:{self.payload!r}")
        if self.type == FrameType.WINDOW_UPDATE and self.window_increment is not None:
            parts.append(f"increment:{self.window_increment}")
        return f"{name} frame ({', '.join(parts)})"


def parse_frames(buffer: bytes) -> tuple[list[ReceivedFrame], bytes]:
    """Split complete frames off `buffer`; return them and the leftover bytes."""
    frames: list[ReceivedFrame] = []
    offset = 0
    while len(buffer) - offset >= FRAME_HEADER_LENGTH:
        length = int.from_bytes(buffer[offset : offset + 3], "big")
        end = offset + FRAME_HEADER_LENGTH + length
        if len(buffer) < end:
            break
        frame_type, flags, stream_field = struct.unpack(">BBI", buffer[offset + 3 : offset + 9])
        payload = bytes(buffer[offset + FRAME_HEADER_LENGTH : end])
        frames.append(ReceivedFrame(frame_type, flags, stream_field & 0x7FFFFFFF, payload))
        offset = end
    return frames, bytes(buffer[offset:])


# --------------------------------------------------------------------------
# HPACK representations written by hand (RFC 7541, section 5 and 6)
# --------------------------------------------------------------------------

_huffman = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)


def hpack_integer(value: int, prefix_bits: int, first_byte_flags: int = 0) -> bytes:
    """An HPACK integer with an N-bit prefix (RFC 7541, 5.1)."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first_byte_flags | value])
    out = bytearray([first_byte_flags | limit])
    value -= limit
    while value >= 128:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def huffman_encode(data: bytes) -> bytes:
    return _huffman.encode(data)


def huffman_bits(symbols: Sequence[int]) -> bytes:
    """Huffman-code the given symbols (256 is EOS), padding with 1 bits.

    Lets a test put the EOS symbol where it must never be."""
    accumulator = 0
    bit_count = 0
    for symbol in symbols:
        accumulator = (accumulator << REQUEST_CODES_LENGTH[symbol]) | REQUEST_CODES[symbol]
        bit_count += REQUEST_CODES_LENGTH[symbol]
    padding = (-bit_count) % 8
    accumulator = (accumulator << padding) | ((1 << padding) - 1)
    return accumulator.to_bytes((bit_count + padding) // 8, "big")


def hpack_string(data: bytes, *, huffman: bool = False) -> bytes:
    """A string literal (RFC 7541, 5.2), optionally Huffman coded."""
    if huffman:
        encoded = huffman_encode(data)
        return hpack_integer(len(encoded), 7, 0x80) + encoded
    return hpack_integer(len(data), 7) + data


def raw_string(encoded: bytes, *, huffman: bool = True) -> bytes:
    """A string literal whose octets are given as-is (e.g. broken Huffman)."""
    return hpack_integer(len(encoded), 7, 0x80 if huffman else 0) + encoded


def indexed_field(index: int) -> bytes:
    """Indexed header field representation (RFC 7541, 6.1)."""
    return hpack_integer(index, 7, 0x80)


# First-byte pattern and prefix size of the three literal kinds (RFC 7541, 6.2).
LITERAL_INCREMENTAL = (0x40, 6)
LITERAL_WITHOUT_INDEXING = (0x00, 4)
LITERAL_NEVER_INDEXED = (0x10, 4)


def literal_field(
    name: bytes | int,
    value: bytes,
    *,
    kind: tuple[int, int] = LITERAL_WITHOUT_INDEXING,
    huffman: bool = False,
) -> bytes:
    """A literal header field; `name` is an index (indexed name) or bytes."""
    pattern, prefix = kind
    if isinstance(name, int):
        head = hpack_integer(name, prefix, pattern)
    else:
        head = bytes([pattern]) + hpack_string(name, huffman=huffman)
    return head + hpack_string(value, huffman=huffman)


def table_size_update(size: int) -> bytes:
    """Dynamic table size update (RFC 7541, 6.3)."""
    return hpack_integer(size, 5, 0x20)


def literal_block(headers: Iterable[tuple[str, str]]) -> bytes:
    """A header block of plain literals that never touch the dynamic table.

    Used for deliberately malformed requests (uppercase names, misplaced
    pseudo-headers): bytes go out exactly as written."""
    return b"".join(
        literal_field(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers
    )
