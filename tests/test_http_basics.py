"""The WSGI environ (PEP 3333) and the basic shape of a response.

Issue 2, point 4: "PEP 3333 environ (checked with wsgiref.validate in tests)".
"""
import re
import socket
import sys
import time
from email.utils import parsedate_to_datetime
from wsgiref.validate import validator

import gevent
import pytest
import requests

from helpers import RawConn, get, parse_responses, request, send_raw


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def capture_app(store):
    """An app that keeps a copy of each environ (the input stream read into ``body``)."""
    def app(environ, start_response):
        env = dict(environ)
        env["body"] = environ["wsgi.input"].read()
        store.append(env)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    return app


def test_hello_exact(serve):
    server = serve(hello)
    resp = get(server.port)
    assert resp.status_line == "HTTP/1.1 200 OK"
    assert resp.body == b"hello"
    assert resp.get("content-length") == "5"
    assert resp.get("content-type") == "text/plain"


def test_port_zero_gives_real_port(serve):
    server = serve(hello)
    assert isinstance(server.port, int)
    assert 0 < server.port < 65536
    assert server.status == "running"
    assert get(server.port).status == 200


def test_requests_library_round_trip(serve):
    """A real-world client (urllib3 underneath) talks to the server too."""
    server = serve(hello)
    with requests.Session() as session:
        for _ in range(3):
            r = session.get(f"http://127.0.0.1:{server.port}/x", timeout=5)
            assert r.status_code == 200
            assert r.content == b"hello"


@pytest.mark.filterwarnings("error::wsgiref.validate.WSGIWarning")
@pytest.mark.parametrize("raw", [
    request(target="/a/b?x=1&y=2"),
    request("POST", "/form", headers=[("Content-Type", "application/x-www-form-urlencoded")],
            body=b"a=1&b=2"),
    request("PUT", "/chunked", headers=[("Transfer-Encoding", "chunked")],
            body=b"5\r\nhello\r\n0\r\n\r\n"),
    request(target="/", version="HTTP/1.0", host=None),
], ids=["get-query", "post-form", "put-chunked", "http10"])
def test_environ_passes_wsgiref_validator(serve, raw):
    """wsgiref.validate checks environ keys and types, the input stream's methods,
    start_response's arguments and the response iterable; any breach raises in
    the app (a 500) or warns (an error here)."""
    calls = []

    def app(environ, start_response):
        calls.append(1)
        chunks = []
        while True:  # the validator allows read(size) only
            chunk = environ["wsgi.input"].read(1024)
            if not chunk:
                break
            chunks.append(chunk)
        body = b"".join(chunks)
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body) + 3))])
        return [b"ok:", body]

    server = serve(validator(app))
    responses = parse_responses(send_raw(server.port, raw))
    assert [r.status for r in responses] == [200]
    assert calls == [1]
    assert responses[0].body.startswith(b"ok:")


def test_environ_values(serve):
    store = []
    server = serve(capture_app(store))
    raw = request("POST", "/some/path?a=1&b=%20c", headers=[
        ("Content-Type", "text/plain; charset=utf-8"), ("X-Custom-Header", "v1"),
        ("User-Agent", "gkit-tests")], body=b"hello", host="example.com:1234")
    with RawConn(server.port) as conn:
        conn.send(raw)
        assert conn.read_response().status == 200
        client_port = conn.sock.getsockname()[1]
    (env,) = store
    assert env["REQUEST_METHOD"] == "POST"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/some/path"
    assert env["QUERY_STRING"] == "a=1&b=%20c"  # not decoded
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    if "REMOTE_PORT" in env:
        assert env["REMOTE_PORT"] == str(client_port)
    assert env["SERVER_PORT"] == str(server.port)
    assert isinstance(env["SERVER_NAME"], str) and env["SERVER_NAME"]
    assert env["HTTP_HOST"] == "example.com:1234"
    assert env["CONTENT_TYPE"] == "text/plain; charset=utf-8"
    assert env["CONTENT_LENGTH"] == "5"
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert env["HTTP_X_CUSTOM_HEADER"] == "v1"
    assert env["HTTP_USER_AGENT"] == "gkit-tests"
    assert env["wsgi.version"] == (1, 0)
    assert env["wsgi.url_scheme"] == "http"
    assert not env["wsgi.run_once"]
    assert isinstance(env["wsgi.multithread"], bool)
    assert isinstance(env["wsgi.multiprocess"], bool)
    assert env["body"] == b"hello"


def test_environ_without_body_has_no_content_length(serve):
    store = []
    server = serve(capture_app(store))
    assert get(server.port, "/").status == 200
    (env,) = store
    assert env.get("CONTENT_LENGTH", "") == ""
    assert env.get("CONTENT_TYPE", "") == ""
    assert env["QUERY_STRING"] == ""
    assert env["body"] == b""


def test_environ_http10(serve):
    store = []
    server = serve(capture_app(store))
    data = send_raw(server.port, b"GET /old HTTP/1.0\r\n\r\n")
    (resp,) = parse_responses(data)
    assert resp.status == 200
    assert store[0]["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert store[0]["PATH_INFO"] == "/old"
    assert "HTTP_HOST" not in store[0]


@pytest.mark.parametrize("target, path_info, query", [
    ("/a%20b", "/a b", ""),
    ("/caf%C3%A9/x", "/caf\u00c3\u00a9/x", ""),  # UTF-8 bytes, each as one latin-1 char
    ("/%7Euser/%41", "/~user/A", ""),
    ("/p%3Fq?x=%3F%20y", "/p?q", "x=%3F%20y"),
    ("/a+b", "/a+b", ""),  # '+' means space only in form data, not in a path
    ("/", "/", ""),
    ("/x?", "/x", ""),
    ("/x?a=1?b=2", "/x", "a=1?b=2"),
])
def test_path_info_is_percent_decoded_latin1(serve, target, path_info, query):
    store = []
    server = serve(capture_app(store))
    assert get(server.port, target).status == 200
    assert store[0]["PATH_INFO"] == path_info
    assert store[0]["QUERY_STRING"] == query
    assert store[0]["SCRIPT_NAME"] == ""


def test_header_values_are_latin1_strings(serve):
    store = []
    server = serve(capture_app(store))
    raw = b"GET / HTTP/1.1\r\nHost: x\r\nX-Value: caf\xc3\xa9\r\nConnection: close\r\n\r\n"
    assert parse_responses(send_raw(server.port, raw))[0].status == 200
    assert store[0]["HTTP_X_VALUE"] == "caf\u00c3\u00a9"


def test_duplicate_headers_are_joined(serve):
    store = []
    server = serve(capture_app(store))
    resp = get(server.port, headers=[("X-Dup", "a"), ("Accept", "text/html"), ("X-Dup", "b"),
                                     ("x-dup", "c")])
    assert resp.status == 200
    assert store[0]["HTTP_X_DUP"] == "a, b, c"
    assert store[0]["HTTP_ACCEPT"] == "text/html"


def test_header_value_whitespace_is_trimmed(serve):
    store = []
    server = serve(capture_app(store))
    raw = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: \t  value with  inner  \t \r\nConnection: close\r\n\r\n"
    assert parse_responses(send_raw(server.port, raw))[0].status == 200
    assert store[0]["HTTP_X_PAD"] == "value with  inner"


def test_other_methods_reach_the_app(serve):
    store = []
    server = serve(capture_app(store))
    for method in ["PATCH", "DELETE", "OPTIONS", "PUT"]:
        assert get(server.port, "/m", method=method).status == 200
    assert [e["REQUEST_METHOD"] for e in store] == ["PATCH", "DELETE", "OPTIONS", "PUT"]


def test_wsgi_errors_is_writable(serve):
    def app(environ, start_response):
        environ["wsgi.errors"].write("a message for the error stream\n")
        environ["wsgi.errors"].flush()
        start_response("200 OK", [])
        return [b"ok"]

    server = serve(app)
    resp = get(server.port)
    assert (resp.status, resp.body) == (200, b"ok")


def test_status_reason_and_headers_pass_through(serve):
    def app(environ, start_response):
        start_response("299 Something Custom", [("X-One", "1"), ("X-Two", "a b  c"),
                                                ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
        return [b"body"]

    server = serve(app)
    resp = get(server.port)
    assert resp.status_line == "HTTP/1.1 299 Something Custom"
    assert resp.get("x-one") == "1"
    assert resp.get("x-two") == "a b  c"
    assert resp.get_all("set-cookie") == ["a=1", "b=2"]
    assert resp.body == b"body"


def test_404_from_app(serve):
    def app(environ, start_response):
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"nope"]

    server = serve(app)
    resp = get(server.port, "/missing")
    assert resp.status_line == "HTTP/1.1 404 Not Found"
    assert resp.body == b"nope"


IMF_FIXDATE = re.compile(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d "
                         r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
                         r"\d\d:\d\d:\d\d GMT\Z")


def test_date_header_rfc7231(serve):
    server = serve(hello)
    before = time.time()
    resp = get(server.port)
    after = time.time()
    date = resp.get("date")
    assert date is not None, resp.headers
    assert IMF_FIXDATE.match(date), date
    stamp = parsedate_to_datetime(date).timestamp()
    # formatted at most once a second: it may lag by a second, never lead
    assert before - 2 <= stamp <= after + 1, (date, before, after)


def test_date_header_on_error_responses(serve):
    server = serve(hello)
    (resp,) = parse_responses(send_raw(server.port, b"GET / HTTP/1.1\r\n\r\n"))  # no Host
    assert resp.status == 400
    assert IMF_FIXDATE.match(resp.get("date") or ""), resp.headers


def test_server_header_default(serve):
    server = serve(hello)
    assert get(server.port).get_all("server") == ["gkit"]


def test_server_header_none_omits_it(serve):
    server = serve(hello, server_header=None)
    resp = get(server.port)
    assert resp.status == 200
    assert not resp.has("server")


def test_server_header_custom(serve):
    server = serve(hello, server_header="my-server/1.0")
    assert get(server.port).get_all("server") == ["my-server/1.0"]


def test_app_server_header_wins(serve):
    def app(environ, start_response):
        start_response("200 OK", [("server", "app-server")])
        return [b"x"]

    server = serve(app)
    assert get(server.port).get_all("server") == ["app-server"]


def test_app_date_header_wins(serve):
    fixed = "Sun, 06 Nov 1994 08:49:37 GMT"

    def app(environ, start_response):
        start_response("200 OK", [("Date", fixed)])
        return [b"x"]

    server = serve(app)
    assert get(server.port).get_all("date") == [fixed]


def test_start_response_write_callable(serve):
    """PEP 3333's legacy write(): its bytes come before the returned iterable's."""
    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"abc")
        write(b"")
        return [b"def", b"ghi"]

    server = serve(app)
    resp = get(server.port)
    assert resp.status == 200
    assert resp.body == b"abcdefghi"


def test_start_response_exc_info_replaces_headers(serve):
    """Before anything is sent, start_response(..., exc_info) may replace the status."""
    def app(environ, start_response):
        start_response("200 OK", [("X-First", "1")])
        try:
            raise ValueError("changed my mind")
        except ValueError:
            start_response("503 Service Unavailable", [("X-Second", "2")], sys.exc_info())
        return [b"later"]

    server = serve(app)
    resp = get(server.port)
    assert resp.status_line == "HTTP/1.1 503 Service Unavailable"
    assert resp.get("x-second") == "2"
    assert not resp.has("x-first")
    assert resp.body == b"later"


def test_start_response_twice_without_exc_info_is_500(serve, error_log):
    def app(environ, start_response):
        start_response("200 OK", [])
        start_response("201 Created", [])
        return [b"x"]

    server = serve(app)
    assert get(server.port).status == 500


def test_ipv6_literal(engine):
    """ip accepts an IPv6 literal (skipped when the host has no IPv6 loopback)."""
    from gkit import run_server

    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback on this host")
    server = run_server(hello, ip="::1", port=0, http=engine)
    try:
        data = send_raw(server.port, request(headers=[("Connection", "close")]), host="::1")
        (resp,) = parse_responses(data)
        assert (resp.status, resp.body) == (200, b"hello")
    finally:
        server.stop()


def test_many_sequential_connections(serve):
    server = serve(hello)
    for i in range(50):
        assert get(server.port, f"/{i}").body == b"hello"


def test_concurrent_connections(serve):
    server = serve(hello, thread=None)
    jobs = [gevent.spawn(get, server.port, f"/{i}") for i in range(30)]
    gevent.joinall(jobs, timeout=10, raise_error=True)
    assert [j.value.status for j in jobs] == [200] * 30


def test_latin1_response_header_value_is_written_as_latin1(serve):
    """PEP 3333: header values are native strings holding latin-1 code points."""
    def app(environ, start_response):
        start_response("200 OK", [("X-Latin", "caf\u00e9"), ("Content-Length", "1")])
        return [b"x"]

    server = serve(app)
    data = send_raw(server.port, request(headers=[("Connection", "close")]))
    assert b"\r\nX-Latin: caf\xe9\r\n" in data


def remote_app(environ, start_response):
    body = f"{environ['REMOTE_ADDR']} {environ['wsgi.url_scheme']}".encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


FORWARDED = [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")]


def test_forwarded_headers_ignored_by_default(serve):
    server = serve(remote_app)
    assert get(server.port, headers=FORWARDED).body == b"127.0.0.1 http"


def test_proxy_headers_from_trusted_proxy(serve):
    server = serve(remote_app, proxy_headers=True, forwarded_allow_ips=("127.0.0.1",))
    assert get(server.port, headers=FORWARDED).body == b"203.0.113.7 https"
    assert get(server.port).body == b"127.0.0.1 http"  # no headers: the peer itself


def test_proxy_headers_from_untrusted_peer_ignored(serve):
    server = serve(remote_app, proxy_headers=True, forwarded_allow_ips=("10.9.8.7",))
    assert get(server.port, headers=FORWARDED).body == b"127.0.0.1 http"


def test_https_with_ssl_context(serve, tmp_path):
    """ssl_context serves HTTPS directly (self-signed certificate from openssl)."""
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl command not available to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    store = []
    server = serve(capture_app(store), ssl_context=context)

    client = ssl.create_default_context(cafile=str(cert))
    client.check_hostname = False
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        with client.wrap_socket(raw) as tls:
            tls.sendall(request(target="/secure", headers=[("Connection", "close")]))
            data = b""
            while True:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                data += chunk
    (resp,) = parse_responses(data)
    assert (resp.status, resp.body) == (200, b"ok")
    assert store[0]["wsgi.url_scheme"] == "https"
    assert store[0]["PATH_INFO"] == "/secure"
