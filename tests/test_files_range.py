"""A seekable ``wsgi.file_wrapper``, and Range through ``sendfile`` (issue 10, point 4).

werkzeug (Flask's ``send_file``) seeks through a file wrapper that has
``seekable()``/``seek()``/``tell()``; gkit then sends the range from the file
descriptor. Counting reads on the file object shows that no byte of a 1 GiB
(sparse) file passes through Python.
"""
from __future__ import annotations

import io
import os

import pytest
from helpers import RawConn, get, request

from gkit.files import FileWrapper, sendfile_span

GIB = 1 << 30
TAIL = bytes(range(100))  # the last 100 bytes of the sparse file


class CountingFile(io.FileIO):
    """A file that counts the bytes read through Python."""

    reads = 0

    def read(self, size=-1):
        data = super().read(size)
        type(self).reads += len(data or b"")
        return data

    def readinto(self, buf):
        n = super().readinto(buf)
        type(self).reads += n or 0
        return n


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("range") / "big.bin"
    with open(path, "wb") as f:
        f.truncate(GIB - len(TAIL))
        f.seek(GIB - len(TAIL))
        f.write(TAIL)
    yield str(path)
    os.unlink(path)


@pytest.fixture
def flask_site(serve, big_file):
    """Flask's own send_file(path); the server's file wrapper gets a counting file
    on the same descriptor, so every byte read through Python is counted."""
    from flask import Flask, send_file

    flask_app = Flask(__name__)

    @flask_app.route("/big")
    def big():
        return send_file(big_file, mimetype="application/octet-stream")

    def app(environ, start_response):
        wrapper = environ["wsgi.file_wrapper"]

        def counting(filelike, *blksize):
            counted = CountingFile(os.dup(filelike.fileno()), "rb")
            counted.seek(filelike.tell())
            filelike.close()
            return wrapper(counted, *blksize)
        environ["wsgi.file_wrapper"] = counting
        return flask_app(environ, start_response)

    CountingFile.reads = 0
    return serve(app)


def test_file_wrapper_is_seekable(tmp_path):
    path = tmp_path / "f.txt"
    path.write_bytes(b"0123456789")
    with open(path, "rb") as f:
        w = FileWrapper(f, 4)
        assert w.seekable() is True
        assert w.seek(3) == 3 and w.tell() == 3
        assert list(w) == [b"3456", b"789"]
        w.seek(8)
        assert sendfile_span(w) == (f.fileno(), 8, 2)
    assert FileWrapper(io.BytesIO(b"x")).seekable() is True
    assert sendfile_span(FileWrapper(io.BytesIO(b"x"))) is None  # no descriptor: iterated
    assert sendfile_span([b"x"]) is None


def test_suffix_range_of_a_gib_goes_out_with_sendfile(flask_site):
    resp = get(flask_site.port, "/big", headers=[("Range", "bytes=-100")])
    assert resp.status == 206
    assert resp.body == TAIL
    assert resp.get("content-length") == "100"
    assert resp.get("content-range") == f"bytes {GIB - 100}-{GIB - 1}/{GIB}"
    assert CountingFile.reads == 0  # sendfile: nothing read through Python


def test_middle_ranges_and_keep_alive(flask_site):
    with RawConn(flask_site.port) as conn:
        for first, last in [(GIB - 100, GIB - 51), (GIB - 60, GIB - 1), (0, 9)]:
            conn.send(request(target="/big", headers=[("Range", f"bytes={first}-{last}")]))
            resp = conn.read_response()
            assert resp.status == 206
            want = bytes(TAIL[i - (GIB - 100)] if i >= GIB - 100 else 0
                         for i in range(first, last + 1))
            assert resp.body == want
            assert resp.get("content-range") == f"bytes {first}-{last}/{GIB}"
        conn.send(request(method="HEAD", target="/big", headers=[("Range", "bytes=-100")]))
        resp = conn.read_response(head=True)
        assert resp.status == 206 and resp.body == b""
        assert resp.get("content-length") == "100"
    assert CountingFile.reads == 0


def test_unsatisfiable_range(flask_site):
    resp = get(flask_site.port, "/big", headers=[("Range", f"bytes={GIB}-")])
    assert resp.status == 416
    assert resp.get("content-range") == f"bytes */{GIB}"
