"""Flood accounting for one HTTP/2 connection (docs/security.md): what each
received frame costs, judged from its header and payload before h2 sees it,
and the verdict. Sans-I/O, called by HTTP2Protocol only.

Two leaky buckets: the reset budget (the client's cancels of live streams,
plus the resets and 431s its frames make us send, against completed
responses: rapid reset and MadeYouReset), and the control-frame budget
(PING, SETTINGS, PRIORITY, empty and redundant frames, and window updates
that return no used credit). Header blocks are bounded in bytes and frames
before they are buffered. A verdict is "" (go on) or the reason the
connection must end with ENHANCE_YOUR_CALM.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import h2.frame_buffer

from h2serve import metrics

from .h2_frames import (
    FLAG_ACK,
    FLAG_END_HEADERS,
    FLAG_END_STREAM,
    FLAG_PADDED,
    FRAME_HEADER_LEN,
    FRAME_TYPE_CONTINUATION,
    FRAME_TYPE_DATA,
    FRAME_TYPE_GOAWAY,
    FRAME_TYPE_HEADERS,
    FRAME_TYPE_PING,
    FRAME_TYPE_PRIORITY,
    FRAME_TYPE_PRIORITY_UPDATE,
    FRAME_TYPE_RST_STREAM,
    FRAME_TYPE_SETTINGS,
    FRAME_TYPE_WINDOW_UPDATE,
    MAX_WINDOW,
)

# h2 refuses a header block of more CONTINUATION frames than this with
# PROTOCOL_ERROR; we answer the same flood first, with ENHANCE_YOUR_CALM.
MAX_CONTINUATION_FRAMES = h2.frame_buffer.CONTINUATION_BACKLOG
# The flood budgets refill by a tenth of their size per second: a well-behaved
# client never notices them, a flood meets them within a fraction of a second.
BUDGET_REFILL_S = 10.0
# Requests earn back budget: one window raise and one reprioritisation each.
CONTROL_REFUND_PER_REQUEST = 2
# A reset (or 431) costs one unit of the reset budget, plus one per this many
# bytes (RFC 9113 size) of header block it made us decode: the budget follows CPU.
HEADER_BYTES_PER_RESET = 4096
# Streams whose largest send window is remembered before closed ones are pruned
# (at most max_concurrent_streams are open at once).
PEAKS_KEPT = 256


class Budget:
    """A leaky bucket: charges fill it, refunds and time drain it (a tenth of
    its size per second). Past its size the connection is abusing us."""

    __slots__ = ("size", "level", "stamp", "clock")

    def __init__(self, size: int, clock: Callable[[], float]) -> None:
        self.size = size
        self.level = 0.0
        self.clock = clock
        self.stamp = clock()

    def charge(self, cost: float = 1) -> bool:
        """Add `cost`; True once the bucket overflows."""
        if self.size <= 0:
            return False
        now = self.clock()
        drained = (now - self.stamp) * self.size / BUDGET_REFILL_S
        self.stamp = now
        self.level = max(0.0, self.level - drained) + cost
        return self.level > self.size

    def refund(self, amount: float) -> None:
        self.level = max(0.0, self.level - amount)


class FloodGuard:
    """One connection's budgets and the header block being received.

    `conn` is the h2 connection (h2_internals.ServerConnection): the guard
    reads its streams' windows and states, never changes them."""

    __slots__ = ("conn", "clock", "dribble", "resets", "control", "overflow", "settings_acks",
                 "goaways_received", "window_peak", "block_started", "block_bytes",
                 "block_frames", "stream_peaks")

    def __init__(self, conn: Any, clock: Callable[[], float], *, reset_budget: int,
                 max_control_frames: int, dribble_frame_size: int) -> None:
        self.conn = conn
        self.clock = clock
        self.dribble = dribble_frame_size
        self.resets = Budget(reset_budget, clock)
        self.control = Budget(max_control_frames, clock)
        self.overflow = ""            # set when our own sending overflowed the control budget
        self.settings_acks = 0
        self.goaways_received = 0
        self.window_peak = 65535      # the largest connection send window the client granted
        self.stream_peaks: dict[int, int] = {}   # ... and each stream's, while it lives
        self.block_started = 0.0      # when the header block still waiting for END_HEADERS began
        self.block_bytes = 0
        self.block_frames = 0

    def judge(self, frame_type: int, flags: int, length: int, stream_id: int,
              frame_bytes: bytes) -> str:
        """Charge a frame that makes us work without advancing any request to the
        control-frame budget, and bound header blocks. The verdict: why the
        connection must end, or "". (The caller looks at `overflow` first.)"""
        cost = 0
        kind = ""
        if frame_type == FRAME_TYPE_HEADERS:
            if not flags & FLAG_END_HEADERS and not self.block_started:
                self.block_started = self.clock()
                self.block_bytes = length
                self.block_frames = 0
        elif frame_type == FRAME_TYPE_CONTINUATION:
            verdict = self._continuation(length)
            if verdict:
                return verdict
            if not length and not flags & FLAG_END_HEADERS:
                cost, kind = 1, "empty CONTINUATION"
        elif frame_type == FRAME_TYPE_DATA:
            padding = frame_bytes[FRAME_HEADER_LEN] + 1 if flags & FLAG_PADDED and length else 0
            if length - padding <= 0 and not flags & FLAG_END_STREAM:
                cost, kind = 1, "empty DATA"
        elif frame_type == FRAME_TYPE_PING:
            cost, kind = 1, "PING"
        elif frame_type == FRAME_TYPE_SETTINGS:
            if flags & FLAG_ACK:
                self.settings_acks += 1
                cost = 1 if self.settings_acks > 1 else 0  # we sent one SETTINGS
            else:
                cost = max(1, length // 6)  # h2 applies every entry
            kind = "SETTINGS"
        elif frame_type in (FRAME_TYPE_PRIORITY, FRAME_TYPE_PRIORITY_UPDATE):
            cost, kind = 1, "PRIORITY"
        elif frame_type == FRAME_TYPE_RST_STREAM:
            metrics.count(metrics.H2_RESETS_RECEIVED)
            stream = self.conn.streams.get(stream_id)
            if stream is None or stream.closed:
                cost, kind = 1, "RST_STREAM on a closed stream"
        elif frame_type == FRAME_TYPE_WINDOW_UPDATE:
            if length == 4 and self._useless_window_update(stream_id, frame_bytes):
                cost, kind = 1, "WINDOW_UPDATE"
        elif frame_type == FRAME_TYPE_GOAWAY:
            self.goaways_received += 1
            cost, kind = (1, "GOAWAY") if self.goaways_received > 1 else (0, "")
        else:
            cost, kind = 1, f"frame of unknown type {frame_type:#x}"
        if cost and self.control.charge(cost):
            return f"too many control frames ({kind} flood)"
        return ""

    def _continuation(self, length: int) -> str:
        if not self.block_started:
            return ""
        self.block_bytes += length
        self.block_frames += 1
        if self.block_bytes > self.conn.decode_limit:
            return f"header block above {self.conn.decode_limit} bytes"
        if self.block_frames >= MAX_CONTINUATION_FRAMES:
            return f"header block of more than {MAX_CONTINUATION_FRAMES} CONTINUATION frames"
        return ""

    def _useless_window_update(self, stream_id: int, frame_bytes: bytes) -> bool:
        """A WINDOW_UPDATE is worth its cost when it returns credit we used. One
        for a closed stream, one that only grows a window we never drew on, or
        one that leaves the window too small for a useful DATA frame (a data
        dribble, CVE-2019-9511) is charged as a control frame."""
        increment = int.from_bytes(frame_bytes[9:13], "big") & 0x7FFFFFFF
        conn = self.conn
        if stream_id == 0:
            before = conn.outbound_flow_control_window
            after = before + increment
            useless = before >= self.window_peak or after < self.dribble
            self.window_peak = max(self.window_peak, min(after, MAX_WINDOW))
            return useless
        stream = conn.streams.get(stream_id)
        if stream is None or stream.closed:
            return True
        before = stream.outbound_flow_control_window
        after = before + increment
        peaks = self.stream_peaks
        peak = max(peaks.get(stream_id, 0), conn.remote_settings.initial_window_size)
        if stream_id not in peaks and len(peaks) >= PEAKS_KEPT:
            self._forget_closed_peaks()
        peaks[stream_id] = max(peak, min(after, MAX_WINDOW))
        return before >= peak or after < self.dribble

    def _forget_closed_peaks(self) -> None:
        streams = self.conn.streams
        for stream_id in [s for s in self.stream_peaks
                          if s not in streams or streams[s].closed]:
            del self.stream_peaks[stream_id]

    def header_block_done(self) -> None:
        """h2 holds no open header block any more."""
        self.block_started = 0.0

    def charge_resets(self, count: int) -> str:
        """Resets a frame caused (the client's on live streams, our answers to its
        errors, weighted by header bytes): the verdict."""
        if count and self.resets.charge(count):
            return f"too many reset streams (reset budget {self.resets.size})"
        return ""

    def request_completed(self) -> None:
        """A completed response earns back a reset (as in h2o)."""
        self.resets.refund(1)

    def request_started(self) -> None:
        self.control.refund(CONTROL_REFUND_PER_REQUEST)

    def tiny_window_frame(self) -> None:
        """We sent a DATA frame cut short by a window below dribble_frame_size: the
        client's window management costs us a frame, charged as a control frame."""
        if self.control.charge(1):
            self.overflow = "too many control frames (tiny flow-control window)"
