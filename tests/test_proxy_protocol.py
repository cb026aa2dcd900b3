"""The PROXY protocol (option ``proxy_protocol``) over real sockets: raw v1 and
v2 headers from the test, and a real HAProxy with ``send-proxy`` and
``send-proxy-v2`` in front of gkit. The client address must hold for every
request of a kept-alive connection (gunicorn lost it after the first one for
years); a header from an untrusted peer, a bad one or a missing one closes
the connection with one log line and no answer.

The HAProxy tests skip when haproxy is missing; they fail instead when
GKIT_REQUIRE_ALL=1 (CI).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import time
from typing import Any, Dict, Iterator, List

import gevent
import helpers
import pytest
from helpers import RawConn, request

import test_tls
from gkit.proto.proxy_protocol import V2_SIGNATURE

tls_certs = test_tls.certs  # a fixture: a self-signed certificate (paths)


def whoami(environ: Dict[str, Any], start_response: Any) -> List[bytes]:
    body = f"{environ['REMOTE_ADDR']} {environ['REMOTE_PORT']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def v2_inet6(src: str, sport: int, command: int = 1) -> bytes:
    body = (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, "::1")
            + struct.pack("!HH", sport, 8080) + struct.pack("!BH", 0x04, 3) + b"tlv")
    return V2_SIGNATURE + struct.pack("!BBH", 0x20 | command, 0x21, len(body)) + body


def three_requests(conn: RawConn) -> List[bytes]:
    """Three requests on one kept-alive connection, the first two pipelined."""
    conn.send(request() + request(target="/2"))
    bodies = [conn.read_response().body, conn.read_response().body]
    conn.send(request(target="/3"))
    bodies.append(conn.read_response().body)
    return bodies


@pytest.mark.parametrize("header,expected", [
    (b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n", b"192.0.2.7 56324"),
    (b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 80\r\n", b"2001:db8::7 4000"),
    (v2_inet6("2001:db8::9", 1234), b"2001:db8::9 1234"),
], ids=["v1-tcp4", "v1-tcp6", "v2-inet6-tlv"])
def test_header_names_the_client_of_every_request(serve: Any, header: bytes,
                                                  expected: bytes) -> None:
    server = serve(whoami, proxy_protocol=True)
    with RawConn(server.port) as conn:
        conn.send(header)
        assert three_requests(conn) == [expected] * 3


def test_header_and_request_in_one_segment(serve: Any) -> None:
    server = serve(whoami, proxy_protocol=True)
    with RawConn(server.port) as conn:
        conn.send(b"PROXY TCP4 192.0.2.8 198.51.100.1 1000 443\r\n" + request())
        assert conn.read_response().body == b"192.0.2.8 1000"


def test_header_in_pieces(serve: Any) -> None:
    server = serve(whoami, proxy_protocol=True)
    header = v2_inet6("2001:db8::10", 777)
    with RawConn(server.port) as conn:
        for i in range(0, len(header), 7):
            conn.send(header[i:i + 7])
            gevent.sleep(0.005)  # separate segments, not readiness
        conn.send(request())
        assert conn.read_response().body == b"2001:db8::10 777"


@pytest.mark.parametrize("header", [b"PROXY UNKNOWN\r\n", v2_inet6("::", 0, command=0)],
                         ids=["v1-unknown", "v2-local"])
def test_local_and_unknown_keep_the_peer_address(serve: Any, header: bytes) -> None:
    server = serve(whoami, proxy_protocol=True)
    with RawConn(server.port) as conn:
        conn.send(header)
        port = conn.sock.getsockname()[1]
        assert three_requests(conn) == [f"127.0.0.1 {port}".encode()] * 3


@pytest.mark.parametrize("data,reason", [
    (request(), "no PROXY protocol header"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n" + request(), 'bad port "99999"'),
    (b"PROXY TCP4 " + b"9" * 200, "longer than 107 bytes"),
    (V2_SIGNATURE + b"\x21\x11\x00\x04abcd" + request(), "address block of 4 bytes"),
], ids=["missing", "bad-v1", "oversized-v1", "bad-v2"])
def test_bad_or_missing_header_closes_with_one_log_line(serve: Any, error_log: Any,
                                                       data: bytes, reason: str) -> None:
    server = serve(whoami, proxy_protocol=True)
    with RawConn(server.port) as conn:
        conn.send(data)
        conn.assert_closed()
    lines = [r.getMessage() for r in error_log]
    assert len(lines) == 1, lines
    assert lines[0].startswith("PROXY protocol: closed the connection from 127.0.0.1: ")
    assert reason in lines[0]


@pytest.mark.parametrize("header", [b"PROXY TCP4 192.0.2.7 198.51.100.1 1 2\r\n",
                                    v2_inet6("2001:db8::9", 1234)], ids=["v1", "v2"])
def test_header_from_an_untrusted_peer_is_refused(serve: Any, error_log: Any,
                                                  header: bytes) -> None:
    server = serve(whoami, proxy_protocol=True, forwarded_allow_ips="10.0.0.0/8")
    with RawConn(server.port) as conn:
        conn.send(header + request())
        conn.assert_closed()
    lines = [r.getMessage() for r in error_log]
    assert lines == ["PROXY protocol: closed the connection from 127.0.0.1: a PROXY header "
                     "from a peer not in forwarded_allow_ips (add the proxy's address there "
                     "to trust it)"]


def test_untrusted_peer_without_header_is_served_as_itself(serve: Any, error_log: Any) -> None:
    server = serve(whoami, proxy_protocol=True, forwarded_allow_ips="10.0.0.0/8")
    with RawConn(server.port) as conn:
        port = conn.sock.getsockname()[1]
        conn.send(b"PRO")  # could still be a PROXY header: nothing is decided yet
        assert conn.silent_for(0.1)
        conn.send(b"PFIND / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        assert conn.read_response().body == f"127.0.0.1 {port}".encode()
        assert three_requests(conn) == [f"127.0.0.1 {port}".encode()] * 3
    assert error_log == []


def test_peer_closing_before_a_header_is_not_logged(serve: Any, error_log: Any) -> None:
    server = serve(whoami, proxy_protocol=True)
    helpers.connect(server.port).close()  # a load balancer's TCP health check
    with RawConn(server.port) as conn:  # the server goes on
        conn.send(b"PROXY TCP4 192.0.2.7 198.51.100.1 1 2\r\n" + request())
        assert conn.read_response().body == b"192.0.2.7 1"
    assert error_log == []


def test_header_before_tls(serve: Any, tls_certs: Dict[str, str]) -> None:
    # A TCP load balancer passing TLS through sends the header, then the
    # client's TLS bytes: gkit reads the header before the handshake.
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_certs["cert"], tls_certs["key"])
    server = serve(whoami, proxy_protocol=True, ssl_context=context)
    client = ssl.create_default_context(cafile=tls_certs["cert"])
    raw = helpers.connect(server.port)
    raw.sendall(b"PROXY TCP4 192.0.2.99 198.51.100.1 6000 443\r\n")
    with client.wrap_socket(raw, server_hostname="localhost") as tls:
        with _Adopted(tls) as conn:
            assert three_requests(conn) == [b"192.0.2.99 6000"] * 3


# -- through a real HAProxy ------------------------------------------------------------------
def haproxy_binary() -> str:
    found = shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if os.access(p, os.X_OK)),
        None)
    if found is None:
        reason = "haproxy is not installed (Debian: apt-get install haproxy)"
        if os.environ.get("GKIT_REQUIRE_ALL") == "1":
            pytest.fail(reason + " and GKIT_REQUIRE_ALL=1")
        pytest.skip(reason)
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


HAPROXY_CFG = """
global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend v1
    bind 127.0.0.1:{v1}
    default_backend gkit_v1
frontend v2
    bind 127.0.0.1:{v2}
    default_backend gkit_v2
backend gkit_v1
    server gkit 127.0.0.1:{upstream} send-proxy
backend gkit_v2
    server gkit 127.0.0.1:{upstream} send-proxy-v2
"""


@pytest.fixture
def haproxy(serve: Any, tmp_path: Any) -> Iterator[Dict[str, int]]:
    """HAProxy in TCP mode in front of an in-process gkit with proxy_protocol on:
    ports {"v1": ..., "v2": ...}."""
    binary = haproxy_binary()
    server = serve(whoami, proxy_protocol=True)
    for _ in range(3):  # a free port may be taken between probing and binding
        ports = {"v1": free_port(), "v2": free_port()}
        cfg = tmp_path / "haproxy.cfg"
        cfg.write_text(HAPROXY_CFG.format(upstream=server.port, **ports))
        proc = subprocess.Popen([binary, "-db", "-f", str(cfg)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if _listening(proc, list(ports.values()), 10.0):
            break
        proc.kill()
        log = proc.communicate()[1]
        if b"Address already in use" not in log and b"cannot bind" not in log:
            raise AssertionError(f"haproxy did not start: {log.decode(errors='replace')}")
    else:
        raise AssertionError("haproxy found no free ports in 3 tries")
    try:
        yield ports
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _listening(proc: subprocess.Popen, ports: List[int], timeout: float) -> bool:
    """Are the ports bound (read from /proc: a probe connection would reach gkit)?"""
    deadline = time.monotonic() + timeout
    wanted = {f"0100007F:{p:04X}" for p in ports}
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with open("/proc/net/tcp") as f:
            listening = {line.split()[1] for line in f.readlines()[1:] if line.split()[3] == "0A"}
        if wanted <= listening:
            return True
        gevent.sleep(0.05)
    return False


class _Adopted(RawConn):
    """A RawConn on a socket the test connected itself."""

    def __init__(self, sock: socket.socket) -> None:
        helpers.SocketReader.__init__(self, sock)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_through_haproxy(haproxy: Dict[str, int], version: str) -> None:
    # The client connects from 127.0.0.2 (all of 127/8 is local); HAProxy
    # connects to gkit from 127.0.0.1, so only the header can say 127.0.0.2.
    sock = socket.socket()
    sock.bind(("127.0.0.2", 0))
    sock.settimeout(helpers.TIMEOUT)
    sock.connect(("127.0.0.1", haproxy[version]))
    expected = f"127.0.0.2 {sock.getsockname()[1]}".encode()
    with _Adopted(sock) as conn:
        assert three_requests(conn) == [expected] * 3
