"""The ``h2serve`` command.

``h2serve [OPTIONS] APP`` serves an application; ``h2serve certs`` writes a
development certificate authority and server certificate. Every user mistake
ends as one ``h2serve: error: ...`` line and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from h2serve.config import Config, format_config
from h2serve.settings import ConfigError

EXIT_USAGE = 2


def _error(message: str) -> int:
    print(f"h2serve: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _certs_command(args: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="h2serve certs",
        description="Write a local certificate authority and a localhost server certificate "
        "signed by it, for development only.",
    )
    parser.add_argument(
        "--dir", default=None,
        help="directory for the files (default: $H2SERVE_CERT_DIR, else "
        "$XDG_DATA_HOME/h2serve/certs or ~/.local/share/h2serve/certs)",
    )
    parser.add_argument("--force", action="store_true",
                        help="make a new CA and server certificate even if valid ones exist")
    options = parser.parse_args(args)
    try:
        from h2serve.transport.devcert import default_cert_dir, write_certificates

        directory = Path(options.dir) if options.dir else default_cert_dir()
        written = write_certificates(directory, force=options.force)
    except (OSError, ValueError, ImportError) as exc:
        return _error(f"cannot write certificates: {exc}")
    print(f"Development certificates are in {directory.resolve()}:")
    print(f"  CA certificate:     {written.ca_cert}")
    print(f"  server certificate: {written.cert}")
    print(f"  server key:         {written.key}")
    print("Serve with:")
    print(f"  h2serve --certfile {written.cert} --keyfile {written.key} module:app")
    print("Try it:")
    print(f"  curl --http2 --cacert {written.ca_cert} https://localhost:8443/")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the process exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] == "certs":
            return _certs_command(args[1:])
        return _serve(args)
    except SystemExit as exc:  # --help, --version, and argparse in `certs`
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else EXIT_USAGE)
    except KeyboardInterrupt:
        return 130


def _serve(args: list[str]) -> int:
    try:
        cfg = Config.from_sources(args, os.environ)
    except ConfigError as exc:
        return _error(str(exc))
    if cfg.print_config or cfg.check_config:
        # Nothing will be served: say it here. A server logs them to its error
        # log instead, once logging is set up (Arbiter.run).
        for note in cfg.notes:
            print(f"h2serve: {note}", file=sys.stderr)
        for warning in cfg.warnings:
            print(f"h2serve: warning: {warning}", file=sys.stderr)

    if cfg.print_config:
        sys.stdout.write(format_config(cfg))
        return 0

    if not cfg.app_uri:
        return _error("no application given; pass APP as module:callable (see h2serve --help)")

    from h2serve.process import (
        ProcessSetupError,
        daemonize,
        deployment_problem,
        prepare_process,
        switch_user,
    )

    try:
        prepare_process(cfg)   # umask, raw_env, pythonpath: before the app is imported
    except ProcessSetupError as exc:
        return _error(str(exc))

    from h2serve.app import check_app_in_child

    # --check-config imports the app in a child as the workers would: as --user,
    # if given. A plain start imports it once per worker (or once in the master
    # with preload_app), and stops with the import error if no worker can.
    if cfg.check_config:
        problem = check_app_in_child(cfg.app_uri, cfg.chdir, before_import=lambda: switch_user(cfg))
        if problem:
            return _error(problem)
    if cfg.check_config:
        problem = deployment_problem(cfg)
        if problem:
            return _error(problem)
        print(f"h2serve: configuration is valid and {cfg.app_uri} loads", file=sys.stderr)
        return 0
    if cfg.daemon and "H2SERVE_UPGRADE_FROM" not in os.environ:   # a USR2 child is detached already
        daemonize(cfg.enable_stdio_inheritance)

    try:
        from h2serve.arbiter import Arbiter
    except ModuleNotFoundError as exc:
        if exc.name != "h2serve.arbiter":
            raise
        return _error("the arbiter is not available in this build")
    return Arbiter(cfg).run()
