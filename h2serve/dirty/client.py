"""The client HTTP worker threads use to call dirty apps.

Each call takes a connection to one dirty worker that loads the app (round
robin among them, pooled connections reused), sends one REQUEST frame and
reads the answer on that connection alone: a worker that dies mid-call
closes it, so the caller learns at once (DirtyWorkerError), never waits out
a timeout. Streams use credit: the worker sends at most ``window`` items
beyond what the iterator's consumer has taken.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from h2serve.dirty import framing
from h2serve.dirty.errors import (
    DirtyAppError,
    DirtyAppNotFoundError,
    DirtyConnectionError,
    DirtyError,
    DirtyNoWorkersAvailableError,
    DirtyProtocolError,
    DirtyTimeoutError,
    DirtyWorkerError,
)

DIR_ENV = "H2SERVE_DIRTY_DIR"
TIMEOUT_ENV = "H2SERVE_DIRTY_TIMEOUT"
ROUTES_FILE = "routes.json"
CONNECT_WAIT_S = 5.0     # how long a call waits for a (re)starting worker of its app
STREAM_WINDOW = 16       # items a dirty worker may send ahead of the consumer
IDLE_PER_WORKER = 64     # pooled connections kept per dirty worker

_socket_dir: str | None = None


def worker_socket_path(directory: str, index: int) -> str:
    return os.path.join(directory, f"w{index}.sock")


def set_dirty_socket_path(path: str | None) -> None:
    """Where the dirty sockets are (the master sets it before forking HTTP workers)."""
    global _socket_dir
    _socket_dir = path


def get_dirty_socket_path() -> str:
    path = _socket_dir or os.environ.get(DIR_ENV)
    if not path:
        raise DirtyError("dirty arbiters are off: set dirty_workers and dirty_apps")
    return path


class DirtyClient:
    """Thread-safe: any number of threads may call at once, each call on its own connection."""

    def __init__(self, socket_path: str, timeout: float | None = None) -> None:
        self.socket_dir = socket_path
        # dirty_timeout, which the master exports; 0 there means callers wait as
        # long as the action runs (None). Outside a server: 30 s.
        env_timeout = float(os.environ.get(TIMEOUT_ENV, "30") or 30)
        self.timeout: float | None = timeout if timeout is not None else (env_timeout or None)
        self._lock = threading.Lock()
        self._idle: dict[int, list[framing.Channel]] = {}
        self._turn = itertools.count(os.getpid())
        self._routes: dict[str, list[int]] = {}
        self._routes_stamp: int | None = None

    # --- connections -------------------------------------------------------------

    def _load_routes(self) -> dict[str, list[int]]:
        path = os.path.join(self.socket_dir, ROUTES_FILE)
        try:
            stamp = os.stat(path).st_mtime_ns
            if stamp != self._routes_stamp:
                with open(path) as handle:
                    self._routes = json.load(handle)["apps"]
                self._routes_stamp = stamp
        except (OSError, ValueError, KeyError):
            pass
        return self._routes

    def _checkout(self, app_path: str) -> tuple[int, framing.Channel]:
        deadline = time.monotonic() + min(self.timeout or CONNECT_WAIT_S, CONNECT_WAIT_S)
        while True:
            with self._lock:
                indices = self._load_routes().get(app_path)
                if indices is None and self._routes_stamp is not None:
                    raise DirtyAppNotFoundError(app_path)
                indices = indices or []
                turn = next(self._turn)
            for step in range(len(indices)):
                index = indices[(turn + step) % len(indices)]
                chan = self._pooled(index) or self._connect(index)
                if chan is not None:
                    return index, chan
            if time.monotonic() >= deadline:
                raise DirtyNoWorkersAvailableError(app_path)
            time.sleep(0.05)

    def _pooled(self, index: int) -> framing.Channel | None:
        while True:
            with self._lock:
                idle = self._idle.get(index)
                if not idle:
                    return None
                chan = idle.pop()
            if not chan.is_stale():
                return chan
            chan.close()

    def _connect(self, index: int) -> framing.Channel | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(1.0)
            sock.connect(worker_socket_path(self.socket_dir, index))
        except (TimeoutError, FileNotFoundError, ConnectionRefusedError):
            sock.close()
            return None
        except OSError as exc:
            sock.close()
            raise DirtyConnectionError(f"dirty worker {index}: {exc}", self.socket_dir) from exc
        return framing.Channel(sock)

    def _checkin(self, index: int, chan: framing.Channel) -> None:
        with self._lock:
            idle = self._idle.setdefault(index, [])
            if len(idle) < IDLE_PER_WORKER:
                idle.append(chan)
                return
        chan.close()

    # --- calls -------------------------------------------------------------------

    def execute(self, app_path: str, action: str, *args: Any, **kwargs: Any) -> Any:
        """Run one action and return its result (a generator's items as a list)."""
        index, chan = self._checkout(app_path)
        call = _Call(self, index, chan, app_path, action)
        call.send(args, kwargs, stream=False, credit=0)
        kind, body = call.receive(self.timeout)
        if kind == framing.RESULT:
            result = framing.decode_json(body)
        elif kind == framing.RESULT_BYTES:
            result = body
        else:
            call.fail(f"unexpected frame type {kind}")
        self._checkin(index, chan)
        return result

    def stream(self, app_path: str, action: str, *args: Any, **kwargs: Any) -> DirtyStream:
        """Run an action whose result is a generator; iterate to get its items as
        produced. close() (the WSGI server calls it when the client goes away)
        stops the generator in the dirty worker."""
        index, chan = self._checkout(app_path)
        call = _Call(self, index, chan, app_path, action)
        call.send(args, kwargs, stream=True, credit=STREAM_WINDOW)
        return DirtyStream(call, self.timeout)

    def close(self) -> None:
        with self._lock:
            pools, self._idle = self._idle, {}
        for idle in pools.values():
            for chan in idle:
                chan.close()

    def __enter__(self) -> DirtyClient:
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.close()


class _Call:
    """One request on one checked-out connection; turns failures into DirtyErrors."""

    def __init__(self, client: DirtyClient, index: int, chan: framing.Channel, app_path: str,
                 action: str) -> None:
        self.client, self.index, self.chan = client, index, chan
        self.app_path, self.action = app_path, action

    @property
    def name(self) -> str:
        return f"{self.app_path}.{self.action}"

    def send(self, args: tuple, kwargs: dict, stream: bool, credit: int) -> None:
        try:
            frame = framing.encode(framing.REQUEST, {
                "app": self.app_path, "action": self.action, "args": list(args),
                "kwargs": kwargs, "stream": stream, "credit": credit})
        except TypeError as exc:
            self.client._checkin(self.index, self.chan)
            raise DirtyError(f"{self.name}: arguments are not JSON-serializable: {exc}") from exc
        except (ValueError, DirtyProtocolError) as exc:   # too large for one frame
            self.client._checkin(self.index, self.chan)
            raise DirtyError(f"{self.name}: arguments cannot be sent: {exc}") from exc
        try:
            self.chan.sock.settimeout(self.client.timeout)
            self.chan.sock.sendall(frame)
        except OSError as exc:
            self.chan.close()
            raise DirtyWorkerError(f"dirty worker {self.index} running {self.name} is gone: {exc}",
                                   worker_id=self.index) from exc

    def receive(self, timeout: float | None) -> tuple[int, bytes]:
        """The next frame; an ERROR frame is raised as its DirtyError."""
        try:
            frame = self.chan.recv(timeout)
        except framing.PeerClosed:
            self.chan.close()
            raise DirtyWorkerError(f"dirty worker {self.index} exited while running {self.name}",
                                   worker_id=self.index) from None
        except DirtyProtocolError as exc:
            self.chan.close()
            raise DirtyProtocolError(f"{self.name}: {exc}") from None
        except OSError as exc:
            self.chan.close()
            raise DirtyWorkerError(f"dirty worker {self.index} running {self.name}: {exc}",
                                   worker_id=self.index) from None
        if frame is None:
            self.chan.close()
            raise DirtyTimeoutError(f"{self.name} did not answer within {timeout:g} s", timeout)
        if frame[0] == framing.ERROR:
            self.client._checkin(self.index, self.chan)
            raise self._error(framing.decode_json(frame[1]))
        return frame

    def _error(self, info: Any) -> DirtyError:
        info = info if isinstance(info, dict) else {}
        kind = info.get("kind")
        if kind == "not_found":
            return DirtyAppNotFoundError(self.app_path)
        message = f"{self.name} raised {info.get('type', 'an error')}: {info.get('message', '')}"
        return DirtyAppError(message, app_path=self.app_path, action=self.action,
                             traceback=info.get("traceback"), error_type=info.get("type"))

    def fail(self, why: str) -> None:
        self.chan.close()
        raise DirtyProtocolError(f"{self.name}: {why}")


class DirtyStream:
    """The items of a streaming action, as the dirty worker produces them."""

    def __init__(self, call: _Call, timeout: float | None) -> None:
        self._call = call
        self._timeout = timeout
        self._taken = 0        # items consumed since the last credit sent
        self.done = False

    def __iter__(self) -> DirtyStream:
        return self

    def __next__(self) -> Any:
        if self.done:
            raise StopIteration
        call = self._call
        try:
            if self._taken >= STREAM_WINDOW // 2:
                call.chan.send(framing.CREDIT, {"n": self._taken})
                self._taken = 0
            kind, body = call.receive(self._timeout)
        except OSError as exc:
            self.done = True
            call.chan.close()
            raise DirtyWorkerError(f"dirty worker {call.index} running {call.name}: {exc}",
                                   worker_id=call.index) from None
        except DirtyError:
            self.done = True
            raise
        if kind == framing.ITEM_BYTES:
            self._taken += 1
            return body
        if kind == framing.ITEM:
            self._taken += 1
            return framing.decode_json(body)
        self.done = True
        if kind == framing.END:
            call.client._checkin(call.index, call.chan)
            raise StopIteration
        call.fail(f"unexpected frame type {kind} in a stream")

    def close(self) -> None:
        """Stop the generator in the dirty worker (no-op once the stream ended)."""
        if self.done:
            return
        self.done = True
        try:
            self._call.chan.send(framing.CANCEL)
        except OSError:
            pass
        self._call.chan.close()

    def as_bytes(self) -> StreamBody:
        """A WSGI response body: items as bytes (str UTF-8, others JSON lines)."""
        return StreamBody(self)


class StreamBody:
    """Return it from a WSGI app: its close() reaches the dirty worker's generator."""

    def __init__(self, stream: DirtyStream) -> None:
        self.stream = stream

    def __iter__(self) -> Iterator[bytes]:
        for item in self.stream:
            if isinstance(item, bytes):
                yield item
            elif isinstance(item, str):
                yield item.encode()
            else:
                yield json.dumps(item).encode() + b"\n"

    def close(self) -> None:
        self.stream.close()


_clients: dict[tuple[int, float | None], DirtyClient] = {}
_clients_lock = threading.Lock()


def get_dirty_client(timeout: float | None = None) -> DirtyClient:
    """The process's client (one per timeout), shared by its threads.
    timeout defaults to dirty_timeout."""
    key = (os.getpid(), timeout)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = DirtyClient(get_dirty_socket_path(), timeout)
        return client


def close_dirty_client() -> None:
    """Close the pooled connections of this process's clients."""
    with _clients_lock:
        clients = [c for (pid, _), c in _clients.items() if pid == os.getpid()]
        _clients.clear()
    for client in clients:
        client.close()
