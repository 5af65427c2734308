"""A dirty worker's heartbeat board: shared memory the dirty arbiter reads.

Slot 0 is the worker's last beat; slots 1..dirty_threads hold, for each
action slot, when the running action last made progress (0 when idle or
waiting for its stream's reader). Values are CLOCK_MONOTONIC seconds, which
all processes of the machine share.
"""

from __future__ import annotations

import mmap
import struct
import time

_F = struct.Struct("d")


class Board:
    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._mem = mmap.mmap(-1, _F.size * (slots + 1))
        self.beat()

    def beat(self) -> None:
        """Dirty worker, accept loop: the process is alive."""
        _F.pack_into(self._mem, 0, time.monotonic())

    def busy(self, slot: int, since: float) -> None:
        """Dirty worker, connection thread: an action runs (since > 0) or not (0)."""
        _F.pack_into(self._mem, _F.size * (slot + 1), since)

    def last_beat(self) -> float:
        return _F.unpack_from(self._mem, 0)[0]

    def oldest_busy(self) -> float:
        """Dirty arbiter: the start of the longest-running step, or 0."""
        values = [_F.unpack_from(self._mem, _F.size * (i + 1))[0] for i in range(self.slots)]
        running = [v for v in values if v > 0]
        return min(running) if running else 0.0

    def close(self) -> None:
        self._mem.close()
