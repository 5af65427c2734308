"""Fuzzing and the request-smuggling matrix for the HTTP/1.1 layer.

Three layers of evidence:

* Property-based tests (hypothesis) of the sans-I/O HTTP1Protocol, driven the
  way the connection driver drives it (answer each request, then
  start_next_request): random and mutated request bytes, fed in random
  pieces, never raise; the events follow the request grammar; every answer is
  a well-formed HTTP/1.1 response or a 4xx/5xx with ``Connection: close`` that
  ends the connection; how the bytes were split never changes the outcome; and
  well-framed pipelined requests whose bodies contain whole requests are never
  split into more requests than were sent.
* The smuggling shapes of the classic matrix that tests/test_e2e_http1.py does
  not already send, both through the protocol and against a real server.
* A bounded end-to-end fuzz: a few hundred mutated requests over real sockets,
  after which the same worker still serves a normal request.
"""

from __future__ import annotations

import random
import re
import selectors
import socket
import time
from collections import deque
from dataclasses import dataclass, field

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
from h2serve.protocol.http1 import HTTP1Protocol

ERROR_STATUSES = {400, 408, 413, 414, 431, 501, 505}
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n"
LIMITS = [
    {},   # the defaults: 4094 / 100 / 8190
    {"limit_request_line": 64, "limit_request_fields": 4, "limit_request_field_size": 48},
    {"limit_request_line": 20, "limit_request_fields": 2, "limit_request_field_size": 16},
    {"limit_request_head": 90},   # the whole-head bound cuts before the per-line ones
]


# --------------------------------------------------------------------------- a strict response reader


@dataclass
class ParsedResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    closes: bool = False


class ResponseError(AssertionError):
    """The server's bytes are not a well-formed HTTP/1.1 response stream."""


def parse_responses(data: bytes, methods: list[str], complete: bool = True) -> list[ParsedResponse]:
    """Split a response stream into responses, strictly (RFC 9112): a status line,
    CRLF-terminated fields, then a body framed by Content-Length, chunked, nothing
    (HEAD, 1xx, 204, 304) or the close. `methods` are the requests' methods in
    order (the error response to an unparsed request counts as "GET")."""
    responses: list[ParsedResponse] = []
    pos = 0
    methods = list(methods)
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            raise ResponseError(f"truncated head: {data[pos:pos + 200]!r}")
        lines = data[pos:end].decode("latin-1").split("\r\n")
        pos = end + 4
        match = re.fullmatch(r"HTTP/1\.1 ([1-9][0-9]{2}) ([\t -~]*)", lines[0])
        if match is None:
            raise ResponseError(f"bad status line {lines[0]!r}")
        status = int(match.group(1))
        headers = []
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or not TOKEN.fullmatch(name.lower()) or re.search(r"[\x00-\x08\x0a-\x1f\x7f]", value):
                raise ResponseError(f"bad field line {line!r}")
            headers.append((name.lower(), value.strip(" \t")))
        fields = dict(headers)
        response = ParsedResponse(status, headers, closes="close" in fields.get("connection", "").lower())
        if 100 <= status < 200:
            continue   # interim: the final response follows
        method = methods.pop(0) if methods else "GET"
        responses.append(response)
        if method == "HEAD" or status in (204, 304):
            continue
        if "transfer-encoding" in fields:
            if fields["transfer-encoding"].lower() != "chunked" or "content-length" in fields:
                raise ResponseError(f"bad framing {headers}")
            body = bytearray()
            while True:
                line_end = data.find(b"\r\n", pos)
                if line_end < 0:
                    raise ResponseError("truncated chunk size")
                size = int(data[pos:line_end].split(b";")[0], 16)
                pos = line_end + 2
                if size == 0:
                    trailer_end = data.find(b"\r\n\r\n", pos - 2)
                    if trailer_end < 0:
                        raise ResponseError("truncated trailers")
                    pos = trailer_end + 4
                    break
                body += data[pos:pos + size]
                if data[pos + size:pos + size + 2] != b"\r\n":
                    raise ResponseError("chunk without CRLF")
                pos += size + 2
            response.body = bytes(body)
        elif "content-length" in fields:
            length = int(fields["content-length"])
            if len(data) - pos < length:
                raise ResponseError(f"body shorter than Content-Length {length}")
            response.body = data[pos:pos + length]
            pos += length
        else:
            response.body, pos = data[pos:], len(data)   # delimited by the close
            response.closes = True
    if complete and responses and not responses[-1].closes and methods:
        raise ResponseError(f"no response for {methods}")
    return responses


# --------------------------------------------------------------------------- the driver, simulated


@dataclass
class Transcript:
    """What one connection did: the requests accepted (method, target, body),
    the violation that ended it (if any) and the bytes sent back."""

    requests: list[tuple[str, str, bytes]] = field(default_factory=list)
    violation: ProtocolViolation | None = None
    output: bytearray = field(default_factory=bytearray)
    methods: list[str] = field(default_factory=list)
    closed: bool = False


def respond(proto: HTTP1Protocol, request: RequestReceived, body: bytes, number: int) -> bytes:
    """Answer like an app would, varying the framing: Content-Length, chunked
    with trailers, a 204, or a HEAD response."""
    payload = b"got %d bytes for %s" % (len(body), request.target.encode("latin-1"))
    style = number % 3
    if style == 0:
        return (proto.response_head(200, "OK", [("Content-Length", str(len(payload)))])
                + proto.body(payload) + proto.end())
    if style == 1:
        return (proto.response_head(200, "OK", [("Content-Type", "text/plain")])
                + proto.body(payload[:5]) + proto.body(payload[5:]) + proto.end([("X-Sum", "1")]))
    return proto.response_head(204, "No Content", []) + proto.end()


def run_connection(pieces: list[bytes], limits: dict) -> Transcript:
    """Feed pieces then EOF, answering every complete request as the driver does,
    and check the event grammar on the way."""
    proto = HTTP1Protocol(**limits)
    transcript = Transcript()
    current: RequestReceived | None = None
    body = bytearray()
    queue: deque = deque()

    def settle(events: list) -> None:
        nonlocal current, body
        queue.extend(events)
        while queue:
            event = queue.popleft()
            assert not transcript.closed, f"event after the end: {event}"
            kind = type(event)
            if kind is RequestReceived:
                assert current is None, "a request began inside another"
                current, body = event, bytearray()
                check_request(event)
            elif kind is BodyReceived:
                assert current is not None and not current.end_stream or event.data == b"", event
                assert event.data, "empty BodyReceived"
                body += event.data
            elif kind is BodyEnded:
                assert current is not None, "BodyEnded without a request"
                if current.content_length is not None:
                    assert len(body) == current.content_length, (current, len(body))
                transcript.requests.append((current.method, current.target, bytes(body)))
                transcript.methods.append(current.method)
                transcript.output += respond(proto, current, bytes(body), len(transcript.requests))
                current = None
                if not proto.keep_alive:
                    transcript.closed = True
                    return
                queue.extend(proto.start_next_request())
            elif kind is ProtocolViolation:
                assert event.status in ERROR_STATUSES, event
                assert not proto.keep_alive
                transcript.violation = event
                transcript.methods.append(current.method if current is not None else "GET")
                transcript.output += proto.error_response(event.status, event.reason)
                transcript.closed = True
                return
            elif kind is ConnectionTerminated:
                assert current is None, "EOF mid-request must be a violation"
                transcript.closed = True
                return
            else:
                raise AssertionError(f"unexpected event {event!r}")

    for piece in pieces:
        if transcript.closed:
            break
        settle(proto.receive(piece))
    if not transcript.closed:
        settle(proto.receive(b""))
    if current is not None and not transcript.closed:
        raise AssertionError(f"request {current} neither completed nor failed at EOF")
    return transcript


def check_request(request: RequestReceived) -> None:
    """What a request the parser accepted may look like."""
    assert request.method and TOKEN.fullmatch(request.method.lower()), request.method
    assert request.http_version in ("1.0", "1.1")
    assert request.target and not re.search(r"[\x00-\x20\x7f]", request.target), request.target
    hosts = [value for name, value in request.headers if name == "host"]
    assert len(hosts) <= 1
    if request.http_version == "1.1":
        assert len(hosts) == 1
    for name, value in request.headers:
        assert TOKEN.fullmatch(name), name
        assert not re.search(r"[\x00-\x08\x0a-\x1f\x7f]", value), (name, value)
        assert value == value.strip(" \t")
    names = [name for name, _ in request.headers]
    if "transfer-encoding" in names:
        assert "content-length" not in names and names.count("transfer-encoding") == 1
        assert request.content_length is None and not request.end_stream
    if request.content_length is not None:
        assert names.count("content-length") == 1
        assert request.end_stream == (request.content_length == 0)


def check_transcript(transcript: Transcript) -> list[ParsedResponse]:
    """The bytes sent back parse as one response per request, plus one error
    response (with Connection: close) when a violation ended the connection."""
    methods = transcript.methods
    try:
        responses = parse_responses(bytes(transcript.output), methods)
    except ResponseError:
        if transcript.violation is None:
            raise
        # A request refused while its head was read whose line was a HEAD line
        # gets its error answer without a body (RFC 9110 9.3.2).
        methods = [*methods[:-1], "HEAD"]
        responses = parse_responses(bytes(transcript.output), methods)
    assert len(responses) == len(methods)
    if transcript.violation is not None:
        last = responses[-1]
        assert last.status == transcript.violation.status
        assert last.closes and 400 <= last.status < 600
    for response in responses[:-1]:
        assert not response.closes or transcript.violation is None
    return responses


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True) if data[a:b]]


def outcome(transcript: Transcript) -> tuple:
    violation = transcript.violation
    # Whether it was refused, not with which status: a head with two faults (an
    # over-long line that also ends in a bare LF) is named by the one seen first,
    # which may depend on how much of it had arrived. Both end the connection.
    return (transcript.requests, violation is not None)


# --------------------------------------------------------------------------- inputs


SEEDS = [
    b"GET /hello?x=1 HTTP/1.1\r\nHost: localhost\r\nUser-Agent: fuzz\r\nAccept: */*\r\n\r\n",
    b"HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    b"PUT /echo HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    b"GET http://localhost/abs HTTP/1.1\r\nHost: other\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"GET /old HTTP/1.0\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n" + SMUGGLED,
]

# Bytes that steer HTTP/1.1 parsers: mutations insert and substitute these.
INTERESTING = [
    b"\r\n", b"\n", b"\r", b" ", b"\t", b"\x00", b":", b";", b",", b"0", b"5", b"f", b"-", b"+",
    b"\xff", b"\x0b", b"Transfer-Encoding: chunked\r\n", b"Content-Length: 7\r\n",
    b"Content-Length: 0\r\n", b"Host: x\r\n", b"chunked", b"identity", b"HTTP/1.1", b"\r\n\r\n",
    b"0\r\n\r\n", SMUGGLED, b"Connection: close\r\n", b"Expect: 100-continue\r\n", b"a" * 70,
]

mutation = st.tuples(
    st.sampled_from(["flip", "insert", "delete", "replace", "duplicate", "truncate", "lf"]),
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=0, max_value=255),
    st.sampled_from(INTERESTING),
)


def mutate(data: bytes, ops: list[tuple]) -> bytes:
    out = bytearray(data)
    for op, where, byte, snippet in ops:
        at = where % (len(out) + 1)
        if op == "flip" and out:
            out[at % len(out)] ^= 1 << (byte % 8)
        elif op == "insert":
            out[at:at] = snippet
        elif op == "delete":
            del out[at:at + 1 + byte % 4]
        elif op == "replace" and out:
            out[at % len(out)] = byte
        elif op == "duplicate":
            line_start = out.rfind(b"\n", 0, at) + 1
            line_end = out.find(b"\n", at)
            if line_end >= 0:
                out[line_end + 1:line_end + 1] = out[line_start:line_end + 1]
        elif op == "truncate":
            del out[at:]
        elif op == "lf":
            crlf = out.find(b"\r\n", at)
            if crlf >= 0:
                del out[crlf]
    return bytes(out)


def mutated_requests(rng: random.Random, count: int) -> list[bytes]:
    """Deterministic mutants of the seeds, for the end-to-end fuzz."""
    result = []
    for _ in range(count):
        ops = [(rng.choice(["flip", "insert", "delete", "replace", "duplicate", "truncate", "lf"]),
                rng.randrange(10_000), rng.randrange(256), rng.choice(INTERESTING))
               for _ in range(rng.randrange(1, 4))]
        result.append(mutate(rng.choice(SEEDS), ops))
    return result


# --------------------------------------------------------------------------- properties


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=600), st.lists(st.integers(min_value=0), max_size=12),
       st.sampled_from(LIMITS))
def test_random_bytes_get_a_protocol_correct_answer(data: bytes, cuts: list[int], limits: dict):
    check_transcript(run_connection(split(data, cuts), limits))


@FUZZ
@given(st.sampled_from(SEEDS), st.lists(mutation, min_size=1, max_size=4),
       st.lists(st.integers(min_value=0), max_size=12), st.sampled_from(LIMITS))
def test_mutated_requests_get_a_protocol_correct_answer(seed: bytes, ops: list, cuts: list[int],
                                                        limits: dict):
    data = mutate(seed, ops)
    transcript = run_connection(split(data, cuts), limits)
    check_transcript(transcript)
    # However the bytes were cut, the parser decides the same.
    assert outcome(run_connection([data], limits)) == outcome(transcript)


@FUZZ
@given(st.sampled_from(SEEDS), st.lists(mutation, min_size=1, max_size=3))
def test_byte_at_a_time_decides_like_one_piece(seed: bytes, ops: list):
    data = mutate(seed, ops)
    one_piece = run_connection([data], {})
    bytewise = run_connection([data[i:i + 1] for i in range(len(data))], {})
    assert outcome(bytewise) == outcome(one_piece)


inner_request = st.sampled_from([
    SMUGGLED, b"POST /inner HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    b"0\r\n\r\n" + SMUGGLED, b"\r\n\r\n", b"Transfer-Encoding: chunked\r\n\r\n",
])


@st.composite
def framed_request(draw) -> tuple[bytes, tuple[str, str, bytes]]:
    """A valid request whose body holds request-looking bytes, framed by
    Content-Length or by chunks of random sizes with random extensions."""
    method = draw(st.sampled_from(["POST", "PUT", "GET", "PATCH"]))
    target = "/" + draw(st.text("abcxyz019", min_size=1, max_size=8))
    body = b"".join(draw(st.lists(st.one_of(inner_request, st.binary(max_size=20)), max_size=4)))
    head = f"{method} {target} HTTP/1.1\r\nHost: localhost\r\n"
    if draw(st.booleans()):
        wire = (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    else:
        chunks = bytearray()
        rest = body
        while rest:
            size = draw(st.integers(min_value=1, max_value=max(1, len(rest))))
            ext = draw(st.sampled_from([b"", b";a=b", b';q="x y"', b" ; k"]))
            hex_size = (b"%x" if draw(st.booleans()) else b"%X") % size
            chunks += hex_size + ext + b"\r\n" + rest[:size] + b"\r\n"
            rest = rest[size:]
        trailer = draw(st.sampled_from([b"", b"X-T: 1\r\n"]))
        wire = (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + bytes(chunks) + b"0\r\n" + trailer + b"\r\n"
    return wire, (method, target, body)


@FUZZ
@given(st.lists(framed_request(), min_size=1, max_size=4), st.lists(st.integers(min_value=0), max_size=12))
def test_request_bodies_are_never_parsed_as_requests(requests: list, cuts: list[int]):
    """Pipelined, well-framed requests whose bodies contain whole requests (and
    chunk-like and header-like bytes) come out exactly as sent: the same number
    of requests, the same bodies, however the bytes are cut."""
    data = b"".join(wire for wire, _ in requests)
    transcript = run_connection(split(data, cuts), {})
    assert transcript.violation is None, transcript.violation
    assert transcript.requests == [expected for _, expected in requests]
    check_transcript(transcript)


# --------------------------------------------------------------------------- the smuggling matrix


def post(headers: str, body: bytes = b"", method: str = "POST", version: str = "HTTP/1.1") -> bytes:
    return f"{method} /echo {version}\r\nHost: localhost\r\n{headers}\r\n".encode("latin-1") + body


# Shapes tests/test_e2e_http1.py does not send. Each is followed by SMUGGLED on the
# wire. ("reject", status): one error response and the close, SMUGGLED never
# parsed. ("ok", bodies): exactly these requests, each with its body: the framing
# is unambiguous (valid per RFC 9112), so SMUGGLED is a genuine next request.
SMUGGLING_MATRIX: dict[str, tuple[bytes, tuple]] = {
    # TE.TE obfuscations
    "te-xchunked": (post("Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"), ("reject", 501)),
    "te-space-before-colon": (post("Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"), ("reject", 400)),
    "te-tab-after-colon": (post("Transfer-Encoding:\tchunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
                           ("ok", [b"hello", b""])),
    "te-trailing-space": (post("Transfer-Encoding: chunked \r\n", b"5\r\nhello\r\n0\r\n\r\n"),
                          ("ok", [b"hello", b""])),
    "te-upper-case": (post("Transfer-Encoding: CHUNKED\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
                      ("ok", [b"hello", b""])),
    "te-duplicated-differing": (post("Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
                                     b"0\r\n\r\n"), ("reject", 400)),
    "te-duplicated-differing-reversed": (post("Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n",
                                              b"0\r\n\r\n"), ("reject", 400)),
    "te-chunked-then-identity": (post("Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\n"),
                                 ("reject", 501)),
    "te-gzip-chunked": (post("Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"), ("reject", 501)),
    "te-identity": (post("Transfer-Encoding: identity\r\n"), ("reject", 501)),
    "te-quoted": (post('Transfer-Encoding: "chunked"\r\n', b"0\r\n\r\n"), ("reject", 400)),
    "te-vertical-tab": (post("Transfer-Encoding:\x0bchunked\r\n", b"0\r\n\r\n"), ("reject", 400)),
    "te-nul-after-value": (post("Transfer-Encoding: chunked\x00\r\n", b"0\r\n\r\n"), ("reject", 400)),
    "te-empty-value": (post("Transfer-Encoding: \r\n"), ("reject", 400)),
    "te-leading-comma": (post("Transfer-Encoding: ,chunked\r\n", b"0\r\n\r\n"), ("reject", 400)),
    "te-line-folded-in": (post("X-A: b\r\n Transfer-Encoding: chunked\r\n", b"0\r\n\r\n"), ("reject", 400)),
    "te-line-leading-space": (post(" Transfer-Encoding: chunked\r\n", b"0\r\n\r\n"), ("reject", 400)),
    "te-behind-bare-cr": (post("X-A: b\rTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"), ("reject", 400)),
    "te-in-http10": (post("Transfer-Encoding: chunked\r\n", b"0\r\n\r\n", version="HTTP/1.0"),
                     ("reject", 400)),
    # Content-Length shapes
    "cl-leading-zeros": (post("Content-Length: 005\r\n", b"hello"), ("ok", [b"hello", b""])),
    "cl-plus-sign": (post("Content-Length: +5\r\n", b"hello"), ("reject", 400)),
    "cl-space-inside": (post("Content-Length: 5 5\r\n", b"hello"), ("reject", 400)),
    "cl-trailing-space": (post("Content-Length: 5 \r\n", b"hello"), ("ok", [b"hello", b""])),
    "cl-empty": (post("Content-Length: \r\n", b"hello"), ("reject", 400)),
    "cl-overflow-23-digits": (post("Content-Length: 99999999999999999999999\r\n", b"hello"),
                              ("reject", 400)),
    "cl-non-ascii-digit": (b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: \xd9\xa5\r\n\r\nhello",
                           ("reject", 400)),
    "cl-superscript-two": (b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: \xb2\r\n\r\nhello",
                           ("reject", 400)),
    # chunk framing
    "chunk-extension": (post("Transfer-Encoding: chunked\r\n", b"5;foo=bar\r\nhello\r\n0\r\n\r\n"),
                        ("ok", [b"hello", b""])),
    "chunk-extension-quoted": (post("Transfer-Encoding: chunked\r\n", b'5;foo="b a;r"\r\nhello\r\n0\r\n\r\n'),
                               ("ok", [b"hello", b""])),
    "chunk-extension-bare-semicolon": (post("Transfer-Encoding: chunked\r\n", b"5;\r\nhello\r\n0\r\n\r\n"),
                                       ("reject", 400)),
    "chunk-extension-with-lf": (post("Transfer-Encoding: chunked\r\n", b"5;a=\nb\r\nhello\r\n0\r\n\r\n"),
                                ("reject", 400)),
    "chunk-extension-5000-bytes": (post("Transfer-Encoding: chunked\r\n",
                                        b"5;" + b"a" * 5000 + b"\r\nhello\r\n0\r\n\r\n"), ("reject", 400)),
    "chunk-size-leading-zeros": (post("Transfer-Encoding: chunked\r\n", b"0005\r\nhello\r\n0\r\n\r\n"),
                                 ("ok", [b"hello", b""])),
    "chunk-size-17-digits": (post("Transfer-Encoding: chunked\r\n",
                                  b"00000000000000005\r\nhello\r\n0\r\n\r\n"), ("reject", 400)),
    "chunk-size-space-before": (post("Transfer-Encoding: chunked\r\n", b" 5\r\nhello\r\n0\r\n\r\n"),
                                ("reject", 400)),
    "chunk-size-space-after": (post("Transfer-Encoding: chunked\r\n", b"5 \r\nhello\r\n0\r\n\r\n"),
                               ("reject", 400)),
    "last-chunk-without-final-crlf": (post("Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n"),
                                      ("reject", 400)),
    # bodies on requests that usually have none, and keep-alive after CL: 0
    "get-with-body-that-is-a-request": (post(f"Content-Length: {len(SMUGGLED)}\r\n", SMUGGLED,
                                             method="GET"), ("ok", [SMUGGLED, b""])),
    "cl-zero-then-garbage": (post("Content-Length: 0\r\n", b"XYZ nonsense\r\n\r\n"), ("ok+reject", [b""], 400)),
}


def _matrix_outcome(expected: tuple, transcript: Transcript) -> None:
    kind = expected[0]
    bodies = [body for _, _, body in transcript.requests]
    targets = [target for _, target, _ in transcript.requests]
    if kind == "reject":
        assert transcript.requests == [], transcript.requests
        assert transcript.violation is not None and transcript.violation.status == expected[1]
    elif kind == "ok":
        assert transcript.violation is None, transcript.violation
        assert bodies == expected[1]
        assert targets == ["/echo", "/smuggled"][:len(bodies)]
    else:   # the first request is served, then its "body" fails as the next request
        assert bodies == expected[1]
        assert transcript.violation is not None and transcript.violation.status == expected[2]


@pytest.mark.parametrize("case", list(SMUGGLING_MATRIX))
def test_smuggling_matrix_in_the_protocol(case):
    data, expected = SMUGGLING_MATRIX[case]
    for pieces in ([data + SMUGGLED], [bytes([b]) for b in data + SMUGGLED]):
        transcript = run_connection(pieces, {})
        check_transcript(transcript)
        _matrix_outcome(expected, transcript)


# --------------------------------------------------------------------------- over real sockets


def exchange_all(server, payloads: list[bytes], timeout: float = 3.0, batch: int = 25) -> list[tuple[bytes, bool]]:
    """Send each payload on its own connection, half-close, and collect what the
    server answers until it closes. Returns (bytes, closed) per payload."""
    results: list[tuple[bytes, bool]] = [(b"", False)] * len(payloads)
    for start in range(0, len(payloads), batch):
        selector = selectors.DefaultSelector()
        received: dict[int, bytearray] = {}
        for index in range(start, min(start + batch, len(payloads))):
            sock = socket.create_connection((server.host, server.port), timeout=timeout)
            try:
                sock.sendall(payloads[index])
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, index)
            received[index] = bytearray()
        deadline = time.monotonic() + timeout
        while selector.get_map() and time.monotonic() < deadline:
            for key, _ in selector.select(0.1):
                try:
                    chunk = key.fileobj.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                if chunk:
                    received[key.data] += chunk
                    continue
                results[key.data] = (bytes(received[key.data]), True)
                selector.unregister(key.fileobj)
                key.fileobj.close()
        for key in list(selector.get_map().values()):
            results[key.data] = (bytes(received[key.data]), False)
            key.fileobj.close()
        selector.close()
    return results


def test_smuggling_matrix_against_the_server(h2serve_server):
    """The same shapes against a real server, each followed by a smuggled GET:
    rejected shapes get exactly one error response and a close; valid ones get
    exactly one response per request they really contain."""
    server = h2serve_server("tests.apps:router", plaintext=True, threads=4)
    names = list(SMUGGLING_MATRIX)
    results = exchange_all(server, [SMUGGLING_MATRIX[name][0] + SMUGGLED for name in names])
    for name, (data, closed) in zip(names, results, strict=True):
        expected = SMUGGLING_MATRIX[name][1]
        assert closed, f"{name}: the server did not close"
        kind = expected[0]
        if kind == "reject":
            responses = parse_responses(data, ["POST"])
            assert [r.status for r in responses] == [expected[1]], (name, data[:300])
            assert responses[0].closes
        elif kind == "ok":
            bodies = expected[1]
            responses = parse_responses(data, ["POST", "GET"][:len(bodies)])
            statuses = [r.status for r in responses]
            assert statuses == [200, 404][:len(bodies)], (name, statuses, data[:300])
            assert responses[0].body == bodies[0], name    # /echo answers with the body
        else:
            responses = parse_responses(data, ["POST"])
            assert [r.status for r in responses] == [200, expected[2]], (name, data[:300])
        assert b"no such route" not in data or kind == "ok", name


def test_end_to_end_fuzz_keeps_the_worker_serving(h2serve_server):
    """400 mutated requests, 25 connections at a time: every answer is a
    well-formed response stream (or nothing, for bytes that never made a
    request), every connection is closed by the server (after our half-close),
    and afterwards the same worker serves a normal request."""
    server = h2serve_server("tests.apps:router", "--client-data-timeout", "2", plaintext=True,
                            threads=4)
    (worker,) = server.worker_pids()
    rng = random.Random(20190813)
    payloads = mutated_requests(rng, 400)
    started = time.monotonic()
    results = exchange_all(server, payloads)
    elapsed = time.monotonic() - started
    statuses: dict[int, int] = {}
    for payload, (data, closed) in zip(payloads, results, strict=True):
        assert closed, f"not closed after {payload!r}"
        methods = re.findall(rb"(?:^|\r\n)([A-Z]+) \S+ HTTP/1\.[01]\r\n", payload)
        methods = [m.decode() for m in methods] or ["GET"]
        try:
            responses = parse_responses(data, methods, complete=False)
        except (ResponseError, ValueError):
            # A HEAD the parser rejected was never known to be a HEAD: its
            # error response carries a body.
            try:
                responses = parse_responses(data, ["GET"] * len(methods), complete=False)
            except (ResponseError, ValueError) as exc:
                raise AssertionError(f"bad answer to {payload!r}: {data[:400]!r}") from exc
        for response in responses:
            statuses[response.status] = statuses.get(response.status, 0) + 1
            assert response.status < 500 or response.status in (501, 505), (payload, data[:300])
    print(f"\n[e2e fuzz] {len(payloads)} mutated requests in {elapsed:.2f} s; statuses {sorted(statuses.items())}")
    assert server.worker_pids() == [worker] and server.proc.poll() is None
    assert "Traceback" not in server.log, server.log[-2000:]
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"Hello, world!")
