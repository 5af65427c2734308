"""`python -m h2spec`: run the conformance suite against a server."""

import sys

from h2spec.cli import main

if __name__ == "__main__":
    sys.exit(main())
