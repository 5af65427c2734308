"""gunicorn 27.0.1's settings, all 120, and what h2serve does with each.

The list is data (names and flags as gunicorn 27.0.1 declares them), so a test
can fail when a gunicorn name has no status, when a name marked implemented is
unknown to h2serve's Config, or when a refused one would be taken silently.
Implemented names are settings of h2serve.settings (same name or an alias);
refused ones have a reason below, shown as a warning when a config file sets
them and as the error when their flag is used. docs/gunicorn.md is generated
from this table.
"""

from __future__ import annotations

IMPLEMENTED = "implemented"
REFUSED = "refused"

# (name, gunicorn's flags, status here), in gunicorn's order.
GUNICORN_SETTINGS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ('config', ('-c', '--config'), IMPLEMENTED),
    ('wsgi_app', (), IMPLEMENTED),
    ('bind', ('-b', '--bind'), IMPLEMENTED),
    ('backlog', ('--backlog',), IMPLEMENTED),
    ('workers', ('-w', '--workers'), IMPLEMENTED),
    ('worker_class', ('-k', '--worker-class'), IMPLEMENTED),
    ('threads', ('--threads',), IMPLEMENTED),
    ('worker_connections', ('--worker-connections',), IMPLEMENTED),
    ('max_requests', ('--max-requests',), IMPLEMENTED),
    ('max_requests_jitter', ('--max-requests-jitter',), IMPLEMENTED),
    ('timeout', ('-t', '--timeout'), IMPLEMENTED),
    ('graceful_timeout', ('--graceful-timeout',), IMPLEMENTED),
    ('keepalive', ('--keep-alive',), IMPLEMENTED),
    ('limit_request_line', ('--limit-request-line',), IMPLEMENTED),
    ('limit_request_fields', ('--limit-request-fields',), IMPLEMENTED),
    ('limit_request_field_size', ('--limit-request-field_size',), IMPLEMENTED),
    ('reload', ('--reload',), IMPLEMENTED),
    ('reload_engine', ('--reload-engine',), REFUSED),
    ('reload_extra_files', ('--reload-extra-file',), REFUSED),
    ('spew', ('--spew',), REFUSED),
    ('check_config', ('--check-config',), IMPLEMENTED),
    ('print_config', ('--print-config',), IMPLEMENTED),
    ('preload_app', ('--preload',), IMPLEMENTED),
    ('sendfile', ('--no-sendfile',), REFUSED),
    ('reuse_port', ('--reuse-port',), IMPLEMENTED),
    ('chdir', ('--chdir',), IMPLEMENTED),
    ('daemon', ('-D', '--daemon'), IMPLEMENTED),
    ('raw_env', ('-e', '--env'), IMPLEMENTED),
    ('pidfile', ('-p', '--pid'), IMPLEMENTED),
    ('worker_tmp_dir', ('--worker-tmp-dir',), IMPLEMENTED),
    ('user', ('-u', '--user'), IMPLEMENTED),
    ('group', ('-g', '--group'), IMPLEMENTED),
    ('umask', ('-m', '--umask'), IMPLEMENTED),
    ('initgroups', ('--initgroups',), IMPLEMENTED),
    ('tmp_upload_dir', (), REFUSED),
    ('secure_scheme_headers', (), IMPLEMENTED),
    ('forwarded_allow_ips', ('--forwarded-allow-ips',), IMPLEMENTED),
    ('accesslog', ('--access-logfile',), IMPLEMENTED),
    ('disable_redirect_access_to_syslog', ('--disable-redirect-access-to-syslog',), IMPLEMENTED),
    ('access_log_format', ('--access-logformat',), IMPLEMENTED),
    ('errorlog', ('--error-logfile', '--log-file'), IMPLEMENTED),
    ('loglevel', ('--log-level',), IMPLEMENTED),
    ('capture_output', ('--capture-output',), IMPLEMENTED),
    ('logger_class', ('--logger-class',), REFUSED),
    ('logconfig', ('--log-config',), IMPLEMENTED),
    ('logconfig_dict', (), IMPLEMENTED),
    ('logconfig_json', ('--log-config-json',), IMPLEMENTED),
    ('syslog_addr', ('--log-syslog-to',), IMPLEMENTED),
    ('syslog', ('--log-syslog',), IMPLEMENTED),
    ('syslog_prefix', ('--log-syslog-prefix',), IMPLEMENTED),
    ('syslog_facility', ('--log-syslog-facility',), IMPLEMENTED),
    ('enable_stdio_inheritance', ('-R', '--enable-stdio-inheritance'), IMPLEMENTED),
    ('statsd_host', ('--statsd-host',), IMPLEMENTED),
    ('dogstatsd_tags', ('--dogstatsd-tags',), IMPLEMENTED),
    ('statsd_prefix', ('--statsd-prefix',), IMPLEMENTED),
    ('enable_backlog_metric', ('--enable-backlog-metric',), REFUSED),
    ('proc_name', ('-n', '--name'), IMPLEMENTED),
    ('default_proc_name', (), REFUSED),
    ('pythonpath', ('--pythonpath',), IMPLEMENTED),
    ('paste', ('--paste', '--paster'), REFUSED),
    ('on_starting', (), IMPLEMENTED),
    ('on_reload', (), IMPLEMENTED),
    ('when_ready', (), IMPLEMENTED),
    ('pre_fork', (), IMPLEMENTED),
    ('post_fork', (), IMPLEMENTED),
    ('post_worker_init', (), IMPLEMENTED),
    ('worker_int', (), IMPLEMENTED),
    ('worker_abort', (), IMPLEMENTED),
    ('pre_exec', (), IMPLEMENTED),
    ('pre_request', (), IMPLEMENTED),
    ('post_request', (), IMPLEMENTED),
    ('child_exit', (), IMPLEMENTED),
    ('worker_exit', (), IMPLEMENTED),
    ('nworkers_changed', (), IMPLEMENTED),
    ('on_exit', (), IMPLEMENTED),
    ('ssl_context', (), IMPLEMENTED),
    ('proxy_protocol', ('--proxy-protocol',), IMPLEMENTED),
    ('proxy_allow_ips', ('--proxy-allow-from',), IMPLEMENTED),
    ('protocol', ('--protocol',), REFUSED),
    ('uwsgi_allow_ips', ('--uwsgi-allow-from',), REFUSED),
    ('keyfile', ('--keyfile',), IMPLEMENTED),
    ('certfile', ('--certfile',), IMPLEMENTED),
    ('ssl_version', ('--ssl-version',), REFUSED),
    ('cert_reqs', ('--cert-reqs',), IMPLEMENTED),
    ('ca_certs', ('--ca-certs',), IMPLEMENTED),
    ('suppress_ragged_eofs', ('--suppress-ragged-eofs',), REFUSED),
    ('do_handshake_on_connect', ('--do-handshake-on-connect',), REFUSED),
    ('ciphers', ('--ciphers',), IMPLEMENTED),
    ('http_protocols', ('--http-protocols',), IMPLEMENTED),
    ('http2_cleartext', ('--http2-cleartext',), IMPLEMENTED),
    ('http2_max_concurrent_streams', ('--http2-max-concurrent-streams',), IMPLEMENTED),
    ('http2_initial_window_size', ('--http2-initial-window-size',), IMPLEMENTED),
    ('http2_max_frame_size', ('--http2-max-frame-size',), IMPLEMENTED),
    ('http2_max_header_list_size', ('--http2-max-header-list-size',), IMPLEMENTED),
    ('raw_paste_global_conf', ('--paste-global',), REFUSED),
    ('permit_obsolete_folding', ('--permit-obsolete-folding',), REFUSED),
    ('strip_header_spaces', ('--strip-header-spaces',), REFUSED),
    ('permit_unconventional_http_method', ('--permit-unconventional-http-method',), REFUSED),
    ('permit_unconventional_http_version', ('--permit-unconventional-http-version',), REFUSED),
    ('casefold_http_method', ('--casefold-http-method',), REFUSED),
    ('forwarder_headers', ('--forwarder-headers',), IMPLEMENTED),
    ('header_map', ('--header-map',), REFUSED),
    ('asgi_loop', ('--asgi-loop',), REFUSED),
    ('asgi_lifespan', ('--asgi-lifespan',), REFUSED),
    ('asgi_disconnect_grace_period', ('--asgi-disconnect-grace-period',), REFUSED),
    ('websocket_max_message_size', ('--websocket-max-message-size',), REFUSED),
    ('http_parser', ('--http-parser',), REFUSED),
    ('root_path', ('--root-path',), IMPLEMENTED),
    ('dirty_apps', ('--dirty-app',), IMPLEMENTED),
    ('dirty_workers', ('--dirty-workers',), IMPLEMENTED),
    ('dirty_timeout', ('--dirty-timeout',), IMPLEMENTED),
    ('dirty_threads', ('--dirty-threads',), IMPLEMENTED),
    ('dirty_graceful_timeout', ('--dirty-graceful-timeout',), IMPLEMENTED),
    ('on_dirty_starting', (), IMPLEMENTED),
    ('dirty_post_fork', (), IMPLEMENTED),
    ('dirty_worker_init', (), IMPLEMENTED),
    ('dirty_worker_exit', (), IMPLEMENTED),
    ('control_socket', ('--control-socket',), REFUSED),
    ('control_socket_mode', ('--control-socket-mode',), REFUSED),
    ('control_socket_disable', ('--no-control-socket',), REFUSED),
)

_NO_DAEMON = "there is no daemon mode; run under systemd, a container runtime or another supervisor"
_LOGCONF = ("logs go through the standard loggers `h2serve.error` and `h2serve.access`; "
            "configure their handlers with logconfig_dict, logconfig_json or logconfig")
_STRICT_HTTP = "HTTP/1.1 parsing is strict (RFC 9112) and cannot be relaxed"
_ASGI = "h2serve serves WSGI applications only; use an ASGI server for ASGI and websockets"
_CONTROL = ("there is no control socket; the master obeys gunicorn's signals (HUP, TERM, QUIT, "
            "INT, TTIN, TTOU, USR1), see docs/gunicorn.md")
_PASTE = "PasteDeploy is not supported; name the WSGI callable as APP"

REFUSED_REASONS: dict[str, str] = {
    # name: why it does not apply here, and what to do instead
    "sendfile": ("responses are written by the worker (through TLS); "
                 "wsgi.file_wrapper streams files in blocks"),
    "reload_engine": ("--reload polls modification times once a second"),
    "reload_extra_files": ("--reload watches the application's imported modules only"),
    "spew": ("there is no line tracer; use a debugger or faulthandler"),
    "tmp_upload_dir": ("request bodies are streamed to the application, never spooled to disk"),
    "logger_class": _LOGCONF,
    "default_proc_name": ("use proc_name"),
    "paste": _PASTE,
    "raw_paste_global_conf": _PASTE,
    "ssl_version": ("TLS 1.2 is the minimum; OpenSSL negotiates the highest "
                    "version both sides support"),
    "suppress_ragged_eofs": ("a TLS connection closed without close_notify is treated as closed"),
    "do_handshake_on_connect": ("handshakes run in steps, under --handshake-timeout, without "
                                "holding a thread while the client is silent"),
    "strip_header_spaces": _STRICT_HTTP,
    "permit_unconventional_http_method": _STRICT_HTTP,
    "permit_unconventional_http_version": _STRICT_HTTP,
    "casefold_http_method": _STRICT_HTTP,
    "permit_obsolete_folding": _STRICT_HTTP,
    "header_map": ("header names with an underscore are always dropped "
                   "(gunicorn's `drop`), so they cannot pose as dashed names"),
    "enable_backlog_metric": ("the accept queue is not sent to StatsD; `ss -lnt` shows it, and "
                              "workers already read it to share a surge (docs/metrics.md)"),
    "protocol": ("only HTTP is spoken (HTTP/1.1 and HTTP/2); for uwsgi, put nginx's "
                 "proxy_pass in front instead of uwsgi_pass"),
    "uwsgi_allow_ips": "the uwsgi protocol is not spoken; see protocol",
    "http_parser": ("h2serve has one strict HTTP/1.1 parser (RFC 9112) and h2 for HTTP/2; "
                    "there is nothing to choose"),
    **{name: _ASGI for name in ("asgi_loop", "asgi_lifespan", "asgi_disconnect_grace_period",
                                "websocket_max_message_size")},
    **{name: _CONTROL for name in ("control_socket", "control_socket_mode",
                                   "control_socket_disable")},
}

