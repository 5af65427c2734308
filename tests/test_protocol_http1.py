"""HTTP1Protocol: feed bytes, check events and the bytes it produces."""

from __future__ import annotations

import base64
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from h2serve.protocol.events import (
    BodyEnded,
    BodyReceived,
    ConnectionTerminated,
    ProtocolViolation,
    RequestReceived,
)
from h2serve.protocol.http1 import (
    HTTP1Protocol,
    h2c_upgrade_requested,
    switching_protocols_response,
)

GET = b"GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\n\r\n"


def head(*lines: bytes, request_line: bytes = b"GET / HTTP/1.1") -> bytes:
    return request_line + b"\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"


def feed_bytewise(proto: HTTP1Protocol, data: bytes) -> list:
    events = []
    for index in range(len(data)):
        events += proto.receive(data[index:index + 1])
    return events


def body_of(events: list) -> bytes:
    return b"".join(event.data for event in events if isinstance(event, BodyReceived))


def respond(proto: HTTP1Protocol, payload: bytes = b"ok") -> bytes:
    return (
        proto.response_head(200, "OK", [("Content-Length", str(len(payload)))])
        + proto.body(payload)
        + proto.end()
    )


# ---------------------------------------------------------------- basic exchanges


def test_simple_get() -> None:
    proto = HTTP1Protocol()
    events = proto.receive(GET)
    assert events == [
        RequestReceived(
            stream_id=1,
            method="GET",
            target="/index.html?q=1",
            headers=[("host", "example.com"), ("user-agent", "t")],
            authority="example.com",
            scheme=None,
            http_version="1.1",
            end_stream=True,
            expect_continue=False,
            content_length=None,
        ),
        BodyEnded(stream_id=1, trailers=None),
    ]
    assert proto.request_body_complete
    out = respond(proto, b"hello")
    assert out == b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    assert proto.keep_alive


def test_header_values_are_latin1_and_names_lower_case() -> None:
    proto = HTTP1Protocol()
    [request, _] = proto.receive(head(b"Host: h", b"X-Name:  caf\xe9 au  lait \t"))
    assert request.headers == [("host", "h"), ("x-name", "caf\xe9 au  lait")]


def test_keep_alive_two_requests() -> None:
    proto = HTTP1Protocol()
    assert isinstance(proto.receive(GET)[0], RequestReceived)
    respond(proto)
    assert proto.start_next_request() == []  # nothing buffered yet
    events = proto.receive(head(b"Host: b", request_line=b"DELETE /x HTTP/1.1"))
    assert [type(e) for e in events] == [RequestReceived, BodyEnded]
    assert events[0].method == "DELETE" and events[0].authority == "b"


def test_pipelined_requests_wait_for_start_next_request() -> None:
    proto = HTTP1Protocol()
    requests = [head(b"Host: h", request_line=b"GET /%d HTTP/1.1" % n) for n in range(3)]
    events = proto.receive(b"".join(requests))
    assert [e.target for e in events if isinstance(e, RequestReceived)] == ["/0"]
    assert proto.pending_bytes == len(requests[1]) + len(requests[2])
    assert proto.receive(b"more junk is only buffered") == []
    with pytest.raises(RuntimeError):
        proto.start_next_request()  # response not sent yet
    respond(proto)
    assert proto.start_next_request()[0].target == "/1"
    respond(proto)
    assert proto.start_next_request()[0].target == "/2"


def test_pipelined_requests_parse_fast() -> None:
    request = (
        b"GET /index.html?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: bench/1.0\r\n"
        b"Accept: */*\r\nAccept-Encoding: gzip\r\n\r\n"
    )
    proto = HTTP1Protocol()
    parse_seconds = 0.0
    started = time.perf_counter()
    events = proto.receive(request * 1000)
    parse_seconds += time.perf_counter() - started
    count = 0
    while events:
        count += 1
        respond(proto)
        started = time.perf_counter()
        events = proto.start_next_request()
        parse_seconds += time.perf_counter() - started
    assert count == 1000
    # ~30 ms on a laptop; the margin absorbs a loaded CI machine.
    assert parse_seconds < 0.2


def test_leading_empty_lines_are_ignored() -> None:
    proto = HTTP1Protocol()
    events = proto.receive(b"\r\n\r\n" + GET)
    assert isinstance(events[0], RequestReceived)


def test_post_content_length_body_split_over_many_receives() -> None:
    payload = bytes(range(256)) * 4
    data = head(b"Host: h", b"Content-Length: %d" % len(payload), request_line=b"POST /up HTTP/1.1")
    proto = HTTP1Protocol()
    [request] = proto.receive(data)
    assert request.content_length == len(payload) and not request.end_stream
    events = []
    for index in range(0, len(payload), 7):
        assert not proto.request_body_complete
        events += proto.receive(payload[index:index + 7] + (GET if index + 7 >= len(payload) else b""))
    assert body_of(events) == payload
    assert events[-1] == BodyEnded(stream_id=1, trailers=None)
    assert proto.request_body_complete
    assert proto.pending_bytes == len(GET)  # next request left alone


def test_chunked_request_body_with_trailers_bytewise() -> None:
    data = head(b"Host: h", b"Transfer-Encoding: chunked", request_line=b"POST / HTTP/1.1") + (
        b"5;name=value;q=\"a \\\" b\"\r\nhello\r\n"
        b"0000000000000006 ; x\r\n world\r\n"
        b"0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n"
    )
    proto = HTTP1Protocol()
    events = feed_bytewise(proto, data + GET)
    assert isinstance(events[0], RequestReceived) and events[0].content_length is None
    assert body_of(events) == b"hello world"
    assert events[-1] == BodyEnded(stream_id=1, trailers=[("x-checksum", "abc"), ("x-other", "1")])
    assert proto.pending_bytes == len(GET)


def test_chunked_request_without_trailers() -> None:
    data = head(b"Host: h", b"Transfer-Encoding: Chunked ", request_line=b"POST / HTTP/1.1")
    events = HTTP1Protocol().receive(data + b"3\r\nabc\r\n0\r\n\r\n")
    assert body_of(events) == b"abc"
    assert events[-1] == BodyEnded(stream_id=1, trailers=None)


# ---------------------------------------------------------------- responses


def test_chunked_response_with_trailers_when_client_accepts_them() -> None:
    proto = HTTP1Protocol()
    proto.receive(head(b"Host: h", b"TE: trailers"))
    assert proto.accepts_trailers
    out = proto.response_head(200, "OK", [("Content-Type", "text/plain")])
    out += proto.body(b"hello") + proto.body(b"") + proto.end(
        [("X-Checksum", "abc"), ("Content-Length", "99")]
    )
    assert out == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n"
    )


def test_response_trailers_dropped_without_te_trailers() -> None:
    proto = HTTP1Protocol()
    proto.receive(GET)
    assert not proto.accepts_trailers
    proto.response_head(200, "OK", [])
    assert proto.body(b"hi") == b"2\r\nhi\r\n"
    assert proto.end([("X-Checksum", "abc")]) == b"0\r\n\r\n"


def test_response_trailers_dropped_when_content_length_is_set() -> None:
    proto = HTTP1Protocol()
    proto.receive(head(b"Host: h", b"TE: trailers"))
    proto.response_head(200, "OK", [("Content-Length", "2")])
    assert proto.body(b"hi") == b"hi"
    assert proto.end([("X-Checksum", "abc")]) == b""


def test_app_transfer_encoding_is_replaced_by_our_framing() -> None:
    proto = HTTP1Protocol()
    proto.receive(GET)
    out = proto.response_head(200, "OK", [("Transfer-Encoding", "gzip"), ("Content-Length", "1")])
    assert b"gzip" not in out and b"Content-Length: 1\r\n" in out


def test_http10_response_is_close_delimited() -> None:
    proto = HTTP1Protocol()
    [request, _] = proto.receive(b"GET / HTTP/1.0\r\n\r\n")
    assert request.http_version == "1.0" and request.authority is None
    assert not proto.keep_alive
    out = proto.response_head(200, "OK", [("Content-Type", "text/plain")])
    assert out == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
    assert proto.body(b"raw bytes") == b"raw bytes"
    assert proto.end([("X-T", "1")]) == b""
    with pytest.raises(RuntimeError):
        proto.start_next_request()


def test_http10_gets_no_informational_response() -> None:
    proto = HTTP1Protocol()
    [request, _] = proto.receive(b"GET / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n")
    assert not request.expect_continue
    assert proto.informational(103, [("Link", "</a.css>; rel=preload")]) == b""


def test_head_response_has_no_body() -> None:
    proto = HTTP1Protocol()
    proto.receive(head(b"Host: h", request_line=b"HEAD / HTTP/1.1"))
    out = proto.response_head(200, "OK", [("Content-Length", "5")])
    assert out == b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
    assert proto.body(b"hello") == b""
    assert proto.end() == b""
    assert proto.keep_alive
    assert proto.start_next_request() == []


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_have_no_body(status: int) -> None:
    proto = HTTP1Protocol()
    proto.receive(GET)
    out = proto.response_head(status, "", [("Content-Length", "0"), ("ETag", '"x"')])
    assert b"Transfer-Encoding" not in out
    assert (b"Content-Length" in out) == (status == 304)  # 204 must not carry one
    assert out.startswith(b"HTTP/1.1 %d " % status)
    assert proto.body(b"ignored") == b""
    assert proto.end() == b""
    assert proto.keep_alive


def test_expect_continue_is_flagged_and_answered() -> None:
    proto = HTTP1Protocol()
    [request] = proto.receive(
        head(b"Host: h", b"Expect: 100-Continue", b"Content-Length: 3", request_line=b"PUT / HTTP/1.1")
    )
    assert request.expect_continue
    assert proto.informational(100, []) == b"HTTP/1.1 100 Continue\r\n\r\n"
    events = proto.receive(b"abc")
    assert body_of(events) == b"abc"


def test_early_hints() -> None:
    proto = HTTP1Protocol()
    proto.receive(GET)
    out = proto.informational(103, [("Link", "</s.css>; rel=preload")])
    assert out == b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
    with pytest.raises(ValueError):
        proto.informational(101, [])


def test_connection_close_from_client() -> None:
    proto = HTTP1Protocol()
    proto.receive(head(b"Host: h", b"Connection: keep-alive, Close"))
    assert not proto.keep_alive
    assert b"Connection: close\r\n" in proto.response_head(200, "OK", [("Content-Length", "0")])


def test_close_after_response_adds_connection_close() -> None:
    proto = HTTP1Protocol()
    proto.receive(GET)
    proto.close_after_response()
    out = proto.response_head(200, "OK", [("Content-Length", "0")]) + proto.end()
    assert out == b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    assert not proto.keep_alive


def test_app_connection_close_ends_keep_alive() -> None:
    proto = HTTP1Protocol()
    proto.receive(GET)
    out = proto.response_head(200, "OK", [("Content-Length", "0"), ("Connection", "close")])
    assert out.count(b"onnection") == 1
    assert not proto.keep_alive


def test_content_length_is_enforced_on_the_response() -> None:
    proto = HTTP1Protocol()
    proto.receive(GET)
    proto.response_head(200, "OK", [("Content-Length", "2")])
    with pytest.raises(ValueError):
        proto.body(b"too long")
    assert not proto.keep_alive


def test_short_response_body_is_an_error() -> None:
    proto = HTTP1Protocol()
    proto.receive(GET)
    proto.response_head(200, "OK", [("Content-Length", "10")])
    proto.body(b"abc")
    with pytest.raises(ValueError):
        proto.end()
    assert not proto.keep_alive


def test_response_header_injection_is_refused() -> None:
    proto = HTTP1Protocol()
    proto.receive(GET)
    with pytest.raises(ValueError):
        proto.response_head(200, "OK", [("X-A", "a\r\nSet-Cookie: x=1")])


@pytest.mark.parametrize(
    "headers",
    [
        [("X-A", "a\rb")],
        [("X-A", "a\nb")],
        [("X-A", "a\x00b")],
        [("X-A", "a\x0bb")],
        [("X-A", "a\x7fb")],
        [("X-A", "ok"), ("X-B", "b\r\n")],
        [("X-A\r\nSet-Cookie", "x=1")],
        [("X-A: b", "c")],
        [("X A", "c")],
        [("", "c")],
        [("X-A\x00", "c")],
        [("X-A", "\u20ac")],
        [("Content-Length", "1, 2")],
        [("Content-Length", "1"), ("Content-Length", "2")],
        [("Content-Length", "-1")],
        [("Content-Length", "\u0661")],  # a non-ASCII digit
    ],
)
def test_bad_response_headers_are_refused_and_end_keep_alive(headers: list) -> None:
    proto = HTTP1Protocol()
    proto.receive(GET)
    with pytest.raises(ValueError):
        proto.response_head(200, "OK", headers)
    assert not proto.keep_alive
    # Nothing went out, so the adapter can still answer with an error page.
    out = proto.response_head(500, "", [("Content-Length", "0")])
    assert out == b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def test_bad_trailers_fail_the_response() -> None:
    proto = HTTP1Protocol()
    proto.receive(head(b"Host: h", b"TE: trailers"))
    proto.response_head(200, "OK", [])
    with pytest.raises(ValueError):
        proto.end([("X-T", "a\r\nX-Evil: 1")])
    assert not proto.keep_alive
    with pytest.raises(RuntimeError):
        proto.end()


def test_header_values_may_carry_latin1_and_tabs() -> None:
    proto = HTTP1Protocol()
    proto.receive(GET)
    out = proto.response_head(200, "OK", [("X-A", "caf\xe9\tau lait"), ("Content-Length", "0")])
    assert out == b"HTTP/1.1 200 OK\r\nX-A: caf\xe9\tau lait\r\nContent-Length: 0\r\n\r\n"


def test_reason_phrase_is_used_checked_and_not_mixed_up() -> None:
    proto = HTTP1Protocol()
    proto.receive(GET)
    with pytest.raises(ValueError):
        proto.response_head(200, "OK\r\nSet-Cookie: x=1", [])
    assert proto.response_head(200, "Fine", []).startswith(b"HTTP/1.1 200 Fine\r\n")
    for reason, line in [("", b"HTTP/1.1 418 I'm a Teapot\r\n"), ("OK", b"HTTP/1.1 418 OK\r\n"),
                         ("", b"HTTP/1.1 418 I'm a Teapot\r\n")]:
        proto = HTTP1Protocol()
        proto.receive(GET)
        assert proto.response_head(418, reason, []).startswith(line)
    proto = HTTP1Protocol()
    proto.receive(GET)
    assert proto.response_head(599, "", []).startswith(b"HTTP/1.1 599 Unknown\r\n")


def test_response_content_length_lists_are_folded() -> None:
    proto = HTTP1Protocol()
    proto.receive(GET)
    out = proto.response_head(200, "OK", [("Content-Length", "3, 3"), ("content-length", "3")])
    assert out == b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"
    assert proto.body(b"abc") == b"abc"
    assert proto.end() == b""
    assert proto.keep_alive


def test_chunked_response_in_pieces() -> None:
    proto = HTTP1Protocol()
    proto.receive(GET)
    out = proto.response_head(201, "Created", [("X-A", "1")])
    assert out == b"HTTP/1.1 201 Created\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert proto.body(b"a" * 26) == b"1a\r\n" + b"a" * 26 + b"\r\n"
    assert proto.body(bytearray(b"xyz")) == b"3\r\nxyz\r\n"
    assert proto.end() == b"0\r\n\r\n"
    assert proto.keep_alive
    with pytest.raises(RuntimeError):
        proto.body(b"late")


def test_head_without_content_length_announces_chunked_but_sends_nothing() -> None:
    proto = HTTP1Protocol()
    proto.receive(head(b"Host: h", request_line=b"HEAD / HTTP/1.1"))
    out = proto.response_head(200, "OK", [("Content-Type", "text/plain")])
    assert out == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert proto.body(b"ignored") == b""
    assert proto.end([("X-T", "1")]) == b""
    assert proto.keep_alive


def test_http10_with_content_length_is_counted_and_closes() -> None:
    proto = HTTP1Protocol()
    proto.receive(b"GET / HTTP/1.0\r\n\r\n")
    out = proto.response_head(200, "OK", [("Content-Length", "3")])
    assert out == b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\n"
    assert proto.body(b"ab") == b"ab"
    with pytest.raises(ValueError):
        proto.body(b"cd")
    with pytest.raises(ValueError):
        proto.end()


def test_body_after_a_failed_body_keeps_failing() -> None:
    proto = HTTP1Protocol()
    proto.receive(GET)
    proto.response_head(200, "OK", [("Content-Length", "1")])
    with pytest.raises(ValueError):
        proto.body(b"ab")
    with pytest.raises(ValueError):
        proto.body(b"a")
    with pytest.raises(ValueError):
        proto.end()
    with pytest.raises(RuntimeError):
        proto.start_next_request()


def test_nothing_to_answer_before_a_request() -> None:
    proto = HTTP1Protocol()
    with pytest.raises(ValueError):
        proto.response_head(200, "OK", [])
    with pytest.raises(ValueError):
        proto.informational(100, [])
    proto.receive(b"GET / HTT")  # incomplete: still nothing to answer
    with pytest.raises(ValueError):
        proto.response_head(200, "OK", [])


def test_app_connection_header_passes_or_merges() -> None:
    proto = HTTP1Protocol()
    proto.receive(GET)
    out = proto.response_head(200, "OK", [("Connection", "keep-alive"), ("Content-Length", "0")])
    assert b"Connection: keep-alive\r\n" in out and b"close" not in out
    assert proto.keep_alive
    proto.end()
    proto.start_next_request()
    proto.receive(GET)
    proto.close_after_response()
    out = proto.response_head(200, "OK", [("Connection", "Keep-Alive, X-Foo"), ("Content-Length", "0")])
    assert out == b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close, x-foo\r\n\r\n"


def test_informational_checks_headers_and_drops_framing() -> None:
    proto = HTTP1Protocol()
    proto.receive(GET)
    with pytest.raises(ValueError):
        proto.informational(103, [("Link", "</a>\r\nX: 1")])
    out = proto.informational(103, [("Link", "</a>"), ("Content-Length", "5"), ("Transfer-Encoding", "x")])
    assert out == b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    assert proto.keep_alive


def test_many_pipelined_requests_in_one_receive() -> None:
    proto = HTTP1Protocol()
    data = b"".join(
        head(b"Host: h", b"Content-Length: 2", request_line=b"POST /%d HTTP/1.1" % n) + b"%02d" % n
        for n in range(16)
    )
    events = proto.receive(data)
    seen = []
    while events:
        request = events[0]
        assert isinstance(request, RequestReceived)
        seen.append((request.target, body_of(events)))
        assert events[-1] == BodyEnded(stream_id=1, trailers=None)
        assert respond(proto, b"x") == b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"
        events = proto.start_next_request()
    assert seen == [(f"/{n}", b"%02d" % n) for n in range(16)]
    assert proto.pending_bytes == 0


def test_error_response_is_complete_and_closes() -> None:
    proto = HTTP1Protocol()
    [violation] = proto.receive(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n")
    out = proto.error_response(violation.status, violation.reason)
    body = b"400 Bad Request\nwhitespace-before-colon\n"
    assert out == (
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    ) + body
    assert not proto.keep_alive


def test_error_response_to_head_request_has_no_body() -> None:
    proto = HTTP1Protocol()
    proto.receive(head(b"Host: h", request_line=b"HEAD / HTTP/1.1"))
    out = proto.error_response(500, "")
    assert out.endswith(b"Connection: close\r\n\r\n") and b"Content-Length: 26" in out


@pytest.mark.parametrize(
    ("limits", "data", "status"),
    [
        ({}, b"HEAD / HTTP/1.1\r\nHost : a\r\n\r\n", 400),  # refused in the head check
        ({}, b"HEAD /\x1b HTTP/1.1\r\nHost: a\r\n\r\n", 400),  # refused target
        ({"limit_request_field_size": 20}, b"HEAD / HTTP/1.1\r\nX-Long: " + b"v" * 30, 431),
        ({"limit_request_fields": 2}, b"HEAD / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", 431),
    ],
)
def test_head_refused_while_its_head_is_read_gets_no_body(limits, data, status) -> None:
    """RFC 9110 9.3.2: an answer to HEAD has no content, an error answer included."""
    proto = HTTP1Protocol(**limits)
    [violation] = proto.receive(data)
    assert violation.status == status
    out = proto.error_response(violation.status, violation.reason)
    assert out.startswith(b"HTTP/1.1 %d " % status) and out.endswith(b"\r\n\r\n")
    assert b"Content-Length: 0" not in out  # framing headers as for a GET
    # The same head as GET does get the explanatory body.
    get = HTTP1Protocol(**limits)
    [violation] = get.receive(b"GET" + data[4:])
    assert not get.error_response(violation.status, violation.reason).endswith(b"\r\n\r\n")


@pytest.mark.parametrize("refused", [
    b"GET / HTTP/3.0\r\nHost: a\r\n\r\n",       # 505
    b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",    # invalid request line
    b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n",       # invalid method
])
def test_a_refused_request_gets_its_body_even_with_a_head_pipelined_behind_it(refused) -> None:
    """The HEAD behind the refused request is the next exchange: it must not make
    the error answer drop the body its Content-Length announces."""
    proto = HTTP1Protocol()
    [violation] = proto.receive(refused + b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n")
    out = proto.error_response(violation.status, violation.reason)
    head_part, _, body = out.partition(b"\r\n\r\n")
    length = int(head_part.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    assert length > 0 and len(body) == length


# ---------------------------------------------------------------- strictness

TE_POST = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
SMALL = {"limit_request_line": 20, "limit_request_fields": 3, "limit_request_field_size": 12}

BAD_REQUESTS = [
    # (constructor kwargs, bytes, status, reason)
    ({"limit_request_line": 20}, b"GET /" + b"a" * 30 + b" HTTP/1.1\r\nHost: h\r\n\r\n", 414, "request-line-too-long"),
    ({"limit_request_line": 20}, b"GET /" + b"a" * 30, 414, "request-line-too-long"),
    ({"limit_request_fields": 3}, head(b"Host: h", b"A: 1", b"B: 2", b"C: 3"), 431, "too-many-fields"),
    ({"limit_request_field_size": 20}, head(b"Host: h", b"X-Long: " + b"v" * 30), 431, "field-too-large"),
    ({"limit_request_field_size": 20}, b"GET / HTTP/1.1\r\nX-Long: " + b"v" * 30, 431, "field-too-large"),
    (SMALL, head(b"Host: abcd", b"X-Aa: 1234", b"X-Bb: 1234", request_line=b"GET /123456 HTTP/1.1"),
     431, "header-section-too-large"),
    ({}, head(b"Host: h", b"Content-Length: 3", b"Transfer-Encoding: chunked"), 400, "content-length-and-transfer-encoding"),
    ({}, head(b"Host: h", b"Transfer-Encoding: chunked", b"Content-Length: 3"), 400, "content-length-and-transfer-encoding"),
    ({}, head(b"Host: h", b"Content-Length: 3", b"Content-Length: 3"), 400, "duplicate-content-length"),
    ({}, head(b"Host: h", b"Content-Length: 3, 3"), 400, "duplicate-content-length"),
    ({}, head(b"Host: h", b"Content-Length: +3"), 400, "invalid-content-length"),
    ({}, head(b"Host: h", b"Content-Length: -3"), 400, "invalid-content-length"),
    ({}, head(b"Host: h", b"Content-Length: 0x3"), 400, "invalid-content-length"),
    ({}, head(b"Host: h", b"Content-Length: 3 3"), 400, "invalid-content-length"),
    ({}, head(b"Host: h", b"Content-Length:"), 400, "invalid-content-length"),
    ({}, head(b"Host: h", b"Content-Length: " + b"9" * 19), 400, "invalid-content-length"),
    ({}, head(b"Host: h", b"Transfer-Encoding: gzip, chunked"), 501, "unsupported-transfer-coding"),
    ({}, head(b"Host: h", b"Transfer-Encoding: chunked, identity"), 501, "unsupported-transfer-coding"),
    ({}, head(b"Host: h", b"Transfer-Encoding: xchunked"), 501, "unsupported-transfer-coding"),
    ({}, head(b"Host: h", b"Transfer-Encoding: gzip"), 501, "unsupported-transfer-coding"),
    ({}, head(b"Host: h", b"Transfer-Encoding: chunked, chunked"), 400, "invalid-transfer-encoding"),
    ({}, head(b"Host: h", b"Transfer-Encoding: chunked,"), 400, "invalid-transfer-encoding"),
    ({}, head(b"Host: h", b"Transfer-Encoding: , chunked"), 400, "invalid-transfer-encoding"),
    ({}, head(b"Host: h", b"Transfer-Encoding: chunked;q=1"), 400, "invalid-transfer-encoding"),
    ({}, head(b"Host: h", b"Transfer-Encoding: chunked\xa0"), 400, "invalid-transfer-encoding"),
    ({}, head(b"Host: h", b"Transfer-Encoding: chunked\x0b"), 400, "invalid-field-value"),
    ({}, head(b"Host: h", b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"), 400, "multiple-transfer-encoding"),
    ({}, b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "transfer-encoding-in-http10"),
    ({}, TE_POST + b"zz\r\n", 400, "invalid-chunk-size"),
    ({}, TE_POST + b"-5\r\n", 400, "invalid-chunk-size"),
    ({}, TE_POST + b"+5\r\n", 400, "invalid-chunk-size"),
    ({}, TE_POST + b"0x5\r\n", 400, "invalid-chunk-size"),
    ({}, TE_POST + b"\r\n", 400, "invalid-chunk-size"),
    ({}, TE_POST + b" 5\r\n", 400, "invalid-chunk-size"),
    ({}, TE_POST + b"1" * 17 + b"\r\n", 400, "invalid-chunk-size"),
    ({}, TE_POST + b"5 \r\nhello\r\n", 400, "invalid-chunk-extension"),
    ({}, TE_POST + b"5;a b\r\n", 400, "invalid-chunk-extension"),
    ({}, TE_POST + b"5;a=\x01\r\n", 400, "invalid-chunk-extension"),
    ({}, TE_POST + b'5;a="open\r\n', 400, "invalid-chunk-extension"),
    ({}, TE_POST + b"5;\r\n", 400, "invalid-chunk-extension"),
    ({}, TE_POST + b"5\r\nhelloXX", 400, "missing-chunk-crlf"),
    ({}, TE_POST + b"5\r\nhello\nX", 400, "missing-chunk-crlf"),
    ({}, TE_POST + b"5\r\nhello\r\n0\r\nX-T: 1\r\n x\r\n\r\n", 400, "obs-fold"),
    ({}, TE_POST + b"5\r\nhello\r\n0\r\nX-T : 1\r\n\r\n", 400, "whitespace-before-colon"),
    ({}, TE_POST + b"5\n", 400, "bare-lf"),
    ({"limit_request_fields": 2}, TE_POST + b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", 431, "too-many-fields"),
    ({}, head(b"Host: h", b"X-A: 1", b" folded"), 400, "obs-fold"),
    ({}, head(b"Host: h", b"\tX-A: 1"), 400, "obs-fold"),
    ({}, head(b"Host : h"), 400, "whitespace-before-colon"),
    ({}, head(b"Host\t: h"), 400, "whitespace-before-colon"),
    ({}, head(b"Host: h", b"X(A): 1"), 400, "invalid-field-name"),
    ({}, head(b"Host: h", b": 1"), 400, "invalid-field-line"),
    ({}, head(b"Host: h", b"no colon"), 400, "invalid-field-line"),
    ({}, b"GET / HTTP/1.1\nHost: h\n\n", 400, "bare-lf"),
    ({}, b"GET / HTTP/1.1\r\nHost: h\nX: 1\r\n\r\n", 400, "bare-lf"),
    ({}, b"GET / HTTP/1.1\r\nHost: h\r\n\n", 400, "bare-lf"),
    ({}, head(b"Host: h", b"X-A: a\x00b"), 400, "invalid-field-value"),
    ({}, head(b"Host: h", b"X-A: a\rb"), 400, "invalid-field-value"),
    ({}, head(b"Host: h", b"X-A: a\x7fb"), 400, "invalid-field-value"),
    ({}, head(b"Host: h", request_line=b"G(T / HTTP/1.1"), 400, "invalid-method"),
    ({}, head(b"Host: h", request_line=b"GET  / HTTP/1.1"), 400, "invalid-request-line"),
    ({}, head(b"Host: h", request_line=b"GET /"), 400, "invalid-request-line"),
    ({}, head(b"Host: h", request_line=b"GET / http/1.1"), 400, "invalid-request-line"),
    ({}, head(b"Host: h", request_line=b"GET / HTTP/1.2"), 505, "unsupported-version"),
    ({}, head(b"Host: h", request_line=b"GET / HTTP/2.0"), 505, "unsupported-version"),
    ({}, head(b"Host: h", request_line=b"GET * HTTP/1.1"), 400, "invalid-target"),
    ({}, head(b"Host: h", request_line=b"GET index.html HTTP/1.1"), 400, "invalid-target"),
    ({}, head(b"Host: h", request_line=b"GET http:///x HTTP/1.1"), 400, "invalid-target"),
    ({}, head(b"Host: h", request_line=b"GET http://u@h/x HTTP/1.1"), 400, "invalid-target"),
    ({}, head(b"Host: h", request_line=b"GET /a#frag HTTP/1.1"), 400, "invalid-target"),
    ({}, head(b"Host: h", request_line=b"GET /caf\xc3\xa9 HTTP/1.1"), 400, "invalid-target"),
    ({}, head(b"Host: h:443", request_line=b"CONNECT h:443 HTTP/1.1"), 501, "connect-unsupported"),
    ({}, head(b"User-Agent: x"), 400, "missing-host"),
    ({}, head(b"Host: a", b"Host: b"), 400, "multiple-host"),
    ({}, head(b"Host: a b"), 400, "invalid-host"),
    ({}, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "h2-preface"),
]


@pytest.mark.parametrize(
    ("limits", "data", "status", "reason"),
    BAD_REQUESTS,
    ids=[case[3] + "-" + repr(case[1][-40:]) for case in BAD_REQUESTS],
)
@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
def test_bad_requests_are_refused(limits: dict, data: bytes, status: int, reason: str, bytewise: bool) -> None:
    proto = HTTP1Protocol(**limits)
    events = feed_bytewise(proto, data) if bytewise else proto.receive(data)
    violation = events[-1]
    assert violation == ProtocolViolation(reason=reason, status=status)
    assert not any(isinstance(e, ProtocolViolation) for e in events[:-1])
    assert not proto.keep_alive
    assert proto.receive(GET) == []  # nothing is parsed after a violation
    assert proto.receive(b"") == []
    assert proto.error_response(status, reason).startswith(b"HTTP/1.1 %d " % status)


@pytest.mark.parametrize(
    "data",
    [
        b"GET /" + b"a" * 6 + b" HTTP/1.1\r\nHost: h\r\n\r\n",  # request line exactly 20
        head(b"Host: h", b"A: 1", b"B: 2"),  # exactly 3 fields
        head(b"Host: h", b"X: 1234567"),  # a field line of 10 bytes: 12 with its CRLF
    ],
)
def test_limits_are_inclusive(data: bytes) -> None:
    events = HTTP1Protocol(**SMALL).receive(data)
    assert isinstance(events[0], RequestReceived)


BROWSER_GET = head(
    b"Host: www.example.com",
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    b"Accept: text/html,application/xhtml+xml;q=0.9,*/*;q=0.8",
    b"Accept-Language: en-US,en;q=0.5",
    b"Accept-Encoding: gzip, deflate, br",
    b"Connection: keep-alive",
    b"Cookie: session=abc; theme=caf\xe9",
    b"X-Empty:",
    request_line=b"GET /static/app.js?v=12 HTTP/1.1",
)


@pytest.mark.parametrize(
    "limits",
    [
        {},  # the whole head in one piece takes the fast path
        {"limit_request_field_size": 90},  # head longer than a field line: line-by-line scan
        {"limit_request_line": 40},
    ],
)
def test_fast_and_line_by_line_head_parsing_agree(limits: dict) -> None:
    whole = HTTP1Protocol(**limits).receive(BROWSER_GET)
    bytewise = feed_bytewise(HTTP1Protocol(**limits), BROWSER_GET)
    assert whole == bytewise
    request = whole[0]
    assert request.target == "/static/app.js?v=12" and request.authority == "www.example.com"
    assert ("cookie", "session=abc; theme=caf\xe9") in request.headers
    assert ("x-empty", "") in request.headers
    assert len(request.headers) == 8


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
def test_field_count_limit_at_default_size(bytewise: bool) -> None:
    fields = [b"Host: h"] + [b"X-%d: v" % n for n in range(99)]
    proto = HTTP1Protocol()
    events = feed_bytewise(proto, head(*fields)) if bytewise else proto.receive(head(*fields))
    assert isinstance(events[0], RequestReceived) and len(events[0].headers) == 100
    proto = HTTP1Protocol()
    data = head(*fields, b"X-Last: v")
    events = feed_bytewise(proto, data) if bytewise else proto.receive(data)
    assert events == [ProtocolViolation(reason="too-many-fields", status=431)]


def test_bare_cr_at_a_line_end_is_refused() -> None:
    data = b"GET / HTTP/1.1\r\nHost: h\r\r\n\r\n"
    assert HTTP1Protocol().receive(data) == [ProtocolViolation(reason="invalid-field-value", status=400)]
    assert feed_bytewise(HTTP1Protocol(), data)[-1].reason == "invalid-field-value"


@pytest.mark.parametrize(
    "lines",
    [
        (b"Host: h", b"Transfer-Encoding: chunked "),
        (b"Host: h", b"Transfer-Encoding:chunked"),
        (b"Host: h", b"Transfer-Encoding: CHUNKED"),
    ],
)
def test_plain_chunked_spellings_are_accepted(lines: tuple[bytes, ...]) -> None:
    events = HTTP1Protocol().receive(head(*lines, request_line=b"POST / HTTP/1.1") + b"0\r\n\r\n")
    assert [type(e) for e in events] == [RequestReceived, BodyEnded]


def test_options_asterisk_and_absolute_form_are_accepted() -> None:
    proto = HTTP1Protocol()
    [request, _] = proto.receive(head(b"Host: h", request_line=b"OPTIONS * HTTP/1.1"))
    assert request.target == "*"
    respond(proto)
    [request, _] = proto.start_next_request() + proto.receive(
        head(b"Host: ignored", request_line=b"GET http://example.com:8080?a=b HTTP/1.1")
    )
    assert request.target == "/?a=b" and request.authority == "example.com:8080"


def test_content_length_zero_has_no_body() -> None:
    events = HTTP1Protocol().receive(head(b"Host: h", b"Content-Length: 0", request_line=b"POST / HTTP/1.1"))
    assert events[0].end_stream and events[0].content_length == 0
    assert events[1] == BodyEnded(stream_id=1, trailers=None)


def test_h2_preface_keeps_bytes_for_the_driver() -> None:
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    proto = HTTP1Protocol()
    assert proto.receive(preface) == [ProtocolViolation(reason="h2-preface", status=400)]
    assert proto.take_trailing_data() == preface


# ---------------------------------------------------------------- EOF


def test_clean_eof_between_requests() -> None:
    proto = HTTP1Protocol()
    assert proto.receive(b"") == [ConnectionTerminated(reason="peer closed the connection")]
    assert not proto.keep_alive


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTT",
        b"GET / HTTP/1.1\r\nHost: h\r\n",
        head(b"Host: h", b"Content-Length: 10", request_line=b"POST / HTTP/1.1") + b"abc",
        TE_POST + b"5\r\nhel",
        TE_POST + b"0\r\nX-T: 1\r\n",
    ],
)
def test_eof_mid_request_is_incomplete(data: bytes) -> None:
    proto = HTTP1Protocol()
    proto.receive(data)
    events = proto.receive(b"")
    assert events == [ProtocolViolation(reason="incomplete", status=400)]


def test_eof_after_complete_request_is_reported_after_the_response() -> None:
    proto = HTTP1Protocol()
    proto.receive(GET + GET)
    assert proto.receive(b"") == []  # half-close: the response still goes out
    respond(proto)
    events = proto.start_next_request()
    assert [type(e) for e in events] == [RequestReceived, BodyEnded]
    respond(proto)
    assert proto.start_next_request() == [ConnectionTerminated(reason="peer closed the connection")]


def test_eof_after_complete_request_with_partial_next() -> None:
    proto = HTTP1Protocol()
    proto.receive(GET + b"GET /next")
    proto.receive(b"")
    respond(proto)
    assert proto.start_next_request() == [ProtocolViolation(reason="incomplete", status=400)]


# ---------------------------------------------------------------- h2c upgrade

SETTINGS = bytes.fromhex("000300000064" "000400010000")
SETTINGS_B64 = base64.urlsafe_b64encode(SETTINGS).rstrip(b"=")


def upgrade_request(*lines: bytes) -> RequestReceived:
    events = HTTP1Protocol().receive(head(b"Host: h", *lines))
    assert isinstance(events[0], RequestReceived)
    return events[0]


def test_h2c_upgrade_detected() -> None:
    request = upgrade_request(
        b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: h2c", b"HTTP2-Settings: " + SETTINGS_B64
    )
    assert h2c_upgrade_requested(request) == SETTINGS
    assert HTTP1Protocol.h2c_upgrade_requested(request) == SETTINGS
    empty = upgrade_request(b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: h2c", b"HTTP2-Settings:")
    assert h2c_upgrade_requested(empty) == b""


@pytest.mark.parametrize(
    "lines",
    [
        (b"Connection: Upgrade", b"Upgrade: h2c", b"HTTP2-Settings: " + SETTINGS_B64),
        (b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: websocket", b"HTTP2-Settings: " + SETTINGS_B64),
        (b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: h2c"),
        (b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: h2c", b"HTTP2-Settings: AAMAAABk+"),
        (b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: h2c", b"HTTP2-Settings: AAMAAA"),
        (
            b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: h2c",
            b"HTTP2-Settings: " + SETTINGS_B64, b"HTTP2-Settings: " + SETTINGS_B64,
        ),
    ],
)
def test_h2c_upgrade_rejected(lines: tuple[bytes, ...]) -> None:
    assert h2c_upgrade_requested(upgrade_request(*lines)) is None


def test_h2c_switch_hands_over_trailing_bytes() -> None:
    proto = HTTP1Protocol()
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    data = head(
        b"Host: h", b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: h2c",
        b"HTTP2-Settings: " + SETTINGS_B64,
    )
    [request, _] = proto.receive(data + preface[:10])
    assert proto.receive(preface[10:]) == []
    assert h2c_upgrade_requested(request) == SETTINGS
    out = proto.switching_protocols_response()
    assert out == switching_protocols_response() == (
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
    )
    assert proto.trailing_data == preface
    assert proto.take_trailing_data() == preface
    assert proto.trailing_data == b""
    assert proto.receive(b"more") == []


def test_declined_upgrade_is_a_normal_exchange() -> None:
    proto = HTTP1Protocol()
    proto.receive(head(b"Host: h", b"Connection: Upgrade", b"Upgrade: websocket"))
    respond(proto)
    assert proto.keep_alive
    assert proto.start_next_request() == []


# ---------------------------------------------------------------- properties

ALLOWED = (RequestReceived, BodyReceived, BodyEnded, ProtocolViolation, ConnectionTerminated)
FRAGMENTS = [
    b"GET", b"POST", b"HEAD", b" ", b"/", b"*", b"HTTP/1.1", b"HTTP/1.0", b"\r\n", b"\n", b"\r",
    b"Host: a", b"Transfer-Encoding: chunked", b"Content-Length: 3", b"Content-Length: 0",
    b"Connection: close", b"Expect: 100-continue", b"TE: trailers", b"0", b"3", b"a", b";x=y",
    b":", b"\t", b"\x00", b"PRI * HTTP/2.0", b"abc", b"X-T: 1",
]


def drive(proto: HTTP1Protocol, pieces: list[bytes]) -> list:
    """Feed pieces, answering each complete request so pipelining is exercised."""
    seen = []

    def settle(events: list) -> None:
        seen.extend(events)
        while proto.request_body_complete and proto.keep_alive:
            respond(proto)
            events = proto.start_next_request()
            seen.extend(events)
            if not events:
                break

    for piece in pieces:
        settle(proto.receive(piece))
    settle(proto.receive(b""))
    for event in seen:
        assert isinstance(event, ALLOWED)
    return seen


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True) if data[a:b]]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400), st.lists(st.integers(min_value=0), max_size=20))
def test_random_bytes_never_raise(data: bytes, cuts: list[int]) -> None:
    drive(HTTP1Protocol(limit_request_line=64, limit_request_fields=4, limit_request_field_size=32),
          split(data, cuts))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=40), st.lists(st.integers(min_value=0), max_size=20))
def test_http_like_fragments_never_raise(fragments: list[bytes], cuts: list[int]) -> None:
    data = b"".join(fragments)
    drive(HTTP1Protocol(limit_request_line=64, limit_request_fields=4, limit_request_field_size=32),
          split(data, cuts))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=0), max_size=30))
def test_splitting_does_not_change_the_result(cuts: list[int]) -> None:
    data = (
        GET
        + head(b"Host: h", b"Transfer-Encoding: chunked", request_line=b"POST /c HTTP/1.1")
        + b"4;e=1\r\nwiki\r\n5\r\npedia\r\n0\r\nX-T: 1\r\n\r\n"
        + head(b"Host: h", b"Content-Length: 4", request_line=b"PUT /l HTTP/1.1") + b"data"
    )

    def summary(events: list) -> list:
        merged = []
        for event in events:
            if isinstance(event, BodyReceived) and merged and isinstance(merged[-1], bytes):
                merged[-1] += event.data
            else:
                merged.append(event.data if isinstance(event, BodyReceived) else event)
        return merged

    whole = summary(drive(HTTP1Protocol(), [data]))
    assert summary(drive(HTTP1Protocol(), split(data, cuts))) == whole
    assert [e.target for e in whole if isinstance(e, RequestReceived)] == ["/index.html?q=1", "/c", "/l"]


@pytest.mark.parametrize("bytewise", [False, True])
def test_limit_request_field_size_counts_the_crlf_as_gunicorn(bytewise):
    """gunicorn refuses a field when len(line) + len(CRLF) exceeds the limit: with the
    limit at 40 a 38-byte line passes and a 39-byte one gets 431, whole or in pieces."""
    for line_length, accepted in ((38, True), (39, False)):
        field = b"X-Long: " + b"v" * (line_length - 8)
        assert len(field) == line_length
        data = head(b"Host: h", field)
        proto = HTTP1Protocol(limit_request_field_size=40)
        events = feed_bytewise(proto, data) if bytewise else proto.receive(data)
        if accepted:
            assert any(isinstance(event, RequestReceived) for event in events), events
        else:
            assert [getattr(event, "reason", None) for event in events] == ["field-too-large"]
