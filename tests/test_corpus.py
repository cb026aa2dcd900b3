"""Replay gunicorn's request corpus (../shared/corpus/gunicorn-requests).

Each file is sent as is on a fresh connection, the write side is shut down and
everything is read until the server closes (see the corpus README).

- ``invalid`` cases: one 4xx response, the connection closes, and a normal
  request on a new connection still gets 200.
- ``valid`` cases: every (pipelined) request gets its answer in order, as
  HTTP/1.1 requires (status line, Date, exact framing, nothing extra), from an
  echo app whose report (method, PATH_INFO, QUERY_STRING, protocol, body
  length) must match what the manifest says gunicorn parsed.

Where gkit deliberately answers differently from gunicorn, the case is in
:data:`DIFFERENT` with the answer gkit gives and why. Where the RFCs allow
either of two answers, the case is in :data:`EITHER` with the one gkit gives
on both engines; ``test_engines_agree`` checks that both engines answer alike
on every case (issue 2: "both behave the same on the wire"). Every case with a
``gunicorn_cfg`` is listed in one of the tables or in :data:`CFG_NOTES`.

The corpus is found next to the repository (``../shared/corpus``) or through
the ``GKIT_CORPUS`` environment variable; without it the tests skip, unless
``GKIT_REQUIRE_ALL=1``, which turns the skip into a failure.
"""
import json
import os
import re
from pathlib import Path
from urllib.parse import unquote_to_bytes, urlsplit

import pytest

from helpers import final, get, parse_responses, send_raw

NO_HOST = "HTTP/1.1 request without Host: RFC 9112 §3.2 requires a 400 (gunicorn is lenient)"
MAX_LINE_414 = "a header line longer than max_line (8192): 414 per API.md (gunicorn: 431-ish)"
NO_PROXY_PROTOCOL = ("gkit has no PROXY protocol (gunicorn_cfg proxy_protocol): the PROXY "
                     "line is a malformed request line, so 400")
UNDER_LIMITS = ("gunicorn's default limits are tighter (request line 4094, header line 8190, "
                "100 fields); gkit's are max_line=8192 per line and 64 KiB per head, no count")

# case -> (outcome, reason). An outcome is the tuple of final response statuses, in order;
# () means the server closes without a response.
DIFFERENT = {
    # valid in gunicorn, refused by gkit
    **{f"valid/{n}": ((400,), NO_HOST) for n in [
        "004", "005", "006", "007", "009", "010", "011", "012", "013", "014", "018", "021",
        "023", "031", "100"]},
    "valid/031compat": ((400,), NO_HOST + "; gunicorn_cfg casefold/unconventional methods"),
    "valid/031compat2": ((400,), NO_HOST + "; gunicorn_cfg permit_unconventional_http_method"),
    "valid/compat_obs_fold_huge": ((400,), NO_HOST + " (whatever gkit does with obs-fold)"),
    "valid/022": ((200, 400), "the HTTP/1.0 keep-alive request is served; the pipelined "
                              "second one is HTTP/1.1 without Host, so 400"),
    "valid/024": ((414,), MAX_LINE_414 + "; gunicorn_cfg raises its limits"),
    "valid/026": ((414,), MAX_LINE_414 + "; gunicorn_cfg limit_request_field_size"),
    "valid/028": ((400,), "whitespace between field name and colon: RFC 9112 §5.1 says MUST "
                          "400 (gunicorn_cfg strip_header_spaces)"),
    "valid/pp_01": ((400,), NO_PROXY_PROTOCOL),
    "valid/pp_02": ((400,), NO_PROXY_PROTOCOL),
    "valid/pp_04": ((400,), NO_PROXY_PROTOCOL + " (v2 binary header)"),
    "valid/pp_05": ((400,), NO_PROXY_PROTOCOL + " (v2 binary header)"),
    # invalid in gunicorn, accepted by gkit
    "invalid/006": ((200,), UNDER_LIMITS + ": this request line is 4112 bytes"),
    "invalid/008": ((200,), UNDER_LIMITS + ": header lines of 8189 bytes, 12 KB head"),
    "invalid/009": ((200,), UNDER_LIMITS + ": 104 header fields"),
    "invalid/011": ((200,), "written for gunicorn_cfg limit_request_fields; with gkit's "
                            "defaults it is a plain request"),
    "invalid/012": ((200,), "written for gunicorn_cfg limit_request_field_size; with gkit's "
                            "defaults it is a plain request"),
    "invalid/limit_header_default_01": ((200,), UNDER_LIMITS + ": an 8190-byte header line"),
    # invalid in gunicorn too, with a specific status in gkit
    "invalid/007": ((414,), MAX_LINE_414),
    "invalid/version_02": ((400,), "HTTP/2.0 on an HTTP/1.x connection: 400 per issue 2 "
                                   "(not 505)"),
}

# case -> (set of allowed outcomes, the one gkit gives, reason). The RFCs allow each
# outcome of the set; both engines give exactly gkit's choice (issue 8 point 12: one
# set of checks in gkit/proto/h1_checks.py and chunked.py decides these for both).
EITHER = {
    "invalid/001": (
        {(), (400,)}, (400,),
        "the client closed inside the head: closing silently or answering 400 are both fine"),
    "invalid/rfc9112_chunked_missing_final_crlf_01": (
        {(), (400,)}, (400,),
        "the client closed before the chunked body ended: like invalid/001"),
    "invalid/obs_fold_01": (
        {(400,), (200,)}, (400,),
        "obs-fold: RFC 9112 §5.2 lets a server reject it (400) or replace it with SP"),
    "valid/compat_obs_fold": (
        {(400,), (200,)}, (400,),
        "same bytes as invalid/obs_fold_01 (gunicorn_cfg permit_obsolete_folding)"),
    "invalid/040": (
        {(200,), (400,)}, (200,),
        "same bytes as valid/040: gunicorn refuses '_' in field names only with "
        "gunicorn_cfg header_map=refuse"),
    "valid/040": (
        {(200,), (400,)}, (200,),
        "'_' is a valid tchar; a server may still refuse such names (gkit drops them "
        "from the environ: they collide with '-')"),
    "valid/040_compat": (
        {(200,), (400,)}, (200,), "same bytes as valid/040 (gunicorn_cfg header_map)"),
    "invalid/041": (
        {(200,), (400,)}, (200,),
        "a repeated Content-Type: RFC 9110 §5.3 leaves the recipient's answer open"),
    "invalid/rfc9112_smuggle_cl_list_form_01": (
        {(200,), (400,)}, (400,),
        "'Content-Length: 5, 5': RFC 9110 §8.6 allows taking it as 5 or rejecting it; "
        "gkit rejects any repeated Content-Length"),
    "invalid/rfc9110_trailer_forbidden_cl_01": (
        {(200,), (400,)}, (400,),
        "a framing field in a trailer: gkit never merges trailers into the environ, so "
        "ignoring (RFC 9110 §6.5.1) would be as safe; gkit refuses Content-Length and "
        "Transfer-Encoding there (llhttp does)"),
    "invalid/rfc9110_trailer_forbidden_host_01": (
        {(200,), (400,)}, (200,), "Host in a trailer: dropped with the trailer"),
    "invalid/rfc9110_trailer_forbidden_te_01": (
        {(200,), (400,)}, (400,), "Transfer-Encoding in a trailer: as for Content-Length"),
    "valid/027": (
        {(200,), (400,)}, (400,),
        "raw non-ASCII bytes in the target are not URI characters (RFC 3986): rejecting "
        "is conformant, accepting lenient"),
    "valid/rfc9112_smuggle_gzip_chunked_01": (
        {(200,), (400,), (501,)}, (501,),
        "'gzip, chunked': RFC 9112 §6.1 says SHOULD 501 for a transfer coding the "
        "server does not implement; passing the coded body on is what gunicorn does"),
    "valid/rfc9112_smuggle_te_identity_chunked_01": (
        {(200,), (400,), (501,)}, (501,),
        "'identity' is no longer a registered transfer coding: as above"),
    **{f"valid/{n}": (
        {(400,), (501,)}, (501,),
        "no Host (400, RFC 9112 §3.2) and a transfer coding other than chunked (501, "
        "RFC 9112 §6.1): either error; the framing is judged first")
       for n in ["025", "025_line", "029", "030"]},
    "valid/099": (
        {(), (400,)}, (400,),
        "the file declares Content-Length 17914 but holds 8599 body bytes, then the "
        "client shuts down: an incomplete message (RFC 9112 §8), closed silently or "
        "answered 400; never handed to the app as if complete"),
    "valid/rfc9112_target_absolute_userinfo_01": (
        {(200,), (400,)}, (400,),
        "userinfo in an http URI: RFC 9110 §4.2.4 says a recipient SHOULD treat it as "
        "an error"),
    "valid/rfc9112_target_authority_connect_01": (
        {(200,), (400,), (405,), (501,)}, (200,),
        "CONNECT (tunnels) is not a WSGI concept: gkit may hand it to the app or refuse it"),
    "valid/rfc9112_target_authority_ipv6_01": (
        {(200,), (400,), (405,), (501,)}, (200,), "CONNECT, as above"),
}

# gunicorn_cfg cases whose expectation is the default one; why that is right for gkit.
CFG_NOTES = {
    "invalid/010": "gunicorn_cfg limit_request_field_size; with gkit it is 400 for no Host",
    "invalid/013": "gunicorn_cfg limits and obs-fold; with gkit it is 400 for no Host",
    "invalid/019": "gunicorn_cfg forwarded_allow_ips; gkit ignores X-Forwarded-* by default "
                   "and refuses the request for no Host",
    "invalid/chunked_07": "gunicorn_cfg header_map; with gkit it is 400 for no Host",
    "invalid/pp_01": "gunicorn_cfg proxy_protocol: to gkit a malformed request line, 400",
    "invalid/pp_02": "gunicorn_cfg proxy_protocol: to gkit a malformed request line, 400",
    "invalid/pp_03": "gunicorn_cfg proxy_protocol: to gkit a malformed request line, 400",
    "valid/pp_03": "gunicorn_cfg proxy_protocol, but the bytes are a plain request: 200",
}


def corpus_dir():
    env = os.environ.get("GKIT_CORPUS")
    candidates = []
    if env:
        candidates += [Path(env), Path(env) / "gunicorn-requests"]
    candidates.append(Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
                      / "gunicorn-requests")
    for path in candidates:
        if (path / "manifest.json").is_file():
            return path
    return None


CORPUS = corpus_dir()
ENTRIES = {}
if CORPUS is not None:
    for entry in json.loads((CORPUS / "manifest.json").read_text())["entries"]:
        ENTRIES[f"{entry['kind']}/{entry['name']}"] = entry
CASES = sorted(ENTRIES) or ["corpus-missing"]


def require_corpus():
    if CORPUS is None:
        msg = ("gunicorn request corpus not found: put it at ../shared/corpus/gunicorn-requests "
               "next to the repository or set GKIT_CORPUS to its directory")
        if os.environ.get("GKIT_REQUIRE_ALL") == "1":
            pytest.fail(msg + " (GKIT_REQUIRE_ALL=1)")
        pytest.skip(msg)


def echo(environ, start_response):
    body = environ["wsgi.input"].read()
    report = {
        "method": environ["REQUEST_METHOD"],
        "path": environ.get("PATH_INFO", ""),
        "query": environ.get("QUERY_STRING", ""),
        "protocol": environ["SERVER_PROTOCOL"],
        "body_len": len(body),
    }
    out = json.dumps(report).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(out)))])
    return [out]


def expected_report(req):
    """What the echo app should report for one request of the manifest."""
    target = req["target"]
    want = {"method": req["method"], "protocol": "HTTP/%d.%d" % tuple(req["version"])}
    if req["body_len"] is not None:
        want["body_len"] = req["body_len"]
    if target.startswith("/"):
        path, _, query = target.partition("?")
        want["path"] = unquote_to_bytes(path.encode("latin-1")).decode("latin-1")
        want["query"] = query
    elif re.match(r"https?://", target):
        parts = urlsplit(target)
        want["path"] = unquote_to_bytes(parts.path or "/").decode("latin-1")
        want["query"] = parts.query
    # "*" (OPTIONS) and authority-form (CONNECT): no path to compare
    return want


def first_request_line(case):
    """For an invalid case that gkit accepts: what its first request line says
    (the manifest has no parse for it). The body length is not compared."""
    raw = (CORPUS / ENTRIES[case]["file"]).read_bytes().lstrip(b"\r\n")
    method, target, version = raw.split(b"\r\n", 1)[0].split(b" ")
    major, minor = version[len(b"HTTP/"):].split(b".")
    req = {"method": method.decode("latin-1"), "target": target.decode("latin-1"),
           "version": [int(major), int(minor)], "body_len": None}
    return [req]


def replay(port, entry):
    raw = (CORPUS / entry["file"]).read_bytes()
    data = send_raw(port, raw, timeout=10)
    return data, parse_responses(data)


def outcome(responses):
    return tuple(r.status for r in final(responses))


def check_well_formed(resp, request_version):
    assert resp.version == "HTTP/1.1" or (request_version == [1, 0]
                                          and resp.version == "HTTP/1.0"), resp.status_line
    assert resp.has("date"), f"no Date header: {resp.headers}"
    assert resp.complete


@pytest.mark.parametrize("case", CASES)
def test_corpus(serve, case):
    require_corpus()
    entry = ENTRIES[case]
    server = serve(echo)
    data, responses = replay(server.port, entry)
    got = outcome(responses)

    if case in DIFFERENT:
        want, reason = DIFFERENT[case]
        assert got == want, f"{case}: expected {want} ({reason}); got {got}: {data[:400]!r}"
    elif case in EITHER:
        allowed, chosen, reason = EITHER[case]
        assert got == chosen, f"{case}: expected {chosen} (of {allowed}: {reason}); got {got}: " \
                              f"{data[:400]!r}"
    elif entry["kind"] == "invalid":
        assert len(got) == 1 and 400 <= got[0] < 500, \
            f"{case} ({entry.get('gunicorn_error')}): expected one 4xx; got {got}: {data[:400]!r}"
    else:
        want = (200,) * len(entry["requests"])
        assert got == want, f"{case}: expected {want}; got {got}: {data[:400]!r}"

    # every 200 is a correct answer to the request at its position
    requests_ = entry.get("requests") or (first_request_line(case) if 200 in got else [])
    for index, resp in enumerate(final(responses)):
        version = requests_[index]["version"] if index < len(requests_) else [1, 1]
        check_well_formed(resp, version)
        if resp.status == 200:
            assert index < len(requests_), f"{case}: a 200 for a request nobody parsed"
            report = json.loads(resp.body)
            want = expected_report(requests_[index])
            if requests_[index]["target"] == "*":
                assert report["path"] in ("*", ""), report
            assert {k: report[k] for k in want} == want, f"{case} request {index}"
        elif resp.status >= 400:
            assert resp is final(responses)[-1], f"{case}: the connection went on after a " \
                                                 f"{resp.status}"
    # an invalid request never breaks the server
    if entry["kind"] == "invalid" or any(s >= 400 for s in got):
        assert get(server.port, "/after").status == 200


@pytest.mark.parametrize("case", CASES)
def test_engines_agree(case):
    """httptools and h11 give the same statuses for every corpus case."""
    require_corpus()
    from gkit import run_server

    got = {}
    for engine in ("httptools", "h11"):
        server = run_server(echo, ip="127.0.0.1", port=0, http=engine)
        try:
            got[engine] = outcome(replay(server.port, ENTRIES[case])[1])
        finally:
            server.stop()
    assert got["httptools"] == got["h11"], f"{case}: engines differ: {got}"


def test_tables_name_real_cases():
    require_corpus()
    for table in (DIFFERENT, EITHER, CFG_NOTES):
        unknown = set(table) - set(ENTRIES)
        assert not unknown, f"the tables name cases the corpus does not have: {unknown}"
    assert not set(DIFFERENT) & set(EITHER)
    for case, (allowed, chosen, _) in EITHER.items():
        assert chosen in allowed, case
    with_cfg = {case for case, e in ENTRIES.items() if e.get("gunicorn_cfg")}
    unexplained = with_cfg - set(DIFFERENT) - set(EITHER) - set(CFG_NOTES)
    assert not unexplained, f"gunicorn_cfg cases without a note: {sorted(unexplained)}"
