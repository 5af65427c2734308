"""What a case is and how it registers: the records and the `group(...).case`
decorator the case modules use.

It lives apart from `catalogue` so that imports run one way: the case
modules import this module, and `catalogue` imports the case modules (to
register them) and this module. Nothing here imports a case module.

Case ids follow h2spec's numbering: `<spec>/<section>/<n>`, where n counts
the cases of one section in the order they are registered, from 1
(`http2/6.9.1/3`, `generic/3.1/2`, `hpack/5.2/1`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from h2spec.client import Connection, Target

SPEC_TITLES = {
    "generic": "Generic tests for HTTP/2 server",
    "http2": "Hypertext Transfer Protocol Version 2 (HTTP/2)",
    "hpack": "HPACK: Header Compression for HTTP/2",
}
SPEC_ORDER = tuple(SPEC_TITLES)


class CaseFailed(Exception):
    """The server's answer was not one the RFC allows."""

    def __init__(self, expected: list[str], actual: str) -> None:
        super().__init__(f"expected {' or '.join(expected)}; got {actual}")
        self.expected = expected
        self.actual = actual


class CaseSkipped(Exception):
    """The case cannot say anything about this server (e.g. empty body)."""


class CaseContext:
    """What a case function receives: the target, connections that the
    runner closes afterwards, and the standard request headers."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.connections: list[Connection] = []

    @property
    def timeout(self) -> float:
        return self.target.timeout

    def connect(self, *, handshake: bool = True) -> Connection:
        conn = Connection.open(self.target)
        self.connections.append(conn)
        if handshake:
            conn.handshake()
        return conn

    def request_headers(self, method: str = "GET") -> list[tuple[str, str]]:
        """:method, :scheme, :path, :authority, in that order."""
        return [
            (":method", method),
            (":scheme", self.target.scheme),
            (":path", self.target.path),
            (":authority", self.target.authority),
        ]

    @property
    def notes(self) -> list[str]:
        return [note for conn in self.connections for note in conn.notes]

    @property
    def log(self) -> list[str]:
        lines: list[str] = []
        for number, conn in enumerate(self.connections, 1):
            if len(self.connections) > 1:
                lines.append(f"-- connection {number}")
            lines.extend(conn.log)
        return lines

    def close(self) -> None:
        for conn in self.connections:
            conn.close()


CaseFunction = Callable[[CaseContext], None]


@dataclass(frozen=True)
class Case:
    spec: str
    section: str
    number: int
    description: str
    requirement: str
    run: CaseFunction
    strict: bool = False

    @property
    def id(self) -> str:
        return f"{self.spec}/{self.section}/{self.number}"

    @property
    def group_id(self) -> str:
        return f"{self.spec}/{self.section}"


@dataclass
class Group:
    """One section of one spec; its cases are numbered as they register."""

    spec: str
    section: str
    title: str
    cases: list[Case] = field(default_factory=list)

    def case(
        self, description: str, requirement: str, *, strict: bool = False
    ) -> Callable[[CaseFunction], CaseFunction]:
        def register(function: CaseFunction) -> CaseFunction:
            self.cases.append(
                Case(
                    spec=self.spec,
                    section=self.section,
                    number=len(self.cases) + 1,
                    description=description,
                    requirement=requirement,
                    run=function,
                    strict=strict,
                )
            )
            return function

        return register

    @property
    def id(self) -> str:
        return f"{self.spec}/{self.section}"

    @property
    def sort_key(self) -> tuple[int, tuple[int, ...]]:
        return SPEC_ORDER.index(self.spec), tuple(int(part) for part in self.section.split("."))


_GROUPS: dict[str, Group] = {}


def group(spec: str, section: str, title: str) -> Group:
    """The group for a section, created on first use."""
    key = f"{spec}/{section}"
    if key not in _GROUPS:
        _GROUPS[key] = Group(spec, section, title)
    return _GROUPS[key]


def registered_groups() -> list[Group]:
    """The groups registered so far, in report order."""
    return sorted(_GROUPS.values(), key=lambda g: g.sort_key)
