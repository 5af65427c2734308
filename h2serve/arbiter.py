"""The master process: owns the listeners, forks workers and keeps them alive.

Signals (gunicorn's set): TERM and INT graceful stop (gunicorn makes INT quick;
here Ctrl-C, which reaches every process of the group, loses nothing), QUIT
fast stop, HUP reload settings, app and certificates (new workers start before
old ones stop), TTIN/TTOU one worker more/less, USR1 reopen logs, CHLD reap.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import signal
import socket
import sys
import tempfile
import time
from typing import Any

from h2serve import hooks, metrics, process, upgrade
from h2serve.dirty import supervisor as dirty_supervisor
from h2serve.lifecycle import APP_LOAD_ERROR, WORKER_BOOT_ERROR, WorkerRecord
from h2serve.loadshare import LoadTable
from h2serve.logs import report_start_failure
from h2serve.reloader import SourceWatcher

log = logging.getLogger("h2serve.error")

HANDLED_SIGNALS = ("HUP", "QUIT", "INT", "TERM", "TTIN", "TTOU", "USR1", "USR2", "WINCH")
HALT_ON_BOOT_ERRORS = 5   # consecutive boot failures with no healthy worker: give up
ABORT_GRACE_S = 0.3       # a hung worker gets this long to dump its stacks before SIGKILL
STATSD_GAUGE_INTERVAL_S = 1.0


class Arbiter:
    """Runs until stopped; returns the process exit code."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.listeners: list[socket.socket] = []
        self.workers: dict[int, WorkerRecord] = {}
        self.signal_queue: list[int] = []
        self.worker_age = 0
        self.generation = 0
        self.reload_pending = False  # a HUP came while a reload was under way
        self.boot_failures = 0
        self.exit_code = 0
        self.pid = os.getpid()
        self.stopping = False
        # Workers sharing a listener balance through it; with reuse_port the kernel does.
        self.load_table = LoadTable() if cfg.workers > 1 and not cfg.reuse_port else None
        self._wake_r = self._wake_w = -1
        self.num_workers = cfg.workers
        self.source_watcher: SourceWatcher | None = None
        # Every worker publishes its in-flight requests here (and its counters, with
        # metrics_bind or statsd_host); see h2serve.metrics.
        self.metrics_table = metrics.MetricsTable()
        self.metrics_server: Any = None   # h2serve.prometheus.MetricsServer with metrics_bind
        self.statsd: Any = None
        self.statsd_due = 0.0
        self.serving_dev_cert = False
        self.dev_ca_cert = ""
        self.preloaded_app: Any = None   # preload_app: imported here once, before fork
        self.log = log   # for hook code: server.log.info(...)
        # Binary upgrade (USR2): how this master was started, to start the next one
        # the same way; the new master's pid while it runs; the master this one
        # took over from, if it was started by a USR2.
        self.start_cwd = os.getcwd()
        self.start_argv = list(sys.argv[1:])
        self.reexec_pid = 0
        self.halt_reason = ""   # why the master stops on its own (logged as gunicorn's "Reason:")
        self.upgraded_from = int(os.environ.pop(upgrade.UPGRADE_FROM_ENV, "0") or 0)
        # A worker has imported the app and served (or the master preloaded it):
        # from then on a worker that cannot import it is a boot failure, not a stop.
        self.app_loaded = cfg.preload_app
        # The dirty arbiter's supervisor (h2serve.dirty), with --dirty-workers and --dirty-app.
        self.dirty: dirty_supervisor.DirtySupervisor | None = None

    # --- what server hooks see (h2serve.hooks) -------------------------------------

    @property
    def proc_name(self) -> str:
        return self.cfg.proc_name or "h2serve"

    @property
    def WORKERS(self) -> dict[int, hooks.WorkerView]:  # noqa: N802 - gunicorn's name
        """The live workers, by pid, as hooks see them."""
        return {pid: record.view for pid, record in self.workers.items()}

    def _set_num_workers(self, wanted: int) -> None:
        old, self.num_workers = self.num_workers, wanted
        if wanted != old:
            hooks.call(self.cfg, "nworkers_changed", self, wanted, old)

    # --- setup -----------------------------------------------------------------

    def _prepare_tls(self) -> None:
        """Fail at start, in the master, on certificates that cannot be loaded."""
        cfg = self.cfg
        if cfg.plaintext:
            return
        if not cfg.certfile:
            from h2serve.transport.devcert import ensure_dev_certificate

            dev = ensure_dev_certificate()
            cfg.certfile, cfg.keyfile = str(dev.cert), str(dev.key)
            log.info("No --certfile given: serving the development certificate %s", dev.cert)
            self.dev_ca_cert = str(dev.ca_cert)
            self.serving_dev_cert = True
        hooks.server_tls_context(cfg)

    def _open_listeners(self) -> None:
        from h2serve.transport.listeners import (
            create_listeners,
            describe,
            is_loopback,
            reuse_port_holder,
        )

        self.listeners = create_listeners(list(self.cfg.bind), self.cfg.backlog,
                                          reuse_port=self.cfg.reuse_port)
        scheme = "http" if self.cfg.plaintext else "https"
        for lsock in self.listeners:
            log.info("Listening at: %s://%s (%d)", scheme, describe(lsock), self.pid)
            if self.serving_dev_cert and lsock.family in (socket.AF_INET, socket.AF_INET6):
                log.info("Trust its CA to connect: curl --cacert %s https://localhost:%d/",
                         self.dev_ca_cert, lsock.getsockname()[1])
            if self.serving_dev_cert and not is_loopback(lsock):
                log.warning("The development certificate is served on %s, which is reachable "
                            "from other machines: its CA key sits on this host and clients "
                            "elsewhere will not trust it. Give --certfile/--keyfile for "
                            "production (or --plaintext behind a TLS proxy).", describe(lsock))
        if self.cfg.reuse_port:
            self.listeners = [reuse_port_holder(lsock) for lsock in self.listeners]
        if self.cfg.metrics_bind:
            from h2serve.prometheus import MetricsServer

            handed_over = os.environ.pop(upgrade.METRICS_FDS_ENV, "")
            if handed_over:   # a binary upgrade: the old master still has the address
                sockets = [socket.socket(fileno=int(fd)) for fd in handed_over.split(",")]
                for sock in sockets:
                    sock.set_inheritable(False)
            else:
                sockets = create_listeners([self.cfg.metrics_bind], 16, reuse_port=False,
                                           use_systemd=False)
            self.metrics_server = MetricsServer(sockets, self._render_metrics)
            for lsock in sockets:
                log.info("Metrics at: http://%s/metrics", describe(lsock))

    def _start_metrics(self) -> None:
        """The master's own sinks: its log lines count into the retained totals."""
        cfg = self.cfg
        if self.statsd is not None:   # a reload: the new settings may name another collector
            self.statsd.close()
        self.statsd = None
        if cfg.statsd_host:
            from h2serve.statsd import StatsdClient

            try:
                self.statsd = StatsdClient(cfg.statsd_host, cfg.statsd_prefix, cfg.dogstatsd_tags)
            except OSError as exc:
                log.warning("statsd_host %s: %s; no StatsD metrics", cfg.statsd_host, exc)
        retained = self.metrics_table.retained if cfg.metrics_bind else None
        metrics.install(metrics.Recorder(retained, self.statsd)
                        if retained is not None or self.statsd else None)
        metrics.install_log_counter()

    def _metrics_snapshot(self) -> metrics.Snapshot:
        live = [w.metrics_slot for w in self.workers.values() if w.metrics_slot is not None]
        snapshot = self.metrics_table.snapshot(live)
        snapshot.workers = len(self.workers)
        return snapshot

    def _render_metrics(self) -> str:
        from h2serve.prometheus import render

        return render(self._metrics_snapshot())

    def _send_statsd_gauges(self) -> None:
        """Once a second: the workers' gauges, summed, and gunicorn.workers."""
        now = time.monotonic()
        if self.statsd is None or now < self.statsd_due:
            return
        self.statsd_due = now + STATSD_GAUGE_INTERVAL_S
        snapshot = self._metrics_snapshot()
        self.statsd.gauges([("gunicorn.workers", snapshot.workers)]
                           + [(name, snapshot.gauge(i)) for i, (name, _) in enumerate(metrics.GAUGES)])

    def _log_in_flight(self, record: WorkerRecord, why: str) -> None:
        """Name the requests a worker was running, as its stuck watcher last published them."""
        if record.metrics_slot is None:
            return
        from h2serve.stuck import log_in_flight, read_published

        age, lines = read_published(self.metrics_table.read_text(record.metrics_slot), time.monotonic())
        if age is not None:
            log_in_flight(f"{why} (pid:{record.pid}) was running, {age:.1f} s ago", lines, logging.ERROR)

    def _install_signals(self) -> None:
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
            os.set_inheritable(fd, False)
        for name in HANDLED_SIGNALS:
            signal.signal(getattr(signal, f"SIG{name}"), self._on_signal)
        signal.signal(signal.SIGCHLD, self._on_sigchld)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if len(self.signal_queue) < 5:
            self.signal_queue.append(signum)
        self._wake()

    def _on_sigchld(self, _signum: int, _frame: Any) -> None:
        self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b".")
        except OSError:
            pass

    def _write_pidfile(self) -> None:
        """Atomically (a temporary file renamed over it); raises ValueError with one line,
        leaving no temporary file behind, when the file cannot be written."""
        if self.cfg.pidfile:
            tmp = f"{self.cfg.pidfile}.{self.pid}.tmp"
            try:
                with open(tmp, "w") as f:
                    f.write(f"{self.pid}\n")
                os.replace(tmp, self.cfg.pidfile)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise ValueError(f"cannot write the pidfile {self.cfg.pidfile}: "
                                 f"{exc.strerror or exc}") from None

    def _remove_pidfile(self) -> None:
        """Remove the pidfile (or, after a USR2, PIDFILE.oldbin) if it names us."""
        if self.cfg.pidfile:
            for path in (self.cfg.pidfile, f"{self.cfg.pidfile}.oldbin"):
                try:
                    with open(path) as f:
                        if f.read().strip() == str(self.pid):
                            os.unlink(path)
                except OSError:
                    pass

    def _start_failed(self, reason: object) -> None:
        """The master cannot start: one `h2serve: error:` line on standard error,
        and the same in the error log when that is a file."""
        print(f"h2serve: error: {reason}", file=sys.stderr)
        if self.cfg.error_logfile not in (None, "", "-"):
            log.error("%s", reason)

    # --- main loop ---------------------------------------------------------------

    def run(self) -> int:
        """The master's life: start, watch the workers until told to stop, clean up.
        Returns the exit code."""
        failed = self._start()
        if failed is not None:
            return failed
        try:
            hooks.call(self.cfg, "when_ready", self)
            self.dirty = dirty_supervisor.start(self)   # first: HTTP workers inherit its path
            self._spawn_missing()
            self._watch()
        except KeyboardInterrupt:
            self._stop(graceful=False)
        except hooks.HookError as exc:
            # As in gunicorn, a master hook that raises stops the server.
            self.halt_reason = str(exc)
            self.exit_code = 1
            self._stop(graceful=False)
        finally:
            self._clean_up()
        return self.exit_code

    def _start(self) -> int | None:
        """Logging, on_starting, TLS, listeners, pidfile, preload, signals. The
        exit code when the start failed (said once, in the error log), else None."""
        from h2serve.logs import setup_logging

        try:
            setup_logging(self.cfg)
        except (OSError, ValueError, TypeError, KeyError) as exc:   # syslog, logconfig*
            print(f"h2serve: error: logging: {exc}", file=sys.stderr)
            return 2
        for note in self.cfg.notes:
            log.info("%s", note)
        for warning in self.cfg.warnings:
            log.warning("%s", warning)
        if self.upgraded_from:
            log.info("Binary upgrade: taking over the listening sockets of master %d",
                     self.upgraded_from)
        if self.cfg.capture_output:
            process.capture_output(self.cfg.error_logfile)
        try:
            for path in (self.cfg.error_logfile, self.cfg.access_logfile):
                process.hand_over(path, self.cfg)   # workers reopen them on USR1
        except process.ProcessSetupError as exc:
            self._start_failed(exc)
            return 2
        self._start_metrics()
        if self.cfg.chdir:
            os.chdir(self.cfg.chdir)
        try:
            hooks.call(self.cfg, "on_starting", self)
        except hooks.HookError as exc:
            self._start_failed(exc)
            return 1
        try:
            self._prepare_tls()
            self._open_listeners()
            self._write_pidfile()
        except (OSError, ValueError) as exc:
            self._start_failed(exc)
            if self.listeners:   # ours: bound before the pidfile failed
                self._unlink_unix()
            return 2
        if self.cfg.preload_app and not self._preload():
            return 2
        if self.cfg.proc_name:
            process.set_proc_title(f"h2serve: master [{self.cfg.proc_name}]")
        self._install_signals()
        if self.cfg.reload:
            self.source_watcher = SourceWatcher()
        log.info("Starting h2serve (%d workers x %d threads, %s)", self.num_workers,
                 self.cfg.threads, "plaintext" if self.cfg.plaintext else "TLS")
        return None

    def _preload(self) -> bool:
        """--preload: import the app here, before the first fork. False: it failed."""
        from h2serve.app import AppLoadError, load_app

        try:
            self.preloaded_app = load_app(self.cfg.app_uri, self.cfg.chdir)
        except AppLoadError as exc:
            self._start_failed(exc)
            self._remove_pidfile()
            if self.listeners:
                self._unlink_unix()
            return False
        return True

    def _watch(self) -> None:
        """Once a second, or at once on a signal: reap, handle signals, kill hung
        workers, retire, reload, respawn."""
        while True:
            self._reap()
            if self.stopping:
                return
            while self.signal_queue:
                self._handle_signal(self.signal_queue.pop(0))
                if self.stopping:
                    return
            self._murder_hung()
            self._note_retiring()
            self._retire_extra()
            self._run_pending_reload()
            self._spawn_missing()
            if self.dirty is not None:
                self.dirty.watch()
            self._reload_on_source_change()
            self._send_statsd_gauges()
            self._sleep(1.0)

    def _clean_up(self) -> None:
        say = log.info if self.exit_code == 0 else log.error
        say("Shutting down: Master")   # gunicorn's line, then its reason
        if self.halt_reason:
            say("Reason: %s", self.halt_reason)
        hooks.call_logged(self.cfg, "on_exit", self)
        self._remove_pidfile()
        self._unlink_unix()
        if self.source_watcher is not None:
            self.source_watcher.remove()
        if self.metrics_server is not None:
            from h2serve.transport.listeners import unlink_unix_listeners

            unlink_unix_listeners(self.metrics_server.listeners)
            self.metrics_server.close()

    def _sleep(self, timeout: float) -> None:
        server = self.metrics_server
        try:
            if server is None:
                ready = select.select([self._wake_r], [], [], timeout)[0]
            else:   # --metrics-bind: scrapes are answered from this loop, without a thread
                ready, writable, _ = select.select([self._wake_r, *server.read_fds()],
                                                   server.write_fds(), [], timeout)
                server.handle(ready, writable)
            if self._wake_r in ready:
                while os.read(self._wake_r, 1024):
                    pass
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EINTR):
                raise

    def _handle_signal(self, signum: int) -> None:
        # The line gunicorn logs ("Handling signal: term"), for alerts that grep it.
        log.info("Handling signal: %s", signal.Signals(signum).name[3:].lower())
        if self.dirty is not None:
            self.dirty.forward(signum)   # HUP and USR1; TERM, INT and QUIT through _stop
        if signum in (signal.SIGTERM, signal.SIGINT):
            self._stop(graceful=True)
        elif signum == signal.SIGQUIT:
            self._stop(graceful=False)
        elif signum == signal.SIGHUP:
            self._request_reload()
        elif signum == signal.SIGTTIN:
            self._set_num_workers(self.num_workers + 1)
            log.info("Workers wanted: %d", self.num_workers)
        elif signum == signal.SIGTTOU:
            if self.num_workers > 1:
                self._set_num_workers(self.num_workers - 1)
            log.info("Workers wanted: %d", self.num_workers)
        elif signum == signal.SIGUSR2:
            self._reexec()
        elif signum == signal.SIGWINCH:
            if self.cfg.daemon:
                log.info("graceful stop of workers")
                self._set_num_workers(0)
            else:
                log.info("SIGWINCH ignored: not daemonized")
        elif signum == signal.SIGUSR1:
            from h2serve.logs import reopen_logs

            reopen_logs()

            if self.cfg.capture_output:
                process.capture_output(self.cfg.error_logfile)
            for path in (self.cfg.error_logfile, self.cfg.access_logfile):
                try:
                    process.hand_over(path, self.cfg)   # new files: the workers reopen them too
                except process.ProcessSetupError as exc:
                    log.warning("%s", exc)
            self._kill_all(signal.SIGUSR1)

    # --- binary upgrade ----------------------------------------------------------

    def _reexec(self) -> None:
        """USR2, as gunicorn's binary upgrade (h2serve.upgrade): a new master
        from the code now installed, handed the listening sockets. Both serve
        until this one is stopped (TERM, or WINCH then QUIT)."""
        if self.reexec_pid:
            log.warning("USR2 ignored: a new master (pid %d) is already running", self.reexec_pid)
            return
        if self.upgraded_from and os.getppid() == self.upgraded_from:
            log.warning("USR2 ignored: the master this one is upgrading (pid %d) still runs",
                        self.upgraded_from)
            return
        metrics_sockets = list(self.metrics_server.listeners) if self.metrics_server else []
        self.reexec_pid = upgrade.start_new_master(self, list(self.listeners), metrics_sockets)
        log.info("Started a new master (pid %d) with the listening sockets; stop this one "
                 "(pid %d) once it serves", self.reexec_pid, self.pid)

    def _new_master_exited(self, status: int) -> None:
        """The master a USR2 started is gone: this one stays in charge."""
        log.error("The new master (pid %d) exited with code %d; this master (pid %d) keeps "
                  "serving", self.reexec_pid, os.waitstatus_to_exitcode(status), self.pid)
        self.reexec_pid = 0
        upgrade.take_pidfile_back(self.cfg.pidfile)

    # --- workers -----------------------------------------------------------------

    def _spawn_missing(self) -> None:
        live = [w for w in self.workers.values() if not w.retiring]
        for _ in range(self.num_workers - len(live)):
            self._spawn()

    def _spawn(self) -> None:
        self.worker_age += 1
        heartbeat = tempfile.TemporaryFile(prefix="h2serve-hb-", dir=self.cfg.worker_tmp_dir)
        from h2serve.process import hand_over

        hand_over(heartbeat.fileno(), self.cfg)   # the worker beats by changing its mode
        view = hooks.WorkerView(self.cfg, self.worker_age, self.pid)
        try:
            hooks.call(self.cfg, "pre_fork", self, view)
        except hooks.HookError:
            heartbeat.close()
            raise
        load_slot = self.load_table.take_slot() if self.load_table is not None else None
        metrics_slot = self.metrics_table.take_slot()
        pid = os.fork()
        if pid:
            view.pid = pid
            record = WorkerRecord(pid, heartbeat, self.worker_age, self.generation)
            record.view = view
            record.load_slot = load_slot
            record.metrics_slot = metrics_slot
            self.workers[pid] = record
            return
        # --- child -------------------------------------------------------------
        code = 1
        try:
            for name in HANDLED_SIGNALS:
                signal.signal(getattr(signal, f"SIG{name}"), signal.SIG_DFL)
            os.close(self._wake_r)
            os.close(self._wake_w)
            for other in self.workers.values():
                other.heartbeat.close()
            if self.metrics_server is not None:
                self.metrics_server.close()
            view.pid = os.getpid()
            code = self._worker_main(heartbeat, load_slot, metrics_slot, view)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            log.exception("worker crashed")
            code = 1
        finally:
            try:
                hooks.call_logged(self.cfg, "worker_exit", self, view)
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)

    def _worker_main(self, heartbeat: Any, load_slot: int | None, metrics_slot: int | None,
                     view: hooks.WorkerView) -> int:
        from h2serve.worker import Worker

        listeners = self.listeners
        if self.cfg.reuse_port:
            from h2serve.transport.listeners import reuse_port_listener

            mine = []
            for lsock in listeners:
                if lsock.family in (socket.AF_INET, socket.AF_INET6):
                    mine.append(reuse_port_listener(lsock, self.cfg.backlog))
                    lsock.close()
                else:
                    mine.append(lsock)
            listeners = mine
        if self.cfg.proc_name:
            process.set_proc_title(f"h2serve: worker [{self.cfg.proc_name}]")
        ssl_context = None
        from h2serve.process import ProcessSetupError, switch_user, wants_switch

        try:
            # As in gunicorn: before the user switch (so as root, if started so) and
            # before the app is imported.
            hooks.call(self.cfg, "post_fork", self, view)
            if wants_switch(self.cfg) and not self.cfg.plaintext:
                # Read the key while still privileged: it is often readable by root only.
                ssl_context = hooks.server_tls_context(self.cfg)
            if wants_switch(self.cfg):
                process.import_serving_modules()
            switch_user(self.cfg)   # bound already; the app is not imported yet
        except (ProcessSetupError, OSError, ValueError, hooks.HookError) as exc:
            report_start_failure(self.cfg, f"worker failed to boot: {exc}")
            return WORKER_BOOT_ERROR
        app = self.preloaded_app
        if self.source_watcher is not None and app is None:
            # Import here, before serving, so the files it took can be reported.
            from h2serve.app import load_app

            try:
                app = load_app(self.cfg.app_uri, self.cfg.chdir)
            except Exception as exc:
                report_start_failure(self.cfg, str(exc))
                return APP_LOAD_ERROR
            self.source_watcher.report_imports(self.cfg.chdir, self.cfg.app_uri)
        worker = Worker(self.cfg, listeners, app=app, ssl_context=ssl_context, hook_view=view,
                        heartbeat_fd=heartbeat.fileno(), ppid=self.pid,
                        load=(self.load_table, load_slot) if load_slot is not None else None,
                        metrics_slot=(self.metrics_table, metrics_slot) if metrics_slot is not None else None)
        return worker.run()

    def _reap(self) -> None:
        if not self.app_loaded:
            self.app_loaded = any(record.booted for record in self.workers.values())
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if not pid:
                return
            if pid == self.reexec_pid:
                self._new_master_exited(status)
                continue
            if self.dirty is not None and self.dirty.reaped(pid, status):
                continue
            record = self.workers.pop(pid, None)
            if record is None:
                continue
            record.heartbeat.close()
            if self.load_table is not None:
                self.load_table.free_slot(record.load_slot)
            self.metrics_table.release_slot(record.metrics_slot)   # its counts are kept
            code = os.waitstatus_to_exitcode(status)
            if code == APP_LOAD_ERROR and not self.app_loaded:
                # The first workers cannot import the app: nothing will ever serve.
                # (After a reload, the workers still running keep serving instead.)
                self.halt_reason = "App failed to load."
                self.exit_code = 2
                self._stop(graceful=False)
            elif code in (WORKER_BOOT_ERROR, APP_LOAD_ERROR):
                self.boot_failures += 1
                log.error("Worker %d failed to boot", pid)
                if self.boot_failures >= HALT_ON_BOOT_ERRORS and not self.workers:
                    self.halt_reason = "Worker failed to boot."
                    self.exit_code = 3
                    self._stop(graceful=False)
            elif code < 0:
                # gunicorn's wording and levels: alerts on "Perhaps out of memory?" keep firing.
                try:
                    name = signal.Signals(-code).name
                except ValueError:
                    name = f"signal {-code}"
                if -code == signal.SIGKILL:
                    log.error("Worker (pid:%d) was sent %s! Perhaps out of memory?", pid, name)
                elif -code == signal.SIGTERM:
                    log.info("Worker (pid:%d) was sent %s!", pid, name)
                else:
                    log.warning("Worker (pid:%d) was sent %s!", pid, name)
            elif code != 0:
                log.error("Worker (pid:%d) exited with code %d.", pid, code)
            else:
                self.boot_failures = 0
                log.info("Worker exiting (pid: %d)", pid)
            if self.stopping:   # already stopping: a failing hook changes nothing more
                hooks.call_logged(self.cfg, "child_exit", self, record.view)
            else:
                hooks.call(self.cfg, "child_exit", self, record.view)

    def _murder_hung(self) -> None:
        timeout = self.cfg.timeout
        if not timeout:
            return
        now = time.time()
        for record in list(self.workers.values()):
            beat = record.last_beat()
            if beat and now - beat > timeout:
                log.critical("WORKER TIMEOUT (pid:%d)", record.pid)
                self._log_in_flight(record, "Timed-out worker")
                log.error("Asking worker (pid:%d) for its threads' stacks (SIGUSR2) before killing it",
                          record.pid)
                self._kill(record.pid, signal.SIGUSR2)
                time.sleep(ABORT_GRACE_S)
                self._kill(record.pid, signal.SIGABRT)   # worker_abort, as gunicorn sends it
                time.sleep(ABORT_GRACE_S)
                self._kill(record.pid, signal.SIGKILL)

    def _note_retiring(self) -> None:
        """A worker draining after max_requests gets its replacement now, not at exit."""
        for record in self.workers.values():
            if not record.retiring and record.says_retiring():
                record.retiring = True
                log.info("Worker %d is retiring (max_requests); starting its replacement",
                         record.pid)

    def _retire_extra(self) -> None:
        """TTOU and HUP: gracefully stop the oldest workers beyond the wanted count."""
        live = sorted((w for w in self.workers.values() if not w.retiring), key=lambda w: w.age)
        old_generation = [w for w in live if w.generation < self.generation]
        # Old workers go once the new ones serve: a reload whose code does not even
        # boot leaves the running workers alone.
        new_generation = [w for w in live if w.generation == self.generation and w.booted]
        if old_generation and len(new_generation) >= self.num_workers:
            targets = old_generation
        elif old_generation:
            targets = []   # a reload in progress: the new workers are still booting (or failed)
        else:
            targets = live[: max(0, len(live) - self.num_workers)]
        for record in targets:
            record.retiring = True
            self._kill(record.pid, signal.SIGTERM)

    def _reload_under_way(self) -> bool:
        """True while workers of the newest generation and of an older one both
        live: the new ones are booting, or the old ones are still draining."""
        generations = {w.generation for w in self.workers.values()}
        return self.generation in generations and len(generations) > 1

    def _request_reload(self) -> None:
        """HUP and --reload. Reloads coalesce: one asked for while another is under
        way runs once that one has finished (however many were asked for), so at
        most two generations of workers live at once."""
        if not self._reload_under_way():
            self._reload()
        elif not self.reload_pending:
            self.reload_pending = True
            log.info("A reload is under way: the next one starts when it has finished")

    def _run_pending_reload(self) -> None:
        if self.reload_pending and not self._reload_under_way():
            self.reload_pending = False
            self._reload()

    def _reload(self) -> None:
        """New workers with fresh settings, app and certificates; then the old ones go."""
        try:
            self.cfg = self.cfg.reloaded()
            self._prepare_tls()
        except Exception as exc:
            log.error("Reload failed, keeping the running workers: %s", exc)
            return
        from h2serve.logs import setup_logging

        try:
            setup_logging(self.cfg)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.error("Reload: the new logging settings failed (%s); logging goes on as before",
                      exc)
        self._start_metrics()
        hooks.call(self.cfg, "on_reload", self)
        self._set_num_workers(self.cfg.workers)
        self.generation += 1
        for _ in range(self.num_workers):
            self._spawn()
        self._retire_extra()

    def _reload_on_source_change(self) -> None:
        """--reload: a changed source file restarts the workers as HUP does."""
        if self.source_watcher is None:
            return
        changed = self.source_watcher.changed_file()
        if changed:
            log.info("Reloading: %s changed", changed)
            self._request_reload()

    def _kill(self, pid: int, sig: int) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            self.workers.pop(pid, None)

    def _kill_all(self, sig: int) -> None:
        for pid in list(self.workers):
            self._kill(pid, sig)

    def _stop(self, graceful: bool) -> None:
        """Stop every worker; graceful ones get graceful_timeout to finish."""
        self.stopping = True
        for lsock in self.listeners:
            try:
                lsock.close()
            except OSError:
                pass
        self._kill_all(signal.SIGTERM if graceful else signal.SIGQUIT)
        limit = time.monotonic() + (self.cfg.graceful_timeout + 1 if graceful else 2)
        while self.workers and time.monotonic() < limit:
            self._reap()
            self._sleep(0.05)
        if self.workers:
            for record in list(self.workers.values()):
                self._log_in_flight(record, "graceful_timeout passed: worker")
            self._kill_all(signal.SIGKILL)
            while self.workers:
                self._reap()
                self._sleep(0.05)
        if self.dirty is not None:
            self.dirty.stop(graceful)

    def _unlink_unix(self) -> None:
        if self.reexec_pid or (self.upgraded_from and os.getppid() == self.upgraded_from):
            return   # the other master of an upgrade still listens on them
        for bind in self.cfg.bind:
            if bind.startswith("unix:"):
                try:
                    os.unlink(bind[5:])
                except OSError:
                    pass
