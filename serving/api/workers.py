"""Several worker processes on one port, each with a listening socket of its own (SO_REUSEPORT).

uvicorn's `--workers N` shares one listening socket among its workers: whichever wakes first accepts, so a client's
kept-alive connections pile onto one worker while the other idles (measured: 16 connections, one worker at 114 %
CPU, the other at 23 %, and two workers served no more than one). With a socket per worker in one SO_REUSEPORT
group, the kernel spreads connections across the workers evenly by their addresses.

`run(config, workers)` supervises the workers: each is started (spawned: a fresh interpreter, as uvicorn does),
restarted if it dies (one that dies while starting stops them all: the app cannot start), and all of them are
stopped on SIGINT or SIGTERM (uvicorn's graceful shutdown in each). The
supervisor binds the address first, without listening, to fail at once with a clear error when the port is taken
and to hold it while workers restart; a socket in the group that listens nowhere would be given connections.
`python -m serving.api.workers APP PORT WORKERS` serves an app factory this way (tests and benchmarks)."""
from __future__ import annotations

import errno
import logging
import multiprocessing
import signal
import socket
import sys
import threading
import time

import uvicorn

from features.errors import UserError

log = logging.getLogger("uvicorn.error")
RESTART_PAUSE_S = 1.0
STARTUP_GRACE_S = 30.0  # a worker that exits this soon after its start failed to start


def listener(host: str, port: int, listen: bool = True) -> socket.socket:
    """A TCP socket on host:port in the address's SO_REUSEPORT group (listening unless told otherwise)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    if listen:
        sock.listen(2048)
    sock.set_inheritable(False)
    return sock


def claim(host: str, port: int) -> None:
    """Fail now, with a clear error, when host:port cannot be served: another server listens there (this one's
    workers would otherwise join its SO_REUSEPORT group and share its connections), or the address is not this
    machine's. Checked before the app is built, which at national volume takes seconds."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise UserError(f"cannot serve on {host}:{port}: {exc.strerror}") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed connection's TIME_WAIT is no owner
        try:
            probe.bind(address)
        except OSError as exc:
            taken = exc.errno == errno.EADDRINUSE
            raise UserError(f"cannot serve on {host}:{port}: " + (
                "the port is in use by another process (choose another with --port, or stop that one)" if taken
                else exc.strerror or str(exc))) from None


def _worker(config: uvicorn.Config) -> None:
    """One worker process: its own listening socket, then uvicorn's server on it."""
    config.configure_logging()
    uvicorn.Server(config).run(sockets=[listener(config.host, config.port)])


def run(config: uvicorn.Config, workers: int) -> None:
    """Serve `config` (an app factory's import name: each worker imports and calls it) with `workers` processes;
    one worker is served in this process, as uvicorn serves it."""
    if workers == 1:
        uvicorn.Server(config).run()
        return
    held = listener(config.host, config.port, listen=False)  # the port, or a clear error now
    context = multiprocessing.get_context("spawn")
    stop = threading.Event()
    processes: list[multiprocessing.process.BaseProcess] = []

    started: dict[int, float] = {}

    def start() -> multiprocessing.process.BaseProcess:
        process = context.Process(target=_worker, args=(config,), daemon=False)
        process.start()
        started[process.pid] = time.monotonic()
        return process

    def ask_to_stop(signum: int, frame: object) -> None:  # noqa: ARG001 - signal handler's signature
        stop.set()

    previous = {s: signal.signal(s, ask_to_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        processes.extend(start() for _ in range(workers))
        log.info("started %d worker processes (one listening socket each, SO_REUSEPORT)", workers)
        while not stop.wait(0.5):
            for i, process in enumerate(processes):
                if process.is_alive() or stop.is_set():
                    continue
                if time.monotonic() - started[process.pid] < STARTUP_GRACE_S:  # it cannot start: restarting won't help
                    log.error("worker %s exited (code %s) while starting: stopping", process.pid, process.exitcode)
                    raise SystemExit(1)
                log.warning("worker %s exited (code %s): starting another", process.pid, process.exitcode)
                stop.wait(RESTART_PAUSE_S)
                processes[i] = start()
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn's graceful shutdown
        for process in processes:
            process.join(timeout=config.timeout_graceful_shutdown or 30)
            if process.is_alive():
                process.kill()
                process.join()
        held.close()
        for s, handler in previous.items():
            signal.signal(s, handler)


if __name__ == "__main__":
    from serving.api.guards import server_config

    given = server_config(sys.argv[1], "127.0.0.1", int(sys.argv[2]), log_level="info", workers=int(sys.argv[3]))
    given.access_log = False  # info: each worker's "Application startup complete", not a line per call
    run(given, given.workers)
