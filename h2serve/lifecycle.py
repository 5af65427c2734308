"""What a worker process and its master agree on: the heartbeat file (its
ctime says the worker lives, a mode bit that it retires; the worker writes it
through Heartbeat, the master reads it through WorkerRecord) and the exit
codes that tell a failed boot from an app that cannot be imported."""

from __future__ import annotations

import os
import signal
from typing import Any

from h2serve import hooks

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


class WorkerRecord:
    """What the master knows of one child: pid, heartbeat file, age."""

    __slots__ = ("pid", "heartbeat", "age", "retiring", "generation", "load_slot", "metrics_slot",
                 "view", "_born_mode", "_booted")

    def __init__(self, pid: int, heartbeat: Any, age: int, generation: int) -> None:
        self.pid = pid
        self.heartbeat = heartbeat
        self.age = age
        self.retiring = False
        self.generation = generation
        self.metrics_slot: int | None = None
        self.view: hooks.WorkerView | None = None   # what hooks get as `worker`
        self._born_mode = self._mode()
        self._booted = False

    def _mode(self) -> int:
        try:
            return os.fstat(self.heartbeat.fileno()).st_mode & 0o7777
        except (OSError, ValueError):
            return -1

    @property
    def booted(self) -> bool:
        """Whether the worker has served: its first heartbeat changes the file's mode."""
        if not self._booted:
            self._booted = self._mode() not in (self._born_mode, -1)
        return self._booted

    def last_beat(self) -> float:
        try:
            return os.fstat(self.heartbeat.fileno()).st_ctime
        except (OSError, ValueError):
            return 0.0

    def says_retiring(self) -> bool:
        """The worker stopped accepting (max_requests) and wants a replacement."""
        try:
            return bool(os.fstat(self.heartbeat.fileno()).st_mode & RETIRING_MODE)
        except (OSError, ValueError):
            return False
