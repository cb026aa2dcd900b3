"""HTTPS and wss:// with no proxy: a self-signed certificate made in the test
(the ``cryptography`` package), served by ``python -m gkit --certfile
--keyfile`` and by ``run_server(ssl_context=...)`` in this process; and the
certificate errors a user can make, each a clear one-line message.
"""
from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from collections.abc import Iterator
from typing import Any, Dict

import pytest
import requests
import websocket
from apps_cli import GkitRunner, app, run_gkit

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
except ImportError:  # the certs fixture says what to install
    x509 = None

LOCAL = ("--ip", "127.0.0.1", "--port", "0")


@pytest.fixture
def gkit() -> Iterator[GkitRunner]:
    yield from run_gkit()


def _key_pem(key: Any, password: bytes = b"") -> bytes:
    encryption = (serialization.BestAvailableEncryption(password) if password
                  else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             encryption)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: Any) -> Dict[str, str]:
    """Paths: cert, key, combined (cert + key), other_key, encrypted_key, garbage."""
    if x509 is None:
        reason = "the TLS tests make their certificate with cryptography: pip install cryptography"
        if os.environ.get("GKIT_REQUIRE_ALL") == "1":
            pytest.fail(reason + " (GKIT_REQUIRE_ALL=1)")
        pytest.skip(reason)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    folder = tmp_path_factory.mktemp("certs")
    files = {
        "cert": cert_pem,
        "key": _key_pem(key),
        "combined": cert_pem + _key_pem(key),
        "other_key": _key_pem(ec.generate_private_key(ec.SECP256R1())),
        "encrypted_key": _key_pem(key, b"secret"),
        "garbage": b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n"
                   b"-----END CERTIFICATE-----\n",
    }
    paths = {}
    for label, data in files.items():
        path = folder / f"{label}.pem"
        path.write_bytes(data)
        paths[label] = str(path)
    return paths


def _check_https(url: str, cert: str) -> Dict[str, Any]:
    """Three requests on one verified keep-alive connection; the app's facts."""
    assert url.startswith("https://127.0.0.1:")
    with requests.Session() as session:
        seen = [session.get(url + "/", verify=cert, timeout=10).json() for _ in range(3)]
    assert len({s["conn"] for s in seen}) == 1, "the three requests share one connection"
    assert all(s["scheme"] == "https" for s in seen)
    return seen[0]


def _check_wss(url: str, cert: str) -> None:
    ws = websocket.create_connection(url.replace("https://", "wss://") + "/ws", timeout=10,
                                     sslopt={"ca_certs": cert})
    try:
        ws.send("hello over TLS")
        assert ws.recv() == "hello over TLS"
        ws.send_binary(b"\x00\x01\xff" * 1000)
        assert ws.recv() == b"\x00\x01\xff" * 1000
    finally:
        ws.close()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_cli_https_and_wss(gkit: Any, certs: Dict[str, str], workers: str) -> None:
    proc = gkit("apps_cli:app", *LOCAL, "--certfile", certs["cert"], "--keyfile", certs["key"],
                "--workers", workers)
    _check_https(proc.url, certs["cert"])
    _check_wss(proc.url, certs["cert"])
    with pytest.raises(requests.exceptions.SSLError):  # an unverified certificate is refused
        requests.get(proc.url + "/", timeout=10)
    assert proc.stop() == 0


def test_cli_certfile_with_the_key_inside(gkit: Any, certs: Dict[str, str]) -> None:
    proc = gkit("apps_cli:app", *LOCAL, "--certfile", certs["combined"])
    _check_https(proc.url, certs["cert"])


def test_plain_http_to_the_https_port_does_not_hurt(gkit: Any, certs: Dict[str, str]) -> None:
    proc = gkit("apps_cli:app", *LOCAL, "--certfile", certs["cert"], "--keyfile", certs["key"])
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(proc.url.replace("https", "http") + "/", timeout=10)
    _check_https(proc.url, certs["cert"])


def test_run_server_with_ssl_context(certs: Dict[str, str]) -> None:
    from gkit import run_server

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs["cert"], certs["key"])
    with run_server(app, ip="127.0.0.1", port=0, ssl_context=context) as server:
        url = f"https://127.0.0.1:{server.port}"
        _check_https(url, certs["cert"])
        _check_wss(url, certs["cert"])


@pytest.mark.parametrize("args, message", [
    (["--certfile", "{dir}/missing.pem", "--keyfile", "{key}"],
     "--certfile '{dir}/missing.pem': no such file or directory"),
    (["--certfile", "{cert}", "--keyfile", "{dir}/missing.pem"],
     "--keyfile '{dir}/missing.pem': no such file or directory"),
    (["--certfile", "{cert}", "--keyfile", "{other_key}"],
     "--keyfile '{other_key}' does not match the certificate in --certfile '{cert}'"),
    (["--certfile", "{cert}"],
     "--keyfile '{cert}': no PEM private key in it"),
    (["--certfile", "{key}", "--keyfile", "{key}"],
     "--certfile '{key}': no PEM certificate in it"),
    (["--certfile", "{garbage}", "--keyfile", "{key}"],
     "cannot load --certfile '{garbage}' / --keyfile '{key}': bad PEM"),
    (["--certfile", "{cert}", "--keyfile", "{encrypted_key}"],
     "--keyfile '{encrypted_key}': the private key is encrypted"),
    (["--keyfile", "{key}"], "--keyfile needs --certfile"),
])
def test_certificate_errors(gkit: Any, certs: Dict[str, str], args: Any, message: str) -> None:
    names = dict(certs, dir=os.path.dirname(certs["cert"]))
    proc = gkit("apps_cli:app", *LOCAL, *[a.format(**names) for a in args], ready=False)
    assert proc.wait() == 2, proc.stderr
    assert len(proc.lines) == 1, proc.stderr
    assert proc.lines[0].startswith("gkit: error: ")
    assert message.format(**names) in proc.lines[0], proc.stderr


def test_access_log_over_tls(gkit: Any, certs: Dict[str, str]) -> None:
    proc = gkit("apps_cli:app", *LOCAL, "--certfile", certs["cert"], "--keyfile", certs["key"],
                "--access-log")
    got = requests.get(proc.url + "/", verify=certs["cert"], timeout=10).json()
    assert got["scheme"] == "https"
    proc.wait_line(r'"GET / HTTP/1\.1" 200 ')


def test_realtime_libraries_over_wss(gkit: Any, certs: Dict[str, str]) -> None:
    """Issue 10 over TLS: flask-sock (the raw gunicorn.socket hand-off is the TLS
    socket) and a gevent-websocket app (wsgi.websocket)."""
    proc = gkit("tests.apps.realtime:app", *LOCAL, "--certfile", certs["cert"],
                "--keyfile", certs["key"])
    for path in ("/sock/echo", "/gws/echo"):
        ws = websocket.create_connection(proc.url.replace("https://", "wss://") + path,
                                         timeout=10, sslopt={"ca_certs": certs["cert"]})
        try:
            ws.send("over TLS")
            assert ws.recv() == "over TLS"
            big = os.urandom(100_000)
            ws.send_binary(big)
            assert ws.recv() == big
            ws.close()
        finally:
            ws.shutdown()
    assert not [line for line in proc.lines if "ERROR" in line or "Traceback" in line], proc.stderr


def test_tls_reader_that_never_reads_holds_no_worker(serve: Any, certs: Dict[str, str]) -> None:
    """Issue 8 point 4 on TLS: a stalled HTTPS reader of a big body lends its slot out."""
    import socket
    import ssl as ssl_mod

    def app(environ: Any, start_response: Any) -> Any:
        if environ["PATH_INFO"] == "/fast":
            start_response("200 OK", [("Content-Length", "4")])
            return [b"fast"]
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [b"t" * (8 * 1024 * 1024)]

    context = ssl_mod.SSLContext(ssl_mod.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs["cert"], certs["key"])
    server = serve(app, ssl_context=context, thread=1)
    client_ctx = ssl_mod.create_default_context(cafile=certs["cert"])
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    raw.settimeout(10)
    raw.connect(("127.0.0.1", server.port))
    stalled = client_ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    try:
        stalled.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        assert stalled.recv(100).startswith(b"HTTP/1.1 200 ")  # started; now it stops reading
        reply = requests.get(f"https://127.0.0.1:{server.port}/fast", verify=certs["cert"],
                             timeout=3)
        assert reply.text == "fast"
    finally:
        stalled.close()
