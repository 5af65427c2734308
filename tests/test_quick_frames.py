"""Frames built by h2serve.protocol.quick_frames equal what hyperframe parses."""

from __future__ import annotations

from hyperframe.frame import DataFrame, Frame, HeadersFrame
from hypothesis import given
from hypothesis import strategies as st

from h2serve.protocol.h2_frames import FRAME_TYPE_DATA, FRAME_TYPE_HEADERS, frame_header
from h2serve.protocol.quick_frames import data_frame, headers_frame

stream_ids = st.integers(min_value=0, max_value=2**31 - 1)
flag_bytes = st.integers(min_value=0, max_value=255)
payloads = st.binary(max_size=64)


def parsed(frame_type: int, flags: int, stream_id: int, payload: bytes) -> Frame:
    raw = frame_header(len(payload), frame_type, flags, stream_id) + payload
    frame, length = Frame.parse_frame_header(memoryview(raw[:9]))
    frame.parse_body(memoryview(raw[9:9 + length]))
    return frame


def same_frame(quick: Frame, reference: Frame) -> bool:
    return type(quick) is type(reference) and vars(quick) == vars(reference)


@given(stream_ids, flag_bytes, payloads)
def test_headers_frame_equals_the_parsed_one(stream_id, flags, block):
    quick = headers_frame(stream_id, flags, block)
    plain = stream_id and flags & 0x4 and not flags & ~0x5
    if not plain:   # stream 0, an open block, padding, priority, unknown bits
        assert quick is None
        return
    reference = parsed(FRAME_TYPE_HEADERS, flags, stream_id, block)
    assert same_frame(quick, reference)
    assert set(quick.flags) == set(reference.flags)
    quick.flags.add("END_HEADERS")   # what h2's buffer does to a merged block


@given(stream_ids, flag_bytes, payloads)
def test_data_frame_equals_the_parsed_one(stream_id, flags, payload):
    quick = data_frame(stream_id, flags, payload)
    if not stream_id or flags & ~0x1:
        assert quick is None
        return
    reference = parsed(FRAME_TYPE_DATA, flags, stream_id, payload)
    assert same_frame(quick, reference)
    assert quick.flow_controlled_length == reference.flow_controlled_length == len(payload)


def test_frame_header_matches_hyperframe_serialization():
    frame = HeadersFrame(7, data=b"x" * 70_000, flags=["END_STREAM", "END_HEADERS"])
    assert frame_header(70_000, FRAME_TYPE_HEADERS, 0x5, 7) == frame.serialize()[:9]
    frame = DataFrame(2**31 - 1, data=b"abc")
    assert frame_header(3, FRAME_TYPE_DATA, 0, 2**31 - 1) == frame.serialize()[:9]
