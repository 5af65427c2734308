"""Frames on the dirty unix sockets: a 5-byte head (payload length, 4 bytes big
endian, then a type byte) and the payload.

The decoder is incremental, so a frame split over any number of reads (or
several frames in one read) comes out whole; a length over MAX_FRAME or an
unknown type is refused before anything is buffered for it. Used by both
sides: HTTP worker threads (client) and dirty worker connection threads.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from typing import Any

from h2serve.dirty.errors import DirtyProtocolError

HEAD = struct.Struct(">IB")
MAX_FRAME = 64 * 1024 * 1024   # one request, result or stream item

# Frame types. JSON payloads unless named _BYTES (raw bytes, no copy into JSON).
REQUEST = 1       # client -> worker: {"app", "action", "args", "kwargs", "stream", "credit"}
RESULT = 2        # worker -> client: the JSON result
RESULT_BYTES = 3  # worker -> client: a bytes result
ERROR = 4         # worker -> client: {"kind", "type", "message", "traceback"}
ITEM = 5          # worker -> client: one streamed item (JSON)
ITEM_BYTES = 6    # worker -> client: one streamed item (bytes)
END = 7           # worker -> client: the stream is over
CREDIT = 8        # client -> worker: {"n"}: that many more items may be sent
CANCEL = 9        # client -> worker: stop the stream (the generator is closed)
TYPES = frozenset(range(REQUEST, CANCEL + 1))


def encode(kind: int, payload: Any = None) -> bytes:
    """One frame; bytes payloads go as they are, anything else as JSON."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        body = bytes(payload)
    else:
        body = json.dumps(payload, separators=(",", ":")).encode()
    if len(body) > MAX_FRAME:
        raise DirtyProtocolError(f"frame of {len(body)} bytes is over the {MAX_FRAME}-byte limit")
    return HEAD.pack(len(body), kind) + body


def decode_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DirtyProtocolError(f"frame payload is not JSON: {exc}", body) from None


class FrameDecoder:
    """Bytes in, whole (type, payload) frames out; raises DirtyProtocolError on bad input."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        frames = []
        while len(self._buf) >= HEAD.size:
            length, kind = HEAD.unpack_from(self._buf)
            if kind not in TYPES:
                raise DirtyProtocolError(f"unknown frame type {kind}", bytes(self._buf[:16]))
            if length > self.max_frame:
                raise DirtyProtocolError(f"frame of {length} bytes is over the "
                                         f"{self.max_frame}-byte limit")
            end = HEAD.size + length
            if len(self._buf) < end:
                break
            frames.append((kind, bytes(self._buf[HEAD.size:end])))
            del self._buf[:end]
        return frames

    @property
    def pending(self) -> int:
        return len(self._buf)


class PeerClosed(Exception):
    """The other end closed the socket (between frames or in the middle of one)."""


class Channel:
    """A blocking, frame-at-a-time view of one connected unix socket, used by
    one thread at a time."""

    def __init__(self, sock: socket.socket, max_frame: int = MAX_FRAME) -> None:
        self.sock = sock
        self.decoder = FrameDecoder(max_frame)
        self._ready: list[tuple[int, bytes]] = []

    def send(self, kind: int, payload: Any = None) -> None:
        self.sock.sendall(encode(kind, payload))

    def recv(self, timeout: float | None) -> tuple[int, bytes] | None:
        """The next frame, or None when none came within timeout (None: wait forever).
        Raises PeerClosed, DirtyProtocolError, or OSError."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ready:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(256 * 1024)
            except (TimeoutError, BlockingIOError):
                return None
            if not data:
                raise PeerClosed("peer closed" + (" mid-frame" if self.decoder.pending else ""))
            self._ready.extend(self.decoder.feed(data))
        return self._ready.pop(0)

    def poll(self) -> tuple[int, bytes] | None:
        """A frame already sent by the peer, without waiting."""
        return self.recv(0.0)

    def _peek(self) -> bytes | None:
        """Without waiting: None when nothing has come, b"" at the end of the
        stream (or a broken socket), else the first unread byte."""
        self.sock.settimeout(0.0)   # with a timeout set, recv would poll and wait first
        try:
            return self.sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return b""

    def is_stale(self) -> bool:
        """Whether an idle pooled connection cannot be reused: the worker closed it,
        or sent something no call asked for (a reply would then be misread)."""
        return bool(self._ready or self.decoder.pending) or self._peek() is not None

    def peer_gone(self) -> bool:
        """Whether the peer closed its end (end of stream, nothing unread before it)."""
        return not self._ready and self._peek() == b""

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
