"""Error log and access log.

The error log is the "h2serve.error" logger; the access log is the
"h2serve.access" logger fed by ``AccessLog``, whose format string is parsed
once so each request only computes the atoms the format uses.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

ERROR_LOGGER = "h2serve.error"
ACCESS_LOGGER = "h2serve.access"
ERROR_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
ERROR_DATEFMT = "%Y-%m-%d %H:%M:%S %z"

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


# Client-supplied text (paths, header values, reasons) may hold terminal
# control bytes: C0 controls, DEL and the C1 range (which UTF-8 terminals also
# obey). They are written as \\xHH, as nginx does, so a log line can neither
# move a terminal's cursor nor forge a second line.
_CONTROLS = [*range(0x00, 0x20), *range(0x7F, 0xA0)]
_ESCAPE_ALL = {code: f"\\x{code:02x}" for code in _CONTROLS}
_ESCAPE_KEEP_LINES = {code: text for code, text in _ESCAPE_ALL.items() if code not in (0x09, 0x0A)}
_HAS_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def escape_controls(text: str) -> str:
    """``text`` with every control character written as ``\\xHH``."""
    if _HAS_CONTROL.search(text) is None:
        return text
    return text.translate(_ESCAPE_ALL)


class EscapingFormatter(logging.Formatter):
    """The error log's formatter: string arguments (where client text goes)
    are escaped whole; the formatted line keeps only its own newlines and
    tabs (tracebacks and stack dumps are multi-line by design)."""

    def format(self, record: logging.LogRecord) -> str:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                escape_controls(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        text = super().format(record)
        if _HAS_CONTROL.search(text) is None:
            return text
        return text.translate(_ESCAPE_KEEP_LINES)


def _make_handler(target: str | None, default_stream: Any) -> logging.Handler:
    if target in (None, "-"):
        return logging.StreamHandler(default_stream)
    return logging.FileHandler(target, mode="a", encoding="utf-8")


def _install(logger: logging.Logger, handler: logging.Handler | None, level: int) -> None:
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    if handler is not None:
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def setup_logging(cfg: Any) -> None:
    """Point the error log at stderr or cfg.error_logfile, and the access log at
    cfg.access_logfile (stdout for "-"; no handler when unset). Safe to call again
    after a reload: old handlers are closed."""
    error_handler = _make_handler(cfg.error_logfile, sys.stderr)
    error_handler.setFormatter(EscapingFormatter(ERROR_FORMAT, ERROR_DATEFMT))
    _install(logging.getLogger(ERROR_LOGGER), error_handler, _LEVELS[cfg.log_level])

    access_handler = None
    if cfg.access_logfile is not None:
        access_handler = _make_handler(cfg.access_logfile, sys.stdout)
        access_handler.setFormatter(logging.Formatter("%(message)s"))
    _install(logging.getLogger(ACCESS_LOGGER), access_handler, logging.INFO)
    if getattr(cfg, "syslog", False):
        _add_syslog(logging.getLogger(ERROR_LOGGER), cfg, "error")
        if not cfg.disable_redirect_access_to_syslog:
            _add_syslog(logging.getLogger(ACCESS_LOGGER), cfg, "access")
    _apply_logging_config(cfg)


# gunicorn's logger names, which logging configurations written for it use.
GUNICORN_LOGGERS = {"gunicorn.error": ERROR_LOGGER, "gunicorn.access": ACCESS_LOGGER}

_SYSLOG_FACILITY_CODES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "security": 4, "syslog": 5,
    "lpr": 6, "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
    **{f"local{n}": 16 + n for n in range(8)},
}


def syslog_target(address: str) -> tuple[Any, int | None]:
    """(address, socket type) for logging.handlers.SysLogHandler from gunicorn's
    syslog_addr forms: unix://PATH[#dgram], udp://HOST:PORT, tcp://HOST:PORT."""
    import socket

    if address.startswith("unix://"):
        path, _, kind = address[len("unix://"):].partition("#")
        return path, socket.SOCK_DGRAM if kind == "dgram" else None
    scheme, _, rest = address.partition("://")
    host, _, port = rest.rpartition(":")
    return ((host.strip("[]") or "localhost", int(port or 514)),
            socket.SOCK_STREAM if scheme == "tcp" else socket.SOCK_DGRAM)


def _add_syslog(logger: logging.Logger, cfg: Any, which: str) -> None:
    """A syslog handler beside the log's own: program name
    h2serve.PREFIX.error (or .access), then `[pid] message`, as gunicorn's
    lines are (with its `gunicorn.` replaced by `h2serve.`)."""
    import logging.handlers

    address, socktype = syslog_target(cfg.syslog_addr)
    prefix = (cfg.syslog_prefix or cfg.proc_name or "h2serve").replace(":", ".")
    try:
        handler = logging.handlers.SysLogHandler(
            address=address, facility=_SYSLOG_FACILITY_CODES[cfg.syslog_facility.lower()],
            socktype=socktype)
    except OSError as exc:
        raise ValueError(f"--log-syslog-to {cfg.syslog_addr}: {exc.strerror or exc}") from None
    level = "[%(levelname)s] " if which == "error" else ""
    handler.setFormatter(EscapingFormatter(f"h2serve.{prefix}.{which}: [%(process)d] {level}%(message)s"))
    logger.addHandler(handler)


def _apply_logging_config(cfg: Any) -> None:
    """logconfig_dict, else logconfig_json, else logconfig, applied over the
    handlers above (existing loggers are left alone). Where it configures
    gunicorn's loggers, h2serve's loggers take their handlers and level."""
    import json
    import logging.config

    names: list[str] = []
    if getattr(cfg, "logconfig_dict", None):
        config = {"version": 1, "disable_existing_loggers": False, **cfg.logconfig_dict}
        logging.config.dictConfig(config)
        names = list(config.get("loggers", {}))
    elif getattr(cfg, "logconfig_json", None):
        with open(cfg.logconfig_json, encoding="utf-8") as handle:
            loaded = json.load(handle)
        config = {"version": 1, "disable_existing_loggers": False, **loaded}
        logging.config.dictConfig(config)
        names = list(config.get("loggers", {}))
    elif getattr(cfg, "logconfig", None):
        import configparser

        parser = configparser.ConfigParser()
        parser.read(cfg.logconfig, encoding="utf-8")
        keys = parser.get("loggers", "keys", fallback="")
        names = [parser.get(f"logger_{key.strip()}", "qualname", fallback=key.strip())
                 for key in keys.split(",") if key.strip()]
        logging.config.fileConfig(cfg.logconfig, disable_existing_loggers=False,
                                  defaults={"__file__": cfg.logconfig,
                                            "here": os.path.dirname(cfg.logconfig)})
    for name in names:
        ours = GUNICORN_LOGGERS.get(name)
        if ours is None:
            continue
        source, target = logging.getLogger(name), logging.getLogger(ours)
        for old in list(target.handlers):
            target.removeHandler(old)
        for handler in source.handlers:
            target.addHandler(handler)
        target.setLevel(source.level or target.level)
        target.propagate = source.propagate


def report_start_failure(cfg: Any, message: str) -> None:
    """Why the server or a worker could not start: in the error log, and on
    standard error as one `h2serve: error:` line when the error log is a file
    (so a terminal or a service manager's journal sees it too)."""
    logging.getLogger("h2serve.error").error("%s", message)
    if cfg.error_logfile not in (None, "", "-"):
        print(f"h2serve: error: {message}", file=sys.stderr)


def reopen_logs() -> None:
    """Reopen every log file (SIGUSR1), so rotated files are let go."""
    for name in (ERROR_LOGGER, ACCESS_LOGGER):
        for handler in logging.getLogger(name).handlers:
            if not isinstance(handler, logging.FileHandler):
                continue
            handler.acquire()
            try:
                if handler.stream is not None:
                    handler.stream.close()
                handler.stream = handler._open()
            finally:
                handler.release()


# --------------------------------------------------------------------------
# Access log.

# English month abbreviations, whatever the locale (access log and HTTP dates).
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_ATOM_RE = re.compile(r"%\(([^)]*)\)")

# A getter receives (environ, status, response_headers, response_bytes,
# request_start, request_time) and returns the atom's text.
Getter = Callable[[Mapping[str, Any], str, list, int, float, float], Any]


class _TimeCache:
    """Formats [dd/Mon/YYYY:HH:MM:SS +zzzz] once per second, not once per request."""

    def __init__(self) -> None:
        self._cached: tuple[int, str] = (-1, "")

    def __call__(self, timestamp: float) -> str:
        second = int(timestamp)
        cached_second, text = self._cached
        if second == cached_second:
            return text
        local = time.localtime(second)
        offset = local.tm_gmtoff or 0
        sign = "-" if offset < 0 else "+"
        offset = abs(offset) // 60
        text = (
            f"[{local.tm_mday:02d}/{MONTHS[local.tm_mon - 1]}/{local.tm_year}:"
            f"{local.tm_hour:02d}:{local.tm_min:02d}:{local.tm_sec:02d} "
            f"{sign}{offset // 60:02d}{offset % 60:02d}]"
        )
        self._cached = (second, text)
        return text


class _IsoTimeCache:
    """ISO 8601 local time with milliseconds; the date part is built once per second."""

    def __init__(self) -> None:
        self._cached: tuple[int, str, str] = (-1, "", "")

    def __call__(self, timestamp: float) -> str:
        second = int(timestamp)
        cached_second, head, zone = self._cached
        if second != cached_second:
            moment = datetime.datetime.fromtimestamp(second).astimezone()
            text = moment.isoformat(timespec="seconds")
            head, zone = text[:19], text[19:]
            self._cached = (second, head, zone)
        millis = min(int((timestamp - second) * 1000), 999)
        return f"{head}.{millis:03d}{zone}"


def _environ_getter(key: str) -> Getter:
    def get(environ, status, headers, nbytes, start, duration):
        value = environ.get(key)
        return "-" if value is None or value == "" else value

    return get


def _request_header_key(name: str) -> str:
    key = name.strip().upper().replace("-", "_")
    if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        return key
    return "HTTP_" + key


def _response_header_getter(name: str) -> Getter:
    wanted = name.strip().lower()

    def get(environ, status, headers, nbytes, start, duration):
        for header_name, value in headers:
            if header_name.lower() == wanted:
                return value
        return "-"

    return get


def remote_user(environ: Mapping[str, Any]) -> str | None:
    """The user name of HTTP Basic credentials, else REMOTE_USER, else None."""
    auth = environ.get("HTTP_AUTHORIZATION")
    if auth:
        scheme, _, credentials = auth.partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode("latin-1")
            except (binascii.Error, ValueError):
                decoded = ""
            user, sep, _ = decoded.partition(":")
            if sep and user:
                return user
    user = environ.get("REMOTE_USER")
    return user or None


def request_path(environ: Mapping[str, Any]) -> str:
    """The request target as received, falling back to SCRIPT_NAME + PATH_INFO + query."""
    raw = environ.get("RAW_URI")
    if raw:
        return raw
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    query = environ.get("QUERY_STRING")
    return f"{path}?{query}" if query else path


def _status_code(status: str) -> str:
    return status.split(" ", 1)[0] if status else "-"


def _atom_getters(time_cache: _TimeCache) -> dict[str, Getter]:
    def remote_addr(environ, status, headers, nbytes, start, duration):
        return environ.get("REMOTE_ADDR") or "-"

    def user(environ, status, headers, nbytes, start, duration):
        return remote_user(environ) or "-"

    def request_line(environ, status, headers, nbytes, start, duration):
        return (
            f"{environ.get('REQUEST_METHOD', '-')} {request_path(environ) or '-'} "
            f"{environ.get('SERVER_PROTOCOL', '-')}"
        )

    def query(environ, status, headers, nbytes, start, duration):
        value = environ.get("QUERY_STRING")
        return "-" if value is None else value

    def body_bytes(environ, status, headers, nbytes, start, duration):
        # gunicorn writes "-" only when nothing is known of the response; an
        # empty body is 0 there, and here.
        return str(nbytes) if nbytes is not None else "-"

    return {
        "h": remote_addr,
        "l": lambda *_: "-",
        "u": user,
        "t": lambda environ, status, headers, nbytes, start, duration: time_cache(start),
        "r": request_line,
        "m": _environ_getter("REQUEST_METHOD"),
        "U": _environ_getter("PATH_INFO"),
        "q": query,
        "H": _environ_getter("SERVER_PROTOCOL"),
        "s": lambda environ, status, headers, nbytes, start, duration: _status_code(status),
        "B": lambda environ, status, headers, nbytes, start, duration: str(nbytes),
        "b": body_bytes,
        "f": _environ_getter("HTTP_REFERER"),
        "a": _environ_getter("HTTP_USER_AGENT"),
        "T": lambda environ, status, headers, nbytes, start, duration: str(int(duration)),
        "D": lambda environ, status, headers, nbytes, start, duration: str(int(duration * 1_000_000)),
        "M": lambda environ, status, headers, nbytes, start, duration: str(int(duration * 1000)),
        "L": lambda environ, status, headers, nbytes, start, duration: f"{duration:.6f}",
        "p": lambda *_: str(os.getpid()),
    }


def _getter_for(atom: str, simple: dict[str, Getter]) -> Getter:
    if atom in simple:
        return simple[atom]
    if len(atom) > 3 and atom.startswith("{") and atom[-2] == "}":
        name, kind = atom[1:-2], atom[-1]
        if kind == "i":
            return _environ_getter(_request_header_key(name))
        if kind == "o":
            return _response_header_getter(name)
        if kind == "e":
            return _environ_getter(name)
    return lambda *_: "-"


class AccessLog:
    """One line per request in gunicorn's atom format, or JSON with
    ``--access-logformat json``. Writes to the "h2serve.access" logger, which
    ``setup_logging`` points at cfg.access_logfile."""

    def __init__(self, cfg: Any) -> None:
        # Off unless something receives the lines: a file, syslog, or a handler
        # a logging configuration put on the access logger.
        self._enabled = (cfg.access_logfile is not None
                         or (getattr(cfg, "syslog", False)
                             and not cfg.disable_redirect_access_to_syslog)
                         or bool(logging.getLogger(ACCESS_LOGGER).handlers))
        self._logger = logging.getLogger(ACCESS_LOGGER)
        self._format_text = cfg.access_logformat
        self._json = self._format_text == "json"
        self._time_cache = _TimeCache()
        self._iso_time = _IsoTimeCache()
        simple = _atom_getters(self._time_cache)
        atoms = [] if self._json else list(dict.fromkeys(_ATOM_RE.findall(self._format_text)))
        self._getters: tuple[tuple[str, Getter], ...] = tuple(
            (atom, _getter_for(atom, simple)) for atom in atoms
        )

    @property
    def enabled(self) -> bool:
        return self._enabled

    def format(
        self,
        environ: Mapping[str, Any],
        status: str,
        response_headers: list,
        response_bytes: int,
        request_start: float,
        request_time: float,
    ) -> str:
        """The access log line for one request (no I/O)."""
        if self._json:
            return self._format_json(
                environ, status, response_bytes, request_start, request_time
            )
        values = {
            atom: getter(environ, status, response_headers, response_bytes,
                         request_start, request_time)
            for atom, getter in self._getters
        }
        return self._format_text % values

    def _format_json(
        self,
        environ: Mapping[str, Any],
        status: str,
        response_bytes: int,
        request_start: float,
        request_time: float,
    ) -> str:
        code = _status_code(status)
        record = {
            "remote_addr": environ.get("REMOTE_ADDR"),
            "time": self._iso_time(request_start),
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""),
            "query": environ.get("QUERY_STRING", ""),
            "protocol": environ.get("SERVER_PROTOCOL"),
            "status": int(code) if code.isdigit() else code,
            "bytes": response_bytes,
            "referer": environ.get("HTTP_REFERER"),
            "user_agent": environ.get("HTTP_USER_AGENT"),
            "duration_ms": round(request_time * 1000, 3),
        }
        import json  # here: only this format needs it (sys.modules makes it cheap)

        return json.dumps(record, separators=(",", ":"))

    def log(
        self,
        environ: Mapping[str, Any],
        status: str,
        response_headers: list,
        response_bytes: int,
        request_start: float,
        request_time: float,
    ) -> None:
        """Write one request's line; never raises into the request path."""
        if not self._enabled:
            return
        try:
            line = self.format(environ, status, response_headers, response_bytes,
                               request_start, request_time)
        except Exception:
            logging.getLogger(ERROR_LOGGER).exception("failed to format the access log line")
            return
        if self._json:   # json.dumps already wrote C0 and C1 as \\u00XX; DEL is left
            line = line.replace("\x7f", "\\u007f")
        else:
            line = escape_controls(line)
        self._logger.info(line)
