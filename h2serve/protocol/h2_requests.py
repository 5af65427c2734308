"""HTTP/2 requests in: h2's events for one connection become
h2serve.protocol.events (a request's head checked and split, body bytes
counted against Content-Length, trailers, resets, priority changes).

RequestTranslation is mixed into HTTP2Protocol (http2.py); the state it reads
and changes is declared in h2_state.py.
"""

from __future__ import annotations

import h2.events
import h2.settings

from .events import (
    BodyEnded,
    BodyReceived,
    ConnectionTerminated,
    Headers,
    PriorityUpdated,
    ProtocolViolation,
    RequestReceived,
    StreamReset,
    WindowUpdated,
)
from .floods import HEADER_BYTES_PER_RESET
from .h2_internals import ErrorCodes, PriorityUpdateReceived, SettingCodes, StreamRejected
from .h2_state import ProtocolState, StreamRecord
from .http2_fields import RequestFields, check_request_target
from .priority import parse_priority_field, priority_dict


class RequestTranslation(ProtocolState):
    """h2 events in, request events out (part of HTTP2Protocol)."""

    def _translate(self, event, out: list) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self._on_request(event, out)
        elif isinstance(event, h2.events.DataReceived):
            self._on_data(event, out)
        elif isinstance(event, h2.events.TrailersReceived):
            self._on_trailers(event, out)
        elif isinstance(event, h2.events.StreamEnded):
            self._on_stream_ended(event.stream_id, out)
        elif isinstance(event, h2.events.StreamReset):
            self._on_stream_reset(event, out)
        elif isinstance(event, h2.events.WindowUpdated):
            if event.stream_id == 0 or event.stream_id in self._streams:
                out.append(WindowUpdated(event.stream_id))
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            changed = event.changed_settings
            if SettingCodes.INITIAL_WINDOW_SIZE in changed or SettingCodes.MAX_FRAME_SIZE in changed:
                out.append(WindowUpdated(0))
        elif isinstance(event, h2.events.PriorityUpdated):
            record = self._streams.get(event.stream_id)
            if record is not None:
                record.priority = dict(
                    record.priority, weight=event.weight, depends_on=event.depends_on
                )
                out.append(PriorityUpdated(event.stream_id, dict(record.priority)))
        elif isinstance(event, PriorityUpdateReceived):
            self._on_priority_update(event, out)
        elif isinstance(event, StreamRejected):
            out.append(
                ProtocolViolation(event.reason, stream_id=event.stream_id, error_code=event.error_code)
            )
            if self._forget(event.stream_id):
                out.append(StreamReset(event.stream_id, event.error_code))
        elif isinstance(event, h2.events.ConnectionTerminated):
            reason = (event.additional_data or b"").decode("latin-1")
            if int(event.error_code) == ErrorCodes.NO_ERROR:
                # Graceful (see ServerConnection._receive_goaway_frame): the
                # streams it opened are still answered; it just opens no more.
                self._peer_goaway = True
            else:
                self._terminated = True
                self._release_all()
            out.append(ConnectionTerminated(int(event.error_code), event.last_stream_id or 0, reason))

    def _on_request(self, event: h2.events.RequestReceived, out: list) -> None:
        stream_id = event.stream_id
        end_stream = event.stream_ended is not None
        fields: RequestFields = event.request_fields
        pseudo = fields.pseudo
        headers = fields.headers
        header_weight = fields.list_size // HEADER_BYTES_PER_RESET
        problem = check_request_target(pseudo)
        if problem:
            self._conn.errors_answered += header_weight
            self._conn.reset_stream(stream_id, ErrorCodes.PROTOCOL_ERROR)
            out.append(
                ProtocolViolation(problem, stream_id=stream_id, error_code=ErrorCodes.PROTOCOL_ERROR)
            )
            return

        if (
            fields.longest > self.limits.limit_request_field_size
            or len(headers) > self.limits.limit_request_fields
            or fields.list_size > self.limits.max_header_list_size
        ):
            self._conn.errors_answered += header_weight
            self._reject_431(stream_id, end_stream, out)
            return

        content_length = fields.content_length
        host = fields.host
        priority_values = fields.priority
        if content_length and end_stream:
            self._conn.reset_stream(stream_id, ErrorCodes.PROTOCOL_ERROR)
            out.append(
                ProtocolViolation(
                    "content-length on a request without body",
                    stream_id=stream_id,
                    error_code=ErrorCodes.PROTOCOL_ERROR,
                )
            )
            return

        pending = self._pending_priority.pop(stream_id, None)
        if pending is not None:   # a PRIORITY_UPDATE before the request replaces its field
            parsed = {"urgency": pending[0], "incremental": pending[1]}
        else:
            parsed = parse_priority_field(", ".join(priority_values))
        update = event.priority_updated
        priority = priority_dict(
            parsed,
            update.weight if update is not None else None,
            update.depends_on if update is not None else None,
        )
        method = pseudo[b":method"].decode("latin-1")
        authority = pseudo.get(b":authority")
        if method == "CONNECT":
            target = (authority or b"").decode("latin-1")
        else:
            target = pseudo[b":path"].decode("latin-1")
        scheme = pseudo.get(b":scheme")
        record = self._streams[stream_id] = StreamRecord(content_length, priority, end_stream)
        record.header_weight = header_weight
        self._floods.request_started()
        self._requests += 1
        if self._requests == self.limits.max_requests and self._conn.refuse_streams_above is None:
            # nginx's keepalive_requests: this request is served, later ones are
            # refused. The GOAWAY saying so waits until the responses under way
            # are sent (clients such as httpx fail any stream still open when
            # a GOAWAY arrives), or until a refused stream needs explaining.
            self._conn.refuse_streams_above = stream_id
            self._cap_goaway_due = True
        out.append(
            RequestReceived(
                stream_id=stream_id,
                method=method,
                target=target,
                headers=headers,
                authority=authority.decode("latin-1") if authority is not None else host,
                scheme=scheme.decode("latin-1") if scheme is not None else None,
                http_version="2",
                end_stream=end_stream,
                priority=dict(priority),
                content_length=content_length,
            )
        )

    def _reject_431(self, stream_id: int, end_stream: bool, out: list) -> None:
        self._conn.errors_answered += 1  # an answer a client's error cost us, like a reset
        self._conn.send_headers(stream_id, [(b":status", b"431")], end_stream=True)
        if not end_stream:
            # The response is complete; ask the client to stop sending the body.
            self._conn.reset_stream(stream_id, ErrorCodes.NO_ERROR)
        out.append(
            ProtocolViolation(
                "request header fields too large", status=431, stream_id=stream_id, error_code=0
            )
        )

    def _on_data(self, event: h2.events.DataReceived, out: list) -> None:
        stream_id = event.stream_id
        record = self._streams.get(stream_id)
        length = event.flow_controlled_length
        if record is None:
            self._release(length)
            if stream_id in self._draining:
                self._drain(stream_id, length)
            return
        data = event.data
        record.received += len(data)
        if data:
            record.unacked += length
            out.append(BodyReceived(stream_id, data, length))
        elif length:
            self._release(length)  # padding-only frame: nothing for the app to consume

    def _on_trailers(self, event: h2.events.TrailersReceived, out: list) -> None:
        stream_id = event.stream_id
        record = self._streams.get(stream_id)
        if record is None:
            return
        trailers: Headers = []
        size = 0
        for name, value in event.headers:
            size += len(name) + len(value) + 32
            if len(name) + len(value) > self.limits.limit_request_field_size:
                size = -1
                break
            trailers.append((name.decode("latin-1"), value.decode("latin-1")))
        if size < 0 or size > self.limits.max_header_list_size or (
            len(trailers) > self.limits.limit_request_fields
        ):
            self._conn.reset_stream(stream_id, ErrorCodes.ENHANCE_YOUR_CALM)
            self._forget(stream_id)
            out.append(
                ProtocolViolation(
                    "request trailers too large",
                    status=431,
                    stream_id=stream_id,
                    error_code=ErrorCodes.ENHANCE_YOUR_CALM,
                )
            )
            out.append(StreamReset(stream_id, ErrorCodes.ENHANCE_YOUR_CALM))
            return
        record.trailers = trailers

    def _on_stream_ended(self, stream_id: int, out: list) -> None:
        if self._draining.pop(stream_id, None) is not None:
            self._flush_connection_credit()  # the discarded body's credit, at the latest now
            return
        record = self._streams.get(stream_id)
        if record is None or record.request_done:
            if record is not None:
                record.remote_ended = True
                self._maybe_forget(stream_id)
            return
        if record.content_length is not None and record.content_length != record.received:
            self._conn.reset_stream(stream_id, ErrorCodes.PROTOCOL_ERROR)
            self._forget(stream_id)
            out.append(
                ProtocolViolation(
                    "content-length does not match the body",
                    stream_id=stream_id,
                    error_code=ErrorCodes.PROTOCOL_ERROR,
                )
            )
            out.append(StreamReset(stream_id, ErrorCodes.PROTOCOL_ERROR))
            return
        record.remote_ended = True
        record.request_done = True
        trailers, record.trailers = record.trailers, None
        out.append(BodyEnded(stream_id, trailers))
        if record.unacked == 0:
            self._flush_connection_credit()
        self._maybe_forget(stream_id)

    def _on_stream_reset(self, event: h2.events.StreamReset, out: list) -> None:
        stream_id = event.stream_id
        record = self._streams.get(stream_id)
        known = self._forget(stream_id)
        if event.remote_reset:
            if record is not None:
                # Cancelled while the app still had it: the rapid-reset pattern.
                self._client_resets += 1 + record.header_weight
                out.append(StreamReset(stream_id, int(event.error_code)))
            return
        out.append(
            ProtocolViolation(
                f"stream reset by us (error code {int(event.error_code)})",
                stream_id=stream_id,
                error_code=int(event.error_code),
            )
        )
        if known:
            out.append(StreamReset(stream_id, int(event.error_code)))

    def _on_priority_update(self, event: PriorityUpdateReceived, out: list) -> None:
        stream_id = event.stream_id
        record = self._streams.get(stream_id)
        if record is not None:
            parsed = parse_priority_field(event.field_value)
            record.priority = dict(record.priority, **parsed)
            out.append(PriorityUpdated(stream_id, dict(record.priority)))
        elif stream_id > self._conn.highest_inbound_stream_id:
            # Not opened yet: keep the latest signal for when it is, parsed (a
            # 16 KB value costs what a small one does) and for a bounded count.
            parsed = parse_priority_field(event.field_value)
            self._pending_priority.pop(stream_id, None)
            self._pending_priority[stream_id] = (parsed["urgency"], parsed["incremental"])
            while len(self._pending_priority) > max(1, self.limits.max_concurrent_streams):
                self._pending_priority.pop(next(iter(self._pending_priority)))
        # else: a closed stream; nothing to reprioritise.
