"""What the isolation tests measure while a client attacks: a well-behaved
client's latency on fresh connections (the bystander) and the workers' memory.

The rule each test asserts: every bystander request made during the attack is
answered within twice the bystander's own baseline plus 100 ms; the workers'
RSS grows less than 20 MiB and is back within 20 MiB of its start afterwards.
"""

from __future__ import annotations

import ssl
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

MIB = 1024 * 1024
RSS_GROWTH_LIMIT = 20 * MIB


def rss_bytes(pid: int) -> int:
    """Resident memory of one process (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def workers_rss(server) -> int:
    """Summed RSS of the server's live workers."""
    return sum(rss_bytes(pid) for pid in server.worker_pids())


def each_worker_rss(server) -> dict[int, int]:
    """RSS of each live worker, by pid."""
    return {pid: rss_bytes(pid) for pid in server.worker_pids()}


def most_grown(before: dict[int, int], now: dict[int, int]) -> int:
    """The largest growth of one worker between two each_worker_rss readings."""
    return max((now.get(pid, 0) - rss for pid, rss in before.items()), default=0)


@dataclass
class Bystander:
    """A client that opens a fresh HTTP/2 connection for each request."""

    server: object
    path: str = "/hello"
    samples: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    baseline: float = 0.0

    def __post_init__(self) -> None:
        self._context = ssl.create_default_context(cafile=self.server.cafile)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def one(self) -> float:
        started = time.monotonic()
        with httpx.Client(http2=True, verify=self._context, timeout=30) as client:
            response = client.get(f"{self.server.url}{self.path}")
        took = time.monotonic() - started
        if response.status_code != 200:
            self.failures.append(f"status {response.status_code}")
        return took

    def measure_baseline(self, count: int = 8) -> float:
        self.one()  # warm the worker (imports, TLS session state)
        times = [self.one() for _ in range(count)]
        self.baseline = statistics.median(times)
        return self.baseline

    @property
    def bound(self) -> float:
        return 2 * self.baseline + 0.1

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(self.one())
            except httpx.HTTPError as exc:
                self.failures.append(repr(exc))
            self._stop.wait(0.05)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(40)

    def check(self) -> None:
        assert not self.failures, self.failures
        assert self.samples, "no bystander request was made during the attack"
        slowest = max(self.samples)
        assert slowest <= self.bound, (
            f"a bystander request took {slowest * 1000:.0f} ms during the attack "
            f"(baseline {self.baseline * 1000:.1f} ms, bound {self.bound * 1000:.0f} ms; "
            f"{len(self.samples)} requests)")


def wait_rss_settles(server, start: int, timeout: float = 10.0) -> int:
    """The workers' RSS once back within the limit of `start` (or when time is up)."""
    deadline = time.monotonic() + timeout
    now = workers_rss(server)
    while now - start >= RSS_GROWTH_LIMIT and time.monotonic() < deadline:
        time.sleep(0.2)
        now = workers_rss(server)
    return now
