"""Finding the WSGI application named on the command line.

The master process never imports the application: it checks that the app
loads in a short-lived child (``check_app_in_child``), and each worker
imports it fresh after fork, so a HUP picks up new application code.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import sys
import traceback
from collections.abc import Callable
from typing import Any

_MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_DEFAULT_NAMES = ("application", "app")
_MAX_MESSAGE = 4000


class AppLoadError(Exception):
    """The application cannot be loaded. The message is one line for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def _last_line(exc: BaseException) -> str:
    """The final line of an exception's report, e.g. "ValueError: bad value"."""
    if isinstance(exc, SyntaxError):
        where = f"{exc.filename}, line {exc.lineno}" if exc.filename else f"line {exc.lineno}"
        return f"SyntaxError: {exc.msg} ({where})"
    lines = traceback.format_exception_only(type(exc), exc)
    text = (lines[-1].strip() if lines else type(exc).__name__) or type(exc).__name__
    where = _raised_at(exc)
    return f"{text} ({where})" if where else text


def _raised_at(exc: BaseException) -> str | None:
    """"file:line" of the innermost frame outside importlib's machinery: where the
    application's code raised (a KeyError deep in a settings module is then findable)."""
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__)
              if "importlib" not in frame.filename and not frame.filename.startswith("<frozen")]
    if not frames:
        return None
    return f"{frames[-1].filename}:{frames[-1].lineno}"


def _put_first_on_path(directory: str) -> None:
    directory = os.path.abspath(directory)
    while directory in sys.path:
        sys.path.remove(directory)
    sys.path.insert(0, directory)


def _parse_target(uri: str, target: str) -> tuple[list[str], tuple[Any, ...] | None, dict[str, Any]]:
    """Split "obj.attr" or "factory(1, x='y')" into (attribute path, args or None, kwargs).

    Only literal arguments are allowed; nothing is evaluated.
    """
    try:
        tree = ast.parse(target.strip(), mode="eval").body
    except SyntaxError:
        raise AppLoadError(f"cannot parse {target!r} in {uri!r}; expected name, obj.attr or factory(...)") from None
    args: tuple[Any, ...] | None = None
    kwargs: dict[str, Any] = {}
    if isinstance(tree, ast.Call):
        try:
            args = tuple(ast.literal_eval(arg) for arg in tree.args)
            for keyword in tree.keywords:
                if keyword.arg is None:
                    raise ValueError("** arguments are not supported")
                kwargs[keyword.arg] = ast.literal_eval(keyword.value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            raise AppLoadError(
                f"factory arguments in {uri!r} must be literals (strings, numbers, lists, ...)"
            ) from None
        tree = tree.func
    path: list[str] = []
    while isinstance(tree, ast.Attribute):
        path.append(tree.attr)
        tree = tree.value
    if not isinstance(tree, ast.Name):
        raise AppLoadError(f"cannot parse {target!r} in {uri!r}; expected name, obj.attr or factory(...)")
    path.append(tree.id)
    path.reverse()
    return path, args, kwargs


def _import(module_name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise AppLoadError(f"cannot import {module_name!r}: no module named {missing!r}") from None
        raise AppLoadError(f"error while importing {module_name!r}: {_last_line(exc)}") from None
    except (Exception, SystemExit) as exc:
        raise AppLoadError(f"error while importing {module_name!r}: {_last_line(exc)}") from None


def load_app(uri: str, chdir: str | None = None) -> Any:
    """Import and return the WSGI callable named by ``uri``.

    Forms: ``pkg.module:name``, ``module:obj.attr``, ``module:factory()``,
    ``module:factory(arg="x")`` (literal arguments only) and a bare ``module``
    (its ``application``, else its ``app``). ``chdir`` goes first on sys.path.
    Raises AppLoadError with one line.
    """
    if not uri or not uri.strip():
        raise AppLoadError("no application given; pass APP as module:callable")
    module_name, _, target = uri.strip().partition(":")
    if not _MODULE_RE.match(module_name):
        raise AppLoadError(f"{module_name!r} is not a module name (APP is module:callable)")
    if chdir:
        _put_first_on_path(chdir)
    module = _import(module_name)

    if not target.strip():
        for name in _DEFAULT_NAMES:
            if hasattr(module, name):
                target = name
                break
        else:
            raise AppLoadError(
                f"module {module_name!r} has no 'application' or 'app'; pass {module_name}:NAME"
            )

    path, args, kwargs = _parse_target(uri, target)
    obj: Any = module
    for depth, attr in enumerate(path):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            owner = ".".join([module_name, *path[:depth]])
            raise AppLoadError(f"{owner!r} has no attribute {attr!r}") from None
        except Exception as exc:
            raise AppLoadError(f"reading {attr!r} failed: {_last_line(exc)}") from None

    dotted = ".".join(path)
    if args is not None:
        if not callable(obj):
            raise AppLoadError(f"{module_name}:{dotted} is not callable, so it cannot be a factory")
        try:
            obj = obj(*args, **kwargs)
        except (Exception, SystemExit) as exc:
            raise AppLoadError(f"factory {module_name}:{dotted}() raised {_last_line(exc)}") from None
        if not callable(obj):
            raise AppLoadError(
                f"factory {module_name}:{dotted}() returned a {type(obj).__name__}, not a WSGI callable"
            )
    elif not callable(obj):
        raise AppLoadError(f"{module_name}:{dotted} is a {type(obj).__name__}, not a WSGI callable")
    return obj


def check_app_in_child(uri: str, chdir: str | None = None,
                       before_import: Callable[[], None] | None = None) -> str | None:
    """Try ``load_app`` in a forked child; return its one-line error, or None if it loads.

    The calling process never imports the application. ``before_import`` runs in
    the child first (the user switch); what it raises is reported like a load error.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(read_fd)
            try:
                if before_import is not None:
                    before_import()
                load_app(uri, chdir)
                message = ""
            except AppLoadError as exc:
                message = str(exc)
            except BaseException as exc:  # noqa: B036 - the child must always report
                message = f"loading {uri!r} failed: {_last_line(exc)}"
            data = message[:_MAX_MESSAGE].encode("utf-8", "replace")
            while data:
                written = os.write(write_fd, data)
                data = data[written:]
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except Exception:
                pass
        finally:
            os._exit(0)

    os.close(write_fd)
    chunks = []
    try:
        while True:
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    message = b"".join(chunks).decode("utf-8", "replace").strip()
    if message:
        return message
    if os.waitstatus_to_exitcode(status) != 0:
        code = os.waitstatus_to_exitcode(status)
        how = f"signal {-code}" if code < 0 else f"exit status {code}"
        return f"the process loading {uri!r} died ({how})"
    return None
