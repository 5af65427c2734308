"""h2serve: an HTTP/2-first TLS server for WSGI applications."""

__version__ = "0.1.0"
SERVER_SOFTWARE = f"h2serve/{__version__}"
