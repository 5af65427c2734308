"""The Date header value (h2serve.connection.common)."""

import email.utils
import time

import pytest

from h2serve.connection.common import format_http_date, http_date


@pytest.mark.parametrize("seconds", [0, 951_782_400, 1_700_000_000, 1_798_761_599, 4_102_444_800])
def test_http_date_is_imf_fixdate(seconds):
    assert format_http_date(seconds) == email.utils.formatdate(seconds, usegmt=True)


def test_http_date_is_now():
    stamp = email.utils.parsedate_to_datetime(http_date()).timestamp()
    assert stamp == pytest.approx(time.time(), abs=2)
