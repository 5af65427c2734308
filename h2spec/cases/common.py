"""Helpers shared by the case modules."""

from __future__ import annotations

import time

from h2spec.client import Closed, TimedOut
from h2spec.frames import FrameType, ReceivedFrame
from h2spec.registry import CaseContext, CaseFailed

# Same size as h2spec's default: one dummy header is 4000 octets of "x".
DUMMY_VALUE_LENGTH = 4000
PING_PAYLOAD = b"h2spec\x00\x00"


def dummy_headers(count: int, value_length: int = DUMMY_VALUE_LENGTH) -> list[tuple[str, str]]:
    """Filler fields (x-dummy0, x-dummy1, ...) for header blocks that must
    be big or must span frames."""
    return [(f"x-dummy{i}", "x" * value_length) for i in range(count)]


def server_body_length(ctx: CaseContext) -> int:
    """Length of the body the server returns for GET on the target path,
    read over a separate connection. Flow-control cases need a body to
    watch, and are skipped when it is too short."""
    conn = ctx.connect()
    conn.send_request(1, ctx.request_headers())
    total = 0
    deadline = time.monotonic() + conn.timeout
    while True:
        event = conn.next_event(deadline)
        if isinstance(event, Closed | TimedOut):
            raise CaseFailed(
                ["a complete response to GET (to measure the body length)"], event.describe()
            )
        assert isinstance(event, ReceivedFrame)
        if event.stream_id != 1:
            continue
        if event.type == FrameType.DATA:
            total += event.length
        if event.type == FrameType.RST_STREAM:
            raise CaseFailed(
                ["a complete response to GET (to measure the body length)"], event.describe()
            )
        if event.ends_stream:
            conn.close()
            return total
