"""Unit tests of the h2spec conformance runner itself (no server needed).

Frame builders are checked byte by byte and against hyperframe/hpack as
independent decoders; verdicts are fed scripted server answers; the report
and the catalogue are checked for the shapes other tools rely on. One test
drives a few cases against a tiny in-process server built on the h2 library
over 127.0.0.1, to show the pieces work together.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
import xml.etree.ElementTree as ET

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import hpack
import pytest
from hyperframe.frame import Frame

from h2spec import frames
from h2spec.catalogue import Case, CaseContext, CaseFailed, CaseSkipped, all_cases, select
from h2spec.cli import main
from h2spec.client import Closed, Connection, Target, TimedOut
from h2spec.frames import ErrorCode, FrameType, ReceivedFrame, SettingId
from h2spec.report import TextReporter, junit_xml, summary_line
from h2spec.runner import FAILED, PASSED, SKIPPED, Result, run_case, run_cases
from h2spec.verdicts import (
    expect_connection_close,
    expect_connection_error,
    expect_goaway,
    expect_ping_ack,
    expect_reset_or_goaway,
    expect_response_headers,
    expect_stream_error,
)

# ---------------------------------------------------------------- frame building


def test_frame_header_layout() -> None:
    raw = frames.frame(FrameType.PING, 0x01, 0, b"12345678")
    assert raw[:9] == b"\x00\x00\x08\x06\x01\x00\x00\x00\x00"
    assert raw[9:] == b"12345678"


def test_frame_can_lie_about_length_and_set_reserved_bit() -> None:
    raw = frames.frame(FrameType.DATA, 0, 3, b"abc", length=10, reserved_bit=True)
    assert raw[:3] == b"\x00\x00\x0a"
    assert struct.unpack(">I", raw[5:9])[0] == 0x80000003


def test_invalid_frames_are_built_without_complaint() -> None:
    # DATA on stream 0 and a 6-octet PING: libraries refuse, the runner must not.
    assert frames.data_frame(0, b"x")[5:9] == b"\x00\x00\x00\x00"
    assert len(frames.frame(FrameType.PING, 0, 0, b"\x00" * 6)) == 15


def test_valid_frames_decode_with_hyperframe() -> None:
    padded = frames.data_frame(1, b"test", end_stream=True, pad_length=6)
    decoded, length = Frame.parse_frame_header(memoryview(padded[:9]))
    decoded.parse_body(memoryview(padded[9 : 9 + length]))
    assert decoded.data == b"test"
    assert decoded.pad_length == 6
    assert "END_STREAM" in decoded.flags and "PADDED" in decoded.flags

    headers = frames.headers_frame(5, b"\x82", end_stream=True, priority=(3, 200, True), pad_length=2)
    decoded, length = Frame.parse_frame_header(memoryview(headers[:9]))
    decoded.parse_body(memoryview(headers[9 : 9 + length]))
    assert decoded.stream_id == 5
    assert decoded.data == b"\x82"
    assert (decoded.depends_on, decoded.stream_weight, decoded.exclusive) == (3, 200, True)
    assert {"END_STREAM", "END_HEADERS", "PRIORITY", "PADDED"} <= set(decoded.flags)

    settings = frames.settings_frame([(SettingId.INITIAL_WINDOW_SIZE, 1), (SettingId.ENABLE_PUSH, 0)])
    decoded, length = Frame.parse_frame_header(memoryview(settings[:9]))
    decoded.parse_body(memoryview(settings[9 : 9 + length]))
    assert decoded.settings == {SettingId.INITIAL_WINDOW_SIZE: 1, SettingId.ENABLE_PUSH: 0}


def test_parse_frames_keeps_partial_frame() -> None:
    data = frames.ping_frame(b"abcdefgh", ack=True) + frames.goaway_frame(7, ErrorCode.PROTOCOL_ERROR)
    parsed, rest = frames.parse_frames(data + b"\x00\x00\x04\x03")
    assert [f.type for f in parsed] == [FrameType.PING, FrameType.GOAWAY]
    assert parsed[0].is_ack and parsed[0].payload == b"abcdefgh"
    assert parsed[1].error_code == ErrorCode.PROTOCOL_ERROR
    assert parsed[1].last_stream_id == 7
    assert rest == b"\x00\x00\x04\x03"


def test_received_frame_describe_names_error_code() -> None:
    rst = ReceivedFrame(FrameType.RST_STREAM, 0, 1, struct.pack(">I", ErrorCode.REFUSED_STREAM))
    assert "RST_STREAM" in rst.describe() and "REFUSED_STREAM" in rst.describe()
    unknown = ReceivedFrame(FrameType.GOAWAY, 0, 0, struct.pack(">II", 0, 0xFF))
    assert "0xff" in unknown.describe()


# ---------------------------------------------------------------- HPACK helpers


def test_hpack_integer_examples_from_rfc7541() -> None:
    assert frames.hpack_integer(10, 5) == b"\x0a"
    assert frames.hpack_integer(1337, 5) == b"\x1f\x9a\x0a"
    assert frames.hpack_integer(42, 8) == b"\x2a"


def test_literal_representations_decode_to_the_intended_field() -> None:
    for kind in (frames.LITERAL_INCREMENTAL, frames.LITERAL_WITHOUT_INDEXING, frames.LITERAL_NEVER_INDEXED):
        for name in (58, b"x-test"):
            for huffman in (False, True):
                block = frames.literal_field(name, b"h2spec", kind=kind, huffman=huffman)
                decoded = hpack.Decoder().decode(block, raw=True)
                expected_name = b"user-agent" if name == 58 else b"x-test"
                assert decoded == [(expected_name, b"h2spec")]


def test_table_size_updates_are_accepted_by_a_decoder() -> None:
    block = frames.table_size_update(0) + frames.table_size_update(4096) + frames.indexed_field(2)
    assert hpack.Decoder().decode(block, raw=True) == [(b":method", b"GET")]


@pytest.mark.parametrize(
    "value",
    [
        frames.huffman_encode(b"test") + b"\xff",  # padding longer than 7 bits
        frames.huffman_encode(b"test")[:-1] + bytes([frames.huffman_encode(b"test")[-1] & 0xF0]),
        frames.huffman_bits([ord("t"), ord("e"), 256, ord("s"), ord("t")]),  # EOS inside
    ],
)
def test_broken_huffman_strings_are_rejected_by_a_decoder(value: bytes) -> None:
    block = b"\x00" + frames.hpack_string(b"x-test") + frames.raw_string(value)
    with pytest.raises(hpack.HPACKDecodingError):
        hpack.Decoder().decode(block)


def test_literal_block_keeps_names_as_written() -> None:
    block = frames.literal_block([(":path", "/"), ("X-TEST", "ok")])
    assert hpack.Decoder().decode(block, raw=True) == [(b":path", b"/"), (b"X-TEST", b"ok")]


# ---------------------------------------------------------------- verdicts


class ScriptedConnection:
    """Stands in for a Connection: replays server events, then times out."""

    def __init__(self, *events: ReceivedFrame | Closed) -> None:
        self.events = list(events)
        self.timeout = 0.01
        self.notes: list[str] = []

    def next_event(self, deadline: float) -> ReceivedFrame | Closed | TimedOut:
        if self.events:
            return self.events.pop(0)
        return TimedOut(self.timeout)


def goaway(code: int) -> ReceivedFrame:
    return ReceivedFrame(FrameType.GOAWAY, 0, 0, struct.pack(">II", 1, code))


def rst(stream_id: int, code: int) -> ReceivedFrame:
    return ReceivedFrame(FrameType.RST_STREAM, 0, stream_id, struct.pack(">I", code))


RESPONSE_200 = [
    ReceivedFrame(FrameType.HEADERS, frames.Flags.END_HEADERS, 1, b"\x88"),
    ReceivedFrame(FrameType.DATA, frames.Flags.END_STREAM, 1, b"hello"),
]


def test_connection_error_passes_on_goaway_with_the_code() -> None:
    expect_connection_error(ScriptedConnection(goaway(ErrorCode.PROTOCOL_ERROR)), ErrorCode.PROTOCOL_ERROR)


def test_connection_error_passes_on_close_like_h2spec() -> None:
    expect_connection_error(ScriptedConnection(Closed()), ErrorCode.PROTOCOL_ERROR)


def test_connection_error_fails_on_a_200_response() -> None:
    with pytest.raises(CaseFailed) as failure:
        expect_connection_error(ScriptedConnection(*RESPONSE_200), ErrorCode.PROTOCOL_ERROR)
    assert "GOAWAY frame (error_code:PROTOCOL_ERROR)" in failure.value.expected
    assert "Connection closed" in failure.value.expected
    assert "Timeout" in failure.value.actual and "DATA frame" in failure.value.actual


def test_connection_error_with_wrong_code_fails_unless_closed() -> None:
    with pytest.raises(CaseFailed):
        expect_connection_error(ScriptedConnection(goaway(ErrorCode.INTERNAL_ERROR)), ErrorCode.PROTOCOL_ERROR)
    conn = ScriptedConnection(goaway(ErrorCode.INTERNAL_ERROR), Closed())
    expect_connection_error(conn, ErrorCode.PROTOCOL_ERROR)
    assert conn.notes and "INTERNAL_ERROR" in conn.notes[0]


def test_connection_error_ignores_rst_stream() -> None:
    with pytest.raises(CaseFailed):
        expect_connection_error(ScriptedConnection(rst(1, ErrorCode.STREAM_CLOSED)), ErrorCode.STREAM_CLOSED)


def test_stream_error_accepts_rst_stream_goaway_or_close() -> None:
    expect_stream_error(ScriptedConnection(rst(1, ErrorCode.REFUSED_STREAM)), ErrorCode.PROTOCOL_ERROR, ErrorCode.REFUSED_STREAM)
    expect_stream_error(ScriptedConnection(goaway(ErrorCode.PROTOCOL_ERROR)), ErrorCode.PROTOCOL_ERROR)
    expect_stream_error(ScriptedConnection(*RESPONSE_200, Closed()), ErrorCode.PROTOCOL_ERROR)
    with pytest.raises(CaseFailed):
        expect_stream_error(ScriptedConnection(rst(1, ErrorCode.STREAM_CLOSED)), ErrorCode.PROTOCOL_ERROR)
    with pytest.raises(CaseFailed):
        expect_stream_error(ScriptedConnection(*RESPONSE_200), ErrorCode.PROTOCOL_ERROR)


def test_goaway_verdict_does_not_accept_a_bare_close() -> None:
    expect_goaway(ScriptedConnection(goaway(ErrorCode.PROTOCOL_ERROR)))
    with pytest.raises(CaseFailed):
        expect_goaway(ScriptedConnection(Closed()))
    with pytest.raises(CaseFailed):
        expect_goaway(ScriptedConnection(goaway(ErrorCode.NO_ERROR)), ErrorCode.FLOW_CONTROL_ERROR)


def test_reset_verdict_wants_the_right_stream_and_code() -> None:
    expect_reset_or_goaway(ScriptedConnection(rst(1, ErrorCode.FLOW_CONTROL_ERROR)), 1, ErrorCode.FLOW_CONTROL_ERROR)
    with pytest.raises(CaseFailed):
        expect_reset_or_goaway(ScriptedConnection(rst(1, ErrorCode.NO_ERROR)), 1, ErrorCode.FLOW_CONTROL_ERROR)
    with pytest.raises(CaseFailed):
        expect_reset_or_goaway(ScriptedConnection(Closed()), 1, ErrorCode.FLOW_CONTROL_ERROR)


def test_connection_close_verdict() -> None:
    expect_connection_close(ScriptedConnection(goaway(ErrorCode.PROTOCOL_ERROR), Closed()))
    with pytest.raises(CaseFailed):
        expect_connection_close(ScriptedConnection(goaway(ErrorCode.PROTOCOL_ERROR)))


def test_ping_ack_needs_the_same_payload() -> None:
    def ping(payload: bytes, ack: bool) -> ReceivedFrame:
        return ReceivedFrame(FrameType.PING, frames.Flags.ACK if ack else 0, 0, payload)

    expect_ping_ack(ScriptedConnection(ping(b"other\x00\x00\x00", True), ping(b"h2spec\x00\x00", True)), b"h2spec\x00\x00")
    with pytest.raises(CaseFailed):
        expect_ping_ack(ScriptedConnection(ping(b"h2spec\x00\x00", False)), b"h2spec\x00\x00")
    with pytest.raises(CaseFailed):
        expect_ping_ack(ScriptedConnection(ping(b"invalid\x00", True)), b"h2spec\x00\x00", forbidden_data=b"invalid\x00")
    with pytest.raises(CaseFailed):
        expect_ping_ack(ScriptedConnection(Closed()), b"h2spec\x00\x00")
    expect_ping_ack(ScriptedConnection(Closed()), b"h2spec\x00\x00", close_ok=True)


def test_response_headers_verdict_fails_fast_on_reset() -> None:
    expect_response_headers(ScriptedConnection(*RESPONSE_200), 1)
    started = time.monotonic()
    conn = ScriptedConnection(rst(1, ErrorCode.PROTOCOL_ERROR))
    conn.timeout = 5.0
    with pytest.raises(CaseFailed) as failure:
        expect_response_headers(conn, 1)
    assert "RST_STREAM" in failure.value.actual
    assert time.monotonic() - started < 1.0


# ---------------------------------------------------------------- catalogue


def test_catalogue_size_and_ids() -> None:
    normal = all_cases()
    strict = all_cases(strict=True)
    assert len(normal) == 146
    assert len(strict) == 147
    assert [c.id for c in strict if c.strict] == ["http2/5.4.1/2"]
    ids = [c.id for c in strict]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"(generic|http2|hpack)/\d+(\.\d+)*/\d+", case_id) for case_id in ids)
    per_spec = {spec: sum(1 for c in normal if c.spec == spec) for spec in ("generic", "http2", "hpack")}
    assert per_spec == {"generic": 44, "http2": 94, "hpack": 8}
    assert "http2/6.9.1/3" in ids and "generic/5/15" in ids and "hpack/6.3/1" in ids


def test_section_selection_stops_at_id_boundaries() -> None:
    cases = all_cases(strict=True)
    selected = {c.id for c in select(cases, ["http2/6.5"])}
    assert {"http2/6.5/1", "http2/6.5.2/5", "http2/6.5.3/2"} <= selected
    assert all(i.startswith("http2/6.5") for i in selected)
    assert not any(c.id.startswith("http2/6.10") for c in select(cases, ["http2/6.1"]))
    assert [c.id for c in select(cases, ["http2/6.9.1/3"])] == ["http2/6.9.1/3"]
    assert len(select(cases, [])) == 147


# ---------------------------------------------------------------- runner and report


def fake_case(behaviour, number: int = 1, section: str = "6.5") -> Case:
    return Case("http2", section, number, f"fake case {number}", "a requirement", behaviour)


def _raise(exc: Exception):
    def run(ctx: CaseContext) -> None:
        raise exc

    return run


TARGET = Target("127.0.0.1", 9, timeout=0.2)


def test_run_case_maps_outcomes_to_statuses() -> None:
    assert run_case(fake_case(lambda ctx: None), TARGET).status == PASSED
    failed = run_case(fake_case(_raise(CaseFailed(["GOAWAY"], "nothing"))), TARGET)
    assert (failed.status, failed.expected, failed.actual) == (FAILED, ["GOAWAY"], "nothing")
    skipped = run_case(fake_case(_raise(CaseSkipped("no limit"))), TARGET)
    assert (skipped.status, skipped.message) == (SKIPPED, "no limit")
    broken = run_case(fake_case(_raise(KeyError("oops"))), TARGET)
    assert broken.status == FAILED and "internal error" in broken.message


def test_run_cases_keeps_catalogue_order() -> None:
    def slow(ctx: CaseContext) -> None:
        time.sleep(0.05)

    cases = [fake_case(slow, 1), fake_case(lambda ctx: None, 2)]
    assert [r.case.number for r in run_cases(cases, TARGET, jobs=2)] == [1, 2]


def sample_results() -> list[Result]:
    return [
        Result(fake_case(None, 1), PASSED, duration=0.01),
        Result(fake_case(None, 2), FAILED, expected=["GOAWAY frame (error_code:PROTOCOL_ERROR)"], actual="Timeout & <stuff>"),
        Result(fake_case(None, 1, "6.7"), SKIPPED, message="empty body"),
    ]


def test_summary_line_format() -> None:
    assert summary_line(sample_results()) == "3 tests, 1 passed, 1 skipped, 1 failed"
    assert re.fullmatch(r"\d+ tests, \d+ passed, \d+ skipped, \d+ failed", summary_line([]))


def test_text_report_lines(capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    reporter = TextReporter(sys.stdout)
    results = sample_results()
    for result in results:
        reporter.add(result)
    reporter.finish(results, 1.5)
    out = capsys.readouterr().out
    assert "  [PASS] http2/6.5/1: fake case 1\n" in out
    assert "  [FAIL] http2/6.5/2: fake case 2\n" in out
    assert "expected: GOAWAY frame (error_code:PROTOCOL_ERROR)" in out
    assert "actual: Timeout & <stuff>" in out
    assert "[SKIP] http2/6.7/1" in out
    assert out.rstrip().endswith("3 tests, 1 passed, 1 skipped, 1 failed")


def test_junit_xml_is_well_formed(tmp_path) -> None:
    from h2spec.report import write_junit

    path = tmp_path / "report.xml"
    write_junit(sample_results(), str(path), 1.0)
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("3", "1", "1")
    suites = root.findall("testsuite")
    assert len(suites) == 2
    cases = root.iter("testcase")
    names = [c.get("name") for c in cases]
    assert names[0] == "http2/6.5/1: fake case 1"
    failure = root.find(".//failure")
    assert failure is not None and "Timeout & <stuff>" in failure.text
    assert root.find(".//skipped").get("message") == "empty body"
    ET.fromstring(ET.tostring(junit_xml(sample_results()).getroot()))


def test_cli_dryrun_lists_cases(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dryrun", "--strict"]) == 0
    out = capsys.readouterr().out
    assert "http2/5.4.1/2" in out and out.rstrip().endswith("147 tests")
    assert main(["--dryrun", "-s", "hpack"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("8 tests")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_cli_exits_non_zero_when_a_case_fails(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    junit = tmp_path / "out.xml"
    code = main(["-p", str(_closed_port()), "-o", "0.5", "-s", "generic/1", "-j", str(junit)])
    out = capsys.readouterr().out
    assert code == 1
    assert "[FAIL] generic/1/1" in out and "cannot connect" in out
    assert out.rstrip().endswith("1 tests, 0 passed, 0 skipped, 1 failed")
    assert ET.parse(junit).getroot().get("failures") == "1"


# ---------------------------------------------------------------- end to end


class TinyH2Server:
    """A plaintext (h2c) server on 127.0.0.1 built on the h2 library: it
    answers every request with 200 "hello h2spec!" and turns protocol errors
    into GOAWAY + close. Enough to run real cases against."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        pending: dict[int, bytes] = {}
        sock.settimeout(5)
        try:
            sock.sendall(conn.data_to_send())
            while not self.stopping.is_set():
                data = sock.recv(65536)
                if not data:
                    break
                try:
                    events = conn.receive_data(data)
                except h2.exceptions.ProtocolError:
                    sock.sendall(conn.data_to_send())
                    break
                for event in events:
                    if isinstance(event, h2.events.RequestReceived):
                        conn.send_headers(event.stream_id, [(":status", "200"), ("content-length", "13")])
                        pending[event.stream_id] = b"hello h2spec!"
                    elif isinstance(event, h2.events.StreamReset):
                        pending.pop(event.stream_id, None)
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        sock.sendall(conn.data_to_send())
                        return
                self._send_within_windows(conn, pending)
                sock.sendall(conn.data_to_send())
        except OSError:
            pass
        finally:
            sock.close()

    @staticmethod
    def _send_within_windows(conn: h2.connection.H2Connection, pending: dict[int, bytes]) -> None:
        """Send what the flow-control windows allow; keep the rest."""
        for stream_id, body in list(pending.items()):
            try:
                room = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
            except h2.exceptions.StreamClosedError:
                del pending[stream_id]
                continue
            if room <= 0:
                continue
            chunk, pending[stream_id] = body[:room], body[room:]
            conn.send_data(stream_id, chunk, end_stream=not pending[stream_id])
            if not pending[stream_id]:
                del pending[stream_id]

    def stop(self) -> None:
        self.stopping.set()
        self.listener.close()
        self.thread.join(timeout=2)


@pytest.fixture
def tiny_server():
    server = TinyH2Server()
    yield server
    server.stop()


def test_cases_against_an_in_process_h2_server(tiny_server: TinyH2Server) -> None:
    target = Target("127.0.0.1", tiny_server.port, timeout=1.0)
    wanted = [
        "generic/1/1",
        "generic/3.7/1",
        "generic/4/3",
        "generic/5/14",
        "http2/4.2/3",
        "http2/6.5.3/2",
        "http2/6.7/2",
        "http2/6.9.1/1",
        "http2/6.9.2/2",
        "http2/8.1.2.3/7",
        "hpack/5.2/3",
        "hpack/6.3/1",
    ]
    cases = select(all_cases(), wanted)
    assert len(cases) == len(wanted)
    results = list(run_cases(cases, target, jobs=4))
    failures = {r.case.id: (r.expected, r.actual, r.message) for r in results if r.status != PASSED}
    assert failures == {}


def test_connection_handshake_against_the_server(tiny_server: TinyH2Server) -> None:
    conn = Connection.open(Target("127.0.0.1", tiny_server.port, timeout=1.0))
    try:
        conn.handshake()
        assert conn.max_frame_size == 16384
        assert conn.server_settings.get(SettingId.MAX_CONCURRENT_STREAMS) is not None
        conn.send(frames.goaway_frame(0, ErrorCode.NO_ERROR))
        deadline = time.monotonic() + 1.0
        while True:
            event = conn.next_event(deadline)
            if not isinstance(event, ReceivedFrame):
                break
        assert isinstance(event, Closed)
        assert conn.next_event(deadline) == Closed("already closed")
    finally:
        conn.close()
