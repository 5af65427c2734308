"""Dirty arbiters: a second process tree for heavy, stateful work (gunicorn
25+'s design, docs/dirty.md). gunicorn's public names are importable here."""

from h2serve.dirty.app import DirtyApp
from h2serve.dirty.client import (
                                  DirtyClient,
                                  DirtyStream,
                                  StreamBody,
                                  close_dirty_client,
                                  get_dirty_client,
                                  get_dirty_socket_path,
                                  set_dirty_socket_path,
)
from h2serve.dirty.errors import (
                                  DirtyAppError,
                                  DirtyAppNotFoundError,
                                  DirtyConnectionError,
                                  DirtyError,
                                  DirtyNoWorkersAvailableError,
                                  DirtyProtocolError,
                                  DirtyTimeoutError,
                                  DirtyWorkerError,
)

__all__ = [
    "DirtyApp", "DirtyAppError", "DirtyAppNotFoundError", "DirtyClient", "DirtyConnectionError",
    "DirtyError", "DirtyNoWorkersAvailableError", "DirtyProtocolError", "DirtyStream",
    "DirtyTimeoutError", "DirtyWorkerError", "StreamBody", "close_dirty_client",
    "get_dirty_client", "get_dirty_socket_path", "set_dirty_socket_path",
]
