"""A small raw-frame HTTP/2 client for end-to-end edge cases.

Real clients (httpx, curl, nghttp) hide the frames. The edge cases of the
HTTP/2 engine (zero windows, resets mid-response, trailers on requests,
refused streams, GOAWAY timing) need a client that sends exactly the frames a
test asks for and records every frame the server sends back, in order. This
one is built on hyperframe (framing) and hpack (header compression) only, so
nothing between the test and the wire second-guesses either side.

Only what the tests need is automatic: the preface, ACKs for SETTINGS and
PING, HPACK state, and (when ``auto_window`` is on) WINDOW_UPDATEs that give
back every received DATA byte at once.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from hpack import Decoder, Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER_LEN = 9
PRIORITY_UPDATE_TYPE = 0x10
DEFAULT_WINDOW = 65535

# Error codes (RFC 9113 section 7).
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
FLOW_CONTROL_ERROR = 0x3
REFUSED_STREAM = 0x7
CANCEL = 0x8
ENHANCE_YOUR_CALM = 0xB
INADEQUATE_SECURITY = 0xC

Headers = list[tuple[str, str]]


class ConnectionClosed(Exception):
    """The server closed the TCP/TLS connection."""


@dataclass
class Response:
    """Everything one stream received, in order of arrival."""

    stream_id: int
    status: int | None = None
    headers: Headers = field(default_factory=list)
    informational: list[Headers] = field(default_factory=list)
    body: bytes = b""
    trailers: Headers | None = None
    data_frames: int = 0
    reset_code: int | None = None
    ended: bool = False

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class H2Client:
    """One HTTP/2 connection to a test server, driven frame by frame."""

    def __init__(self, host: str, port: int, *, tls: bool = True, cafile: str | None = None,
                 ssl_context: ssl.SSLContext | None = None, settings: dict[int, int] | None = None,
                 auto_window: bool = True, timeout: float = 5.0) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.cafile = cafile
        self.ssl_context = ssl_context
        self.initial_settings = dict(settings or {})
        self.auto_window = auto_window
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.encoder = Encoder()
        self.decoder = Decoder()
        self.frames: list[Frame] = []          # every complete frame received, in order
        self.next_stream_id = 1
        self.server_settings: dict[int, int] = {}
        self.connection_send_window = DEFAULT_WINDOW
        self.stream_send_windows: dict[int, int] = {}
        self.ended_streams: set[int] = set()
        self.goaway: GoAwayFrame | None = None
        self.eof = False
        self._buffer = bytearray()
        self._header_block: tuple[HeadersFrame, bytearray] | None = None

    # --- connection --------------------------------------------------------------

    def connect(self, wait_settings: bool = True) -> H2Client:
        """TCP (and TLS with ALPN h2), the preface and our SETTINGS; then the server's SETTINGS."""
        raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls:
            context = self.ssl_context
            if context is None:
                context = ssl.create_default_context(cafile=self.cafile)
                context.set_alpn_protocols(["h2"])
            self.sock = context.wrap_socket(raw, server_hostname=self.host)
        else:
            self.sock = raw
        self.send_raw(PREFACE + self._settings_frame(self.initial_settings).serialize())
        if wait_settings:
            self.wait_for(lambda f: isinstance(f, SettingsFrame) and "ACK" not in f.flags,
                          what="the server's SETTINGS")
        return self

    def connect_upgrade(self, path: str, method: str = "GET") -> bytes:
        """h2c via HTTP/1.1 Upgrade (RFC 7540 section 3.2): the request becomes
        stream 1. Returns the server's HTTP/1.1 response head (the 101, or whatever
        came instead, in which case no preface is sent)."""
        import base64

        self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        payload = self._settings_frame(self.initial_settings).serialize_body()
        token = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
        self.send_raw((f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                       "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                       f"HTTP2-Settings: {token}\r\n\r\n").encode())
        head = bytearray()
        deadline = time.monotonic() + self.timeout
        while b"\r\n\r\n" not in head:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = self.sock.recv(65536)
            if not data:
                break
            head += data
        head_bytes, _, rest = bytes(head).partition(b"\r\n\r\n")
        if not head_bytes.startswith(b"HTTP/1.1 101"):
            return head_bytes
        self._buffer += rest
        self.next_stream_id = 3
        self.send_raw(PREFACE + self._settings_frame(self.initial_settings).serialize())
        self.wait_for(lambda f: isinstance(f, SettingsFrame) and "ACK" not in f.flags,
                      what="the server's SETTINGS", include_seen=True)
        return head_bytes

    @property
    def alpn(self) -> str | None:
        if isinstance(self.sock, ssl.SSLSocket):
            return self.sock.selected_alpn_protocol()
        return None

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass

    def __enter__(self) -> H2Client:
        return self.connect() if self.sock is None else self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- sending -----------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        assert self.sock is not None
        self.sock.sendall(data)

    def send(self, frame: Frame) -> None:
        self.send_raw(frame.serialize())

    @staticmethod
    def _settings_frame(settings: dict[int, int]) -> SettingsFrame:
        frame = SettingsFrame(0)
        frame.settings = dict(settings)
        return frame

    def new_stream_id(self) -> int:
        stream_id = self.next_stream_id
        self.next_stream_id += 2
        return stream_id

    def send_headers(self, stream_id: int, headers: Iterable[tuple[str, str]], *,
                     end_stream: bool = False, priority: tuple[int, int, bool] | None = None) -> None:
        """One HEADERS frame. priority=(depends_on, weight 1..256, exclusive) sets the
        RFC 7540 PRIORITY flag."""
        frame = HeadersFrame(stream_id)
        frame.data = self.encoder.encode([(n.encode(), v.encode()) for n, v in headers])
        frame.flags.add("END_HEADERS")
        if end_stream:
            frame.flags.add("END_STREAM")
        if priority is not None:
            depends_on, weight, exclusive = priority
            frame.flags.add("PRIORITY")
            frame.depends_on = depends_on
            frame.stream_weight = weight - 1
            frame.exclusive = exclusive
        self.stream_send_windows.setdefault(
            stream_id, self.server_settings.get(SettingsFrame.INITIAL_WINDOW_SIZE, DEFAULT_WINDOW))
        self.send(frame)

    def request(self, path: str, method: str = "GET", headers: Iterable[tuple[str, str]] = (), *,
                body: bytes | None = None, end_stream: bool | None = None,
                authority: str | None = None, scheme: str | None = None,
                priority: tuple[int, int, bool] | None = None) -> int:
        """Open a stream with a request. With body, the body follows in DATA frames
        (not flow-controlled: use send_body for that). Returns the stream id."""
        stream_id = self.new_stream_id()
        fields = [(":method", method), (":scheme", scheme or ("https" if self.tls else "http")),
                  (":authority", authority or f"{self.host}:{self.port}"), (":path", path)]
        fields += list(headers)
        if end_stream is None:
            end_stream = body is None
        self.send_headers(stream_id, fields, end_stream=end_stream, priority=priority)
        if body is not None:
            self.send_data(stream_id, body, end_stream=True)
        return stream_id

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        """DATA frames of at most the server's max frame size, ignoring flow control."""
        limit = self.server_settings.get(SettingsFrame.MAX_FRAME_SIZE, 16384)
        view = memoryview(data)
        chunks = [view[i:i + limit] for i in range(0, len(view), limit)] or [view]
        out = bytearray()
        for index, chunk in enumerate(chunks):
            frame = DataFrame(stream_id, bytes(chunk))
            if end_stream and index == len(chunks) - 1:
                frame.flags.add("END_STREAM")
            out += frame.serialize()
            self.connection_send_window -= len(chunk)
            if stream_id in self.stream_send_windows:
                self.stream_send_windows[stream_id] -= len(chunk)
        self.send_raw(bytes(out))

    def send_body(self, stream_id: int, data: bytes, end_stream: bool = True,
                  timeout: float | None = None) -> None:
        """Send data within the server's flow-control windows, waiting for credit."""
        deadline = time.monotonic() + (timeout or self.timeout)
        view = memoryview(data)
        while view:
            room = min(self.connection_send_window, self.stream_send_windows.get(stream_id, 0))
            if room <= 0:
                if self.read_frame(deadline - time.monotonic()) is None and time.monotonic() >= deadline:
                    raise AssertionError(f"no flow-control credit for stream {stream_id}")
                if stream_id in self.ended_streams:
                    raise AssertionError(f"stream {stream_id} ended while sending its body")
                continue
            chunk, view = view[:room], view[room:]
            self.send_data(stream_id, bytes(chunk), end_stream=end_stream and not view)
        if not data and end_stream:
            self.send_data(stream_id, b"", end_stream=True)

    def send_settings(self, settings: dict[int, int]) -> None:
        self.send(self._settings_frame(settings))

    def send_window_update(self, stream_id: int, increment: int) -> None:
        frame = WindowUpdateFrame(stream_id)
        frame.window_increment = increment
        self.send(frame)

    def send_rst(self, stream_id: int, error_code: int = CANCEL) -> None:
        frame = RstStreamFrame(stream_id)
        frame.error_code = error_code
        self.send(frame)

    def send_priority_update(self, prioritized_stream_id: int, field_value: str) -> None:
        """RFC 9218 PRIORITY_UPDATE (type 0x10) on stream 0."""
        payload = prioritized_stream_id.to_bytes(4, "big") + field_value.encode("ascii")
        header = len(payload).to_bytes(3, "big") + bytes([PRIORITY_UPDATE_TYPE, 0]) + bytes(4)
        self.send_raw(header + payload)

    # --- receiving ---------------------------------------------------------------

    def read_frame(self, timeout: float | None = None) -> Frame | None:
        """The next complete frame (also appended to self.frames); None on timeout.
        Raises ConnectionClosed at EOF."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            frame = self._parse_one()
            if frame is not None:
                return frame
            if self.eof:
                raise ConnectionClosed("the server closed the connection")
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            assert self.sock is not None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return None
            except ssl.SSLWantReadError:
                continue
            except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
                data = b""
            if not data:
                self.eof = True
                continue
            self._buffer += data

    def _parse_one(self) -> Frame | None:
        while len(self._buffer) >= FRAME_HEADER_LEN:
            frame, length = Frame.parse_frame_header(memoryview(bytes(self._buffer[:FRAME_HEADER_LEN])))
            if len(self._buffer) < FRAME_HEADER_LEN + length:
                return None
            body = bytes(self._buffer[FRAME_HEADER_LEN:FRAME_HEADER_LEN + length])
            del self._buffer[:FRAME_HEADER_LEN + length]
            frame.parse_body(memoryview(body))
            complete = self._on_frame(frame)
            if complete is not None:
                self.frames.append(complete)
                return complete
        return None

    def _on_frame(self, frame: Frame) -> Frame | None:
        """Bookkeeping for one parsed frame; returns the frame to record (None while a
        header block still waits for CONTINUATION)."""
        if isinstance(frame, HeadersFrame):
            if "END_HEADERS" not in frame.flags:
                self._header_block = (frame, bytearray(frame.data))
                return None
            frame.decoded = self._decode(frame.data)
        elif isinstance(frame, ContinuationFrame):
            assert self._header_block is not None, "CONTINUATION without HEADERS"
            first, block = self._header_block
            block += frame.data
            if "END_HEADERS" not in frame.flags:
                return None
            self._header_block = None
            first.decoded = self._decode(bytes(block))
            frame = first
        elif isinstance(frame, SettingsFrame):
            if "ACK" not in frame.flags:
                self._apply_server_settings(frame.settings)
                ack = SettingsFrame(0)
                ack.flags.add("ACK")
                self.send(ack)
        elif isinstance(frame, PingFrame):
            if "ACK" not in frame.flags:
                self.send(PingFrame(0, opaque_data=frame.opaque_data, flags=["ACK"]))
        elif isinstance(frame, WindowUpdateFrame):
            if frame.stream_id == 0:
                self.connection_send_window += frame.window_increment
            elif frame.stream_id in self.stream_send_windows:
                self.stream_send_windows[frame.stream_id] += frame.window_increment
        elif isinstance(frame, DataFrame):
            length = frame.flow_controlled_length
            if self.auto_window and length:
                self.send_window_update(0, length)
                if "END_STREAM" not in frame.flags:
                    self.send_window_update(frame.stream_id, length)
        elif isinstance(frame, GoAwayFrame):
            self.goaway = frame
        elif isinstance(frame, RstStreamFrame):
            self.ended_streams.add(frame.stream_id)
        if isinstance(frame, (HeadersFrame, DataFrame)) and "END_STREAM" in frame.flags:
            self.ended_streams.add(frame.stream_id)
        return frame

    def _decode(self, block: bytes) -> Headers:
        return [(n.decode() if isinstance(n, bytes) else n, v.decode() if isinstance(v, bytes) else v)
                for n, v in self.decoder.decode(block)]

    def _apply_server_settings(self, settings: dict[int, int]) -> None:
        new_initial = settings.get(SettingsFrame.INITIAL_WINDOW_SIZE)
        if new_initial is not None:
            delta = new_initial - self.server_settings.get(SettingsFrame.INITIAL_WINDOW_SIZE,
                                                           DEFAULT_WINDOW)
            for stream_id in self.stream_send_windows:
                self.stream_send_windows[stream_id] += delta
        self.server_settings.update(settings)

    def wait_for(self, predicate: Callable[[Frame], bool], timeout: float | None = None,
                 what: str = "a frame", include_seen: bool = False) -> Frame:
        """Read until a frame matches; AssertionError (listing what came) if none does."""
        if include_seen:
            for frame in self.frames:
                if predicate(frame):
                    return frame
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            try:
                frame = self.read_frame(deadline - time.monotonic())
            except ConnectionClosed:
                raise AssertionError(f"connection closed before {what}; got {self.describe()}") from None
            if frame is None:
                raise AssertionError(f"no {what} within the timeout; got {self.describe()}")
            if predicate(frame):
                return frame

    def collect(self, quiet: float) -> list[Frame]:
        """Every frame that arrives until `quiet` seconds pass without one (or EOF)."""
        got: list[Frame] = []
        while True:
            try:
                frame = self.read_frame(quiet)
            except ConnectionClosed:
                return got
            if frame is None:
                return got
            got.append(frame)

    def read_until_closed(self, timeout: float) -> bool:
        """Read (recording frames) until EOF; False if the connection is still open."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.read_frame(deadline - time.monotonic())
            except ConnectionClosed:
                return True
        return False

    def response(self, stream_id: int, timeout: float | None = None) -> Response:
        """Read until the stream ends (END_STREAM or RST_STREAM); its frames as a Response."""
        if stream_id not in self.ended_streams:
            self.wait_for(lambda f: f.stream_id == stream_id and stream_id in self.ended_streams,
                          timeout, what=f"the end of stream {stream_id}")
        return self.stream_response(stream_id)

    def stream_response(self, stream_id: int) -> Response:
        """What stream_id received so far, without reading more."""
        result = Response(stream_id)
        body = bytearray()
        for frame in self.frames_on(stream_id):
            if isinstance(frame, HeadersFrame):
                headers = frame.decoded
                status = next((v for n, v in headers if n == ":status"), None)
                if result.status is not None:
                    result.trailers = headers
                elif status is not None and status.startswith("1"):
                    result.informational.append(headers)
                else:
                    result.status = int(status) if status is not None else None
                    result.headers = [(n, v) for n, v in headers if not n.startswith(":")]
            elif isinstance(frame, DataFrame):
                body += frame.data
                result.data_frames += 1
            elif isinstance(frame, RstStreamFrame):
                result.reset_code = frame.error_code
            if "END_STREAM" in frame.flags or isinstance(frame, RstStreamFrame):
                result.ended = True
        result.body = bytes(body)
        return result

    def frames_on(self, stream_id: int, kind: type | None = None) -> list[Frame]:
        return [f for f in self.frames
                if f.stream_id == stream_id and (kind is None or isinstance(f, kind))]

    def describe(self, last: int = 25) -> str:
        """The last frames received, for assertion messages."""
        parts = []
        for frame in self.frames[-last:]:
            name = type(frame).__name__.replace("Frame", "")
            extra = ""
            if isinstance(frame, DataFrame):
                extra = f" len={len(frame.data)}"
            elif isinstance(frame, (RstStreamFrame, GoAwayFrame)):
                extra = f" code={frame.error_code:#x}"
                if isinstance(frame, GoAwayFrame):
                    extra += f" last={frame.last_stream_id}"
            elif isinstance(frame, HeadersFrame):
                extra = f" {getattr(frame, 'decoded', '')}"
            parts.append(f"{name}(s={frame.stream_id}{extra} {sorted(frame.flags)})")
        return "[" + ", ".join(parts) + (" EOF" if self.eof else "") + "]"
