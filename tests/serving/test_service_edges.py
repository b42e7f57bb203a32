"""The service's HTTP edges through a real `bentoml serve` on 127.0.0.1: the API key, the
concurrency cap, the body and header timeouts and the trailing-slash redirect.

A second server runs with a key, a cap of one request in flight and short timeouts; the
session's server (no settings) shows the defaults.
"""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest

from tests.serving.conftest import running_server
from tests.serving.test_service import body

pytestmark = pytest.mark.slow
KEY = "test-key-3b9f0c27"
BODY_TIMEOUT_S = 2
REQUEST_TIMEOUT_S = 6
HEADER_TIMEOUT_S = 2
EDGE_SETTINGS = {"LOCALSOC_API_KEY": KEY, "LOCALSOC_MAX_CONCURRENCY": "1",
                 "LOCALSOC_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
                 "LOCALSOC_REQUEST_TIMEOUT_S": str(REQUEST_TIMEOUT_S),
                 "LOCALSOC_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S)}
PROBES = ("/livez", "/readyz", "/healthz")
GUARDED = [("GET", "/sites"), ("GET", "/metrics"), ("GET", "/docs.json"), ("GET", "/"),
           ("POST", "/predict"), ("POST", "/predict/"), ("GET", "/no-such-page")]


@pytest.fixture(scope="module")
def edge_server(project, tmp_path_factory):
    """Base URL of a server with an API key, a cap of 1 and short body and request timeouts."""
    root, home, _ = project
    log_path = tmp_path_factory.mktemp("edge_server") / "server.log"
    with running_server(root, home, log_path, EDGE_SETTINGS) as url:
        yield url


@pytest.fixture(scope="module")
def edge_client(edge_server):
    with httpx.Client(base_url=edge_server, timeout=30) as session:
        yield session


def open_request(url: str, declared_bytes: int, sent: bytes, key: str = KEY) -> socket.socket:
    """A POST /predict that declares ``declared_bytes`` of body and sends only ``sent``."""
    address = urlsplit(url)
    connection = socket.create_connection((address.hostname, address.port), timeout=30)
    connection.sendall(b"POST /predict HTTP/1.1\r\nHost: localhost\r\n"
                       b"Content-Type: application/json\r\n"
                       + f"Content-Length: {declared_bytes}\r\nX-API-Key: {key}\r\n\r\n".encode()
                       + sent)
    return connection


def read_reply(connection: socket.socket, timeout: float) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of the reply on ``connection``, read within ``timeout`` s."""
    connection.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        assert chunk, f"the connection closed without a reply: {data!r}"
        data += chunk
    head, content = data.split(b"\r\n\r\n", 1)
    status_line, *lines = head.decode().split("\r\n")
    headers = {name.strip().lower(): value.strip()
               for name, value in (line.split(":", 1) for line in lines)}
    while len(content) < int(headers.get("content-length", 0)):
        chunk = connection.recv(65536)
        assert chunk, "the connection closed in the middle of the reply"
        content += chunk
    return int(status_line.split()[1]), headers, content


# --- a. the API key ---------------------------------------------------------------------------


def test_without_a_key_setting_the_routes_are_open(client):
    assert client.get("/sites").status_code == 200
    assert client.get("/metrics").status_code == 200


@pytest.mark.parametrize(("method", "path"), GUARDED)
@pytest.mark.parametrize("credentials", [{}, {"X-API-Key": "wrong"},
                                         {"Authorization": "Bearer wrong"},
                                         {"Authorization": f"Basic {KEY}"}],
                         ids=["none", "wrong X-API-Key", "wrong bearer", "not bearer"])
def test_with_a_key_every_route_but_the_probes_answers_401(edge_client, method, path,
                                                           credentials):
    response = edge_client.request(method, path, headers=credentials, json={})
    assert response.status_code == 401, response.text
    error = response.json()
    assert set(error) == {"error", "field"} and "API key" in error["error"], error
    assert KEY not in response.text
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("credentials", [{"X-API-Key": KEY}, {"Authorization": f"Bearer {KEY}"},
                                         {"Authorization": f"bearer  {KEY}"}],
                         ids=["X-API-Key", "bearer", "bearer, other spelling"])
def test_the_key_opens_every_route(edge_client, study, credentials):
    assert edge_client.get("/sites", headers=credentials).status_code == 200
    assert edge_client.get("/metrics", headers=credentials).status_code == 200
    assert edge_client.get("/docs.json", headers=credentials).status_code == 200
    response = edge_client.post("/predict", headers=credentials, json=body(study, "china_site"))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", PROBES)
def test_the_health_probes_need_no_key(edge_client, path):
    assert edge_client.get(path).status_code == 200


# --- b. the concurrency cap -------------------------------------------------------------------


def test_a_request_beyond_the_cap_gets_429_at_once(edge_server, edge_client, study):
    held = open_request(edge_server, 1000, b'{"site": ')  # in flight until its 408
    try:
        time.sleep(0.5)
        started = time.monotonic()
        response = edge_client.post("/predict", headers={"X-API-Key": KEY},
                                    json=body(study, "china_site"))
        assert response.status_code == 429, response.text
        assert time.monotonic() - started < 1.5
        assert "error" in response.json()
        assert edge_client.get("/readyz").status_code == 200  # probes are never capped
        status, _, _ = read_reply(held, timeout=3 * BODY_TIMEOUT_S)
        assert status == 408
    finally:
        held.close()
    response = edge_client.post("/predict", headers={"X-API-Key": KEY},
                                json=body(study, "china_site"))
    assert response.status_code == 200, response.text


# --- c. the body timeout ----------------------------------------------------------------------


def test_a_slow_body_gets_408_within_the_body_timeout(edge_server):
    started = time.monotonic()
    connection = open_request(edge_server, 1000, b'{"site": "china_site", ')
    try:
        status, headers, content = read_reply(connection, timeout=REQUEST_TIMEOUT_S + 10)
        elapsed = time.monotonic() - started
        assert status == 408, content
        assert BODY_TIMEOUT_S - 0.5 < elapsed < REQUEST_TIMEOUT_S - 1, elapsed
        error = json.loads(content)
        assert set(error) == {"error", "field"}
        assert f"{BODY_TIMEOUT_S} s" in error["error"], error
        assert headers["connection"] == "close"
        connection.settimeout(5)
        assert connection.recv(1024) == b""  # the server closed the connection
    finally:
        connection.close()


def test_a_body_that_arrives_in_time_is_answered(edge_server, study):
    payload = json.dumps(body(study, "china_site")).encode()
    connection = open_request(edge_server, len(payload), payload[:100])
    try:
        time.sleep(BODY_TIMEOUT_S / 4)
        connection.sendall(payload[100:])
        status, _, content = read_reply(connection, timeout=REQUEST_TIMEOUT_S + 10)
        assert status == 200, content
    finally:
        connection.close()


def test_headers_dribbled_a_byte_every_half_second_get_408_within_the_header_timeout(
        edge_server):
    address = urlsplit(edge_server)
    head = (f"GET /sites HTTP/1.1\r\nHost: localhost\r\nX-API-Key: {KEY}\r\n\r\n").encode()
    connection = socket.create_connection((address.hostname, address.port), timeout=30)
    started, sent = time.monotonic(), 0
    try:
        connection.settimeout(0.5)
        received = b""
        while sent < len(head) and time.monotonic() - started < 4 * HEADER_TIMEOUT_S:
            try:
                connection.send(head[sent:sent + 1])
                sent += 1
            except OSError:  # closed by the server
                break
            try:
                chunk = connection.recv(4096)  # waits up to 0.5 s: the dribble's pace
            except TimeoutError:
                continue
            received += chunk
            if not chunk or b"\r\n\r\n" in received:
                break
        elapsed = time.monotonic() - started
        assert received.startswith(b"HTTP/1.1 408 "), (received, sent, elapsed)
        assert HEADER_TIMEOUT_S - 0.5 < elapsed < HEADER_TIMEOUT_S + 1.5, elapsed
        assert sent < len(head)  # cut off before the headers were complete
        connection.settimeout(5)
        rest = received.partition(b"\r\n\r\n")[2]
        while (chunk := connection.recv(4096)):
            rest += chunk
        error = json.loads(rest)  # then the server closed the connection
        assert set(error) == {"error", "field"}
        assert f"within {HEADER_TIMEOUT_S} s" in error["error"], error
    finally:
        connection.close()


def test_headers_that_arrive_in_time_in_pieces_are_answered(edge_server):
    address = urlsplit(edge_server)
    head = (f"GET /sites HTTP/1.1\r\nHost: localhost\r\nX-API-Key: {KEY}\r\n\r\n").encode()
    with socket.create_connection((address.hostname, address.port), timeout=30) as connection:
        for piece in (head[:12], head[12:30], head[30:]):
            connection.sendall(piece)
            time.sleep(HEADER_TIMEOUT_S / 5)
        status, _, content = read_reply(connection, timeout=10)
    assert status == 200, content


# --- d. the trailing-slash redirect -----------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [("POST", "/predict/"), ("GET", "/sites/"),
                                              ("GET", "/metrics/")])
def test_a_trailing_slash_never_redirects_to_the_host_header(client, study, method, path):
    response = client.request(method, path, headers={"Host": "evil.example"},
                              json=body(study, "china_site") if method == "POST" else None)
    assert "evil.example" not in response.headers.get("location", "")
    assert response.status_code == 200, (response.status_code, response.headers)


# --- e. every connection ends, whatever the method and the reply ------------------------------


@pytest.mark.parametrize(("head", "status"), [
    ("GET /livez HTTP/1.1\r\nContent-Length: 100000000\r\n", 200),
    ("DELETE /sites HTTP/1.1\r\nX-API-Key: {key}\r\nContent-Length: 100000000\r\n", 405),
    ("OPTIONS /predict HTTP/1.1\r\nX-API-Key: {key}\r\nContent-Length: 100000000\r\n", 405),
    ("POST /predict HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n", 401),
    ("POST /predict HTTP/1.1\r\nX-API-Key: {key}\r\nContent-Type: application/json\r\n"
     "Content-Length: 100000000\r\n", 413),
    ("POST /predict HTTP/1.1\r\nX-API-Key: {key}\r\nContent-Type: text/csv\r\n"
     "Content-Length: 1000\r\n", 415),
], ids=["GET /livez", "DELETE", "OPTIONS", "401", "413", "415"])
def test_a_reply_before_the_body_is_read_ends_the_connection(edge_server, head, status):
    """The probe's slow client: a declared body, then a byte every second. It gets its reply,
    then the connection ends (end-of-file, the socket closed after the 2 s linger), instead of
    being held for as long as it keeps sending."""
    from tests.serving.test_header_timeout import dribble_after, read_until_closed

    address = urlsplit(edge_server)
    request = (head.format(key=KEY) + "Host: localhost\r\n\r\n").encode()
    with socket.create_connection((address.hostname, address.port), timeout=30) as connection:
        stop = dribble_after(connection, request, 1.0)
        try:
            received, elapsed = read_until_closed(connection, limit_s=3 * BODY_TIMEOUT_S + 4)
        finally:
            stop.set()
    assert received.startswith(f"HTTP/1.1 {status} ".encode()), received[:300]
    assert elapsed < BODY_TIMEOUT_S, elapsed  # not the body timeout: at once after the reply
