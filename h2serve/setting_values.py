"""Converters and checks of setting values: a raw value (a command-line
string, or a Python object from a config file) in, the typed value out, or
ValueError with a short reason. The table in settings.py names one of each
per setting."""

from __future__ import annotations

import ipaddress
import math
import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# --------------------------------------------------------------------------
# Converters: raw value (CLI string or Python object from a config file) ->
# typed value. They raise ValueError with a short reason.


def to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip(), 10)
        except ValueError:
            raise ValueError(f"expected an integer, got {value!r}") from None
    raise ValueError(f"expected an integer, got {type(value).__name__} {value!r}")


def to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number of seconds, got {value!r}")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueError(f"expected a number of seconds, got {value!r}") from None
    else:
        raise ValueError(f"expected a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {value!r}")
    return number


TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise ValueError(f"expected true or false, got {value!r}")


def to_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise ValueError(f"expected a string, got {type(value).__name__} {value!r}")


def to_str_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        return list(value)
    raise ValueError(f"expected a string or a list of strings, got {value!r}")


def optional(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def convert_optional(value: Any) -> Any:
        return None if value is None else convert(value)

    return convert_optional


_CERT_REQS_NAMES = {"none": 0, "optional": 1, "required": 2}


def to_cert_reqs(value: Any) -> int:
    if isinstance(value, str):
        word = value.strip().lower().removeprefix("cert_")
        if word in _CERT_REQS_NAMES:
            return _CERT_REQS_NAMES[word]
    if isinstance(value, ssl.VerifyMode):
        return int(value)
    try:
        return to_int(value)
    except ValueError:
        raise ValueError(f"expected 0, 1, 2, none, optional or required, got {value!r}") from None


_PROTOCOL_ALIASES = {"h1": "h1", "http/1.1": "h1", "h2": "h2"}
ALPN_IDS = {"h1": "http/1.1", "h2": "h2"}


def to_http_protocols(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        tokens = [to_str(item) for item in value]
    else:
        tokens = to_str(value).split(",")
    names: list[str] = []
    for token in tokens:
        word = token.strip().lower()
        if not word:
            continue
        if word not in _PROTOCOL_ALIASES:
            raise ValueError(f"unknown protocol {word!r} (choose from h1, h2)")
        name = _PROTOCOL_ALIASES[word]
        if name in names:
            raise ValueError(f"protocol {name!r} is listed twice")
        names.append(name)
    if not names:
        raise ValueError("at least one protocol (h1 or h2) is required")
    return ",".join(names)


def to_ip_list(value: Any) -> list[str]:
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, (list, tuple)):
        items = [to_str(item) for item in value]
    else:
        raise ValueError(f"expected a comma-separated string or a list, got {value!r}")
    return [item.strip() for item in items if item.strip()]


def to_log_level(value: Any) -> str:
    word = to_str(value).strip().lower()
    if word not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return word


# gunicorn's worker classes that describe what h2serve's one worker type is.
_THREADED_WORKER_CLASSES = ("gthread", "sync", "gunicorn.workers.gthread.ThreadWorker",
                            "gunicorn.workers.sync.SyncWorker")


def to_worker_class(value: Any) -> str:
    word = to_str(value).strip()
    if word.lower() in _THREADED_WORKER_CLASSES or word in _THREADED_WORKER_CLASSES:
        return word
    raise ValueError(
        f"{word!r} is not available: h2serve runs WSGI apps on one worker type, a poller "
        "thread plus --threads application threads (gunicorn's gthread); use gthread or sync, "
        "or an ASGI server for async workers")


def _to_account_id(value: Any, lookup: Callable[[str], int], kind: str) -> int:
    """A numeric id, or a name `lookup` resolves (gunicorn's user and group)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    word = to_str(value).strip()
    if word.isdigit():
        return int(word)
    try:
        return lookup(word)
    except KeyError:
        raise ValueError(f"no such {kind}: {word!r}") from None


def to_uid(value: Any) -> int:
    """gunicorn's user: a name or a numeric id."""
    import pwd  # lazy: POSIX only

    return _to_account_id(value, lambda name: pwd.getpwnam(name).pw_uid, "user")


def to_gid(value: Any) -> int:
    """gunicorn's group: a name or a numeric id."""
    import grp  # lazy: POSIX only

    return _to_account_id(value, lambda name: grp.getgrnam(name).gr_gid, "group")


def to_umask(value: Any) -> int:
    """An int, or a string in any base Python reads (`0o22`, `0x12`, `18`); a string
    with a leading 0 (`022`, as umask(1) and systemd write it) is octal."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    word = to_str(value).strip()
    try:
        if len(word) > 1 and word.startswith("0") and word.isdigit():
            return int(word, 8)
        return int(word, 0)
    except ValueError:
        raise ValueError(f"expected a umask such as 0o022, got {value!r}") from None


def to_env_list(value: Any) -> list[str]:
    entries = to_str_list(value)
    for entry in entries:
        key, equals, _ = entry.partition("=")
        if not equals or not key.strip():
            raise ValueError(f"expected KEY=VALUE, got {entry!r}")
    return entries


def to_header_dict(value: Any) -> dict[str, str]:
    """secure_scheme_headers: header name -> exact value; names compared case-insensitively."""
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a dict of header name to value, got {value!r}")
    result = {}
    for name, expected in value.items():
        if not isinstance(name, str) or not isinstance(expected, str):
            raise ValueError(f"expected string header names and values, got {name!r}: {expected!r}")
        result[name.strip().lower()] = expected
    return result


def to_upper_list(value: Any) -> list[str]:
    return [item.upper() for item in to_ip_list(value)]


HTTP2_CLEARTEXT_MODES = ("off", "prior-knowledge", "upgrade", "both")


def to_http2_cleartext(value: Any) -> str:
    if value is None or value is False:
        return "off"
    if value is True:
        return "prior-knowledge"  # as gunicorn reads a bool
    word = to_str(value).strip().lower()
    if word not in HTTP2_CLEARTEXT_MODES:
        raise ValueError(f"expected one of {', '.join(HTTP2_CLEARTEXT_MODES)}, got {value!r}")
    return word


def to_path_list(value: Any) -> list[str]:
    """pythonpath: comma-separated directories (gunicorn's form) or a list."""
    return to_ip_list(value)


PROXY_PROTOCOL_MODES = ("off", "v1", "v2", "auto")


def to_proxy_protocol(value: Any) -> str:
    """gunicorn 27's off/v1/v2/auto, and the booleans earlier versions took."""
    if isinstance(value, bool):
        return "auto" if value else "off"
    word = to_str(value).strip().lower()
    if word in PROXY_PROTOCOL_MODES:
        return word
    if word in TRUE_WORDS:
        return "auto"
    if word in FALSE_WORDS:
        return "off"
    raise ValueError(f"expected one of {', '.join(PROXY_PROTOCOL_MODES)} (or true/false), "
                     f"got {value!r}")


def to_request_fields(value: Any) -> int:
    # As in gunicorn, 0 asks for the largest allowed number of fields.
    number = to_int(value)
    return MAX_REQUEST_FIELDS if number == 0 else number


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
MAX_REQUEST_FIELDS = 32768
MAX_31_BIT = 2**31 - 1


# --------------------------------------------------------------------------
# Validators: typed value -> None, or ValueError with a short reason.


def at_least(low: float) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if value < low:
            raise ValueError(f"must be at least {low}, got {value}")

    return check


def above(low: float) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if value <= low:
            raise ValueError(f"must be greater than {low}, got {value}")

    return check


def between(low: int, high: int) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}, got {value}")

    return check


def check_file(path: str) -> None:
    if not os.path.isfile(path):
        raise ValueError(f"file not found: {path}")


def check_directory(path: str) -> None:
    if not os.path.isdir(path):
        raise ValueError(f"directory not found: {path}")


def check_parent_directory(path: str) -> None:
    if path != "-" and not os.path.isdir(os.path.dirname(path) or "."):
        raise ValueError(f"directory not found for {path}")


def check_bind(addresses: list[str]) -> None:
    if not addresses:
        raise ValueError("at least one address is required")
    from h2serve.transport.listeners import parse_bind  # lazy: transport imports ssl machinery

    for address in addresses:
        try:
            parse_bind(address)
        except ValueError as exc:
            reason = str(exc)
            if address not in reason:
                reason = f"invalid address {address!r}: {reason}"
            raise ValueError(reason) from None


SYSLOG_FACILITIES = ("user", "daemon", "auth", "authpriv", "cron", "ftp", "kern", "lpr", "mail",
                     "news", "security", "syslog", "uucp",
                     *(f"local{n}" for n in range(8)))


def check_syslog_address(address: str) -> None:
    if not address.startswith(("unix://", "udp://", "tcp://")):
        raise ValueError("must be unix://PATH, udp://HOST:PORT or tcp://HOST:PORT")


def to_log_dict(value: Any) -> dict:
    if not isinstance(value, dict):
        raise ValueError("must be a dict (logging.config.dictConfig's format)")
    return value


def check_statsd_address(address: str) -> None:
    from h2serve.statsd import parse_address  # lazy: only when the setting is used

    parse_address(address)


def check_ciphers(ciphers: str) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.set_ciphers(ciphers)
    except ssl.SSLError:
        raise ValueError(f"no usable cipher in {ciphers!r}") from None


def check_forwarded_ips(entries: list[str]) -> None:
    for entry in entries:
        if entry == "*":
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(f"not an IP address or network: {entry!r}") from None


class _DashForAnyKey(dict):
    def __missing__(self, key: str) -> str:
        return "-"


def parse_dirty_app_spec(spec: str) -> tuple[str, int | None]:
    """``module:Class`` or gunicorn's ``module:Class:N`` -> (import path, N or None)."""
    parts = spec.split(":")
    if len(parts) == 2 and all(parts):
        return spec, None
    if len(parts) == 3 and parts[0] and parts[1]:
        try:
            count = int(parts[2])
        except ValueError:
            count = 0
        if count >= 1:
            return f"{parts[0]}:{parts[1]}", count
    raise ValueError(f"{spec!r} is not module:Class or module:Class:N (N >= 1)")


def check_dirty_apps(specs: list[str]) -> None:
    """Each dirty app spec parses; its import waits for the dirty arbiter."""
    for spec in specs:
        parse_dirty_app_spec(spec)


def check_access_logformat(fmt: str) -> None:
    if fmt == "json":
        return
    try:
        fmt % _DashForAnyKey()
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"invalid format {fmt!r}: {exc} (atoms look like %(h)s)") from None


@dataclass(frozen=True)
class Setting:
    """One setting: how it is spelled everywhere, parsed, checked and documented."""

    name: str
    flags: tuple[str, ...]
    section: str
    type_name: str
    meta: str
    help: str
    convert: Callable[[Any], Any]
    default: Any = None
    validate: Callable[[Any], None] | None = None
    # "value", "list" (repeatable flag), "bool", "switch", "positional", or
    # "optional" (a flag whose value may be left out: see _with_optional_values)
    kind: str = "value"
    default_env: str | None = None  # environment variable that replaces the default
    default_doc: str | None = None  # how docs show a default computed at start-up
    cli_only: bool = False  # not accepted from a config file
    is_path: bool = False  # resolved against the start directory (except "-")
    choices: tuple[str, ...] | None = None
    aliases: tuple[str, ...] = ()  # other config-file names (gunicorn's spelling)

    def parse(self, raw: Any) -> Any:
        """Convert and check one raw value; raises ValueError with the reason."""
        value = self.convert(raw)
        if value is not None and self.validate is not None:
            self.validate(value)
        return value

    @property
    def label(self) -> str:
        """How error messages name this setting."""
        return "/".join(self.flags) if self.flags else self.meta
