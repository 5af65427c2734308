"""A Flask application using h2serve's extensions.

    h2serve examples.flask_app:app

- ``/``          sends a 103 Early Hints (``wsgi.early_hints``) so the browser can
                 start fetching the stylesheet while the page is produced.
- ``/stream``    streams ``?n=`` server-sent events, ``?delay=`` seconds apart.
- ``/checksum``  streams ``?size=`` bytes and sends their SHA-256 as a trailer
                 (``h2serve.send_trailers``) once the body is out: HTTP/2 frames,
                 or HTTP/1.1 chunked trailers when the client sent ``TE: trailers``.

Under gunicorn the same code runs unchanged: every extension is looked up with
``environ.get`` and skipped when the server does not offer it.
"""

from __future__ import annotations

import hashlib
import time

from flask import Flask, Response, request

app = Flask(__name__)

STYLESHEET = "/static/site.css"
PAGE = f"""<!doctype html>
<html><head><link rel="stylesheet" href="{STYLESHEET}"><title>h2serve + Flask</title></head>
<body><p>Served over {{protocol}}.</p></body></html>
"""


@app.get("/")
def index() -> Response:
    early_hints = request.environ.get("wsgi.early_hints")
    if early_hints is not None:
        early_hints([("Link", f"<{STYLESHEET}>; rel=preload; as=style")])
    page = PAGE.replace("{protocol}", request.environ.get("SERVER_PROTOCOL", "HTTP"))
    response = Response(page, mimetype="text/html")
    response.headers["Link"] = f"<{STYLESHEET}>; rel=preload; as=style"
    return response


@app.get(STYLESHEET)
def stylesheet() -> Response:
    return Response("body { font-family: sans-serif; }\n", mimetype="text/css")


@app.get("/stream")
def stream() -> Response:
    count = request.args.get("n", default=5, type=int)
    delay = request.args.get("delay", default=0.5, type=float)

    def events():
        for number in range(count):
            yield f"data: event {number}\n\n"
            if number + 1 < count:
                time.sleep(delay)

    # X-Accel-Buffering: no asks nginx, if it is in front, to pass events on at once.
    return Response(events(), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@app.get("/checksum")
def checksum() -> Response:
    size = request.args.get("size", default=100_000, type=int)
    send_trailers = request.environ.get("h2serve.send_trailers")

    def body():
        digest = hashlib.sha256()
        block = bytes(range(256)) * 64
        left = size
        while left > 0:
            chunk = block[: min(left, len(block))]
            left -= len(chunk)
            digest.update(chunk)
            yield chunk
        # Runs after the last chunk went out and before the response ends.
        if send_trailers is not None:
            send_trailers([("x-checksum", f"sha256={digest.hexdigest()}")])

    return Response(body(), mimetype="application/octet-stream",
                    headers={"Trailer": "x-checksum"})
