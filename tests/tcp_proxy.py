"""A loopback TCP proxy that a test controls: cut every live connection, refuse new ones.

    with TcpProxy(target_port=7687) as proxy:      # listens on 127.0.0.1:<free port>
        run_something(uri=proxy.uri)               # bolt://127.0.0.1:<port>
        proxy.cut(refuse_for=3.0)                  # reset all connections, refuse for 3 s
        proxy.cut()                                # ... or refuse until restore()
        proxy.restore()
        proxy.stall()                              # silent: no reset, no data, until restore()

What it does, and what it will not do:

* Listens on 127.0.0.1 only and forwards to 127.0.0.1 only (``target_host`` must be a
  loopback address): it is a test tool, never a network service.
* ``cut()`` resets every live connection (``SO_LINGER`` 0, so both peers see a
  connection reset, as when a network path dies, not an orderly close) and closes the
  listening socket: a new connection is refused (``ECONNREFUSED``) until ``restore()``
  (or the end of ``refuse_for`` seconds) opens it again on the same port. ``cut()``
  returns once every connection it cut is closed.
* ``stall()`` is the silent failure (a firewall or NAT that drops packets): every live
  connection stays open but nothing is forwarded on it any more, ever, and new
  connections are accepted and held without an answer. ``restore()`` makes new
  connections work again; the stalled ones stay dead (their peers must time out).
* Bounded: at most ``max_connections`` live connections (more are accepted and closed
  at once), one thread per connection plus the listener thread; all threads are
  daemons.
* Stops by itself: ``close()`` (the context manager calls it) ends every thread; a
  watchdog also closes the proxy ``lifetime`` seconds after ``start()``, so a test
  that forgets it (or dies) does not leave it running.
"""

from __future__ import annotations

import ipaddress
import selectors
import socket
import struct
import threading
import time
from typing import List, Optional, Set

_POLL_S = 0.1
_CHUNK = 64 * 1024


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target_host:target_port``; see the module docstring."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1", *,
                 max_connections: int = 64, lifetime: float = 600.0,
                 connect_timeout: float = 5.0) -> None:
        if not ipaddress.ip_address(target_host).is_loopback:
            raise ValueError(f"TcpProxy forwards to loopback addresses only, not {target_host!r}")
        if not 1 <= max_connections <= 1024:
            raise ValueError(f"max_connections must be from 1 to 1024, got {max_connections}")
        self.target = (target_host, target_port)
        self.max_connections = max_connections
        self.lifetime = lifetime
        self.connect_timeout = connect_timeout
        self.port: Optional[int] = None
        #: Counters a test can assert on.
        self.accepted = 0
        self.rejected = 0  # accepted but closed at once (too many, or upstream down)
        self.cut_connections = 0
        self.cuts = 0
        self._lock = threading.Lock()
        self._listener: Optional[socket.socket] = None
        self._connections: Set["_Connection"] = set()
        self._closed = threading.Event()
        self._restore_timer: Optional[threading.Timer] = None
        self._stalled = False
        self._threads: List[threading.Thread] = []

    # ---- public API

    @property
    def uri(self) -> str:
        if self.port is None:
            raise RuntimeError("the proxy is not started")
        return f"bolt://127.0.0.1:{self.port}"

    @property
    def refusing(self) -> bool:
        with self._lock:
            return self._listener is None and not self._closed.is_set()

    @property
    def stalled(self) -> bool:
        with self._lock:
            return self._stalled

    @property
    def live_connections(self) -> int:
        with self._lock:
            return len(self._connections)

    def start(self) -> "TcpProxy":
        with self._lock:
            if self.port is not None:
                raise RuntimeError("the proxy is already started")
            self._listener = self._listen(0)
            self.port = self._listener.getsockname()[1]
        for target, name in ((self._accept_loop, "tcp-proxy-accept"),
                             (self._watchdog, "tcp-proxy-watchdog")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def cut(self, refuse_for: Optional[float] = None) -> int:
        """Reset every live connection and refuse new ones: for ``refuse_for`` seconds,
        or until ``restore()`` when None. Returns the number of connections cut."""
        with self._lock:
            self._cancel_restore_timer()
            if self._listener is not None:
                _stop_listening(self._listener)
                self._listener = None
            connections = list(self._connections)
            self.cuts += 1
            if refuse_for is not None:
                self._restore_timer = threading.Timer(refuse_for, self.restore)
                self._restore_timer.daemon = True
                self._restore_timer.start()
        for connection in connections:
            connection.reset()
        for connection in connections:
            connection.join(timeout=5.0)
        with self._lock:
            self.cut_connections += len(connections)
        return len(connections)

    def stall(self) -> int:
        """Stop forwarding on every live connection, for good, and hold new ones unanswered
        until ``restore()``. Returns the number of connections stalled."""
        with self._lock:
            self._stalled = True
            connections = list(self._connections)
        for connection in connections:
            connection.freeze()
        return len(connections)

    def restore(self) -> None:
        """End a cut (accept again, on the same port) or a stall (forward new connections
        again). No-op when neither, or when closed."""
        with self._lock:
            self._cancel_restore_timer()
            self._stalled = False
            if self._closed.is_set() or self._listener is not None:
                return
            deadline = time.monotonic() + 5.0
            while True:
                try:
                    self._listener = self._listen(self.port)
                    return
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)

    def close(self) -> None:
        """Stop listening, reset every connection, end every thread. Idempotent."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
            self._cancel_restore_timer()
            if self._listener is not None:
                _stop_listening(self._listener)
                self._listener = None
            connections = list(self._connections)
        for connection in connections:
            connection.reset()
        for thread in [*self._threads, *(c.thread for c in connections)]:
            if thread is not threading.current_thread():
                thread.join(timeout=5.0)

    def __enter__(self) -> "TcpProxy":
        return self.start() if self.port is None else self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ---- internals

    @staticmethod
    def _listen(port: int) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("127.0.0.1", port))
            listener.listen(16)
            listener.settimeout(_POLL_S)
        except OSError:
            listener.close()
            raise
        return listener

    def _cancel_restore_timer(self) -> None:
        if self._restore_timer is not None:
            self._restore_timer.cancel()
            self._restore_timer = None

    def _watchdog(self) -> None:
        if not self._closed.wait(self.lifetime):
            self.close()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            with self._lock:
                listener = self._listener
            if listener is None:  # refusing: the port is closed
                self._closed.wait(_POLL_S)
                continue
            try:
                client, _ = listener.accept()
            except (socket.timeout, OSError):  # timeout, or closed by cut()/close()
                continue
            self._admit(client)

    def _admit(self, client: socket.socket) -> None:
        with self._lock:
            self.accepted += 1
            refuse = (self._listener is None or self._closed.is_set()
                      or len(self._connections) >= self.max_connections)
            stalled = self._stalled
        upstream = None
        if stalled and not refuse:  # held open, never answered
            connection = _Connection(self, client, None)
            connection.freeze()
            with self._lock:
                closed = self._closed.is_set()
                if not closed:
                    self._connections.add(connection)
            if closed:
                _reset(client)
            else:
                connection.thread.start()
            return
        if not refuse:
            try:
                upstream = socket.create_connection(self.target, timeout=self.connect_timeout)
            except OSError:
                refuse = True
        if refuse:
            with self._lock:
                self.rejected += 1
            _reset(client)
            return
        connection = _Connection(self, client, upstream)
        with self._lock:
            # A cut or stall may have come while we connected upstream: obey it.
            cut = self._listener is None or self._closed.is_set()
            if cut:
                self.rejected += 1
            else:
                self._connections.add(connection)
                if self._stalled:
                    connection.freeze()
        if cut:
            _reset(client)
            _reset(upstream)
            return
        connection.thread.start()

    def _forget(self, connection: "_Connection") -> None:
        with self._lock:
            self._connections.discard(connection)


class _Connection:
    """One client connection and its upstream, pumped both ways by one thread.

    ``upstream`` is None for a connection held unanswered during a stall."""

    def __init__(self, proxy: TcpProxy, client: socket.socket,
                 upstream: Optional[socket.socket]) -> None:
        self._proxy = proxy
        self._client = client
        self._upstream = upstream
        self._stop = threading.Event()
        self._frozen = threading.Event()
        self.thread = threading.Thread(target=self._pump, name="tcp-proxy-conn", daemon=True)

    def reset(self) -> None:
        """Ask the pump thread to reset both sockets; it does so within ``_POLL_S``."""
        self._stop.set()

    def freeze(self) -> None:
        """Forward nothing more; keep both sockets open until ``reset()``."""
        self._frozen.set()

    def join(self, timeout: float) -> None:
        if self.thread.is_alive():
            self.thread.join(timeout)

    def _pump(self) -> None:
        selector = selectors.DefaultSelector()
        try:
            if self._upstream is None:
                self._stop.wait()
                return
            peers = {self._client: self._upstream, self._upstream: self._client}
            for sock in peers:
                sock.setblocking(True)
                sock.settimeout(5.0)
                selector.register(sock, selectors.EVENT_READ)
            while not self._stop.is_set():
                if self._frozen.is_set():
                    self._stop.wait(_POLL_S)
                    continue
                for key, _ in selector.select(_POLL_S):
                    source = key.fileobj
                    data = source.recv(_CHUNK)
                    if not data:  # one side closed: close the other one too
                        return
                    peers[source].sendall(data)
        except OSError:
            pass
        finally:
            selector.close()
            _reset(self._client)
            if self._upstream is not None:
                _reset(self._upstream)
            self._proxy._forget(self)


def _stop_listening(listener: socket.socket) -> None:
    """Close a listening socket so that the port refuses at once: ``shutdown`` first,
    since a thread blocked in ``accept`` would keep it listening until it returns."""
    try:
        listener.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    listener.close()


def _reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer gets a RST, as when a connection breaks."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
