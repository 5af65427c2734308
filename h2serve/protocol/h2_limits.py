"""The limits of one HTTP/2 connection, as the driver reads them from the
settings (and advertises them in SETTINGS where HTTP/2 has one)."""

from __future__ import annotations

from dataclasses import dataclass

# Upper bound on the connection receive window we advertise.
MAX_CONNECTION_WINDOW = 16 * 1024 * 1024

@dataclass
class HTTP2Limits:
    """Per-connection limits; advertised in our SETTINGS where HTTP/2 has one."""

    max_concurrent_streams: int = 100
    initial_window_size: int = 65535          # our receive window per stream
    # Our receive window for the whole connection: request body bytes the client
    # may send before the application reads them, over all its streams together
    # (0: the streams' windows added up, at most MAX_CONNECTION_WINDOW).
    connection_window_size: int = 0
    max_frame_size: int = 16384
    max_header_list_size: int = 65536
    limit_request_fields: int = 100
    limit_request_field_size: int = 8190
    # Flood defences (0 disables each); see docs/security.md.
    max_requests: int = 1000          # requests per connection, then a graceful GOAWAY
    reset_budget: int = 200           # resets (client's, or ours for client errors) beyond completed requests
    max_control_frames: int = 1000    # PING, SETTINGS, PRIORITY, empty and redundant frames
    dribble_frame_size: int = 1024    # flow-control credit below this is not worth a DATA frame
    stall_timeout: float = 5.0        # seconds for the preface, and for each header block
