#!/usr/bin/env python3
"""Requests per second our HTTP2Protocol handles on one core, in memory.

The counterpart of ../shared/bench/h2_ceiling.py (which measures the bare h2
state machine, and whose client bytes this reuses): the same hello requests,
prepared in advance, go through HTTP2Protocol with no sockets, TLS, threads
or WSGI, so the figure is the protocol layer's own ceiling.

    python scripts/protocol_ceiling.py      # from the repository root
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT.parent / "shared" / "bench")]

from h2_ceiling import BODY, REQUESTS, client_bytes  # noqa: E402

from h2serve.protocol.events import RequestReceived  # noqa: E402
from h2serve.protocol.http2 import (  # noqa: E402
    MAX_WINDOW,
    HTTP2Limits,
    HTTP2Protocol,
    response_head,
)

RESPONSE_HEADERS = [("content-type", "text/plain"), ("content-length", str(len(BODY))),
                    ("date", "Sat, 21 Nov 2026 09:00:00 GMT"), ("server", "h2serve")]


def serve(chunks: list[bytes], batch: int, through_h2: bool = False) -> float:
    """Feed `batch` requests per receive() call; return requests per second.
    Responses are framed as the server frames them (send_whole_response), or
    with through_h2, by h2's send_headers and send_data."""
    protocol = HTTP2Protocol(HTTP2Limits(max_concurrent_streams=MAX_WINDOW, max_requests=0))
    protocol.initiate()
    protocol.data_to_send()
    protocol.receive(chunks[0])
    rest = chunks[1:]
    served = 0
    start = time.perf_counter()
    for i in range(0, len(rest), batch):
        for event in protocol.receive(b"".join(rest[i:i + batch])):
            if type(event) is RequestReceived:
                head = response_head(200, RESPONSE_HEADERS)
                if through_h2:
                    protocol.send_response_head(event.stream_id, head)
                    protocol.send_body(event.stream_id, BODY, end_stream=True)
                else:
                    protocol.send_whole_response(event.stream_id, head, BODY)
                protocol.finish_stream(event.stream_id)
                served += 1
        protocol.data_to_send()
    return served / (time.perf_counter() - start)


if __name__ == "__main__":
    for through_h2 in (False, True):
        how = "h2's send_headers/send_data" if through_h2 else "send_whole_response"
        for batch in (1, 10, 100):
            rate = serve(client_bytes(REQUESTS), batch, through_h2)
            print(f"requests read {batch:3d} at a time: {rate:10,.0f} req/s on one core "
                  f"(HTTP2Protocol, responses by {how})")
