"""Build the PEP 3333 environ from a parsed request: a pure function."""
from __future__ import annotations

from typing import Any, Dict, Iterable, Optional, Tuple
from urllib.parse import unquote_to_bytes

from .h1 import Request
from .h1_checks import target_authority

# Header name (as received) -> environ key, or None for a header that is
# dropped: names with "_" would collide with "-" in the environ, a trick for
# spoofing headers set by a proxy (gunicorn and nginx drop them too).
_KEY_CACHE: Dict[bytes, Optional[str]] = {}
_KEY_CACHE_MAX = 1024


def _environ_key(name: bytes) -> Optional[str]:
    key = _KEY_CACHE.get(name)
    if key is not None or name in _KEY_CACHE:
        return key
    if b"_" in name:
        key = None
    else:
        upper = name.decode("latin-1").upper().replace("-", "_")
        key = upper if upper in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + upper
    if len(_KEY_CACHE) < _KEY_CACHE_MAX:
        _KEY_CACHE[name] = key
    return key


def split_target(target: bytes) -> Tuple[str, str]:
    """PATH_INFO (percent-decoded, latin-1) and QUERY_STRING of a request target.

    >>> split_target(b"/a%20b?x=1")
    ('/a b', 'x=1')
    """
    if target[:1] == b"/" and b"%" not in target and b"?" not in target and b"#" not in target:
        return target.decode("latin-1"), ""  # the common case: a plain path
    if target[:1] != b"/":
        if target == b"*":
            return "*", ""
        # absolute-form "http://host/path?q" (RFC 9112 §3.2.2); authority-form
        # (CONNECT) has no path.
        scheme_end = target.find(b"://")
        if scheme_end < 0:
            return "", ""
        slash = target.find(b"/", scheme_end + 3)
        target = target[slash:] if slash >= 0 else b"/"
    path, _, query = target.partition(b"?")
    path = path.partition(b"#")[0]
    if b"%" in path:
        path = unquote_to_bytes(path)
    return path.decode("latin-1"), query.decode("latin-1")


def build_environ(req: Request, base: Dict[str, Any], remote: Tuple[str, int],
                  wsgi_input: Any) -> Dict[str, Any]:
    """The environ of ``req``; ``base`` holds the per-server constant keys."""
    environ = base.copy()
    path, query = split_target(req.target)
    environ["REQUEST_METHOD"] = req.method
    environ["PATH_INFO"] = path
    environ["QUERY_STRING"] = query
    environ["RAW_URI"] = req.target.decode("latin-1")
    environ["SERVER_PROTOCOL"] = "HTTP/1.1" if req.version == "1.1" else "HTTP/1.0"
    environ["REMOTE_ADDR"] = remote[0]
    environ["REMOTE_PORT"] = str(remote[1])
    environ["wsgi.input"] = wsgi_input
    if req.target[:1] != b"/" and b"://" in req.target:
        # RFC 9112 §3.2.2: for an absolute-form target, its authority is the
        # host, and a Host header is ignored (the loop below keeps this one).
        environ["HTTP_HOST"] = target_authority(req.target.partition(b"://")[2]).decode("latin-1")
    cache = _KEY_CACHE
    for name, value in req.headers:
        key = cache.get(name)
        if key is None:
            key = _environ_key(name)
            if key is None:
                continue
        text = value.decode("latin-1").strip(" \t")
        if key in environ:
            if key == "HTTP_HOST" or key == "CONTENT_LENGTH":
                continue
            text = environ[key] + ("; " if key == "HTTP_COOKIE" else ", ") + text
        environ[key] = text
    return environ


def apply_proxy_headers(environ: Dict[str, Any], trusted: Iterable[str]) -> None:
    """Take REMOTE_ADDR and wsgi.url_scheme from X-Forwarded-For/-Proto.

    Call only when the peer itself is a trusted proxy. X-Forwarded-For is read
    from the right, skipping trusted proxies, so a client cannot spoof its
    address by sending its own header through the proxy.
    """
    trusted = set(trusted)
    forwarded_for = environ.get("HTTP_X_FORWARDED_FOR")
    if forwarded_for:
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        client = None
        for hop in reversed(hops):
            client = hop
            if hop not in trusted and "*" not in trusted:
                break
        if client:
            environ["REMOTE_ADDR"] = client
            environ["REMOTE_PORT"] = "0"
    proto = environ.get("HTTP_X_FORWARDED_PROTO")
    if proto:
        scheme = proto.split(",")[-1].strip().lower()
        if scheme in ("http", "https", "ws", "wss"):
            environ["wsgi.url_scheme"] = {"ws": "http", "wss": "https"}.get(scheme, scheme)
