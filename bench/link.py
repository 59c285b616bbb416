"""A slow link for benchmarks: a TCP proxy on 127.0.0.1 with limited bandwidth and added latency.

    with ThrottledLink(target_port=22, mbit=20, rtt_ms=40) as link:
        ssh -p {link.port} ...   # every byte crosses the link, both ways

The proxy runs in a process of its own (`python -m bench.link PORT MBIT RTT_MS`): in the
benchmark's process it would compete for the GIL with mailfix's own parsing, and slow the link for
mailfix alone.

Each direction is paced as a real link would: a chunk leaves when the link has sent the previous
ones (bandwidth) and arrives half a round trip later (latency). A bounded buffer per direction
lets TCP's flow control reach the sender, as a router's queue would.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import threading
import time

CHUNK = 16 * 1024
BUFFERED_CHUNKS = 64  # about 1 MB in flight per direction


class ThrottledLink:
    """The link, in a child process, for as long as the `with` block lasts."""

    def __init__(self, *, target_port: int, mbit: float = 20.0, rtt_ms: float = 40.0) -> None:
        self.argv = [sys.executable, "-m", "bench.link", str(target_port), str(mbit), str(rtt_ms)]
        self.port = 0
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> ThrottledLink:
        self._process = subprocess.Popen(self.argv, stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        self.port = int(self._process.stdout.readline())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._process is not None
        self._process.terminate()
        self._process.wait(10)


class Proxy:
    def __init__(self, *, target_port: int, mbit: float = 20.0, rtt_ms: float = 40.0, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self.bytes_per_second = mbit * 1_000_000 / 8
        self.one_way = rtt_ms / 2000
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(lambda loop, context: None)  # connections cut at shutdown
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None

    def __enter__(self) -> Proxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _listen(self) -> asyncio.base_events.Server:
        return await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        for writer in (client_writer, server_writer):
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await asyncio.gather(
                self._direction(client_reader, server_writer), self._direction(server_reader, client_writer)
            )
        except asyncio.CancelledError:  # the link is shutting down
            pass
        finally:
            client_writer.close()
            server_writer.close()

    async def _direction(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Carry one direction: each chunk is sent after the previous ones, and delivered a one-way delay later."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(BUFFERED_CHUNKS)

        async def receive() -> None:
            link_free_at = 0.0
            while data := await reader.read(CHUNK):
                link_free_at = max(link_free_at, time.monotonic()) + len(data) / self.bytes_per_second
                await queue.put((link_free_at + self.one_way, data))
            await queue.put((0.0, b""))

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                writer.write(data)
                await writer.drain()
            with contextlib.suppress(OSError):
                writer.write_eof()

        with contextlib.suppress(OSError):
            await asyncio.gather(receive(), deliver())


if __name__ == "__main__":
    port, mbit, rtt_ms = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    with Proxy(target_port=port, mbit=mbit, rtt_ms=rtt_ms) as proxy:
        print(proxy.port, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
