"""CachingEncoder / CachingDecoder must behave exactly like hpack's own classes."""

from __future__ import annotations

import itertools
import time

import h2.config
import h2.connection
import h2.events
import hpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from h2serve.protocol import hpack_cache
from h2serve.protocol.hpack_cache import CachingDecoder, CachingEncoder

RESPONSE = [
    (b":status", b"200"),
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", b"13"),
    (b"server", b"h2serve"),
    (b"date", b"Mon, 01 Jan 2024 00:00:00 GMT"),
]
REQUEST = [
    (b":method", b"GET"),
    (b":path", b"/hello"),
    (b":scheme", b"https"),
    (b":authority", b"127.0.0.1:8443"),
    (b"user-agent", b"h2load nghttp2/1.59.0"),
]


# -- differential ------------------------------------------------------------

NAMES = [b":status", b"content-type", b"x-a", b"x-b", b"cookie", b"set-cookie"]
VALUES = [b"200", b"404", b"", b"v1", b"v2", b"text/html", b"w" * 40, b"z" * 300]
KINDS = [tuple, hpack.HeaderTuple, hpack.NeverIndexedHeaderTuple]
SIZES = [0, 1, 40, 64, 100, 300, 500, 4096, 8192]

header = st.builds(
    lambda kind, name, value: kind((name, value)) if kind is tuple else kind(name, value),
    st.sampled_from(KINDS), st.sampled_from(NAMES), st.sampled_from(VALUES),
)
op = st.one_of(
    st.tuples(st.just("encode"), st.lists(header, max_size=6), st.booleans()),
    # Encode one of the lists seen so far again (the common case in production).
    st.tuples(st.just("repeat"), st.integers(0, 50), st.booleans()),
    st.tuples(st.just("table_size"), st.sampled_from(SIZES)),
    st.tuples(st.just("list_limit"), st.sampled_from([100, 200, 400, 65536])),
    st.tuples(st.just("allowed_table"), st.sampled_from([0, 100, 4096, 8192])),
    st.tuples(st.just("corrupt"), st.integers(0, 50), st.integers(0, 255), st.integers(0, 20)),
    st.tuples(st.just("redecode"), st.integers(0, 50), st.booleans()),
)


def outcome(call, *args):
    """What a call returned, or which exception (type and message) it raised."""
    try:
        return ("ok", call(*args))
    except Exception as exc:
        return ("error", type(exc), str(exc))


def decode_both(plain: hpack.Decoder, caching: CachingDecoder, block: bytes, raw: bool) -> None:
    expected = outcome(plain.decode, block, raw)
    assert outcome(caching.decode, block, raw) == expected
    assert caching.header_table.dynamic_entries == plain.header_table.dynamic_entries
    assert caching.header_table_size == plain.header_table_size


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, max_size=60))
def test_matches_plain_hpack(ops: list[tuple]) -> None:
    plain_enc, caching_enc = hpack.Encoder(), CachingEncoder()
    plain_dec, caching_dec = hpack.Decoder(), CachingDecoder()
    sent: list[list] = []
    blocks: list[bytes] = []
    for step in ops:
        kind = step[0]
        if kind in ("encode", "repeat"):
            if kind == "encode":
                headers = step[1]
                sent.append(headers)
            elif sent:
                headers = sent[step[1] % len(sent)]
            else:
                continue
            huffman = step[2]
            expected = plain_enc.encode(headers, huffman=huffman)
            # h2 hands the encoder a generator: give it one half of the time.
            given_headers = iter(headers) if huffman else headers
            assert caching_enc.encode(given_headers, huffman=huffman) == expected
            assert caching_enc.header_table.dynamic_entries == plain_enc.header_table.dynamic_entries
            blocks.append(expected)
            decode_both(plain_dec, caching_dec, expected, raw=True)
        elif kind == "table_size":
            plain_enc.header_table_size = caching_enc.header_table_size = step[1]
        elif kind == "list_limit":
            plain_dec.max_header_list_size = caching_dec.max_header_list_size = step[1]
        elif kind == "allowed_table":
            plain_dec.max_allowed_table_size = caching_dec.max_allowed_table_size = step[1]
        elif kind == "corrupt" and blocks:
            block = bytearray(blocks[step[1] % len(blocks)])
            if block:
                block[step[3] % len(block)] = step[2]
                if step[3] % 3 == 0:
                    del block[len(block) // 2:]
            decode_both(plain_dec, caching_dec, bytes(block), raw=True)
        elif kind == "redecode" and blocks:
            decode_both(plain_dec, caching_dec, blocks[step[1] % len(blocks)], raw=step[2])


# -- the cache is really used --------------------------------------------------


def _count_calls(monkeypatch: pytest.MonkeyPatch, cls: type, name: str) -> list[int]:
    """Patch cls.name to record each call; the caching subclasses reach it via super()."""
    calls: list[int] = []
    original = getattr(cls, name)

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, counting)
    return calls


@pytest.fixture
def parent_encodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    return _count_calls(monkeypatch, hpack.Encoder, "encode")


@pytest.fixture
def parent_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    return _count_calls(monkeypatch, hpack.Decoder, "decode")


def test_encoder_hits_after_warm_up_and_table_changes_invalidate(parent_encodes: list[int]) -> None:
    encoder = CachingEncoder()
    first = encoder.encode(RESPONSE)   # literals: adds to the table, not stored
    assert not encoder._cache
    second = encoder.encode(RESPONSE)  # all indexed: stored
    assert first != second and len(parent_encodes) == 2
    assert encoder.encode(iter(RESPONSE)) == second
    assert encoder.encode(tuple(RESPONSE)) == second
    assert len(parent_encodes) == 2

    encoder.encode([(b"x-new", b"1")])  # adds an entry: every index shifts by one
    calls = len(parent_encodes)
    shifted = encoder.encode(RESPONSE)
    assert len(parent_encodes) == calls + 1 and shifted != second
    assert encoder.encode(RESPONSE) == shifted and len(parent_encodes) == calls + 1

    encoder.header_table_size = 4096  # same size: hpack emits nothing, cache still dropped
    assert encoder.encode(RESPONSE) == shifted and len(parent_encodes) == calls + 2

    encoder.header_table_size = 100  # evicts, and the next block must carry the update
    plain = hpack.Encoder()
    plain.encode(RESPONSE)
    plain.encode([(b"x-new", b"1")])
    plain.header_table_size = 100
    assert encoder.encode(RESPONSE) == plain.encode(RESPONSE)


@pytest.mark.parametrize("codec", ["encoder", "decoder"])
def test_entry_bigger_than_the_table_empties_it(codec: str) -> None:
    """hpack empties the table, without an eviction, for an entry larger than it."""
    small, huge = [(b"x-a", b"v1")], [(b"x-a", b"z" * 300)]
    peer, plain_dec = hpack.Encoder(), hpack.Decoder()
    encoder = CachingEncoder() if codec == "encoder" else hpack.Encoder()
    decoder = CachingDecoder() if codec == "decoder" else hpack.Decoder()
    for enc in (peer, encoder):
        enc.header_table_size = 100
    for headers in (small, small, small, huge, small, small):
        block = peer.encode(headers)
        assert encoder.encode(headers) == block
        assert decoder.decode(block, raw=True) == plain_dec.decode(block, raw=True)
        # The first dynamic entry, whatever it is now (an error once the table is empty).
        assert outcome(decoder.decode, b"\xbe", True) == outcome(plain_dec.decode, b"\xbe", True)


def test_encoder_tells_never_indexed_from_plain() -> None:
    encoder, plain = CachingEncoder(), hpack.Encoder()
    secret = [hpack.NeverIndexedHeaderTuple(b"authorization", b"token")]
    open_ = [(b"authorization", b"token")]
    for headers in (secret, secret, open_, secret, open_):
        assert encoder.encode(headers) == plain.encode(headers)
    # The never-indexed literal does not touch the table, so it was cacheable.
    assert encoder.encode(secret, huffman=False) == plain.encode(secret, huffman=False)
    assert encoder.encode(secret, huffman=True) == plain.encode(secret, huffman=True)


def test_encoder_falls_back_for_other_inputs(parent_encodes: list[int]) -> None:
    encoder, plain = CachingEncoder(), hpack.Encoder()
    for headers in (
        {":status": "200", "server": "x"},
        [(":status", "200")],
        [(b"x-s", b"v", True)],
        [(b":status", b"200")] * 60,  # above MAX_INPUT_BYTES
    ):
        for _ in range(3):
            assert encoder.encode(headers) == plain.encode(headers)
    assert not encoder._cache
    assert len(parent_encodes) == 24


def test_decoder_hits_and_table_changes_invalidate(parent_decodes: list[int]) -> None:
    peer = hpack.Encoder()
    warm_up, indexed = peer.encode(RESPONSE), peer.encode(RESPONSE)
    decoder = CachingDecoder()
    expected = decoder.decode(warm_up, raw=True)
    assert not decoder._cache  # it added to the table
    assert decoder.decode(indexed, raw=True) == expected
    calls = len(parent_decodes)
    got = decoder.decode(indexed, raw=True)
    assert got == expected and len(parent_decodes) == calls
    got.append((b"x", b"y"))  # the caller owns the list it gets
    assert decoder.decode(indexed, raw=True) == expected and len(parent_decodes) == calls
    # raw=False is another result
    assert decoder.decode(indexed) == [(n.decode(), v.decode()) for n, v in expected]
    assert len(parent_decodes) == calls + 1

    decoder.decode(peer.encode([(b"x-new", b"1")]), raw=True)  # table changes
    calls = len(parent_decodes)
    shifted = decoder.decode(indexed, raw=True)  # same bytes now mean other fields
    assert len(parent_decodes) == calls + 1 and shifted != expected


def test_decoder_limits_still_apply_on_hits() -> None:
    peer = hpack.Encoder()
    warm_up, indexed = peer.encode(RESPONSE), peer.encode(RESPONSE)
    decoder, plain = CachingDecoder(), hpack.Decoder()
    for d in (decoder, plain):
        d.decode(warm_up, raw=True)
        d.decode(indexed, raw=True)
    assert decoder._cache  # the indexed block is stored

    decoder.max_header_list_size = plain.max_header_list_size = 100
    with pytest.raises(hpack.OversizedHeaderListError) as caching_error:
        decoder.decode(indexed, raw=True)
    with pytest.raises(hpack.OversizedHeaderListError) as plain_error:
        plain.decode(indexed, raw=True)
    assert str(caching_error.value) == str(plain_error.value)

    decoder.max_header_list_size = plain.max_header_list_size = 65536
    decoder.max_allowed_table_size = plain.max_allowed_table_size = 100  # peer must shrink
    assert outcome(decoder.decode, indexed, True) == outcome(plain.decode, indexed, True)
    assert outcome(decoder.decode, indexed, True)[1] is hpack.InvalidTableSizeError


def test_decoder_never_stores_failures_or_big_results() -> None:
    decoder = CachingDecoder()
    for _ in range(2):
        with pytest.raises(hpack.HPACKDecodingError):
            decoder.decode(b"\xff\xff\xff\xff\xff\xff\xff", raw=True)
    # A small block that expands into a big list (a 3000-byte table entry, twice).
    peer = hpack.Encoder()
    big = [(b"x-big", b"b" * 3000)]
    decoder.decode(peer.encode(big), raw=True)
    decoder.decode(peer.encode(big * 2), raw=True)
    assert not decoder._cache
    # Input above the limit, though its decoded list is small and the table is untouched.
    long_literal = hpack.Encoder().encode(
        [hpack.NeverIndexedHeaderTuple(b"x", b"a" * hpack_cache.MAX_INPUT_BYTES)], huffman=False)
    for _ in range(2):
        assert decoder.decode(long_literal, raw=True)[0][1] == b"a" * hpack_cache.MAX_INPUT_BYTES
    assert not decoder._cache
    decoder.max_header_list_size = 1 << 20
    decoder.decode(b"\x82" * (hpack_cache.MAX_INPUT_BYTES + 1), raw=True)
    assert not decoder._cache
    decoder.decode(b"\x82", raw=True)
    assert decoder._cache  # small blocks are still stored


# -- bounds ----------------------------------------------------------------------


def test_caches_stay_bounded() -> None:
    static = [entry for entry in hpack.table.HeaderTable.STATIC_TABLE]
    encoder, plain = CachingEncoder(), hpack.Encoder()
    for headers in itertools.islice(itertools.product(static, repeat=3), 1000):
        assert encoder.encode(list(headers)) == plain.encode(list(headers))
    assert len(encoder._cache) == hpack_cache.MAX_ENTRIES

    decoder, plain_dec = CachingDecoder(), hpack.Decoder()
    for first, second in itertools.islice(itertools.product(range(1, 62), repeat=2), 1000):
        block = bytes([0x80 | first, 0x80 | second])
        assert decoder.decode(block, raw=True) == plain_dec.decode(block, raw=True)
    assert len(decoder._cache) == hpack_cache.MAX_ENTRIES


# -- wired into h2 -----------------------------------------------------------------


def test_h2_connection_with_caching_codecs() -> None:
    """Requests and responses still round-trip when the server uses the caching codecs."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding=None))
    server.encoder, server.decoder = CachingEncoder(), CachingDecoder()
    client.initiate_connection()
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    for stream_id in range(1, 40, 2):
        client.send_headers(stream_id, REQUEST, end_stream=True)
        events = server.receive_data(client.data_to_send())
        request = [e for e in events if isinstance(e, h2.events.RequestReceived)]
        assert [list(h) for h in request[0].headers] == [list(h) for h in REQUEST]
        server.send_headers(stream_id, RESPONSE, end_stream=True)
        events = client.receive_data(server.data_to_send())
        response = [e for e in events if isinstance(e, h2.events.ResponseReceived)]
        assert response[0].headers == RESPONSE
    assert server.encoder._cache and server.decoder._cache


# -- micro-benchmark (printed with -s) -----------------------------------------------


def _per_call(function, rounds: int = 20000) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        function()
    return (time.perf_counter() - started) / rounds * 1e6


def test_micro_benchmark() -> None:
    figures = []
    for name, headers in (("encode response", RESPONSE), ("encode request", REQUEST)):
        plain, caching = hpack.Encoder(), CachingEncoder()
        for _ in range(2):
            assert plain.encode(headers) == caching.encode(headers)
        assert plain.encode(headers) == caching.encode(headers)
        figures.append((name, _per_call(lambda p=plain, h=headers: p.encode(h)),
                        _per_call(lambda c=caching, h=headers: c.encode(h))))
    for name, headers in (("decode request", REQUEST), ("decode response", RESPONSE)):
        peer = hpack.Encoder()
        blocks = [peer.encode(headers), peer.encode(headers)]
        plain, caching = hpack.Decoder(), CachingDecoder()
        for block in blocks:
            assert plain.decode(block, raw=True) == caching.decode(block, raw=True)
        block = blocks[1]
        figures.append((name, _per_call(lambda p=plain, b=block: p.decode(b, raw=True)),
                        _per_call(lambda c=caching, b=block: c.decode(b, raw=True))))
    print()
    for name, plain_us, caching_us in figures:
        print(f"{name:16s} plain {plain_us:6.2f} us  caching {caching_us:6.2f} us"
              f"  x{plain_us / caching_us:.1f}")
