"""gunicorn's server hooks, called at gunicorn's points with objects that carry
what hook code reads (docs/gunicorn.md, "Server hooks").

A hook is a setting (a callable in the config file, or "module.function").
What the hooks see is a small, stable view, not h2serve's internals:
``server`` is the Arbiter (``cfg``, ``pid``, ``log``, ``num_workers``,
``proc_name``, ``WORKERS``), ``worker`` a :class:`WorkerView`, ``req`` a
:class:`RequestView` and ``resp`` a :class:`ResponseView`.

What happens when a hook raises follows gunicorn: the traceback is logged
once; a master hook's failure stops the master, a worker's start-up hook's
failure fails that worker's boot, and the rest (worker_exit, post_request,
worker_int, worker_abort) are logged and otherwise ignored. pre_request
raising answers the request with a 500.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("h2serve.error")

# name -> (arity, who calls it), in gunicorn's order; the docs are built from it.
HOOKS: dict[str, tuple[int, str]] = {
    "on_starting": (1, "master, before the listeners are opened"),
    "on_reload": (1, "master, on HUP (or --reload), before the new workers start"),
    "when_ready": (1, "master, once the listeners are open, before the first worker"),
    "pre_fork": (2, "master, just before a worker is forked (worker.pid is None)"),
    "post_fork": (2, "worker, just after the fork, before the user switch and the app import"),
    "post_worker_init": (1, "worker, once the app is imported, before it serves"),
    "worker_int": (1, "worker, on SIGINT or SIGQUIT"),
    "worker_abort": (1, "worker, on SIGABRT (the master sends it to a worker past --timeout)"),
    "pre_exec": (1, "new master (USR2), just before it executes the new code"),
    "pre_request": (2, "worker, pool thread, before the app is called"),
    "post_request": (4, "worker, pool thread, after the response (and its access log line)"),
    "child_exit": (2, "master, after a worker has exited"),
    "worker_exit": (2, "worker, as it exits"),
    "nworkers_changed": (3, "master, when the wanted worker count changes (TTIN, TTOU, HUP)"),
    "on_exit": (1, "master, just before it exits"),
    "ssl_context": (2, "master and workers, to build the TLS context (see docs/gunicorn.md)"),
    "on_dirty_starting": (1, "master, just before the dirty arbiter is forked (docs/dirty.md)"),
    "dirty_post_fork": (2, "dirty worker, just after the fork, before its dirty apps load"),
    "dirty_worker_init": (1, "dirty worker, once its dirty apps ran init()"),
    "dirty_worker_exit": (2, "dirty worker, as it exits"),
}


class HookError(Exception):
    """A hook raised (already logged with its traceback)."""


def to_hook(name: str) -> Callable[[Any], Callable | None]:
    """A setting converter: None, a callable taking the hook's arguments, or
    "module.function" naming one (imported when the configuration is read)."""
    arity = HOOKS[name][0]

    def convert(raw: Any) -> Callable | None:
        if raw is None or raw == "":
            return None
        if isinstance(raw, str):
            module_name, _, attr = raw.rpartition(".")
            if not module_name:
                raise ValueError(f"{raw!r} is not module.function")
            try:
                raw = getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError) as exc:
                raise ValueError(f"cannot load {raw!r}: {exc}") from None
        if not callable(raw):
            raise ValueError(f"must be callable, not {type(raw).__name__}")
        try:
            inspect.signature(raw).bind(*range(arity))
        except TypeError:
            raise ValueError(f"must accept {arity} positional argument{'s' * (arity > 1)} "
                             f"as gunicorn's {name} does") from None
        except ValueError:   # a builtin without a signature: trust it
            pass
        return raw

    return convert


def call(cfg: Any, name: str, *args: Any) -> None:
    """Run one hook if it is set. What it raises is logged with its traceback
    and re-raised as HookError for the caller to treat as gunicorn does."""
    hook = getattr(cfg, name, None)
    if hook is None:
        return
    try:
        hook(*args)
    except Exception as exc:
        log.exception("Exception in %s hook", name)
        raise HookError(f"the {name} hook raised {type(exc).__name__}: {exc}") from exc


def call_logged(cfg: Any, name: str, *args: Any) -> None:
    """Run a hook whose failure gunicorn only logs."""
    try:
        call(cfg, name, *args)
    except HookError:
        pass


class WorkerView:
    """The ``worker`` hooks receive: the same object in the master (pre_fork,
    child_exit) and, after the fork, in the worker for its own hooks."""

    def __init__(self, cfg: Any, age: int, ppid: int) -> None:
        self.cfg = cfg
        self.age = age
        self.ppid = ppid
        self.pid: int | None = None
        self.log = log
        self.booted = False
        self.app: Any = None
        self._worker: Any = None    # the serving h2serve.worker.Worker, in the worker

    def attach(self, worker: Any) -> None:
        """In the worker: from now on alive, nr and app follow the running worker."""
        self._worker = worker
        self.pid = os.getpid()

    @property
    def alive(self) -> bool:
        worker = self._worker
        return worker is None or (worker.running and not worker.draining)

    @property
    def nr(self) -> int:
        """Requests this worker has finished (in post_request: before this one)."""
        worker = self._worker
        return worker.requests_served if worker is not None else 0

    def __repr__(self) -> str:
        return f"<h2serve worker pid={self.pid} age={self.age}>"


class RequestView:
    """The ``req`` of pre_request and post_request, as gunicorn's Request:
    header names upper-case, version a tuple."""

    __slots__ = ("method", "uri", "path", "query", "version", "headers", "scheme",
                 "remote_addr", "started")

    def __init__(self, request: Any, environ: dict[str, Any]) -> None:
        self.method = request.method
        self.uri = request.target
        self.path, _, self.query = request.target.partition("?")
        self.version = (2, 0) if request.http_version == "2" else tuple(
            int(part) for part in request.http_version.split("."))
        self.headers = [(name.upper(), value) for name, value in request.headers]
        self.scheme = environ.get("wsgi.url_scheme", "http")
        self.remote_addr = environ.get("REMOTE_ADDR", "")
        self.started = time.time()

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


class ResponseView:
    """The ``resp`` of post_request: what was sent."""

    __slots__ = ("status", "status_code", "headers", "sent", "response_length")

    def __init__(self, responder: Any) -> None:
        self.status = responder.status or str(responder.status_code)
        self.status_code = responder.status_code
        self.headers = list(responder.headers)
        self.sent = self.response_length = responder.bytes_sent


class RequestHooks:
    """pre_request and post_request for one worker; None unless one is set."""

    def __init__(self, cfg: Any, worker: WorkerView) -> None:
        self.cfg = cfg
        self.worker = worker
        self.pre = cfg.pre_request
        self.post = cfg.post_request

    @classmethod
    def for_worker(cls, cfg: Any, worker: WorkerView) -> RequestHooks | None:
        if cfg.pre_request is None and cfg.post_request is None:
            return None
        return cls(cfg, worker)

    def before(self, request: Any, environ: dict[str, Any]) -> RequestView:
        """Pool thread. What pre_request raises propagates: the request gets a 500."""
        view = RequestView(request, environ)
        if self.pre is not None:
            self.pre(self.worker, view)
        return view

    def after(self, view: RequestView | None, request: Any, environ: dict[str, Any],
              responder: Any) -> None:
        """Pool thread, after the access log line; failures are only logged."""
        if self.post is None:
            return
        try:
            self.post(self.worker, view or RequestView(request, environ), environ,
                      ResponseView(responder))
        except Exception:
            log.exception("Exception in post_request hook")


def server_tls_context(cfg: Any) -> Any:
    """The server's TLS context: the ssl_context hook's, given the default
    factory (the context the TLS settings describe) as gunicorn does, or the
    default."""
    from h2serve.transport.tls import build_server_context

    def default_factory() -> Any:
        return build_server_context(
            cfg.certfile, cfg.keyfile, alpn_protocols=cfg.alpn_protocols,
            ca_certs=cfg.ca_certs, cert_reqs=cfg.cert_reqs, ciphers=cfg.ciphers)

    hook = cfg.ssl_context
    if hook is None:
        return default_factory()
    try:
        context = hook(cfg, default_factory)
    except Exception as exc:
        log.exception("Exception in ssl_context hook")
        raise ValueError(f"the ssl_context hook raised {type(exc).__name__}: {exc}") from exc
    import ssl

    if not isinstance(context, ssl.SSLContext):
        raise ValueError(f"the ssl_context hook returned {type(context).__name__}, "
                         "not an ssl.SSLContext")
    return context
