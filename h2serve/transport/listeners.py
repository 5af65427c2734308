"""Listening sockets: parse ``--bind`` values, create, inherit and describe them.

The arbiter creates listeners once (or inherits them from systemd or a parent
process through ``fd://N``) and hands them to workers; with ``reuse_port``
each worker may instead get its own socket on the same address so the kernel
spreads new connections between workers.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
import stat
import struct
import sys
from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Literal

DEFAULT_PORT = 8443
SYSTEMD_FIRST_FD = 3

__all__ = [
    "DEFAULT_PORT",
    "BindAddress",
    "create_listeners",
    "describe",
    "parse_bind",
    "reuse_port_listener",
    "systemd_listeners",
    "unlink_unix_listeners",
]


@dataclass(frozen=True)
class BindAddress:
    """One parsed ``--bind`` value; only the fields of its ``kind`` are set."""

    kind: Literal["tcp", "unix", "fd"]
    host: str | None = None
    port: int | None = None
    path: str | None = None
    fd: int | None = None

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "fd":
            return f"fd://{self.fd}"
        return _format_host_port(self.host or "", self.port or 0)


def _format_host_port(host: str, port: int) -> str:
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def _parse_port(text: str, original: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise ValueError(
            f"Bind address {original!r} has an invalid port {text!r}; "
            "expected a number from 0 to 65535."
        )
    port = int(text)
    if port > 65535:
        raise ValueError(
            f"Bind address {original!r} has port {port}, which is above the maximum of 65535."
        )
    return port


def _check_hostname(host: str, original: str) -> None:
    if any(ch.isspace() or ch in "/[]@" for ch in host):
        raise ValueError(f"Bind address {original!r} has an invalid host {host!r}.")


def parse_bind(text: str) -> BindAddress:
    """Parse one ``--bind`` value into a :class:`BindAddress`.

    Accepted forms: ``host:port``, ``[v6addr]:port``, ``[v6addr]``, bare ``host``
    (port 8443), ``:port`` (all IPv4 interfaces), ``unix:/path`` and ``fd://N``.
    Raises ValueError with one sentence that says what is wrong.
    """
    original = text
    text = text.strip()
    if not text:
        raise ValueError("Bind address is empty; expected host:port, unix:/path or fd://N.")

    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if not path:
            raise ValueError(f"Bind address {original!r} has no socket path after 'unix:'.")
        if "\0" in path:
            raise ValueError(f"Bind address {original!r} has a NUL byte in its socket path.")
        return BindAddress(kind="unix", path=path)

    if text.startswith("fd://"):
        number = text[len("fd://") :]
        if not number.isascii() or not number.isdigit():
            raise ValueError(
                f"Bind address {original!r} needs a non-negative file descriptor number after 'fd://'."
            )
        return BindAddress(kind="fd", fd=int(number))

    if "://" in text:
        raise ValueError(
            f"Bind address {original!r} has an unknown scheme; use host:port, unix:/path or fd://N."
        )

    if text.startswith("["):
        closing = text.find("]")
        if closing == -1:
            raise ValueError(f"Bind address {original!r} has '[' without a closing ']'.")
        host = text[1:closing]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(
                f"Bind address {original!r} has {host!r} in brackets, which is not an IPv6 address."
            ) from None
        rest = text[closing + 1 :]
        if rest == "":
            return BindAddress(kind="tcp", host=host, port=DEFAULT_PORT)
        if not rest.startswith(":"):
            raise ValueError(
                f"Bind address {original!r} has unexpected text {rest!r} after the IPv6 address."
            )
        return BindAddress(kind="tcp", host=host, port=_parse_port(rest[1:], original))

    if text.count(":") > 1:
        raise ValueError(
            f"Bind address {original!r} looks like an IPv6 address; put it in brackets, "
            "e.g. [::1]:8443."
        )

    if ":" in text:
        host, _, port_text = text.partition(":")
        port = _parse_port(port_text, original)
    else:
        host, port = text, DEFAULT_PORT
    if host == "":
        host = "0.0.0.0"
    _check_hostname(host, original)
    return BindAddress(kind="tcp", host=host, port=port)


def _listen_error(exc: OSError, where: str) -> OSError:
    """Return an OSError of the same errno (hence subclass) whose message names the address."""
    reason = exc.strerror or str(exc)
    if exc.errno is None:
        return OSError(f"Cannot listen on {where}: {reason}")
    return OSError(exc.errno, f"Cannot listen on {where}: {reason}")


def _set_reuse_port(sock: socket.socket) -> None:
    option = getattr(socket, "SO_REUSEPORT", None)
    if option is None:
        raise OSError(errno.ENOPROTOOPT, "SO_REUSEPORT is not available on this platform")
    sock.setsockopt(socket.SOL_SOCKET, option, 1)


@contextlib.contextmanager
def _closed_on_error(sock: socket.socket, where: str) -> Iterator[None]:
    """Close sock if setting it up fails, naming the address in the error."""
    try:
        yield
    except OSError as exc:
        sock.close()
        raise _listen_error(exc, where) from exc
    except BaseException:
        sock.close()
        raise


def _tcp_socket(
    family: int, sockaddr: tuple, backlog: int, reuse_port: bool, where: str, listen: bool = True
) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    with _closed_on_error(sock, where):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            _set_reuse_port(sock)
        if family == socket.AF_INET6:
            # Like nginx: an IPv6 listener serves IPv6 only, so "[::]:p" and
            # "0.0.0.0:p" can be bound side by side on every OS.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        if listen:
            sock.listen(backlog)
    return sock


def _resolve(address: BindAddress) -> tuple[int, tuple]:
    host = address.host or "0.0.0.0"
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        ip = None
    if ip is not None and ip.version == 4:
        return socket.AF_INET, (host, address.port)
    if ip is not None:
        infos = socket.getaddrinfo(
            host,
            address.port,
            socket.AF_INET6,
            socket.SOCK_STREAM,
            0,
            socket.AI_PASSIVE | socket.AI_NUMERICHOST,
        )
        return socket.AF_INET6, infos[0][4]
    try:
        infos = socket.getaddrinfo(
            host, address.port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise OSError(
            errno.EADDRNOTAVAIL, f"Cannot listen on {address}: cannot resolve {host!r} ({exc})"
        ) from exc
    family, _type, _proto, _name, sockaddr = infos[0]
    return family, sockaddr


def _unix_socket(path: str, backlog: int) -> socket.socket:
    where = f"unix:{path}"
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None:
        if not stat.S_ISSOCK(mode):
            raise FileExistsError(
                errno.EEXIST,
                f"Cannot listen on {where}: the path exists and is not a socket; refusing to remove it",
            )
        if _unix_socket_is_live(path):
            raise OSError(
                errno.EADDRINUSE, f"Cannot listen on {where}: another process is accepting on it"
            )
        os.unlink(path)  # a stale socket left by a server that did not clean up
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with _closed_on_error(sock, where):
        sock.bind(path)
        sock.listen(backlog)
    return sock


def _unix_socket_is_live(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def _check_listening_stream(sock: socket.socket, where: str) -> None:
    if sock.type != socket.SOCK_STREAM:
        raise OSError(errno.ENOTSOCK, f"Cannot listen on {where}: it is not a stream socket")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        raise OSError(errno.EINVAL, f"Cannot listen on {where}: the socket is not listening")


def _inherited_socket(fd: int, where: str) -> socket.socket:
    try:
        os.fstat(fd)
    except OSError as exc:
        raise _listen_error(exc, where) from exc
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise OSError(
            exc.errno or errno.ENOTSOCK, f"Cannot listen on {where}: it is not a socket"
        ) from exc
    try:
        _check_listening_stream(sock, where)
    except BaseException:
        sock.detach()  # the descriptor is not ours to close
        raise
    return sock


def _create_one(address: BindAddress, backlog: int, reuse_port: bool) -> socket.socket:
    where = str(address)
    if address.kind == "unix":
        assert address.path is not None
        return _unix_socket(address.path, backlog)
    if address.kind == "fd":
        assert address.fd is not None
        return _inherited_socket(address.fd, where)
    family, sockaddr = _resolve(address)
    return _tcp_socket(family, sockaddr, backlog, reuse_port, where)


def create_listeners(
    binds: list[str],
    backlog: int,
    reuse_port: bool = False,
    *,
    use_systemd: bool = True,
    environ: MutableMapping[str, str] | None = None,
) -> list[socket.socket]:
    """Create bound, listening sockets for every ``--bind`` value.

    When systemd passed sockets to this very process (LISTEN_PID/LISTEN_FDS)
    and ``use_systemd`` is true, those sockets are returned instead and
    ``binds`` is ignored: the unit file decides the addresses then.
    On any failure the sockets made so far are closed and an OSError whose
    message names the address is raised.
    """
    if use_systemd:
        inherited = systemd_listeners(os.environ if environ is None else environ)
        if inherited:
            return inherited
    addresses = [parse_bind(text) for text in binds]
    if not addresses:
        raise ValueError("No bind address given.")
    created: list[tuple[BindAddress, socket.socket]] = []
    try:
        for address in addresses:
            created.append((address, _create_one(address, backlog, reuse_port)))
    except BaseException:
        for address, sock in created:
            if address.kind == "unix":
                unlink_unix_listeners([sock])
            sock.close()
        raise
    return [sock for _address, sock in created]


def systemd_listeners(
    environ: MutableMapping[str, str] = os.environ,
) -> list[socket.socket]:
    """Return the sockets systemd passed to this process (fds 3, 4, ...).

    The variables are meant for one process only: they are removed from
    ``environ`` whether or not LISTEN_PID names us, so workers and child
    processes never mistake them for their own.
    """
    pid_text = environ.get("LISTEN_PID")
    count_text = environ.get("LISTEN_FDS")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        environ.pop(name, None)
    if pid_text is None or count_text is None:
        return []
    try:
        pid = int(pid_text)
        count = int(count_text)
    except ValueError:
        raise ValueError(
            f"Systemd socket activation variables are malformed "
            f"(LISTEN_PID={pid_text!r}, LISTEN_FDS={count_text!r})."
        ) from None
    if pid != os.getpid() or count <= 0:
        return []
    sockets: list[socket.socket] = []
    try:
        for fd in range(SYSTEMD_FIRST_FD, SYSTEMD_FIRST_FD + count):
            sock = _inherited_socket(fd, f"systemd fd {fd}")
            sock.set_inheritable(False)
            sockets.append(sock)
    except BaseException:
        for sock in sockets:
            sock.detach()
        raise
    return sockets


def reuse_port_listener(sock: socket.socket, backlog: int) -> socket.socket:
    """Open a new listener on the same TCP address as ``sock`` with SO_REUSEPORT.

    ``sock`` itself must have been created with ``reuse_port=True``; the
    kernel then balances new connections across all sockets on the port.
    """
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        raise ValueError(f"reuse_port needs a TCP listener, not {describe(sock)}.")
    where = describe(sock)
    try:
        return _tcp_socket(sock.family, sock.getsockname(), backlog, True, where)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise OSError(
                exc.errno,
                f"Cannot listen on {where} again: the first listener lacks SO_REUSEPORT "
                "(create it with reuse_port=True)",
            ) from exc
        raise


def reuse_port_holder(sock: socket.socket) -> socket.socket:
    """With reuse_port every worker listens on a socket of its own. A listening
    socket left in the master would get its share of connections and never
    accept them, so the master keeps this bound, non-listening twin instead: it
    holds the port and tells workers where to listen. sock is closed."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return sock
    holder = _tcp_socket(sock.family, sock.getsockname(), 0, True, describe(sock), listen=False)
    sock.close()
    return holder


# A classic BPF socket filter for a TCP listener: load the TCP flags byte, drop
# the segment when SYN is set, keep everything else (handshake ACKs, data).
_DROP_SYN_PROGRAM = ((0x30, 0, 0, 13), (0x45, 0, 1, 0x02), (0x06, 0, 0, 0), (0x06, 0, 0, 0xFFFFFFFF))
_SO_ATTACH_FILTER = 26  # Linux


def stop_new_handshakes(sock: socket.socket) -> bool:
    """Make a retiring reuse_port listener ignore new SYNs.

    Closing a listener resets the connections the kernel just queued on it. With
    new SYNs dropped, a client retransmits its SYN (after about a second) and
    reaches another worker's listener; what was queued before is still accepted.
    Linux only; returns False where it could not be done."""
    if not sys.platform.startswith("linux") or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    import ctypes  # here: only a retiring worker needs it, and it costs every process memory

    program = ctypes.create_string_buffer(
        b"".join(struct.pack("=HBBI", *insn) for insn in _DROP_SYN_PROGRAM))
    fprog = struct.pack("@HP", len(_DROP_SYN_PROGRAM), ctypes.addressof(program))
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
    except OSError:
        return False
    return True


def describe(sock: socket.socket) -> str:
    """A short name for a listener in logs: ``127.0.0.1:8443``, ``[::1]:8443``, ``unix:/p``."""
    try:
        name = sock.getsockname()
    except OSError:
        return f"fd://{sock.fileno()}"
    if sock.family == socket.AF_INET:
        return f"{name[0]}:{name[1]}"
    if sock.family == socket.AF_INET6:
        return f"[{name[0]}]:{name[1]}"
    if sock.family == socket.AF_UNIX:
        if isinstance(name, bytes):
            name = name.decode("utf-8", "backslashreplace")
        if name.startswith("\0"):
            return f"unix:@{name[1:]}"
        return f"unix:{name}" if name else f"unix:fd://{sock.fileno()}"
    return f"fd://{sock.fileno()}"


def unlink_unix_listeners(socks: Iterable[socket.socket]) -> None:
    """Remove the files of unix-domain listeners at shutdown (sockets stay open)."""
    for sock in socks:
        if sock.family != socket.AF_UNIX:
            continue
        try:
            path = sock.getsockname()
        except OSError:
            continue
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not path or path.startswith("\0"):
            continue
        try:
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                os.unlink(path)
        except FileNotFoundError:
            pass


# struct tcp_info (linux/tcp.h): eight one-byte fields, then u32 fields of which
# the fifth (byte offset 24) is tcpi_unacked. For a listening socket Linux puts
# there how many established connections wait in its accept queue.
_TCPI_UNACKED_OFFSET = 24


def accept_queue_length(sock: socket.socket) -> int:
    """Connections the kernel has completed that wait for accept() on sock; 0
    where the platform does not say (not Linux, not TCP). One getsockopt call."""
    if sys.platform != "linux" or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return 0
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 32)
    except OSError:
        return 0
    if len(info) < _TCPI_UNACKED_OFFSET + 4:
        return 0
    return struct.unpack_from("=I", info, _TCPI_UNACKED_OFFSET)[0]


def is_loopback(lsock: socket.socket) -> bool:
    """Whether a listener only takes connections from this machine (unix sockets do)."""
    if lsock.family not in (socket.AF_INET, socket.AF_INET6):
        return True
    host = lsock.getsockname()[0].split("%", 1)[0]
    address = ipaddress.ip_address(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback
