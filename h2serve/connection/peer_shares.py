"""What one client address holds of a worker's pool threads, over all its
connections and both protocols (docs/security.md):

- blocked: pool threads now waiting on that client (at most `cap` wait long:
  StreamScheduler.squeeze, HTTP1Driver._wait_on_client);
- in_pool: its HTTP/2 streams handed to the pool;
- arriving: its HTTP/1.1 requests running while their body still arrives;
- squeezed_out: when it last had a response cut for waiting past its share.

Any thread may call these; one lock guards the counts. The worker owns the
object and prunes squeezed_out on its tick.
"""

from __future__ import annotations

import threading
import time

SQUEEZED_OUT_S = 10.0    # an address that had a response cut past its share is watched this long


class PeerShares:
    """Per-address counts, and the cap (max_blocked_threads) they are held to."""

    __slots__ = ("cap", "blocked", "in_pool", "arriving", "squeezed_out", "_lock")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.blocked: dict[str, int] = {}
        self.in_pool: dict[str, int] = {}
        self.arriving: dict[str, int] = {}
        self.squeezed_out: dict[str, float] = {}
        self._lock = threading.Lock()

    def count(self, table: dict[str, int], peer: str, change: int) -> None:
        """Add `change` to peer's count in one of the tables above; an address
        whose count reaches 0 is forgotten."""
        with self._lock:
            left = table.get(peer, 0) + change
            if left > 0:
                table[peer] = left
            else:
                table.pop(peer, None)

    def take(self, table: dict[str, int], peer: str) -> bool:
        """Count one more for peer in table unless it is at the cap."""
        with self._lock:
            taken = table.get(peer, 0)
            if taken >= self.cap:
                return False
            table[peer] = taken + 1
            return True

    def note_squeezed_out(self, peer: str) -> None:
        """A response of peer's was cut for waiting past its share."""
        self.squeezed_out[peer] = time.monotonic()

    def over_share(self, peer: str) -> bool:
        """peer keeps `cap` threads waiting on it and recently had a response cut
        for waiting past that share: start nothing more of it."""
        return (self.blocked.get(peer, 0) >= self.cap
                and time.monotonic() - self.squeezed_out.get(peer, -SQUEEZED_OUT_S) < SQUEEZED_OUT_S)

    def forget_old_squeezes(self, now: float) -> None:
        """Poller, each tick."""
        if self.squeezed_out:
            for peer, at in list(self.squeezed_out.items()):
                if now - at >= SQUEEZED_OUT_S:
                    self.squeezed_out.pop(peer, None)
