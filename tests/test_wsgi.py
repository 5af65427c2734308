"""The WSGI adapter without sockets: environ, forwarded headers, input, responses."""

from __future__ import annotations

from h2serve.protocol.events import RequestReceived
from h2serve.wsgi import (
    ForwardedPolicy,
    InputStream,
    build_environ,
    connection_environ,
    serve_request,
)


def base(peer=("127.0.0.1", 5555)):
    return connection_environ(server_addr=("127.0.0.1", 8443), peer_addr=peer, url_scheme="https",
                              alpn="h2", multiprocess=False, errors=None)


def request(headers, target="/p%20q?x=1", method="GET"):
    return RequestReceived(stream_id=3, method=method, target=target, headers=headers,
                           authority="example.test:8443", scheme="http", http_version="2",
                           end_stream=True)


class FakeExchange:
    protocol = "HTTP/2"

    def __init__(self, body=b""):
        self.body = body
        self.sent = []

    def read(self, size):
        if size < 0 or size >= len(self.body):
            data, self.body = self.body, b""
        else:
            data, self.body = self.body[:size], self.body[size:]
        return data

    def request_trailers(self):
        return None

    def send_informational(self, status, headers):
        self.sent.append(("info", status, headers))

    def send_head(self, status, reason, headers, end_stream):
        self.sent.append(("head", status, headers, end_stream))

    def send_body(self, data, end_stream=False):
        self.sent.append(("body", bytes(data)))

    def send_end(self, trailers):
        self.sent.append(("end", trailers))

    def send_complete(self, status, reason, headers, body, trailers):
        self.sent.append(("complete", status, headers, body, trailers))

    def abort(self):
        self.sent.append(("abort",))


def test_environ_maps_headers_path_and_authority():
    env = build_environ(base(), request([("cookie", "a=1"), ("cookie", "b=2"), ("x-a", "1"),
                                         ("x_a", "spoof"), ("content-type", "text/plain")]),
                        "HTTP/2", ForwardedPolicy(["127.0.0.1"]))
    assert env["PATH_INFO"] == "/p q" and env["QUERY_STRING"] == "x=1"
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["HTTP_X_A"] == "1"               # the underscore twin never overwrites it
    assert env["CONTENT_TYPE"] == "text/plain" and "HTTP_CONTENT_TYPE" not in env
    assert env["HTTP_HOST"] == "example.test:8443" and env["SERVER_NAME"] == "example.test"
    assert env["wsgi.url_scheme"] == "https"     # :scheme http cannot change it
    assert env["h2serve.stream_id"] == 3


def test_forwarded_headers_only_from_trusted_peers():
    headers = [("x-forwarded-for", "203.0.113.9, 10.0.0.2"), ("x-forwarded-proto", "http")]
    trusted = ForwardedPolicy(["127.0.0.1", "10.0.0.0/8"])
    env = build_environ(base(), request(headers), "HTTP/2", trusted)
    assert env["REMOTE_ADDR"] == "203.0.113.9"   # the nearest hop not in the allow list
    assert env["wsgi.url_scheme"] == "http"
    env = build_environ(base(("192.0.2.1", 1)), request(headers), "HTTP/2", trusted)
    assert env["REMOTE_ADDR"] == "192.0.2.1" and env["wsgi.url_scheme"] == "https"


def test_unix_socket_peer_is_trusted_for_forwarded_headers():
    env = build_environ(base(peer=""), request([("x-forwarded-for", "198.51.100.7")]), "HTTP/1.1",
                        ForwardedPolicy(["127.0.0.1"]))
    assert env["REMOTE_ADDR"] == "198.51.100.7"


def test_input_stream_readline_and_read():
    stream = InputStream(FakeExchange(b"one\ntwo\nthree"))
    assert stream.readline() == b"one\n"
    assert stream.read(2) == b"tw"
    assert list(stream) == [b"o\n", b"three"]
    assert stream.read() == b""


def test_one_chunk_body_gets_content_length_unless_trailers_are_set():
    def plain(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello"]

    def with_trailers(environ, start_response):
        start_response("200 OK", [("Trailer", "x-sum")])
        environ["h2serve.send_trailers"]([("X-Sum", "1")])
        return [b"hello"]

    exchange = FakeExchange()
    serve_request(plain, exchange, request([]), base(), None, None)
    (kind, status, headers, body, trailers), = exchange.sent
    assert kind == "complete" and ("Content-Length", "5") in headers and body == b"hello"

    exchange = FakeExchange()
    serve_request(with_trailers, exchange, request([]), base(), None, None)
    (kind, status, headers, body, trailers), = exchange.sent
    assert not any(n.lower() == "content-length" for n, _ in headers)
    assert ("Trailer", "x-sum") in headers and trailers == [("x-sum", "1")]


def test_app_error_before_start_is_a_500_and_after_is_an_abort():
    def early(environ, start_response):
        raise RuntimeError("early")

    def late(environ, start_response):
        start_response("200 OK", [])
        yield b"x"
        raise RuntimeError("late")

    exchange = FakeExchange()
    serve_request(early, exchange, request([]), base(), None, None)
    assert exchange.sent[0][:2] == ("complete", 500)
    exchange = FakeExchange()
    serve_request(late, exchange, request([]), base(), None, None)
    assert exchange.sent[-1] == ("abort",)


def test_trust_verdicts_are_remembered_within_a_bound():
    """X-Forwarded-For hops are the client's to choose: remembering verdicts
    must not let it grow the table without end, nor change any answer."""
    from h2serve.transport.forwarded import VERDICTS_KEPT, ForwardedPolicy

    policy = ForwardedPolicy(["10.0.0.0/8", "192.0.2.1"])
    for _ in range(2):   # the second pass answers from the table
        assert policy.trusts("10.1.2.3") and policy.trusts("::ffff:10.9.9.9")
        assert policy.trusts("192.0.2.1") and not policy.trusts("192.0.2.2")
        assert not policy.trusts("not-an-address")
    for n in range(3 * VERDICTS_KEPT):
        assert policy.trusts(f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}")
    assert len(policy._verdicts) <= VERDICTS_KEPT
    assert not policy.trusts("192.0.2.2") and policy.trusts("10.1.2.3")
