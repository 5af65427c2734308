"""The catalogue: every registered case, in report order, and selection by id.

Importing this module imports every case module, which registers its cases
in `h2spec.registry` (the order of registration inside a section gives the
case numbers). The record types are re-exported here for callers that read
the catalogue.
"""

from __future__ import annotations

# Importing the case modules registers their cases.
from h2spec.cases import (  # noqa: F401
    generic,
    hpack_cases,
    http2_frames,
    http2_messages,
    http2_starting,
    http2_streams,
)
from h2spec.registry import (
    SPEC_ORDER,
    SPEC_TITLES,
    Case,
    CaseContext,
    CaseFailed,
    CaseFunction,
    CaseSkipped,
    Group,
    group,
    registered_groups,
)

__all__ = [
    "SPEC_ORDER",
    "SPEC_TITLES",
    "Case",
    "CaseContext",
    "CaseFailed",
    "CaseFunction",
    "CaseSkipped",
    "Group",
    "all_cases",
    "all_groups",
    "group",
    "select",
]


def all_groups() -> list[Group]:
    """Every section with its cases, in report order."""
    return registered_groups()


def all_cases(*, strict: bool = False) -> list[Case]:
    """Every case in report order; strict-only cases only when asked."""
    return [c for g in all_groups() for c in g.cases if strict or not c.strict]


def select(cases: list[Case], prefixes: list[str]) -> list[Case]:
    """Cases whose id starts with one of the prefixes (all when none).

    A prefix stops at an id boundary: `http2/6.5` selects http2/6.5/1 and
    http2/6.5.2/1, `http2/6.1` does not select http2/6.10/1."""
    if not prefixes:
        return cases

    def matches(case_id: str, prefix: str) -> bool:
        prefix = prefix.rstrip("/")
        if case_id == prefix:
            return True
        if not case_id.startswith(prefix):
            return False
        return case_id[len(prefix)] in "/."

    return [c for c in cases if any(matches(c.id, p) for p in prefixes)]
