"""HTTP/2 frames of the common shapes, built without hyperframe's general path.

hyperframe builds every frame through a chain of mixin constructors and
makes a fresh set of the frame type's flag names each time; for the frames
of a small request (a HEADERS and maybe a DATA in, the same out) that is a
good part of the cost. The frames made here are the same hyperframe objects,
with the same attributes, that parsing the same bytes gives
(tests/test_quick_frames.py checks it); any other shape (padding, priority,
stream 0, a header block still open) returns None and takes the general
path, which keeps its checks and errors.
"""

from __future__ import annotations

from hyperframe.frame import DataFrame, HeadersFrame

from .h2_frames import FLAG_END_HEADERS, FLAG_END_STREAM
from .h2_internals import make_flags

_HEADERS_FLAG_NAMES = frozenset(flag.name for flag in HeadersFrame.defined_flags)
_DATA_FLAG_NAMES = frozenset(flag.name for flag in DataFrame.defined_flags)


_flags = make_flags   # h2_internals: hyperframe's Flags built directly


def headers_frame(stream_id: int, flag_bits: int, block: bytes) -> HeadersFrame | None:
    """A HEADERS frame carrying a whole header block (END_HEADERS), without
    padding or priority; None for any other shape."""
    if not stream_id or not flag_bits & FLAG_END_HEADERS:
        return None
    if flag_bits & ~(FLAG_END_HEADERS | FLAG_END_STREAM):
        return None
    frame = HeadersFrame.__new__(HeadersFrame)
    frame.stream_id = stream_id
    names = {"END_HEADERS", "END_STREAM"} if flag_bits & FLAG_END_STREAM else {"END_HEADERS"}
    frame.flags = _flags(_HEADERS_FLAG_NAMES, names)
    frame.body_len = len(block)
    frame.pad_length = 0
    frame.depends_on = 0
    frame.stream_weight = 0
    frame.exclusive = False
    frame.data = block
    return frame


def data_frame(stream_id: int, flag_bits: int, payload: bytes) -> DataFrame | None:
    """A DATA frame without padding; None for any other shape."""
    if not stream_id or flag_bits & ~FLAG_END_STREAM:
        return None
    frame = DataFrame.__new__(DataFrame)
    frame.stream_id = stream_id
    frame.flags = _flags(_DATA_FLAG_NAMES, {"END_STREAM"} if flag_bits else set())
    frame.body_len = len(payload)
    frame.pad_length = 0
    frame.data = payload
    return frame
