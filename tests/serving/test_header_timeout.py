"""The header timeout added to uvicorn's h11 protocol, on a real uvicorn server in this process
(a tiny ASGI app on a free port of 127.0.0.1); the service's own server: test_service_edges.py."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import uvicorn
import uvicorn.config

from localsoc.serving import header_timeout
from localsoc.serving.header_timeout import HeaderTimeoutProtocol
from tests.serving.conftest import free_port

TIMEOUT_S = 1.0
KEEP_ALIVE_S = 30  # longer than every pause below: only the header timer may close
REQUEST = b"GET /ok HTTP/1.1\r\nHost: localhost\r\nUser-Agent: probe\r\n\r\n"


async def ok_app(scope, receive, send):
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture()
def server(monkeypatch):
    """(host, port) of a uvicorn server built as BentoML builds it (``http="auto"``) after
    ``install(TIMEOUT_S)``; stopped at the end, uvicorn's protocol table restored."""
    for name in ("auto", "h11"):
        monkeypatch.setitem(uvicorn.config.HTTP_PROTOCOLS, name,
                            uvicorn.config.HTTP_PROTOCOLS[name])
    monkeypatch.setattr(HeaderTimeoutProtocol, "header_timeout_s",
                        HeaderTimeoutProtocol.header_timeout_s)
    header_timeout.install(TIMEOUT_S)
    port = free_port()
    config = uvicorn.Config(ok_app, host="127.0.0.1", port=port, lifespan="off",
                            log_level="warning", timeout_keep_alive=KEEP_ALIVE_S)
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not instance.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    assert config.http_protocol_class is HeaderTimeoutProtocol
    yield "127.0.0.1", port
    instance.should_exit = True
    thread.join(timeout=20)


def read_until_closed(connection: socket.socket, limit_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed (s
    from now); fails if it is still open after ``limit_s``."""
    started, received = time.monotonic(), b""
    connection.settimeout(limit_s)
    while True:
        try:
            chunk = connection.recv(65536)
        except TimeoutError:
            pytest.fail(f"still open after {limit_s} s; received {received!r}")
        if not chunk:
            return received, time.monotonic() - started
        received += chunk


def read_response(connection: socket.socket) -> bytes:
    """One response to REQUEST (its body is the 2 bytes ``ok``)."""
    connection.settimeout(5)
    received = b""
    while not received.endswith(b"\r\n\r\nok"):
        chunk = connection.recv(65536)
        assert chunk, f"closed after {received!r}"
        received += chunk
    return received


def test_headers_dribbled_a_byte_at_a_time_get_408_and_the_connection_closed(server):
    connection = socket.create_connection(server)
    started = time.monotonic()
    stop = threading.Event()

    def dribble():
        for byte in REQUEST:
            if stop.wait(0.2):
                return
            try:
                connection.send(bytes([byte]))
            except OSError:
                return

    sender = threading.Thread(target=dribble, daemon=True)
    sender.start()
    try:
        received, _ = read_until_closed(connection, limit_s=TIMEOUT_S + 4)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        sender.join(timeout=5)
        connection.close()
    assert received.startswith(b"HTTP/1.1 408 "), received
    assert b"connection: close" in received
    assert b'"error": "the request headers did not arrive in full within 1 s' in received
    assert TIMEOUT_S - 0.2 < elapsed < TIMEOUT_S + 1.5, elapsed


def test_a_connection_that_sends_nothing_is_closed_after_the_timeout(server):
    with socket.create_connection(server) as connection:
        received, elapsed = read_until_closed(connection, limit_s=TIMEOUT_S + 4)
    assert received.startswith(b"HTTP/1.1 408 "), received
    assert TIMEOUT_S - 0.2 < elapsed < TIMEOUT_S + 1.5, elapsed


def test_after_the_408_late_bytes_are_read_for_linger_s_then_the_socket_closes(server,
                                                                               monkeypatch):
    """The 408 and end-of-file come at the timeout; bytes the client still sends are read and
    dropped (a socket closed at once would answer them with a reset, which can discard the 408
    unread), until ``linger_s`` later the socket closes and the next bytes are refused."""
    monkeypatch.setattr(HeaderTimeoutProtocol, "linger_s", 1.0)
    with socket.create_connection(server) as connection:
        received, _ = read_until_closed(connection, limit_s=TIMEOUT_S + 4)
        assert received.startswith(b"HTTP/1.1 408 "), received
        for _ in range(3):  # within the linger: accepted, no reset
            connection.sendall(b"GET / HTTP/1.1\r\n")
            time.sleep(0.1)
        time.sleep(HeaderTimeoutProtocol.linger_s + 0.5)
        with pytest.raises(OSError):  # closed now: the first bytes draw a reset
            for _ in range(20):
                connection.sendall(b"x")
                time.sleep(0.1)


def test_requests_in_time_are_served_and_each_request_on_a_connection_is_timed(server):
    with socket.create_connection(server) as connection:
        # headers in two parts, within the timeout
        connection.sendall(REQUEST[:10])
        time.sleep(TIMEOUT_S / 2)
        connection.sendall(REQUEST[10:])
        assert read_response(connection).startswith(b"HTTP/1.1 200 ")
        # kept alive: an idle pause longer than the header timeout does not count against
        # the next request, whose clock starts at its first byte
        time.sleep(TIMEOUT_S * 1.5)
        connection.sendall(REQUEST)
        assert read_response(connection).startswith(b"HTTP/1.1 200 ")
        # two pipelined requests, the second one unfinished: it is timed too
        connection.sendall(REQUEST + REQUEST[:10])
        assert read_response(connection).startswith(b"HTTP/1.1 200 ")
        received, elapsed = read_until_closed(connection, limit_s=TIMEOUT_S + 4)
    assert received.startswith(b"HTTP/1.1 408 "), received
    assert elapsed < TIMEOUT_S + 1.5, elapsed


@pytest.mark.parametrize("seconds", [0, -1, float("nan")])
def test_install_refuses_a_timeout_that_is_not_positive(seconds):
    with pytest.raises(ValueError, match="above 0"):
        header_timeout.install(seconds)


def dribble_after(connection: socket.socket, head: bytes, every_s: float) -> threading.Event:
    """Send ``head`` now, then one byte of body every ``every_s`` until the returned event is
    set or the server closes; a slow client that declared a large body."""
    connection.sendall(head)
    stop = threading.Event()

    def dribble():
        while not stop.wait(every_s):
            try:
                connection.send(b"x")
            except OSError:
                return

    threading.Thread(target=dribble, daemon=True).start()
    return stop


@pytest.mark.parametrize("method", [b"GET", b"DELETE", b"OPTIONS", b"POST"])
def test_a_reply_before_the_body_arrived_ends_the_connection(server, monkeypatch, method):
    """ok_app answers without reading the body: a client that declared 100 MB and sends a byte
    every 0.3 s gets the reply, then end-of-file, then the socket closes after linger_s
    (before: uvicorn waited for the rest of the body, however long it took)."""
    monkeypatch.setattr(HeaderTimeoutProtocol, "linger_s", 1.0)
    head = (method + b" /ok HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000000\r\n\r\nx")
    with socket.create_connection(server) as connection:
        stop = dribble_after(connection, head, 0.3)
        try:
            received, elapsed = read_until_closed(connection, limit_s=TIMEOUT_S + 4)
            assert received.startswith(b"HTTP/1.1 200 ") and received.endswith(b"ok"), received
            assert b"connection: close" in received.lower(), received  # not to be reused
            assert elapsed < 1.0, elapsed  # end-of-file right after the reply
            time.sleep(HeaderTimeoutProtocol.linger_s + 0.5)
            with pytest.raises(OSError):  # closed after the linger: the bytes draw a reset
                for _ in range(20):
                    connection.sendall(b"x")
                    time.sleep(0.1)
        finally:
            stop.set()
