"""Command line: `python -m h2spec --host H --port P [--tls] [--strict]`.

Flags mirror h2spec's where they exist (-h host, -p port, -t TLS, -k,
-o timeout, -P path, -j JUnit file, -S strict, -v verbose; spec ids as
arguments), so the two tools can be swapped in scripts.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from h2spec.catalogue import all_cases, select
from h2spec.client import Target
from h2spec.report import TextReporter, group_title, write_junit
from h2spec.runner import FAILED, run_cases


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m h2spec",
        description="HTTP/2 conformance tests for servers (the h2spec v2.6 catalogue).",
        add_help=False,
    )
    parser.add_argument("--help", action="help", help="show this help and exit")
    parser.add_argument("-h", "--host", default="127.0.0.1", help="server host (default 127.0.0.1)")
    parser.add_argument("-p", "--port", type=int, default=None, help="server port (default 443 with TLS, else 80)")
    parser.add_argument("-t", "--tls", action="store_true", help="connect with TLS (ALPN h2); default is h2c")
    parser.add_argument("-k", "--insecure", action="store_true", help="accepted for h2spec compatibility; certificates are never verified")
    parser.add_argument("-S", "--strict", action="store_true", help="also run the cases for SHOULD requirements")
    parser.add_argument("-o", "--timeout", type=float, default=2.0, help="seconds each wait for the server may take (default 2)")
    parser.add_argument("-P", "--path", default="/", help="request path (default /)")
    parser.add_argument("-j", "--junit", metavar="FILE", help="write a JUnit XML report to FILE")
    parser.add_argument("-s", "--section", action="append", default=[], metavar="ID", help="run only cases whose id starts with ID (e.g. http2/6.5); repeatable")
    parser.add_argument("--jobs", type=int, default=8, help="cases run at the same time (default 8)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each case's requirement and frame log")
    parser.add_argument("--dryrun", action="store_true", help="list the selected cases without running them")
    parser.add_argument("--version", action="version", version="h2spec-py 1.0 (the h2spec v2.6 catalogue, reimplemented)")
    parser.add_argument("sections", nargs="*", metavar="ID", help="same as --section")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    port = args.port if args.port is not None else (443 if args.tls else 80)
    cases = select(all_cases(strict=args.strict), [*args.section, *args.sections])
    if not cases:
        print("no test case matches the given section ids", file=sys.stderr)
        return 2

    if args.dryrun:
        current = None
        for case in cases:
            if case.group_id != current:
                print(f"{case.group_id}. {group_title(case.group_id)}")
                current = case.group_id
            print(f"  {case.id}: {case.description}{' (strict)' if case.strict else ''}")
        print(f"{len(cases)} tests")
        return 0

    target = Target(args.host, port, tls=args.tls, timeout=args.timeout, path=args.path)
    reporter = TextReporter(sys.stdout, verbose=args.verbose)
    started = time.monotonic()
    results = []
    for result in run_cases(cases, target, jobs=args.jobs):
        results.append(result)
        reporter.add(result)
    elapsed = time.monotonic() - started
    reporter.finish(results, elapsed)
    if args.junit:
        write_junit(results, args.junit, elapsed)
    return 1 if any(r.status == FAILED for r in results) else 0
