"""The PROXY protocol: the parser fed bytes, then a real server fed headers."""

from __future__ import annotations

import json
import socket
import ssl
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from h2serve.transport.proxy_protocol import (
    V1_MAX_LENGTH,
    V2_SIGNATURE,
    NeedMore,
    ProxyHeader,
    ProxyProtocolError,
    build_v1_header,
    build_v2_header,
    parse_proxy_header,
)

CLIENT_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"


# --- version 1 -------------------------------------------------------------------------


def test_v1_tcp4_gives_addresses_and_leaves_the_rest():
    line = b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n"
    result = parse_proxy_header(line + CLIENT_HELLO)
    assert result == ProxyHeader(1, "PROXY", "TCP4", ("203.0.113.7", 56324), ("192.0.2.1", 443),
                                 len(line))


def test_v1_tcp6():
    line = b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 8443\r\n"
    result = parse_proxy_header(line + b"GET / HTTP/1.1\r\n")
    assert isinstance(result, ProxyHeader)
    assert result.family == "TCP6"
    assert result.source == ("2001:db8::7", 4000)
    assert result.destination == ("2001:db8::1", 8443)
    assert result.consumed == len(line)


def test_v1_unknown_keeps_no_address_and_ignores_the_rest_of_the_line():
    line = b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n"
    result = parse_proxy_header(line + b"x")
    assert result == ProxyHeader(1, "PROXY", "UNKNOWN", None, None, len(line))
    assert parse_proxy_header(b"PROXY UNKNOWN\r\n") == ProxyHeader(1, "PROXY", "UNKNOWN", None,
                                                                  None, 15)


def test_v1_every_prefix_needs_more():
    line = b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n"
    for cut in range(len(line)):
        result = parse_proxy_header(line[:cut])
        assert isinstance(result, NeedMore), cut
        assert result.total > cut
    assert isinstance(parse_proxy_header(line), ProxyHeader)


def test_v1_longest_valid_line_is_107_bytes():
    longest_tcp6 = (b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                    b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n")
    result = parse_proxy_header(longest_tcp6)
    assert isinstance(result, ProxyHeader) and result.consumed == len(longest_tcp6) == 104
    # The spec's worst case is UNKNOWN followed by the longest addresses: 107 bytes.
    unknown = b"PROXY UNKNOWN " + b"x" * (V1_MAX_LENGTH - 16) + b"\r\n"
    assert len(unknown) == V1_MAX_LENGTH
    assert isinstance(parse_proxy_header(unknown), ProxyHeader)


def test_v1_without_crlf_in_107_bytes_is_an_error():
    too_long = b"PROXY UNKNOWN " + b"x" * (V1_MAX_LENGTH - 14)
    assert len(too_long) == V1_MAX_LENGTH
    with pytest.raises(ProxyProtocolError, match="107"):
        parse_proxy_header(too_long + b"\r\n")
    # One byte short of the limit with no CRLF yet: still waiting.
    assert isinstance(parse_proxy_header(too_long[:-1]), NeedMore)


@pytest.mark.parametrize("line", [
    b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\n",            # LF without CR
    b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\r\n",
    b"PROXY TCP4 203.0.113.7 192.0.2.1 56324\r\n",             # a port missing
    b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 443 extra\r\n",
    b"PROXY TCP4  203.0.113.7 192.0.2.1 56324 443\r\n",        # two spaces
    b"PROXY TCP5 203.0.113.7 192.0.2.1 56324 443\r\n",
    b"PROXY tcp4 203.0.113.7 192.0.2.1 56324 443\r\n",
    b"PROXY TCP4 2001:db8::7 192.0.2.1 56324 443\r\n",         # family mismatch
    b"PROXY TCP6 203.0.113.7 2001:db8::1 56324 443\r\n",
    b"PROXY TCP4 203.0.113.256 192.0.2.1 56324 443\r\n",
    b"PROXY TCP4 203.0.113.07 192.0.2.1 56324 443\r\n",        # leading zero in an octet
    b"PROXY TCP4 203.0.113.7 192.0.2.1 65536 443\r\n",
    b"PROXY TCP4 203.0.113.7 192.0.2.1 0443 443\r\n",
    b"PROXY TCP4 203.0.113.7 192.0.2.1 -1 443\r\n",
    b"PROXY TCP4 203.0.113.7 192.0.2.1 \xd9\xa1 443\r\n",     # non-ASCII digit
    b"PROXY\r\n",
    b"PROXYTCP4 203.0.113.7 192.0.2.1 56324 443\r\n",
])
def test_v1_malformed_lines_are_errors(line):
    with pytest.raises(ProxyProtocolError):
        parse_proxy_header(line)


@pytest.mark.parametrize("start", [b"GET / HTTP/1.1\r\n", b"\x16\x03\x01", b"PRI * HTTP/2.0",
                                   b"PROXX", b"Proxy "])
def test_anything_else_is_rejected_at_once(start):
    with pytest.raises(ProxyProtocolError, match="does not start"):
        parse_proxy_header(start)


def test_empty_input_needs_more():
    assert parse_proxy_header(b"") == NeedMore(1)


# --- version 2 -------------------------------------------------------------------------


def test_v2_ipv4_with_tlvs_skipped():
    tlvs = bytes([0x01, 0x00, 0x02]) + b"h2" + bytes([0x04, 0x00, 0x03]) + b"\x00\x00\x00"
    header = build_v2_header(("198.51.100.9", 40000), ("192.0.2.1", 443), tlvs=tlvs)
    result = parse_proxy_header(header + CLIENT_HELLO)
    assert result == ProxyHeader(2, "PROXY", "TCP4", ("198.51.100.9", 40000), ("192.0.2.1", 443),
                                 len(header))
    assert result.consumed == 16 + 12 + len(tlvs)


def test_v2_ipv6():
    header = build_v2_header(("2001:db8::9", 1234), ("2001:db8::1", 8443))
    result = parse_proxy_header(header)
    assert isinstance(result, ProxyHeader)
    assert (result.family, result.source, result.destination) == (
        "TCP6", ("2001:db8::9", 1234), ("2001:db8::1", 8443))


def test_v2_local_command_keeps_the_real_peer():
    header = build_v2_header(None, None, local=True)
    assert header[12] == 0x20
    assert parse_proxy_header(header + b"rest") == ProxyHeader(2, "LOCAL", "UNKNOWN", None, None, 16)
    # LOCAL ignores whatever address block and TLVs follow, but still consumes them.
    with_block = V2_SIGNATURE + bytes([0x20, 0x11, 0, 12]) + bytes(12)
    assert parse_proxy_header(with_block) == ProxyHeader(2, "LOCAL", "UNKNOWN", None, None, 28)


def test_v2_unspec_family_gives_no_address():
    header = V2_SIGNATURE + bytes([0x21, 0x00, 0, 0])
    assert parse_proxy_header(header) == ProxyHeader(2, "PROXY", "UNKNOWN", None, None, 16)


def test_v2_unix_addresses():
    source = b"/run/client.sock".ljust(108, b"\x00")
    destination = b"/run/h2serve.sock".ljust(108, b"\x00")
    header = V2_SIGNATURE + bytes([0x21, 0x31]) + (216).to_bytes(2, "big") + source + destination
    result = parse_proxy_header(header)
    assert isinstance(result, ProxyHeader)
    assert (result.family, result.source, result.destination) == (
        "UNIX", "/run/client.sock", "/run/h2serve.sock")


def test_v2_every_prefix_needs_more_and_says_how_much():
    header = build_v2_header(("198.51.100.9", 40000), ("192.0.2.1", 443), tlvs=b"\x04\x00\x01\x00")
    for cut in range(len(header)):
        result = parse_proxy_header(header[:cut])
        assert isinstance(result, NeedMore), cut
        assert cut < result.total <= len(header)
        if cut >= 16:
            assert result.total == len(header)


@pytest.mark.parametrize("version_command, family_transport, length, reason", [
    (0x11, 0x11, 12, "version 1"),
    (0x31, 0x11, 12, "version 3"),
    (0x22, 0x11, 12, "unknown command"),
    (0x21, 0x41, 12, "unknown address family"),
    (0x21, 0x12, 12, "datagram"),
    (0x21, 0x13, 12, "datagram"),
    (0x21, 0x11, 11, "address block"),
    (0x21, 0x21, 12, "address block"),
    (0x21, 0x31, 100, "address block"),
])
def test_v2_invalid_preambles(version_command, family_transport, length, reason):
    data = V2_SIGNATURE + bytes([version_command, family_transport]) + length.to_bytes(2, "big")
    data += bytes(length)
    with pytest.raises(ProxyProtocolError, match=reason):
        parse_proxy_header(data)


def test_v2_broken_signature():
    with pytest.raises(ProxyProtocolError):
        parse_proxy_header(b"\r\n\r\n\x00\r\nQUIX\n" + bytes(4))
    assert isinstance(parse_proxy_header(V2_SIGNATURE[:7]), NeedMore)


# --- round trips -------------------------------------------------------------------------

_ipv4 = st.ip_addresses(v=4).map(str)
_ipv6 = st.ip_addresses(v=6).map(str)
_port = st.integers(0, 65535)


@given(st.one_of(st.tuples(_ipv4, _ipv4), st.tuples(_ipv6, _ipv6)), _port, _port,
       st.binary(max_size=40))
def test_round_trip_both_versions(addresses, source_port, destination_port, trailing):
    source, destination = (addresses[0], source_port), (addresses[1], destination_port)
    for header in (build_v1_header(source, destination), build_v2_header(source, destination)):
        result = parse_proxy_header(header + trailing)
        assert isinstance(result, ProxyHeader)
        assert result.source == source and result.destination == destination
        assert result.consumed == len(header)


@given(st.binary(max_size=120))
def test_arbitrary_bytes_never_crash(data):
    try:
        result = parse_proxy_header(data)
    except ProxyProtocolError:
        return
    if isinstance(result, NeedMore):
        assert result.total > len(data) or result.total >= 16
    else:
        assert 0 < result.consumed <= len(data)


# --- a real server, fed headers by a raw client ------------------------------------------------
# nginx only sends version 1 (tests/test_nginx.py); these send version 2 as HAProxy's
# send-proxy-v2 and cloud load balancers do, and the edge cases nginx never produces.

def _request_environ(server, header: bytes, *, tls: bool, pause_after: int = 0) -> dict:
    """Send header (optionally in two parts), then GET /environ over TLS or plain HTTP/1.1."""
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    try:
        if pause_after:
            raw.sendall(header[:pause_after])
            time.sleep(0.3)
            raw.sendall(header[pause_after:])
        else:
            raw.sendall(header)
        sock = raw
        if tls:
            context = ssl.create_default_context(cafile=server.cafile)
            context.set_alpn_protocols(["http/1.1"])
            sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
        sock.sendall(b"GET /environ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    finally:
        raw.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), data[:200]
    return json.loads(body)


def test_v2_header_before_tls_sets_remote_addr(h2serve_server):
    server = h2serve_server("tests.apps:router", "--proxy-protocol")
    tlvs = bytes([0x02, 0x00, 0x0B]) + b"example.com"          # PP2_TYPE_AUTHORITY, skipped
    header = build_v2_header(("198.51.100.23", 40123), ("192.0.2.1", 443), tlvs=tlvs)
    environ = _request_environ(server, header, tls=True)
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == ("198.51.100.23", "40123")
    assert environ["wsgi.url_scheme"] == "https"
    # IPv6 client, header split in two writes with a pause between.
    header6 = build_v2_header(("2001:db8::23", 5000), ("2001:db8::1", 443))
    environ = _request_environ(server, header6, tls=True, pause_after=10)
    assert environ["REMOTE_ADDR"] == "2001:db8::23"


def test_v2_local_keeps_the_balancer_address_and_v1_works_on_plaintext(h2serve_server):
    server = h2serve_server("tests.apps:router", "--proxy-protocol", plaintext=True)
    environ = _request_environ(server, build_v2_header(None, None, local=True), tls=False)
    assert environ["REMOTE_ADDR"] == "127.0.0.1"
    environ = _request_environ(server, b"PROXY TCP4 203.0.113.5 192.0.2.1 1111 80\r\n",
                               tls=False, pause_after=20)
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == ("203.0.113.5", "1111")
    environ = _request_environ(server, b"PROXY UNKNOWN\r\n", tls=False)
    assert environ["REMOTE_ADDR"] == "127.0.0.1"


def test_a_header_of_the_other_version_is_refused_when_one_is_asked_for(h2serve_server):
    server = h2serve_server("tests.apps:router", "--proxy-protocol", "v2", plaintext=True)
    environ = _request_environ(server, build_v2_header(("198.51.100.7", 4000), ("192.0.2.1", 80)),
                               tls=False)
    assert environ["REMOTE_ADDR"] == "198.51.100.7"
    assert _closed_without_answer(server.port, b"PROXY TCP4 203.0.113.5 192.0.2.1 1111 80\r\n"
                                               b"GET /environ HTTP/1.1\r\nHost: x\r\n\r\n")
    server.wait_for_log("a version 1 header, but proxy_protocol is v2")


def _closed_without_answer(port: int, data: bytes) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        try:
            return sock.recv(1024) == b""
        except ConnectionResetError:
            return True


def test_bad_headers_and_silent_clients_are_closed_without_holding_a_thread(h2serve_server):
    server = h2serve_server("tests.apps:router", "--proxy-protocol", "--client-data-timeout", "1",
                            plaintext=True, threads=1)
    # Three clients stall mid-header; with one thread, requests must still be served.
    stalled = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(3)]
    try:
        for sock in stalled:
            sock.sendall(b"PROXY TCP4 203.0.113.5 ")
        started = time.monotonic()
        environ = _request_environ(server, b"PROXY TCP4 203.0.113.6 192.0.2.1 2222 80\r\n",
                                   tls=False)
        assert environ["REMOTE_ADDR"] == "203.0.113.6"
        assert time.monotonic() - started < 0.9
        # The stalled ones are closed once client_data_timeout has passed.
        for sock in stalled:
            sock.settimeout(5)
            assert sock.recv(10) == b""
    finally:
        for sock in stalled:
            sock.close()
    assert _closed_without_answer(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _closed_without_answer(server.port, b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n")
    assert _closed_without_answer(server.port, b"PROXY UNKNOWN " + b"x" * 200)
    server.wait_for_log(r"PROXY protocol error from 127\.0\.0\.1:\d+: PROXY v1 header longer")
    assert "Traceback" not in server.log


def test_allow_list_is_separate_from_forwarded_allow_ips(h2serve_server):
    server = h2serve_server("tests.apps:router", "--proxy-protocol", "--proxy-allow-from",
                            "192.0.2.0/24", plaintext=True)
    assert _closed_without_answer(server.port, b"PROXY TCP4 203.0.113.5 192.0.2.1 1111 80\r\n")
    server.wait_for_log(r"refusing connection from 127\.0\.0\.1:\d+: PROXY protocol not allowed")


def test_the_accepted_versions_are_checked_from_the_first_byte():
    v1 = b"PROXY TCP4 203.0.113.5 192.0.2.1 1111 80\r\n"
    v2 = build_v2_header(("198.51.100.7", 4000), ("192.0.2.1", 80))
    assert parse_proxy_header(v1, (1,)).version == 1
    assert parse_proxy_header(v2, (2,)).version == 2
    with pytest.raises(ProxyProtocolError, match="a version 1 header, but proxy_protocol is v2"):
        parse_proxy_header(v1[:1], (2,))
    with pytest.raises(ProxyProtocolError, match="a version 2 header, but proxy_protocol is v1"):
        parse_proxy_header(v2[:1], (1,))
