"""The application is imported once per worker and by nothing else (once in
the master with --preload), so a slow import delays the first response once,
as in gunicorn."""

from __future__ import annotations

import ssl
import time

import httpx
import pytest

SLOW_APP = '''
import os, time
with open(os.environ["IMPORT_LOG"], "a") as log:
    log.write(f"{os.getpid()}\\n")
time.sleep(1.5)   # a large Django project, warming caches at import

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
'''
IMPORT_S = 1.5


@pytest.mark.parametrize("preload", [False, True])
def test_a_slow_import_is_paid_once(h2serve_server, tmp_path, preload):
    (tmp_path / "slow_import_app.py").write_text(SLOW_APP)
    imports = tmp_path / "imports.txt"
    started = time.monotonic()
    server = h2serve_server("slow_import_app:app", "--chdir", str(tmp_path),
                            *(["--preload"] if preload else []), workers=2,
                            wait_workers=False, env={"IMPORT_LOG": str(imports)})
    context = ssl.create_default_context(cafile=server.cafile)
    while True:
        try:
            with httpx.Client(http2=True, verify=context, timeout=10) as client:
                answered = client.get(f"{server.url}/")
            break
        except httpx.TransportError:
            assert time.monotonic() - started < 15, "no answer"
            time.sleep(0.05)
    first_answer = time.monotonic() - started
    print(f"preload={preload}: first response {first_answer:.2f} s after start "
          f"(import {IMPORT_S} s)")
    assert answered.status_code == 200
    server.wait_for_log(r"Booting worker with pid", count=2)
    importers = imports.read_text().split()
    if preload:
        assert importers == [str(server.proc.pid)]
    else:
        assert sorted(importers) == sorted(str(pid) for pid in server.worker_pids())
    # One import's time plus start-up, not two imports' (a check child, then the workers).
    assert first_answer < 2 * IMPORT_S, f"first answer after {first_answer:.2f} s"
