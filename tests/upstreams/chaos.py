"""A fault-injecting asyncio TCP proxy between a client (the gateway) and an upstream.

    proxy = await start_chaos("127.0.0.1", mock.port)   # proxy.port, proxy.url
    await proxy.set(mode="blackhole")                     # or latency_ms=.., reset_after_bytes=..
    await proxy.close()

Modes: ``"pass"`` (forward both ways; ``latency_ms`` delays every upstream→client chunk;
``reset_after_bytes=N`` forwards N bytes upstream→client on a connection, then resets it with an
RST), ``"blackhole"`` (accept, read and discard, never answer, never close), ``"refuse"`` (the
listening socket is closed, so connects are refused; any other mode reopens it on the same port).
``latency_ms`` and ``reset_after_bytes`` apply live to open connections; the mode to new ones.
``drop()`` resets the open connections. Counters: ``connections`` (accepted), ``active``, ``resets``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

MODES = ("pass", "blackhole", "refuse")


class ChaosProxy:
    def __init__(self, upstream_host: str, upstream_port: int, host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host, self.port = host, 0
        self.mode = "pass"
        self.latency_ms = 0.0
        self.reset_after_bytes: int | None = None
        self.connections = self.active = self.resets = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def set(self, mode: str | None = None, *, latency_ms: float | None = None, reset_after_bytes: int | None = -1) -> None:
        """Switch mode and knobs (``reset_after_bytes=None`` turns resets off; omitted: unchanged)."""
        if latency_ms is not None:
            self.latency_ms = latency_ms
        if reset_after_bytes != -1:
            self.reset_after_bytes = reset_after_bytes
        if mode is None or mode == self.mode:
            return
        if mode not in MODES:
            raise ValueError(f"mode: one of {MODES}")
        if mode == "refuse" and self._server is not None:
            self._server.close()  # stops listening at once; open connections carry on
            self._server = None
        elif mode != "refuse" and self._server is None:
            await self._listen()
        self.mode = mode

    def drop(self) -> None:
        """Reset every open connection, both sides (a client's idle keep-alive ones too): a new mode then
        meets every request, not only those that open a new connection."""
        for w in list(self._writers):
            _reset(w)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._writers):
            w.transport.abort()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.active += 1
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up_writer: asyncio.StreamWriter | None = None
        try:
            if self.mode == "blackhole":
                while await reader.read(65536):
                    pass
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                _reset(writer)
                return
            self._writers.add(up_writer)
            upload = asyncio.create_task(self._pipe(reader, up_writer))
            try:
                await self._download(up_reader, writer)
            finally:
                upload.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await upload
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.active -= 1
            self._tasks.discard(task)
            for w in (writer, up_writer):
                if w is not None:
                    self._writers.discard(w)
                    w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # pass the client's half-close on

    async def _download(self, up_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sent = 0
        while data := await up_reader.read(65536):
            if self.latency_ms:
                await asyncio.sleep(self.latency_ms / 1000)
            limit = self.reset_after_bytes
            if limit is not None and sent + len(data) >= limit:
                writer.write(data[: max(0, limit - sent)])
                await writer.drain()
                self.resets += 1
                _reset(writer)
                return
            writer.write(data)
            await writer.drain()
            sent += len(data)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0) instead of a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def start_chaos(upstream_host: str, upstream_port: int, *, host: str = "127.0.0.1", port: int = 0) -> ChaosProxy:
    proxy = ChaosProxy(upstream_host, upstream_port, host)
    proxy.port = port
    await proxy._listen()
    return proxy
