"""Early hints: a 103 that tells the browser to preload the stylesheet, then the page.

The 103 goes out before the view does its (here simulated) slow work, so a
browser can fetch the stylesheet while it waits for the page.

Run:    h2serve examples.early_hints:app
Query:  curl -v --http2 --cacert ~/.local/share/h2serve/certs/ca.pem https://localhost:8443/
        (look for "< HTTP/2 103" and its link header before "< HTTP/2 200")
"""

import time

STYLESHEET = "/static/site.css"
PRELOAD = f"<{STYLESHEET}>; rel=preload; as=style"
BUILD_PAGE_S = 0.2  # stands in for the database queries and templating behind a real page

CSS = b"body { font-family: sans-serif; margin: 2em; }\n"
PAGE = (
    b"<!doctype html>\n"
    b"<html><head><title>Early hints</title>"
    b'<link rel="stylesheet" href="' + STYLESHEET.encode() + b'"></head>\n'
    b"<body><p>The stylesheet was hinted before this page was ready.</p></body></html>\n"
)


def app(environ, start_response):
    if environ.get("PATH_INFO") == STYLESHEET:
        start_response("200 OK", [("Content-Type", "text/css"),
                                  ("Content-Length", str(len(CSS))),
                                  ("Cache-Control", "max-age=3600")])
        return [CSS]

    send_hints = environ.get("wsgi.early_hints")
    if send_hints is not None:  # absent on servers without the extension
        send_hints([("Link", PRELOAD)])
    time.sleep(BUILD_PAGE_S)
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                              ("Content-Length", str(len(PAGE))),
                              ("Link", PRELOAD)])  # repeated for clients that ignore 103
    return [PAGE]
