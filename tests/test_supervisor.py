"""``crm-api serve --workers 2`` as processes: each worker listens on a socket of its own (``SO_REUSEPORT``),
so concurrent keep-alive connections reach both; a killed worker is replaced; a second server on the same
port is refused; SIGTERM stops every process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.multiprocess import MultiProcessCollector

_COUNT = "crm_http_request_duration_seconds_count"


def _env(database_url: str, data: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CRM_", "PROMETHEUS_")) or k == "CRM_SECRET_KEY"
    }
    env.update(
        CRM_DATABASE_URL=database_url,
        CRM_DATA_DIR=str(data / "data"),
        CRM_METRICS_DIR=str(data / "metrics"),
        CRM_RUN_DISPATCHER="false",
    )
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(what: str, check: Callable[[], bool], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"waited {seconds} s for {what}"
        time.sleep(0.2)


class _KeepAlive:
    """One keep-alive HTTP/1.1 connection sending ``GET /health``."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buffer = b""

    def get(self) -> int:
        self.sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            assert chunk, "the server closed the connection"
            self.buffer += chunk
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        while len(rest) < length:
            rest += self.sock.recv(65536)
        self.buffer = rest[length:]
        return int(head[9:12])

    def close(self) -> None:
        self.sock.close()


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    metrics: Path
    log: Path
    answered: int = 0  # requests answered through up(), to know when their samples are all written

    def workers(self) -> set[int]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        # the spawn context's resource tracker is a child too, and serves nothing
        return {int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()}

    def served(self) -> dict[int, int]:
        """Requests counted by each worker process so far, from its own metric file."""
        counts = {}
        for path in self.metrics.glob("histogram_*.db"):
            families = MultiProcessCollector.merge([str(path)], accumulate=True)
            total = sum(s.value for f in families for s in f.samples if s.name == _COUNT)
            counts[int(path.stem.removeprefix("histogram_"))] = int(total)
        return counts

    def up(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()
        try:
            conn = _KeepAlive(self.port)
        except OSError:
            return False
        try:
            status = conn.get()
        except OSError:
            return False
        finally:
            conn.close()
        self.answered += 1
        return status == 200

    def settled(self) -> bool:
        return sum(self.served().values()) == self.answered


def _both_served(server: Server) -> bool:
    workers = server.workers()
    return len(workers) == 2 and all(server.served().get(pid, 0) > 0 for pid in workers)


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[Server]:
    work = Path(tempfile.mkdtemp(prefix="crm-test-supervisor-"))
    port = _free_port()
    log = work / "serve.log"
    with log.open("wb") as err:
        cmd = [sys.executable, "-m", "crm_api", "serve", "--port", str(port), "--workers", "2"]
        proc = subprocess.Popen(cmd, env=_env(database_url, work), stdout=subprocess.DEVNULL, stderr=err)
    served = Server(proc, port, work / "metrics", log)
    try:
        _wait("the server", served.up)
        # both listening: a new connection at a time until each worker has answered one
        _wait("both workers to serve", lambda: served.up() and _both_served(served))
        yield served
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)


def test_concurrent_keep_alive_connections_reach_both_workers(server: Server) -> None:
    # the fixture's last request may not be counted yet: in the counts below it would shift them by one
    _wait("the fixture's requests counted", server.settled, 10)
    before = server.served()
    # opened together and held: with one shared socket, one worker could accept them all
    conns = [_KeepAlive(server.port) for _ in range(16)]
    try:
        for _ in range(3):
            for conn in conns:
                assert conn.get() == 200
    finally:
        for conn in conns:
            conn.close()
    workers = server.workers()

    def per_worker() -> dict[int, int]:
        after = server.served()
        return {pid: after.get(pid, 0) - before.get(pid, 0) for pid in workers}

    # a request's sample is written just after its response is sent
    _wait("every request counted", lambda: sum(per_worker().values()) == 48, 10)
    counts = per_worker()
    # each connection is served by one worker (3 requests each); 16 connections hashed over 2 sockets all
    # landing on one has a chance of 1 in 32,768
    assert all(n > 0 for n in counts.values()), counts
    assert all(n % 3 == 0 for n in counts.values()), counts


def test_a_killed_worker_is_replaced_on_a_socket_of_its_own(server: Server) -> None:
    old = server.workers()
    victim = min(old)
    os.kill(victim, signal.SIGKILL)
    new: set[int] = set()

    def replaced() -> bool:
        # one reading of the children per look: two readings can straddle another change under load
        now = server.workers()
        new.clear()
        new.update(now - old)
        return len(now) == 2 and victim not in now and len(new) == 1

    _wait("a replacement worker", replaced)
    (replacement,) = new
    # it serves once started: keep opening connections until one of them lands on it
    before = server.served().get(replacement, 0)

    def served_by_replacement() -> bool:
        conn = _KeepAlive(server.port)
        try:
            assert conn.get() == 200  # meanwhile every connection is answered, by one worker or the other
        finally:
            conn.close()
        return server.served().get(replacement, 0) > before

    _wait("the replacement to serve", served_by_replacement)
    assert b"died (exit -9); starting another" in server.log.read_bytes()


def test_sighup_replaces_every_worker_while_the_port_keeps_answering(server: Server) -> None:
    old = server.workers()
    server.proc.send_signal(signal.SIGHUP)
    answered = reset = 0

    def replaced() -> bool:
        nonlocal answered, reset
        try:  # a new connection each time, while the workers change
            conn = _KeepAlive(server.port)
            try:
                assert conn.get() == 200
                answered += 1
            finally:
                conn.close()
        except (ConnectionError, AssertionError):
            reset += 1  # queued on an old worker's socket at the moment it closed
        workers = server.workers()
        return len(workers) == 2 and not workers & old

    _wait("every worker replaced", replaced)
    assert server.proc.poll() is None
    assert answered > 0 and reset <= 2, (answered, reset)
    assert server.up()


def test_a_second_server_on_the_same_port_is_refused(server: Server, database_url: str) -> None:
    work = Path(tempfile.mkdtemp(prefix="crm-test-supervisor-"))
    cmd = [sys.executable, "-m", "crm_api", "serve", "--port", str(server.port), "--workers", "2"]
    done = subprocess.run(cmd, env=_env(database_url, work), capture_output=True, timeout=120)
    assert done.returncode == 3, done.stderr  # uvicorn's STARTUP_FAILURE
    assert b"cannot listen on 127.0.0.1" in done.stderr
    assert server.up()  # the running one is untouched


def test_sigterm_stops_every_worker_and_exits_cleanly(server: Server) -> None:
    workers = server.workers()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=60) == 0
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists()  # joined by the parent before it exited
    assert b"Application shutdown complete" in server.log.read_bytes()
