"""The smallest app: `h2serve examples.hello:app`, then open https://localhost:8443/."""


def app(environ, start_response):
    body = f"Hello from h2serve over {environ['SERVER_PROTOCOL']}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"),
                              ("Content-Length", str(len(body)))])
    return [body]
