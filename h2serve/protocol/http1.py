"""Sans-I/O HTTP/1.1 server protocol: a strict parser and a small exchange state machine.

Every received byte is vetted against RFC 9112 and the configured limits
before anything is reported, and response bytes are built here too. There is
no third-party HTTP/1.1 library underneath: the exchange is small enough (one
request at a time, a response that follows it, then either the next request
or the end of the connection) to be tracked by a handful of fields, and the
hot path stays a few C-level passes over each head instead of per-field
Python work.

The work is split as h11 splits it: this module holds the connection's state
(buffer, limits, where the exchange stands) and the `HTTP1Protocol` API;
http1_read.py decides what a complete request head, a chunk-size line or a
trailer means; http1_write.py builds response heads and decides their body
framing. Both are pure functions of what this class hands them.

Choices worth knowing:

* Bare LF line endings are rejected with 400 (RFC 9112 section 2.2 lets a
  server accept them; a proxy in front of us that does not would see another
  message boundary, which is the desync smuggling needs). A bare CR anywhere in
  the head is rejected too. Equal duplicate Content-Length values, obs-fold,
  loose Transfer-Encoding lists and malformed chunk extensions are refused.
* ``limit_request_field_size`` is measured on the whole field line with its
  CRLF ("Name: value\r\n"), as gunicorn does: the default 8190 allows a line of
  8188 bytes before the CRLF. The request line limit excludes CRLF (as gunicorn's).
* Absolute-form targets (proxy form) are accepted; ``RequestReceived.target``
  then carries only path and query, and ``authority`` comes from the target
  (RFC 9112 section 3.2.2), not from Host.
* Transfer-Encoding must be the single coding "chunked" (case-insensitive;
  surrounding OWS is not part of a field value, so "chunked " is the same
  value). Other codings answer 501, malformed lists and repeats 400.
* EOF after a complete request yields nothing at once (the response still goes
  out); start_next_request() then reports ConnectionTerminated, or
  ProtocolViolation "incomplete" if a partial next request was buffered.
* CONNECT is answered 501: a WSGI server has nothing to tunnel to.
* HTTP/1.0 connections are never kept alive: their responses may be
  close-delimited, and 1.0 keep-alive needs an opt-in few clients still send.
* A request without a body still produces ``BodyEnded`` right after
  ``RequestReceived(end_stream=True)``, so a driver can rely on BodyEnded alone.

Responses: an app's Content-Length is kept and enforced (more or fewer body
bytes raise ValueError and end keep-alive); without one the body is chunked
for HTTP/1.1 clients and close-delimited for HTTP/1.0. HEAD, 204 and 304 carry
no body. An app's Transfer-Encoding is dropped: framing is ours. Header names
must be tokens and values free of control characters other than HTAB, so a
value cannot smuggle CR/LF into the head.
"""

from __future__ import annotations

from h2serve.protocol.events import (
    BodyEnded,
    BodyReceived,
    ConnectionTerminated,
    Headers,
    ProtocolViolation,
    RequestReceived,
)
from h2serve.protocol.http1_read import (
    H2_PREFACE_LINE,
    HEAD_REQUEST_LINE,
    MAX_CHUNK_LINE,
    RequestRejected,
    chunk_size,
    field_line_problem,
    h2c_upgrade_requested,
    parse_request_head,
    trailer_fields,
)
from h2serve.protocol.http1_write import (
    RESP_CHUNKED,
    RESP_LENGTH,
    RESP_NO_BODY,
    SWITCHING_PROTOCOLS,
    error_response,
    informational_head,
    response_head,
    switching_protocols_response,
    trailer_section,
)

# What receive() and start_next_request() can return (events.py defines no union).
Event = RequestReceived | BodyReceived | BodyEnded | ProtocolViolation | ConnectionTerminated

__all__ = [
    "HTTP1Protocol",
    "h2c_upgrade_requested",
    "switching_protocols_response",
]

# Receive-side states.
_HEAD = 0  # reading a request head
_BODY = 1  # reading the request body
_DONE = 2  # request complete; later bytes wait for start_next_request()
_CLOSED = 3  # violation, EOF or protocol switch: nothing more is parsed

# Chunked framing states.
_CHUNK_SIZE = 0
_CHUNK_DATA = 1
_CHUNK_DATA_END = 2
_CHUNK_TRAILER = 3
_CHUNK_DONE = 4


class HTTP1Protocol:
    """One server-side HTTP/1.1 connection: bytes in, events out; responses in, bytes out.

    Requests are handled one at a time. After the response has ended and the
    request body has been fully received, ``start_next_request()`` moves on to
    the next (possibly already buffered) request.
    """

    __slots__ = (
        "_limit_line", "_limit_fields", "_limit_field_size", "_limit_head", "_fast_head_limit",
        "_buf", "_state", "_eof",
        "_scan", "_head_start", "_line_count",
        "_method", "_http10", "_keep_alive", "_accepts_trailers",
        "_chunked", "_body_remaining", "_chunk_state", "_chunk_remaining",
        "_trailer_lines", "_trailer_bytes", "_body_complete",
        "_response_started", "_response_done", "_resp_mode", "_resp_remaining", "_resp_failed",
    )

    def __init__(
        self,
        *,
        limit_request_line: int = 4094,
        limit_request_fields: int = 100,
        limit_request_field_size: int = 8190,
        limit_request_head: int = 0,
    ) -> None:
        if limit_request_line <= 0 or limit_request_fields <= 0 or limit_request_field_size <= 0:
            raise ValueError("HTTP/1.1 request limits must be positive")
        self._limit_line = limit_request_line
        self._limit_fields = limit_request_fields
        self._limit_field_size = limit_request_field_size
        # Whole header section (leading empty lines, request line, fields, CRLFs).
        self._limit_head = limit_request_fields * limit_request_field_size + limit_request_line
        if limit_request_head > 0:
            # What a connection may hold of an unfinished head: fields x field size
            # alone allows ~800 KB per connection with the defaults.
            self._limit_head = min(self._limit_head, limit_request_head)
        # A complete head no longer than this cannot break a per-line or
        # whole-head limit, so it skips the line-by-line scan.
        self._fast_head_limit = min(
            limit_request_line, limit_request_field_size, self._limit_head - 4
        )
        self._buf = bytearray()
        self._state = _HEAD
        self._eof = False
        self._reset_exchange()

    def _reset_exchange(self) -> None:
        self._scan = 0
        self._head_start = 0
        self._line_count = 0
        self._method = ""  # "" until a request head is accepted: nothing to answer yet
        self._http10 = False
        self._keep_alive = True
        self._accepts_trailers = False
        self._chunked = False
        self._body_remaining = 0
        self._chunk_state = _CHUNK_SIZE
        self._chunk_remaining = 0
        self._trailer_lines: list[bytes] = []
        self._trailer_bytes = 0
        self._body_complete = False
        self._response_started = False
        self._response_done = False
        self._resp_mode = RESP_NO_BODY
        self._resp_remaining = 0
        self._resp_failed = False

    # ------------------------------------------------------------------ receiving

    def receive(self, data: bytes) -> list[Event]:
        """Feed bytes read from the peer (b"" for EOF) and return the events they complete."""
        if self._state == _CLOSED:
            return []
        if not data:
            return self._on_eof()
        if self._eof:
            return []
        self._buf += data
        if self._state == _DONE:
            return []  # next pipelined request: parsed by start_next_request()
        events: list[Event] = []
        self._advance(events)
        return events

    def _advance(self, events: list[Event]) -> None:
        if self._state == _HEAD and not self._read_head(events):
            return
        if self._state == _BODY and self._buf:
            self._read_body(events)

    def _violation(self, events: list[Event], status: int, reason: str,
                   head_parsed: bool = False) -> bool:
        """Refuse the request being read; `head_parsed` when its head was taken
        off the buffer already (what the buffer holds then is the next request)."""
        if (self._state == _HEAD and not self._method and not head_parsed
                and HEAD_REQUEST_LINE.match(self._buf, self._head_start) is not None):
            # A HEAD rejected while its head is read: the error answer has no
            # body either (RFC 9110 9.3.2), so error_response must know.
            self._method = "HEAD"
        events.append(ProtocolViolation(reason=reason, status=status))
        self._state = _CLOSED
        self._keep_alive = False
        return False

    def _on_eof(self) -> list[Event]:
        self._eof = True
        if self._state == _HEAD:
            return self._eof_between_requests()
        if self._state == _BODY:
            events: list[Event] = []
            self._violation(events, 400, "incomplete")
            return events
        return []  # request complete: reported by start_next_request()

    def _eof_between_requests(self) -> list[Event]:
        events: list[Event] = []
        if self._buf.strip(b"\r\n"):
            self._violation(events, 400, "incomplete")
        else:
            self._state = _CLOSED
            events.append(ConnectionTerminated(reason="peer closed the connection"))
        return events

    def _read_head(self, events: list[Event]) -> bool:
        """Vet head lines as they arrive; True once a request head has been emitted
        and its body (if any) should be read next."""
        if self._line_count == 0 and self._scan == 0:
            head = self._take_small_head()
            if head is not None:
                return self._process_head(head, events)
        return self._scan_head_lines(events)

    def _take_small_head(self) -> bytes | None:
        """The whole head, taken from the buffer, when it is here and small
        enough that no line limit can be hit; else None.

        Only line endings and the field count need a look, and both are
        C-level counts. Anything unusual (leading empty lines, bare LF, the
        HTTP/2 preface, too many fields) is left to the line-by-line scan,
        which names the problem."""
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if not 0 < end <= self._fast_head_limit or buf[0] == 0x0D or buf[0] == 0x0A:
            return None
        size = end + 4
        crlf_count = buf.count(b"\r\n", 0, size)
        if (
            crlf_count != buf.count(b"\n", 0, size)
            or crlf_count - 2 > self._limit_fields
            or buf.startswith(H2_PREFACE_LINE)
        ):
            return None
        if size == len(buf):
            head = bytes(buf)
            buf.clear()
        else:
            head = bytes(buf[:size])
            del buf[:size]
        return head

    def _scan_head_lines(self, events: list[Event]) -> bool:
        """Check each complete head line against its limit as it arrives (from
        self._scan on); process the head once its empty line is here."""
        buf = self._buf
        pos = self._scan
        limit_head = self._limit_head
        while True:
            newline = buf.find(b"\n", pos)
            if newline < 0:
                return self._await_line(events, pos)
            if newline == pos or buf[newline - 1] != 0x0D:
                return self._violation(events, 400, "bare-lf")
            length = newline - 1 - pos
            next_pos = newline + 1
            if next_pos > limit_head:
                return self._violation(events, 431, "header-section-too-large")
            if self._line_count == 0:
                if length == 0:  # RFC 9112 2.2: empty lines before a request are ignored
                    pos = self._head_start = next_pos
                    continue
                if length > self._limit_line:
                    return self._violation(events, 414, "request-line-too-long")
                if buf.startswith(H2_PREFACE_LINE, pos):
                    # Buffer left intact: the driver may hand it to HTTP/2 (h2c).
                    return self._violation(events, 400, "h2-preface")
                self._line_count = 1
            elif length == 0:
                head = bytes(buf[self._head_start:next_pos])
                del buf[:next_pos]
                self._scan = self._head_start = 0
                return self._process_head(head, events)
            elif length + 2 > self._limit_field_size:  # the CRLF counts, as in gunicorn
                return self._violation(events, 431, "field-too-large")
            elif self._line_count > self._limit_fields:  # this line would be one too many
                return self._violation(events, 431, "too-many-fields")
            else:
                self._line_count += 1
            pos = next_pos

    def _await_line(self, events: list[Event], pos: int) -> bool:
        """No line end after `pos` yet: refuse a partial line or head that is
        already over its limit, else wait for more bytes."""
        buf = self._buf
        partial = len(buf) - pos
        if self._line_count == 0:
            if partial > self._limit_line + 1:
                return self._violation(events, 414, "request-line-too-long")
        elif partial > self._limit_field_size - 1:
            # even if its last byte is the CR, line plus CRLF is over the limit
            return self._violation(events, 431, "field-too-large")
        if len(buf) > self._limit_head:
            return self._violation(events, 431, "header-section-too-large")
        self._scan = pos
        return False

    def _process_head(self, head: bytes, events: list[Event]) -> bool:
        """Check a complete head (every line ends in CRLF, limits already met)
        and emit RequestReceived; True when a body follows."""
        try:
            request, self._http10, self._keep_alive, self._accepts_trailers, self._chunked = (
                parse_request_head(head)
            )
        except RequestRejected as exc:
            if exc.head_request:
                self._method = "HEAD"  # error_response then sends no body
            return self._violation(events, exc.status, exc.reason, head_parsed=True)
        self._method = request.method
        self._body_remaining = request.content_length or 0
        events.append(request)
        if not request.end_stream:
            self._state = _BODY
            return True
        events.append(BodyEnded(stream_id=1, trailers=None))
        self._body_complete = True
        self._state = _DONE
        return False

    def _read_body(self, events: list[Event]) -> None:
        """Emit body bytes straight from our buffer, framed by Content-Length or chunked."""
        buf = self._buf
        if self._chunked:
            self._scan_chunked(events)
            return
        take = min(self._body_remaining, len(buf))
        if take == len(buf):
            data = bytes(buf)
            buf.clear()
        else:
            data = bytes(buf[:take])
            del buf[:take]
        self._body_remaining -= take
        events.append(BodyReceived(stream_id=1, data=data))
        if self._body_remaining == 0:
            self._finish_body(events, None)

    def _finish_body(self, events: list[Event], trailers: Headers | None) -> None:
        events.append(BodyEnded(stream_id=1, trailers=trailers))
        self._body_complete = True
        self._state = _DONE

    def _scan_chunked(self, events: list[Event]) -> None:
        """Decode and validate chunked framing as far as the buffer allows."""
        buf = self._buf
        size = len(buf)
        offset = 0
        state = self._chunk_state
        pieces: list[bytes] = []
        problem: tuple[int, str] | None = None
        while offset < size:
            if state == _CHUNK_DATA:
                take = min(self._chunk_remaining, size - offset)
                pieces.append(bytes(buf[offset:offset + take]))
                offset += take
                self._chunk_remaining -= take
                if self._chunk_remaining == 0:
                    state = _CHUNK_DATA_END
                continue
            if state == _CHUNK_DATA_END:
                problem = self._chunk_end_problem(offset)
                if problem is not None or size - offset < 2:
                    break
                offset += 2
                state = _CHUNK_SIZE
                continue
            line, offset, problem = self._chunk_line(state, offset)
            if line is None:
                break
            if state == _CHUNK_SIZE:
                state, problem = self._chunk_size_line(line)
            else:
                state, problem = self._trailer_line(line)
            if problem is not None or state == _CHUNK_DONE:
                break
        self._chunk_state = state
        del buf[:offset]
        if pieces:
            data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            events.append(BodyReceived(stream_id=1, data=data))
        if problem is not None:
            self._violation(events, *problem)
        elif state == _CHUNK_DONE:
            self._finish_body(events, trailer_fields(self._trailer_lines) or None)

    def _chunk_end_problem(self, offset: int) -> tuple[int, str] | None:
        """A chunk's data must be followed by CRLF; refused as soon as a byte
        that is not part of one arrives."""
        buf = self._buf
        if buf[offset] != 0x0D or (len(buf) - offset > 1 and buf[offset + 1] != 0x0A):
            return (400, "missing-chunk-crlf")
        return None

    def _chunk_line(self, state: int, offset: int) -> tuple[bytes | None, int, tuple[int, str] | None]:
        """(line without CRLF or None, offset after it, problem) for the
        chunk-size or trailer line at `offset`; None and no problem when the
        line is not complete yet."""
        buf = self._buf
        line_limit = MAX_CHUNK_LINE if state == _CHUNK_SIZE else self._limit_field_size
        newline = buf.find(b"\n", offset, offset + line_limit + 2)
        if newline < 0:
            if len(buf) - offset <= line_limit + 1:
                return None, offset, None
            if state == _CHUNK_SIZE:
                return None, offset, (400, "chunk-line-too-long")
            return None, offset, (431, "field-too-large")
        if newline == offset or buf[newline - 1] != 0x0D:
            return None, offset, (400, "bare-lf")
        return bytes(buf[offset:newline - 1]), newline + 1, None

    def _chunk_size_line(self, line: bytes) -> tuple[int, tuple[int, str] | None]:
        """The chunked state after a chunk-size line, and its problem if any."""
        try:
            size = chunk_size(line)
        except RequestRejected as exc:
            return _CHUNK_SIZE, (exc.status, exc.reason)
        if size == 0:
            return _CHUNK_TRAILER, None
        self._chunk_remaining = size
        return _CHUNK_DATA, None

    def _trailer_line(self, line: bytes) -> tuple[int, tuple[int, str] | None]:
        """The chunked state after a trailer line (the empty one ends the body),
        and its problem if any; trailers obey the header limits and rules."""
        if not line:
            return _CHUNK_DONE, None
        self._trailer_bytes += len(line) + 2
        if len(self._trailer_lines) >= self._limit_fields:
            return _CHUNK_TRAILER, (431, "too-many-fields")
        if self._trailer_bytes > self._limit_head:
            return _CHUNK_TRAILER, (431, "header-section-too-large")
        reason = field_line_problem(line)
        if reason:
            return _CHUNK_TRAILER, (400, reason)
        self._trailer_lines.append(line)
        return _CHUNK_TRAILER, None

    # ------------------------------------------------------------------ sending

    def informational(self, status: int, headers: Headers) -> bytes:
        """Bytes of a 1xx response (100 Continue, 103 Early Hints); b"" for
        HTTP/1.0 clients, which must not receive one (RFC 9110 15.2)."""
        if not 100 <= status < 200 or status == 101:
            raise ValueError(f"not an informational status usable here: {status}")
        if self._response_started:
            raise RuntimeError("informational response after the final response head")
        if self._http10:
            return b""
        if not self._method:
            raise ValueError("no request to answer")
        return informational_head(status, headers)

    def response_head(self, status: int, reason: str, headers: Headers) -> bytes:
        """Bytes of the status line and header section; framing headers are ours.

        An app-supplied Transfer-Encoding is dropped (framing is decided here);
        Content-Length is kept and enforced by body()/end()."""
        if self._response_started:
            raise RuntimeError("response head already sent")
        if not 200 <= status <= 999:
            raise ValueError(f"final response status out of range: {status}")
        try:
            if not self._method:
                raise ValueError("no request to answer")
            return self._response_head(status, reason, headers)
        except ValueError as exc:
            self._keep_alive = False
            raise ValueError(f"response head rejected: {exc}") from exc

    def _response_head(self, status: int, reason: str, headers: Headers) -> bytes:
        data, self._resp_mode, self._resp_remaining, closing = response_head(
            status, reason, headers, method=self._method, http10=self._http10,
            keep_alive=self._keep_alive)
        if closing:
            self._keep_alive = False
        self._response_started = True
        return data

    def body(self, data: bytes) -> bytes:
        """Frame a piece of the response body (chunked or raw); nothing for HEAD/204/304."""
        if not self._response_started or self._response_done:
            raise RuntimeError("body() outside a response")
        mode = self._resp_mode
        if not data or mode == RESP_NO_BODY:
            return b""
        if self._resp_failed:
            raise ValueError("the response already failed")
        if mode == RESP_CHUNKED:
            return b"".join((b"%x\r\n" % len(data), data, b"\r\n"))
        if mode == RESP_LENGTH:
            remaining = self._resp_remaining - len(data)
            if remaining < 0:
                self._resp_failed = True
                self._keep_alive = False
                raise ValueError(
                    f"{len(data)} body bytes exceed the {self._resp_remaining} left of Content-Length"
                )
            self._resp_remaining = remaining
        return data if type(data) is bytes else bytes(data)

    def end(self, trailers: Headers | None = None) -> bytes:
        """Finish the response. Trailers go out only on a chunked response to a
        client that sent "TE: trailers"; otherwise they are dropped."""
        if not self._response_started or self._response_done:
            raise RuntimeError("end() outside a response")
        self._response_done = True
        if self._resp_failed:
            raise ValueError("the response already failed")
        mode = self._resp_mode
        if mode == RESP_CHUNKED:
            if trailers and self._accepts_trailers:
                try:
                    return trailer_section(trailers)
                except ValueError:
                    self._resp_failed = True
                    self._keep_alive = False
                    raise
            return b"0\r\n\r\n"
        if mode == RESP_LENGTH and self._resp_remaining:
            self._resp_failed = True
            self._keep_alive = False
            raise ValueError(f"response ended {self._resp_remaining} bytes short of Content-Length")
        return b""

    def error_response(self, status: int, reason: str) -> bytes:
        """A complete minimal text/plain response with Connection: close, built
        so it works whatever state the exchange is in. `reason` is an optional
        detail (e.g. ProtocolViolation.reason) shown in the body."""
        data = error_response(status, reason, head_request=self._method == "HEAD")
        self._keep_alive = False
        self._response_started = self._response_done = True
        return data

    # ------------------------------------------------------------------ lifecycle

    def start_next_request(self) -> list[Event]:
        """Begin the next exchange on a kept-alive connection and parse any
        request bytes that were already buffered (pipelining)."""
        if self._state == _CLOSED:
            return []
        if self._state != _DONE or not self._response_done:
            raise RuntimeError("the current request/response exchange is not complete")
        if not self.keep_alive:
            raise RuntimeError("connection is not reusable; close it")
        self._reset_exchange()
        self._state = _HEAD
        events: list[Event] = []
        if self._buf:
            self._advance(events)
        if self._eof:
            if self._state == _HEAD:
                events.extend(self._eof_between_requests())
            elif self._state == _BODY:
                self._violation(events, 400, "incomplete")
        return events

    def close_after_response(self) -> None:
        """Shutdown: the current response carries Connection: close (if its head
        is not out yet) and the connection is not reused."""
        self._keep_alive = False

    def switching_protocols_response(self) -> bytes:
        """The 101 answer to an h2c upgrade; this object parses nothing afterwards.
        Collect bytes that followed the request with take_trailing_data()."""
        self._state = _CLOSED
        self._keep_alive = False
        self._response_started = self._response_done = True
        return SWITCHING_PROTOCOLS

    h2c_upgrade_requested = staticmethod(h2c_upgrade_requested)

    def take_trailing_data(self) -> bytes:
        """Buffered bytes not parsed as HTTP/1.1 (after an h2c upgrade, or the
        HTTP/2 preface after an "h2-preface" violation). Clears the buffer."""
        data = bytes(self._buf)
        self._buf.clear()
        return data

    @property
    def trailing_data(self) -> bytes:
        """Buffered bytes not parsed as HTTP/1.1, without clearing them (see
        take_trailing_data)."""
        return bytes(self._buf)

    @property
    def keep_alive(self) -> bool:
        """Whether the connection may carry another request after this response."""
        return self._keep_alive and self._state != _CLOSED

    @property
    def accepts_trailers(self) -> bool:
        """The client sent "TE: trailers"."""
        return self._accepts_trailers

    @property
    def request_body_complete(self) -> bool:
        """The whole request body (and trailers) has been received."""
        return self._body_complete

    @property
    def pending_bytes(self) -> int:
        """Received bytes not yet consumed; a driver can stop reading above a threshold."""
        return len(self._buf)
