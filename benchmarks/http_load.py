"""What the API stages share: a lean load generator in a process of its own (the bench's `--load` mode) and the
API served by `python -m uvicorn APP --factory --workers N` in its own process group.

The generator is asyncio streams on one thread: each of `concurrency` keep-alive connections writes pre-encoded
HTTP/1.1 requests and reads each answer's head and its Content-Length body, checking that every status is 200. It
costs the client far less CPU per call than httpx (about 1 ms a call), which on a 2-core machine was CPU taken from
the server it measured; its own CPU seconds during the load are part of each result (`load_cpu_s`)."""
from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from processes import ENTRY

ROOT = Path(__file__).parent.parent


def load(url: str, work: Path, requests: int, concurrency: int, path: str = "/v1/score") -> dict:
    """The generator itself (child side): `requests` POSTs of work/bodies.json's bodies in turn, `concurrency` at a
    time. Returns each call's latency (s), the wall time and the process's CPU seconds over the load."""
    where = urlsplit(url)
    host, port = where.hostname, where.port
    encoded = [json.dumps(b).encode() for b in json.loads((work / "bodies.json").read_text())]
    prepared = [f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(b)}\r\n\r\n".encode() + b for b in encoded]
    latencies: list[float] = []

    async def connection(offset: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for i in range(offset, requests, concurrency):
                start = time.perf_counter()
                writer.write(prepared[i % len(prepared)])
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                length = None
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                        break
                if length is None:
                    raise RuntimeError(f"an answer without Content-Length: {head[:500]!r}")
                body = await reader.readexactly(length)
                latencies.append(time.perf_counter() - start)
                if head[9:12] != b"200":
                    raise RuntimeError(f"status {head[9:12].decode()}: {body[:500]!r}")
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def everything() -> None:
        await asyncio.gather(*(connection(o) for o in range(concurrency)))

    cpu = _cpu_s()
    t = time.perf_counter()
    asyncio.run(everything())
    return {"latencies": latencies, "wall_s": time.perf_counter() - t, "cpu_s": _cpu_s() - cpu}


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(url: str, work: Path, requests: int, concurrency: int) -> tuple[list[float], float, float]:
    """A load from the generator in its own process (parent side): latencies in ms, wall time, generator CPU s."""
    out = subprocess.run([sys.executable, str(ENTRY), "--load", url, "--work", str(work),
                          "--rows", str(requests), "--concurrency", str(concurrency)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"the load generator failed against {url}: {out.stderr[-2000:]}")
    measured = json.loads(out.stdout)
    return [t * 1000 for t in measured["latencies"]], measured["wall_s"], measured["cpu_s"]


@dataclass
class Served:
    url: str
    start_to_ready_s: float  # process start to the first 200 from /readyz
    start_to_workers_s: float  # process start to every worker's "Application startup complete"


@contextlib.contextmanager
def api_process(app: str, env: dict, workers: int, log: Path, plain: bool = False):  # noqa: ANN201
    """APP (an app factory's import name, run from the repository root) served as `aduana serve --workers N` serves
    (serving/api/workers.py; `plain`: with uvicorn's own configuration, benchmarks/serve_workers.py) in its own
    process group, until /readyz answers 200 and every worker has logged "Application startup complete"; stopped
    however the block ends."""
    from flows.orchestration.postgres import free_port

    port = free_port()
    t = time.perf_counter()
    with log.open("wb") as out:
        server = [str(Path(__file__).with_name("serve_workers.py"))] if plain else ["-m", "serving.api.workers"]
        proc = subprocess.Popen([sys.executable, *server, app, str(port), str(workers)],
                                env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 600
        ready = started = None
        while ready is None or started is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{app} with {workers} workers did not start: {log.read_text()[-2000:]}")
            if ready is None and _readyz(port) == 200:
                ready = time.perf_counter() - t
            if started is None and log.read_text().count("Application startup complete") >= workers:
                started = time.perf_counter() - t
            time.sleep(0.01)
        yield Served(f"http://127.0.0.1:{port}", ready, started)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _readyz(port: int) -> int | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/readyz")
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()
