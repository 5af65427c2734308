"""The h2 internals h2serve relies on (h2serve/protocol/h2_internals.py) are
still there: each test names the private attribute it checks, so a new h2
release that changes one fails here with that name, not somewhere deep in a
connection."""

from __future__ import annotations

import gc

import h2.config
import h2.connection
import h2.settings
from h2.settings import SettingCodes

from h2serve.protocol.h2_internals import (
    CompactSettings,
    break_reference_cycle,
    use_compact_settings,
)
from h2serve.protocol.http2 import HTTP2Limits, HTTP2Protocol


def test_settings_keep_values_in_the_private_settings_dict() -> None:
    settings = h2.settings.Settings(client=False)
    assert isinstance(getattr(settings, "_settings", None), dict), \
        "h2.settings.Settings._settings is no longer a dict"
    values = settings._settings[SettingCodes.INITIAL_WINDOW_SIZE]
    for name in ("append", "popleft", "__getitem__", "__len__"):
        assert hasattr(values, name), f"Settings._settings values lost {name}"


def test_compact_settings_behave_as_h2_settings() -> None:
    plain, compact = h2.settings.Settings(client=False), CompactSettings(client=False)
    for settings in (plain, compact):
        settings[SettingCodes.INITIAL_WINDOW_SIZE] = 1000
        settings[SettingCodes.MAX_CONCURRENT_STREAMS] = 7   # a key not there before
        assert settings.initial_window_size == 65535       # not acknowledged yet
    changed = {code: (c.original_value, c.new_value) for code, c in compact.acknowledge().items()}
    assert changed == {code: (c.original_value, c.new_value) for code, c in plain.acknowledge().items()}
    assert compact.initial_window_size == 1000 and compact.max_concurrent_streams == 7
    assert all(type(v).__name__ == "_SettingValues" for v in compact._settings.values())


def test_compact_remote_settings_on_a_connection() -> None:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    use_compact_settings(conn)
    assert isinstance(conn.remote_settings, CompactSettings)
    assert conn.remote_settings.initial_window_size == 65535


def test_the_dispatch_table_is_the_only_reference_cycle() -> None:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    assert isinstance(getattr(conn, "_frame_dispatch_table", None), dict), \
        "H2Connection._frame_dispatch_table is gone"
    gc.collect()
    gc.disable()
    try:
        proto = HTTP2Protocol(HTTP2Limits())
        proto.initiate()
        proto.dispose()
        del proto
        assert gc.collect() == 0, "a disposed HTTP2Protocol still needs the cyclic collector"
        proto = HTTP2Protocol(HTTP2Limits())
        proto.initiate()
        del proto
        assert gc.collect() > 0   # without dispose() it does: the test can fail
    finally:
        gc.enable()
    break_reference_cycle(conn)
    assert conn._frame_dispatch_table == {}
