"""A local development CA and a localhost certificate signed by it.

Browsers only speak HTTP/2 over TLS, so ``h2serve`` needs a certificate even
on a laptop. We make a small CA once (trust it once), and a short-lived
server certificate for localhost, 127.0.0.1 and ::1 that is reissued from
that CA when it nears expiry, so the trust decision survives renewals. The
CA is name-constrained to those local names: even if its key leaked, it
could not vouch for any public site.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import ipaddress
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CA_CERT_NAME",
    "CA_KEY_NAME",
    "SERVER_CERT_NAME",
    "SERVER_KEY_NAME",
    "DevCertificate",
    "default_cert_dir",
    "ensure_dev_certificate",
    "write_certificates",
]

CA_CERT_NAME = "ca.pem"
CA_KEY_NAME = "ca-key.pem"
SERVER_CERT_NAME = "localhost.pem"
SERVER_KEY_NAME = "localhost-key.pem"
LOCK_NAME = ".lock"

CA_LIFETIME = dt.timedelta(days=3650)
SERVER_LIFETIME = dt.timedelta(days=365)
MINIMUM_REMAINING = dt.timedelta(days=30)
# Backdate a little so a client whose clock runs slightly behind accepts it.
BACKDATE = dt.timedelta(hours=1)

SERVER_DNS_NAMES = ("localhost",)
SERVER_IP_ADDRESSES = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))


@dataclass(frozen=True)
class DevCertificate:
    """Paths of the development CA certificate and the server certificate and key."""

    ca_cert: Path
    cert: Path
    key: Path
    ca_key: Path


def default_cert_dir() -> Path:
    """Where dev certificates live: $H2SERVE_CERT_DIR, else the XDG data dir."""
    explicit = os.environ.get("H2SERVE_CERT_DIR")
    if explicit:
        return Path(explicit).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME")
    if data_home:
        return Path(data_home).expanduser() / "h2serve" / "certs"
    return Path.home() / ".local" / "share" / "h2serve" / "certs"


def ensure_dev_certificate(directory: Path | None = None) -> DevCertificate:
    """Return usable dev certificates in ``directory``, creating or renewing them.

    Existing files are reused untouched while each certificate stays valid for
    at least 30 more days and the server certificate is signed by the CA. A
    stale server certificate is reissued from the existing CA; a stale or
    broken CA is replaced together with the server certificate. Concurrent
    callers (several workers starting at once) are serialised by a lock file.
    """
    return _ensure(Path(directory) if directory is not None else default_cert_dir(), force=False)


def write_certificates(directory: Path, force: bool = False) -> DevCertificate:
    """Create the dev CA and server certificate in ``directory`` (``h2serve certs``).

    Without ``force`` this behaves like :func:`ensure_dev_certificate`; with it
    a new CA and server certificate replace whatever is there.
    """
    return _ensure(Path(directory), force=force)


def _paths(directory: Path) -> DevCertificate:
    return DevCertificate(
        ca_cert=directory / CA_CERT_NAME,
        cert=directory / SERVER_CERT_NAME,
        key=directory / SERVER_KEY_NAME,
        ca_key=directory / CA_KEY_NAME,
    )


def _ensure(directory: Path, force: bool) -> DevCertificate:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths = _paths(directory)
    with _locked(directory / LOCK_NAME):
        now = _utcnow()
        ca = None if force else _load_valid_ca(paths, now)
        if ca is None:
            ca_cert, ca_key = _make_ca(now)
            _write_private_key(paths.ca_key, ca_key)
            _write_certificate(paths.ca_cert, ca_cert)
        else:
            ca_cert, ca_key = ca
            if _server_is_valid(paths, ca_cert, now):
                return paths
        server_cert, server_key = _make_server_certificate(ca_cert, ca_key, now)
        _write_private_key(paths.key, server_key)
        _write_certificate(paths.cert, server_cert)
    return paths


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _not_after(certificate: x509.Certificate) -> dt.datetime:
    value = getattr(certificate, "not_valid_after_utc", None)
    if value is None:  # cryptography < 42
        value = certificate.not_valid_after.replace(tzinfo=dt.timezone.utc)
    return value


def _not_before(certificate: x509.Certificate) -> dt.datetime:
    value = getattr(certificate, "not_valid_before_utc", None)
    if value is None:  # cryptography < 42
        value = certificate.not_valid_before.replace(tzinfo=dt.timezone.utc)
    return value


def _usable_until_margin(certificate: x509.Certificate, now: dt.datetime) -> bool:
    return _not_before(certificate) <= now and _not_after(certificate) - now >= MINIMUM_REMAINING


def _same_public_key(certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    encoding = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return certificate.public_key().public_bytes(encoding, spki) == key.public_key().public_bytes(
        encoding, spki
    )


def _load_pair(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, object] | None:
    try:
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    return certificate, key


def _load_valid_ca(
    paths: DevCertificate, now: dt.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    pair = _load_pair(paths.ca_cert, paths.ca_key)
    if pair is None:
        return None
    certificate, key = pair
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not _same_public_key(certificate, key):
        return None
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return None
    if not constraints.value.ca or not _usable_until_margin(certificate, now):
        return None
    return certificate, key


def _server_is_valid(paths: DevCertificate, ca_cert: x509.Certificate, now: dt.datetime) -> bool:
    pair = _load_pair(paths.cert, paths.key)
    if pair is None:
        return False
    certificate, key = pair
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not _same_public_key(certificate, key):
        return False
    if not _usable_until_margin(certificate, now):
        return False
    try:
        certificate.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return set(names.get_values_for_type(x509.DNSName)) >= set(SERVER_DNS_NAMES) and set(
        names.get_values_for_type(x509.IPAddress)
    ) >= set(SERVER_IP_ADDRESSES)


def _make_ca(now: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "h2serve development"),
            x509.NameAttribute(
                NameOID.COMMON_NAME, f"h2serve development CA ({socket.gethostname()[:40]})"
            ),
        ]
    )
    local_only = x509.NameConstraints(
        permitted_subtrees=[x509.DNSName(dns) for dns in SERVER_DNS_NAMES]
        + [
            x509.IPAddress(ipaddress.ip_network("127.0.0.0/8")),
            x509.IPAddress(ipaddress.ip_network("::1/128")),
        ],
        excluded_subtrees=None,
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(local_only, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate, key


def _make_server_certificate(
    ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, now: dt.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    # Never outlive the CA that signs it.
    not_after = min(now + SERVER_LIFETIME, _not_after(ca_cert))
    alt_names: list[x509.GeneralName] = [x509.DNSName(dns) for dns in SERVER_DNS_NAMES]
    alt_names += [x509.IPAddress(ip) for ip in SERVER_IP_ADDRESSES]
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return certificate, key


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write to a private temporary file, then rename: readers never see half a file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)  # O_CREAT's mode is filtered by the umask
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _write_private_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_atomically(path, pem, 0o600)


def _write_certificate(path: Path, certificate: x509.Certificate) -> None:
    _write_atomically(path, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
