"""A dirty worker process: loads its dirty apps once, then runs their actions
for HTTP workers connecting to its own unix socket.

Threads: the main thread accepts and beats; one thread per connection reads
requests and runs them, at most dirty_threads actions at once (the others
wait for a slot). A streaming action's generator is advanced only while the
client has credit left, and is closed when the client cancels or goes away.
"""

from __future__ import annotations

import collections
import contextlib
import inspect
import logging
import os
import signal
import socket
import threading
import time
import traceback
from typing import Any

from h2serve import hooks
from h2serve.dirty import framing
from h2serve.dirty.app import instantiate
from h2serve.dirty.board import Board
from h2serve.dirty.client import worker_socket_path
from h2serve.dirty.errors import DirtyProtocolError

log = logging.getLogger("h2serve.error")
IDLE_POLL_S = 0.5


class DirtyWorkerView:
    """What dirty hooks get as ``worker`` (gunicorn's names)."""

    def __init__(self, cfg: Any, index: int, age: int, app_paths: list[str], ppid: int) -> None:
        self.cfg = cfg
        self.index = index
        self.age = age
        self.app_paths = list(app_paths)
        self.apps: dict[str, Any] = {}
        self.ppid = ppid
        self.pid: int | None = None
        self.log = log

    def __repr__(self) -> str:
        return f"<h2serve dirty worker {self.index} pid={self.pid}>"


class SlotLine:
    """The worker's dirty_threads action slots, handed out first come, first
    served: a freed slot goes to the call that has waited longest, not to
    whichever thread asks next (queue.Queue's way, which left some calls
    waiting behind many later ones and inflated the tail latency)."""

    def __init__(self, count: int) -> None:
        self._count = count
        self._free = collections.deque(range(count))
        self._waiting: collections.deque[list] = collections.deque()
        self._lock = threading.Lock()

    def take(self) -> int:
        with self._lock:
            if self._free and not self._waiting:
                return self._free.popleft()
            ticket: list = [threading.Event(), None]
            self._waiting.append(ticket)
        ticket[0].wait()
        return ticket[1]

    @property
    def in_use(self) -> int:
        """Slots held by running actions (a waiter's slot is handed over, never free)."""
        return self._count - len(self._free)

    def give(self, slot: int) -> None:
        with self._lock:
            if self._waiting:
                ticket = self._waiting.popleft()
                ticket[1] = slot
                ticket[0].set()
            else:
                self._free.append(slot)


class DirtyWorker:
    """Runs in the dirty worker process, from the fork to os._exit."""

    def __init__(self, cfg: Any, directory: str, view: DirtyWorkerView, board: Board,
                 arbiter: Any) -> None:
        self.cfg = cfg
        self.directory = directory
        self.view = view
        self.board = board
        self.arbiter = arbiter
        self.apps: dict[str, Any] = {}
        self.stopping = False
        self.slots = SlotLine(board.slots)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        signal.signal(signal.SIGQUIT, lambda *_: os._exit(0))
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGUSR1, self._on_usr1)
        self.view.pid = os.getpid()
        hooks.call(self.cfg, "dirty_post_fork", self.arbiter, self.view)
        for path in self.view.app_paths:
            app = instantiate(path)
            app.init()
            self.apps[path] = app
        self.view.apps = self.apps
        hooks.call(self.cfg, "dirty_worker_init", self.view)
        listener, inode = self._bind()
        log.info("Dirty worker %d (pid:%d) serving %s", self.view.index, os.getpid(),
                 ", ".join(self.view.app_paths) or "no app")
        try:
            self._accept_loop(listener)
        finally:
            listener.close()
            path = worker_socket_path(self.directory, self.view.index)
            with contextlib.suppress(OSError):
                if os.stat(path).st_ino == inode:   # not yet replaced by a successor
                    os.unlink(path)
            while self.slots.in_use:   # graceful: the dirty arbiter kills us past its timeout
                time.sleep(0.05)
            for path, app in self.apps.items():
                try:
                    app.close()
                except Exception:
                    log.exception("dirty app %s: close() raised", path)
        return 0

    def _on_term(self, *_: Any) -> None:
        self.stopping = True

    def _on_usr1(self, *_: Any) -> None:
        from h2serve.logs import reopen_logs

        reopen_logs()

    def _bind(self) -> tuple[socket.socket, int]:
        """Listen on a fresh path, mode 0600, then rename it over the worker's
        public one, so a replacement takes new calls at once."""
        final = worker_socket_path(self.directory, self.view.index)
        temporary = f"{final}.{os.getpid()}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            sock.bind(temporary)
        finally:
            os.umask(old_umask)
        os.chmod(temporary, 0o600)
        sock.listen(256)
        inode = os.stat(temporary).st_ino
        os.replace(temporary, final)
        return sock, inode

    def _accept_loop(self, listener: socket.socket) -> None:
        listener.settimeout(IDLE_POLL_S)
        ppid = self.view.ppid
        while not self.stopping:
            self.board.beat()
            if os.getppid() != ppid:
                log.warning("Dirty worker %d: its arbiter is gone; exiting", self.view.index)
                return
            try:
                conn, _ = listener.accept()
            except (TimeoutError, InterruptedError):
                continue
            except OSError as exc:
                log.error("Dirty worker %d: accept failed: %s", self.view.index, exc)
                time.sleep(0.1)
                continue
            conn.settimeout(None)
            threading.Thread(target=self._serve_connection, args=(conn,), daemon=True,
                             name=f"dirty-conn-{conn.fileno()}").start()

    # --- connection threads ----------------------------------------------------------

    def _serve_connection(self, conn: socket.socket) -> None:
        chan = framing.Channel(conn)
        try:
            while True:
                try:
                    frame = chan.recv(IDLE_POLL_S)
                except (framing.PeerClosed, OSError):
                    return
                except DirtyProtocolError as exc:
                    log.warning("Dirty worker %d: bad frame from a client: %s", self.view.index, exc)
                    self._send_error(chan, "protocol", exc)
                    return
                if frame is None:
                    if self.stopping:
                        return
                    continue
                kind, body = frame
                if kind != framing.REQUEST:
                    continue   # a CREDIT or CANCEL that crossed the end of its stream
                try:
                    request = framing.decode_json(body)
                    if not isinstance(request, dict):
                        raise DirtyProtocolError("a request must be a JSON object")
                except DirtyProtocolError as exc:
                    self._send_error(chan, "protocol", exc)
                    return
                if not self._handle(chan, request):
                    return
        finally:
            chan.close()

    def _send_error(self, chan: framing.Channel, kind: str, exc: BaseException,
                    tb: str | None = None) -> None:
        with contextlib.suppress(OSError, DirtyProtocolError):
            chan.send(framing.ERROR, {"kind": kind, "type": type(exc).__name__,
                                      "message": str(exc)[:4096], "traceback": tb})

    def _handle(self, chan: framing.Channel, request: dict) -> bool:
        """Run one request; False when the connection must close."""
        app_path, action = request.get("app"), request.get("action")
        app = self.apps.get(app_path)   # type: ignore[arg-type]
        if app is None:
            self._send_error(chan, "not_found", LookupError(f"{app_path} is not loaded here"))
            return True
        args, kwargs = request.get("args") or [], request.get("kwargs") or {}
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            self._send_error(chan, "protocol", DirtyProtocolError("bad args or kwargs"))
            return False
        slot = self.slots.take()
        if chan.peer_gone():
            # Its caller gave up while the call waited for a slot (dirty_timeout,
            # a client reset): running it would only delay the calls behind it.
            self.slots.give(slot)
            log.info("Dirty worker %d: %s.%s dropped, its caller left while it waited",
                     self.view.index, app_path, action)
            return False
        try:
            self.board.busy(slot, time.monotonic())
            try:
                result = app(action, *args, **kwargs)
                if inspect.isgenerator(result) and not request.get("stream"):
                    result = list(result)
            except Exception as exc:
                log.info("Dirty app %s.%s raised %s: %s", app_path, action, type(exc).__name__, exc)
                self._send_error(chan, "app", exc, traceback.format_exc())
                return True
            if request.get("stream"):
                if not inspect.isgenerator(result):
                    result = iter([result])
                return self._stream(chan, result, slot, int(request.get("credit") or 1))
            return self._send_result(chan, framing.RESULT, framing.RESULT_BYTES, result) is not False
        finally:
            self.board.busy(slot, 0.0)
            self.slots.give(slot)

    def _send_result(self, chan: framing.Channel, kind: int, bytes_kind: int,
                     value: Any) -> bool | None:
        """True when sent; None when the value cannot be encoded (an ERROR frame
        went instead: the call is over); False when the connection broke."""
        try:
            frame = framing.encode(bytes_kind if isinstance(value, (bytes, bytearray)) else kind,
                                   value)
        except (TypeError, ValueError, DirtyProtocolError) as exc:
            self._send_error(chan, "app", TypeError(f"result cannot be sent: {exc}"))
            return None
        try:
            chan.sock.sendall(frame)
        except OSError:
            return False
        return True

    def _stream(self, chan: framing.Channel, gen: Any, slot: int, credit: int) -> bool:
        """Send the generator's items while the client grants credit."""
        try:
            while True:
                self.board.busy(slot, time.monotonic())
                try:
                    item = next(gen)
                except StopIteration:
                    chan.send(framing.END)
                    return True
                except Exception as exc:
                    self._send_error(chan, "app", exc, traceback.format_exc())
                    return True
                self.board.busy(slot, 0.0)   # waiting for the reader is not hanging
                while True:
                    frame = chan.poll() if credit > 0 else chan.recv(IDLE_POLL_S)
                    if frame is None:
                        if credit > 0:
                            break
                        continue
                    kind, body = frame
                    if kind == framing.CREDIT:
                        grant = framing.decode_json(body)
                        credit += int(grant.get("n", 0)) if isinstance(grant, dict) else 0
                    elif kind == framing.CANCEL:
                        log.info("Dirty worker %d: stream cancelled by its client",
                                 self.view.index)
                        return False
                sent = self._send_result(chan, framing.ITEM, framing.ITEM_BYTES, item)
                if sent is None:   # the client took the ERROR as the stream's end: so is it here
                    return True
                if not sent:
                    return False
                credit -= 1
        except (framing.PeerClosed, OSError, DirtyProtocolError, ValueError):
            log.info("Dirty worker %d: stream client gone", self.view.index)
            return False
        finally:
            gen.close()   # runs the generator's finally blocks when stopped early
