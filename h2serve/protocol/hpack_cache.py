"""HPACK encoder and decoder that skip the work when a header block repeats.

On a busy HTTP/2 connection most header blocks are the ones sent just before
them, and once the dynamic table has warmed up they hold only *indexed*
representations. Encoding or decoding such a block reads the dynamic table
but leaves it as it was, so its result depends only on the input and on the
table's content. These subclasses remember those results and hand them back
while the table is unchanged, which saves the per-field Python work of
``hpack.Encoder.encode`` and ``hpack.Decoder.decode``.

"Unchanged" is tracked by `GenerationHeaderTable` (in h2_internals.py: it
hooks a private hpack method), which counts every
mutation of the table (add, eviction, resize); any change empties the cache.
A result is stored only if computing it changed nothing, so a hit can never
skip a state change the plain class would have made. Both caches are small
and refuse big blocks, so a peer cannot use them to grow our memory.

Neither class is thread-safe (nor is hpack's).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import hpack
from hpack import HeaderTuple, NeverIndexedHeaderTuple
from hpack.table import HeaderTable

from .h2_internals import GenerationHeaderTable, assert_valid_table_size

#: Most results kept per encoder or decoder; the oldest goes first.
MAX_ENTRIES = 64
#: Largest input cached: the encoded block's length for the decoder; for the
#: encoder the header list's size as RFC 7541 counts it (32 + name + value per
#: field, so thousands of empty fields cannot hide under the limit).
MAX_INPUT_BYTES = 2048
#: Largest decoded header list cached, RFC 7541 size: a few index bytes can
#: expand into large table entries, and the cache keeps them alive.
MAX_DECODED_BYTES = 4096

# Header tuple classes whose "never index" meaning is fixed by the class.
_CACHEABLE_KINDS = frozenset({tuple, HeaderTuple, NeverIndexedHeaderTuple})


class _ResultCache:
    """The cache state shared by both classes, keyed to one tracked table.

    ``header_table`` is a property so that replacing the table (hpack's own
    ``__init__`` does, and so could a caller) empties the cache; a table that
    is not a `GenerationHeaderTable` cannot be tracked and turns caching off.
    """

    _table: HeaderTable
    _tracked: bool
    _cache: dict[Any, Any]
    _cache_generation: int

    @property
    def header_table(self) -> HeaderTable:
        return self._table

    @header_table.setter
    def header_table(self, table: HeaderTable) -> None:
        self._table = table
        self._tracked = isinstance(table, GenerationHeaderTable)
        self._cache = {}
        self._cache_generation = -1

    def _valid_cache(self, generation: int) -> dict[Any, Any]:
        """The cache, emptied first if the table moved since it was filled."""
        if generation != self._cache_generation:
            self._cache.clear()
            self._cache_generation = generation
        return self._cache

    def _remember(self, key: Any, result: Any) -> None:
        cache = self._cache
        if len(cache) >= MAX_ENTRIES:
            del cache[next(iter(cache))]
        cache[key] = result


def _encoder_key(items: tuple[Any, ...], huffman: bool) -> tuple[Any, ...] | None:
    """A cache key for a header list, or None if it must not be cached.

    Only (name, value) tuples of exact ``bytes`` qualify: hpack would turn
    other types into bytes through ``str()``, where equal keys (``1`` and
    ``True``) need not give equal bytes. The tuple classes are part of the key
    because a `NeverIndexedHeaderTuple` compares equal to a plain tuple but
    encodes differently.
    """
    kinds = tuple(map(type, items))
    if not _CACHEABLE_KINDS.issuperset(kinds):
        return None
    size = 0
    try:
        for name, value in items:
            if type(name) is not bytes or type(value) is not bytes:
                return None
            size += 32 + len(name) + len(value)
    except ValueError:  # not a 2-tuple: hpack's 3-tuple form or a malformed one
        return None
    if size > MAX_INPUT_BYTES:
        return None
    return (bool(huffman), items, kinds)


class CachingEncoder(_ResultCache, hpack.Encoder):
    """An ``hpack.Encoder`` that returns the stored bytes for a repeated block.

    A block is stored only when encoding it added nothing to the table and no
    table size update was pending (so its bytes hold none), and it is served
    from the cache only under the same conditions.
    """

    def __init__(self) -> None:
        super().__init__()
        self.header_table = GenerationHeaderTable()

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        """Encode `headers` as ``hpack.Encoder.encode`` does, from the cache if possible.

        A one-shot iterable (h2 passes generators) is read into a tuple first,
        so the whole list is known before any of it is encoded.
        """
        if isinstance(headers, dict) or not self._tracked:
            return super().encode(headers, huffman)
        items = headers if type(headers) is tuple else tuple(headers)
        key = _encoder_key(items, huffman)
        table = self._table
        if key is None or table.resized or self.table_size_changes:
            return super().encode(items, huffman)
        generation = table.generation  # type: ignore[attr-defined]
        cache = self._valid_cache(generation)
        encoded = cache.get(key)
        if encoded is not None:
            return encoded
        encoded = super().encode(items, huffman)
        if table.generation == generation:  # type: ignore[attr-defined]
            self._remember(key, encoded)
        return encoded


class CachingDecoder(_ResultCache, hpack.Decoder):
    """An ``hpack.Decoder`` that returns a copy of the stored list for a repeated block.

    A block is stored only when decoding it succeeded and left the table as it
    was (which also rules out a size update inside it, as those go through the
    ``maxsize`` setter). ``max_header_list_size`` is part of the key, so a
    lowered limit is checked again by hpack; the final table size check
    against ``max_allowed_table_size`` is repeated on every hit, because h2
    lowers that limit when our SETTINGS are acknowledged.
    """

    def __init__(self, max_header_list_size: int = hpack.hpack.DEFAULT_MAX_HEADER_LIST_SIZE) -> None:
        super().__init__(max_header_list_size)
        self.header_table = GenerationHeaderTable()

    def decode(self, data: bytes, raw: bool = False) -> Iterable[HeaderTuple]:
        """Decode `data` as ``hpack.Decoder.decode`` does, from the cache if possible.

        Always returns a new list (callers may change it); errors come from
        hpack itself, because failures are never stored.
        """
        if not self._tracked or type(data) not in (bytes, bytearray) or len(data) > MAX_INPUT_BYTES:
            return super().decode(data, raw)
        key = (bytes(data), bool(raw), self.max_header_list_size)
        table = self._table
        generation = table.generation  # type: ignore[attr-defined]
        cache = self._valid_cache(generation)
        headers = cache.get(key)
        if headers is not None:
            assert_valid_table_size(self)
            return list(headers)
        decoded = super().decode(data, raw)
        if table.generation == generation:  # type: ignore[attr-defined]
            size = 0
            for name, value in decoded:
                size += 32 + len(name) + len(value)
            if size <= MAX_DECODED_BYTES:
                self._remember(key, tuple(decoded))
        return decoded
