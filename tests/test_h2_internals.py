"""The h2 internals h2serve relies on (h2serve/protocol/h2_internals.py) are
still there: each test names the private attribute it checks, so a new h2
release that changes one fails here with that name, not somewhere deep in a
connection."""

from __future__ import annotations

import gc
import inspect

import h2.config
import h2.connection
import h2.exceptions
import h2.frame_buffer
import h2.settings
import hpack.table
import hyperframe.flags
import pytest
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


# H2Connection's private methods ServerConnection overrides or calls, with the
# parameters it passes them.
H2_CONNECTION_METHODS = {
    "_receive_frame": ["frame"],
    "_prepare_for_sending": ["frames"],
    "_begin_new_stream": ["stream_id", "allowed_ids"],
    "_get_or_create_stream": ["stream_id", "allowed_ids"],
    "_receive_data_frame": ["frame"],
    "_receive_goaway_frame": ["frame"],
    "_receive_headers_frame": ["frame"],
    "_receive_naked_continuation": ["frame"],
    "_receive_priority_frame": ["frame"],
    "_receive_rst_stream_frame": ["frame"],
    "_receive_unknown_frame": ["frame"],
    "_terminate_connection": ["error_code"],
    "_stream_is_closed_by_end": ["stream_id"],
    "_stream_is_closed_by_reset": ["stream_id"],
}
# Attributes of a live H2Connection that ServerConnection reads or writes.
H2_CONNECTION_ATTRIBUTES = ["_frame_dispatch_table", "_closed_streams",
                            "_inbound_flow_control_window_manager", "incoming_buffer"]


@pytest.mark.parametrize("name", sorted(H2_CONNECTION_METHODS))
def test_h2_connection_private_method(name):
    method = getattr(h2.connection.H2Connection, name, None)
    assert method is not None, f"h2.connection.H2Connection.{name} is gone"
    parameters = list(inspect.signature(method).parameters)[1:]
    assert parameters == H2_CONNECTION_METHODS[name], \
        f"h2.connection.H2Connection.{name} now takes {parameters}"


@pytest.mark.parametrize("name", H2_CONNECTION_ATTRIBUTES)
def test_h2_connection_private_attribute(name):
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    assert hasattr(conn, name), f"H2Connection().{name} is gone"


@pytest.mark.parametrize("name", ["_headers_buffer", "_data", "_preamble_len"])
def test_frame_buffer_private_attribute(name):
    """HTTP2Protocol asks whether h2's FrameBuffer still holds part of a frame
    or header block (protocol/http2.py)."""
    assert hasattr(h2.frame_buffer.FrameBuffer(server=True), name), f"FrameBuffer().{name} is gone"


def test_protocol_errors_carry_their_events():
    """h2 attaches the events decoded before a stream error to the exception."""
    assert hasattr(h2.exceptions.StreamClosedError(1), "_events"), "StreamClosedError._events is gone"


def test_hyperframe_flags_and_hpack_table_internals():
    """quick_frames.py sets Flags' private sets; hpack_cache.py hooks HeaderTable._shrink."""
    flags = hyperframe.flags.Flags(set())
    assert hasattr(flags, "_valid_flags") and hasattr(flags, "_flags"), "hyperframe Flags internals moved"
    assert callable(getattr(hpack.table.HeaderTable, "_shrink", None)), "hpack HeaderTable._shrink is gone"
