"""--reload without a dependency: the master polls the modification times of
the source files the workers imported. The master never imports the
application, so each worker reports them through a small file."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time

log = logging.getLogger("h2serve.error")


class SourceWatcher:
    """--reload without a dependency: the master polls modification times, once a
    second, of the source files the workers imported.

    The master never imports the application, so each worker, right after loading
    it, reports the files it imported (with their modification times at that
    moment) in a small file this watcher owns.
    """

    POLL_INTERVAL_S = 1.0

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="h2serve-reload-")
        self.report_path = os.path.join(self.directory, "imported")
        self.mtimes: dict[str, int | None] = {}
        self._report_stamp: int | None = None
        self._next_poll = 0.0

    # --- in a worker -----------------------------------------------------------

    def report_imports(self, chdir: str | None, app_uri: str | None) -> None:
        """Write the application's imported source files (those under chdir or the
        app's package, outside the interpreter's and h2serve's own trees)."""
        roots = [os.path.realpath(chdir or os.getcwd())]
        top = (app_uri or "").partition(":")[0].split(".")[0]
        top_file = getattr(sys.modules.get(top), "__file__", None)
        if top_file:
            roots.append(os.path.dirname(os.path.realpath(top_file)))
        excluded = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
        excluded.add(os.path.dirname(os.path.realpath(__file__)))   # h2serve itself
        lines = []
        for module in list(sys.modules.values()):
            path = getattr(module, "__file__", None)
            if not path or not path.endswith(".py"):
                continue
            path = os.path.realpath(path)
            if not any(_is_within(path, root) for root in roots):
                continue
            if "site-packages" in path or any(_is_within(path, ex) for ex in excluded):
                continue
            try:
                lines.append(f"{os.stat(path).st_mtime_ns}\t{path}\n")
            except OSError:
                continue
        temporary = f"{self.report_path}.{os.getpid()}"
        try:
            with open(temporary, "w") as handle:
                handle.writelines(lines)
            os.replace(temporary, self.report_path)
        except OSError as exc:
            log.warning("--reload: cannot report imported files: %s", exc)

    # --- in the master ----------------------------------------------------------

    def changed_file(self) -> str | None:
        """A watched file whose modification time changed since the last look, if any."""
        now = time.monotonic()
        if now < self._next_poll:
            return None
        self._next_poll = now + self.POLL_INTERVAL_S
        self._read_report()
        changed = None
        for path, known in self.mtimes.items():
            current = _mtime_ns(path)
            if current != known:
                self.mtimes[path] = current
                changed = changed or path
        return changed

    def _read_report(self) -> None:
        stamp = _mtime_ns(self.report_path)
        if stamp is None or stamp == self._report_stamp:
            return
        self._report_stamp = stamp
        try:
            with open(self.report_path) as handle:
                for line in handle:
                    mtime_text, _, path = line.rstrip("\n").partition("\t")
                    if path and path not in self.mtimes:
                        self.mtimes[path] = int(mtime_text)   # as the worker imported it
        except (OSError, ValueError):
            pass

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def _mtime_ns(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _is_within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)
