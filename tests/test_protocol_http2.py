"""Tests for the sans-I/O HTTP/2 protocol: an h2 client (or raw frames for
input no client would produce) talks to HTTP2Protocol entirely in memory."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from hpack import Decoder, Encoder, HeaderTuple, NeverIndexedHeaderTuple
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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from h2serve.protocol.events import (
    BodyEnded,
    BodyReceived,
    ConnectionTerminated,
    PriorityUpdated,
    ProtocolViolation,
    RequestReceived,
    StreamReset,
    WindowUpdated,
)
from h2serve.protocol.h2_frames import PREFACE
from h2serve.protocol.h2_internals import CLOSED_STREAMS_REMEMBERED
from h2serve.protocol.h2_responses import response_head
from h2serve.protocol.http2 import HTTP2Limits, HTTP2Protocol
from h2serve.protocol.priority import parse_priority_field

NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
FLOW_CONTROL_ERROR = 0x3
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
COMPRESSION_ERROR = 0x9

GET = [(":method", "GET"), (":scheme", "https"), (":path", "/"), (":authority", "example.com")]


def parse_frames(data: bytes) -> list[Frame]:
    """Split server output into hyperframe frames."""
    frames = []
    view = memoryview(data)
    while view:
        frame, length = Frame.parse_frame_header(view[:9])
        frame.parse_body(view[9 : 9 + length])
        frames.append(frame)
        view = view[9 + length :]
    return frames


def of_type(events, cls):
    return [e for e in events if isinstance(e, cls)]


class Pair:
    """A client H2Connection wired to an HTTP2Protocol."""

    def __init__(self, limits: HTTP2Limits | None = None, client_settings: dict | None = None,
                 handshake: bool = True, validate: bool = True) -> None:
        self.server = HTTP2Protocol(limits or HTTP2Limits())
        self.server.initiate()
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=validate,
            normalize_outbound_headers=validate,
            validate_inbound_headers=False,
        )
        self.client = h2.connection.H2Connection(config)
        if client_settings:
            self.client.local_settings = h2.settings.Settings(client=True, initial_values=client_settings)
        self.client.initiate_connection()
        self.server_events: list = []
        if handshake:
            self.pump()

    def to_server(self) -> list:
        events = self.server.receive(self.client.data_to_send())
        self.server_events.extend(events)
        return events

    def to_client(self) -> list:
        return self.client.receive_data(self.server.data_to_send())

    def pump(self) -> tuple[list, list]:
        server_events = self.to_server()
        client_events = self.to_client()
        server_events += self.to_server()
        return server_events, client_events


class Raw:
    """Raw frames into an HTTP2Protocol, with our own HPACK encoder."""

    def __init__(self, limits: HTTP2Limits | None = None) -> None:
        self.server = HTTP2Protocol(limits or HTTP2Limits())
        self.server.initiate()
        self.encoder = Encoder()
        self.preface_events = self.server.receive(PREFACE + SettingsFrame(0).serialize())
        self.server.data_to_send()

    def headers(self, stream_id: int, headers, end_stream: bool = True, **kwargs) -> list:
        flags = {"END_HEADERS"} | ({"END_STREAM"} if end_stream else set())
        frame = HeadersFrame(stream_id, data=self.encoder.encode(headers), flags=flags, **kwargs)
        return self.send(frame)

    def send(self, *frames: Frame) -> list:
        return self.server.receive(b"".join(f.serialize() for f in frames))

    def output(self) -> list[Frame]:
        return parse_frames(self.server.data_to_send())


class RawFrame:
    """Hand-made frame bytes (hyperframe will not build invalid frames)."""

    def __init__(self, frame_type: int, stream_id: int, body: bytes, flags: int = 0) -> None:
        self.wire = (len(body).to_bytes(3, "big") + bytes([frame_type, flags])
                     + stream_id.to_bytes(4, "big") + body)

    def serialize(self) -> bytes:
        return self.wire


def rst_codes(frames) -> dict[int, int]:
    return {f.stream_id: f.error_code for f in frames if isinstance(f, RstStreamFrame)}


def goaway_codes(frames) -> list[int]:
    return [f.error_code for f in frames if isinstance(f, GoAwayFrame)]


# --------------------------------------------------------------------------- basics


def test_server_preface_advertises_limits():
    proto = HTTP2Protocol(HTTP2Limits(max_concurrent_streams=7, initial_window_size=30000,
                                      max_frame_size=32768, max_header_list_size=9000))
    proto.initiate()
    frames = parse_frames(proto.data_to_send())
    assert isinstance(frames[0], SettingsFrame)
    s = frames[0].settings
    assert s[SettingsFrame.MAX_CONCURRENT_STREAMS] == 7
    assert s[SettingsFrame.INITIAL_WINDOW_SIZE] == 30000
    assert s[SettingsFrame.MAX_FRAME_SIZE] == 32768
    assert s[SettingsFrame.MAX_HEADER_LIST_SIZE] == 9000
    assert s[SettingsFrame.ENABLE_PUSH] == 0
    assert SettingsFrame.ENABLE_CONNECT_PROTOCOL not in s
    # connection window enlarged beyond the default
    assert any(isinstance(f, WindowUpdateFrame) and f.stream_id == 0 for f in frames)


def test_get_request_event():
    pair = Pair()
    pair.client.send_headers(1, GET + [("user-agent", "t"), ("cookie", "a=1"), ("cookie", "b=2")],
                             end_stream=True)
    events = pair.to_server()
    (req,) = of_type(events, RequestReceived)
    assert req.stream_id == 1 and req.method == "GET" and req.target == "/"
    assert req.authority == "example.com" and req.scheme == "https"
    assert req.http_version == "2" and req.end_stream is True
    assert ("user-agent", "t") in req.headers
    assert ("cookie", "a=1; b=2") in req.headers
    assert all(not name.startswith(":") for name, _ in req.headers)
    assert req.priority == {"urgency": 3, "incremental": False, "weight": None, "depends_on": None}
    assert req.content_length is None
    assert pair.server.last_stream_id == 1 and pair.server.open_streams == 1
    assert pair.server.is_stream_open(1)

    pair.server.send_response(1, 200, [("Content-Type", "text/plain")])
    assert pair.server.send_body(1, b"hi", end_stream=True) == 2
    client_events = pair.to_client()
    (resp,) = of_type(client_events, h2.events.ResponseReceived)
    assert (b":status", b"200") in resp.headers
    (data,) = of_type(client_events, h2.events.DataReceived)
    assert data.data == b"hi"
    assert of_type(client_events, h2.events.StreamEnded)
    assert pair.server.open_streams == 0
    assert not pair.server.is_stream_open(1)


def test_host_header_used_when_no_authority():
    pair = Pair()
    pair.client.send_headers(1, GET[:3] + [("host", "h.example")], end_stream=True)
    (req,) = of_type(pair.to_server(), RequestReceived)
    assert req.authority == "h.example"


def test_post_body_and_acknowledge_window_update():
    pair = Pair()
    pair.client.send_headers(1, [(":method", "POST"), (":scheme", "https"), (":path", "/up"),
                                 (":authority", "a"), ("content-length", "40010")])
    pair.client.send_data(1, b"x" * 16000)
    pair.client.send_data(1, b"y" * 16000)
    pair.client.send_data(1, b"z" * 8000)
    events = pair.to_server()
    (req,) = of_type(events, RequestReceived)
    assert req.content_length == 40010 and not req.end_stream
    bodies = of_type(events, BodyReceived)
    assert sum(len(b.data) for b in bodies) == 40000
    assert all(b.flow_controlled_length == len(b.data) for b in bodies)
    # No automatic credit.
    assert not any(isinstance(f, WindowUpdateFrame) for f in parse_frames(pair.server.data_to_send()))

    pair.server.acknowledge(1, 1000)  # below half a window: batched
    assert not any(isinstance(f, WindowUpdateFrame) for f in parse_frames(pair.server.data_to_send()))
    pair.server.acknowledge(1, 39000)
    updates = [f for f in parse_frames(pair.server.data_to_send()) if isinstance(f, WindowUpdateFrame)]
    assert [(f.stream_id, f.window_increment) for f in updates] == [(1, 40000)]

    pair.client.send_data(1, b"e" * 10, end_stream=True)
    events = pair.to_server()
    assert [b.data for b in of_type(events, BodyReceived)] == [b"e" * 10]
    assert of_type(events, BodyEnded) == [BodyEnded(1, None)]
    pair.server.acknowledge(1, 10)
    updates = [f for f in parse_frames(pair.server.data_to_send()) if isinstance(f, WindowUpdateFrame)]
    # stream end: all connection credit returned at once, no useless stream update
    assert [(f.stream_id, f.window_increment) for f in updates] == [(0, 40010)]


def test_padded_data_credit():
    raw = Raw()
    raw.headers(1, GET[:1] + [(":scheme", "https"), (":path", "/"), (":authority", "a")], end_stream=False)
    frame = DataFrame(1, data=b"abc", flags={"PADDED"})
    frame.pad_length = 10
    events = raw.send(frame)
    (body,) = of_type(events, BodyReceived)
    assert body.data == b"abc" and body.flow_controlled_length == 14


def test_request_trailers_and_response_trailers():
    pair = Pair()
    pair.client.send_headers(1, [(":method", "POST"), (":scheme", "https"), (":path", "/"),
                                 (":authority", "a"), ("te", "trailers")])
    pair.client.send_data(1, b"abc")
    pair.client.send_headers(1, [("x-checksum", "123")], end_stream=True)
    events = pair.to_server()
    assert of_type(events, BodyEnded) == [BodyEnded(1, [("x-checksum", "123")])]

    pair.server.send_response(1, 200, [])
    pair.server.send_body(1, b"data")
    pair.server.end_stream(1, trailers=[("X-Trailer", "done")])
    client_events = pair.to_client()
    (trailers,) = of_type(client_events, h2.events.TrailersReceived)
    assert trailers.headers == [(b"x-trailer", b"done")]
    assert of_type(client_events, h2.events.StreamEnded)
    assert pair.server.open_streams == 0


def test_informational_then_final():
    pair = Pair()
    pair.client.send_headers(1, GET, end_stream=True)
    pair.to_server()
    pair.server.send_informational(1, 103, [("Link", "</s.css>; rel=preload")])
    pair.server.send_response(1, 200, [], end_stream=True)
    client_events = pair.to_client()
    (info,) = of_type(client_events, h2.events.InformationalResponseReceived)
    assert (b":status", b"103") in info.headers and (b"link", b"</s.css>; rel=preload") in info.headers
    (resp,) = of_type(client_events, h2.events.ResponseReceived)
    assert (b":status", b"200") in resp.headers
    with pytest.raises(ValueError):
        pair.server.send_informational(1, 101, [])


def test_connection_specific_response_headers_dropped():
    pair = Pair()
    pair.client.send_headers(1, GET, end_stream=True)
    pair.to_server()
    pair.server.send_response(1, 200, [("Connection", "close"), ("Keep-Alive", "5"),
                                       ("Proxy-Connection", "x"), ("Transfer-Encoding", "chunked"),
                                       ("Upgrade", "h2c"), ("X-Custom", "Yes")], end_stream=True)
    (resp,) = of_type(pair.to_client(), h2.events.ResponseReceived)
    assert resp.headers == [(b":status", b"200"), (b"x-custom", b"Yes")]


def test_credential_response_fields_stay_out_of_the_hpack_table():
    raw = Raw()
    decoder = Decoder()
    for stream_id in (1, 3):  # the second time, from the checked-field cache
        raw.headers(stream_id, GET)
        raw.server.send_response(stream_id, 200, [("Authorization", "Basic abc"), ("x-a", "1")],
                                 end_stream=True)
        (headers,) = [f for f in raw.output() if isinstance(f, HeadersFrame)]
        fields = decoder.decode(headers.data, raw=True)
        assert [type(f) for f in fields] == [HeaderTuple, NeverIndexedHeaderTuple, HeaderTuple]
        assert fields[1] == (b"authorization", b"Basic abc")


def test_invalid_response_header_raises_before_touching_connection():
    pair = Pair()
    pair.client.send_headers(1, GET, end_stream=True)
    pair.to_server()
    with pytest.raises(ValueError):
        pair.server.send_response(1, 200, [("x-bad", "a\r\nb")])
    pair.server.send_response(1, 200, [], end_stream=True)
    assert of_type(pair.to_client(), h2.events.ResponseReceived)


def test_whole_response_frames_match_what_h2_would_send():
    """The direct framing and h2's own path give the same frames, and the HPACK
    tables stay in step over repeated and changing responses."""
    direct, through_h2 = Raw(), Raw()
    responses = [
        (200, [("Content-Type", "text/plain"), ("Content-Length", "5")], b"hello"),
        (200, [("Content-Type", "text/plain"), ("Content-Length", "5")], b"again"),
        (404, [("Content-Type", "text/html"), ("Set-Cookie", "a=b")], b"<p>missing</p>"),
        (204, [("X-Empty", "yes")], b""),
        (200, [("Authorization", "secret"), ("Content-Type", "text/plain")], b"x" * 16384),
    ]
    for index, (status, headers, body) in enumerate(responses):
        stream_id = 1 + 2 * index
        head = response_head(status, headers)
        direct.headers(stream_id, GET)
        assert direct.server.send_whole_response(stream_id, head, body) == len(body)
        through_h2.headers(stream_id, GET)
        through_h2.server.send_response_head(stream_id, head, end_stream=not body)
        if body:
            through_h2.server.send_body(stream_id, body, end_stream=True)
        assert direct.server.data_to_send() == through_h2.server.data_to_send()
        assert not direct.server.is_stream_open(stream_id)
        window = direct.server._conn.outbound_flow_control_window
        assert window == through_h2.server._conn.outbound_flow_control_window


def test_body_frames_match_what_h2_would_send():
    direct, through_h2 = Raw(), Raw()
    body = bytes(range(256)) * 200   # 51,200 bytes: three full frames and a short one
    for raw in (direct, through_h2):
        raw.headers(1, GET)
        raw.server.send_response(1, 200, [])
        raw.server.data_to_send()
    assert direct.server.send_body(1, body[:20_000]) == 20_000
    assert direct.server.send_body(1, body[20_000:], end_stream=True) == len(body) - 20_000
    conn = through_h2.server._conn
    for start, end in ((0, 16_384), (16_384, 20_000), (20_000, 36_384), (36_384, 51_200)):
        conn.send_data(1, body[start:end], end_stream=end == len(body))
    assert direct.server.data_to_send() == conn.data_to_send()
    assert direct.server._conn.outbound_flow_control_window == conn.outbound_flow_control_window
    assert conn.outbound_flow_control_window == 65_535 - len(body)
    assert not direct.server.is_stream_open(1)


def test_whole_response_reaches_an_h2_client():
    pair = Pair()
    for stream_id, body in ((1, b"first"), (3, b""), (5, b"third")):
        pair.client.send_headers(stream_id, GET, end_stream=True)
        pair.to_server()
        head = response_head(200, [("content-type", "text/plain")])
        assert pair.server.send_whole_response(stream_id, head, body) == len(body)
        events = pair.to_client()
        (resp,) = of_type(events, h2.events.ResponseReceived)
        assert resp.headers == [(b":status", b"200"), (b"content-type", b"text/plain")]
        assert b"".join(e.data for e in of_type(events, h2.events.DataReceived)) == body
        assert [e.stream_id for e in of_type(events, h2.events.StreamEnded)] == [stream_id]
        assert bool(of_type(events, h2.events.DataReceived)) == bool(body)
    assert pair.server.open_streams == 0


def test_whole_response_with_a_big_head_uses_continuation_frames():
    raw = Raw()
    raw.headers(1, GET)
    head = response_head(200, [("x-big", "v" * 40_000)])   # the client's frames: 16 KiB at most
    assert raw.server.send_whole_response(1, head, b"body") == 4
    frames = raw.output()
    assert [type(f) for f in frames] == [HeadersFrame, ContinuationFrame, ContinuationFrame,
                                         DataFrame]
    assert "END_HEADERS" not in frames[0].flags and "END_HEADERS" in frames[2].flags
    assert "END_STREAM" in frames[3].flags and frames[3].data == b"body"
    fields = Decoder().decode(b"".join(f.data for f in frames[:3]), raw=True)
    assert fields == [(b":status", b"200"), (b"x-big", b"v" * 40_000)]


def test_whole_response_beyond_the_window_sends_what_fits():
    pair = Pair(client_settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 10})
    pair.client.send_headers(1, GET, end_stream=True)
    pair.to_server()
    head = response_head(200, [])
    assert pair.server.send_whole_response(1, head, b"a" * 25) == 10
    assert pair.server.is_stream_open(1)
    pair.client.increment_flow_control_window(100, 1)
    pair.to_server()
    assert pair.server.send_body(1, b"a" * 15, end_stream=True) == 15
    events = pair.to_client()
    assert sum(len(e.data) for e in of_type(events, h2.events.DataReceived)) == 25
    assert of_type(events, h2.events.StreamEnded)


def test_whole_response_on_a_reset_stream_sends_nothing():
    pair = Pair()
    pair.client.send_headers(1, GET, end_stream=True)
    pair.to_server()
    pair.client.reset_stream(1)
    pair.to_server()
    assert pair.server.send_whole_response(1, response_head(200, []), b"late") == 0
    assert pair.server.data_to_send() == b""


# --------------------------------------------------------------------------- flow control


def test_send_body_honours_small_peer_window():
    pair = Pair(client_settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 10})
    pair.client.send_headers(1, GET, end_stream=True)
    pair.to_server()
    pair.server.send_response(1, 200, [])
    assert pair.server.send_window(1) == 10
    assert pair.server.send_body(1, b"a" * 100, end_stream=True) == 10
    assert pair.server.send_window(1) == 0
    assert pair.server.send_body(1, b"a" * 90, end_stream=True) == 0
    client_events = pair.to_client()
    assert sum(len(e.data) for e in of_type(client_events, h2.events.DataReceived)) == 10
    assert not of_type(client_events, h2.events.StreamEnded)  # end_stream not applied

    pair.client.increment_flow_control_window(50, stream_id=1)
    events = pair.to_server()
    assert WindowUpdated(1) in events
    assert pair.server.send_body(1, b"a" * 90, end_stream=True) == 50
    pair.client.increment_flow_control_window(100, stream_id=1)
    pair.to_server()
    assert pair.server.send_body(1, b"a" * 40, end_stream=True) == 40
    client_events = pair.to_client()
    assert of_type(client_events, h2.events.StreamEnded)
    assert pair.server.open_streams == 0


def test_peer_max_frame_size_respected():
    big_window = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20,
                  h2.settings.SettingCodes.MAX_FRAME_SIZE: 20000}
    pair = Pair(client_settings=big_window)
    pair.client.increment_flow_control_window(1 << 20)
    pair.client.send_headers(1, GET, end_stream=True)
    pair.to_server()
    pair.server.send_response(1, 200, [])
    assert pair.server.send_body(1, b"q" * 100000, end_stream=True) == 100000
    data_frames = [f for f in parse_frames(pair.server.data_to_send()) if isinstance(f, DataFrame)]
    assert max(len(f.data) for f in data_frames) == 20000
    assert sum(len(f.data) for f in data_frames) == 100000


def test_default_peer_frame_size_is_16384():
    pair = Pair(client_settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
    pair.client.increment_flow_control_window(1 << 20)
    pair.client.send_headers(1, GET, end_stream=True)
    pair.to_server()
    pair.server.send_response(1, 200, [])
    assert pair.server.send_body(1, memoryview(b"q" * 50000)) == 50000
    sizes = [len(f.data) for f in parse_frames(pair.server.data_to_send()) if isinstance(f, DataFrame)]
    assert sizes == [16384, 16384, 16384, 848]


def test_initial_window_size_change_applies_to_open_streams_even_negative():
    pair = Pair(client_settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 100})
    pair.client.send_headers(1, GET, end_stream=True)
    pair.to_server()
    pair.server.send_response(1, 200, [])
    assert pair.server.send_body(1, b"a" * 100) == 100
    pair.to_client()
    pair.client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 40})
    events = pair.to_server()
    assert WindowUpdated(0) in events
    # stream window is now 40 - 100 = -60
    assert pair.server.send_window(1) == 0
    pair.client.increment_flow_control_window(30, stream_id=1)
    pair.to_server()
    assert pair.server.send_window(1) == 0  # -30
    assert pair.server.send_body(1, b"b") == 0
    pair.client.increment_flow_control_window(100, stream_id=1)
    pair.to_server()
    assert pair.server.send_window(1) == 70
    # raising the setting grows open streams too
    pair.client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1040})
    pair.to_server()
    assert pair.server.send_window(1) == 1070


def test_stream_window_overflow_resets_stream():
    raw = Raw()
    raw.headers(1, GET, end_stream=True)
    events = raw.send(WindowUpdateFrame(1, window_increment=2**31 - 1))
    assert rst_codes(raw.output()) == {1: FLOW_CONTROL_ERROR}
    assert StreamReset(1, FLOW_CONTROL_ERROR) in events
    assert raw.server.open_streams == 0


def test_connection_window_overflow_is_connection_error():
    raw = Raw()
    events = raw.send(WindowUpdateFrame(0, window_increment=2**31 - 1))
    assert goaway_codes(raw.output()) == [FLOW_CONTROL_ERROR]
    assert of_type(events, ConnectionTerminated)[0].error_code == FLOW_CONTROL_ERROR


def test_window_update_zero_on_stream_is_stream_error():
    raw = Raw()
    raw.headers(1, GET, end_stream=True)
    events = raw.send(Frame_window_update_zero(1))
    assert rst_codes(raw.output()) == {1: PROTOCOL_ERROR}
    assert StreamReset(1, PROTOCOL_ERROR) in events
    assert not raw.server.closed


def Frame_window_update_zero(stream_id: int) -> RawFrame:
    # hyperframe refuses to build an increment of 0; write the bytes ourselves.
    return RawFrame(0x8, stream_id, b"\x00\x00\x00\x00")


# --------------------------------------------------------------------------- resets and limits


def test_client_reset_is_reported_and_forgotten():
    pair = Pair()
    pair.client.send_headers(1, [(":method", "POST"), (":scheme", "https"), (":path", "/"),
                                 (":authority", "a")])
    pair.client.send_data(1, b"x" * 1000)
    pair.to_server()
    pair.client.reset_stream(1, 0x8)
    events = pair.to_server()
    assert events == [StreamReset(1, 0x8)]
    assert pair.server.open_streams == 0 and not pair.server.is_stream_open(1)
    # unconsumed body credit goes back on the connection right away
    updates = [f for f in parse_frames(pair.server.data_to_send()) if isinstance(f, WindowUpdateFrame)]
    assert [(f.stream_id, f.window_increment) for f in updates] == [(0, 1000)]
    # calls on the dead stream are harmless
    pair.server.send_response(1, 200, [])
    assert pair.server.send_body(1, b"late") == 0
    pair.server.acknowledge(1, 1000)
    pair.server.reset_stream(1, 0)
    pair.server.end_stream(1)
    assert pair.server.data_to_send() == b""


def test_server_reset_stream():
    pair = Pair()
    pair.client.send_headers(1, GET, end_stream=True)
    pair.to_server()
    pair.server.reset_stream(1, 0x2)
    assert of_type(pair.to_client(), h2.events.StreamReset)[0].error_code == 0x2
    assert pair.server.open_streams == 0
    pair.server.reset_stream(1, 0x2)  # no-op
    assert pair.server.data_to_send() == b""


@pytest.mark.parametrize("extra", [
    [(f"x-h{i}", "v") for i in range(6)],          # too many fields
    [("x-long", "v" * 200)],                        # one field too long
])
def test_request_header_limits_give_431(extra):
    limits = HTTP2Limits(limit_request_fields=5, limit_request_field_size=100)
    pair = Pair(limits)
    pair.client.send_headers(1, GET + extra, end_stream=True)
    events = pair.to_server()
    assert not of_type(events, RequestReceived)
    (violation,) = of_type(events, ProtocolViolation)
    assert violation.status == 431 and violation.stream_id == 1
    client_events = pair.to_client()
    (resp,) = of_type(client_events, h2.events.ResponseReceived)
    assert resp.headers == [(b":status", b"431")]
    assert of_type(client_events, h2.events.StreamEnded)
    assert pair.server.open_streams == 0
    # connection still serves requests
    pair.client.send_headers(3, GET, end_stream=True)
    assert of_type(pair.to_server(), RequestReceived)


def test_431_with_pending_body_asks_client_to_stop():
    pair = Pair(HTTP2Limits(limit_request_fields=1))
    pair.client.send_headers(1, GET + [("a", "1"), ("b", "2")])
    pair.to_server()
    frames = parse_frames(pair.server.data_to_send())
    assert any(isinstance(f, HeadersFrame) and "END_STREAM" in f.flags for f in frames)
    assert rst_codes(frames) == {1: 0}


def test_header_list_size_over_advertised_limit_gives_431():
    pair = Pair(HTTP2Limits(max_header_list_size=1000, limit_request_field_size=100000))
    pair.client.send_headers(1, GET + [("x-big", "v" * 1200)], end_stream=True)
    events = pair.to_server()
    assert of_type(events, ProtocolViolation)[0].status == 431


def test_hpack_bomb_beyond_decode_limit_is_connection_error():
    pair = Pair(HTTP2Limits(max_header_list_size=1000, limit_request_field_size=100000))
    pair.client.send_headers(1, GET + [("x-big", "v" * 60000)], end_stream=True)
    events = pair.to_server()
    assert of_type(events, ConnectionTerminated)
    assert pair.server.closed


def test_streams_beyond_max_concurrent_are_refused():
    raw = Raw(HTTP2Limits(max_concurrent_streams=1))
    raw.headers(1, GET, end_stream=False)
    events = raw.headers(3, GET + [("x-a", "1")], end_stream=True)
    assert not of_type(events, RequestReceived)
    assert of_type(events, ProtocolViolation)[0].error_code == REFUSED_STREAM
    assert rst_codes(raw.output()) == {3: REFUSED_STREAM}
    assert raw.server.last_stream_id == 3
    # HPACK state stayed in sync: the refused block was decoded
    raw.send(DataFrame(1, data=b"", flags={"END_STREAM"}))
    raw.server.send_response(1, 200, [], end_stream=True)
    raw.output()
    events = raw.headers(5, GET + [("x-a", "1")], end_stream=True)
    (req,) = of_type(events, RequestReceived)
    assert ("x-a", "1") in req.headers


MALFORMED = {
    "uppercase name": GET + [("X-Upper", "1")],
    "unknown pseudo": GET + [(":foo", "bar")],
    "pseudo after regular": GET[:3] + [("x-a", "1"), (":authority", "a")],
    "duplicate path": GET + [(":path", "/again")],
    "missing method": GET[1:],
    "missing scheme": [GET[0], GET[2], GET[3]],
    "missing path": [GET[0], GET[1], GET[3]],
    "empty path": [GET[0], GET[1], (":path", ""), GET[3]],
    "relative path": [GET[0], GET[1], (":path", "x/y"), GET[3]],
    "asterisk for GET": [GET[0], GET[1], (":path", "*"), GET[3]],
    "connection header": GET + [("connection", "keep-alive")],
    "transfer-encoding": GET + [("transfer-encoding", "chunked")],
    "upgrade": GET + [("upgrade", "h2c")],
    "keep-alive": GET + [("keep-alive", "5")],
    "te not trailers": GET + [("te", "gzip")],
    "status in request": GET + [(":status", "200")],
    "status first": [(":status", "200")] + GET,
    "protocol pseudo": [(":method", "CONNECT"), (":protocol", "websocket")] + GET[1:],
    "connect with path": [(":method", "CONNECT"), (":authority", "a:443"), (":path", "/")],
    "connect without authority": [(":method", "CONNECT")],
    "userinfo in authority": GET[:3] + [(":authority", "user@a")],
    "bad method token": [(":method", "G T")] + GET[1:],
    "content-length on empty request": GET + [("content-length", "3")],
    "bad content-length": GET + [("content-length", "x")],
    "newline in value": GET + [("x-a", "a\nb")],
    "value with leading space": GET + [("x-a", " b")],
    "colon inside a name": GET + [("x:a", "1")],
    "empty name": GET + [("", "1")],
    "host differs from authority": GET + [("host", "other.example")],
    "two host fields": GET[:3] + [("host", "a"), ("host", "a")],
    "neither authority nor host": GET[:3],
    "conflicting content-length": [(":method", "POST")] + GET[1:]
    + [("content-length", "3"), ("content-length", "4")],
    "HEAD with bad content-length": [(":method", "HEAD")] + GET[1:] + [("content-length", "x")],
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_requests_are_stream_errors(name):
    raw = Raw()
    events = raw.headers(1, MALFORMED[name], end_stream=True)
    assert not of_type(events, RequestReceived), name
    (violation,) = of_type(events, ProtocolViolation)
    assert violation.stream_id == 1 and violation.error_code == PROTOCOL_ERROR
    frames = raw.output()
    assert rst_codes(frames) == {1: PROTOCOL_ERROR}, name
    assert not goaway_codes(frames)
    # the connection survives
    assert of_type(raw.headers(3, GET), RequestReceived)


def test_cookie_crumbs_are_joined_last():
    raw = Raw()
    (req,) = of_type(raw.headers(1, GET + [("cookie", "a=1"), ("x-a", "1"), ("cookie", "b=2")]),
                     RequestReceived)
    assert req.headers == [("x-a", "1"), ("cookie", "a=1; b=2")]


def test_finished_streams_leave_no_state_behind():
    raw = Raw(HTTP2Limits(max_concurrent_streams=4))
    for stream_id in range(1, 41, 2):
        of_type(raw.headers(stream_id, GET), RequestReceived)
        raw.server.send_response(stream_id, 200, [], end_stream=True)
        raw.server.finish_stream(stream_id)
    raw.output()
    # h2 would keep closed streams until it next counts them; we drop them at once
    assert raw.server._conn.streams == {}
    # and a frame on one of them still gets the closed-stream answer (RFC 9113 5.1)
    events = raw.send(DataFrame(39, data=b"x"))
    frames = raw.output()
    assert goaway_codes(frames) == [STREAM_CLOSED] and of_type(events, ConnectionTerminated)


def test_closed_streams_remembered_are_bounded():
    raw = Raw(HTTP2Limits(max_requests=0))
    last = 2 * CLOSED_STREAMS_REMEMBERED + 1
    for stream_id in range(1, last + 2, 2):
        of_type(raw.headers(stream_id, GET), RequestReceived)
        raw.server.send_response(stream_id, 200, [], end_stream=True)
        raw.server.finish_stream(stream_id)
        raw.output()
    # h2 would keep 65,536 of them (about 8 MiB on a busy connection)
    assert len(raw.server._conn._closed_streams) == CLOSED_STREAMS_REMEMBERED
    # a recent one still gets the closed-stream answer
    raw.send(DataFrame(last, data=b"x"))
    assert goaway_codes(raw.output()) == [STREAM_CLOSED]


def test_options_asterisk_and_connect_are_accepted():
    raw = Raw()
    (req,) = of_type(raw.headers(1, [(":method", "OPTIONS"), (":scheme", "https"), (":path", "*"),
                                     (":authority", "a")]), RequestReceived)
    assert req.target == "*"
    (req,) = of_type(raw.headers(3, [(":method", "CONNECT"), (":authority", "a:443")],
                                 end_stream=False), RequestReceived)
    assert req.method == "CONNECT" and req.target == "a:443"


@pytest.mark.parametrize("chunks", [[b"abcd"], [b"ab", b"cd"]])
def test_content_length_more_data_than_declared(chunks):
    raw = Raw()
    raw.headers(1, GET[:1] + [(":scheme", "https"), (":path", "/"), (":authority", "a"),
                              ("content-length", "3")], end_stream=False)
    events = []
    for chunk in chunks:
        events += raw.send(DataFrame(1, data=chunk))
    assert StreamReset(1, PROTOCOL_ERROR) in events
    assert of_type(events, ProtocolViolation)[0].error_code == PROTOCOL_ERROR
    frames = raw.output()
    assert rst_codes(frames) == {1: PROTOCOL_ERROR} and not goaway_codes(frames)
    assert raw.server.open_streams == 0


def test_content_length_less_data_than_declared():
    raw = Raw()
    raw.headers(1, [(":method", "POST")] + GET[1:] + [("content-length", "10")], end_stream=False)
    events = raw.send(DataFrame(1, data=b"abc", flags={"END_STREAM"}))
    assert StreamReset(1, PROTOCOL_ERROR) in events
    assert not of_type(events, BodyEnded)
    assert rst_codes(raw.output()) == {1: PROTOCOL_ERROR}


def test_content_length_mismatch_ended_by_trailers():
    raw = Raw()
    raw.headers(1, [(":method", "POST")] + GET[1:] + [("content-length", "10")], end_stream=False)
    raw.send(DataFrame(1, data=b"abc"))
    events = raw.headers(1, [("x-t", "1")], end_stream=True)
    assert StreamReset(1, PROTOCOL_ERROR) in events and not of_type(events, BodyEnded)
    assert rst_codes(raw.output()) == {1: PROTOCOL_ERROR}


@pytest.mark.parametrize("trailers,end_stream", [
    ([(":path", "/")], True),           # pseudo-header in trailers
    ([("x-t", "1")], False),            # trailers without END_STREAM
])
def test_bad_trailers_are_stream_errors(trailers, end_stream):
    raw = Raw()
    raw.headers(1, [(":method", "POST")] + GET[1:], end_stream=False)
    events = raw.headers(1, trailers, end_stream=end_stream)
    assert StreamReset(1, PROTOCOL_ERROR) in events
    frames = raw.output()
    assert rst_codes(frames) == {1: PROTOCOL_ERROR} and not goaway_codes(frames)


def connection_credit(frames) -> int:
    return sum(f.window_increment for f in frames if isinstance(f, WindowUpdateFrame) and f.stream_id == 0)


def stream_credit(frames) -> int:
    return sum(f.window_increment for f in frames if isinstance(f, WindowUpdateFrame) and f.stream_id)


@pytest.mark.parametrize("cull", [False, True], ids=["kept", "culled"])
def test_frames_after_our_reset_are_discarded_but_credited(cull):
    # RFC 9113 5.1: after sending RST_STREAM, frames in flight are minimally
    # processed (HPACK, connection window) and discarded -- no RST_STREAM back.
    raw = Raw()
    post = [(":method", "POST")] + GET[1:]
    raw.headers(1, post + [("content-length", "1")], end_stream=False)
    raw.send(DataFrame(1, data=b"ab"))
    assert rst_codes(raw.output()) == {1: PROTOCOL_ERROR}
    if cull:  # a newer stream makes h2 drop stream 1 from its table
        raw.headers(3, GET)
        raw.output()
    events = []
    sent = 0
    chunk = b"c" * 16384
    # More than the whole connection window: without the credit, FLOW_CONTROL_ERROR.
    while sent <= raw.server._connection_window + 65535:
        events += raw.send(DataFrame(1, data=chunk))
        sent += len(chunk)
    events += raw.headers(1, [("x-late-trailer", "t")], end_stream=True)
    frames = raw.output()
    assert events == []
    assert not rst_codes(frames) and not goaway_codes(frames)
    assert connection_credit(frames) >= sent - raw.server._connection_window // 2
    # The discarded trailers went through HPACK: the next request still decodes.
    events = raw.headers(5, GET + [("x-late-trailer", "t")])
    assert ("x-late-trailer", "t") in of_type(events, RequestReceived)[0].headers


def test_frames_after_client_reset_are_stream_closed():
    # h2spec http2/5.1/8-9: the client reset the stream, then kept sending.
    raw = Raw()
    raw.headers(1, GET, end_stream=False)
    raw.send(RstStreamFrame(1, error_code=0x8))
    raw.output()
    raw.send(DataFrame(1, data=b"test", flags={"END_STREAM"}))
    assert rst_codes(raw.output()) == {1: STREAM_CLOSED}
    events = raw.headers(1, GET)
    frames = raw.output()
    assert rst_codes(frames) == {1: STREAM_CLOSED} and not goaway_codes(frames)
    assert not of_type(events, RequestReceived)


def test_data_on_half_closed_remote_stream():
    raw = Raw()
    raw.headers(1, GET, end_stream=True)
    raw.send(DataFrame(1, data=b"x"))
    assert rst_codes(raw.output()) == {1: STREAM_CLOSED}


# --------------------------------------------------------------------------- draining
# The app answered before the client finished its request (RFC 9113 8.1).

POST = [(":method", "POST")] + GET[1:]


def answered_before_request_ended(extra=(), limits=None, stream_id=1, raw=None) -> Raw:
    """A POST whose complete response went out while its body is still coming,
    and whose app is done (finish_stream)."""
    raw = raw or Raw(limits)
    raw.headers(stream_id, POST + list(extra), end_stream=False)
    raw.server.send_response(stream_id, 200, [], end_stream=True)
    raw.server.finish_stream(stream_id)
    return raw


def test_draining_stream_is_forgotten_but_not_reset_at_once():
    raw = answered_before_request_ended()
    frames = raw.output()
    assert not rst_codes(frames)  # no race with the client's next frames
    assert raw.server.open_streams == 0 and not raw.server.is_stream_open(1)
    events = raw.send(DataFrame(1, data=b"x" * 1000))
    events += raw.send(DataFrame(1, data=b"y" * 500, flags={"END_STREAM"}))
    frames = raw.output()
    assert events == []  # the app never sees the rest of the body
    assert not rst_codes(frames) and not goaway_codes(frames)
    assert connection_credit(frames) == 1500 and stream_credit(frames) == 0
    assert 1 not in raw.server._draining and raw.server._conn.streams[1].closed


@pytest.mark.parametrize("extra, frames_in, code", [
    # h2spec http2/8.1/1: trailers without END_STREAM
    ([], [DataFrame(1, data=b"test"), "trailers-no-es"], PROTOCOL_ERROR),
    # h2spec http2/8.1.2.1/3: pseudo-header in trailers (h2 closed the stream first)
    ([], [DataFrame(1, data=b"test"), "pseudo-trailers"], PROTOCOL_ERROR),
    # h2spec http2/8.1.2.6/1-2: content-length mismatch
    ([("content-length", "1")], [DataFrame(1, data=b"test", flags={"END_STREAM"})], PROTOCOL_ERROR),
    ([("content-length", "1")], [DataFrame(1, data=b"test"), DataFrame(1, data=b"test")], PROTOCOL_ERROR),
    # h2spec http2/6.9.1/3: stream window above 2^31-1
    ([], [WindowUpdateFrame(1, window_increment=2**31 - 1)] * 2, FLOW_CONTROL_ERROR),
    # h2spec http2/5.1/8: DATA after the client's own RST_STREAM
    ([], [RstStreamFrame(1, error_code=0x8), DataFrame(1, data=b"test")], STREAM_CLOSED),
])
def test_draining_stream_frames_get_the_half_closed_local_answer(extra, frames_in, code):
    # Whether the app finished before or after these frames arrive, the answer is the same.
    raw = answered_before_request_ended(extra)
    raw.output()
    for item in frames_in:
        if item == "trailers-no-es":
            raw.headers(1, [("x-test", "ok")], end_stream=False)
        elif item == "pseudo-trailers":
            raw.headers(1, [(":method", "POST")], end_stream=True)
        else:
            raw.send(item)
    frames = raw.output()
    assert code in rst_codes(frames).values() and not goaway_codes(frames)
    assert 1 not in raw.server._draining


def test_bad_trailers_that_close_a_half_closed_local_stream_are_a_stream_error():
    # The response went first, so the trailers' END_STREAM closes the stream
    # before h2 validates them; still RST_STREAM(PROTOCOL_ERROR), no GOAWAY.
    raw = Raw()
    raw.headers(1, POST, end_stream=False)
    raw.server.send_response(1, 200, [], end_stream=True)
    raw.send(DataFrame(1, data=b"test"))
    raw.output()
    events = raw.headers(1, [(":method", "POST")], end_stream=True)
    frames = raw.output()
    assert rst_codes(frames) == {1: PROTOCOL_ERROR} and not goaway_codes(frames)
    assert StreamReset(1, PROTOCOL_ERROR) in events and not raw.server.closed
    raw.send(DataFrame(1, data=b"late"))  # now a stream we reset: discarded
    assert not rst_codes(raw.output())


def test_draining_stream_is_credited_and_not_reset_by_itself():
    # Some clients (httpx 1.0) hang on RST_STREAM(NO_ERROR) while they wait for
    # window: a draining upload is read and thrown away instead.
    raw = answered_before_request_ended()
    raw.output()
    chunk = b"x" * 16384
    sent = 0
    events = []
    while sent < 4 * 65535:  # beyond the stream window: credit must come back
        events += raw.send(DataFrame(1, data=chunk))
        sent += len(chunk)
    frames = raw.output()
    assert events == []
    assert not rst_codes(frames) and not goaway_codes(frames)
    assert stream_credit(frames) >= sent - 65535 // 2
    events = raw.send(DataFrame(1, data=b"", flags={"END_STREAM"}))
    frames += raw.output()
    assert events == [] and not rst_codes(frames)
    assert connection_credit(frames) == sent
    assert not raw.server._draining


def test_finish_credits_the_unread_body_on_both_windows():
    raw = Raw()
    raw.headers(1, POST, end_stream=False)
    events = raw.send(DataFrame(1, data=b"x" * 16384), DataFrame(1, data=b"x" * 16384),
                      DataFrame(1, data=b"x" * 7232))  # the app never reads them
    assert len(of_type(events, BodyReceived)) == 3
    raw.server.send_response(1, 200, [], end_stream=True)
    raw.output()
    raw.server.finish_stream(1)
    frames = raw.output()
    assert not rst_codes(frames)
    assert connection_credit(frames) == 40000 and stream_credit(frames) == 40000
    raw.server.acknowledge(1, 40000)  # a late acknowledgement is a no-op
    assert raw.output() == []


def test_draining_streams_give_their_slot_to_new_streams():
    limits = HTTP2Limits(max_concurrent_streams=2)
    raw = answered_before_request_ended(limits=limits)
    answered_before_request_ended(stream_id=3, raw=raw)
    raw.output()
    events = raw.headers(5, POST, end_stream=False)
    assert of_type(events, RequestReceived)[0].stream_id == 5
    assert rst_codes(raw.output()) == {1: NO_ERROR}  # oldest first, only as many as needed
    events = raw.headers(7, GET)
    assert of_type(events, RequestReceived)[0].stream_id == 7
    assert rst_codes(raw.output()) == {3: NO_ERROR}
    # 5 and 7 are live requests: a third stream is refused as before
    events = raw.headers(9, GET)
    assert not of_type(events, RequestReceived)
    assert rst_codes(raw.output()) == {9: REFUSED_STREAM}


def test_graceful_goaway_does_not_wait_for_draining_streams():
    raw = Raw()
    raw.headers(1, POST, end_stream=False)
    raw.server.goaway(0)
    raw.server.send_response(1, 200, [], end_stream=True)
    assert not raw.server.closed
    raw.server.finish_stream(1)
    assert raw.server.closed


def test_finish_stream_with_an_incomplete_response_is_internal_error():
    raw = Raw()
    raw.headers(1, GET)
    raw.server.send_response(1, 200, [])
    raw.output()
    raw.server.finish_stream(1)
    assert rst_codes(raw.output()) == {1: INTERNAL_ERROR}
    raw.server.finish_stream(1)
    assert raw.output() == []


def test_finish_stream_returns_unread_credit_of_a_complete_request():
    raw = Raw()
    raw.headers(1, POST, end_stream=False)
    raw.send(DataFrame(1, data=b"x" * 1000, flags={"END_STREAM"}))
    raw.output()
    raw.server.send_response(1, 200, [], end_stream=True)
    raw.server.finish_stream(1)
    frames = raw.output()
    assert connection_credit(frames) == 1000 and stream_credit(frames) == 0
    assert not rst_codes(frames)


# --------------------------------------------------------------------------- connection errors


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n",
])
def test_bad_preface_gives_goaway_protocol_error(data):
    proto = HTTP2Protocol(HTTP2Limits())
    proto.initiate()
    proto.data_to_send()
    events = proto.receive(data)
    assert goaway_codes(parse_frames(proto.data_to_send())) == [PROTOCOL_ERROR]
    (term,) = of_type(events, ConnectionTerminated)
    assert term.error_code == PROTOCOL_ERROR
    assert of_type(events, ProtocolViolation)[0].stream_id == 0
    assert proto.closed
    assert proto.receive(PREFACE) == []


def test_preface_must_be_followed_by_settings():
    proto = HTTP2Protocol(HTTP2Limits())
    proto.initiate()
    proto.data_to_send()
    events = proto.receive(PREFACE + PingFrame(0, opaque_data=b"12345678").serialize())
    assert of_type(events, ConnectionTerminated)[0].error_code == PROTOCOL_ERROR


def test_preface_byte_by_byte():
    proto = HTTP2Protocol(HTTP2Limits())
    proto.initiate()
    wire = PREFACE + SettingsFrame(0).serialize()
    enc = Encoder()
    wire += HeadersFrame(1, data=enc.encode(GET), flags={"END_HEADERS", "END_STREAM"}).serialize()
    events = []
    for i in range(len(wire)):
        events += proto.receive(wire[i:i + 1])
    assert of_type(events, RequestReceived)


def test_hpack_garbage_is_compression_error():
    raw = Raw()
    events = raw.send(HeadersFrame(1, data=b"\xff\xff\xff\xff\xff", flags={"END_HEADERS"}))
    assert goaway_codes(raw.output()) == [COMPRESSION_ERROR]
    assert of_type(events, ConnectionTerminated)[0].error_code == COMPRESSION_ERROR


def test_oversized_frame_rejected_from_its_header():
    raw = Raw()
    header = (20000).to_bytes(3, "big") + b"\x00\x00" + (1).to_bytes(4, "big")
    events = raw.server.receive(header)  # no body needed: refused at once
    assert of_type(events, ConnectionTerminated)[0].error_code == FRAME_SIZE_ERROR
    assert goaway_codes(raw.output()) == [FRAME_SIZE_ERROR]


def test_rst_stream_on_idle_stream_is_connection_error():
    raw = Raw()
    events = raw.send(RstStreamFrame(5, error_code=0))
    assert of_type(events, ConnectionTerminated)[0].error_code == PROTOCOL_ERROR


def test_even_stream_and_decreasing_ids_are_connection_errors():
    raw = Raw()
    assert of_type(raw.headers(2, GET), ConnectionTerminated)
    raw = Raw()
    raw.headers(5, GET)
    assert of_type(raw.headers(3, GET), ConnectionTerminated)


@pytest.mark.parametrize("cull", [False, True], ids=["kept", "culled"])
def test_data_after_end_stream_both_ways_is_connection_error(cull):
    # h2spec http2/5.1/11: RFC 9113 5.1 "closed" (RFC 7540: MUST) -- GOAWAY
    # STREAM_CLOSED, every time; h2 alone answers RST_STREAM.
    raw = Raw()
    raw.headers(1, GET, end_stream=True)
    raw.server.send_response(1, 200, [], end_stream=True)
    if cull:
        raw.headers(3, GET)
    raw.output()
    events = raw.send(DataFrame(1, data=b"x", flags={"END_STREAM"}))
    frames = raw.output()
    assert goaway_codes(frames) == [STREAM_CLOSED] and not rst_codes(frames)
    assert of_type(events, ConnectionTerminated)[0].error_code == STREAM_CLOSED


def test_headers_after_end_stream_both_ways_is_connection_error():
    raw = Raw()
    raw.headers(1, GET, end_stream=True)
    raw.server.send_response(1, 200, [], end_stream=True)
    raw.output()
    events = raw.headers(1, [("x-t", "1")])
    assert of_type(events, ConnectionTerminated)[0].error_code == STREAM_CLOSED


def test_continuation_without_header_block_on_culled_reset_stream():
    # RFC 9113 6.10: always a connection error PROTOCOL_ERROR (h2 answered
    # RST_STREAM once the reset stream had been culled).
    raw = Raw()
    raw.headers(1, GET, end_stream=False)
    raw.send(RstStreamFrame(1, error_code=0x8))
    raw.headers(3, GET)
    raw.output()
    events = raw.send(ContinuationFrame(1, data=raw.encoder.encode([("x-a", "b")]), flags={"END_HEADERS"}))
    frames = raw.output()
    assert goaway_codes(frames) == [PROTOCOL_ERROR] and not rst_codes(frames)
    assert of_type(events, ConnectionTerminated)[0].error_code == PROTOCOL_ERROR


def test_settings_ack_with_payload_is_frame_size_error():
    # h2spec http2/6.5/1, RFC 9113 6.5 (h2 says PROTOCOL_ERROR).
    raw = Raw()
    events = raw.send(RawFrame(0x4, 0, b"\x00", flags=0x1))
    assert goaway_codes(raw.output()) == [FRAME_SIZE_ERROR]
    assert of_type(events, ConnectionTerminated)[0].error_code == FRAME_SIZE_ERROR


def test_continuation_interrupted_is_protocol_error():
    raw = Raw()
    block = raw.encoder.encode(GET)
    events = raw.send(HeadersFrame(1, data=block[:3]), PingFrame(0, opaque_data=b"12345678"))
    assert of_type(events, ConnectionTerminated)[0].error_code == PROTOCOL_ERROR


def test_continuation_assembles_request():
    raw = Raw()
    block = raw.encoder.encode(GET)
    events = raw.send(HeadersFrame(1, data=block[:3], flags={"END_STREAM"}),
                      ContinuationFrame(1, data=block[3:], flags={"END_HEADERS"}))
    assert of_type(events, RequestReceived)[0].target == "/"


def test_events_before_a_connection_error_are_kept():
    raw = Raw()
    events = raw.send(HeadersFrame(1, data=raw.encoder.encode(GET), flags={"END_HEADERS", "END_STREAM"}),
                      RstStreamFrame(7, error_code=0))
    assert of_type(events, RequestReceived) and of_type(events, ConnectionTerminated)


def test_peer_goaway_lets_open_streams_finish():
    """RFC 9113 6.8: a client's graceful GOAWAY only means it opens no more
    streams; the responses it waits for still go out in full."""
    pair = Pair()
    pair.client.send_headers(1, GET, end_stream=True)
    pair.client.send_headers(3, GET, end_stream=True)
    pair.to_server()
    pair.client.close_connection(error_code=0, additional_data=b"bye")
    events = pair.to_server()
    (term,) = of_type(events, ConnectionTerminated)
    assert term.error_code == 0 and term.reason == "bye"
    assert not pair.server.closed and pair.server.is_stream_open(1)
    pair.server.send_response(1, 200, [])
    assert pair.server.send_body(1, b"done", end_stream=True) == 4
    assert not pair.server.closed          # stream 3 still waits for its answer
    pair.server.send_response(3, 204, [], end_stream=True)
    frames = parse_frames(pair.server.data_to_send())
    assert [(type(f), f.stream_id) for f in frames] == [
        (HeadersFrame, 1), (DataFrame, 1), (HeadersFrame, 3)]
    assert frames[1].data == b"done" and "END_STREAM" in frames[1].flags
    assert pair.server.closed              # nothing left: the driver may close


def test_peer_goaway_with_an_error_ends_everything():
    pair = Pair()
    pair.client.send_headers(1, GET, end_stream=True)
    pair.to_server()
    pair.client.close_connection(error_code=PROTOCOL_ERROR, additional_data=b"bad")
    (term,) = of_type(pair.to_server(), ConnectionTerminated)
    assert term.error_code == PROTOCOL_ERROR
    assert pair.server.closed and pair.server.open_streams == 0
    assert pair.server.receive(b"anything") == []
    pair.server.send_response(1, 200, [])  # no exception
    assert pair.server.send_body(1, b"x") == 0
    assert pair.server.data_to_send() == b""


# --------------------------------------------------------------------------- priority


@pytest.mark.parametrize("value,expected", [
    ("", (3, False)),
    ("u=1", (1, False)),
    ("u=0, i", (0, True)),
    ("i=?1, u=7", (7, True)),
    ("i=?0", (3, False)),
    ("u=8", (3, False)),          # out of range: ignored
    ("u=-1", (3, False)),
    ("u=2;foo=bar, x=\"a,b\", i", (2, True)),
    ("u=2, U=3", (3, False)),     # invalid key: whole dictionary fails
    ("u=\"1\"", (3, False)),
    ("u=5, u=2", (2, False)),     # last one wins
    ("u=1,,i", (3, False)),
])
def test_parse_priority_field(value, expected):
    parsed = parse_priority_field(value)
    assert (parsed["urgency"], parsed["incremental"]) == expected


def test_priority_header_and_headers_priority_fields():
    raw = Raw()
    events = raw.headers(1, GET + [("priority", "u=0"), ("priority", "i")], end_stream=True,
                         )
    assert of_type(events, RequestReceived)[0].priority == {
        "urgency": 0, "incremental": True, "weight": None, "depends_on": None}
    frame = HeadersFrame(3, data=raw.encoder.encode(GET), flags={"END_HEADERS", "PRIORITY"},
                         depends_on=1, stream_weight=99, exclusive=False)
    (req,) = of_type(raw.send(frame), RequestReceived)
    assert req.priority["weight"] == 100 and req.priority["depends_on"] == 1


def test_priority_frame_updates_known_stream():
    raw = Raw()
    raw.headers(1, GET, end_stream=False)
    events = raw.send(PriorityFrame(1, depends_on=0, stream_weight=15))
    assert events == [PriorityUpdated(1, {"urgency": 3, "incremental": False, "weight": 16,
                                          "depends_on": 0})]
    assert raw.send(PriorityFrame(9, depends_on=0, stream_weight=15)) == []  # idle stream: ignored


def test_self_dependency_is_stream_error():
    raw = Raw()
    raw.headers(1, GET, end_stream=False)
    events = raw.send(PriorityFrame(1, depends_on=1))
    assert StreamReset(1, PROTOCOL_ERROR) in events
    assert rst_codes(raw.output()) == {1: PROTOCOL_ERROR}
    frame = HeadersFrame(3, data=raw.encoder.encode(GET), flags={"END_HEADERS", "PRIORITY"},
                         depends_on=3)
    events = raw.send(frame)
    assert not of_type(events, RequestReceived)
    frames = raw.output()
    assert rst_codes(frames) == {3: PROTOCOL_ERROR} and not goaway_codes(frames)
    assert of_type(raw.headers(5, GET), RequestReceived)


def test_priority_frame_bad_length_is_stream_error():
    raw = Raw()
    raw.headers(1, GET, end_stream=False)
    raw.send(RawFrame(0x2, 1, b"\x00\x00\x00\x00"))
    frames = raw.output()
    assert rst_codes(frames) == {1: FRAME_SIZE_ERROR} and not goaway_codes(frames)


def priority_update(stream_id: int, value: bytes, on_stream: int = 0) -> RawFrame:
    return RawFrame(0x10, on_stream, stream_id.to_bytes(4, "big") + value)


def test_priority_update_frame():
    raw = Raw()
    raw.headers(1, GET, end_stream=False)
    events = raw.send(priority_update(1, b"u=5, i"))
    assert events == [PriorityUpdated(1, {"urgency": 5, "incremental": True, "weight": None,
                                          "depends_on": None})]
    # for a stream not opened yet: applied when it opens
    assert raw.send(priority_update(3, b"u=6")) == []
    (req,) = of_type(raw.headers(3, GET + [("priority", "u=1")]), RequestReceived)
    assert req.priority["urgency"] == 6


@pytest.mark.parametrize("frame,code", [
    (priority_update(1, b"u=1", on_stream=1), PROTOCOL_ERROR),
    (priority_update(0, b"u=1"), PROTOCOL_ERROR),
    (priority_update(2, b"u=1"), PROTOCOL_ERROR),
    (RawFrame(0x10, 0, b"\x00\x01"), FRAME_SIZE_ERROR),
])
def test_priority_update_errors(frame, code):
    raw = Raw()
    raw.headers(1, GET, end_stream=False)
    events = raw.send(frame)
    assert of_type(events, ConnectionTerminated)[0].error_code == code
    assert goaway_codes(raw.output()) == [code]


def test_unknown_frame_type_ignored():
    raw = Raw()
    assert raw.send(RawFrame(0xEE, 0, b"junk")) == []
    assert not raw.server.closed


# --------------------------------------------------------------------------- h2c and goaway


def test_h2c_upgrade_initiate():
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    settings_header = client.initiate_upgrade_connection().rstrip(b"=")  # clients may drop padding
    upgrade = RequestReceived(stream_id=1, method="GET", target="/up", headers=[("host", "a")],
                              authority="a", scheme="http", http_version="1.1", end_stream=True)
    proto = HTTP2Protocol(HTTP2Limits())
    events = proto.initiate(upgrade_settings=settings_header, upgrade_request=upgrade)
    (req,) = events
    assert req.stream_id == 1 and req.target == "/up" and req.end_stream
    assert proto.open_streams == 1 and proto.is_stream_open(1)
    proto.receive(client.data_to_send())
    client.receive_data(proto.data_to_send())
    proto.send_response(1, 200, [], end_stream=True)
    resp = of_type(client.receive_data(proto.data_to_send()), h2.events.ResponseReceived)
    assert resp[0].stream_id == 1
    assert proto.open_streams == 0
    # the client continues on stream 3
    client.send_headers(3, GET, end_stream=True)
    assert of_type(proto.receive(client.data_to_send()), RequestReceived)[0].stream_id == 3


def test_h2c_upgrade_bad_settings():
    proto = HTTP2Protocol(HTTP2Limits())
    events = proto.initiate(upgrade_settings=b"!!!notbase64", upgrade_request=None)
    assert of_type(events, ConnectionTerminated)
    assert goaway_codes(parse_frames(proto.data_to_send())) == [PROTOCOL_ERROR]


def test_graceful_goaway_refuses_newer_streams_and_finishes_old():
    raw = Raw()
    raw.headers(1, GET, end_stream=True)
    raw.server.goaway()
    frames = raw.output()
    (goaway,) = [f for f in frames if isinstance(f, GoAwayFrame)]
    assert goaway.last_stream_id == 1 and goaway.error_code == 0
    assert not raw.server.closed
    events = raw.headers(3, GET + [("x-after", "1")])
    assert not of_type(events, RequestReceived)
    assert rst_codes(raw.output()) == {3: REFUSED_STREAM}
    raw.server.send_response(1, 200, [], end_stream=True)
    frames = raw.output()
    assert any(isinstance(f, HeadersFrame) and f.stream_id == 1 for f in frames)
    assert raw.server.closed


def test_goaway_explicit_last_stream_and_error():
    raw = Raw()
    raw.headers(1, GET, end_stream=False)
    raw.headers(3, GET, end_stream=False)
    raw.server.goaway(last_stream_id=1, debug=b"draining")
    (goaway,) = [f for f in raw.output() if isinstance(f, GoAwayFrame)]
    assert goaway.last_stream_id == 1 and goaway.additional_data == b"draining"
    raw.server.goaway(error_code=0x2)
    (goaway,) = [f for f in raw.output() if isinstance(f, GoAwayFrame)]
    assert goaway.error_code == 0x2 and goaway.last_stream_id == 1
    assert raw.server.closed
    assert raw.server.receive(b"x") == []


# --------------------------------------------------------------------------- robustness


HEADER_BLOCKS = [
    GET, GET + [("content-length", "2")], [(":method", "POST")] + GET[1:], [("x-t", "1")],
    [(":path", "")], GET + [("X-Bad", "1")], GET + [("priority", "u=1, i")],
]


def _frame_strategy():
    """Frame builders; HEADERS are encoded later with a per-example encoder."""
    any_ids = st.sampled_from([0, 1, 2, 3, 5, 0x7FFFFFFF])
    stream_ids = st.sampled_from([1, 2, 3, 5, 0x7FFFFFFF])
    return st.one_of(
        st.builds(lambda s, h, es: ("headers", s, h, es),
                  stream_ids, st.integers(0, len(HEADER_BLOCKS) - 1), st.booleans()),
        st.builds(lambda s, d, es: DataFrame(s, data=d, flags={"END_STREAM"} if es else set()),
                  stream_ids, st.binary(max_size=40), st.booleans()),
        st.builds(lambda s, inc: RawFrame(0x8, s, inc.to_bytes(4, "big")),
                  any_ids, st.integers(0, 2**31 - 1)),
        st.builds(lambda s, c: RstStreamFrame(s, error_code=c), stream_ids, st.integers(0, 20)),
        st.builds(lambda s, d: PriorityFrame(s, depends_on=d), stream_ids, st.integers(0, 7)),
        st.builds(lambda s, b: RawFrame(0x10, s, b), any_ids, st.binary(max_size=12)),
        st.builds(lambda t, s, f, b: RawFrame(t, s, b, f),
                  st.integers(0, 12), any_ids, st.integers(0, 255), st.binary(max_size=20)),
        st.builds(lambda v: SettingsFrame(0, settings={0x4: v}), st.integers(0, 2**31 - 1)),
        st.just(PingFrame(0, opaque_data=b"abcdefgh")),
        st.builds(lambda s, b: ContinuationFrame(s, data=b, flags={"END_HEADERS"}), stream_ids,
                  st.binary(max_size=10)),
        st.builds(lambda b: GoAwayFrame(0, last_stream_id=0, error_code=0, additional_data=b),
                  st.binary(max_size=5)),
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(_frame_strategy(), max_size=12), split=st.integers(1, 50))
def test_random_frame_sequences_never_raise(frames, split):
    proto = HTTP2Protocol(HTTP2Limits(max_concurrent_streams=2))
    proto.initiate()
    encoder = Encoder()
    wire = PREFACE + SettingsFrame(0).serialize()
    for frame in frames:
        if isinstance(frame, tuple):
            _, stream_id, block, end_stream = frame
            flags = {"END_HEADERS"} | ({"END_STREAM"} if end_stream else set())
            frame = HeadersFrame(stream_id, data=encoder.encode(HEADER_BLOCKS[block]), flags=flags)
        wire += frame.serialize()
    for i in range(0, len(wire), split):
        events = proto.receive(wire[i:i + split])
        for event in events:
            if isinstance(event, (RequestReceived, BodyReceived)):
                proto.acknowledge(event.stream_id, 1)
                proto.send_response(event.stream_id, 200, [])
                proto.send_body(event.stream_id, b"ok", end_stream=True)
    proto.data_to_send()
    assert proto.open_streams >= 0


# --------------------------------------------------------------------------- flood defences
# (docs/security.md; the end-to-end versions are in tests/test_attacks_h2.py)

ENHANCE_YOUR_CALM = 0xB
POST = [(":method", "POST"), (":scheme", "https"), (":path", "/"), (":authority", "example.com")]


class Clock:
    """A hand-driven monotonic clock for the time-based budgets."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def raw_at(clock: Clock, **limits) -> Raw:
    """Raw, with the given HTTP2Limits fields and our clock."""
    raw = Raw.__new__(Raw)
    raw.server = HTTP2Protocol(HTTP2Limits(**limits), clock=clock)
    raw.server.initiate()
    raw.encoder = Encoder()
    raw.preface_events = raw.server.receive(PREFACE + SettingsFrame(0).serialize())
    raw.server.data_to_send()
    return raw


def calmed(events, raw: Raw) -> str:
    """The reason, if the connection ended with GOAWAY ENHANCE_YOUR_CALM; else ""."""
    terms = of_type(events, ConnectionTerminated)
    if not terms or terms[0].error_code != ENHANCE_YOUR_CALM:
        return ""
    assert goaway_codes(raw.output()) == [ENHANCE_YOUR_CALM]
    assert raw.server.closed and raw.server.open_streams == 0
    return terms[0].reason


def rapid_resets(raw: Raw, first: int, count: int) -> list:
    frames = []
    for stream_id in range(first, first + 2 * count, 2):
        frames.append(HeadersFrame(stream_id, data=raw.encoder.encode(GET), flags={"END_HEADERS"}))
        frames.append(RstStreamFrame(stream_id, error_code=0x8))
    return raw.send(*frames)


def test_rapid_reset_spends_the_budget_and_never_reaches_the_app():
    raw = raw_at(Clock(), reset_budget=10)
    events = rapid_resets(raw, 1, 10)
    assert not of_type(events, RequestReceived)       # opened and reset in one read
    assert not of_type(events, ConnectionTerminated) and raw.server.open_streams == 0
    events = rapid_resets(raw, 21, 1)
    assert "reset budget 10" in calmed(events, raw)


def test_completed_requests_and_time_earn_resets_back():
    clock = Clock()
    raw = raw_at(clock, reset_budget=10)
    rapid_resets(raw, 1, 9)
    for stream_id in (19, 21, 23):                    # three normal requests
        raw.headers(stream_id, GET)
        raw.server.send_response(stream_id, 200, [], end_stream=True)
    assert not of_type(rapid_resets(raw, 25, 3), ConnectionTerminated)
    clock.now += 5                                    # half the budget drains in 5 s
    assert not of_type(rapid_resets(raw, 31, 4), ConnectionTerminated)
    assert calmed(rapid_resets(raw, 39, 6), raw)


def test_resets_we_send_for_client_errors_count_too():
    """MadeYouReset (CVE-2025-8671): valid requests, then a frame that forces a
    stream error (here WINDOW_UPDATE 0) instead of the client's own RST_STREAM."""
    raw = raw_at(Clock(), reset_budget=5)
    for stream_id in range(1, 11, 2):
        events = raw.headers(stream_id, POST, end_stream=False)
        assert of_type(events, RequestReceived)
        events = raw.send(Frame_window_update_zero(stream_id))
        assert StreamReset(stream_id, PROTOCOL_ERROR) in events
    raw.headers(11, POST, end_stream=False)
    assert "reset budget" in calmed(raw.send(Frame_window_update_zero(11)), raw)


def test_431_answers_count_against_the_reset_budget():
    raw = raw_at(Clock(), reset_budget=3, limit_request_fields=2)
    crowded = GET + [(f"x-{i}", "1") for i in range(5)]
    for stream_id in (1, 3, 5):
        assert of_type(raw.headers(stream_id, crowded), ProtocolViolation)[0].status == 431
    assert calmed(raw.headers(7, crowded), raw)


def test_requests_per_connection_end_with_a_graceful_goaway():
    """The GOAWAY waits for the answers under way (httpx fails any stream
    still open when one arrives), then says the last request was the cap's."""
    raw = raw_at(Clock(), max_requests=3)
    for stream_id in (1, 3, 5):
        assert of_type(raw.headers(stream_id, GET), RequestReceived)
    raw.server.send_response(1, 200, [], end_stream=True)
    raw.server.send_response(3, 200, [], end_stream=True)
    assert goaway_codes(raw.output()) == []
    raw.server.send_response(5, 200, [], end_stream=True)
    frames = raw.output()
    assert [type(f) for f in frames] == [HeadersFrame, GoAwayFrame]
    assert (frames[1].error_code, frames[1].last_stream_id) == (NO_ERROR, 5)
    assert raw.server.closed


def test_a_stream_beyond_the_request_cap_is_refused_after_the_goaway():
    raw = raw_at(Clock(), max_requests=3)
    for stream_id in (1, 3, 5):
        raw.headers(stream_id, GET)
    events = raw.headers(7, GET)                      # sent before any GOAWAY could reach it
    assert not of_type(events, RequestReceived)
    frames = raw.output()
    assert [type(f) for f in frames] == [GoAwayFrame, RstStreamFrame]   # explained, then refused
    assert frames[0].last_stream_id == 5 and rst_codes(frames) == {7: REFUSED_STREAM}
    assert not raw.server.closed                      # three answers still owed
    for stream_id in (1, 3, 5):
        raw.server.send_response(stream_id, 200, [], end_stream=True)
    assert raw.server.closed


@pytest.mark.parametrize("name, frame", [
    ("PING", PingFrame(0, opaque_data=b"12345678")),
    ("SETTINGS", SettingsFrame(0)),
    ("PRIORITY", PriorityFrame(1, depends_on=0)),
    ("empty DATA", "empty-data"),
    ("unknown", RawFrame(0x42, 0, b"x")),
    ("WINDOW_UPDATE", WindowUpdateFrame(0, window_increment=1)),
    ("RST_STREAM on a closed stream", RstStreamFrame(1, error_code=0x8)),
])
def test_control_frame_floods_are_cut_off(name, frame):
    raw = raw_at(Clock(), max_control_frames=50)
    if frame == "empty-data":
        raw.headers(1, POST, end_stream=False)
        frame = DataFrame(1, data=b"")
    elif name.startswith("RST"):
        raw.headers(1, GET)
        raw.server.send_response(1, 200, [], end_stream=True)
    events = raw.send(*[frame] * 45)
    assert not of_type(events, ConnectionTerminated), name
    reason = calmed(raw.send(*[frame] * 10), raw)
    assert "too many control frames" in reason and name.split()[0] in reason


def test_control_frames_at_a_steady_pace_are_fine():
    clock = Clock()
    raw = raw_at(clock, max_control_frames=50)
    for _ in range(40):                               # 20 a second against 5 a second of refill,
        raw.send(PingFrame(0, opaque_data=b"12345678"))  # but only for two seconds...
        clock.now += 0.05
    assert not raw.server.closed
    for _ in range(200):                              # ...and 4 a second forever
        raw.send(PingFrame(0, opaque_data=b"12345678"))
        clock.now += 0.25
    assert not raw.server.closed
    assert len([f for f in raw.output() if isinstance(f, PingFrame)]) == 240


def test_a_settings_frame_is_charged_per_entry():
    raw = raw_at(Clock(), max_control_frames=100)
    many = RawFrame(0x4, 0, (0x2).to_bytes(2, "big") + bytes(4) + (0x4).to_bytes(2, "big")
                    + (65535).to_bytes(4, "big"))          # 2 entries
    raw.send(*[many] * 45)
    assert not raw.server.closed
    big = RawFrame(0x4, 0, ((0x4).to_bytes(2, "big") + (65535).to_bytes(4, "big")) * 200)
    assert calmed(raw.send(big), raw)


def test_window_updates_that_return_used_credit_are_free():
    pair = Pair(HTTP2Limits(max_control_frames=20))
    pair.client.send_headers(1, GET, end_stream=True)
    pair.to_server()
    pair.server.send_response(1, 200, [])
    for _ in range(100):                              # 100 rounds of 16 KiB out, credit back
        assert pair.server.send_body(1, b"z" * 16384) == 16384
        pair.to_client()
        pair.client.increment_flow_control_window(16384)
        pair.client.increment_flow_control_window(16384, stream_id=1)
        pair.to_server()
    assert not pair.server.closed


def test_data_dribble_tiny_initial_window():
    """CVE-2019-9511: a 1-byte window reopened a byte at a time."""
    pair = Pair(HTTP2Limits(max_control_frames=30),
                client_settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1})
    pair.client.send_headers(1, GET, end_stream=True)
    pair.to_server()
    pair.server.send_response(1, 200, [])
    sent = pair.server.send_body(1, b"d" * 1000)
    rounds = 0
    while not pair.server.closed and rounds < 100:
        rounds += 1
        pair.client.increment_flow_control_window(1, stream_id=1)
        pair.to_server()
        sent += pair.server.send_body(1, b"d" * (1000 - sent))
    assert rounds <= 16 and sent <= rounds + 1      # cut off early, never past the credit
    assert goaway_codes(parse_frames(pair.server.data_to_send()))[-1] == ENHANCE_YOUR_CALM


def test_data_dribble_small_credit_on_a_normal_window_is_held_back():
    pair = Pair(HTTP2Limits(max_control_frames=30))
    pair.client.send_headers(1, GET, end_stream=True)
    pair.to_server()
    pair.server.send_response(1, 200, [])
    assert pair.server.send_body(1, b"d" * 100000) == 65535   # the default window, used up
    pair.to_client()
    pair.client.increment_flow_control_window(100, stream_id=1)
    pair.client.increment_flow_control_window(100)
    pair.to_server()
    assert pair.server.send_body(1, b"d" * 34465) == 0        # 100 bytes: not worth a frame
    assert pair.server.send_body(1, b"d" * 50) == 50          # unless that is all there is
    for _ in range(14):                                       # each tiny update is charged
        pair.client.increment_flow_control_window(1, stream_id=1)
        pair.client.increment_flow_control_window(1)
        pair.to_server()
    assert pair.server.closed
    assert goaway_codes(parse_frames(pair.server.data_to_send()))[-1] == ENHANCE_YOUR_CALM


def test_continuation_flood_is_enhance_your_calm():
    raw = raw_at(Clock())
    block = raw.encoder.encode(GET)
    events = raw.send(HeadersFrame(1, data=block, flags=set()),
                      *[ContinuationFrame(1, data=b"") for _ in range(70)])
    assert "CONTINUATION" in calmed(events, raw)


def test_header_block_bytes_are_bounded_before_decoding():
    raw = raw_at(Clock(), max_header_list_size=16384, max_frame_size=16384)
    chunk = b"\x00" * 16000
    events = raw.send(HeadersFrame(1, data=chunk, flags=set()),
                      *[ContinuationFrame(1, data=chunk) for _ in range(3)])
    assert "header block above 32768 bytes" in calmed(events, raw)


def test_header_block_and_preface_must_complete_in_time():
    clock = Clock()
    raw = raw_at(clock, stall_timeout=2.0)
    raw.send(HeadersFrame(1, data=raw.encoder.encode(GET[:2]), flags=set()))
    clock.now += 1.5
    raw.send(ContinuationFrame(1, data=raw.encoder.encode(GET[2:3])))  # still not the end
    assert raw.server.check_timeouts() == []
    clock.now += 0.6
    assert "header block not complete within 2 s" in calmed(raw.server.check_timeouts(), raw)

    slow = HTTP2Protocol(HTTP2Limits(stall_timeout=2.0), clock=clock)
    slow.initiate()
    slow.data_to_send()
    assert slow.receive(PREFACE[:10]) == []
    clock.now += 2.1
    (term,) = of_type(slow.check_timeouts(), ConnectionTerminated)
    assert term.error_code == NO_ERROR and "preface" in term.reason
    assert goaway_codes(parse_frames(slow.data_to_send())) == [NO_ERROR]


def test_a_complete_header_block_clears_its_deadline():
    clock = Clock()
    raw = raw_at(clock, stall_timeout=1.0)
    block = raw.encoder.encode(GET)
    raw.send(HeadersFrame(1, data=block[:3], flags={"END_STREAM"}))
    events = raw.send(ContinuationFrame(1, data=block[3:], flags={"END_HEADERS"}))
    assert of_type(events, RequestReceived)
    clock.now += 60
    assert raw.server.check_timeouts() == []


def test_cookie_crumbs_are_joined_and_the_join_is_bounded():
    raw = raw_at(Clock(), limit_request_fields=10, limit_request_field_size=1000)
    crumbs = [("cookie", f"c{i}=v") for i in range(50)]
    (request,) = of_type(raw.headers(1, GET + crumbs), RequestReceived)
    (cookie,) = [value for name, value in request.headers if name == "cookie"]
    assert cookie.count("; ") == 49                   # 50 crumbs, one field
    crumbs = [("cookie", f"c{i}=vvvvvvvvvvvvvvvvvvvvv") for i in range(100)]
    assert of_type(raw.headers(3, GET + crumbs), ProtocolViolation)[0].status == 431


def test_hpack_bomb_from_the_dynamic_table():
    """One 4 KB entry inserted once, then referenced with one byte each time."""
    raw = raw_at(Clock(), max_header_list_size=16384, limit_request_field_size=100000)
    bomb = [("x-bomb", "b" * 4000)]
    block = raw.encoder.encode(GET + bomb)           # the entry goes in the dynamic table
    assert of_type(raw.send(HeadersFrame(1, data=block, flags={"END_HEADERS", "END_STREAM"})),
                   RequestReceived)
    block = raw.encoder.encode(GET + bomb * 10)      # ten one-byte references: 40 KB
    assert len(block) < 30
    events = raw.send(HeadersFrame(3, data=block, flags={"END_HEADERS", "END_STREAM"}))
    assert "header block above" in calmed(events, raw)


def test_resets_are_weighted_by_the_header_bytes_they_cost():
    """A 431 for a 12 KB header block spends 4 units (1 + one per 4 KiB), not one."""
    raw = raw_at(Clock(), reset_budget=10, limit_request_fields=5,
                 limit_request_field_size=100000)
    heavy = GET + [(f"x-{i}", "v" * 1000) for i in range(12)]
    assert of_type(raw.headers(1, heavy), ProtocolViolation)[0].status == 431
    assert of_type(raw.headers(3, heavy), ProtocolViolation)[0].status == 431
    assert calmed(raw.headers(5, heavy), raw)          # 3 x 4 > 10
    light = raw_at(Clock(), reset_budget=10, limit_request_fields=5)
    for stream_id in range(1, 21, 2):                  # ten light ones fit the same budget
        assert of_type(light.headers(stream_id, GET + [("a", "1")] * 6), ProtocolViolation)
    assert not light.server.closed


def test_receive_stops_at_its_deadline_and_keeps_the_rest():
    clock = Clock()
    raw = raw_at(clock)

    def ticking() -> float:
        clock.now += 0.001                  # every look at the clock takes a millisecond
        return clock.now

    raw.server._clock = ticking
    frames = b"".join(PingFrame(0, opaque_data=b"%08d" % i).serialize() for i in range(20))
    raw.server.receive(frames, until=clock.now + 0.0035)
    assert raw.server.has_backlog
    first = [f for f in raw.output() if isinstance(f, PingFrame)]
    assert 1 <= len(first) < 20
    while raw.server.has_backlog:
        raw.server.receive(b"", until=clock.now + 0.0035)
    answered = first + [f for f in raw.output() if isinstance(f, PingFrame)]
    assert [f.opaque_data for f in answered] == [b"%08d" % i for i in range(20)]
    half = PingFrame(0, opaque_data=b"12345678").serialize()[:10]
    raw.server.receive(half)
    assert not raw.server.has_backlog       # an incomplete frame is not work left to do


def test_oversized_priority_field_is_ignored_whole() -> None:
    """A 16 KB Priority value (PRIORITY_UPDATE hoarding) parses as the default
    without walking it, and what is kept for unopened streams is the result."""
    from h2serve.protocol.priority import MAX_PRIORITY_FIELD, parse_priority_field

    assert parse_priority_field("u=1, i") == {"urgency": 1, "incremental": True}
    padded = "u=1, " + "a=1, " * (MAX_PRIORITY_FIELD // 5)
    assert parse_priority_field(padded) == {"urgency": 3, "incremental": False}
