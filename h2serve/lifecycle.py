"""What a worker process and its master agree on: the heartbeat file (its
ctime says the worker lives, a mode bit that it retires) and the exit codes
that tell a failed boot from an app that cannot be imported."""

from __future__ import annotations

import os
import signal

WORKER_BOOT_ERROR = 3
APP_LOAD_ERROR = 4   # the arbiter stops at start, when no worker ever loaded the app
RETIRING_MODE = 0o2   # heartbeat file mode bit: this worker stopped accepting for good


class Heartbeat:
    """Tells the arbiter this worker is alive by changing a temp file's ctime, and
    that it is retiring (max_requests) through a mode bit."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd
        self._mode = 0
        self._last = 0.0

    def beat(self, now: float) -> None:
        if self.fd is None or now - self._last < 0.5:
            return
        self._last = now
        self._mode ^= 1
        self._write_mode()

    def retire(self, arbiter_pid: int) -> None:
        """Ask for a replacement now, while this worker drains, and wake the arbiter."""
        if self.fd is None:
            return
        self._mode |= RETIRING_MODE
        self._write_mode()
        try:
            os.kill(arbiter_pid, signal.SIGCHLD)
        except OSError:
            pass

    def _write_mode(self) -> None:
        try:
            os.fchmod(self.fd, self._mode)
        except OSError:
            pass
