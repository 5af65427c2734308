"""The PROXY protocol (versions 1 and 2), sans-I/O.

A TCP load balancer that terminates nothing (nginx's stream module, HAProxy,
cloud network balancers) can prefix each connection with a small header that
says who the client really was. This module only parses that header: bytes in,
and out comes either the addresses it carries with the number of bytes it
took, a request for more bytes, or an error. It never reads a socket, so the
connection layer decides how to wait without holding a thread.

Version 1 is one text line of at most 107 bytes ending in CRLF; version 2 is
a 16-byte binary preamble followed by an address block and optional TLVs
(which we skip). Both are specified in HAProxy's ``proxy-protocol.txt``.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

V1_PREFIX = b"PROXY "
V1_MAX_LENGTH = 107          # the whole line, CRLF included
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_PREAMBLE_LENGTH = 16      # signature, version/command, family/transport, length

_V2_COMMANDS = {0x0: "LOCAL", 0x1: "PROXY"}
_V2_ADDRESS_SIZES = {0x1: 12, 0x2: 36, 0x3: 216}   # INET, INET6, UNIX address blocks
_V2_FAMILY_NAMES = {0x0: "UNKNOWN", 0x1: "TCP4", 0x2: "TCP6", 0x3: "UNIX"}
_TRANSPORT_UNSPEC, _TRANSPORT_STREAM = 0x0, 0x1
_UNIX_PATH_SIZE = 108

Address = tuple[str, int] | str


class ProxyProtocolError(ValueError):
    """The bytes are not a valid PROXY header; the connection must be closed."""


@dataclass(frozen=True)
class ProxyHeader:
    """A complete PROXY header.

    ``source`` and ``destination`` are ``(host, port)`` for TCP, a path for a
    UNIX-socket client, and None when the header carries no usable address
    (``LOCAL`` command, ``UNKNOWN`` family): the caller then keeps the real peer.
    ``consumed`` is how many bytes of the input the header took.
    """

    version: int
    command: str             # "PROXY" or "LOCAL" (v2 health checks from the proxy itself)
    family: str              # "TCP4", "TCP6", "UNIX" or "UNKNOWN"
    source: Address | None
    destination: Address | None
    consumed: int


@dataclass(frozen=True)
class NeedMore:
    """The input is a valid beginning of a header; at least ``total`` bytes are needed."""

    total: int


# proxy_protocol's modes and the header versions each accepts (as gunicorn 27).
VERSIONS_BY_MODE = {"v1": (1,), "v2": (2,), "auto": (1, 2)}


def parse_proxy_header(data: bytes, versions: tuple[int, ...] = (1, 2)) -> ProxyHeader | NeedMore:
    """Parse a PROXY v1 or v2 header at the start of ``data``.

    ``versions`` are the ones accepted (proxy_protocol ``v1``, ``v2`` or ``auto``);
    a header of another version is an error as soon as its first byte is seen.

    Returns a ProxyHeader once the header is complete (bytes after it are left
    alone: they belong to TLS or HTTP), NeedMore while ``data`` could still
    become a valid header, and raises ProxyProtocolError otherwise.
    """
    data = bytes(data)
    for version, prefix, parse in ((1, V1_PREFIX, _parse_v1), (2, V2_SIGNATURE, _parse_v2)):
        if data[:1] == prefix[:1]:
            if version not in versions:
                mode = "/".join(f"v{accepted}" for accepted in versions) or "off"
                raise ProxyProtocolError(
                    f"a version {version} header, but proxy_protocol is {mode}")
            return parse(data)
    if not data:
        return NeedMore(1)
    raise ProxyProtocolError("the connection does not start with a PROXY protocol header")


# --- version 1 -------------------------------------------------------------------


def _parse_v1(data: bytes) -> ProxyHeader | NeedMore:
    prefix_seen = data[: len(V1_PREFIX)]
    if not V1_PREFIX.startswith(prefix_seen):
        raise ProxyProtocolError("the connection does not start with a PROXY protocol header")
    window = data[:V1_MAX_LENGTH]
    newline = window.find(b"\n")
    if newline < 0:
        if b"\r" in window[:-1]:
            raise ProxyProtocolError("PROXY v1 header has a CR not followed by LF")
        if len(window) >= V1_MAX_LENGTH:
            raise ProxyProtocolError(f"PROXY v1 header longer than {V1_MAX_LENGTH} bytes")
        return NeedMore(len(data) + 1)
    if newline == 0 or window[newline - 1:newline] != b"\r":
        raise ProxyProtocolError("PROXY v1 header does not end with CRLF")
    line = window[: newline - 1]
    if b"\r" in line:
        raise ProxyProtocolError("PROXY v1 header has a stray CR")
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise ProxyProtocolError("PROXY v1 header is not ASCII") from None
    consumed = newline + 1
    fields = text.split(" ")
    if len(fields) < 2 or fields[0] != "PROXY":
        raise ProxyProtocolError("malformed PROXY v1 header")
    family = fields[1]
    if family == "UNKNOWN":
        # The proxy could not tell (or will not say); the rest of the line is ignored.
        return ProxyHeader(1, "PROXY", "UNKNOWN", None, None, consumed)
    if family not in ("TCP4", "TCP6"):
        raise ProxyProtocolError(f"PROXY v1 header has an unknown protocol {family!r}")
    if len(fields) != 6:
        raise ProxyProtocolError("PROXY v1 header needs exactly: protocol, 2 addresses, 2 ports")
    version = 4 if family == "TCP4" else 6
    source_ip = _v1_address(fields[2], version)
    destination_ip = _v1_address(fields[3], version)
    source_port = _v1_port(fields[4])
    destination_port = _v1_port(fields[5])
    return ProxyHeader(1, "PROXY", family, (source_ip, source_port),
                       (destination_ip, destination_port), consumed)


def _v1_address(text: str, version: int) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyProtocolError(f"PROXY v1 header has an invalid address {text!r}") from None
    if address.version != version:
        raise ProxyProtocolError(f"PROXY v1 header: {text!r} is not an IPv{version} address")
    return str(address)


def _v1_port(text: str) -> int:
    if not text.isdigit() or not text.isascii() or len(text) > 5 or (len(text) > 1 and text[0] == "0"):
        raise ProxyProtocolError(f"PROXY v1 header has an invalid port {text!r}")
    port = int(text)
    if port > 65535:
        raise ProxyProtocolError(f"PROXY v1 header has an invalid port {text!r}")
    return port


# --- version 2 -------------------------------------------------------------------


def _parse_v2(data: bytes) -> ProxyHeader | NeedMore:
    signature_seen = data[: len(V2_SIGNATURE)]
    if not V2_SIGNATURE.startswith(signature_seen):
        raise ProxyProtocolError("the connection does not start with a PROXY protocol header")
    if len(data) < V2_PREAMBLE_LENGTH:
        return NeedMore(V2_PREAMBLE_LENGTH)
    version_command, family_transport = data[12], data[13]
    if version_command >> 4 != 2:
        raise ProxyProtocolError(f"PROXY v2 header has version {version_command >> 4}, not 2")
    command = _V2_COMMANDS.get(version_command & 0x0F)
    if command is None:
        raise ProxyProtocolError(f"PROXY v2 header has an unknown command {version_command & 0x0F}")
    length = int.from_bytes(data[14:16], "big")
    total = V2_PREAMBLE_LENGTH + length
    if len(data) < total:
        return NeedMore(total)
    if command == "LOCAL":
        # Sent by the proxy on its own behalf (health checks): the real peer stands.
        return ProxyHeader(2, "LOCAL", "UNKNOWN", None, None, total)
    family, transport = family_transport >> 4, family_transport & 0x0F
    if family not in _V2_FAMILY_NAMES:
        raise ProxyProtocolError(f"PROXY v2 header has an unknown address family {family}")
    if transport not in (_TRANSPORT_UNSPEC, _TRANSPORT_STREAM):
        raise ProxyProtocolError("PROXY v2 header describes a datagram flow on a stream connection")
    if family == 0x0:
        return ProxyHeader(2, "PROXY", "UNKNOWN", None, None, total)
    needed = _V2_ADDRESS_SIZES[family]
    if length < needed:
        raise ProxyProtocolError(
            f"PROXY v2 address block is {length} bytes, {_V2_FAMILY_NAMES[family]} needs {needed}")
    block = data[V2_PREAMBLE_LENGTH: V2_PREAMBLE_LENGTH + needed]
    # Whatever follows the address block up to `total` is TLVs: skipped.
    if family == 0x1:
        source = (socket.inet_ntop(socket.AF_INET, block[0:4]), int.from_bytes(block[8:10], "big"))
        destination = (socket.inet_ntop(socket.AF_INET, block[4:8]),
                       int.from_bytes(block[10:12], "big"))
    elif family == 0x2:
        source = (str(ipaddress.IPv6Address(block[0:16])), int.from_bytes(block[32:34], "big"))
        destination = (str(ipaddress.IPv6Address(block[16:32])),
                       int.from_bytes(block[34:36], "big"))
    else:
        return ProxyHeader(2, "PROXY", "UNIX", _unix_path(block[:_UNIX_PATH_SIZE]),
                           _unix_path(block[_UNIX_PATH_SIZE:]), total)
    return ProxyHeader(2, "PROXY", _V2_FAMILY_NAMES[family], source, destination, total)


def _unix_path(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("utf-8", "backslashreplace")


# --- building headers (for tests and tools) ----------------------------------------


def build_v1_header(source: tuple[str, int] | None, destination: tuple[str, int] | None) -> bytes:
    """A v1 line for these TCP endpoints, or ``PROXY UNKNOWN`` when either is None."""
    if source is None or destination is None:
        return b"PROXY UNKNOWN\r\n"
    family = "TCP6" if ":" in source[0] else "TCP4"
    return (f"PROXY {family} {source[0]} {destination[0]} {source[1]} {destination[1]}\r\n"
            .encode("ascii"))


def build_v2_header(source: tuple[str, int] | None, destination: tuple[str, int] | None,
                    *, local: bool = False, tlvs: bytes = b"") -> bytes:
    """A v2 header: PROXY for TCP endpoints, LOCAL when ``local`` (addresses then ignored)."""
    if local or source is None or destination is None:
        command, family_transport, block = 0x20 if local else 0x21, 0x00, b""
    elif ":" in source[0]:
        family_transport = 0x21
        command = 0x21
        block = (ipaddress.IPv6Address(source[0]).packed + ipaddress.IPv6Address(destination[0]).packed
                 + source[1].to_bytes(2, "big") + destination[1].to_bytes(2, "big"))
    else:
        family_transport = 0x11
        command = 0x21
        block = (ipaddress.IPv4Address(source[0]).packed + ipaddress.IPv4Address(destination[0]).packed
                 + source[1].to_bytes(2, "big") + destination[1].to_bytes(2, "big"))
    body = block + tlvs
    return V2_SIGNATURE + bytes([command, family_transport]) + len(body).to_bytes(2, "big") + body
