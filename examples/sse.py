"""Server-sent events: ?n= events (default 5, at most 100), one every 0.5 s.

Each event leaves the server as soon as it is yielded. Over HTTP/2 the
stream holds one pool thread while it runs, but other requests on the same
connection keep flowing beside it.

Run:    h2serve examples.sse:app
Query:  curl -N --http2 --cacert ~/.local/share/h2serve/certs/ca.pem 'https://localhost:8443/?n=3'
"""

import json
import time
from urllib.parse import parse_qs

INTERVAL_S = 0.5
DEFAULT_EVENTS = 5
MAX_EVENTS = 100


def event_count(query_string: str) -> int | None:
    """The n= query value, or None when it is not a number in range."""
    values = parse_qs(query_string).get("n")
    if not values:
        return DEFAULT_EVENTS
    try:
        count = int(values[-1])
    except ValueError:
        return None
    return count if 0 <= count <= MAX_EVENTS else None


def app(environ, start_response):
    count = event_count(environ.get("QUERY_STRING", ""))
    if count is None:
        body = f"n must be a whole number from 0 to {MAX_EVENTS}\n".encode()
        start_response("400 Bad Request", [("Content-Type", "text/plain"),
                                           ("Content-Length", str(len(body)))])
        return [body]

    start_response("200 OK", [
        ("Content-Type", "text/event-stream; charset=utf-8"),
        ("Cache-Control", "no-cache"),
        ("X-Accel-Buffering", "no"),  # asks nginx not to buffer the stream
    ])

    def events():
        started = time.monotonic()
        for number in range(1, count + 1):
            if number > 1:
                time.sleep(INTERVAL_S)
            data = json.dumps({"n": number, "of": count,
                               "elapsed": round(time.monotonic() - started, 3)})
            yield f"id: {number}\nevent: tick\ndata: {data}\n\n".encode()
        yield b"event: done\ndata: {}\n\n"

    return events()
