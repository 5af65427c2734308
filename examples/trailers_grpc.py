"""A gRPC-style unary response: one length-prefixed message, status in the trailers.

gRPC puts the call's outcome in trailing headers (grpc-status, grpc-message)
because it is only known once the body has been produced. This example
answers like a tiny greeter service: the request message (if any) is the
name to greet, as plain UTF-8 rather than protobuf. A malformed request
frame gets grpc-status 3 (INVALID_ARGUMENT) and no message.

Run:    h2serve examples.trailers_grpc:app
Query:  curl -v --http2 --cacert ~/.local/share/h2serve/certs/ca.pem https://localhost:8443/ -o reply.bin
        (the trailers show as "< grpc-status: 0" and "< grpc-message: OK" after the body)
"""

import struct

PREFIX = struct.Struct(">BI")  # compressed flag, message length (gRPC over HTTP/2 framing)
MAX_MESSAGE = 4 * 1024 * 1024
OK, INVALID_ARGUMENT = 0, 3


def frame(message: bytes) -> bytes:
    """One uncompressed gRPC message: flag 0, 4-byte big-endian length, payload."""
    return PREFIX.pack(0, len(message)) + message


def parse_request(body: bytes) -> tuple[str | None, str]:
    """The name to greet, or None and the reason the frame is unusable."""
    if not body:
        return "world", ""
    if len(body) < PREFIX.size:
        return None, "truncated message prefix"
    compressed, length = PREFIX.unpack_from(body)
    if compressed:
        return None, "compressed messages are not supported"
    if length > MAX_MESSAGE or len(body) != PREFIX.size + length:
        return None, "message length does not match the body"
    try:
        return body[PREFIX.size:].decode("utf-8") or "world", ""
    except UnicodeDecodeError:
        return None, "name is not UTF-8"


def app(environ, start_response):
    body = environ["wsgi.input"].read(PREFIX.size + MAX_MESSAGE + 1)
    name, problem = parse_request(body)
    start_response("200 OK", [("Content-Type", "application/grpc")])
    send_trailers = environ["h2serve.send_trailers"]
    if name is None:
        send_trailers([("grpc-status", str(INVALID_ARGUMENT)), ("grpc-message", problem)])
        return iter([])
    send_trailers([("grpc-status", str(OK)), ("grpc-message", "OK")])
    # An iterator, not a one-item list: the server adds Content-Length to a
    # one-item list, and HTTP/1.1 can only carry trailers on a chunked body.
    return iter([frame(f"Hello, {name}!".encode())])
