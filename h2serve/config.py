"""Merging the sources of settings into one checked Config.

The table in h2serve.settings says what each setting is; this module reads
them from the command line, ``$GUNICORN_CMD_ARGS``, ``$H2SERVE_CMD_ARGS``, a
Python config file (given, or ./h2serve.conf.py then ./gunicorn.conf.py) and
``$PORT``, in gunicorn's order of priority, lowest first: defaults < config
file < GUNICORN_CMD_ARGS < H2SERVE_CMD_ARGS < command line.
"""

from __future__ import annotations

import argparse
import difflib
import os
import shlex
import types
from collections.abc import Mapping
from typing import Any

from h2serve import __version__
from h2serve.setting_values import ALPN_IDS, FALSE_WORDS, PROXY_PROTOCOL_MODES, TRUE_WORDS
from h2serve.settings import (
    APP_HELP,
    CONFIG_NAMES,
    DESCRIPTION,
    DISCOVERED_CONFIG_FILES,
    ENV_CMD_ARGS,
    GUNICORN_ENV_CMD_ARGS,
    GUNICORN_ONLY,
    SECTIONS,
    SETTINGS,
    SETTINGS_BY_NAME,
    ConfigError,
    Setting,
)

_GUNICORN_ONLY_FLAGS: dict[str, str] = {
    flag: name for name, (flags, _reason) in GUNICORN_ONLY.items() for flag in flags
}


# --------------------------------------------------------------------------
# The argparse parser, built from the table.


class _Parser(argparse.ArgumentParser):
    """Reports usage errors as ConfigError instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser. Options absent from argv stay absent from the result."""
    parser = _Parser(
        prog="h2serve",
        description=DESCRIPTION,
        argument_default=argparse.SUPPRESS,
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"h2serve {__version__}")
    groups = {section: parser.add_argument_group(section) for section in SECTIONS}
    for setting in SETTINGS:
        group = groups[setting.section]
        help_text = setting.help.replace("%", "%%").replace("`", "")
        if setting.kind == "positional":
            group.add_argument(setting.name, metavar=setting.meta, nargs="?", help=APP_HELP)
        elif not setting.flags:
            continue  # config file only (secure_scheme_headers)
        elif setting.kind == "list":
            group.add_argument(
                *setting.flags, dest=setting.name, metavar=setting.meta, action="append",
                help=help_text,
            )
        elif setting.kind == "bool":
            group.add_argument(
                *setting.flags, dest=setting.name, action=argparse.BooleanOptionalAction,
                help=help_text,
            )
        elif setting.kind == "optional":
            # `--flag` alone, `--flag MODE` and `--flag=MODE` (see _with_optional_values);
            # `--no-flag` turns it off.
            group.add_argument(*setting.flags, dest=setting.name, metavar=setting.meta,
                               help=help_text)
            group.add_argument(*("--no-" + flag[2:] for flag in setting.flags),
                               dest=setting.name, action="store_const", const="off",
                               help=argparse.SUPPRESS)
        elif setting.kind == "switch":
            group.add_argument(
                *setting.flags, dest=setting.name, action="store_true", help=help_text
            )
        else:
            group.add_argument(
                *setting.flags, dest=setting.name, metavar=setting.meta, help=help_text
            )
    return parser


def _parse_args(parser: argparse.ArgumentParser, args: list[str], source: str) -> dict[str, Any]:
    try:
        namespace = parser.parse_args(_with_optional_values(args))
    except ConfigError as exc:
        message = str(exc)
        if message.startswith("unrecognized arguments:"):
            # argparse lists whatever it could not place, the APP included
            # ("-e app:app"): name the option that is wrong instead.
            message = _unknown_option(args) or message
            raise ConfigError(f"{source}{message}") from None
        raise ConfigError(f"{source}{message}{_gunicorn_flag_hint(args)}") from None
    return vars(namespace)


_OPTIONAL_VALUE_FLAGS = {flag: "auto" for flag in ("--proxy-protocol",)}


def _with_optional_values(args: list[str]) -> list[str]:
    """`--proxy-protocol v2 app` takes v2 as the mode and `--proxy-protocol app`
    means auto: an optional value is the next word only when it is one of the
    modes, so the APP is never taken for it."""
    out: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg in _OPTIONAL_VALUE_FLAGS:
            following = args[index + 1] if index + 1 < len(args) else None
            if following is not None and _is_mode_word(following):
                out.append(f"{arg}={following}")
                index += 2
                continue
            out.append(f"{arg}={_OPTIONAL_VALUE_FLAGS[arg]}")
        else:
            out.append(arg)
        index += 1
    return out


def _is_mode_word(word: str) -> bool:
    lowered = word.lower()
    return lowered in PROXY_PROTOCOL_MODES or lowered in TRUE_WORDS or lowered in FALSE_WORDS


def _known_flags() -> set[str]:
    flags = {"-h", "--help", "--version"}
    for setting in SETTINGS:
        flags.update(setting.flags)
        if setting.kind in ("bool", "optional"):
            flags.update("--no-" + flag[2:] for flag in setting.flags if flag.startswith("--"))
    return flags


def _unknown_option(args: list[str]) -> str | None:
    """The first option in args that h2serve does not know, said with gunicorn's
    reason when it is gunicorn's, else with the closest known spelling."""
    known = _known_flags()
    for arg in args:
        if not arg.startswith("-") or arg == "-" or arg[1:2].isdigit():
            continue
        flag = arg.split("=", 1)[0]
        if flag in known:
            continue
        hint = _gunicorn_flag_hint([flag])
        if hint:
            return f"unknown option {flag}{hint}"
        close = difflib.get_close_matches(flag, sorted(known), n=1, cutoff=0.7)
        return f"unknown option {flag}" + (f"; did you mean {close[0]}?" if close
                                           else " (see h2serve --help)")
    return None


def _gunicorn_flag_hint(args: list[str]) -> str:
    """Why a gunicorn flag on this command line is refused, if there is one."""
    for arg in args:
        name = _GUNICORN_ONLY_FLAGS.get(arg.split("=", 1)[0])
        if name is not None:
            reason = GUNICORN_ONLY[name][1].replace("`", "")
            return f" (gunicorn's {arg.split('=', 1)[0]} has no equivalent: {reason})"
    return ""


# --------------------------------------------------------------------------
# Merging the sources.


def _parse_env_args(parser: argparse.ArgumentParser, environ: Mapping[str, str],
                    variable: str) -> dict[str, Any]:
    """The settings given as command-line arguments in one environment variable."""
    text = environ.get(variable, "")
    if not text.strip():
        return {}
    try:
        args = shlex.split(text)
    except ValueError as exc:
        raise ConfigError(f"{variable}: {exc}") from None
    return _parse_args(parser, args, f"{variable}: ")


# Defaults that differ from gunicorn's on purpose, and gunicorn's value.
GUNICORN_DEFAULTS_DIFFERING = {
    "threads": "1", "keepalive": "2", "http_protocols": "h1", "http2_cleartext": "off",
    "http2_initial_window_size": "65535",
}


def _defaults_that_differ(merger: _Merger, file_name: str) -> list[str]:
    """What a gunicorn config file left to defaults that are not gunicorn's, said once
    at start, so a migrated deployment is not surprised."""
    notes = []
    given = merger.explicit
    if not {"certfile", "plaintext"} & given:
        notes.append(f"{file_name} sets no certfile: h2serve serves TLS with a development "
                     "certificate where gunicorn serves plain HTTP (set plaintext = True "
                     "behind a proxy that terminates TLS)")
    differing = [f"{name} = {merger.values[name]!r} (gunicorn: {theirs})"
                 for name, theirs in GUNICORN_DEFAULTS_DIFFERING.items()
                 if name not in given and str(merger.values[name]) != theirs]
    if differing:
        notes.append(f"{file_name} leaves settings whose h2serve default differs from "
                     f"gunicorn's: {', '.join(differing)}")
    return notes


class _Merger:
    """Applies sources in priority order, checking each value as it arrives."""

    def __init__(self, environ: Mapping[str, str], cwd: str) -> None:
        self.environ = environ
        self.cwd = cwd
        self.values: dict[str, Any] = {}
        self.warnings: list[str] = []
        self.notes: list[str] = []      # what the sources did that a user may not expect
        self.explicit: set[str] = set()  # settings some source gave (not defaults)

    def resolve_path(self, setting: Setting, raw: Any) -> Any:
        if setting.is_path and isinstance(raw, str) and raw != "-" and raw:
            return os.path.normpath(os.path.join(self.cwd, os.path.expanduser(raw)))
        return raw

    def set(self, setting: Setting, raw: Any, where: str) -> None:
        self.explicit.add(setting.name)
        try:
            self.values[setting.name] = setting.parse(self.resolve_path(setting, raw))
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def apply_defaults(self) -> None:
        for setting in SETTINGS:
            if setting.default_env and self.environ.get(setting.default_env, "").strip():
                self.set(setting, self.environ[setting.default_env],
                         f"environment variable {setting.default_env}")
            elif setting.name == "chdir":
                self.values["chdir"] = self.cwd
            else:
                default = setting.default
                self.values[setting.name] = (
                    list(default) if isinstance(default, list) else setting.convert(default)
                )

    def apply_parsed(self, parsed: Mapping[str, Any], source: str) -> None:
        for name, raw in parsed.items():
            setting = SETTINGS_BY_NAME[name]
            self.set(setting, raw, f"{source}{setting.label}")

    def apply_config_file(self, path: str) -> None:
        where = f"config file {path}"
        try:
            with open(path, "rb") as handle:
                source = handle.read()
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read it: {exc.strerror}") from None
        namespace: dict[str, Any] = {"__file__": path, "__name__": "__config__"}
        try:
            exec(compile(source, path, "exec"), namespace)  # the config file is trusted code
        except SyntaxError as exc:
            raise ConfigError(f"{where}: line {exc.lineno}: syntax error: {exc.msg}") from None
        except Exception as exc:
            raise ConfigError(f"{where}: {type(exc).__name__}: {exc}") from None
        for name, raw in namespace.items():
            setting = CONFIG_NAMES.get(name)
            if setting is None:
                self._unknown_name(name, raw, where)
            elif setting.cli_only:
                self.warnings.append(f"{where}: {name} can only be given on the command line; ignored")
            else:
                self.set(setting, raw, f"{where}: {name}")

    def _unknown_name(self, name: str, raw: Any, where: str) -> None:
        if name in GUNICORN_ONLY:
            reason = GUNICORN_ONLY[name][1].replace("`", "")
            self.warnings.append(f"{where}: gunicorn's {name!r} has no effect here: {reason}")
            return
        if name.startswith("_") or isinstance(raw, (types.ModuleType, type)) or callable(raw):
            return  # helpers, imports and hooks are a config file's own business
        close = difflib.get_close_matches(name, SETTINGS_BY_NAME, n=1, cutoff=0.85)
        if close:
            raise ConfigError(f"{where}: unknown setting {name!r}; did you mean {close[0]!r}?")
        self.warnings.append(f"{where}: ignoring unknown setting {name!r}")

    def cross_check(self) -> None:
        values = self.values
        if values["keyfile"] and not values["certfile"]:
            raise ConfigError("--keyfile is set but --certfile is not; give both or neither")
        if values["certfile"] and not values["keyfile"]:
            raise ConfigError("--certfile is set but --keyfile is not; give both or neither")
        if values["plaintext"] and values["certfile"]:
            raise ConfigError("--plaintext cannot be combined with --certfile/--keyfile")
        if values["cert_reqs"] and not values["ca_certs"]:
            raise ConfigError("--cert-reqs asks for client certificates but --ca-certs is not set")


# --------------------------------------------------------------------------
# Config.


class Config:
    """All settings as attributes (cfg.workers, cfg.bind, ...), merged and checked.

    ``Config(**overrides)`` gives defaults plus checked overrides (for tests and
    embedding); ``Config.from_sources(argv, environ)`` is what the CLI uses.
    """

    def __init__(self, **overrides: Any) -> None:
        merger = _Merger({}, os.getcwd())
        merger.apply_defaults()
        for name, raw in overrides.items():
            setting = SETTINGS_BY_NAME.get(name)
            if setting is None:
                raise ConfigError(f"unknown setting {name!r}")
            merger.set(setting, raw, name)
        merger.cross_check()
        self._adopt(merger, [], {}, merger.cwd)

    def _adopt(self, merger: _Merger, argv: list[str], environ: Mapping[str, str], cwd: str) -> None:
        for name, value in merger.values.items():
            setattr(self, name, value)
        self.warnings: list[str] = list(merger.warnings)
        self.notes: list[str] = list(merger.notes)
        self._argv = list(argv)
        self._environ = dict(environ)
        self._cwd = cwd

    @classmethod
    def from_sources(
        cls, argv: list[str], environ: Mapping[str, str], *, cwd: str | None = None
    ) -> Config:
        """Merge defaults < config file < $GUNICORN_CMD_ARGS < $H2SERVE_CMD_ARGS < argv.

        With no config file named, ./h2serve.conf.py then ./gunicorn.conf.py is
        read (said in ``notes``); with no bind from any source, $PORT gives
        0.0.0.0:$PORT. Relative paths are resolved against ``cwd`` (the current
        directory by default). Raises ConfigError with a one-line message.
        """
        cwd = cwd or os.getcwd()
        parser = build_parser()
        from_cli = _parse_args(parser, list(argv), "")
        from_gunicorn_env = _parse_env_args(parser, environ, GUNICORN_ENV_CMD_ARGS)
        from_env = _parse_env_args(parser, environ, ENV_CMD_ARGS)

        merger = _Merger(environ, cwd)
        merger.apply_defaults()
        config_setting = SETTINGS_BY_NAME["config"]
        for source, where in ((from_cli, ""), (from_env, f"{ENV_CMD_ARGS}: "),
                              (from_gunicorn_env, f"{GUNICORN_ENV_CMD_ARGS}: ")):
            if "config" in source:
                merger.set(config_setting, source["config"], f"{where}{config_setting.label}")
                break
        else:
            for name in DISCOVERED_CONFIG_FILES:
                if os.path.isfile(os.path.join(cwd, name)):
                    merger.set(config_setting, name, f"./{name}")
                    merger.notes.append(f"reading ./{name} (found in {cwd}; no --config given)")
                    break
        if merger.values["config"]:
            merger.apply_config_file(merger.values["config"])
        merger.apply_parsed(from_gunicorn_env, f"{GUNICORN_ENV_CMD_ARGS}: ")
        merger.apply_parsed(from_env, f"{ENV_CMD_ARGS}: ")
        merger.apply_parsed(from_cli, "")
        config_path = merger.values["config"]
        if config_path and os.path.basename(config_path).startswith("gunicorn"):
            merger.notes += _defaults_that_differ(merger, os.path.basename(config_path))
        port = environ.get("PORT", "").strip()
        if port and "bind" not in merger.explicit:
            merger.set(SETTINGS_BY_NAME["bind"], [f"0.0.0.0:{port}"], "environment variable PORT")
            merger.notes.append(f"binding 0.0.0.0:{port} from $PORT (no bind given)")
        merger.cross_check()

        cfg = cls.__new__(cls)
        cfg._adopt(merger, list(argv), environ, cwd)
        return cfg

    def reloaded(
        self, argv: list[str] | None = None, environ: Mapping[str, str] | None = None
    ) -> Config:
        """Read every source again (config file re-executed), as on SIGHUP.

        (Not called ``reload``: that name is the --reload setting.)

        Uses the original argv, environment and start directory unless given.
        Returns a new Config; raises ConfigError and leaves this one untouched.
        """
        return Config.from_sources(
            self._argv if argv is None else argv,
            self._environ if environ is None else environ,
            cwd=self._cwd,
        )

    def copy(self) -> Config:
        """An independent copy (lists are copied too)."""
        twin = Config.__new__(Config)
        for key, value in self.__dict__.items():
            setattr(twin, key, list(value) if isinstance(value, list) else value)
        twin._environ = dict(self._environ)
        return twin

    def replace(self, **changes: Any) -> Config:
        """A copy with some settings changed, each checked like any other source."""
        merger = _Merger(self._environ, self._cwd)
        merger.values = self.as_dict()
        for name, raw in changes.items():
            setting = SETTINGS_BY_NAME.get(name)
            if setting is None:
                raise ConfigError(f"unknown setting {name!r}")
            merger.set(setting, raw, name)
        merger.cross_check()
        twin = Config.__new__(Config)
        twin._adopt(merger, self._argv, self._environ, self._cwd)
        return twin

    def as_dict(self) -> dict[str, Any]:
        """Every setting's value by name (lists copied)."""
        return {
            setting.name: (
                list(value) if isinstance(value := getattr(self, setting.name), list) else value
            )
            for setting in SETTINGS
        }

    # Derived views --------------------------------------------------------

    @property
    def app_uri(self) -> str | None:
        """The APP argument (or `wsgi_app` from the config file)."""
        return self.wsgi_app

    @property
    def protocols(self) -> list[str]:
        """Enabled protocols in preference order: "h2" and/or "h1"."""
        return self.http_protocols.split(",")

    @property
    def alpn_protocols(self) -> list[str]:
        """ALPN ids in preference order, e.g. ["h2", "http/1.1"]."""
        return [ALPN_IDS[name] for name in self.protocols]

    @property
    def h2_enabled(self) -> bool:
        return "h2" in self.protocols

    @property
    def h1_enabled(self) -> bool:
        return "h1" in self.protocols

    @property
    def is_ssl(self) -> bool:
        """True when a certificate is configured."""
        return self.certfile is not None

    def __repr__(self) -> str:
        return f"<Config app={self.app_uri!r} bind={self.bind!r} workers={self.workers}>"


def format_config(cfg: Config) -> str:
    """`name = value` for every setting, sorted by name; valid Python for a config file."""
    return "".join(
        f"{name} = {value!r}\n" for name, value in sorted(cfg.as_dict().items())
    )
