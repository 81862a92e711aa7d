"""`python -m uvicorn`, with its listening socket marked as TCP: the bench's way to serve with `--workers N` as
uvicorn will once its issue #3149 is fixed (github.com/Kludex/uvicorn/issues/3149, PR #3154).

With `--workers N`, uvicorn binds the socket itself (`Config.bind_socket`) with `proto` left at 0; accepted
connections inherit it, and asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP. So every answer's
body, written after its head, waits for the client's delayed ACK: about 40 ms a call on a kept-alive connection
on Linux, whatever the app. One worker is not affected (asyncio binds from getaddrinfo, proto 6). Here the bound
socket is rewrapped from its descriptor, which Linux reports as IPPROTO_TCP; nothing else changes.

Usage: python benchmarks/uvicorn_tcp.py APP [uvicorn's options], from the repository root."""
from __future__ import annotations

import socket
import sys

import uvicorn.config
from uvicorn.main import main

_bind_socket = uvicorn.config.Config.bind_socket


def bind_socket(self: uvicorn.config.Config) -> socket.socket:
    sock = _bind_socket(self)
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto != socket.IPPROTO_TCP:
        sock = socket.socket(fileno=sock.detach())  # family, type and proto read from the descriptor
    return sock


if __name__ == "__main__":
    uvicorn.config.Config.bind_socket = bind_socket
    sys.exit(main())
