"""Process settings gunicorn users expect: environment, sys.path, umask, user and
group switch, daemon mode and captured output.

The master calls ``prepare_process`` once at start (before the application is
imported anywhere) and ``daemonize`` just before the arbiter runs; each worker
calls ``switch_user`` right after fork, after the listeners were bound and
before it imports the application, as gunicorn's workers do.
"""

from __future__ import annotations

import os
import sys
from typing import Any


class ProcessSetupError(Exception):
    """A process setting cannot take effect; the message is one line for the user."""


def apply_raw_env(entries: list[str]) -> None:
    """raw_env: KEY=VALUE entries into os.environ (inherited by the workers)."""
    for entry in entries:
        key, _, value = entry.partition("=")
        os.environ[key.strip()] = value


def apply_pythonpath(paths: list[str], cwd: str) -> None:
    """pythonpath: each directory first on sys.path, in the order given."""
    for path in reversed(paths):
        directory = os.path.abspath(os.path.join(cwd, os.path.expanduser(path)))
        while directory in sys.path:
            sys.path.remove(directory)
        sys.path.insert(0, directory)


def wants_switch(cfg: Any) -> bool:
    """Whether user or group names someone other than who we run as."""
    return ((cfg.user is not None and cfg.user != os.geteuid())
            or (cfg.group is not None and cfg.group != os.getegid()))


def check_can_switch(cfg: Any) -> None:
    """Refuse at start, not in every worker, when --user/--group cannot be honoured."""
    if wants_switch(cfg) and os.geteuid() != 0:
        asked = ", ".join(f"{name} {value}" for name, value in
                          (("user", cfg.user), ("group", cfg.group)) if value is not None)
        raise ProcessSetupError(
            f"cannot switch to {asked}: h2serve runs as uid {os.geteuid()}, and only root may "
            "switch; start it as root or leave --user/--group out")


def prepare_process(cfg: Any) -> None:
    """In the master, before anything is imported, bound or written: umask, raw_env,
    pythonpath, and the check that a user switch is possible."""
    if cfg.umask is not None:
        os.umask(cfg.umask)
    apply_raw_env(cfg.raw_env)
    apply_pythonpath(cfg.pythonpath, cfg.chdir or os.getcwd())
    check_can_switch(cfg)


def deployment_problem(cfg: Any) -> str | None:
    """--check-config's checks beyond parsing, short of binding: every TCP bind host
    resolves and the key matches its certificate. One line, or None when fine."""
    import socket

    from h2serve.transport.listeners import parse_bind

    for text in cfg.bind:
        address = parse_bind(text)
        if address.kind != "tcp" or not address.host:
            continue
        try:
            socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return f"--bind {text}: cannot resolve {address.host!r}: {reason}"
    if cfg.certfile and not cfg.plaintext:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(cfg.certfile, cfg.keyfile)
        except ssl.SSLError as exc:
            if "KEY_VALUES_MISMATCH" in str(exc):
                return f"--keyfile {cfg.keyfile} is not the key of --certfile {cfg.certfile}"
            return f"cannot load --certfile {cfg.certfile} with --keyfile {cfg.keyfile}: {exc.reason or exc}"
        except OSError as exc:
            return f"cannot read --certfile/--keyfile: {exc.strerror or exc}"
    return None


def hand_over(fd_or_path: int | str | None, cfg: Any) -> None:
    """Give a file the master made (heartbeat, log) to the workers' user and group,
    so they can still change or reopen it after switch_user."""
    if fd_or_path is None or fd_or_path == "-" or not wants_switch(cfg):
        return
    uid = cfg.user if cfg.user is not None else -1
    gid = cfg.group if cfg.group is not None else -1
    try:
        if isinstance(fd_or_path, int):
            os.fchown(fd_or_path, uid, gid)
        elif os.path.exists(fd_or_path):
            os.chown(fd_or_path, uid, gid)
    except OSError as exc:
        raise ProcessSetupError(f"cannot give {fd_or_path} to user {uid}: {exc.strerror}") from None


def switch_user(cfg: Any) -> None:
    """In a worker, after fork: take on group, supplementary groups and user (in that
    order: once the user is switched, the group can no longer be). Raises
    ProcessSetupError when the kernel refuses."""
    if not wants_switch(cfg):
        return
    uid = cfg.user if cfg.user is not None else os.geteuid()
    gid = cfg.group if cfg.group is not None else os.getegid()
    try:
        if cfg.initgroups:
            import pwd

            os.initgroups(pwd.getpwuid(uid).pw_name, gid)
        elif uid != os.geteuid():
            os.setgroups([gid])   # do not keep root's supplementary groups
        if gid != os.getegid():
            os.setgid(gid)
        if uid != os.geteuid():
            os.setuid(uid)
    except (OSError, KeyError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else f"no user with id {uid}"
        raise ProcessSetupError(f"cannot switch to uid {uid} gid {gid}: {reason}") from None


def daemonize(inherit_stdio: bool) -> None:
    """Fork twice with a new session in between, so the server has no terminal and
    is not a session leader; the caller's process exits at once with status 0.
    Without inherit_stdio, standard streams go to /dev/null (logs need a file)."""
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    if inherit_stdio:
        os.environ["PYTHONUNBUFFERED"] = "1"
        return
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)


def capture_output(error_logfile: str) -> None:
    """capture_output: the application's print() and stray tracebacks (file
    descriptors 1 and 2, inherited by the workers) go to the error log file."""
    if error_logfile in (None, "-"):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(error_logfile, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


# Modules a worker imports lazily while it serves. Imported before --user takes
# effect, so a Python installed where that user cannot read still serves.
SERVING_MODULES = ("h2serve.connection.http1", "h2serve.connection.http2", "h2serve.app",
                   "h2serve.transport.tls", "h2serve.statsd", "faulthandler", "json")


def import_serving_modules() -> None:
    """Before a worker switches user, so a Python it cannot read still serves."""
    import importlib

    for name in SERVING_MODULES:
        importlib.import_module(name)


def set_proc_title(title: str) -> None:
    """ps shows the role, as gunicorn's do, when setproctitle is installed."""
    try:
        import setproctitle  # optional

        setproctitle.setproctitle(title)
    except ImportError:
        pass
