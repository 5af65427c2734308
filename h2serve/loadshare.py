"""Connection counts the workers of one arbiter share, so they take turns accepting.

Workers that share a listener are all woken for each new connection, and the
first to call accept() wins; without help one worker can end up holding every
connection while the others idle. Each worker publishes how many connections
it holds in its own slot of an anonymous shared mapping made before fork; a
worker holding more than the least loaded one steps back for a moment.
"""

from __future__ import annotations

import mmap
import struct

SLOTS = 256          # workers beyond this many (TTIN) simply do not take part
BOOTING = -1         # a slot's value while its worker is forked but not yet serving
_INT = struct.Struct("=i")


class LoadTable:
    """One int per worker slot: 0 when the slot is free or its worker is not
    accepting, BOOTING while its worker starts, else 1 + the connections it holds."""

    def __init__(self, slots: int = SLOTS) -> None:
        self.slots = slots
        self._map = mmap.mmap(-1, _INT.size * slots)
        self._all = struct.Struct(f"={slots}i")
        self._free = list(range(slots - 1, -1, -1))

    # --- arbiter side ----------------------------------------------------------

    def take_slot(self) -> int | None:
        """A slot for a worker about to be forked; it reads BOOTING until the
        worker publishes."""
        if not self._free:
            return None
        slot = self._free.pop()
        _INT.pack_into(self._map, slot * _INT.size, BOOTING)
        return slot

    def free_slot(self, slot: int | None) -> None:
        if slot is not None:
            self.publish(slot, None)
            self._free.append(slot)

    # --- worker side -------------------------------------------------------------

    def publish(self, slot: int, connections: int | None) -> None:
        """connections=None: this worker no longer accepts."""
        _INT.pack_into(self._map, slot * _INT.size, 0 if connections is None else connections + 1)

    def least_loaded_other(self, slot: int) -> int | None:
        """Connections held by the least loaded other accepting worker, if any."""
        least = None
        for index, value in enumerate(self._all.unpack_from(self._map)):
            if value > 0 and index != slot and (least is None or value - 1 < least):
                least = value - 1
        return least

    def others_booting(self, slot: int) -> bool:
        """Whether another worker was forked and is not serving yet."""
        values = self._all.unpack_from(self._map)
        return any(value == BOOTING for index, value in enumerate(values) if index != slot)
