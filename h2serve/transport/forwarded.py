"""Which peers may speak for the client, and what they may say.

One home for the trust rule behind forwarded_allow_ips (X-Forwarded-For,
secure_scheme_headers, forwarder_headers, root_path) and proxy_allow_ips (who
may send a PROXY protocol header): the WSGI environ builder and the worker's
connection setup both use it.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Mapping
from typing import Any

log = logging.getLogger("h2serve.error")

# gunicorn's default: the headers (lower-case here) and exact values meaning HTTPS.
VERDICTS_KEPT = 1024   # addresses whose trust is remembered, then forgotten at once
DEFAULT_SECURE_SCHEME_HEADERS = {"x-forwarded-protocol": "ssl", "x-forwarded-proto": "https",
                                 "x-forwarded-ssl": "on"}


class ForwardedPolicy:
    """Peers allowed to speak for the client, and what they may set.

    ``allow`` holds addresses, networks and ``*``; a unix-socket peer (address
    ``""``) is always trusted, only local processes can connect. IPv4 peers seen
    through a dual-stack listener (``::ffff:a.b.c.d``) match IPv4 entries.
    """

    def __init__(self, allow: Iterable[str], *,
                 secure_scheme_headers: Mapping[str, str] | None = None,
                 forwarder_headers: Iterable[str] = (), root_path: str = "") -> None:
        self.allow_all = False
        self.networks: list[Any] = []
        for entry in allow:
            entry = entry.strip()
            if entry == "*":
                self.allow_all = True
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                log.warning("ignoring %r: not an IP address or network", entry)
        self.secure_scheme_headers = {
            name.lower(): value for name, value in
            (DEFAULT_SECURE_SCHEME_HEADERS if secure_scheme_headers is None
             else secure_scheme_headers).items()
        }
        # forwarder_headers name environ keys; the request header is that name in
        # lower case (SCRIPT_NAME arrives as "script_name").
        self.forwarder_headers = frozenset(name.strip().upper() for name in forwarder_headers)
        self.root_path = root_path.rstrip("/")
        self._verdicts: dict[str, bool] = {}   # address -> trusts(address)

    @classmethod
    def from_config(cls, cfg: Any) -> ForwardedPolicy:
        """The X-Forwarded-* policy a worker applies to every request."""
        return cls(cfg.forwarded_allow_ips, secure_scheme_headers=cfg.secure_scheme_headers,
                   forwarder_headers=cfg.forwarder_headers, root_path=cfg.root_path)

    def trusts(self, address: str | None) -> bool:
        """Whether this peer address may speak for the client."""
        if self.allow_all or address == "":
            return True
        if not address or not self.networks:
            return False
        verdict = self._verdicts.get(address)
        if verdict is None:
            # Parsing the address took 2-3 % of a worker's time under h1-hello
            # (py-spy): remember the answer, in a bounded table, since
            # X-Forwarded-For hops are the client's to choose.
            verdict = self._judge(address)
            if len(self._verdicts) >= VERDICTS_KEPT:
                self._verdicts.clear()
            self._verdicts[address] = verdict
        return verdict

    def _judge(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.networks)

    def client_address(self, peer: str, forwarded_for: str) -> str:
        """The nearest hop not in the allow list, walking X-Forwarded-For right to left."""
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self.trusts(hop):
                return hop
        return hops[0] if hops else peer

    def scheme(self, votes: list[bool]) -> str | None:
        """wsgi.url_scheme from secure_scheme_headers matches (True) and mismatches
        (False) a trusted peer sent; None when it sent none. Headers that disagree
        give "http", the side that cannot leak a secure cookie."""
        if not votes:
            return None
        return "https" if all(votes) else "http"


def apply_root_path(environ: dict[str, Any], script_name: str) -> None:
    """SCRIPT_NAME is where the app is mounted; PATH_INFO loses that prefix when it has it."""
    script_name = script_name.rstrip("/")
    if not script_name:
        return
    environ["SCRIPT_NAME"] = script_name
    path = environ.get("PATH_INFO", "")
    if path == script_name or path.startswith(script_name + "/"):
        environ["PATH_INFO"] = path[len(script_name):]
