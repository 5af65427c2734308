"""The threaded worker: one poller thread owns the sockets, a pool runs apps.

The poller is the only thread that touches the selector and the connection
tables. Pool threads hand work back to it through the method queue (a
SimpleQueue plus a self-pipe that wakes the select call), so none of the
poller's state needs a lock.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import selectors
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from h2serve import hooks, metrics
from h2serve.allocator import MemoryReturn
from h2serve.connection.common import ByteBudget
from h2serve.connection.peer_shares import PeerShares
from h2serve.connection.setup import Connection
from h2serve.lifecycle import APP_LOAD_ERROR, WORKER_BOOT_ERROR, Heartbeat
from h2serve.loadshare import LoadTable
from h2serve.logs import AccessLog, report_start_failure
from h2serve.pool import ThreadPool
from h2serve.stuck import StuckWatcher, describe_in_flight, dump_stacks_on_usr2, log_in_flight
from h2serve.transport.forwarded import ForwardedPolicy
from h2serve.transport.listeners import accept_queue_length, stop_new_handshakes

log = logging.getLogger("h2serve.error")

TICK_S = 0.25            # longest select() wait: deadline precision and heartbeat rate
# How often the HTTP/2 connections' timers run (on_tick) while the poller is busy:
# a sweep visits every connection, so it must not follow every select() when
# there are thousands of them.
SWEEP_S = 0.01
ACCEPT_YIELD_S = 0.005   # a busier worker leaves new connections to a less busy one this long
MAX_YIELD_S = 0.02       # ... but takes them itself if nobody did by then
SIBLING_BOOT_WAIT_S = 1.0  # a starting worker waits this long at most for siblings still booting
ACCEPT_BATCH = 64        # connections accepted per listener per wake-up at least
LOAD_SLACK_DIVISOR = 16  # a worker takes a connection while it holds <= least + least/16
SURGE_QUEUE = 32         # with more than this waiting to be accepted, no worker yields
# An unused connection past its address's cap is closed once silent this long:
# in a surge of clients from one address (a benchmark, a NAT gateway) the first
# request may come a second or two after the handshake.
UNUSED_GRACE_S = 3.0
EVICT_TRIES = 8          # idle connections tried per accept at worker_connections
BACKLOG_PASS_PAUSE_S = 0.01
LINGER_S = 2.0           # a closing connection's unread input is drained this long
GAUGE_INTERVAL_S = 0.5   # how often the poller publishes the worker's gauges

_WAKE = object()


class Worker:
    """One worker process: accepts, multiplexes and serves until told to stop."""

    def __init__(self, cfg: Any, listeners: list[socket.socket], *, app: Callable | None = None,
                 ssl_context: ssl.SSLContext | None = None, heartbeat_fd: int | None = None,
                 ppid: int | None = None, load: tuple[LoadTable, int] | None = None,
                 metrics_slot: tuple[metrics.MetricsTable, int] | None = None,
                 hook_view: hooks.WorkerView | None = None) -> None:
        self.cfg = cfg
        # What server hooks get as `worker` (h2serve.hooks); pre_request and
        # post_request, when set, run around every request.
        self.hook_view = hook_view or hooks.WorkerView(cfg, 0, ppid or os.getppid())
        self.hook_view.attach(self)
        self.request_hooks = hooks.RequestHooks.for_worker(cfg, self.hook_view)
        self.requests_served = 0
        self.listeners = listeners
        self.app = app
        self.ssl_context = ssl_context
        self.heartbeat = Heartbeat(heartbeat_fd)
        self.ppid = ppid if ppid is not None else os.getppid()
        self.access_log: AccessLog | None = None
        self.forwarded = ForwardedPolicy.from_config(cfg)
        self.proxy_policy = ForwardedPolicy(list(cfg.proxy_allow_ips))
        self.multiprocess = cfg.workers > 1
        self.pool = ThreadPool(cfg.threads)
        # Most threads one client address may keep waiting on it (max_blocked_threads).
        self.shares = PeerShares(cfg.max_blocked_threads or max(1, cfg.threads // 2))
        # Response bytes all its HTTP/2 connections may keep queued for the poller.
        self.queued_bodies = ByteBudget(cfg.http2_response_queue_limit)

        self.selector = selectors.DefaultSelector()
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._wake_pending = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

        # Poller-owned state: touched only on the poller thread.
        self.connections: set[Connection] = set()
        self.eviction_logged_at = -60.0
        self.unused_logged_at = -60.0
        # Plain HTTP on a TLS listener: refused since the last warning, and when that
        # was (updated by the pool threads doing setup; a lost update only miscounts).
        self.plain_http_refused = 0
        self.plain_http_warned_at = -3600.0
        self.memory = MemoryReturn()
        # Poller: handshaken connections that have not started a request yet, by
        # address, oldest first (conn -> when noted); addresses past
        # max_unused_connections_per_peer are in unused_over, shed each tick.
        self.unused_by_peer: dict[str, dict[Connection, float]] = {}
        self.unused_over: set[str] = set()
        self.waiting: dict[Connection, float] = {}   # conn -> deadline, waiting for readable
        # HTTP/1.1 connections whose next request waits for its address's share
        # (HTTP1Driver._may_start): conn -> deadline. Not read meanwhile; retried each tick.
        self.share_waiting: dict[Connection, float] = {}
        self.h2_connections: set[Connection] = set()
        self.write_turns = 0           # EVENT_WRITE turns so far (_write_turn)
        self.sweep_due = 0.0           # the next on_tick sweep of h2_connections (_expire)
        self.lingering: dict[Connection, float] = {}
        self.accepting = False
        self.running = True
        self.draining = False          # read by pool threads: Connection: close, GOAWAY
        self.drain_deadline = 0.0
        self.fast_exit = False

        # Workers sharing one listener are all woken for each connection. Each
        # accept first asks the load table whether a less busy worker should take
        # it instead (see _accept), so connections spread over workers.
        self.load_table, self.load_slot = load if load is not None else (None, 0)
        self.yield_since = 0.0         # when this worker began leaving connections to others
        self.accept_retry_at = 0.0     # listeners paused for a yield come back then
        self._served = itertools.count(1)
        self.max_requests = self._max_requests()
        self.tls = ssl_context is not None
        self.poller_ident = threading.get_ident()  # serve_forever sets it to the poller's
        self.metrics_table, self.metrics_slot = metrics_slot if metrics_slot is not None else (None, 0)
        self.stuck_watcher: StuckWatcher | None = None
        self.gauges_due = 0.0

    # --- setup -------------------------------------------------------------------

    def _max_requests(self) -> int:
        if self.cfg.max_requests <= 0:
            return 0
        jitter = self.cfg.max_requests_jitter
        if jitter > 0:
            return self.cfg.max_requests + int.from_bytes(os.urandom(4), "big") % (jitter + 1)
        return self.cfg.max_requests

    def _install_signals(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.call_soon(self.begin_shutdown, "SIGTERM"))
        # INT is graceful like TERM: Ctrl-C reaches every process of the group.
        signal.signal(signal.SIGINT, lambda *_: self.call_soon(self._interrupted))
        signal.signal(signal.SIGQUIT, lambda *_: self._quit())
        signal.signal(signal.SIGABRT, lambda *_: self._abort())
        signal.signal(signal.SIGUSR1, lambda *_: self.call_soon(self._reopen_logs))
        signal.signal(signal.SIGHUP, signal.SIG_IGN)     # the arbiter handles reloads
        signal.signal(signal.SIGTTIN, signal.SIG_IGN)
        signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)

    def _interrupted(self) -> None:
        """Poller: SIGINT is a graceful stop, after gunicorn's worker_int hook."""
        hooks.call_logged(self.cfg, "worker_int", self.hook_view)
        self.begin_shutdown("SIGINT")

    def _quit(self) -> None:
        """Main thread, in the SIGQUIT handler: stop at once."""
        self.fast_exit = True
        self.running = False
        hooks.call_logged(self.cfg, "worker_int", self.hook_view)

    def _abort(self) -> None:
        """Main thread, in the SIGABRT handler (the master sends it to a worker
        past --timeout, after SIGUSR2 for its stacks): worker_abort, then exit."""
        self.running = False
        hooks.call_logged(self.cfg, "worker_abort", self.hook_view)
        raise SystemExit(1)

    def _reopen_logs(self) -> None:
        from h2serve.logs import reopen_logs
        reopen_logs()
        if self.cfg.capture_output:   # print() follows the error log to its new file
            from h2serve.process import capture_output
            capture_output(self.cfg.error_logfile)
        dump_stacks_on_usr2()   # the old file descriptor is closed now

    # --- metrics and stuck requests ------------------------------------------------

    def _start_metrics(self) -> None:
        """This worker's sinks (its table slot, StatsD), the log counter, the stuck watcher."""
        cfg, table = self.cfg, self.metrics_table
        statsd = None
        if cfg.statsd_host:
            from h2serve.statsd import StatsdClient

            try:
                statsd = StatsdClient(cfg.statsd_host, cfg.statsd_prefix, cfg.dogstatsd_tags)
            except OSError as exc:
                log.warning("statsd_host %s: %s; no StatsD metrics from this worker", cfg.statsd_host, exc)
        numbers = table.numbers(self.metrics_slot) if table is not None and (
            cfg.metrics_bind or cfg.statsd_host) else None
        # (replaces what the arbiter installed for itself before fork)
        metrics.install(metrics.Recorder(numbers, statsd) if numbers is not None or statsd else None)
        metrics.install_log_counter()
        limit = cfg.stuck_request_timeout if cfg.stuck_request_timeout is not None else cfg.timeout
        publish = None
        if table is not None:
            slot = self.metrics_slot
            publish = lambda text: table.publish_text(slot, text)  # noqa: E731
        if limit or publish is not None:
            self.stuck_watcher = StuckWatcher(limit, self.pool.size, publish)
            self.stuck_watcher.start()
        dump_stacks_on_usr2()

    def _publish_gauges(self, now: float) -> None:
        """Poller thread, twice a second: current values for the arbiter to sum."""
        self.gauges_due = now + GAUGE_INTERVAL_S
        recorder = metrics.recorder()
        if recorder is None or recorder.numbers is None:
            return
        streams = waiting = 0
        for conn in self.h2_connections:
            if conn.driver is not None:
                streams += len(conn.driver.streams)
                waiting += len(conn.driver.sched.ready)   # streams beyond the connection's pool share
        watcher = self.stuck_watcher
        recorder.gauges((len(self.connections), len(self.h2_connections), streams,
                         self.pool.queued() + waiting, len(metrics.IN_FLIGHT),
                         watcher.stuck_now if watcher is not None else 0))

    # --- the method queue ------------------------------------------------------

    def call_soon(self, fn: Callable, *args: Any) -> None:
        """Run fn(*args) on the poller thread. Safe from any thread.

        Only the first call after the poller last drained the queue writes to
        the pipe; the poller clears the flag before draining, so a call that
        sees it set is picked up by the drain in progress or, if it came after
        that drain's count of the queue, by the next turn's."""
        self._calls.put((fn, args))
        if not self._wake_pending:
            self._wake_pending = True
            try:
                os.write(self._wake_w, b"\0")
            except (BlockingIOError, OSError):
                pass  # a full pipe already guarantees a wake-up

    def _run_calls(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass
        self._wake_pending = False
        calls = self._calls
        # Only the calls queued so far: one that queues another (a connection's
        # next read turn, read_more) is run at the next turn, after select(),
        # so it cannot hold the poller from the other sockets.
        for _ in range(calls.qsize()):
            try:
                fn, args = calls.get_nowait()
            except queue.Empty:
                return
            try:
                fn(*args)
            except Exception:
                log.exception("error in a poller call %r", fn)

    # --- requests served ---------------------------------------------------------

    def request_done(self) -> None:
        """Counts requests (for max_requests, and worker.nr in hooks); pool threads."""
        served = self.requests_served = next(self._served)
        if served == self.max_requests:
            self.call_soon(self.begin_shutdown, f"max_requests ({self.max_requests}) reached",
                           True)

    # --- connection states (poller thread only) ----------------------------------

    def await_readable(self, conn: Connection, deadline: float) -> None:
        """Park conn in the poller until it is readable (then conn.on_readable runs
        in a pool thread) or until deadline (then it is closed)."""
        if conn.closed:
            return
        if self.draining and conn.idle_keepalive:
            self._close_idle(conn)
            return
        if self._watch(conn):
            self.waiting[conn] = deadline

    def await_share(self, conn: Connection, deadline: float) -> None:
        """Park an HTTP/1.1 connection whose request may not start yet (its address
        is at its share: HTTP1Driver._may_start); _retry_shares starts it."""
        if not conn.closed:
            self.share_waiting[conn] = deadline

    def _retry_shares(self, now: float) -> None:
        for conn, deadline in list(self.share_waiting.items()):
            if now >= deadline:
                del self.share_waiting[conn]
                self.pool.submit_urgent(conn.driver.reject_unstarted)
            elif (self.shares.arriving.get(conn.peer_key, 0) < self.shares.cap
                  and not self.shares.over_share(conn.peer_key)):
                del self.share_waiting[conn]
                self.pool.submit(conn.on_readable)

    def attach_h2(self, conn: Connection) -> None:
        """An HTTP/2 connection stays registered; its reads run on the poller."""
        if conn.closed or not self._watch(conn):
            return
        self.h2_connections.add(conn)
        if self.draining:
            conn.driver.start_goaway()
        conn.driver.on_readable()  # bytes may already sit in the TLS buffer

    def _watch(self, conn: Connection) -> bool:
        """Register conn for reads; a socket the selector refuses is released."""
        try:
            self.selector.register(conn.sock, selectors.EVENT_READ, conn)
        except (KeyError, ValueError, OSError):
            self.release(conn)
            return False
        return True

    def want_write(self, conn: Connection, wanted: bool) -> None:
        if conn.closed or conn not in self.h2_connections:
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if wanted else 0)
        try:
            self.selector.modify(conn.sock, events, conn)
        except (KeyError, ValueError, OSError):
            pass

    def pause_reading(self, conn: Connection, paused: bool) -> None:
        """Stop reading an HTTP/2 connection whose output the peer is not taking."""
        if conn.closed or conn not in self.h2_connections:
            return
        events = selectors.EVENT_WRITE if paused else selectors.EVENT_READ
        if conn.driver.wants_write or conn.driver.more_turns:
            events |= selectors.EVENT_WRITE
        try:
            self.selector.modify(conn.sock, events, conn)
        except (KeyError, ValueError, OSError):
            pass

    def release(self, conn: Connection) -> None:
        """Forget and close a connection: the one place connections are counted down."""
        if conn.closed:
            return
        conn.closed = True
        unused = self.unused_by_peer.get(conn.peer_key)
        if unused is not None and unused.pop(conn, None) is not None and not unused:
            del self.unused_by_peer[conn.peer_key]
        self._unregister(conn)
        self.waiting.pop(conn, None)
        self.share_waiting.pop(conn, None)
        self.h2_connections.discard(conn)
        self.lingering.pop(conn, None)
        conn.close_socket()
        self.connections.discard(conn)
        self._publish_load()
        if not self.accepting and not self.draining and not self.accept_retry_at:
            self._resume_accepting()

    def linger(self, conn: Connection) -> None:
        """Half-close and drain what the peer still sends, so closing with unread
        input never turns our last response into a reset."""
        if conn.closed:
            return
        self._unregister(conn)
        self.waiting.pop(conn, None)
        self.h2_connections.discard(conn)
        if conn.driver is not None:
            conn.driver.mark_dead()   # no app thread may touch the socket from here on
        try:
            conn.sock.setblocking(False)
            conn.sock.shutdown(socket.SHUT_WR)  # on TLS this also drops the SSL layer
            self.selector.register(conn.sock, selectors.EVENT_READ, conn)
        except (OSError, KeyError, ValueError):
            self.release(conn)
            return
        conn.lingering = True
        self.lingering[conn] = time.monotonic() + LINGER_S

    def _unregister(self, conn: Connection) -> None:
        try:
            self.selector.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass

    def _close_idle(self, conn: Connection) -> None:
        """Close an idle keep-alive connection, unless a request just arrived."""
        self.waiting.pop(conn, None)
        self._unregister(conn)
        if conn.has_input():
            self.pool.submit(conn.on_readable)
            return
        self.release(conn)

    # --- accept ------------------------------------------------------------------

    def _evict_idle(self, candidates: tuple[list[Connection], list[Connection]]) -> bool:
        """At worker_connections, make room for a new client by closing the
        connection that has been idle longest, as nginx reuses idle keep-alive
        connections: one that sent nothing yet or waits between requests
        (oldest wait first), else an HTTP/2 connection without a stream. Only
        when every connection is busy does accepting pause. True if room was made."""
        waits, idle = candidates
        for conn in waits:
            self._close_idle(conn)
            if conn.closed:
                self._note_eviction()
                return True
        if idle:
            oldest = min(idle, key=lambda c: c.driver.last_activity)
            oldest.driver.close_idle()
            self.release(oldest)
            oldest.driver = None   # idle: no thread holds it
            self._note_eviction()
            return True
        return False

    def _idle_candidates(self) -> tuple[list[Connection], list[Connection]]:
        """Connections that may be closed to make room: the oldest few waiting
        idle in the poller, and the HTTP/2 connections without a stream."""
        idle_waits = (c for c in self.waiting if c.idle_keepalive or c.stage != "h1")
        waits = list(itertools.islice(idle_waits, EVICT_TRIES))
        idle = [c for c in self.h2_connections if c.driver is not None and c.driver.is_idle()]
        return waits, idle

    def note_unused(self, conn: Connection) -> None:
        """Poller (call_soon from the handshake thread): conn has a protocol and
        no request yet; count it against its address's unused connections."""
        cap = self.cfg.max_unused_connections_per_peer
        if not cap or conn.closed or conn.used:
            return
        unused = self.unused_by_peer.setdefault(conn.peer_key, {})
        unused[conn] = time.monotonic()
        if len(unused) > cap:
            self.unused_over.add(conn.peer_key)

    def _shed_unused(self, now: float) -> None:
        """Poller, each tick: close the oldest unused connections of each address
        past max_unused_connections_per_peer, once they have been silent
        UNUSED_GRACE_S (a connection's first request is usually in the same
        flight as its handshake's end)."""
        cap = self.cfg.max_unused_connections_per_peer
        for peer in list(self.unused_over):
            unused = self.unused_by_peer.get(peer, {})
            for conn in [c for c in unused if c.used]:
                del unused[conn]
            excess = len(unused) - cap
            for conn, noted in list(unused.items()):
                if excess <= 0 or now - noted < UNUSED_GRACE_S:
                    break
                if self._close_unused(conn):
                    excess -= 1
                    self._note_unused_shed(peer)
            if len(unused) <= cap:
                self.unused_over.discard(peer)

    def _close_unused(self, conn: Connection) -> bool:
        """Close one unused connection if it is idle in the poller (not being
        read or served by a pool thread right now, nothing unread from its
        peer); True if it was closed."""
        if conn.stage == "h2":
            driver = conn.driver
            if (conn not in self.h2_connections or not driver.is_idle() or driver.more_to_read
                    or driver.proto.has_backlog or conn.has_input()):
                return False
            conn.driver.close_idle()
            self.release(conn)
            conn.driver = None   # no thread holds it: freed now, not at the next full collection
            return True
        if conn not in self.waiting:
            return False
        self._close_idle(conn)
        return conn.closed

    def _note_unused_shed(self, peer: str) -> None:
        self.memory.pushed_out += 1
        now = time.monotonic()
        if now >= self.unused_logged_at + 60:
            self.unused_logged_at = now
            log.warning("%s holds more than %d connections without a request "
                        "(max_unused_connections_per_peer): closing its oldest",
                        peer or "unix", self.cfg.max_unused_connections_per_peer)

    def _note_eviction(self) -> None:
        self.memory.pushed_out += 1
        now = time.monotonic()
        if now >= self.eviction_logged_at + 60:
            self.eviction_logged_at = now
            log.warning("worker_connections (%d) reached: closing the connections idle "
                        "longest to make room for new clients", self.cfg.worker_connections)

    def _publish_load(self) -> None:
        if self.load_table is not None:
            self.load_table.publish(self.load_slot,
                                    None if self.draining else len(self.connections))

    def _await_booting_siblings(self) -> None:
        """Start accepting together with the workers forked at the same time
        (bounded by SIBLING_BOOT_WAIT_S). Connections made the moment the
        server comes up would otherwise all go to the first worker ready, and
        HTTP/2 and keep-alive connections stay where they land."""
        if self.load_table is None:
            return
        deadline = time.monotonic() + SIBLING_BOOT_WAIT_S
        while (self.load_table.others_booting(self.load_slot)
               and time.monotonic() < deadline):
            time.sleep(0.002)

    def _yield_to_others(self) -> bool:
        """True when a less loaded worker should take the next connection."""
        least = self.load_table.least_loaded_other(self.load_slot)
        # A few percent of slack: exact turns under a surge of a thousand
        # connections cost every accept a pause, and clients waited seconds.
        if least is None or len(self.connections) <= least + least // LOAD_SLACK_DIVISOR:
            self.yield_since = 0.0
            return False
        now = time.monotonic()
        if not self.yield_since:
            self.yield_since = now
        elif now - self.yield_since > MAX_YIELD_S:
            return False  # nobody took it: perhaps the others are stuck
        self._pause_accepting()
        self.accept_retry_at = now + ACCEPT_YIELD_S
        return True

    def _accept(self, lsock: socket.socket, limit: int = 0) -> None:
        # Under a surge a poller turn lasts a few hundred ms, so what is not
        # accepted now waits that long: take the whole queue (alone on the
        # listener) or an even part of it. Workers sharing a listener keep their
        # connection counts even by yielding, but a yield also lasts until the
        # next turn, so none yields while the queue is deep; the busier one's
        # longer turns still make it take less.
        waiting = accept_queue_length(lsock) if not limit else 0
        shared = self.load_table is not None and not limit
        balance = shared and waiting <= SURGE_QUEUE
        if shared:
            waiting //= self.cfg.workers
        for _ in range(limit or max(ACCEPT_BATCH, waiting)):
            candidates = None
            if len(self.connections) >= self.cfg.worker_connections:
                candidates = self._idle_candidates()
                if not any(candidates):
                    self._pause_accepting()
                    return
            if balance and self._yield_to_others():
                return
            try:
                sock, peer = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.error("accept failed: %s", exc)
                return
            sock.setblocking(False)
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if candidates is not None:
                self._evict_idle(candidates)   # before the newcomer joins, so never it
            conn = Connection(self, sock, peer)
            self.connections.add(conn)
            self.yield_since = 0.0
            self._publish_load()
            self.await_readable(conn, time.monotonic() + self.cfg.client_data_timeout)

    def _pause_accepting(self) -> None:
        if not self.accepting:
            return
        self.accepting = False
        for lsock in self.listeners:
            try:
                self.selector.unregister(lsock)
            except (KeyError, ValueError, OSError):
                pass

    def _resume_accepting(self) -> None:
        if self.accepting or self.draining:
            return
        self.accepting = True
        for lsock in self.listeners:
            self.selector.register(lsock, selectors.EVENT_READ, lsock)

    # --- shutdown ----------------------------------------------------------------

    def begin_shutdown(self, reason: str, retiring: bool = False) -> None:
        """Stop taking new work without losing any: drain the backlog, GOAWAY, finish."""
        if self.draining:
            return
        log.info("worker %d shutting down: %s", os.getpid(), reason)
        if retiring:
            self.heartbeat.retire(self.ppid)
        self._pause_accepting()
        self.draining = True
        self._publish_load()
        self.drain_deadline = time.monotonic() + self.cfg.graceful_timeout
        if self.cfg.reuse_port:
            # This listener's share of new connections would be reset when it
            # closes: make their SYNs retry towards the other workers instead.
            for lsock in self.listeners:
                stop_new_handshakes(lsock)
        # What the kernel already queued was promised to clients: take it.
        for pass_number in range(2):
            for lsock in self.listeners:
                self._accept(lsock, limit=100_000)
            if pass_number == 0:
                time.sleep(BACKLOG_PASS_PAUSE_S)
        for lsock in self.listeners:
            try:
                lsock.close()
            except OSError:
                pass
        for conn in list(self.h2_connections):
            conn.driver.start_goaway()
        for conn, _deadline in list(self.waiting.items()):
            if conn.idle_keepalive:
                self._close_idle(conn)

    # --- the loop ----------------------------------------------------------------

    def _expire(self, now: float) -> None:
        expired = [conn for conn, deadline in self.waiting.items() if deadline <= now]
        for conn in expired:
            log.debug("closing %s: %s", conn.peer_label, conn.wait_reason)
            self.release(conn)
        for conn in [c for c, deadline in self.lingering.items() if deadline <= now]:
            self.release(conn)
        if now >= self.sweep_due:
            self.sweep_due = now + SWEEP_S
            for conn in list(self.h2_connections):
                conn.driver.on_tick(now)
        if self.share_waiting:
            self._retry_shares(now)
        self.memory.tick(len(self.connections), now)
        if self.unused_over:
            self._shed_unused(now)
        self.shares.forget_old_squeezes(now)

    def _on_linger_readable(self, conn: Connection) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.release(conn)

    def serve_forever(self) -> None:
        self.poller_ident = threading.get_ident()
        self.pool.start()
        for lsock in self.listeners:
            lsock.setblocking(False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, _WAKE)
        self._publish_load()
        self._await_booting_siblings()
        self._resume_accepting()
        select = self.selector.select
        while self.running:
            timeout = TICK_S
            if self.accept_retry_at:
                timeout = max(0.0, min(timeout, self.accept_retry_at - time.monotonic()))
            writers = []
            for key, mask in select(timeout):
                owner = key.data
                if owner is _WAKE:
                    self._run_calls()
                elif isinstance(owner, Connection):
                    conn = owner
                    if conn.lingering:
                        self._on_linger_readable(conn)
                    elif conn in self.h2_connections:
                        if mask & selectors.EVENT_WRITE:
                            writers.append((conn, mask))
                        else:
                            conn.driver.on_readable()
                    elif self.waiting.pop(conn, None) is not None:
                        self._unregister(conn)
                        if conn.stage == "h1":
                            self.pool.submit(conn.on_readable)
                        else:   # setting up: handshake, PROXY header, first bytes
                            self.pool.submit_urgent(conn.on_readable)
                else:
                    self._accept(owner)
            if writers:
                self._write_turn(writers)
            now = time.monotonic()
            if self.accept_retry_at and now >= self.accept_retry_at:
                self.accept_retry_at = 0.0
                self._resume_accepting()
            self.heartbeat.beat(now)
            if now >= self.gauges_due:
                self._publish_gauges(now)
            self._expire(now)
            if self.ppid != os.getppid():
                log.info("parent changed, shutting down")
                self.begin_shutdown("arbiter gone")
            if self.draining and (not self.connections or now >= self.drain_deadline):
                break
        self._close_everything()

    def _write_turn(self, writers: list[tuple[Connection, int]]) -> None:
        """After every other event of a select(): one of the HTTP/2 connections
        with output waiting for EVENT_WRITE (bulk transfers, a client reading
        slowly) writes, at most WRITE_QUANTUM, the next one at the next turn.
        A request or a small response that arrives meanwhile thus waits for one
        quantum of bulk bytes at most, not for one per bulk connection; the
        others stay registered, so select() returns at once for them, and the
        one whose last turn is the oldest goes first."""
        conn, mask = min(writers, key=_last_write_turn)
        self.write_turns += 1
        conn.driver.write_turn = self.write_turns
        if conn.closed:
            return
        conn.driver.on_writable()
        if mask & selectors.EVENT_READ and not conn.closed:
            conn.driver.on_readable()

    def _close_everything(self) -> None:
        if metrics.IN_FLIGHT:
            if self.fast_exit:
                why = "quick shutdown cut off a request"
            elif self.draining and time.monotonic() >= self.drain_deadline:
                why = f"graceful_timeout ({self.cfg.graceful_timeout:g} s) cut off a request"
            else:
                why = "worker exiting with a request still running (its client left)"
            log_in_flight(why, describe_in_flight(time.monotonic(), list(metrics.IN_FLIGHT.items()),
                                                  {t.ident: t.name for t in threading.enumerate()}))
        if self.stuck_watcher is not None:
            self.stuck_watcher.stop()
        for conn in list(self.connections):
            self.release(conn)
        self.pool.stop(wait_s=0.0 if self.fast_exit else 1.0)

    def run(self) -> int:
        """Entry point in the forked child."""
        self._install_signals()
        try:
            self.access_log = AccessLog(self.cfg)
            if self.app is None:
                from h2serve.app import AppLoadError, load_app
                try:
                    self.app = load_app(self.cfg.app_uri, self.cfg.chdir)
                except AppLoadError as exc:
                    report_start_failure(self.cfg, str(exc))
                    return APP_LOAD_ERROR
            if not self.cfg.plaintext and self.ssl_context is None:
                self.ssl_context = hooks.server_tls_context(self.cfg)
                self.tls = True
            self.hook_view.app = self.app
            hooks.call(self.cfg, "post_worker_init", self.hook_view)
        except Exception as exc:  # the arbiter already vetted these; report and stop
            report_start_failure(self.cfg, f"worker failed to boot: {exc}")
            return WORKER_BOOT_ERROR
        self.hook_view.booted = True
        log.info("Booting worker with pid: %d", os.getpid())
        self._start_metrics()
        self.serve_forever()
        return 0



def _last_write_turn(writer: tuple[Connection, int]) -> int:
    return writer[0].driver.write_turn
