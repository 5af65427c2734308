"""The errors a dirty call raises in the HTTP worker (gunicorn's names).

Every one derives from DirtyError, so a view can catch them all at once; the
subclasses say which side failed: the app's own code (DirtyAppError), the
process running it (DirtyWorkerError), the wait (DirtyTimeoutError), or that
nothing could take the call (DirtyNoWorkersAvailableError).
"""

from __future__ import annotations

from typing import Any


class DirtyError(Exception):
    """Base of every dirty-arbiter error."""

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class DirtyTimeoutError(DirtyError):
    """The call did not answer within the client's timeout (dirty_timeout by default)."""

    def __init__(self, message: str = "dirty call timed out", timeout: float | None = None) -> None:
        super().__init__(message, {"timeout": timeout})
        self.timeout = timeout


class DirtyConnectionError(DirtyError):
    """The dirty socket could not be reached or broke while talking."""

    def __init__(self, message: str = "dirty connection failed", socket_path: str | None = None) -> None:
        super().__init__(message, {"socket_path": socket_path})
        self.socket_path = socket_path


class DirtyWorkerError(DirtyError):
    """The dirty worker running the call died (or was killed) before answering."""

    def __init__(self, message: str, worker_id: int | None = None, traceback: str | None = None) -> None:
        super().__init__(message, {"worker_id": worker_id})
        self.worker_id = worker_id
        self.traceback = traceback


class DirtyAppError(DirtyError):
    """The dirty app's action raised; names the app, the action and the exception."""

    def __init__(self, message: str, app_path: str | None = None, action: str | None = None,
                 traceback: str | None = None, error_type: str | None = None) -> None:
        super().__init__(message, {"app_path": app_path, "action": action, "error_type": error_type})
        self.app_path = app_path
        self.action = action
        self.traceback = traceback
        self.error_type = error_type


class DirtyAppNotFoundError(DirtyAppError):
    """No app of that path is configured in dirty_apps."""

    def __init__(self, app_path: str) -> None:
        super().__init__(f"dirty app not found: {app_path}", app_path=app_path)


class DirtyNoWorkersAvailableError(DirtyError):
    """The app is configured but none of the dirty workers that load it is up."""

    def __init__(self, app_path: str, message: str | None = None) -> None:
        super().__init__(message or f"no dirty worker is available for {app_path}",
                         {"app_path": app_path})
        self.app_path = app_path


class DirtyProtocolError(DirtyError):
    """A frame on the dirty socket was malformed or too large."""

    def __init__(self, message: str = "dirty protocol error", raw_data: bytes | None = None) -> None:
        super().__init__(message)
        self.raw_data = raw_data[:64] if raw_data else None
