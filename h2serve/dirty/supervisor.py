"""The main arbiter's side of the dirty arbiter: made private directory,
fork, watch, signal forwarding, stop. Runs in the master process, called
from h2serve.arbiter; the master's own HTTP workers only learn the socket
directory (inherited when they are forked)."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from typing import Any

from h2serve import hooks, process
from h2serve.dirty import client

log = logging.getLogger("h2serve.error")
RESPAWN_PAUSE_S = 1.0
FORWARDED = (signal.SIGHUP, signal.SIGUSR1)


class DirtySupervisor:
    def __init__(self, master: Any) -> None:
        self.master = master
        self.cfg = master.cfg
        # 0700 (mkdtemp): only the server's user can reach the sockets in it; with
        # --user/--group that is the workers' user, who both serves and calls.
        self.directory = tempfile.mkdtemp(prefix="h2serve-dirty-")
        if process.wants_switch(self.cfg):
            os.chown(self.directory, -1 if self.cfg.user is None else self.cfg.user,
                     -1 if self.cfg.group is None else self.cfg.group)
        client.set_dirty_socket_path(self.directory)
        os.environ[client.DIR_ENV] = self.directory
        os.environ[client.TIMEOUT_ENV] = str(self.cfg.dirty_timeout or 0)
        self.pid = 0
        self.started = 0.0
        self.stopping = False

    def spawn(self) -> None:
        """Master: fork the dirty arbiter (on_dirty_starting first, at every start)."""
        self.started = time.monotonic()
        master = self.master
        hooks.call(self.cfg, "on_dirty_starting", master)
        pid = os.fork()
        if pid:
            self.pid = pid
            log.info("Dirty arbiter started (pid: %d), sockets in %s", pid, self.directory)
            return
        code = 1
        try:   # --- the dirty arbiter process ------------------------------------------
            for lsock in master.listeners:
                lsock.close()
            for fd in (master._wake_r, master._wake_w):
                os.close(fd)
            for record in master.workers.values():
                record.heartbeat.close()
            if master.metrics_server is not None:
                master.metrics_server.close()
            from h2serve.dirty.arbiter import DirtyArbiter

            process.switch_user(self.cfg)   # as HTTP workers do, before any dirty app loads
            code = DirtyArbiter(self.cfg, self.directory, master.pid).run()
        except BaseException:
            log.exception("Dirty arbiter failed")
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def reaped(self, pid: int, status: int) -> bool:
        """Master, in its reap loop: whether pid was the dirty arbiter."""
        if not pid or pid != self.pid:
            return False
        self.pid = 0
        if not self.stopping:
            log.error("Dirty arbiter (pid:%d) exited with code %d; restarting it", pid,
                      os.waitstatus_to_exitcode(status))
        return True

    def watch(self) -> None:
        """Master loop: a dead dirty arbiter is started again (at most once a second)."""
        if not self.pid and not self.stopping \
                and time.monotonic() - self.started >= RESPAWN_PAUSE_S:
            self.spawn()

    def forward(self, signum: int) -> None:
        if self.pid and signum in FORWARDED:
            if signum == signal.SIGHUP:
                self.cfg = self.master.cfg
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def stop(self, graceful: bool) -> None:
        """Master, after its HTTP workers stopped: stop the dirty tree, remove the directory."""
        self.stopping = True
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGTERM if graceful else signal.SIGQUIT)
            except ProcessLookupError:
                pass
            limit = time.monotonic() + (self.cfg.dirty_graceful_timeout + 2 if graceful else 3)
            while self.pid and time.monotonic() < limit:
                try:
                    done, _ = os.waitpid(self.pid, os.WNOHANG)
                except ChildProcessError:
                    done = self.pid
                if done:
                    self.pid = 0
                    break
                time.sleep(0.05)
            if self.pid:
                log.error("Dirty arbiter (pid:%d) did not stop; killing it", self.pid)
                try:
                    os.kill(self.pid, signal.SIGKILL)
                    os.waitpid(self.pid, 0)
                except (ProcessLookupError, ChildProcessError):
                    pass
                self.pid = 0
        shutil.rmtree(self.directory, ignore_errors=True)


def start(master: Any) -> DirtySupervisor | None:
    """Master, once before its first HTTP worker: None unless dirty_workers and dirty_apps are set."""
    cfg = master.cfg
    if not cfg.dirty_workers or not cfg.dirty_apps:
        return None
    supervisor = DirtySupervisor(master)
    supervisor.spawn()
    return supervisor
