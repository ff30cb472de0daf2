"""The parent process of ``crm-api serve --workers N``: a listening socket of its own for each worker.

uvicorn's supervisor binds one socket and hands it to every worker. Each worker's event loop then wakes for
every new connection and whichever accepts first keeps it; with keep-alive clients one worker ends up holding
most connections while the other idles (two workers served no more than one did in ``bench/run.sh``). Here
each worker gets its own socket bound to the same address with ``SO_REUSEPORT``, and the kernel spreads new
connections over the sockets by a hash of each connection's addresses.

The workers are uvicorn's own (``uvicorn.supervisors.multiprocess.Process``: a spawned process running
``Server.run`` on the sockets given, answering health pings on a thread). What this process keeps from
uvicorn's supervisor: SIGTERM or SIGINT stops every worker gracefully (each finishes its responses in
progress) and waits for them; a worker that dies or stops answering pings is replaced, on a new socket (the
old one is closed: connections still queued on it are reset, as they would be with the dead worker); a
worker that fails during its start-up stops the whole server, since its replacement would fail the same way.
"""

from __future__ import annotations

import logging
import signal
import socket
import time
from dataclasses import dataclass
from types import FrameType

from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.supervisors.multiprocess import Process

log = logging.getLogger("uvicorn.error")  # configured like uvicorn's (logs.uvicorn_config)

_TICK_S = 0.5
# A spawned worker answers pings only once it has imported its way to uvicorn's ``Process.target``: seconds
# on a busy machine (uvicorn pings it at once with a 5 s timeout, and kills a slow starter). Until this has
# passed, only its exit counts as death.
_START_GRACE_S = 60.0


class Supervisor:
    def __init__(self, config: Config, workers: int) -> None:
        self.config = config
        self.count = workers
        self.port = config.port
        self.workers: list[_Worker] = []
        self._signals: list[int] = []
        self._hangups: list[int] = []

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT; 0 then, ``STARTUP_FAILURE`` when the address is taken or a worker
        fails to start. SIGHUP replaces the workers one by one, as uvicorn's supervisor did."""
        if not self._address_free():
            return STARTUP_FAILURE
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        signal.signal(signal.SIGHUP, lambda sig, _: self._hangups.append(sig))
        scheme = "https" if self.config.is_ssl else "http"
        where = f"{scheme}://{self.config.host}:{self.port}"
        log.info("%d workers, each on a socket of its own on %s", self.count, where)
        code = 0
        try:
            for _ in range(self.count):
                self.workers.append(self._start())
            while not self._signals:
                time.sleep(_TICK_S)
                if not self._signals and not self._replace_dead():
                    code = STARTUP_FAILURE
                    break
                if self._hangups and not self._signals:
                    self._hangups.clear()
                    self._restart_all()
        finally:
            self._stop_all()
        return code

    def _on_signal(self, sig: int, _frame: FrameType | None) -> None:
        # only noted here: the loop acts on it (a handler may run in the middle of any of the loop's calls)
        self._signals.append(sig)

    def _address_free(self) -> bool:
        """Bind the address once without ``SO_REUSEPORT`` first: that fails when anything listens on it,
        another crm-api of the same user included, which the workers' ``SO_REUSEPORT`` would otherwise join
        silently."""
        probe = self._socket(reuse_port=False)
        try:
            probe.bind((self.config.host, self.port))
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", self.config.host, self.port, exc)
            return False
        else:
            self.port = probe.getsockname()[1]  # port 0: the one the system chose, for every worker
        finally:
            probe.close()
        return True

    def _socket(self, reuse_port: bool) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart binds past TIME_WAIT
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        return sock

    def _start(self) -> _Worker:
        # bound here, listening once the worker's server starts on it: until then the kernel sends it nothing
        sock = self._socket(reuse_port=True)
        sock.bind((self.config.host, self.port))
        sock.set_inheritable(True)
        process = Process(self.config, [sock])
        process.start()
        log.info("started worker process [%s]", process.pid)
        return _Worker(process, sock, time.monotonic())

    def _replace_dead(self) -> bool:
        """Replace each worker that died or stopped answering; False when one failed during its start-up."""
        for n, worker in enumerate(self.workers):
            if worker.alive(self.config.timeout_worker_healthcheck):
                continue
            process = worker.process
            process.kill()  # if it hangs
            process.join()
            worker.sock.close()
            if process.exitcode == STARTUP_FAILURE:
                log.error("worker process [%s] failed to start; stopping", process.pid)
                del self.workers[n]
                return False
            if self._signals:
                del self.workers[n]
                return True
            log.warning("worker process [%s] died (exit %s); starting another", process.pid, process.exitcode)
            self.workers[n] = self._start()
        return True

    def _restart_all(self) -> None:
        """Each worker in turn: a new one on a socket of its own, and once it serves, the old one stopped
        gracefully. With a socket each, the port is never without a listener; a new worker that does not
        start in time is killed and the restart ends there, the old ones kept."""
        log.info("SIGHUP: replacing the workers one by one")
        for n, old in enumerate(list(self.workers)):
            new = self._start()
            if not new.process.wait_until_ready(_START_GRACE_S):
                new.process.kill()
                new.process.join()
                new.sock.close()
                log.error("worker process [%s] did not start in time; keeping the others", new.process.pid)
                return
            # this copy first, so the socket leaves the group as soon as the old worker closes its own (the
            # kernel resets what is queued on it then: the connections of that moment)
            old.sock.close()
            old.process.terminate()
            old.process.join()
            self.workers[n] = new

    def _stop_all(self) -> None:
        for worker in self.workers:
            worker.process.terminate()  # SIGTERM: uvicorn's graceful shutdown in the worker
        for worker in self.workers:
            worker.process.join()
            worker.sock.close()
        self.workers.clear()


@dataclass
class _Worker:
    process: Process
    sock: socket.socket
    started: float

    def alive(self, timeout: float) -> bool:
        if not self.process.process.is_alive():
            return False
        if time.monotonic() - self.started < _START_GRACE_S:
            return True
        return self.process.ping(timeout)
