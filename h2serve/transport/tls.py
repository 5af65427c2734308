"""Server TLS context and the HTTP/2 TLS requirements of RFC 9113 section 9.2.

One context is built per worker (and rebuilt on reload) and reused for every
connection, so session tickets issued by one connection resume on the next.
"""

from __future__ import annotations

import re
import ssl
from typing import Any

__all__ = [
    "DEFAULT_CIPHERS",
    "build_server_context",
    "cipher_is_h2_blocklisted",
    "inadequate_for_h2",
    "looks_like_plain_http",
    "peer_certificate_environ",
    "plain_http_refusal",
]

# What a client that speaks plain HTTP to a TLS port gets (as nginx answers
# 400 there): something a person reading curl's output understands.
_PLAIN_HTTP_BODY = (b"This port speaks HTTPS: the request was sent as plain HTTP.\n"
                    b"Use an https:// URL (or serve plain HTTP with --plaintext).\n")
_PLAIN_HTTP_HEAD = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
                    b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(_PLAIN_HTTP_BODY))


def plain_http_refusal(first: bytes) -> bytes:
    """The 400 for a plain HTTP request that began with `first` (no body for HEAD)."""
    return _PLAIN_HTTP_HEAD if first.startswith(b"HEAD ") else _PLAIN_HTTP_HEAD + _PLAIN_HTTP_BODY


def looks_like_plain_http(first: bytes) -> bool:
    """The first bytes a client sent to a TLS listener are an HTTP request (an
    uppercase method token), not a TLS record (0x16) or an SSLv2 hello (0x80+)."""
    head = first[:8]
    token = head.split(b" ", 1)[0]
    return bool(head) and 65 <= head[0] <= 90 and token.isalpha() and token.isupper()

# TLS 1.2 suites allowed by RFC 9113 Appendix A: ephemeral ECDH key exchange
# with an AEAD cipher. TLS 1.3 suites are configured separately by OpenSSL
# and are all acceptable.
DEFAULT_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!PSK:!SRP:!DSS"

# OpenSSL's names for TLS 1.3 suites and IANA names of TLS 1.3 suites both
# look like TLS_<AEAD>_<HASH>, with no key exchange and no "_WITH_".
_TLS13_NAME = re.compile(
    r"^TLS_(AES_\d+_(GCM|CCM(_8)?)|CHACHA20_POLY1305|SM4_(GCM|CCM))_[A-Z0-9]+$"
)
_EPHEMERAL_IANA = re.compile(r"^TLS_(ECDHE|DHE)_")
_AEAD_IANA = re.compile(r"_WITH_(.*_)?(GCM|CCM|CHACHA20_POLY1305)(_|$)")
_EPHEMERAL_OPENSSL = {"ECDHE", "DHE", "EDH", "EECDH"}


def build_server_context(
    certfile: str,
    keyfile: str,
    *,
    alpn_protocols: list[str],
    ca_certs: str | None = None,
    cert_reqs: int = ssl.CERT_NONE,
    ciphers: str | None = None,
) -> ssl.SSLContext:
    """Build the SSLContext every connection of a worker shares.

    TLS 1.2 is the floor and the default TLS 1.2 suites are only those
    RFC 9113 allows for HTTP/2, so an h2 client never meets a suite it must
    refuse. Raises ValueError naming the files when the certificate, key or
    CA bundle cannot be loaded, and ssl.SSLError for a cipher string that
    selects nothing.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    no_renegotiation = getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    if no_renegotiation:
        context.options |= no_renegotiation
    # OP_NO_TICKET stays off: tickets let a client resume on any worker that
    # shares this context.
    try:
        context.set_ciphers(ciphers or DEFAULT_CIPHERS)
    except ssl.SSLError as exc:
        raise ssl.SSLError(
            f"TLS cipher string {ciphers or DEFAULT_CIPHERS!r} selects no usable cipher suite ({exc})"
        ) from exc
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
        raise ValueError(
            f"Cannot load TLS certificate {certfile!r} with key {keyfile!r}: {reason}."
        ) from exc
    if cert_reqs != ssl.CERT_NONE and not ca_certs:
        raise ValueError(
            "Requesting client certificates needs a CA bundle (ca_certs) to verify them."
        )
    if ca_certs:
        try:
            context.load_verify_locations(cafile=ca_certs)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
            raise ValueError(f"Cannot load CA certificates from {ca_certs!r}: {reason}.") from exc
    context.verify_mode = ssl.VerifyMode(cert_reqs)
    if alpn_protocols:
        context.set_alpn_protocols(list(alpn_protocols))
    return context


def cipher_is_h2_blocklisted(cipher_name: str) -> bool:
    """True when RFC 9113 Appendix A forbids this suite for HTTP/2.

    The appendix lists every TLS 1.2 suite that lacks an ephemeral key
    exchange (DHE/ECDHE) or an AEAD cipher (GCM, CCM, ChaCha20-Poly1305);
    anonymous DH is not ephemeral enough to pass. TLS 1.3 suites are never
    listed. Accepts IANA names (TLS_ECDHE_RSA_WITH_...) and OpenSSL names
    (ECDHE-RSA-AES128-GCM-SHA256).
    """
    name = cipher_name.strip().upper()
    if _TLS13_NAME.match(name):
        return False
    if "_WITH_" in name:
        return not (_EPHEMERAL_IANA.match(name) and _AEAD_IANA.search(name))
    if name.startswith("TLS_") or name.startswith("SSL_"):
        return True  # SCSVs and other non-suites
    parts = name.split("-")
    ephemeral = parts[0] in _EPHEMERAL_OPENSSL
    aead = "GCM" in parts or "CHACHA20" in parts or any(p in ("CCM", "CCM8") for p in parts)
    return not (ephemeral and aead)


_TLS_VERSION_ORDER = {"SSLv2": 0, "SSLv3": 1, "TLSv1": 2, "TLSv1.1": 3, "TLSv1.2": 4, "TLSv1.3": 5}


def inadequate_for_h2(sslsock: ssl.SSLSocket | ssl.SSLObject) -> bool:
    """True when a finished handshake does not meet RFC 9113 section 9.2.

    An HTTP/2 server then answers with GOAWAY INADEQUATE_SECURITY.
    """
    version = sslsock.version()
    if version is None or _TLS_VERSION_ORDER.get(version, 0) < _TLS_VERSION_ORDER["TLSv1.2"]:
        return True
    if version == "TLSv1.3":
        return False
    cipher = sslsock.cipher()
    if cipher is None:
        return True
    return cipher_is_h2_blocklisted(cipher[0])


def peer_certificate_environ(sslsock: ssl.SSLSocket | ssl.SSLObject) -> dict[str, Any]:
    """mod_ssl-style environ keys describing the client certificate, or {} if none was sent.

    Keys: SSL_CLIENT_CERT (PEM), SSL_CLIENT_S_DN, SSL_CLIENT_I_DN,
    SSL_CLIENT_M_SERIAL (hex).
    """
    der = sslsock.getpeercert(binary_form=True)
    if not der:
        return {}
    from cryptography import x509

    certificate = x509.load_der_x509_certificate(der)
    return {
        "SSL_CLIENT_CERT": ssl.DER_cert_to_PEM_cert(der),
        "SSL_CLIENT_S_DN": certificate.subject.rfc4514_string(),
        "SSL_CLIENT_I_DN": certificate.issuer.rfc4514_string(),
        "SSL_CLIENT_M_SERIAL": format(certificate.serial_number, "X"),
    }
