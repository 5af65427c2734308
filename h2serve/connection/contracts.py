"""What the connection layer needs from the worker above it, and what a
driver needs from its connection, as typed Protocols.

The drivers and the connection setup depend on these, never on
h2serve.worker, so imports run one way (worker -> connection). The Worker
satisfies WorkerHost by its shape; tests may pass anything that does.
Which thread may touch what is said per member: "poller" members are for
the poller thread only (others go through call_soon).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from h2serve.config import Config
from h2serve.connection.common import ByteBudget
from h2serve.connection.peer_shares import PeerShares
from h2serve.hooks import RequestHooks
from h2serve.logs import AccessLog
from h2serve.transport.forwarded import ForwardedPolicy


class TaskPool(Protocol):
    """The worker's app threads (h2serve.pool.ThreadPool)."""

    size: int

    def submit(self, fn: Callable, *args: Any) -> None: ...
    def submit_urgent(self, fn: Callable, *args: Any) -> None: ...
    def lend_slot(self) -> AbstractContextManager[None]: ...


class Driver(Protocol):
    """A protocol driver, as the connection setup and the worker drive it."""

    def on_readable(self) -> None:
        """The socket is readable: HTTP/1.1 on a pool thread, HTTP/2 on the poller."""

    def mark_dead(self) -> None:
        """Poller, as the socket closes: no thread may touch the socket after this."""


class Link(Protocol):
    """One accepted connection, as its driver sees it (h2serve.connection.setup)."""

    worker: WorkerHost
    sock: socket.socket
    peer: Any
    peer_label: str
    peer_key: str
    deadline: float        # poller waits on it until then
    idle_keepalive: bool   # poller: between requests, may be evicted
    wait_reason: str       # logged when the deadline passes
    used: bool             # a request started on it (any thread)
    alpn: str
    stage: str
    driver: Any

    def tls_environ(self) -> dict[str, Any]: ...
    def switch_to_h2c(self, settings: bytes, request: Any, leftover: bytes) -> None: ...


class WorkerHost(Protocol):
    """The worker, as the connection layer uses it."""

    cfg: Config
    ssl_context: ssl.SSLContext | None
    pool: TaskPool
    app: Callable | None
    access_log: AccessLog | None
    request_hooks: RequestHooks | None
    forwarded: ForwardedPolicy
    proxy_policy: ForwardedPolicy
    multiprocess: bool
    poller_ident: int
    draining: bool                  # read by any thread: say Connection: close / GOAWAY
    connections: set[Any]           # poller
    shares: PeerShares              # per client address: threads and streams it holds
    queued_bodies: ByteBudget       # response bytes its connections keep queued for the poller
    plain_http_refused: int
    plain_http_warned_at: float

    def call_soon(self, fn: Callable, *args: Any) -> None: ...
    def request_done(self) -> None: ...
    # The rest run on the poller: other threads pass them to call_soon.
    def release(self, conn: Any) -> None: ...
    def linger(self, conn: Any) -> None: ...
    def await_readable(self, conn: Any, deadline: float) -> None: ...
    def await_share(self, conn: Any, deadline: float) -> None: ...
    def want_write(self, conn: Any, wanted: bool) -> None: ...
    def pause_reading(self, conn: Any, paused: bool) -> None: ...
    def note_unused(self, conn: Any) -> None: ...
    def attach_h2(self, conn: Any) -> None: ...

