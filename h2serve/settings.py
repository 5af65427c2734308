"""The one table of h2serve settings.

Every setting is declared once, in ``SETTINGS``: how it is spelled, parsed,
checked and documented. The command-line parser and the merging of sources
(h2serve.config), docs/settings.md and docs/gunicorn.md (h2serve.settings_docs)
are derived from it, so they cannot drift apart. gunicorn's settings and what
h2serve does with each are in h2serve.gunicorn_settings.

Regenerate the docs with ``python -m h2serve.settings_docs > docs/settings.md``;
``python -m h2serve.settings_docs gunicorn`` prints the tables of docs/gunicorn.md.
"""

from __future__ import annotations

from h2serve.gunicorn_settings import GUNICORN_SETTINGS, REFUSED, REFUSED_REASONS
from h2serve.hooks import HOOKS, to_hook
from h2serve.setting_values import (
    HTTP2_CLEARTEXT_MODES,
    LOG_LEVELS,
    MAX_31_BIT,
    MAX_REQUEST_FIELDS,
    SYSLOG_FACILITIES,
    Setting,
    above,
    at_least,
    between,
    check_access_logformat,
    check_bind,
    check_ciphers,
    check_directory,
    check_dirty_apps,
    check_file,
    check_forwarded_ips,
    check_parent_directory,
    check_statsd_address,
    check_syslog_address,
    optional,
    to_bool,
    to_cert_reqs,
    to_env_list,
    to_float,
    to_gid,
    to_header_dict,
    to_http2_cleartext,
    to_http_protocols,
    to_int,
    to_ip_list,
    to_log_dict,
    to_log_level,
    to_path_list,
    to_proxy_protocol,
    to_request_fields,
    to_str,
    to_str_list,
    to_uid,
    to_umask,
    to_upper_list,
    to_worker_class,
)

ENV_CMD_ARGS = "H2SERVE_CMD_ARGS"
GUNICORN_ENV_CMD_ARGS = "GUNICORN_CMD_ARGS"
# Read from the current directory, first found, when no --config is given.
DISCOVERED_CONFIG_FILES = ("h2serve.conf.py", "gunicorn.conf.py")

APP_HELP = "the WSGI application, as module:callable or module:factory()"

DESCRIPTION = (
    "h2serve runs a WSGI application over HTTP/2 with TLS, falling back to "
    "HTTP/1.1 for clients that do not offer h2. Run `h2serve certs` to create "
    "a development certificate."
)


class ConfigError(Exception):
    """A setting is invalid. The message is a single line meant for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


# --------------------------------------------------------------------------
# The table.


GUNICORN_ACCESS_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'

S_CONFIG = "Configuration"
S_SOCKET = "Server socket"
S_WORKERS = "Worker processes"
S_TIMEOUTS = "Timeouts"
S_TLS = "TLS"
S_PROTOCOLS = "Protocols"
S_LIMITS = "Request limits"
S_PROXY = "Proxies"
S_LOGGING = "Logging"
S_PROCESS = "Process"
S_HOOKS = "Server hooks"
S_DIRTY = "Dirty arbiters"
SECTIONS = (
    S_CONFIG, S_SOCKET, S_WORKERS, S_TIMEOUTS, S_TLS, S_PROTOCOLS,
    S_LIMITS, S_PROXY, S_LOGGING, S_PROCESS, S_DIRTY, S_HOOKS,
)

_opt_str = optional(to_str)

SETTINGS: tuple[Setting, ...] = (
    # Config -------------------------------------------------------------
    Setting(
        "wsgi_app", (), S_CONFIG, "string", "APP",
        "The application to serve: `module:callable`, `module:obj.attr`, "
        "`module:factory()` or `module:factory(arg=\"x\")` with literal arguments. "
        "A bare `module` looks for `application`, then `app`.",
        _opt_str, kind="positional",
    ),
    Setting(
        "config", ("-c", "--config"), S_CONFIG, "path", "FILE",
        "A Python file whose top-level names set settings (for example `workers = 4`). "
        "Use it to keep a deployment's settings under version control; the command line still wins. "
        "Without it, `./h2serve.conf.py` and then `./gunicorn.conf.py` are read if present "
        "(the one read is named at start).",
        _opt_str, validate=check_file, cli_only=True, is_path=True,
    ),
    Setting(
        "print_config", ("--print-config",), S_CONFIG, "bool", "BOOL",
        "Print every setting as `name = value` after all sources are merged, then exit. "
        "Handy to see what a config file and environment actually produce.",
        to_bool, default=False, kind="switch", cli_only=True,
    ),
    Setting(
        "check_config", ("--check-config",), S_CONFIG, "bool", "BOOL",
        "Validate every setting and import the application, then exit with 0 (fine) or 2 (error). "
        "Run it in a deploy script before restarting the server.",
        to_bool, default=False, kind="switch", cli_only=True,
    ),
    # Server socket --------------------------------------------------------
    Setting(
        "bind", ("-b", "--bind"), S_SOCKET, "list of addresses", "ADDRESS",
        "Address to listen on: `HOST:PORT`, `[IPV6]:PORT`, `unix:PATH` or `fd://N`. "
        "Repeat the flag to listen on several addresses; the command line replaces the config file's list.",
        to_str_list, default=["127.0.0.1:8443"], validate=check_bind, kind="list",
    ),
    Setting(
        "backlog", ("--backlog",), S_SOCKET, "int", "INT",
        "How many connections the kernel may queue before they are accepted. "
        "Raise it if bursts of new clients see refused connections.",
        to_int, default=2048, validate=at_least(1),
    ),
    Setting(
        "reuse_port", ("--reuse-port",), S_SOCKET, "bool", "BOOL",
        "Give each worker its own listening socket with SO_REUSEPORT, so the kernel spreads "
        "new connections evenly instead of letting the busiest worker win.",
        to_bool, default=False, kind="bool",
    ),
    # Workers --------------------------------------------------------------
    Setting(
        "workers", ("-w", "--workers"), S_WORKERS, "int", "INT",
        "Number of worker processes. One or two per CPU core is a good start; "
        "more only help if the application is CPU-bound.",
        to_int, default=1, validate=at_least(1), default_env="WEB_CONCURRENCY",
        default_doc="1, or `$WEB_CONCURRENCY` when set",
    ),
    Setting(
        "threads", ("--threads",), S_WORKERS, "int", "INT",
        "Threads per worker that run the application; requests and HTTP/2 streams beyond this wait. "
        "Raise it for applications that spend their time waiting on I/O.",
        to_int, default=4, validate=at_least(1),
    ),
    Setting(
        "worker_class", ("-k", "--worker-class"), S_WORKERS, "choice", "CLASS",
        "gunicorn's worker type, accepted for moving from gunicorn: `gthread` and `sync` both "
        "name h2serve's one worker (a poller thread plus --threads application threads; with "
        "`sync` gunicorn would run one request at a time, here --threads still apply). Async "
        "worker classes (gevent, eventlet, tornado, uvicorn) are refused with a reason.",
        to_worker_class, default="gthread",
    ),
    Setting(
        "worker_connections", ("--worker-connections",), S_WORKERS, "int", "INT",
        "Most open client connections one worker keeps. Past it, a new client takes the place "
        "of the connection idle longest (one that sent nothing yet, a keep-alive connection "
        "between requests, an HTTP/2 connection without a stream), which is closed, as nginx "
        "reuses idle connections; only when every connection is busy do new ones wait in the "
        "backlog. Idle connections cost no thread, so this can be far above --threads.",
        to_int, default=1000, validate=at_least(1),
    ),
    Setting(
        "max_unused_connections_per_peer", ("--max-unused-connections-per-peer",), S_WORKERS,
        "int", "INT",
        "Most connections one client address may hold open on a worker after the TLS handshake "
        "without having sent a request (0 = no cap). Past it, that address's oldest unused "
        "connections that have been silent 3 s are closed (HTTP/2: GOAWAY NO_ERROR), so one "
        "address cannot fill the worker with held handshakes (about 24 KiB each, 14 KiB of it "
        "OpenSSL's). A browser pre-connects at most a few connections and uses them within "
        "seconds; proxies send a request on each connection they open.",
        to_int, default=256, validate=at_least(0),
    ),
    Setting(
        "max_requests", ("--max-requests",), S_WORKERS, "int", "INT",
        "Restart a worker gracefully after it has served this many requests (0 = never). "
        "A blunt but effective cure for an application that leaks memory.",
        to_int, default=0, validate=at_least(0),
    ),
    Setting(
        "max_requests_jitter", ("--max-requests-jitter",), S_WORKERS, "int", "INT",
        "Add a random 0..N to --max-requests per worker so workers do not all restart at once.",
        to_int, default=0, validate=at_least(0),
    ),
    Setting(
        "preload_app", ("--preload",), S_WORKERS, "bool", "BOOL",
        "Import the application once, in the master, before the workers are forked, so they "
        "share its memory copy-on-write and start faster. The master then holds that code: a "
        "HUP restarts the workers with it (restart the server for new code), as in gunicorn. "
        "The import runs before --user takes effect.",
        to_bool, default=False, kind="bool",
    ),
    Setting(
        "reload", ("--reload",), S_WORKERS, "bool", "BOOL",
        "Development only: restart workers when application source files change.",
        to_bool, default=False, kind="bool",
    ),
    # Timeouts ---------------------------------------------------------------
    Setting(
        "timeout", ("-t", "--timeout"), S_TIMEOUTS, "float (seconds)", "SECONDS",
        "A worker that has not reported to the master for this long is killed and replaced (0 disables). "
        "The poller reports even while views run, so this catches hung processes, not slow requests "
        "(--stuck-request-timeout reports those).",
        to_float, default=30.0, validate=at_least(0),
    ),
    Setting(
        "graceful_timeout", ("--graceful-timeout",), S_TIMEOUTS, "float (seconds)", "SECONDS",
        "On shutdown or restart, how long in-flight requests may run before the worker is killed. "
        "Set it above your slowest legitimate request.",
        to_float, default=30.0, validate=at_least(0),
    ),
    Setting(
        "keepalive", ("--keep-alive",), S_TIMEOUTS, "float (seconds)", "SECONDS",
        "How long an idle connection stays open waiting for the next request (0 closes after each "
        "HTTP/1.1 response). Behind a load balancer, set it above the balancer's idle timeout.",
        to_float, default=5.0, validate=at_least(0),
    ),
    Setting(
        "client_data_timeout", ("--client-data-timeout",), S_TIMEOUTS, "float (seconds)", "SECONDS",
        "A new connection that sends no byte for this long is closed. Keeps port scanners and "
        "idle pre-connects from filling the connection table. HTTP/2 clients also have this "
        "long to complete their preface and each header block (HEADERS to END_HEADERS).",
        to_float, default=5.0, validate=above(0),
    ),
    Setting(
        "handshake_timeout", ("--handshake-timeout",), S_TIMEOUTS, "float (seconds)", "SECONDS",
        "Deadline for the whole TLS handshake. Lower it if slow-handshake clients tie up the pool; "
        "raise it for very slow networks.",
        to_float, default=10.0, validate=above(0),
    ),
    Setting(
        "send_timeout", ("--send-timeout",), S_TIMEOUTS, "float (seconds)", "SECONDS",
        "A response write that stays blocked this long (peer window closed or TCP buffer full) "
        "aborts the stream, so a stalled client cannot hold an application thread forever. "
        "With --send-min-rate it is the grace of a deadline over the whole response.",
        to_float, default=30.0, validate=above(0),
    ),
    Setting(
        "send_min_rate", ("--send-min-rate",), S_TIMEOUTS, "int", "BYTES",
        "Slowest a response may be taken by its client, in bytes per second (0 = no rate "
        "check: each blocked write waits up to --send-timeout). A response whose client has "
        "not let it through by --send-timeout plus one second per this many bytes sent is cut "
        "(HTTP/2: RST_STREAM CANCEL; HTTP/1.1: the connection closes), so a client that opens "
        "its window or reads its socket a byte at a time cannot renew the deadline with every "
        "byte (the rule of --body-min-rate, for uploads).",
        to_int, default=1024, validate=at_least(0),
    ),
    Setting(
        "body_min_rate", ("--body-min-rate",), S_TIMEOUTS, "int", "BYTES",
        "Slowest a request body may arrive, in bytes per second (0 = no rate check). A body "
        "is cut (HTTP/1.1: 408 and close; HTTP/2: RST_STREAM CANCEL) once the time spent "
        "waiting for it exceeds --client-data-timeout plus one second per this many bytes "
        "received, the rule of Apache's mod_reqtimeout `MinRate`; each single wait is still "
        "capped by --client-data-timeout. A client trickling a body byte by byte so cannot "
        "hold an application thread for long.",
        to_int, default=500, validate=at_least(0),
    ),
    # TLS ------------------------------------------------------------------
    Setting(
        "certfile", ("--certfile",), S_TLS, "path", "FILE",
        "PEM certificate chain to serve. Needed for TLS, and so for HTTP/2 in browsers; "
        "pair it with --keyfile.",
        _opt_str, validate=check_file, is_path=True,
    ),
    Setting(
        "keyfile", ("--keyfile",), S_TLS, "path", "FILE",
        "PEM private key matching --certfile.",
        _opt_str, validate=check_file, is_path=True,
    ),
    Setting(
        "ca_certs", ("--ca-certs",), S_TLS, "path", "FILE",
        "PEM bundle of certificate authorities trusted to sign client certificates. "
        "Needed when --cert-reqs asks for client certificates.",
        _opt_str, validate=check_file, is_path=True,
    ),
    Setting(
        "cert_reqs", ("--cert-reqs",), S_TLS, "int", "INT",
        "Client certificates: 0/none (not asked), 1/optional (checked if sent), 2/required. "
        "Use 2 for mutual TLS between services.",
        to_cert_reqs, default=0, validate=between(0, 2),
    ),
    Setting(
        "ciphers", ("--ciphers",), S_TLS, "string", "CIPHERS",
        "OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are not affected). "
        "Leave unset unless a compliance rule names the ciphers.",
        _opt_str, validate=check_ciphers,
    ),
    Setting(
        "plaintext", ("--plaintext",), S_TLS, "bool", "BOOL",
        "Serve without TLS (HTTP/1.1, and HTTP/2 with prior knowledge). "
        "For use behind a TLS-terminating proxy or in tests; cannot be combined with --certfile.",
        to_bool, default=False, kind="bool",
    ),
    # Protocols ---------------------------------------------------------------
    Setting(
        "http_protocols", ("--http-protocols",), S_PROTOCOLS, "comma list", "LIST",
        "Protocols to offer, most preferred first: `h2`, `h1` or both. The order is the ALPN "
        "preference; use `h1` alone to switch HTTP/2 off.",
        to_http_protocols, default="h2,h1",
    ),
    Setting(
        "http2_cleartext", ("--http2-cleartext",), S_PROTOCOLS, "choice", "MODE",
        "HTTP/2 without TLS (with --plaintext): `prior-knowledge` (the client starts with the "
        "HTTP/2 preface), `upgrade` (HTTP/1.1 `Upgrade: h2c`), `both`, or `off`. Needs h2 in "
        "--http-protocols. gunicorn's default is `off`.",
        to_http2_cleartext, default="both", choices=HTTP2_CLEARTEXT_MODES,
    ),
    Setting(
        "http2_max_concurrent_streams", ("--http2-max-concurrent-streams",), S_PROTOCOLS,
        "int", "INT",
        "Streams one HTTP/2 client may have open at once. Lower it to limit how much of the "
        "thread pool a single connection can claim.",
        to_int, default=100, validate=between(1, MAX_31_BIT),
    ),
    Setting(
        "http2_initial_window_size", ("--http2-initial-window-size",), S_PROTOCOLS, "int", "INT",
        "Bytes of request body a client may send per stream before the application reads it. "
        "The default lets a 256 KiB upload arrive in one flight instead of waiting a round trip "
        "per 64 KiB; lower it to cap memory held for apps that read slowly.",
        to_int, default=262144, validate=between(1, MAX_31_BIT),
    ),
    Setting(
        "http2_connection_window_size", ("--http2-connection-window-size",), S_PROTOCOLS, "int",
        "INT",
        "Bytes of request body a client may send on one connection, over all its streams, "
        "before the application reads them (the connection's flow-control window). It bounds "
        "what one connection can make the worker hold in unread bodies, whatever its stream "
        "count; Go's net/http allows 1 MiB per connection too. 0 = the streams' windows "
        "added up (at most 16 MiB).",
        to_int, default=1048576, validate=between(0, MAX_31_BIT),
    ),
    Setting(
        "http2_max_frame_size", ("--http2-max-frame-size",), S_PROTOCOLS, "int", "INT",
        "Largest HTTP/2 frame payload we accept. Rarely worth changing.",
        to_int, default=16384, validate=between(16384, 16777215),
    ),
    Setting(
        "http2_max_header_list_size", ("--http2-max-header-list-size",), S_PROTOCOLS, "int", "INT",
        "Largest decoded header block (in RFC 9113 size units) an HTTP/2 request may carry. "
        "Caps the memory an HPACK-compressed header flood can cost.",
        to_int, default=65536, validate=at_least(1),
    ),
    Setting(
        "http2_max_requests_per_connection", ("--http2-max-requests-per-connection",),
        S_PROTOCOLS, "int", "INT",
        "Requests one HTTP/2 connection may make (0 = no limit, as in Go's net/http); the last "
        "one is answered with a graceful GOAWAY and the client opens a new connection, as after "
        "nginx's keepalive_requests (1000). Off by default: the reset and control-frame budgets "
        "already bound what one connection can cost, and clients that do not reconnect after "
        "GOAWAY (h2load among them) would stall.",
        to_int, default=0, validate=at_least(0),
    ),
    Setting(
        "http2_reset_budget", ("--http2-reset-budget",), S_PROTOCOLS, "int", "INT",
        "Streams an HTTP/2 client may cancel (RST_STREAM while its request is served) or get "
        "reset for its own errors, beyond the requests it completes, before the connection ends "
        "with GOAWAY ENHANCE_YOUR_CALM (0 = no limit). Answers rapid reset (CVE-2023-44487) and "
        "MadeYouReset (CVE-2025-8671); the count also drains by a tenth of the budget per second.",
        to_int, default=200, validate=at_least(0),
    ),
    Setting(
        "http2_max_control_frames", ("--http2-max-control-frames",), S_PROTOCOLS, "int", "INT",
        "Frames an HTTP/2 client may send that cost work but advance no request (PING, SETTINGS, "
        "PRIORITY, empty DATA or CONTINUATION, unknown types, redundant WINDOW_UPDATE) before "
        "the connection ends with GOAWAY ENHANCE_YOUR_CALM (0 = no limit). The allowance refills "
        "by a tenth per second and by two per request; answers PING, SETTINGS, empty-frame and "
        "PRIORITY floods (CVE-2019-9512, -9515, -9518, -9513).",
        to_int, default=1000, validate=at_least(0),
    ),
    Setting(
        "http2_max_control_backlog", ("--http2-max-control-backlog",), S_PROTOCOLS, "int", "BYTES",
        "Bytes of replies to an HTTP/2 client's frames (ACKs, resets, window updates) that may wait "
        "unsent because the client does not read; past it the connection is closed "
        "(0 = no limit). A client flooding pings without reading the answers cannot grow the "
        "server's buffers.",
        to_int, default=131072, validate=at_least(0),
    ),
    Setting(
        "http2_response_queue_limit", ("--http2-response-queue-limit",), S_PROTOCOLS, "int",
        "BYTES",
        "Bytes of HTTP/2 response bodies one worker may keep queued for its poller to send once "
        "the clients' windows and sockets take them, so a view whose large response is complete "
        "frees its thread at once. Past it, and past 32 MiB on one connection (256 KiB while its "
        "client reads nothing), threads wait for their clients; 0 keeps only responses of up to "
        "16 KiB off the threads.",
        to_int, default=134217728, validate=at_least(0),
    ),
    Setting(
        "http2_dribble_frame_size", ("--http2-dribble-frame-size",), S_PROTOCOLS, "int", "BYTES",
        "Smallest flow-control credit worth a response DATA frame while more of the body waits "
        "(unless the client's whole stream window is smaller). Window updates that leave less "
        "credit than this, and frames such a window forces, count against "
        "--http2-max-control-frames, so a client that opens its window a few bytes at a time "
        "(data dribble, CVE-2019-9511) is cut off (0 = off).",
        to_int, default=1024, validate=between(0, 16384),
    ),
    Setting(
        "max_blocked_threads", ("--max-blocked-threads",), S_PROTOCOLS, "int", "INT",
        "Most pool threads one client address (and one HTTP/2 connection) may hold while they "
        "wait on that client: a closed flow-control window, a socket that does not drain, a "
        "request body that does not come; 0 = half of --threads, at least 1. Requests whose "
        "body is still arriving start no more than this many at once per address (HTTP/1.1 "
        "connections and HTTP/2 streams beyond it wait unstarted, holding no thread); an "
        "HTTP/2 connection whose client stalls starts no more streams than this; a further "
        "thread that would wait on the same client gets half a second without progress (then "
        "RST_STREAM CANCEL, or on HTTP/1.1 a 408 or a close) and lends its slot to a spare "
        "thread meanwhile. Clients that stall nothing still get every thread. "
        "Behind a proxy every client shares its address: raise it there.",
        to_int, default=0, validate=at_least(0),
    ),
    # Request limits ---------------------------------------------------------
    Setting(
        "limit_request_line", ("--limit-request-line",), S_LIMITS, "int", "INT",
        "Longest HTTP/1.1 request line in bytes (0 = no limit); longer requests get 414. "
        "Raise it if your URLs carry very long query strings.",
        to_int, default=4094, validate=between(0, 8190),
    ),
    Setting(
        "limit_request_fields", ("--limit-request-fields",), S_LIMITS, "int", "INT",
        "Most header fields one request may carry (0 means the maximum, 32768). "
        "Keeps header floods from costing memory and CPU.",
        to_request_fields, default=100, validate=between(1, MAX_REQUEST_FIELDS),
    ),
    Setting(
        "limit_request_field_size", ("--limit-request-field-size", "--limit-request-field_size"), S_LIMITS, "int", "INT",
        "Longest single header field in bytes (0 = no limit); bigger requests get 431. "
        "Raise it for large cookies or tokens.",
        to_int, default=8190, validate=at_least(0),
    ),
    Setting(
        "limit_request_head", ("--limit-request-head",), S_LIMITS, "int", "BYTES",
        "Largest HTTP/1.1 header section (request line and all fields) or trailer section in "
        "bytes (0 = only the line and field limits apply, about 800 KB with their defaults); "
        "bigger requests get 431. Bounds what a client that stalls mid-head costs in memory, "
        "like nginx's large_client_header_buffers (32 KB) and HTTP/2's max header list size.",
        to_int, default=65536, validate=at_least(0),
    ),
    Setting(
        "discard_body_limit", ("--keep-alive-discard",), S_LIMITS, "int", "INT",
        "When a view ignores an HTTP/1.1 request body, read and drop up to this many bytes so "
        "the connection can be reused; a bigger leftover body closes the connection instead.",
        to_int, default=65536, validate=at_least(0),
    ),
    Setting(
        "body_prebuffer", ("--body-prebuffer",), S_LIMITS, "int", "BYTES",
        "A request with a body starts its application only once the whole body, or this many "
        "bytes of it, has arrived; until then it waits in the poller under the body deadlines "
        "and holds no thread, so clients that stall their bodies cannot exhaust the pool "
        "(like nginx buffering bodies before the upstream sees them). 0 starts the application "
        "at the request head. HTTP/1.1 requests with `Expect: 100-continue` always start at "
        "the head. HTTP/2 applications that stream a request while answering it must set 0.",
        to_int, default=65536, validate=at_least(0),
    ),
    # Proxies ----------------------------------------------------------------
    Setting(
        "forwarded_allow_ips", ("--forwarded-allow-ips",), S_PROXY, "comma list", "IPS",
        "Peers (addresses or networks, `*` for any) trusted to set X-Forwarded-* headers. "
        "List your load balancers here so the scheme and client address they report are used.",
        to_ip_list, default="127.0.0.1,::1", validate=check_forwarded_ips,
        default_env="FORWARDED_ALLOW_IPS",
        default_doc="`127.0.0.1,::1`, or `$FORWARDED_ALLOW_IPS` when set",
    ),
    Setting(
        "proxy_protocol", ("--proxy-protocol",), S_PROXY, "mode", "MODE",
        "Expect a PROXY protocol header at the start of every connection, before TLS, and use "
        "the client address it carries: `v1`, `v2`, `auto` (either version; what the flag "
        "alone means) or `off` (`--no-proxy-protocol`). For TCP balancers such as nginx's "
        "stream module or HAProxy; connections without a valid header of the expected "
        "version are closed. true/false are read as auto/off.",
        to_proxy_protocol, default="off", kind="optional",
    ),
    Setting(
        "proxy_allow_ips", ("--proxy-allow-from",), S_PROXY, "comma list", "IPS",
        "Peers (addresses or networks, `*` for any) allowed to send a PROXY protocol header; "
        "with --proxy-protocol, connections from any other peer are closed. Unix-socket peers "
        "are always allowed.",
        to_ip_list, default="127.0.0.1,::1", validate=check_forwarded_ips,
    ),
    Setting(
        "secure_scheme_headers", (), S_PROXY, "dict", "DICT",
        "Headers, and their exact values, by which a peer in --forwarded-allow-ips says the "
        "client used HTTPS: a request carrying one of them sets `wsgi.url_scheme` to `https` "
        "when the value matches and `http` when it does not (if listed headers disagree, "
        "`http`). Header names are compared case-insensitively, values exactly. Config file "
        "only; set it to `{}` to ignore such headers.",
        to_header_dict,
        default={"X-FORWARDED-PROTOCOL": "ssl", "X-FORWARDED-PROTO": "https",
                 "X-FORWARDED-SSL": "on"},
        default_doc="`{'X-FORWARDED-PROTOCOL': 'ssl', 'X-FORWARDED-PROTO': 'https', "
                    "'X-FORWARDED-SSL': 'on'}`",
    ),
    Setting(
        "forwarder_headers", ("--forwarder-headers",), S_PROXY, "comma list", "LIST",
        "environ keys a peer in --forwarded-allow-ips may set through a request header of "
        "the same name (`SCRIPT_NAME: /app` sets SCRIPT_NAME, and PATH_INFO then loses that "
        "prefix). From other peers such headers are dropped, like every header name with an "
        "underscore. Typical values: SCRIPT_NAME, PATH_INFO, REMOTE_USER.",
        to_upper_list, default="SCRIPT_NAME,PATH_INFO",
    ),
    Setting(
        "root_path", ("--root-path",), S_PROXY, "string", "PATH",
        "The path the application is mounted at behind a proxy (`/api`): it becomes "
        "SCRIPT_NAME, and is taken off the front of PATH_INFO when the request path starts "
        "with it. gunicorn reads it for ASGI and `$SCRIPT_NAME` for WSGI; here both.",
        to_str, default="", default_env="SCRIPT_NAME",
        default_doc="empty, or `$SCRIPT_NAME` when set",
    ),
    # Logging ----------------------------------------------------------------
    Setting(
        "access_logfile", ("--access-logfile",), S_LOGGING, "path", "FILE",
        "Where to write one line per request; `-` means standard output. Unset means no access log, "
        "which saves a little time per request.",
        _opt_str, validate=check_parent_directory, is_path=True, aliases=("accesslog",),
    ),
    Setting(
        "access_logformat", ("--access-logformat",), S_LOGGING, "string", "FORMAT",
        "Access log line, with gunicorn's atoms such as `%(h)s` (client), `%(r)s` (request line), "
        "`%(s)s` (status), `%(D)s` (microseconds) and `%({header}i)s`; or `json` for one JSON "
        "object per line, easy to feed to log tooling.",
        to_str, default=GUNICORN_ACCESS_FORMAT, validate=check_access_logformat,
        aliases=("access_log_format",),
    ),
    Setting(
        "error_logfile", ("--error-logfile", "--log-file"), S_LOGGING, "path", "FILE",
        "Where server messages go; `-` means standard error. The file is reopened on SIGUSR1 "
        "so log rotation works.",
        to_str, default="-", validate=check_parent_directory, is_path=True,
        aliases=("errorlog",),
    ),
    Setting(
        "log_level", ("--log-level",), S_LOGGING, "choice", "LEVEL",
        "Least severe server message that is logged: debug, info, warning, error or critical. "
        "`debug` also shows protocol errors caused by clients.",
        to_log_level, default="info", choices=LOG_LEVELS, aliases=("loglevel",),
    ),
    Setting(
        "logconfig", ("--log-config",), S_LOGGING, "path", "FILE",
        "A logging configuration file in the `logging.config.fileConfig` (ini) format, applied "
        "after h2serve's own handlers. Loggers named `gunicorn.error` and `gunicorn.access` in "
        "it configure h2serve's error and access logs (as do `h2serve.error`, `h2serve.access`).",
        _opt_str, validate=check_file, is_path=True,
    ),
    Setting(
        "logconfig_dict", (), S_LOGGING, "dict", "DICT",
        "A logging configuration as a `logging.config.dictConfig` dictionary (config file only); "
        "`gunicorn.error` and `gunicorn.access` loggers in it configure h2serve's logs. "
        "Takes precedence over --log-config-json and --log-config.",
        to_log_dict, default={}, default_doc="`{}`",
    ),
    Setting(
        "logconfig_json", ("--log-config-json",), S_LOGGING, "path", "FILE",
        "A JSON file holding a `dictConfig` dictionary, as logconfig_dict. Takes precedence "
        "over --log-config.",
        _opt_str, validate=check_file, is_path=True,
    ),
    Setting(
        "syslog", ("--log-syslog",), S_LOGGING, "bool", "BOOL",
        "Also send the error log (and the access log, see "
        "--disable-redirect-access-to-syslog) to syslog at --log-syslog-to.",
        to_bool, default=False, kind="switch",
    ),
    Setting(
        "syslog_addr", ("--log-syslog-to",), S_LOGGING, "address", "SYSLOG_ADDR",
        "Where syslog listens: `unix://PATH` (add `#dgram` to force a datagram socket), "
        "`udp://HOST:PORT` or `tcp://HOST:PORT`.",
        to_str, default="unix:///dev/log", validate=check_syslog_address,
    ),
    Setting(
        "syslog_prefix", ("--log-syslog-prefix",), S_LOGGING, "string", "SYSLOG_PREFIX",
        "The program name in syslog lines is `h2serve.PREFIX.error` (or `.access`); the "
        "default prefix is --name, else `h2serve`.",
        _opt_str,
    ),
    Setting(
        "syslog_facility", ("--log-syslog-facility",), S_LOGGING, "choice", "FACILITY",
        "Syslog facility: user, daemon, auth, authpriv, cron, ftp, kern, lpr, mail, news, "
        "syslog, uucp or local0 to local7.",
        to_str, default="user", choices=SYSLOG_FACILITIES,
    ),
    Setting(
        "disable_redirect_access_to_syslog", ("--disable-redirect-access-to-syslog",),
        S_LOGGING, "bool", "BOOL",
        "With --log-syslog, keep the access log out of syslog.",
        to_bool, default=False, kind="switch",
    ),
    Setting(
        "statsd_host", ("--statsd-host",), S_LOGGING, "address", "STATSD_ADDR",
        "Send gunicorn's StatsD metrics (and h2serve's HTTP/2 ones, docs/metrics.md) to this "
        "collector: `HOST:PORT` (UDP, port 8125 if left out), `[IPV6]:PORT` or `unix:PATH` "
        "(a datagram socket). Sending never waits: a datagram that cannot go is dropped.",
        _opt_str, validate=check_statsd_address,
    ),
    Setting(
        "statsd_prefix", ("--statsd-prefix",), S_LOGGING, "string", "STATSD_PREFIX",
        "Put in front of every StatsD metric name; a `.` is added if it does not end with one.",
        to_str, default="",
    ),
    Setting(
        "dogstatsd_tags", ("--dogstatsd-tags",), S_LOGGING, "string", "DOGSTATSD_TAGS",
        "Datadog (dogstatsd) tags added to every StatsD line, comma-separated: `env:prod,app:web`.",
        to_str, default="",
    ),
    Setting(
        "metrics_bind", ("--metrics-bind",), S_LOGGING, "address", "ADDRESS",
        "Serve the metrics in Prometheus text format at `http://ADDRESS/metrics` (plain HTTP, "
        "from the master process), summed over all workers, restarted ones included. Any "
        "--bind form; keep it on loopback or a private network.",
        _opt_str, validate=lambda value: check_bind([value]),
    ),
    Setting(
        "stuck_request_timeout", ("--stuck-request-timeout",), S_LOGGING, "float (seconds)", "SECONDS",
        "Log a request still running after this long, once, with its request line, age, thread "
        "and the thread's stack; nothing is stopped (0 disables). Default: --timeout.",
        optional(to_float), validate=at_least(0), default_doc="the value of --timeout",
    ),
    # Process ----------------------------------------------------------------
    Setting(
        "pidfile", ("-p", "--pid"), S_PROCESS, "path", "FILE",
        "File to write the master's process id to, for init scripts that send it signals.",
        _opt_str, validate=check_parent_directory, is_path=True,
    ),
    Setting(
        "chdir", ("--chdir",), S_PROCESS, "path", "DIR",
        "Directory to change to before loading the application; it is also put first on "
        "sys.path so the application module is found there.",
        to_str, validate=check_directory, is_path=True,
        default_doc="the current directory",
    ),
    Setting(
        "proc_name", ("-n", "--name"), S_PROCESS, "string", "NAME",
        "Name shown for the processes in ps and top, to tell several servers apart.",
        _opt_str,
    ),
    Setting(
        "user", ("-u", "--user"), S_PROCESS, "user name or id", "USER",
        "Workers switch to this user after the listeners are bound and before the application "
        "is imported; the master stays as it started (to bind again on HUP). h2serve refuses "
        "to start when it cannot switch (not started as root).",
        optional(to_uid), default_doc="the user h2serve starts as",
    ),
    Setting(
        "group", ("-g", "--group"), S_PROCESS, "group name or id", "GROUP",
        "Workers switch to this group, as --user.",
        optional(to_gid), default_doc="the group h2serve starts as",
    ),
    Setting(
        "initgroups", ("--initgroups",), S_PROCESS, "bool", "BOOL",
        "With --user, also take that user's supplementary groups (from /etc/group) "
        "instead of keeping only --group.",
        to_bool, default=False, kind="bool",
    ),
    Setting(
        "umask", ("-m", "--umask"), S_PROCESS, "int", "INT",
        "File mode mask of the master and workers, set at start before any socket or file is "
        "made: it governs unix sockets, the pidfile, logs and the application's files. "
        "`022`, `0o22` and `18` are the same.",
        optional(to_umask), validate=between(0, 0o777),
        default_doc="the mask h2serve starts with",
    ),
    Setting(
        "raw_env", ("-e", "--env"), S_PROCESS, "list of KEY=VALUE", "ENV",
        "Environment variables set in the server before the application is imported "
        "(`-e DJANGO_SETTINGS_MODULE=mysite.settings`). Repeat the flag for several.",
        to_env_list, default=[], kind="list",
    ),
    Setting(
        "pythonpath", ("--pythonpath",), S_PROCESS, "comma list", "PATHS",
        "Directories put first on sys.path before the application is imported, "
        "comma-separated (`/srv/app,/srv/lib`).",
        to_path_list, default=[],
    ),
    Setting(
        "worker_tmp_dir", ("--worker-tmp-dir",), S_PROCESS, "path", "DIR",
        "Directory for the workers' heartbeat files (unlinked temporary files whose mode the "
        "worker changes as it beats). Point it at a tmpfs such as /dev/shm when $TMPDIR is on "
        "a slow or full disk.",
        _opt_str, validate=check_directory, is_path=True, default_doc="`$TMPDIR` or /tmp",
    ),
    Setting(
        "daemon", ("-D", "--daemon"), S_PROCESS, "bool", "BOOL",
        "Detach from the terminal and run in the background (fork twice, new session); "
        "standard input, output and error go to /dev/null unless "
        "--enable-stdio-inheritance. Not needed under systemd or a container runtime.",
        to_bool, default=False, kind="bool",
    ),
    Setting(
        "enable_stdio_inheritance", ("-R", "--enable-stdio-inheritance"), S_PROCESS, "bool",
        "BOOL",
        "With --daemon, keep standard input, output and error as they were (a shell "
        "redirection to a file keeps working) and make Python's output unbuffered.",
        to_bool, default=False, kind="bool",
    ),
    Setting(
        "capture_output", ("--capture-output",), S_PROCESS, "bool", "BOOL",
        "Send the application's standard output and error (print, stray tracebacks) to "
        "--error-logfile; only when that is a file, not `-`.",
        to_bool, default=False, kind="bool",
    ),
    # Dirty arbiters (docs/dirty.md) --------------------------------------------
    Setting(
        "dirty_apps", ("--dirty-app",), S_DIRTY, "list of module:Class", "APP",
        "Dirty apps (DirtyApp subclasses) the dirty workers load once and run actions of, for "
        "views calling `h2serve.dirty.get_dirty_client()`. `module:Class:N` (or a `workers = N` "
        "class attribute) loads the app in only N dirty workers. Repeat the flag for several.",
        to_str_list, default=[], validate=check_dirty_apps, kind="list",
    ),
    Setting(
        "dirty_workers", ("--dirty-workers",), S_DIRTY, "int", "INT",
        "Dirty worker processes, under a dirty arbiter the master starts and watches "
        "(0 = no dirty arbiter). Size it by memory: each loads its dirty apps.",
        to_int, default=0, validate=at_least(0),
    ),
    Setting(
        "dirty_timeout", ("--dirty-timeout",), S_DIRTY, "float (seconds)", "SECONDS",
        "A dirty action silent this long (no result, no stream item) is given up by its caller "
        "(DirtyTimeoutError) and its dirty worker killed and replaced (0 disables). Also the "
        "client's default timeout.",
        to_float, default=300.0, validate=at_least(0),
    ),
    Setting(
        "dirty_threads", ("--dirty-threads",), S_DIRTY, "int", "INT",
        "Actions one dirty worker runs at once; more calls wait for a free one.",
        to_int, default=1, validate=at_least(1),
    ),
    Setting(
        "dirty_graceful_timeout", ("--dirty-graceful-timeout",), S_DIRTY, "float (seconds)",
        "SECONDS",
        "On stop or HUP, how long dirty workers may finish their running actions before they "
        "are killed.",
        to_float, default=30.0, validate=at_least(0),
    ),
    *(
        Setting(
            name, (), S_HOOKS, "callable", "CALLABLE",
            f"gunicorn's {name} hook, called by the {where}; config file only (a function, "
            f"or its dotted path). See docs/gunicorn.md, \"Server hooks\".",
            to_hook(name), default=None,
        )
        for name, (_arity, where) in HOOKS.items()
    ),
)

SETTINGS_BY_NAME: dict[str, Setting] = {setting.name: setting for setting in SETTINGS}

# Names a config file may use: ours, plus gunicorn's spelling where it differs.
CONFIG_NAMES: dict[str, Setting] = {
    **{alias: setting for setting in SETTINGS for alias in setting.aliases},
    **SETTINGS_BY_NAME,
}


# --------------------------------------------------------------------------
# Coming from gunicorn. Its settings that share a name (or an alias) with ours
# mean the same thing and are read from a gunicorn config file as they are.
# These have no meaning here: a config file that sets them gets a warning, a
# command line that uses their flags gets an error naming the reason.

GUNICORN_ONLY: dict[str, tuple[tuple[str, ...], str]] = {
    # name: (gunicorn's command-line flags, why it does not apply and what to do instead)
    name: (flags, REFUSED_REASONS[name])
    for name, flags, status in GUNICORN_SETTINGS if status == REFUSED
}

