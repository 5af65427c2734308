"""h2serve against the whole h2spec catalogue (our runner, `h2spec/`).

Every case, strict ones included, must pass over TLS (ALPN h2) and over
h2c, with two app threads: with the error code the case asks for (not only
thanks to the connection closing), and without a traceback in the server
log. Cases run 8 at a time on their own connections; a conforming server
answers each at once, so a run takes well under a second.
"""

from __future__ import annotations

import pytest

from h2spec.catalogue import all_cases
from h2spec.client import Target
from h2spec.report import failure_details, summary_line
from h2spec.runner import PASSED, run_cases

CASE_TIMEOUT = 2.0


@pytest.mark.parametrize("plaintext", [False, True], ids=["tls", "h2c"])
def test_every_h2spec_case_passes(h2serve_server, plaintext: bool) -> None:
    server = h2serve_server("tests.apps:hello", plaintext=plaintext, threads=2)
    target = Target(server.host, server.port, tls=not plaintext, timeout=CASE_TIMEOUT)

    results = list(run_cases(all_cases(strict=True), target, jobs=8))

    problems = []
    for result in results:
        if result.status != PASSED:
            problems.append(f"[{result.status}] {result.case.id}: {result.case.description}")
            problems.extend(failure_details(result) or [f"    {result.message}"])
    assert len(results) == 147
    assert not problems, summary_line(results) + "\n" + "\n".join(problems)
    notes = [f"{r.case.id}: {note}" for r in results for note in r.notes]
    assert not notes, "passed only because the connection closed:\n" + "\n".join(notes)
    # No worker crash along the way (a BufferError in the TLS write path once killed one).
    server.stop()
    assert "Traceback" not in server.log, server.log
