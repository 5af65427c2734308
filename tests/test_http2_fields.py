"""Header field checks of h2serve.protocol.http2_fields, without a connection."""

import h2.exceptions
import pytest
from hpack import NeverIndexedHeaderTuple

from h2serve.protocol import http2_fields
from h2serve.protocol.http2_fields import parse_request_fields, response_fields

REQUEST = [(b":method", b"POST"), (b":scheme", b"https"), (b":path", b"/up"),
           (b":authority", b"example.com")]


def test_request_block_is_split_and_measured_in_one_pass():
    fields = parse_request_fields(REQUEST + [
        (b"cookie", b"a=1"), (b"content-length", b"12"), (b"priority", b"u=1"),
        (b"cookie", b"b=2"), (b"x-long", b"v" * 40)])
    assert fields.pseudo == dict(REQUEST)
    assert fields.headers == [("content-length", "12"), ("priority", "u=1"), ("x-long", "v" * 40),
                              ("cookie", "a=1; b=2")]
    assert fields.content_length == 12 and fields.priority == ["u=1"] and fields.host is None
    # RFC 9113 6.5.2 size: name + value + 32 per field, cookies counted once joined
    expected = sum(len(n) + len(v) + 32 for n, v in REQUEST) + sum(
        len(n) + len(v) + 32 for n, v in fields.headers)
    assert fields.list_size == expected
    assert fields.longest == len("x-long") + 40


@pytest.mark.parametrize("extra", [
    [(b"content-length", b"+5")], [(b"content-length", b"5"), (b"content-length", b"6")],
    [(b"te", b"gzip")], [(b"X-Up", b"1")], [(b"x-a", b"1 ")], [(b"x-a", b"a\x00b")],
])
def test_malformed_request_fields_raise(extra):
    with pytest.raises(h2.exceptions.ProtocolError):
        parse_request_fields(REQUEST + extra)


def test_te_trailers_and_repeated_equal_content_length_are_fine():
    fields = parse_request_fields(REQUEST + [(b"te", b"trailers"), (b"content-length", b"5"),
                                             (b"content-length", b"5")])
    assert fields.content_length == 5


def test_response_fields_are_lowered_trimmed_and_hop_by_hop_dropped():
    assert response_fields([("Content-Type", " text/plain "), ("Connection", "close"),
                            ("TE", "trailers")]) == [(b"content-type", b"text/plain")]
    (field,) = response_fields([("Proxy-Authorization", "Basic x")])
    assert isinstance(field, NeverIndexedHeaderTuple)
    with pytest.raises(ValueError):
        response_fields([("x-bad", "a\nb")])


def test_checked_response_field_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(http2_fields, "_CHECKED_FIELDS", {})
    response_fields([("x-big", "v" * (http2_fields.CHECKED_FIELD_MAX_SIZE + 1))])
    assert http2_fields._CHECKED_FIELDS == {}
    for number in range(3 * http2_fields.CHECKED_FIELDS_KEPT):
        assert response_fields([("x-id", str(number))]) == [(b"x-id", str(number).encode())]
    assert 0 < len(http2_fields._CHECKED_FIELDS) <= http2_fields.CHECKED_FIELDS_KEPT
