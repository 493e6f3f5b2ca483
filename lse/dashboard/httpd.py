"""A bounded HTTP server for the dashboard: idle and slow clients cost no thread.

``ThreadingHTTPServer`` gives every connection a thread for as long as the client keeps it open,
with no timeout and no cap: 441 idle connections made 443 threads, and 200 idle ones were all
still held after 20 s.  Here one thread owns every socket in a ``selectors`` loop and reads
request heads without blocking; only a *complete* request head goes to a fixed pool of handler
threads.  So:

- an idle connection is a file descriptor in the loop, closed after ``head_timeout`` seconds;
- a slow client (a request trickled byte by byte) is the same, and its head must be complete
  within ``head_timeout`` seconds and ``max_head`` bytes, or it is closed;
- at most ``max_connections`` are held; a connection beyond that is closed at once;
- ``workers`` threads answer requests, each with a socket timeout on its writes; one request
  per connection (``Connection: close``), so no thread ever waits for a client's next request.

The request handler is :class:`http.server.BaseHTTPRequestHandler` as before, reading the
buffered head from memory.  Only GET and HEAD carry no body, which is all the dashboard serves.
"""

from __future__ import annotations

import io
import logging
import selectors
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler

__all__ = ["BoundedHTTPServer"]

log = logging.getLogger(__name__)


class _Conn:
    __slots__ = ("sock", "addr", "buf", "since")

    def __init__(self, sock: socket.socket, addr) -> None:
        self.sock, self.addr, self.buf, self.since = sock, addr, bytearray(), time.monotonic()


class BoundedHTTPServer:
    """``serve_forever()``, ``shutdown()``, ``server_close()``, ``server_address``: the part of
    ``socketserver.TCPServer``'s interface the dashboard uses."""

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], *,
                 workers: int = 16, max_connections: int = 1024, head_timeout: float = 10.0,
                 write_timeout: float = 10.0, max_head: int = 16 << 10) -> None:
        host = address[0]
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind(address)
            self.socket.listen(min(socket.SOMAXCONN, 1024))
        except OSError:
            self.socket.close()
            raise
        self.socket.setblocking(False)
        self.server_address = self.socket.getsockname()[:2]
        self.handler = handler
        self.max_connections = max_connections
        self.head_timeout = head_timeout
        self.write_timeout = write_timeout
        self.max_head = max_head
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lse-dashboard-req")
        self._conns: dict[int, _Conn] = {}
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()
        self.refused = 0  # connections closed at once because max_connections were held

    # ---- the loop -------------------------------------------------------------------------

    def serve_forever(self, poll_interval: float = 0.25) -> None:
        self._stopped.clear()
        sel = selectors.DefaultSelector()
        sel.register(self.socket, selectors.EVENT_READ, None)
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(poll_interval):
                    if key.data is None:
                        self._accept(sel)
                    else:
                        self._read(sel, key.data)
                self._expire(sel)
        finally:
            for c in list(self._conns.values()):
                self._drop(sel, c)
            sel.close()
            self._stopped.set()

    def _accept(self, sel: selectors.BaseSelector) -> None:
        for _ in range(64):  # drain a burst, but let reads run between bursts
            try:
                sock, addr = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # EMFILE and the like: leave it in the backlog for now
                return
            if len(self._conns) >= self.max_connections:
                self.refused += 1
                sock.close()
                continue
            sock.setblocking(False)
            c = _Conn(sock, addr)
            self._conns[sock.fileno()] = c
            sel.register(sock, selectors.EVENT_READ, c)

    def _read(self, sel: selectors.BaseSelector, c: _Conn) -> None:
        try:
            data = c.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(sel, c)
            return
        c.buf += data
        end = c.buf.find(b"\r\n\r\n")
        if end < 0:
            end = c.buf.find(b"\n\n")
        if end < 0:
            if len(c.buf) > self.max_head:
                self._drop(sel, c)
            return
        sel.unregister(c.sock)
        del self._conns[c.sock.fileno()]
        self._pool.submit(self._answer, c)

    def _expire(self, sel: selectors.BaseSelector) -> None:
        deadline = time.monotonic() - self.head_timeout
        for c in [c for c in self._conns.values() if c.since < deadline]:
            self._drop(sel, c)

    def _drop(self, sel: selectors.BaseSelector, c: _Conn) -> None:
        self._conns.pop(c.sock.fileno(), None)
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()

    # ---- one request, on a pool thread --------------------------------------------------------

    def _answer(self, c: _Conn) -> None:
        try:
            c.sock.setblocking(True)
            c.sock.settimeout(self.write_timeout)  # a client that never reads cannot hold us
            _Request(c.sock, c.addr, self, bytes(c.buf), self.handler)
        except (OSError, ValueError):  # a client gone or too slow to read: nothing to answer
            pass
        except Exception:  # noqa: BLE001 - a handler bug must not go unseen, nor end the pool
            log.exception("dashboard request from %s failed", c.addr)
        finally:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.sock.close()

    # ---- lifecycle ------------------------------------------------------------------------------

    def shutdown(self) -> None:
        self._stop.set()
        self._stopped.wait(10)

    def server_close(self) -> None:
        self._stop.set()
        self.socket.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    @property
    def connections(self) -> int:
        """Connections held now (idle or sending their request head)."""
        return len(self._conns)


class _Request:
    """Runs one ``handler`` over a buffered request head (the loop read it) and the socket."""

    def __init__(self, sock: socket.socket, addr, server: BoundedHTTPServer, head: bytes,
                 handler: type[BaseHTTPRequestHandler]) -> None:
        h = handler.__new__(handler)
        h.request, h.client_address, h.server = sock, addr, server
        h.connection = sock
        h.rfile = io.BytesIO(head)
        h.wfile = _Writer(sock)
        h.close_connection = True
        h.handle_one_request()


class _Writer(io.BufferedIOBase):
    """wfile: every write is a ``sendall`` (a raw socket file may write only part)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self._sock.sendall(b)
        with memoryview(b) as view:
            return view.nbytes
