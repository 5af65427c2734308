"""HTTP/2 wire constants (RFC 9113 §4 and §6, RFC 9218 §7.1), in one place
for the protocol, the frame builders and the flood accounting."""

from __future__ import annotations

import struct

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER_LEN = 9

FRAME_TYPE_DATA = 0x0
FRAME_TYPE_HEADERS = 0x1
FRAME_TYPE_PRIORITY = 0x2
FRAME_TYPE_RST_STREAM = 0x3
FRAME_TYPE_SETTINGS = 0x4
FRAME_TYPE_PING = 0x6
FRAME_TYPE_GOAWAY = 0x7
FRAME_TYPE_WINDOW_UPDATE = 0x8
FRAME_TYPE_CONTINUATION = 0x9
FRAME_TYPE_PRIORITY_UPDATE = 0x10

FLAG_ACK = 0x1          # SETTINGS, PING
FLAG_END_STREAM = 0x1   # DATA, HEADERS
FLAG_END_HEADERS = 0x4  # HEADERS, CONTINUATION
FLAG_PADDED = 0x8       # DATA, HEADERS

MAX_WINDOW = 2**31 - 1

# Error codes (RFC 9113 §7) the drivers use by name.
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
CANCEL = 0x8
ENHANCE_YOUR_CALM = 0xB
INADEQUATE_SECURITY = 0xC

_HEADER = struct.Struct(">HBBBL")   # 24-bit length as 16 + 8 bits, type, flags, stream id


def frame_header(length: int, frame_type: int, flags: int, stream_id: int) -> bytes:
    """The 9-byte header in front of every frame (RFC 9113 §4.1)."""
    return _HEADER.pack(length >> 8, length & 0xFF, frame_type, flags, stream_id)
