"""Transport layer: bind parsing, listeners, TLS context, HTTP/2 cipher rules, dev certificates."""

from __future__ import annotations

import datetime as dt
import errno
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from h2serve.transport import devcert, listeners, tls
from h2serve.transport.listeners import BindAddress, accept_queue_length, parse_bind

REPO_ROOT = Path(__file__).resolve().parent.parent
IO_TIMEOUT = 10.0


def _ipv6_loopback_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _ipv6_loopback_available(), reason="no IPv6 loopback")
needs_reuse_port = pytest.mark.skipif(
    not hasattr(socket, "SO_REUSEPORT"), reason="SO_REUSEPORT not available"
)


def _make_listeners(binds: list[str], **kwargs) -> list[socket.socket]:
    return listeners.create_listeners(binds, 16, use_systemd=False, **kwargs)


def _accepts_connection(sock: socket.socket) -> bool:
    """Connect to a listener and accept on it: proves it is live."""
    sock.settimeout(IO_TIMEOUT)
    address = sock.getsockname()
    family = sock.family
    with socket.socket(family, socket.SOCK_STREAM) as client:
        client.settimeout(IO_TIMEOUT)
        client.connect(address)
        conn, _ = sock.accept()
        conn.close()
    return True


# --------------------------------------------------------------------------- parse_bind


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8000", BindAddress(kind="tcp", host="127.0.0.1", port=8000)),
        ("localhost:0", BindAddress(kind="tcp", host="localhost", port=0)),
        ("example.org", BindAddress(kind="tcp", host="example.org", port=8443)),
        ("  10.0.0.1:65535 ", BindAddress(kind="tcp", host="10.0.0.1", port=65535)),
        (":9000", BindAddress(kind="tcp", host="0.0.0.0", port=9000)),
        ("[::1]:8443", BindAddress(kind="tcp", host="::1", port=8443)),
        ("[::]:443", BindAddress(kind="tcp", host="::", port=443)),
        ("[fe80::1%eth0]:80", BindAddress(kind="tcp", host="fe80::1%eth0", port=80)),
        ("[::1]", BindAddress(kind="tcp", host="::1", port=8443)),
        ("unix:/run/h2serve.sock", BindAddress(kind="unix", path="/run/h2serve.sock")),
        ("unix:relative.sock", BindAddress(kind="unix", path="relative.sock")),
        ("fd://3", BindAddress(kind="fd", fd=3)),
    ],
)
def test_parse_bind_accepts(text: str, expected: BindAddress) -> None:
    assert parse_bind(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("host:", "invalid port"),
        ("host:http", "invalid port"),
        ("host:-1", "invalid port"),
        ("host:65536", "65535"),
        ("host:80:90", "brackets"),
        ("::1", "brackets"),
        ("[::1", "closing"),
        ("[127.0.0.1]:80", "not an IPv6"),
        ("[::1]x", "unexpected text"),
        ("[::1]:", "invalid port"),
        ("unix:", "no socket path"),
        ("fd://", "file descriptor"),
        ("fd://-2", "file descriptor"),
        ("fd://x", "file descriptor"),
        ("http://host:80", "unknown scheme"),
        ("bad host:80", "invalid host"),
    ],
)
def test_parse_bind_rejects_with_one_clear_sentence(text: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_bind(text)
    message = str(info.value)
    assert fragment in message
    assert message.endswith(".")
    assert "\n" not in message


def test_bind_address_str_round_trips() -> None:
    for text in ("127.0.0.1:80", "[::1]:443", "unix:/tmp/x.sock", "fd://7"):
        assert str(parse_bind(text)) == text


# --------------------------------------------------------------------------- TCP listeners


def test_create_listener_ipv4_ephemeral_port() -> None:
    (sock,) = _make_listeners(["127.0.0.1:0"])
    try:
        assert sock.family == socket.AF_INET
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        port = sock.getsockname()[1]
        assert port != 0
        assert listeners.describe(sock) == f"127.0.0.1:{port}"
        assert _accepts_connection(sock)
    finally:
        sock.close()


@needs_ipv6
def test_create_listener_ipv6_loopback() -> None:
    (sock,) = _make_listeners(["[::1]:0"])
    try:
        assert sock.family == socket.AF_INET6
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        port = sock.getsockname()[1]
        assert listeners.describe(sock) == f"[::1]:{port}"
        assert _accepts_connection(sock)
    finally:
        sock.close()


def test_address_in_use_names_the_address_and_closes_earlier_sockets() -> None:
    (first,) = _make_listeners(["127.0.0.1:0"])
    port = first.getsockname()[1]
    try:
        with pytest.raises(OSError) as info:
            _make_listeners(["127.0.0.1:0", f"127.0.0.1:{port}"])
        assert info.value.errno == errno.EADDRINUSE
        assert f"127.0.0.1:{port}" in str(info.value)
    finally:
        first.close()


def test_unresolvable_host_is_a_clear_oserror() -> None:
    with pytest.raises(OSError) as info:
        _make_listeners(["no-such-host.invalid:0"])
    assert "no-such-host.invalid" in str(info.value)


def test_empty_bind_list_is_refused() -> None:
    with pytest.raises(ValueError):
        _make_listeners([])


@needs_reuse_port
def test_reuse_port_listener_shares_the_address() -> None:
    (first,) = _make_listeners(["127.0.0.1:0"], reuse_port=True)
    second = listeners.reuse_port_listener(first, 16)
    try:
        assert second is not first
        assert second.getsockname() == first.getsockname()
        assert second.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        assert second.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        # Close the original: the new one must still accept on its own.
        first.close()
        assert _accepts_connection(second)
    finally:
        first.close()
        second.close()


@needs_reuse_port
def test_reuse_port_listener_needs_reuse_port_on_the_first() -> None:
    (first,) = _make_listeners(["127.0.0.1:0"])
    try:
        with pytest.raises(OSError) as info:
            listeners.reuse_port_listener(first, 16)
        assert "reuse_port=True" in str(info.value)
        assert listeners.describe(first) in str(info.value)
    finally:
        first.close()


def test_reuse_port_listener_refuses_unix(tmp_path: Path) -> None:
    (sock,) = _make_listeners([f"unix:{tmp_path / 's.sock'}"])
    try:
        with pytest.raises(ValueError):
            listeners.reuse_port_listener(sock, 16)
    finally:
        sock.close()


# --------------------------------------------------------------------------- unix listeners


def test_unix_listener_replaces_stale_socket_file(tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # leaves the socket file behind, nobody accepting
    assert path.is_socket()
    (sock,) = _make_listeners([f"unix:{path}"])
    try:
        assert listeners.describe(sock) == f"unix:{path}"
        assert _accepts_connection(sock)
        listeners.unlink_unix_listeners([sock])
        assert not path.exists()
        listeners.unlink_unix_listeners([sock])  # a second call is harmless
    finally:
        sock.close()


def test_unix_listener_refuses_to_remove_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "precious.txt"
    path.write_text("keep me")
    with pytest.raises(FileExistsError) as info:
        _make_listeners([f"unix:{path}"])
    assert str(path) in str(info.value)
    assert path.read_text() == "keep me"


def test_unix_listener_refuses_to_steal_a_live_socket(tmp_path: Path) -> None:
    path = tmp_path / "live.sock"
    (live,) = _make_listeners([f"unix:{path}"])
    try:
        with pytest.raises(OSError) as info:
            _make_listeners([f"unix:{path}"])
        assert info.value.errno == errno.EADDRINUSE
        assert f"unix:{path}" in str(info.value)
        assert _accepts_connection(live)
    finally:
        live.close()


def test_failed_create_removes_unix_socket_made_so_far(tmp_path: Path) -> None:
    path = tmp_path / "partial.sock"
    (blocker,) = _make_listeners(["127.0.0.1:0"])
    try:
        with pytest.raises(OSError):
            _make_listeners([f"unix:{path}", listeners.describe(blocker)])
        assert not path.exists()
    finally:
        blocker.close()


# --------------------------------------------------------------------------- fd:// listeners


def test_fd_listener_wraps_inherited_listening_socket() -> None:
    (original,) = _make_listeners(["127.0.0.1:0"])
    inherited_fd = os.dup(original.fileno())
    original.close()
    (sock,) = _make_listeners([f"fd://{inherited_fd}"])
    try:
        assert sock.fileno() == inherited_fd
        assert listeners.describe(sock).startswith("127.0.0.1:")
        assert _accepts_connection(sock)
    finally:
        sock.close()


def test_fd_listener_rejects_non_listening_socket() -> None:
    with socket.socket() as plain:
        with pytest.raises(OSError) as info:
            _make_listeners([f"fd://{plain.fileno()}"])
        assert "not listening" in str(info.value)
        assert plain.fileno() != -1  # not closed behind our back


def test_fd_listener_rejects_datagram_socket() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as datagram:
        with pytest.raises(OSError) as info:
            _make_listeners([f"fd://{datagram.fileno()}"])
        assert "stream" in str(info.value)


def test_fd_listener_rejects_regular_file_and_closed_fd(tmp_path: Path) -> None:
    with open(tmp_path / "f", "wb") as handle:
        with pytest.raises(OSError) as info:
            _make_listeners([f"fd://{handle.fileno()}"])
        assert f"fd://{handle.fileno()}" in str(info.value)
        os.fstat(handle.fileno())  # still open
    closed_fd = os.open(tmp_path / "f", os.O_RDONLY)
    os.close(closed_fd)
    with pytest.raises(OSError) as info:
        _make_listeners([f"fd://{closed_fd}"])
    assert info.value.errno == errno.EBADF
    assert f"fd://{closed_fd}" in str(info.value)


# --------------------------------------------------------------------------- systemd


def test_systemd_ignores_variables_for_another_pid_and_unsets_them() -> None:
    environ = {
        "LISTEN_PID": str(os.getpid() + 1),
        "LISTEN_FDS": "1",
        "LISTEN_FDNAMES": "x",
        "A": "b",
    }
    assert listeners.systemd_listeners(environ) == []
    assert environ == {"A": "b"}


def test_systemd_without_variables_returns_nothing() -> None:
    environ: dict[str, str] = {}
    assert listeners.systemd_listeners(environ) == []
    assert environ == {}


def test_systemd_malformed_variables_raise() -> None:
    environ = {"LISTEN_PID": "me", "LISTEN_FDS": "1"}
    with pytest.raises(ValueError):
        listeners.systemd_listeners(environ)
    assert "LISTEN_PID" not in environ


def test_create_listeners_prefers_systemd_only_for_this_pid() -> None:
    environ = {"LISTEN_PID": "1", "LISTEN_FDS": "2"}
    socks = listeners.create_listeners(["127.0.0.1:0"], 16, environ=environ)
    try:
        assert len(socks) == 1 and socks[0].family == socket.AF_INET
        assert environ == {}
    finally:
        for sock in socks:
            sock.close()


def test_systemd_socket_activation_in_child_process() -> None:
    # fd 3 belongs to someone else in this process, so activation is checked
    # in a fresh interpreter that puts two listeners on fds 3 and 4 itself.
    script = textwrap.dedent(
        """
        import os, socket, sys
        from h2serve.transport import listeners
        made = []
        for _ in range(2):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen(4)
            made.append(s)
        # Move them to 3 and 4 via high descriptors to avoid clobbering.
        high = [os.dup2(s.fileno(), 100 + i) for i, s in enumerate(made)]
        for s in made:
            s.close()
        for i, fd in enumerate(high):
            os.dup2(fd, 3 + i)
            os.close(fd)
        os.environ["LISTEN_PID"] = str(os.getpid())
        os.environ["LISTEN_FDS"] = "2"
        os.environ["LISTEN_FDNAMES"] = "a:b"
        socks = listeners.create_listeners(["127.0.0.1:1"], 8)
        print(len(socks))
        for s in socks:
            print(s.fileno(), listeners.describe(s), s.get_inheritable(),
                  s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
        print(sorted(k for k in os.environ if k.startswith("LISTEN_")))
        """
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "2"
    for line, fd in zip(lines[1:3], (3, 4), strict=True):
        number, description, inheritable, accepting = line.split()
        assert int(number) == fd
        assert description.startswith("127.0.0.1:") and not description.endswith(":1")
        assert inheritable == "False"
        assert accepting != "0"
    assert lines[3] == "[]"


# --------------------------------------------------------------------------- HTTP/2 cipher rules


@pytest.mark.parametrize(
    "name",
    [
        "TLS_RSA_WITH_AES_128_CBC_SHA",
        "TLS_RSA_WITH_AES_128_GCM_SHA256",  # AEAD but static RSA key exchange
        "TLS_DH_anon_WITH_AES_128_GCM_SHA256",
        "TLS_DH_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDH_ECDSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",  # ephemeral but CBC
        "TLS_ECDHE_ECDSA_WITH_NULL_SHA",
        "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA",
        "TLS_PSK_WITH_AES_128_CCM",
        "TLS_EMPTY_RENEGOTIATION_INFO_SCSV",
        "AES128-GCM-SHA256",
        "AES256-SHA",
        "ADH-AES128-GCM-SHA256",
        "ECDH-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-SHA",
        "ECDHE-ECDSA-AES256-SHA384",
        "EDH-RSA-DES-CBC3-SHA",
        "PSK-AES128-GCM-SHA256",
    ],
)
def test_blocklisted_suites(name: str) -> None:
    assert tls.cipher_is_h2_blocklisted(name)


@pytest.mark.parametrize(
    "name",
    [
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_DHE_RSA_WITH_AES_128_CCM",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8",
        "TLS_DHE_PSK_WITH_AES_256_GCM_SHA384",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "DHE-RSA-AES256-GCM-SHA384",
        "DHE-RSA-AES128-CCM8",
        "TLS_AES_128_GCM_SHA256",
        "TLS_AES_256_GCM_SHA384",
        "TLS_CHACHA20_POLY1305_SHA256",
        "TLS_AES_128_CCM_8_SHA256",
    ],
)
def test_allowed_suites(name: str) -> None:
    assert not tls.cipher_is_h2_blocklisted(name)


class _FakeTLS:
    def __init__(self, version: str | None, cipher: str | None) -> None:
        self._version, self._cipher = version, cipher

    def version(self) -> str | None:
        return self._version

    def cipher(self):
        return None if self._cipher is None else (self._cipher, self._version, 128)


@pytest.mark.parametrize(
    ("version", "cipher", "inadequate"),
    [
        ("TLSv1.3", "TLS_AES_128_GCM_SHA256", False),
        ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256", False),
        ("TLSv1.2", "AES128-GCM-SHA256", True),
        ("TLSv1.1", "ECDHE-RSA-AES128-SHA", True),
        ("TLSv1", "ECDHE-RSA-AES128-SHA", True),
        (None, None, True),
    ],
)
def test_inadequate_for_h2(version, cipher, inadequate) -> None:
    assert tls.inadequate_for_h2(_FakeTLS(version, cipher)) is inadequate


# --------------------------------------------------------------------------- dev certificates


@pytest.fixture(scope="module")
def dev_cert(tmp_path_factory: pytest.TempPathFactory) -> devcert.DevCertificate:
    return devcert.ensure_dev_certificate(tmp_path_factory.mktemp("devcert"))


def _load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_default_cert_dir_follows_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("H2SERVE_CERT_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert devcert.default_cert_dir() == tmp_path / "explicit"
    monkeypatch.delenv("H2SERVE_CERT_DIR")
    assert devcert.default_cert_dir() == tmp_path / "xdg" / "h2serve" / "certs"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert devcert.default_cert_dir() == tmp_path / "home" / ".local/share/h2serve/certs"


def test_ensure_dev_certificate_uses_default_dir(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("H2SERVE_CERT_DIR", str(tmp_path / "d"))
    paths = devcert.ensure_dev_certificate()
    assert paths.cert == tmp_path / "d" / "localhost.pem"
    assert paths.cert.exists()


def test_dev_certificate_files_and_contents(dev_cert: devcert.DevCertificate) -> None:
    directory = dev_cert.cert.parent
    assert dev_cert.ca_cert == directory / "ca.pem"
    assert dev_cert.ca_key == directory / "ca-key.pem"
    assert dev_cert.cert == directory / "localhost.pem"
    assert dev_cert.key == directory / "localhost-key.pem"
    for key_path in (dev_cert.key, dev_cert.ca_key):
        assert key_path.stat().st_mode & 0o777 == 0o600

    ca = _load_cert(dev_cert.ca_cert)
    server = _load_cert(dev_cert.cert)
    server.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca

    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert isinstance(server.public_key(), ec.EllipticCurvePublicKey)

    server_days = (server.not_valid_after_utc - server.not_valid_before_utc).days
    ca_days = (ca.not_valid_after_utc - ca.not_valid_before_utc).days
    assert 360 <= server_days <= 370
    assert 3600 <= ca_days <= 3660


def test_dev_certificate_is_reused(tmp_path: Path) -> None:
    first = devcert.ensure_dev_certificate(tmp_path)
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in _all_files(first)}
    second = devcert.ensure_dev_certificate(tmp_path)
    assert second == first
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in _all_files(second)}
    assert after == before


def _all_files(paths: devcert.DevCertificate) -> list[Path]:
    return [paths.ca_cert, paths.ca_key, paths.cert, paths.key]


def _sign_leaf(
    paths: devcert.DevCertificate, *, days: int, dns_names: list[str]
) -> tuple[bytes, bytes]:
    """A leaf signed by the dev CA, for tests that need a particular one."""
    ca = _load_cert(paths.ca_cert)
    ca_key = serialization.load_pem_private_key(paths.ca_key.read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def test_server_cert_near_expiry_is_reissued_from_same_ca(tmp_path: Path) -> None:
    paths = devcert.ensure_dev_certificate(tmp_path)
    ca_bytes = paths.ca_cert.read_bytes()
    cert_pem, key_pem = _sign_leaf(paths, days=10, dns_names=["localhost"])
    paths.cert.write_bytes(cert_pem)
    paths.key.write_bytes(key_pem)
    devcert.ensure_dev_certificate(tmp_path)
    assert paths.ca_cert.read_bytes() == ca_bytes
    renewed = _load_cert(paths.cert)
    assert paths.cert.read_bytes() != cert_pem
    assert renewed.not_valid_after_utc - dt.datetime.now(dt.timezone.utc) > dt.timedelta(days=300)
    renewed.verify_directly_issued_by(_load_cert(paths.ca_cert))


def test_server_cert_from_another_ca_is_replaced(tmp_path: Path) -> None:
    paths = devcert.ensure_dev_certificate(tmp_path / "mine")
    foreign = devcert.ensure_dev_certificate(tmp_path / "foreign")
    paths.cert.write_bytes(foreign.cert.read_bytes())
    paths.key.write_bytes(foreign.key.read_bytes())
    devcert.ensure_dev_certificate(tmp_path / "mine")
    assert paths.cert.read_bytes() != foreign.cert.read_bytes()
    _load_cert(paths.cert).verify_directly_issued_by(_load_cert(paths.ca_cert))


def test_broken_ca_regenerates_everything(tmp_path: Path) -> None:
    paths = devcert.ensure_dev_certificate(tmp_path)
    paths.ca_cert.write_text("not a certificate")
    devcert.ensure_dev_certificate(tmp_path)
    _load_cert(paths.cert).verify_directly_issued_by(_load_cert(paths.ca_cert))


def test_write_certificates_force_makes_new_ca(tmp_path: Path) -> None:
    first = devcert.write_certificates(tmp_path)
    ca_bytes = first.ca_cert.read_bytes()
    cert_bytes = first.cert.read_bytes()
    assert devcert.write_certificates(tmp_path).ca_cert.read_bytes() == ca_bytes
    forced = devcert.write_certificates(tmp_path, force=True)
    assert forced.ca_cert.read_bytes() != ca_bytes
    assert forced.cert.read_bytes() != cert_bytes
    _load_cert(forced.cert).verify_directly_issued_by(_load_cert(forced.ca_cert))


def test_concurrent_callers_agree(tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda _: devcert.ensure_dev_certificate(tmp_path), range(6)))
    assert all(result == results[0] for result in results)
    paths = results[0]
    _load_cert(paths.cert).verify_directly_issued_by(_load_cert(paths.ca_cert))
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


# --------------------------------------------------------------------------- TLS context


def test_server_context_settings(dev_cert: devcert.DevCertificate) -> None:
    context = tls.build_server_context(
        str(dev_cert.cert), str(dev_cert.key), alpn_protocols=["h2", "http/1.1"]
    )
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert not context.options & ssl.OP_NO_TICKET
    if hasattr(ssl, "OP_NO_RENEGOTIATION"):
        assert context.options & ssl.OP_NO_RENEGOTIATION
    assert context.verify_mode == ssl.CERT_NONE
    tls12 = [c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12, "some TLS 1.2 suites must remain"
    assert not [name for name in tls12 if tls.cipher_is_h2_blocklisted(name)]


def test_server_context_load_errors(dev_cert: devcert.DevCertificate, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(ValueError, match="missing.pem"):
        tls.build_server_context(missing, str(dev_cert.key), alpn_protocols=["h2"])
    with pytest.raises(ValueError, match="ca-key.pem"):  # key does not match the certificate
        tls.build_server_context(str(dev_cert.cert), str(dev_cert.ca_key), alpn_protocols=["h2"])
    with pytest.raises(ssl.SSLError, match="NOPE"):
        tls.build_server_context(
            str(dev_cert.cert), str(dev_cert.key), alpn_protocols=["h2"], ciphers="NOPE"
        )
    with pytest.raises(ValueError, match="ca_certs"):
        tls.build_server_context(
            str(dev_cert.cert),
            str(dev_cert.key),
            alpn_protocols=["h2"],
            cert_reqs=ssl.CERT_REQUIRED,
        )
    with pytest.raises(ValueError, match="missing.pem"):
        tls.build_server_context(
            str(dev_cert.cert), str(dev_cert.key), alpn_protocols=["h2"], ca_certs=missing
        )


class _Exchange:
    """What each side saw during one TLS connection on 127.0.0.1."""

    server_error: BaseException | None = None
    server_alpn: str | None = None
    server_inadequate: bool | None = None
    server_peer_environ: dict | None = None
    client_alpn: str | None = None
    client_version: str | None = None
    client_cipher: str | None = None
    session: ssl.SSLSession | None = None
    session_reused: bool | None = None


def _tls_exchange(
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
    *,
    server_hostname: str | None = "localhost",
    session: ssl.SSLSession | None = None,
    host: str = "127.0.0.1",
    seen: _Exchange | None = None,
) -> _Exchange:
    """One connection: handshake, the server sends b"ok", the client reads it and closes.

    Pass ``seen`` to inspect the server's side when the client raises.
    """
    seen = _Exchange() if seen is None else seen
    bind = f"[{host}]:0" if ":" in host else f"{host}:0"
    (listener,) = _make_listeners([bind])
    listener.settimeout(IO_TIMEOUT)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError as exc:
            seen.server_error = exc
            return
        conn.settimeout(IO_TIMEOUT)
        try:
            with server_context.wrap_socket(conn, server_side=True) as tls_conn:
                seen.server_alpn = tls_conn.selected_alpn_protocol()
                seen.server_inadequate = tls.inadequate_for_h2(tls_conn)
                seen.server_peer_environ = tls.peer_certificate_environ(tls_conn)
                tls_conn.sendall(b"ok")
                try:
                    tls_conn.recv(1)  # until the client closes
                except (ssl.SSLError, OSError):
                    pass
        except (ssl.SSLError, OSError) as exc:
            seen.server_error = exc
        finally:
            conn.close()

    server_thread = threading.Thread(target=serve, daemon=True)
    server_thread.start()
    try:
        raw = socket.create_connection(listener.getsockname()[:2], timeout=IO_TIMEOUT)
        try:
            with client_context.wrap_socket(
                raw, server_hostname=server_hostname, session=session
            ) as client:
                assert client.recv(2) == b"ok"
                seen.client_alpn = client.selected_alpn_protocol()
                seen.client_version = client.version()
                seen.client_cipher = client.cipher()[0]
                seen.session = client.session
                seen.session_reused = client.session_reused
        finally:
            raw.close()
    finally:
        server_thread.join(IO_TIMEOUT)
        listener.close()
    assert not server_thread.is_alive()
    return seen


def _client_context(ca_file: Path, alpn: list[str] | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file))
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


@pytest.fixture(scope="module")
def server_context(dev_cert: devcert.DevCertificate) -> ssl.SSLContext:
    return tls.build_server_context(
        str(dev_cert.cert), str(dev_cert.key), alpn_protocols=["h2", "http/1.1"]
    )


def test_handshake_trusting_dev_ca_negotiates_h2(
    dev_cert: devcert.DevCertificate, server_context: ssl.SSLContext
) -> None:
    seen = _tls_exchange(server_context, _client_context(dev_cert.ca_cert, ["h2", "http/1.1"]))
    assert seen.server_error is None
    assert seen.client_alpn == "h2" and seen.server_alpn == "h2"
    assert seen.client_version == "TLSv1.3"
    assert seen.server_inadequate is False
    assert seen.server_peer_environ == {}


def test_handshake_by_ip_address_and_http11_fallback(
    dev_cert: devcert.DevCertificate, server_context: ssl.SSLContext
) -> None:
    seen = _tls_exchange(
        server_context,
        _client_context(dev_cert.ca_cert, ["http/1.1"]),
        server_hostname="127.0.0.1",
    )
    assert seen.client_alpn == "http/1.1"


@needs_ipv6
def test_handshake_over_ipv6_loopback(
    dev_cert: devcert.DevCertificate, server_context: ssl.SSLContext
) -> None:
    seen = _tls_exchange(
        server_context, _client_context(dev_cert.ca_cert, ["h2"]), server_hostname="::1", host="::1"
    )
    assert seen.client_alpn == "h2"


def test_tls12_client_gets_an_h2_suite(
    dev_cert: devcert.DevCertificate, server_context: ssl.SSLContext
) -> None:
    client = _client_context(dev_cert.ca_cert, ["h2"])
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    seen = _tls_exchange(server_context, client)
    assert seen.client_version == "TLSv1.2"
    assert seen.client_cipher.startswith("ECDHE-ECDSA-")
    assert seen.server_inadequate is False


def test_session_resumption_with_shared_context(
    dev_cert: devcert.DevCertificate, server_context: ssl.SSLContext
) -> None:
    client = _client_context(dev_cert.ca_cert, ["h2"])
    first = _tls_exchange(server_context, client)
    assert first.session is not None and first.session_reused is False
    second = _tls_exchange(server_context, client, session=first.session)
    assert second.session_reused is True


def test_client_without_dev_ca_is_refused(server_context: ssl.SSLContext) -> None:
    trusts_nothing = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies, but has no CAs
    with pytest.raises(ssl.SSLCertVerificationError):
        _tls_exchange(server_context, trusts_nothing)


def test_dev_ca_cannot_vouch_for_public_names(
    dev_cert: devcert.DevCertificate, tmp_path: Path
) -> None:
    cert_pem, key_pem = _sign_leaf(dev_cert, days=30, dns_names=["example.com"])
    (tmp_path / "c.pem").write_bytes(cert_pem)
    (tmp_path / "k.pem").write_bytes(key_pem)
    context = tls.build_server_context(
        str(tmp_path / "c.pem"), str(tmp_path / "k.pem"), alpn_protocols=["h2"]
    )
    with pytest.raises(ssl.SSLCertVerificationError):
        _tls_exchange(context, _client_context(dev_cert.ca_cert), server_hostname="example.com")


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1:DeprecationWarning")
def test_tls11_client_is_refused(server_context: ssl.SSLContext) -> None:
    if not getattr(ssl, "HAS_TLSv1_1", False):
        pytest.skip("this OpenSSL has no TLS 1.1")
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    try:
        client.minimum_version = ssl.TLSVersion.TLSv1_1
        client.maximum_version = ssl.TLSVersion.TLSv1_1
        client.set_ciphers("DEFAULT:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot be configured for TLS 1.1")
    seen = _Exchange()
    with pytest.raises(ssl.SSLError) as info:
        _tls_exchange(server_context, client, seen=seen)
    if "NO_PROTOCOLS_AVAILABLE" in str(info.value).upper().replace(" ", "_"):
        pytest.skip("this OpenSSL cannot offer TLS 1.1")
    # The server saw a TLS 1.1 hello and refused it on version grounds.
    assert isinstance(seen.server_error, ssl.SSLError)
    assert "PROTOCOL" in str(seen.server_error).upper()
    assert seen.server_alpn is None


def test_inadequate_for_h2_on_a_real_cbc_connection(dev_cert: devcert.DevCertificate) -> None:
    weak = tls.build_server_context(
        str(dev_cert.cert),
        str(dev_cert.key),
        alpn_protocols=["h2", "http/1.1"],
        ciphers="ECDHE-ECDSA-AES128-SHA",
    )
    client = _client_context(dev_cert.ca_cert, ["http/1.1"])
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    client.set_ciphers("ECDHE-ECDSA-AES128-SHA")
    seen = _tls_exchange(weak, client)
    assert seen.client_cipher == "ECDHE-ECDSA-AES128-SHA"
    assert seen.server_inadequate is True


def test_client_certificate_environ(dev_cert: devcert.DevCertificate, tmp_path: Path) -> None:
    ca = _load_cert(dev_cert.ca_cert)
    ca_key = serialization.load_pem_private_key(dev_cert.ca_key.read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    client_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test client")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(0xABCDEF)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    (tmp_path / "client.pem").write_bytes(client_cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "client-key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = tls.build_server_context(
        str(dev_cert.cert),
        str(dev_cert.key),
        alpn_protocols=["h2"],
        ca_certs=str(dev_cert.ca_cert),
        cert_reqs=ssl.CERT_REQUIRED,
    )
    client = _client_context(dev_cert.ca_cert, ["h2"])
    client.load_cert_chain(str(tmp_path / "client.pem"), str(tmp_path / "client-key.pem"))
    seen = _tls_exchange(server, client)
    assert seen.server_error is None
    environ = seen.server_peer_environ
    assert environ["SSL_CLIENT_S_DN"] == "CN=test client"
    assert environ["SSL_CLIENT_I_DN"] == ca.subject.rfc4514_string()
    assert environ["SSL_CLIENT_M_SERIAL"] == "ABCDEF"
    assert environ["SSL_CLIENT_CERT"].startswith("-----BEGIN CERTIFICATE-----")


def test_reuse_port_holder_keeps_the_port_but_takes_no_connection():
    from h2serve.transport.listeners import create_listeners, reuse_port_holder, reuse_port_listener

    (first,) = create_listeners(["127.0.0.1:0"], backlog=16, reuse_port=True)
    port = first.getsockname()[1]
    holder = reuse_port_holder(first)
    try:
        assert first.fileno() == -1                      # the listening original is closed
        assert holder.getsockname()[1] == port
        with pytest.raises(ConnectionRefusedError):       # nobody listens: refused, never queued
            socket.create_connection(("127.0.0.1", port), timeout=2)
        worker_listener = reuse_port_listener(holder, backlog=16)
        try:
            for _ in range(5):                            # every connection reaches the worker's
                with socket.create_connection(("127.0.0.1", port), timeout=2):
                    worker_listener.settimeout(2)
                    accepted, _ = worker_listener.accept()
                    accepted.close()
        finally:
            worker_listener.close()
    finally:
        holder.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="socket filters are Linux only")
def test_stop_new_handshakes_drops_syns_but_keeps_queued_connections():
    from h2serve.transport.listeners import create_listeners, stop_new_handshakes

    (listener,) = create_listeners(["127.0.0.1:0"], backlog=16)
    port = listener.getsockname()[1]
    try:
        queued = socket.create_connection(("127.0.0.1", port), timeout=2)
        assert stop_new_handshakes(listener)
        # A new client gets no answer (its SYN is dropped, to be retried), never a reset.
        with pytest.raises(TimeoutError):
            socket.create_connection(("127.0.0.1", port), timeout=0.5)
        listener.settimeout(2)
        accepted, _ = listener.accept()
        with queued, accepted:
            queued.sendall(b"still served")
            assert accepted.recv(64) == b"still served"
    finally:
        listener.close()


def test_accept_queue_length_counts_connections_waiting_for_accept() -> None:
    listener = socket.create_server(("127.0.0.1", 0), backlog=16)
    clients = []
    try:
        assert accept_queue_length(listener) == 0
        clients = [socket.create_connection(listener.getsockname()[:2]) for _ in range(5)]
        deadline = time.monotonic() + 5
        while accept_queue_length(listener) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        expected = 5 if sys.platform == "linux" else 0
        assert accept_queue_length(listener) == expected
        listener.accept()[0].close()
        assert accept_queue_length(listener) == max(0, expected - 1)
    finally:
        for client in clients:
            client.close()
        listener.close()
