"""Only bytes of a request head count as head bytes (issue 8 point 11).

The httptools engine used to count every read that gave llhttp no event as
head bytes, including reads inside a chunked body, and none of a read that
ended with a partial head after a whole request. Three symptoms followed,
each checked here over a real socket on both engines: an unsolicited 408
on an idle keep-alive connection, a 431 on a long upload of small chunks,
and a partial head that escaped ``header_timeout``. The gaps between sends
put pieces into separate reads of the server (they order bytes; they do not
wait for readiness).
"""
import gevent

from helpers import RawConn, parse_responses, request


def echo_length(environ, start_response):
    body = environ["wsgi.input"].read()
    out = str(len(body)).encode()
    start_response("200 OK", [("Content-Length", str(len(out)))])
    return [out]


CHUNKED_HEAD = request("POST", "/up", headers=[("Transfer-Encoding", "chunked")])


def test_no_408_after_a_chunk_size_line_in_its_own_read(serve):
    server = serve(echo_length, idle_timeout=30, header_timeout=0.3)
    with RawConn(server.port) as conn:
        conn.send(CHUNKED_HEAD)
        gevent.sleep(0.05)
        conn.send(b"5\r\n")  # a read that gives the parser no event
        gevent.sleep(0.05)
        conn.send(b"hello\r\n0\r\n\r\n")
        resp = conn.read_response()
        assert (resp.status, resp.body) == (200, b"5")
        # Idle now, past header_timeout: no 408 comes, the connection stays.
        assert conn.silent_for(1.0), conn.buf
        conn.send(request(target="/next"))
        assert conn.read_response().status == 200


def test_a_long_upload_of_small_chunks_is_not_a_large_head(serve):
    """Reads that hold only chunk-size lines (here with 8 KB extensions, so
    that 9 of them pass the 64 KiB head limit) are body bytes, not head bytes."""
    server = serve(echo_length, idle_timeout=30, header_timeout=30)
    ext = b";" + b"e" * 8000
    with RawConn(server.port) as conn:
        conn.send(CHUNKED_HEAD)
        for _ in range(12):
            gevent.sleep(0.03)
            conn.send(b"1" + ext + b"\r\n")
            gevent.sleep(0.03)
            conn.send(b"x\r\n")
        conn.send(b"0\r\n\r\n")
        resp = conn.read_response()
    assert (resp.status, resp.body) == (200, b"12")


def test_a_partial_head_after_a_whole_request_is_timed(serve):
    """One read: a whole request, then the start of the next head, which never
    ends. header_timeout (0.3 s) cuts it, not idle_timeout (30 s)."""
    server = serve(echo_length, idle_timeout=30, header_timeout=0.3)
    with RawConn(server.port) as conn:
        conn.send(request(target="/a") + b"GET /b HTTP/1.1\r\nHost: exa")
        assert conn.read_response().status == 200
        rest = conn.read_until_close(timeout=5)
    assert [r.status for r in parse_responses(rest)] in ([], [408]), rest
