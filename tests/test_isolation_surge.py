"""A surge of 1,000 connections on a listener shared by two workers: every
connection is accepted, handshaken and served, connect times under 2 s (before,
each worker took one connection per poller turn and some clients were never
served while the load lasted; later, workers yielding to each other left some
connections in the accept queue for seconds)."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import require_tool


def _connect_ms(text: str) -> tuple[float, float, float]:
    """h2load's connect-time line (min, max, mean, sd) -> (max, mean, sd) in ms."""
    match = re.search(r"time for connect:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", text)
    assert match, text

    def ms(value: str) -> float:
        number = float(re.match(r"[\d.]+", value).group())
        if value.endswith("us"):
            return number / 1000
        return number if value.endswith("ms") else number * 1000

    return ms(match.group(2)), ms(match.group(3)), ms(match.group(4))


@pytest.mark.slow
@pytest.mark.parametrize("workers", [2, 1])
def test_thousand_connection_surge_is_served(h2serve_server, workers) -> None:
    h2load = require_tool("h2load")
    server = h2serve_server("tests.apps:hello", workers=workers, threads=4)
    # Timed, as ../shared/bench's h2-1k row. A client whose connection is
    # accepted after the run's end never stops (h2load keeps sending on it), so a
    # late accept shows as a run that does not end: twice, as before the accept
    # queue was read (workers yielding to each other for a whole poller turn
    # each) about one run in five outlived 30 s.
    for _ in range(2):
        timed = subprocess.run([h2load, "-c", "1000", "-m", "10", "-D", "3",
                                "--warm-up-time", "1", server.url],
                               capture_output=True, text=True, timeout=30)
        assert timed.returncode == 0 and " 0 failed" in timed.stdout, timed.stdout + timed.stderr
    # Counted, for the connect times (a timed run does not report them).
    result = subprocess.run([h2load, "-c", "1000", "-m", "10", "-n", "20000", server.url],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"requests: 20000 total, 20000 started, 20000 done, 20000 succeeded",
                     result.stdout), result.stdout
    slowest, mean, sd = _connect_ms(result.stdout)
    p99 = mean + 2.33 * sd    # h2load gives no percentiles for connect times
    print(f"surge workers={workers}: connect max {slowest:.0f} ms, mean {mean:.0f} ms, "
          f"p99 about {p99:.0f} ms")
    assert p99 < 2000 and slowest < 4000, result.stdout
