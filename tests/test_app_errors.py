"""An app that sets an invalid response header or reason phrase gets a 500 on
both protocols, as long as nothing was sent yet (not a cut connection or a
reset stream), and the mistake is logged once."""

from __future__ import annotations

import ssl
import time

import httpx
import pytest


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("http2", [True, False], ids=["h2", "http1.1"])
def test_invalid_response_fields_from_the_app_give_500(h2serve_server, http2, workers) -> None:
    server = h2serve_server("tests.apps:router", workers=workers)
    context = ssl.create_default_context(cafile=server.cafile)
    with httpx.Client(http2=http2, http1=not http2, verify=context, timeout=20) as client:
        for kind in ("name", "reason", "value"):
            response = client.get(f"{server.url}/bad_header?kind={kind}")
            assert response.status_code == 500, kind
            assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
            assert b"must not be sent" not in response.content
            assert "x-injected" not in response.headers
            head = client.head(f"{server.url}/bad_header?kind={kind}")
            assert head.status_code == 500 and head.content == b""
        # The connection is still good for the next request.
        assert client.get(f"{server.url}/hello").status_code == 200
    log = server.log
    assert log.count("Error handling request GET /bad_header?kind=name") == 1
    assert "invalid header name 'X Bad'" in log
    assert "invalid character in the reason phrase" in log


@pytest.mark.parametrize("http2", [True, False], ids=["h2", "http1.1"])
def test_the_500_page_is_counted_in_the_access_log(h2serve_server, tmp_path, http2) -> None:
    """The access log shows the 22 body bytes of h2serve's own 500 page (it
    used to log 0), as gunicorn's does."""
    access = tmp_path / "access.log"
    server = h2serve_server("tests.apps:router", "--access-logfile", str(access),
                            "--access-logformat", '"%(r)s" %(s)s %(b)s', workers=1)
    context = ssl.create_default_context(cafile=server.cafile)
    with httpx.Client(http2=http2, http1=not http2, verify=context, timeout=20) as client:
        assert client.get(f"{server.url}/bad_header?kind=name").status_code == 500
        assert client.head(f"{server.url}/bad_header?kind=name").status_code == 500
    version = "HTTP/2.0" if http2 else "HTTP/1.1"
    deadline = time.monotonic() + 10
    while access.read_text().count("\n") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert access.read_text().splitlines() == [f'"GET /bad_header?kind=name {version}" 500 22',
                                               f'"HEAD /bad_header?kind=name {version}" 500 0']
