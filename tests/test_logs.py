"""Access log atoms, JSON lines, and the error log's files."""

from __future__ import annotations

import base64
import json
import logging
import os
import time

import pytest

from h2serve.config import Config
from h2serve.logs import ACCESS_LOGGER, ERROR_LOGGER, AccessLog, reopen_logs, setup_logging
from h2serve.settings import ConfigError

# 2024-03-05 14:03:09.250 UTC
START = 1709647389.25


@pytest.fixture
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def clean_loggers():
    yield
    for name in (ERROR_LOGGER, ACCESS_LOGGER):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()


def environ(**extra):
    base = {
        "REMOTE_ADDR": "192.0.2.10",
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/items/7",
        "QUERY_STRING": "sort=asc",
        "SERVER_PROTOCOL": "HTTP/2.0",
        "HTTP_REFERER": "https://example.test/",
        "HTTP_USER_AGENT": "curl/8.5",
        "HTTP_X_REQUEST_ID": "abc-123",
        "CONTENT_TYPE": "application/json",
    }
    base.update(extra)
    return base


HEADERS = [("Content-Type", "text/plain"), ("X-Cache", "HIT")]


def line(fmt, env=None, status="200 OK", headers=HEADERS, nbytes=512, start=START, duration=1.2345678):
    access = AccessLog(Config(access_logformat=fmt, access_logfile="-"))
    return access.format(environ() if env is None else env, status, headers, nbytes, start, duration)


@pytest.mark.parametrize(
    ("atom", "expected"),
    [
        ("h", "192.0.2.10"),
        ("l", "-"),
        ("u", "-"),
        ("t", "[05/Mar/2024:14:03:09 +0000]"),
        ("r", "GET /items/7?sort=asc HTTP/2.0"),
        ("m", "GET"),
        ("U", "/items/7"),
        ("q", "sort=asc"),
        ("H", "HTTP/2.0"),
        ("s", "200"),
        ("B", "512"),
        ("b", "512"),
        ("f", "https://example.test/"),
        ("a", "curl/8.5"),
        ("T", "1"),
        ("D", "1234567"),
        ("M", "1234"),
        ("L", "1.234568"),
        ("p", str(os.getpid())),
        ("{x-request-id}i", "abc-123"),
        ("{Content-Type}i", "application/json"),
        ("{x-cache}o", "HIT"),
        ("{CONTENT-TYPE}o", "text/plain"),
        ("{REMOTE_ADDR}e", "192.0.2.10"),
        ("Z", "-"),
        ("{nothing}x", "-"),
    ],
)
def test_each_atom(utc, atom, expected):
    assert line(f"<%({atom})s>") == f"<{expected}>"


@pytest.mark.parametrize(
    "atom", ["h", "f", "a", "m", "U", "H", "q", "{x-missing}i", "{x-missing}o", "{MISSING}e"]
)
def test_missing_values_become_dash(atom):
    assert line(f"%({atom})s", env={}, headers=[]) == "-"


def test_zero_bytes_and_raw_uri():
    assert line("%(b)s %(B)s", nbytes=0) == "0 0"   # gunicorn: "-" only when nothing is known
    env = environ(RAW_URI="/items/7?sort=asc&x=%20", SERVER_PROTOCOL="HTTP/1.1", REQUEST_METHOD="POST")
    assert line("%(r)s", env=env) == "POST /items/7?sort=asc&x=%20 HTTP/1.1"
    env = environ(QUERY_STRING="")
    assert line("%(r)s|%(q)s", env=env) == "GET /items/7 HTTP/2.0|"


def test_remote_user_from_basic_auth():
    token = base64.b64encode(b"alice:s3cret").decode()
    assert line("%(u)s", env=environ(HTTP_AUTHORIZATION=f"Basic {token}")) == "alice"
    assert line("%(u)s", env=environ(HTTP_AUTHORIZATION="Basic !!notbase64")) == "-"
    assert line("%(u)s", env=environ(HTTP_AUTHORIZATION="Bearer xyz")) == "-"
    assert line("%(u)s", env=environ(REMOTE_USER="bob")) == "bob"


def test_gunicorn_default_format(utc):
    expected = (
        '192.0.2.10 - - [05/Mar/2024:14:03:09 +0000] "GET /items/7?sort=asc HTTP/2.0" 200 512 '
        '"https://example.test/" "curl/8.5"'
    )
    access = AccessLog(Config(access_logfile="-"))
    assert access.format(environ(), "200 OK", HEADERS, 512, START, 0.01) == expected


def test_time_atom_uses_the_local_offset(monkeypatch):
    monkeypatch.setenv("TZ", "EST+5")
    time.tzset()
    try:
        assert line("%(t)s") == "[05/Mar/2024:09:03:09 -0500]"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_json_format(utc):
    text = line("json", duration=0.0125)
    record = json.loads(text)
    assert record == {
        "remote_addr": "192.0.2.10",
        "time": "2024-03-05T14:03:09.250+00:00",
        "method": "GET",
        "path": "/items/7",
        "query": "sort=asc",
        "protocol": "HTTP/2.0",
        "status": 200,
        "bytes": 512,
        "referer": "https://example.test/",
        "user_agent": "curl/8.5",
        "duration_ms": 12.5,
    }
    assert "\n" not in text
    sparse = json.loads(line("json", env={}, headers=[]))
    assert sparse["referer"] is None and sparse["user_agent"] is None and sparse["query"] == ""


def test_bad_format_is_a_config_error():
    with pytest.raises(ConfigError, match="invalid format"):
        Config(access_logformat="%(h)d")


def test_access_log_writes_lines_to_file(tmp_path, clean_loggers):
    target = tmp_path / "access.log"
    cfg = Config(access_logfile=str(target), access_logformat="%(m)s %(U)s %(s)s")
    setup_logging(cfg)
    access = AccessLog(cfg)
    assert access.enabled
    access.log(environ(), "404 Not Found", [], 0, START, 0.001)
    access.log(environ(REQUEST_METHOD="PUT"), "201 Created", [], 3, START, 0.001)
    for handler in logging.getLogger(ACCESS_LOGGER).handlers:
        handler.flush()
    assert target.read_text() == "GET /items/7 404\nPUT /items/7 201\n"


def test_disabled_access_log_writes_nothing(capsys, clean_loggers):
    cfg = Config()
    setup_logging(cfg)
    access = AccessLog(cfg)
    assert not access.enabled
    access.log(environ(), "200 OK", [], 1, START, 0.001)
    assert capsys.readouterr().out == ""


def test_error_log_format_level_and_reopen(tmp_path, clean_loggers):
    target = tmp_path / "error.log"
    setup_logging(Config(error_logfile=str(target), log_level="warning"))
    logger = logging.getLogger(ERROR_LOGGER)
    logger.info("not shown")
    logger.warning("disk almost full")
    text = target.read_text()
    assert "not shown" not in text
    assert f"] [{os.getpid()}] [WARNING] disk almost full\n" in text
    assert text.startswith("[")

    rotated = tmp_path / "error.log.1"
    target.rename(rotated)
    reopen_logs()
    logger.error("after rotation")
    assert "after rotation" in target.read_text()
    assert "after rotation" not in rotated.read_text()
