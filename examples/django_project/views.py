"""The same three views as the Flask example, written for Django.

Django's ``request.META`` is the WSGI environ, so h2serve's extensions are
found there: ``wsgi.early_hints`` and ``h2serve.send_trailers``.
"""

from __future__ import annotations

import hashlib
import time

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

STYLESHEET = "/static/site.css"


def index(request: HttpRequest) -> HttpResponse:
    early_hints = request.META.get("wsgi.early_hints")
    if early_hints is not None:
        early_hints([("Link", f"<{STYLESHEET}>; rel=preload; as=style")])
    protocol = request.META.get("SERVER_PROTOCOL", "HTTP")
    response = HttpResponse(
        f'<!doctype html><html><head><link rel="stylesheet" href="{STYLESHEET}">'
        f"<title>h2serve + Django</title></head><body><p>Served over {protocol}.</p></body></html>",
        content_type="text/html")
    response["Link"] = f"<{STYLESHEET}>; rel=preload; as=style"
    return response


def stream(request: HttpRequest) -> StreamingHttpResponse:
    count = int(request.GET.get("n", "5"))
    delay = float(request.GET.get("delay", "0.5"))

    def events():
        for number in range(count):
            yield f"data: event {number}\n\n"
            if number + 1 < count:
                time.sleep(delay)

    response = StreamingHttpResponse(events(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


def checksum(request: HttpRequest) -> StreamingHttpResponse:
    size = int(request.GET.get("size", "100000"))
    send_trailers = request.META.get("h2serve.send_trailers")

    def body():
        digest = hashlib.sha256()
        block = bytes(range(256)) * 64
        left = size
        while left > 0:
            chunk = block[: min(left, len(block))]
            left -= len(chunk)
            digest.update(chunk)
            yield chunk
        if send_trailers is not None:
            send_trailers([("x-checksum", f"sha256={digest.hexdigest()}")])

    response = StreamingHttpResponse(body(), content_type="application/octet-stream")
    response["Trailer"] = "x-checksum"
    return response
