"""TCP ports of this namespace's 127.0.0.1 offered at an address inside a test's network namespace: how hosts in
namespaces (tests/integration/test_multihost.py, tests/support/multisite.py) reach the session's PostgreSQL
and Redis, which listen on the host's loopback only. Listening sockets are made by a short-lived thread that
enters the namespace (namespaces belong to threads); the forwarding runs on an event loop in this process."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import socket
import threading
from collections import Counter
from urllib.parse import urlsplit, urlunsplit

CLONE_NEWNET = 0x40000000


def enter_namespace(name: str) -> None:
    """Move the calling thread into network namespace ``name`` (namespaces belong to threads)."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open(f"/run/netns/{name}") as handle:
        if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns {name}: {os.strerror(error)}")


def listen_in(namespace: str, address: str, port: int) -> socket.socket:
    """A listening TCP socket inside ``namespace``, made by a thread that lives only for that:
    the socket stays in the namespace it was made in, this process's threads stay in theirs."""
    made: dict = {}

    def make() -> None:
        try:
            enter_namespace(namespace)
            made["socket"] = socket.create_server((address, port), backlog=128)
        except BaseException as exc:
            made["error"] = exc

    thread = threading.Thread(target=make)
    thread.start()
    thread.join()
    if "error" in made:
        raise made["error"]
    return made["socket"]


class Relay:
    """Ports at the hub's address forwarded to the same ports on this namespace's 127.0.0.1; it notes
    which addresses connected to which port, so the test can tell the workers used the bridge."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers: list[asyncio.AbstractServer] = []
        self.peers: Counter = Counter()

    def forward(self, listener: socket.socket) -> None:
        port = listener.getsockname()[1]

        async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.peers[(writer.get_extra_info("peername")[0], port)] += 1
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                writer.close()
                return
            await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

        async def start() -> None:
            self.servers.append(await asyncio.start_server(connection, sock=listener))

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(timeout=10)

    def close(self) -> None:
        async def stop() -> None:
            for server in self.servers:
                server.close()
            connections = asyncio.all_tasks() - {asyncio.current_task()}
            for task in connections:
                task.cancel()
            await asyncio.gather(*connections, return_exceptions=True)  # ended here, not destroyed pending

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


def rehost(url: str, address: str) -> str:
    """The same server as hosts in the namespaces address it: ``address``, the same port."""
    parts = urlsplit(url)
    netloc = parts.netloc.replace(f"{parts.hostname}:{parts.port}", f"{address}:{parts.port}")
    return urlunsplit(parts._replace(netloc=netloc))
