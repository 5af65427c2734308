"""The dirty arbiter process: forks dirty_workers dirty workers, tells HTTP
workers which of them load each app (routes.json), and keeps them alive:
a dead one is replaced, a hung one (no beat, or one action silent past
dirty_timeout) is killed first. TERM/INT stop gracefully (dirty_graceful_timeout),
QUIT at once, HUP restarts the workers with re-read settings, USR1 reopens logs.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import sys
import time
from typing import Any

from h2serve import hooks
from h2serve.dirty.app import allocate
from h2serve.dirty.board import Board
from h2serve.dirty.client import ROUTES_FILE
from h2serve.dirty.worker import DirtyWorker, DirtyWorkerView
from h2serve.process import set_proc_title

log = logging.getLogger("h2serve.error")
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1,
           signal.SIGCHLD, signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR2, signal.SIGWINCH)
LOOP_S = 0.25
APP_LOAD_ERROR = 4


class _Record:
    __slots__ = ("pid", "index", "board", "retiring", "retire_by")

    def __init__(self, pid: int, index: int, board: Board) -> None:
        self.pid, self.index, self.board, self.retiring = pid, index, board, False
        self.retire_by = 0.0   # a retiring worker still running then is killed


class DirtyArbiter:
    """Runs in the dirty arbiter process; hooks see it as ``arbiter``."""

    def __init__(self, cfg: Any, directory: str, master_pid: int) -> None:
        self.cfg = cfg
        self.directory = directory
        self.master_pid = master_pid
        self.pid = os.getpid()
        self.log = log
        self.workers: dict[int, _Record] = {}
        self.routes: dict[str, list[int]] = {}
        self.age = 0
        self.signals: list[int] = []
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        self.stopping = False

    @property
    def num_workers(self) -> int:
        return self.cfg.dirty_workers

    def run(self) -> int:
        for signum in SIGNALS:
            signal.signal(signum, self._on_signal)
        if self.cfg.proc_name:
            set_proc_title(f"h2serve: dirty-arbiter [{self.cfg.proc_name}]")
        try:
            self._publish_routes()
        except Exception as exc:
            log.error("Dirty arbiter: cannot load dirty_apps: %s", exc)
            return APP_LOAD_ERROR
        log.info("Dirty arbiter (pid:%d) starting %d dirty workers", self.pid, self.num_workers)
        while not self.stopping:
            self._reap()
            while self.signals and not self.stopping:
                self._handle(self.signals.pop(0))
            if self.stopping:
                break
            if os.getppid() != self.master_pid:
                log.warning("Dirty arbiter: the master is gone; stopping")
                self._stop(graceful=False)
                break
            self._murder_hung()
            self._kill_overdue_retirees()
            self._spawn_missing()
            self._sleep(LOOP_S)
        return 0

    def _publish_routes(self) -> None:
        self.routes = allocate(list(self.cfg.dirty_apps), self.num_workers)
        path = os.path.join(self.directory, ROUTES_FILE)
        temporary = f"{path}.tmp"
        with open(temporary, "w") as handle:
            json.dump({"apps": self.routes, "workers": self.num_workers}, handle)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if signum != signal.SIGCHLD and len(self.signals) < 5:
            self.signals.append(signum)
        try:
            os.write(self._wake_w, b".")
        except OSError:
            pass

    def _sleep(self, timeout: float) -> None:
        try:
            if select.select([self._wake_r], [], [], timeout)[0]:
                while os.read(self._wake_r, 1024):
                    pass
        except (BlockingIOError, InterruptedError):
            pass

    def _handle(self, signum: int) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self._stop(graceful=True)
        elif signum == signal.SIGQUIT:
            self._stop(graceful=False)
        elif signum == signal.SIGHUP:
            self._reload()
        elif signum == signal.SIGUSR1:
            from h2serve.logs import reopen_logs

            reopen_logs()
            for pid in list(self.workers):
                self._kill(pid, signal.SIGUSR1)

    def _reload(self) -> None:
        """HUP: settings re-read, new workers started, the old ones stopped gracefully."""
        try:
            self.cfg = self.cfg.reloaded()
            self._publish_routes()
        except Exception as exc:
            log.error("Dirty arbiter: reload failed, keeping the running workers: %s", exc)
            return
        log.info("Dirty arbiter: reloading its workers")
        retire_by = time.monotonic() + self.cfg.dirty_graceful_timeout
        for record in self.workers.values():
            if not record.retiring:
                record.retiring = True
                record.retire_by = retire_by
            self._kill(record.pid, signal.SIGTERM)
        self._spawn_missing()

    # --- workers -------------------------------------------------------------------

    def _spawn_missing(self) -> None:
        held = {r.index for r in self.workers.values() if not r.retiring}
        for index in range(self.num_workers):
            if index not in held:
                self._spawn(index)

    def _spawn(self, index: int) -> None:
        self.age += 1
        apps = [path for path, indices in self.routes.items() if index in indices]
        board = Board(max(1, self.cfg.dirty_threads))
        view = DirtyWorkerView(self.cfg, index, self.age, apps, self.pid)
        pid = os.fork()
        if pid:
            self.workers[pid] = _Record(pid, index, board)
            log.info("Booting dirty worker %d with pid: %d", index, pid)
            return
        code = 1
        try:
            for signum in SIGNALS:
                signal.signal(signum, signal.SIG_DFL)
            os.close(self._wake_r)
            os.close(self._wake_w)
            for other in self.workers.values():
                other.board.close()
            if self.cfg.proc_name:
                set_proc_title(f"h2serve: dirty-worker [{self.cfg.proc_name}]")
            code = DirtyWorker(self.cfg, self.directory, view, board, self).run()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            log.exception("Dirty worker %d failed", index)
            code = APP_LOAD_ERROR
        finally:
            try:
                hooks.call_logged(self.cfg, "dirty_worker_exit", self, view)
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if not pid:
                return
            record = self.workers.pop(pid, None)
            if record is None:
                continue
            record.board.close()
            code = os.waitstatus_to_exitcode(status)
            if code == 0 or self.stopping or record.retiring:
                log.info("Dirty worker %d (pid:%d) exited", record.index, pid)
            elif code < 0:
                log.error("Dirty worker %d (pid:%d) was killed by %s; replacing it", record.index,
                          pid, signal.Signals(-code).name)
            else:
                log.error("Dirty worker %d (pid:%d) exited with code %d; replacing it",
                          record.index, pid, code)
                if code == APP_LOAD_ERROR:
                    time.sleep(1.0)   # an app that cannot load: do not spin

    def _murder_hung(self) -> None:
        timeout = self.cfg.dirty_timeout
        if not timeout:
            return
        now = time.monotonic()
        for record in list(self.workers.values()):
            busy = record.board.oldest_busy()
            silent = now - record.board.last_beat()
            if busy and now - busy > timeout:
                why = f"an action ran {now - busy:.1f} s"
            elif silent > max(timeout, 10.0) and not record.retiring:
                why = f"no heartbeat for {silent:.1f} s"
            else:
                continue
            log.critical("DIRTY WORKER TIMEOUT (pid:%d): %s (dirty_timeout %g s); killing it",
                         record.pid, why, timeout)
            self._kill(record.pid, signal.SIGKILL)

    def _kill_overdue_retirees(self) -> None:
        """Workers a HUP replaced get dirty_graceful_timeout to finish their
        actions (and their streams' slow readers), then SIGKILL."""
        now = time.monotonic()
        for record in list(self.workers.values()):
            if record.retiring and record.retire_by and now >= record.retire_by:
                log.warning("Dirty worker %d (pid:%d) still running %g s after a reload; "
                            "killing it", record.index, record.pid,
                            self.cfg.dirty_graceful_timeout)
                record.retire_by = 0.0
                self._kill(record.pid, signal.SIGKILL)

    def _kill(self, pid: int, sig: int) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    def _stop(self, graceful: bool) -> None:
        self.stopping = True
        for pid in list(self.workers):
            self._kill(pid, signal.SIGTERM if graceful else signal.SIGQUIT)
        limit = time.monotonic() + (self.cfg.dirty_graceful_timeout if graceful else 1.0)
        while self.workers and time.monotonic() < limit:
            self._reap()
            self._sleep(0.05)
        for pid in list(self.workers):
            self._kill(pid, signal.SIGKILL)
        while self.workers:
            self._reap()
            self._sleep(0.05)
        log.info("Dirty arbiter (pid:%d) exiting", self.pid)
