"""A storm of HUPs coalesces: at most the old and the new generation of
workers live at once, and the last HUP's settings still take effect."""

from __future__ import annotations

import signal
import ssl
import time
from pathlib import Path

import httpx
import pytest


def _children(pid: int) -> set[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return set()
    return {int(part) for part in text.split()}


@pytest.mark.parametrize("workers", [1, 2])
def test_ten_hups_in_five_seconds_leave_at_most_two_generations(h2serve_server, workers) -> None:
    server = h2serve_server("tests.apps:router", workers=workers, threads=2)
    master = server.proc.pid
    context = ssl.create_default_context(cafile=server.cafile)
    most_alive = 0
    failures = 0
    with httpx.Client(http2=True, verify=context, timeout=10) as client:
        deadline = time.monotonic() + 5.0
        for _ in range(10):
            last_hup_lines = len(server.lines)
            server.send_signal(signal.SIGHUP)
            step_end = time.monotonic() + 0.5
            while time.monotonic() < min(step_end, deadline + 0.5):
                most_alive = max(most_alive, len(_children(master)))
                # A fresh connection each time, as a new visitor's. HTTP/1.1: httpx
                # fails an HTTP/2 request whose connection gets the first (not yet
                # final) GOAWAY of a retiring worker, though the server answers it.
                try:
                    with httpx.Client(verify=context, timeout=10) as visitor:
                        if visitor.get(f"{server.url}/hello").status_code != 200:
                            failures += 1
                except httpx.HTTPError:
                    failures += 1
                time.sleep(0.05)
        # The storm ends: the workers settle to the wanted count, a generation
        # newer than the last HUP among them.
        settle = time.monotonic() + 60
        while time.monotonic() < settle:
            most_alive = max(most_alive, len(_children(master)))
            booted_after = [line for line in server.lines[last_hup_lines:]
                            if "Booting worker with pid" in line]
            if len(_children(master)) == workers and len(booted_after) >= workers:
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"workers did not settle after the storm:\n{server.log}")
        assert client.get(f"{server.url}/hello").status_code == 200
    assert most_alive <= 2 * workers, f"{most_alive} workers alive at once:\n{server.log}"
    assert failures == 0
    assert "A reload is under way" in server.log
