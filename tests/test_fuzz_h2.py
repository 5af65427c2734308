"""Property test: HTTP2Protocol against random and mutated frame sequences.

Valid frames are built with hyperframe and hpack, then some are mutated (type,
flags, length field, stream id, a payload byte, truncation), the bytes are fed
in random slices, and a small "app" answers, resets or abandons the requests it
is given. Whatever comes in:

* receive() never raises and never hits its internal-error fallback;
* what we send back parses as HTTP/2 frames, every error code is one RFC 9113
  defines, nothing follows a GOAWAY that ends the connection, and no frame goes
  to a stream the client never opened;
* no stream entry outlives its stream: every stream the protocol still tracks
  is open in h2, and nothing at all is kept once the connection has ended or
  the app has finished every stream;
* fed in time slices (receive() stopping at a deadline, then called again for
  what it kept), the same holds.
"""

from __future__ import annotations

from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from h2serve.protocol.events import ConnectionTerminated, RequestReceived
from h2serve.protocol.h2_frames import PREFACE
from h2serve.protocol.http2 import HTTP2Limits, HTTP2Protocol

GET = [(":method", "GET"), (":scheme", "https"), (":path", "/"), (":authority", "example.com")]
POST = [(":method", "POST"), (":scheme", "https"), (":path", "/up"), (":authority", "example.com"),
        ("content-length", "3")]
HEADER_BLOCKS = [
    GET, POST, GET + [("cookie", "a=1"), ("cookie", "b=2")], GET + [("x-h", "v" * 300)],
    [(":method", "GET")], GET + [("connection", "close")], [("x-trailer", "1")],
    GET + [(f"x-{i}", "1") for i in range(12)],
]
ERROR_CODES = set(range(0x0, 0xE))
STREAM_IDS = [1, 3, 5, 7, 9, 2, 0x7FFFFFFF]    # 0 comes from the mutations and raw frames


def _frames():
    stream_ids = st.sampled_from(STREAM_IDS)
    # "next": the client's next stream id, so that most sequences carry requests.
    header_ids = st.one_of(st.just("next"), st.just("next"), st.just("same"), stream_ids)
    headers = st.tuples(st.just("headers"), header_ids, st.integers(0, len(HEADER_BLOCKS) - 1),
                        st.booleans(), st.booleans())
    return st.one_of(
        headers, headers, headers,
        st.builds(lambda s, d, es: DataFrame(s, data=d, flags={"END_STREAM"} if es else set()),
                  stream_ids, st.binary(max_size=40), st.booleans()),
        st.builds(lambda s, d, p: DataFrame(s, data=d, pad_length=p, flags={"PADDED"}),
                  stream_ids, st.binary(max_size=8), st.integers(0, 20)),
        st.builds(lambda s, i: WindowUpdateFrame(s, window_increment=i),
                  stream_ids, st.integers(1, 2**31 - 1)),
        st.builds(lambda s, c: RstStreamFrame(s, error_code=c), stream_ids, st.integers(0, 15)),
        st.builds(lambda s, d, w: PriorityFrame(s, depends_on=d, stream_weight=w),
                  stream_ids, st.sampled_from(STREAM_IDS), st.integers(0, 255)),
        st.builds(lambda k, v: SettingsFrame(0, settings={k: v}),
                  st.sampled_from([0x1, 0x2, 0x3, 0x4, 0x5, 0x6, 0x8, 0x9]), st.integers(0, 2**24)),
        st.builds(lambda a: PingFrame(0, opaque_data=b"fuzzfuzz", flags={"ACK"} if a else set()),
                  st.booleans()),
        st.builds(lambda c, b: GoAwayFrame(0, last_stream_id=0, error_code=c, additional_data=b),
                  st.integers(0, 15), st.binary(max_size=4)),
        st.builds(lambda s, b, e: ContinuationFrame(s, data=b, flags={"END_HEADERS"} if e else set()),
                  stream_ids, st.binary(max_size=12), st.booleans()),
        st.tuples(st.just("raw"), st.integers(0, 0x20), st.integers(0, 255),
                  st.sampled_from([0, *STREAM_IDS]), st.binary(max_size=16)),
    )


def _mutation():
    return st.one_of(
        st.none(), st.none(), st.none(),
        st.tuples(st.just("type"), st.integers(0, 0x20)),
        st.tuples(st.just("flags"), st.integers(0, 255)),
        st.tuples(st.just("length"), st.integers(0, 64)),
        st.tuples(st.just("stream"), st.sampled_from([0, *STREAM_IDS])),
        st.tuples(st.just("byte"), st.integers(0, 200), st.integers(0, 255)),
        st.tuples(st.just("truncate"), st.integers(0, 30)),
    )


class Client:
    """What the fuzzed client remembers between frames."""

    def __init__(self) -> None:
        self.encoder = Encoder()
        self.last_stream_id = 0


def _encode(item, client: Client) -> bytes:
    encoder = client.encoder
    if isinstance(item, tuple) and item[0] == "headers":
        _, stream_id, block, end_stream, split = item
        if stream_id == "next":
            stream_id = client.last_stream_id = client.last_stream_id + 2 if client.last_stream_id else 1
        elif stream_id == "same":
            stream_id = client.last_stream_id or 1
        data = encoder.encode(HEADER_BLOCKS[block])
        flags = {"END_STREAM"} if end_stream else set()
        if split and len(data) > 4:
            first = HeadersFrame(stream_id, data=data[:4], flags=flags)
            rest = ContinuationFrame(stream_id, data=data[4:], flags={"END_HEADERS"})
            return first.serialize() + rest.serialize()
        return HeadersFrame(stream_id, data=data, flags=flags | {"END_HEADERS"}).serialize()
    if isinstance(item, tuple) and item[0] == "raw":
        _, frame_type, flags, stream_id, body = item
        return (len(body).to_bytes(3, "big") + bytes([frame_type, flags])
                + stream_id.to_bytes(4, "big") + body)
    return item.serialize()


def _mutate(wire: bytes, mutation) -> bytes:
    if mutation is None or len(wire) < 9:
        return wire
    data = bytearray(wire)
    kind = mutation[0]
    if kind == "type":
        data[3] = mutation[1]
    elif kind == "flags":
        data[4] = mutation[1]
    elif kind == "length":
        data[0:3] = mutation[1].to_bytes(3, "big")
    elif kind == "stream":
        data[5:9] = mutation[1].to_bytes(4, "big")
    elif kind == "byte":
        data[mutation[1] % len(data)] = mutation[2]
    elif kind == "truncate":
        del data[max(9, len(data) - mutation[1]):]
    return bytes(data)


def _parse(output: bytes) -> list[Frame]:
    frames = []
    view = memoryview(output)
    while view:
        assert len(view) >= 9, "a truncated frame header in our output"
        frame, length = Frame.parse_frame_header(view[:9])
        assert len(view) >= 9 + length, "a truncated frame body in our output"
        frame.parse_body(view[9:9 + length])
        frames.append(frame)
        view = view[9 + length:]
    return frames


class Ticking:
    """A clock that advances a millisecond each time it is read."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


class Checker:
    """Feeds the protocol, plays the app, and checks every answer."""

    def __init__(self, proto: HTTP2Protocol) -> None:
        self.proto = proto
        self.opened: set[int] = set()      # stream ids the client opened (requests we saw)
        self.fatal = False                 # a GOAWAY with an error code went out

    def check_output(self) -> None:
        for frame in _parse(self.proto.data_to_send()):
            assert not self.fatal, f"{type(frame).__name__} after a fatal GOAWAY"
            if isinstance(frame, GoAwayFrame):
                assert frame.error_code in ERROR_CODES
                self.fatal = self.fatal or frame.error_code != 0
            elif isinstance(frame, RstStreamFrame):
                # (even ids too: a self-dependent PRIORITY is answered on its stream)
                assert frame.error_code in ERROR_CODES and frame.stream_id != 0
            elif isinstance(frame, (DataFrame, HeadersFrame)):
                # Only answers: HEADERS/DATA on a stream the client opened.
                assert frame.stream_id % 2 == 1 and frame.stream_id <= self.proto.last_stream_id

    def check_tables(self) -> None:
        proto = self.proto
        if proto._terminated:
            assert not proto._streams and not proto._draining and not proto._pending_priority
            return
        for stream_id in list(proto._streams) + list(proto._draining):
            stream = proto._conn.streams.get(stream_id)
            assert stream is not None and not stream.closed, f"stream {stream_id} kept after it closed"

    def feed(self, chunk: bytes, step: int, until: float | None = None) -> None:
        for happened in self.proto.receive(chunk, until):
            if isinstance(happened, ConnectionTerminated):
                assert "internal error" not in happened.reason, happened.reason
            if isinstance(happened, RequestReceived):
                self.opened.add(happened.stream_id)
                self.play_app(happened.stream_id, step)
        self.check_output()
        self.check_tables()

    def play_app(self, stream_id: int, step: int) -> None:
        proto = self.proto
        choice = (stream_id + step) % 4
        if choice == 0:
            proto.send_response(stream_id, 200, [("content-type", "text/plain")])
            proto.send_body(stream_id, b"answer", end_stream=True)
            proto.finish_stream(stream_id)
        elif choice == 1:
            proto.reset_stream(stream_id, 0x8)
        elif choice == 2:
            proto.send_response(stream_id, 204, [], end_stream=True)
            proto.finish_stream(stream_id)
        # choice 3: the app keeps it for now (finished at the end)

    def finish_everything(self) -> None:
        for stream_id in list(self.proto._streams):
            self.proto.send_response(stream_id, 200, [])
            self.proto.send_body(stream_id, b"late", end_stream=True)
            self.proto.finish_stream(stream_id)
        self.check_output()
        self.check_tables()
        assert not self.proto._streams, "a stream the app finished is still tracked"


@settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(opening=st.lists(st.sampled_from([(0, True), (1, False), (3, True)]), max_size=4),
       items=st.lists(st.tuples(_frames(), _mutation()), max_size=25),
       splits=st.lists(st.integers(1, 64), min_size=1, max_size=8),
       tight=st.booleans(), sliced=st.booleans())
def test_mutated_frame_sequences_get_protocol_correct_answers(opening, items, splits, tight,
                                                              sliced):
    limits = HTTP2Limits(max_concurrent_streams=3)
    if tight:  # small budgets so the flood defences fire inside short sequences
        limits = HTTP2Limits(max_concurrent_streams=3, max_requests=4, reset_budget=3,
                             max_control_frames=6, dribble_frame_size=8,
                             limit_request_fields=8, max_header_list_size=2048)
    clock = Ticking()
    proto = HTTP2Protocol(limits, clock=clock)
    proto.initiate()
    checker = Checker(proto)
    checker.check_output()
    client = Client()
    wire = PREFACE + SettingsFrame(0).serialize()
    for block, end_stream in opening:  # a few sound requests first, so streams exist to abuse
        wire += _encode(("headers", "next", block, end_stream, False), client)
    for item, mutation in items:
        wire += _mutate(_encode(item, client), mutation)
    position = 0
    step = 0
    while position < len(wire):
        size = splits[step % len(splits)]
        # sliced: receive() may stop every few frames (its deadline passes) and
        # be called again for what it kept, as the driver does between turns.
        until = clock.now + 0.003 if sliced else None
        checker.feed(wire[position:position + size], step, until)
        while sliced and proto.has_backlog:
            checker.feed(b"", step, clock.now + 0.003)
        assert not proto.has_backlog
        position += size
        step += 1
    checker.finish_everything()
    event("opened a request" if checker.opened else "no request")
    event("terminated" if proto._terminated else "still open")
