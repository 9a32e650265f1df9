"""The TCP proxy the connection-fault tests put between a command and Neo4j: it
forwards, cuts, refuses, stalls and restores connections as they say."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tests.tcp_proxy import TcpProxy


@pytest.fixture
def echo_server():
    """A loopback echo server (one thread per connection, daemon threads); its port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    stop = threading.Event()

    def echo(conn):
        with conn:
            while not stop.is_set():
                try:
                    data = conn.recv(4096)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not data:
                    return
                conn.sendall(data)

    def accept():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except (socket.timeout, OSError):
                continue
            conn.settimeout(0.2)
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    server.close()


def _echoes(port: int, payload: bytes = b"ping") -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(payload)
        received = b""
        while len(received) < len(payload):  # TCP may hand the echo back in pieces
            chunk = sock.recv(len(payload) - len(received))
            if not chunk:
                break
            received += chunk
        return received == payload


def test_proxy_forwards_cuts_refuses_stalls_and_restores(echo_server):
    with TcpProxy(echo_server) as proxy:
        assert _echoes(proxy.port, "ünï 🚀".encode() * 1000)
        live = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        live.sendall(b"x")
        assert live.recv(1) == b"x"
        assert proxy.cut() >= 1 and proxy.refusing
        with pytest.raises((ConnectionResetError, BrokenPipeError, OSError)):
            live.sendall(b"y")
            if not live.recv(1):
                raise ConnectionResetError("closed")
        live.close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        proxy.restore()
        assert _echoes(proxy.port)
        proxy.cut(refuse_for=0.3)  # restores by itself
        time.sleep(0.6)
        assert not proxy.refusing and _echoes(proxy.port)
        held = socket.create_connection(("127.0.0.1", proxy.port), timeout=0.5)
        held.sendall(b"h")
        assert held.recv(1) == b"h"  # admitted and forwarding
        assert proxy.stall() >= 1
        held.sendall(b"z")
        with pytest.raises(socket.timeout):  # silent: no answer, no reset
            held.recv(1)
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=0.5) as new:
            new.sendall(b"n")
            with pytest.raises(socket.timeout):
                new.recv(1)
        proxy.restore()
        assert _echoes(proxy.port)
        held.close()
    assert proxy.live_connections == 0
    assert not any(t.name.startswith("tcp-proxy") and t.is_alive() for t in threading.enumerate())
    with pytest.raises(ValueError):
        TcpProxy(echo_server, target_host="10.0.0.1")
