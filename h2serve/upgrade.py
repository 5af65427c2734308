"""USR2, as gunicorn's binary upgrade: the master forks a new master that
executes the code now installed, with the old one's arguments and start
directory, and hands it the listening sockets by the systemd protocol (fds 3,
4, ... and LISTEN_FDS; the --metrics-bind ones after them, named in
METRICS_FDS_ENV). The pidfile moves to PIDFILE.oldbin while both run."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import sys
from typing import Any

from h2serve import hooks

log = logging.getLogger("h2serve.error")

UPGRADE_FROM_ENV = "H2SERVE_UPGRADE_FROM"   # set for a master started by USR2: the old one's pid
METRICS_FDS_ENV = "H2SERVE_METRICS_FDS"     # ... and the --metrics-bind sockets it hands over


def start_new_master(arbiter: Any, sockets: list[socket.socket],
                     metrics_sockets: list[socket.socket]) -> int:
    """In the old master: the new master's pid. The child runs pre_exec, then
    executes ``python -m h2serve`` with the sockets as its first fds; it never
    returns."""
    pidfile = arbiter.cfg.pidfile
    if pidfile:
        with contextlib.suppress(OSError):
            os.replace(pidfile, f"{pidfile}.oldbin")
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    try:   # --- the new master, before exec ------------------------------------------
        hooks.call(arbiter.cfg, "pre_exec", arbiter)
        env = dict(os.environ)
        high = [fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD, 256)
                for sock in sockets + metrics_sockets]
        for index, fd in enumerate(high):
            os.dup2(fd, 3 + index, inheritable=True)
        env["LISTEN_FDS"] = str(len(sockets))
        env["LISTEN_PID"] = str(os.getpid())   # exec keeps the pid
        if metrics_sockets:
            env[METRICS_FDS_ENV] = ",".join(
                str(3 + len(sockets) + index) for index in range(len(metrics_sockets)))
        env[UPGRADE_FROM_ENV] = str(arbiter.pid)
        os.chdir(arbiter.start_cwd)
        os.execve(sys.executable, [sys.executable, "-m", "h2serve", *arbiter.start_argv], env)
    except BaseException:
        log.exception("USR2: the new master could not be started")
    finally:
        os._exit(1)


def take_pidfile_back(pidfile: str | None) -> None:
    """The new master died: PIDFILE.oldbin becomes PIDFILE again."""
    if pidfile and os.path.exists(f"{pidfile}.oldbin"):
        with contextlib.suppress(OSError):
            os.replace(f"{pidfile}.oldbin", pidfile)
