"""prometheus_client in multiprocess mode, as a Django or Flask app behind
gunicorn uses it: every worker writes its samples to PROMETHEUS_MULTIPROC_DIR,
a /metrics view aggregates them, and the config file's child_exit hook calls
mark_process_dead so a dead worker's live gauges stop counting. Real library,
real parser, two workers."""

from __future__ import annotations

import os
import signal
import ssl
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from prometheus_client.parser import text_string_to_metric_families

APP = '''
import os
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest, multiprocess

REQUESTS = Counter("app_requests", "Requests the app answered", ["path"])
WORKERS_UP = Gauge("app_workers_up", "Workers with the app loaded", multiprocess_mode="livesum")
WORKERS_UP.set(1)


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/metrics":
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        REQUESTS.labels(path=path).inc()
        body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
'''

CONF = '''
from prometheus_client import multiprocess

def child_exit(server, worker):
    multiprocess.mark_process_dead(worker.pid)
'''


def _scrape(url: str, cafile: str) -> dict[tuple[str, tuple], float]:
    """One scrape, on a fresh connection (it may reach either worker)."""
    text = _fresh_get(f"{url}/metrics", cafile)
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def _fresh_get(url: str, cafile: str) -> str:
    with httpx.Client(http2=True, verify=ssl.create_default_context(cafile=cafile)) as client:
        return client.get(url).text


def test_requests_counted_across_two_workers_and_child_exit_cleans_up(h2serve_server, tmp_path):
    (tmp_path / "prom_app.py").write_text(APP)
    (tmp_path / "prom.conf.py").write_text(CONF)
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    server = h2serve_server("prom_app:app", "-c", str(tmp_path / "prom.conf.py"),
                            "--chdir", str(tmp_path), workers=2, threads=4,
                            env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    url = server.url
    with ThreadPoolExecutor(8) as pool:
        pids = set(pool.map(lambda _: _fresh_get(f"{url}/work", server.cafile), range(40)))
    assert len(pids) == 2, f"one worker served every request: {pids}"
    samples = _scrape(url, server.cafile)
    assert samples[("app_requests_total", (("path", "/work"),))] == 40
    assert samples[("app_workers_up", ())] == 2   # the app was imported by the two workers only

    victim = int(next(iter(pids)))
    os.kill(victim, signal.SIGTERM)
    server.wait_for_log(r"Booting worker with pid", count=3)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        samples = _scrape(url, server.cafile)
        if samples[("app_workers_up", ())] == 2 and not any(
                str(victim) in name for name in os.listdir(metrics_dir) if "live" in name):
            break
        time.sleep(0.2)
    # The dead worker's live gauge is gone (child_exit), its counts are kept.
    assert samples[("app_workers_up", ())] == 2, samples
    assert samples[("app_requests_total", (("path", "/work"),))] == 40
    assert "Exception in child_exit hook" not in server.log
