"""A from-the-RFCs HTTP/2 server conformance runner (the h2spec v2.6
catalogue: generic, http2 and hpack cases, plus the strict ones).

Run it as `python -m h2spec --host H --port P [--tls] [--strict]`.
"""

__all__ = ["main"]


def main(argv=None) -> int:
    """Entry point, importable without running anything."""
    from h2spec.cli import main as cli_main

    return cli_main(argv)
