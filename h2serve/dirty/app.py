"""DirtyApp, the base class of dirty apps, and how apps are found and shared
out among the dirty workers.

A dirty app is a class: one instance per dirty worker that loads it, init()
once before the worker takes calls, an action per public method (or a
__call__(action, ...) of its own), close() as the worker exits.
"""

from __future__ import annotations

import importlib
from typing import Any

from h2serve.dirty.errors import DirtyAppError, DirtyAppNotFoundError
from h2serve.setting_values import parse_dirty_app_spec


class DirtyApp:
    """Subclass it; set ``workers = N`` to load the app in only N dirty workers."""

    workers: int | None = None

    def init(self) -> None:
        """Load the heavy resources here (dirty worker, after the fork)."""

    def __call__(self, action: str, *args: Any, **kwargs: Any) -> Any:
        """Run one action: by default the public method of that name."""
        method = getattr(self, action, None) if isinstance(action, str) else None
        if method is None or action.startswith("_") or action in ("init", "close") \
                or not callable(method):
            raise ValueError(f"unknown action: {action!r}")
        return method(*args, **kwargs)

    def close(self) -> None:
        """Release resources (dirty worker, as it exits)."""


def import_app_class(path: str) -> type:
    """The class named by ``module:Class`` (imported, not instantiated)."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise DirtyAppNotFoundError(path) from exc
    target: Any = module
    for name in attr.split("."):
        target = getattr(target, name, None)
        if target is None:
            raise DirtyAppNotFoundError(path)
    if not isinstance(target, type):
        raise DirtyAppError(f"{path} is not a class", app_path=path)
    return target


def instantiate(path: str) -> Any:
    """An instance of the app class, checked for init, __call__ and close."""
    cls = import_app_class(path)
    try:
        app = cls()
    except Exception as exc:
        raise DirtyAppError(f"cannot create {path}: {exc}", app_path=path) from exc
    for method in ("init", "__call__", "close"):
        if not callable(getattr(app, method, None)):
            raise DirtyAppError(f"{path} has no {method}() method", app_path=path)
    return app


def allocate(specs: list[str], num_workers: int) -> dict[str, list[int]]:
    """Which dirty worker indices load each app. An app limited to N workers
    (``:N`` in its spec first, else its class's ``workers``) gets N of them,
    limited apps taking turns so they land on different workers; the others
    get all. Runs in the dirty arbiter (it imports the app modules)."""
    routes: dict[str, list[int]] = {}
    next_start = 0
    for spec in specs:
        path, count = parse_dirty_app_spec(spec)
        if count is None:
            count = getattr(import_app_class(path), "workers", None)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1 \
                or count >= num_workers:
            routes[path] = list(range(num_workers))
            continue
        routes[path] = sorted((next_start + i) % num_workers for i in range(count))
        next_start = (next_start + count) % num_workers
    return routes
