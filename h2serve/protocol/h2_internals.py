"""Where h2serve relies on h2's private internals, named and explained.

Each helper here depends on something h2 does not document; the contract
test (tests/test_h2_internals.py) names each attribute relied on and fails,
naming it, when a new h2 release changes it.

Memory: an idle HTTP/2 connection must be cheap to hold, since a client may
open hundreds (docs/security.md, "Connection slots"). h2 keeps each setting's
values in a ``collections.deque``: about 760 bytes even when it holds one
value, and a connection has two Settings of five to seven settings each, so
about 9 KiB of a held connection's 33 KiB was empty deque blocks.
"""

from __future__ import annotations

from typing import Any

import h2.settings


class _SettingValues(list):
    """One setting's values, current first, then those sent or received but
    not acknowledged yet: the two deque operations h2 uses on it, on a list
    (about 80 bytes)."""

    __slots__ = ()

    def popleft(self) -> Any:
        return self.pop(0)


class CompactSettings(h2.settings.Settings):
    """h2's Settings with its per-setting deques replaced by small lists.

    Relies on ``Settings._settings`` (a dict from setting code to a sequence
    whose first item is the current value), which h2 4.x reads and writes
    only through ``append``, ``popleft``, ``[0]`` and ``len``."""

    def __init__(self, client: bool = True, initial_values: dict[Any, int] | None = None) -> None:
        super().__init__(client=client, initial_values=initial_values)
        self._settings = {code: _SettingValues(values) for code, values in self._settings.items()}

    def __setitem__(self, key: Any, value: int) -> None:
        known = key in self._settings
        super().__setitem__(key, value)   # validates; a new key gets h2's deque
        if not known:
            self._settings[key] = _SettingValues(self._settings[key])


def use_compact_settings(conn: Any) -> None:
    """Give an H2Connection compact remote settings (before any frame: h2's
    defaults, nothing pending). Its local settings are built by the caller as
    a CompactSettings."""
    conn.remote_settings = CompactSettings(client=not conn.config.client_side)


def break_reference_cycle(conn: Any) -> None:
    """Let a finished H2Connection be freed by reference counting.

    h2 keeps a dict of the connection's own bound methods
    (``_frame_dispatch_table``), so every connection is a reference cycle that
    only a full collection frees; a crowd of connections closed under attack
    would stay in memory until then. Only frame reception uses the table: call
    this once no frame will be received any more."""
    conn._frame_dispatch_table = {}
