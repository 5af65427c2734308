"""A large download, generated on the fly and streamed in 64 KiB chunks.

?size= is the length in bytes (default 10 MiB, at most 1 GiB). The body is
a repeating pattern of the bytes 0..255, so a client can check every byte.
Content-Length is announced up front; the server writes each chunk as the
client's flow-control window allows, so memory stays flat whatever the size.

Run:    h2serve examples.download:app
Query:  curl --http2 --cacert ~/.local/share/h2serve/certs/ca.pem -o download.bin 'https://localhost:8443/?size=104857600'
"""

from urllib.parse import parse_qs

CHUNK = 64 * 1024
DEFAULT_SIZE = 10 * 1024 * 1024
MAX_SIZE = 1024 * 1024 * 1024
BLOCK = bytes(range(256)) * (CHUNK // 256)  # one chunk of the pattern, reused for every write


def expected_bytes(size: int) -> bytes:
    """What a download of `size` bytes contains (for checking it)."""
    whole, rest = divmod(size, len(BLOCK))
    return BLOCK * whole + BLOCK[:rest]


def requested_size(query_string: str) -> int | None:
    """The size= query value, or None when it is not a number in range."""
    values = parse_qs(query_string).get("size")
    if not values:
        return DEFAULT_SIZE
    try:
        size = int(values[-1])
    except ValueError:
        return None
    return size if 0 <= size <= MAX_SIZE else None


def app(environ, start_response):
    size = requested_size(environ.get("QUERY_STRING", ""))
    if size is None:
        body = f"size must be a whole number of bytes from 0 to {MAX_SIZE}\n".encode()
        start_response("400 Bad Request", [("Content-Type", "text/plain"),
                                           ("Content-Length", str(len(body)))])
        return [body]

    start_response("200 OK", [
        ("Content-Type", "application/octet-stream"),
        ("Content-Length", str(size)),
        ("Content-Disposition", 'attachment; filename="download.bin"'),
    ])

    def chunks():
        left = size
        while left >= CHUNK:
            left -= CHUNK
            yield BLOCK  # PEP 3333 wants bytes; the same object is reused, not copied
        if left:
            yield BLOCK[:left]

    return chunks()
