"""RFC 9218 priority: the Priority field (an RFC 8941 dictionary of u and i),
as the request header and PRIORITY_UPDATE frames carry it, and the priority
dict every request event carries. Sans-I/O; any thread."""

from __future__ import annotations

import re

_SF_KEY = re.compile(r"^[a-z*][a-z0-9_\-.*]*$")
_SF_INTEGER = re.compile(r"^-?[0-9]{1,15}$")

DEFAULT_URGENCY = 3
# Longest Priority field value parsed: real ones are a few bytes ("u=1, i"); a
# longer one is ignored whole, so a 16 KB PRIORITY_UPDATE costs no more CPU
# or memory than a short one.
MAX_PRIORITY_FIELD = 1024


def _split_top_level(text: str, sep: str) -> list[str] | None:
    """Split on `sep` outside quoted strings and parentheses; None if unbalanced."""
    parts: list[str] = []
    depth = 0
    in_string = False
    escaped = False
    start = 0
    for index, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                return None
        elif char == sep and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    if in_string or depth:
        return None
    parts.append(text[start:])
    return parts


def parse_priority_field(value: str | None) -> dict:
    """Parse an RFC 9218 Priority field value (an RFC 8941 dictionary).

    Returns {"urgency": 0..7, "incremental": bool}. A value that does not parse
    as a dictionary is ignored as a whole; out-of-range or mistyped u / i
    members and unknown keys are ignored one by one (RFC 9218 section 4).
    """
    priority = {"urgency": DEFAULT_URGENCY, "incremental": False}
    if not value or len(value) > MAX_PRIORITY_FIELD or not value.strip(" \t"):
        return priority
    members = _split_top_level(value, ",")
    if members is None:
        return priority
    parsed: dict[str, str | None] = {}
    for member in members:
        member = member.strip(" \t")
        if not member:
            return {"urgency": DEFAULT_URGENCY, "incremental": False}
        item = (_split_top_level(member, ";") or [member])[0].strip(" \t")
        key, has_value, bare = item.partition("=")
        if not _SF_KEY.match(key):
            return {"urgency": DEFAULT_URGENCY, "incremental": False}
        parsed[key] = bare if has_value else None
    urgency = parsed.get("u", "absent")
    if urgency not in ("absent", None) and _SF_INTEGER.match(urgency):
        number = int(urgency)
        if 0 <= number <= 7:
            priority["urgency"] = number
    if "i" in parsed:
        incremental = parsed["i"]
        if incremental is None or incremental == "?1":
            priority["incremental"] = True
        elif incremental == "?0":
            priority["incremental"] = False
    return priority


def priority_dict(parsed: dict, weight: int | None, depends_on: int | None) -> dict:
    """A request's priority as events carry it: RFC 9218 urgency and
    incremental, plus the RFC 7540 weight and parent when the client sent them."""
    return {
        "urgency": parsed["urgency"],
        "incremental": parsed["incremental"],
        "weight": weight,
        "depends_on": depends_on,
    }
