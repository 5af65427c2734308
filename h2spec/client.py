"""The raw HTTP/2 client connection every test case drives.

One `Connection` is one TCP (or TLS, ALPN h2) socket. Cases write whatever
bytes they like through it and read the server's answer as a stream of
events: a decoded frame, the connection closing, or the wait running out.
Each wait has its own deadline (`timeout` seconds from when it starts), as
in h2spec, so a silent server costs one timeout per case, never a hang.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import hpack

from h2spec import frames
from h2spec.frames import FrameType, ReceivedFrame, SettingId


@dataclass(frozen=True)
class Target:
    """Where the server under test listens and how to talk to it."""

    host: str
    port: int
    tls: bool = False
    timeout: float = 2.0
    path: str = "/"

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def authority(self) -> str:
        default_port = 443 if self.tls else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default_port else f"{host}:{self.port}"


class HandshakeError(Exception):
    """The HTTP/2 connection could not be set up (TLS, ALPN or preface)."""


@dataclass(frozen=True)
class Closed:
    """The server closed the connection (EOF, reset or TLS close)."""

    reason: str = "EOF"

    def describe(self) -> str:
        return f"Connection closed ({self.reason})"


@dataclass(frozen=True)
class TimedOut:
    """Nothing (more) arrived before the deadline."""

    seconds: float

    def describe(self) -> str:
        return f"Timeout ({self.seconds:g} s without the expected frame)"


Event = ReceivedFrame | Closed | TimedOut


def describe(event: Event | None) -> str:
    return "nothing" if event is None else event.describe()


@dataclass
class _FlowCredit:
    """Bytes received on one window since we last gave the credit back."""

    consumed: dict[int, int] = field(default_factory=dict)


class Connection:
    """A client-side HTTP/2 connection that can send anything."""

    def __init__(self, sock: socket.socket, target: Target) -> None:
        self.sock = sock
        self.target = target
        self.timeout = target.timeout
        self.closed = False
        self.server_settings: dict[int, int] = {}
        self.log: list[str] = []
        self.notes: list[str] = []
        self._buffer = b""
        self._pending: list[ReceivedFrame] = []
        self._encoder = hpack.Encoder()
        self._credit = _FlowCredit()
        self._handshake_done = False

    # -- opening ----------------------------------------------------------

    @classmethod
    def open(cls, target: Target) -> Connection:
        """Connect over TCP, and TLS with ALPN h2 when the target asks for it
        (certificates are never verified: the server is ours to test)."""
        try:
            raw = socket.create_connection((target.host, target.port), timeout=target.timeout)
        except OSError as exc:
            raise HandshakeError(f"cannot connect to {target.host}:{target.port}: {exc}") from exc
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not target.tls:
            return cls(raw, target)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["h2"])
        try:
            wrapped = context.wrap_socket(raw, server_hostname=target.host)
        except (OSError, ssl.SSLError) as exc:
            raw.close()
            raise HandshakeError(f"TLS handshake failed: {exc}") from exc
        if wrapped.selected_alpn_protocol() != "h2":
            wrapped.close()
            raise HandshakeError(
                f"ALPN negotiation failed (server chose {wrapped.selected_alpn_protocol()!r})"
            )
        return cls(wrapped, target)

    def handshake(self) -> None:
        """Send the preface and our SETTINGS, ack the server's SETTINGS and
        wait for the ack of ours (RFC 9113, 3.4)."""
        self.send(frames.CLIENT_PREFACE)
        self.send(
            frames.settings_frame([(SettingId.INITIAL_WINDOW_SIZE, frames.DEFAULT_WINDOW_SIZE)])
        )
        got_settings = got_ack = False
        deadline = time.monotonic() + self.timeout
        while not (got_settings and got_ack):
            event = self._read_event(deadline)
            if isinstance(event, Closed | TimedOut):
                raise HandshakeError(f"HTTP/2 handshake did not complete: {event.describe()}")
            if event.type != FrameType.SETTINGS:
                continue
            if event.is_ack:
                got_ack = True
            else:
                got_settings = True
                self.server_settings.update(event.settings)
                self.send(frames.settings_frame(ack=True))
        self._handshake_done = True

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass

    # -- settings the server announced ---------------------------------------

    @property
    def max_frame_size(self) -> int:
        return self.server_settings.get(SettingId.MAX_FRAME_SIZE, frames.DEFAULT_MAX_FRAME_SIZE)

    @property
    def header_table_size(self) -> int:
        return self.server_settings.get(
            SettingId.HEADER_TABLE_SIZE, frames.DEFAULT_HEADER_TABLE_SIZE
        )

    @property
    def max_concurrent_streams(self) -> int | None:
        return self.server_settings.get(SettingId.MAX_CONCURRENT_STREAMS)

    # -- sending ------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Write bytes; a failed write is logged, not raised, because the
        server may rightly have closed already and the verdict comes from
        what we read next."""
        self.log.append(f"send {_summarise_outgoing(data)}")
        try:
            self.sock.sendall(data)
        except (OSError, ssl.SSLError) as exc:
            self.log.append(f"send failed: {exc}")

    def encode_headers(self, headers: Iterable[tuple[str, str]]) -> bytes:
        """Encode with this connection's HPACK context (indexing, Huffman),
        like an ordinary client; the server's decoder must follow along."""
        return self._encoder.encode(list(headers), huffman=True)

    @property
    def dynamic_table_entries(self) -> int:
        return len(self._encoder.header_table.dynamic_entries)

    def send_request(
        self,
        stream_id: int,
        headers: Iterable[tuple[str, str]],
        *,
        end_stream: bool = True,
        end_headers: bool = True,
        **options: object,
    ) -> bytes:
        """Send HEADERS with an encoded block; return the block."""
        block = self.encode_headers(headers)
        self.send(
            frames.headers_frame(
                stream_id, block, end_stream=end_stream, end_headers=end_headers, **options
            )
        )
        return block

    # -- receiving ------------------------------------------------------------

    def next_event(self, deadline: float) -> Event:
        """The next frame, or Closed / TimedOut. After Closed every call
        returns Closed again."""
        event = self._read_event(deadline)
        if isinstance(event, ReceivedFrame):
            self._after_frame(event)
        return event

    def _read_event(self, deadline: float) -> Event:
        if self._pending:
            received = self._pending.pop(0)
            self.log.append(f"recv {received.describe()}")
            return received
        if self.closed:
            return Closed("already closed")
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.log.append("recv timeout")
                return TimedOut(self.timeout)
            try:
                self.sock.settimeout(remaining)
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            except ssl.SSLWantReadError:
                continue
            except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as exc:
                return self._mark_closed(type(exc).__name__)
            except (ssl.SSLError, OSError) as exc:
                return self._mark_closed(f"{type(exc).__name__}: {exc}")
            if not chunk:
                return self._mark_closed("EOF")
            parsed, self._buffer = frames.parse_frames(self._buffer + chunk)
            if parsed:
                self._pending.extend(parsed)
                received = self._pending.pop(0)
                self.log.append(f"recv {received.describe()}")
                return received

    def _mark_closed(self, reason: str) -> Closed:
        self.closed = True
        self.log.append(f"closed ({reason})")
        return Closed(reason)

    def _after_frame(self, received: ReceivedFrame) -> None:
        """Housekeeping any client does: ack new SETTINGS and give back the
        flow-control credit of DATA, so big responses never stall a case."""
        if not self._handshake_done:
            return
        if received.type == FrameType.SETTINGS and not received.is_ack:
            self.server_settings.update(received.settings)
            self.send(frames.settings_frame(ack=True))
        elif received.type == FrameType.DATA and received.length:
            self._give_credit(0, received.length)
            if not received.ends_stream:
                self._give_credit(received.stream_id, received.length)

    def _give_credit(self, stream_id: int, amount: int) -> None:
        consumed = self._credit.consumed.get(stream_id, 0) + amount
        if consumed >= frames.DEFAULT_WINDOW_SIZE // 2:
            self.send(frames.window_update_frame(stream_id, consumed))
            consumed = 0
        self._credit.consumed[stream_id] = consumed


def _summarise_outgoing(data: bytes) -> str:
    """Describe bytes we send, frame by frame when they parse as frames."""
    if data.startswith(frames.CLIENT_PREFACE):
        rest = data[len(frames.CLIENT_PREFACE) :]
        return "connection preface" + (f" + {_summarise_outgoing(rest)}" if rest else "")
    parsed, leftover = frames.parse_frames(data)
    if not parsed:
        return f"{len(data)} raw bytes"
    text = ", ".join(f.describe() for f in parsed)
    return text + (f" + {len(leftover)} bytes" if leftover else "")
