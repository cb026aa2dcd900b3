"""gkit.proto.origin: the ws_allowed_origins patterns and their matching, as tables."""
from __future__ import annotations

import pytest

from gkit import ConfigError, run_server
from gkit.config import Config
from gkit.proto.origin import origin_allowed, parse_allowed_origins, refused_origin

ALLOWED = parse_allowed_origins(["https://example.com", "https://*.example.com",
                                 "http://localhost:8080", "http://[::1]:3000",
                                 "chrome-extension://abcdef"])

MATCH = [
    ("https://example.com", True),
    ("HTTPS://EXAMPLE.COM", True),
    ("https://example.com:443", True),       # the default port written out
    ("https://a.example.com", True),
    ("https://a.b.example.com", True),
    ("https://example.com:8443", False),
    ("http://example.com", False),           # another scheme
    ("https://evil-example.com", False),
    ("https://example.com.evil.test", False),
    ("https://aexample.com", False),
    ("https://*.example.com", False),        # a client cannot claim a wildcard
    ("https://example.com/", False),         # not an origin
    ("https://user@example.com", False),
    ("http://localhost:8080", True),
    ("http://localhost", False),
    ("http://[::1]:3000", True),
    ("chrome-extension://abcdef", True),
    ("null", False),
    ("", False),
    (None, True),                             # no Origin: not a browser, passes
]


@pytest.mark.parametrize("origin, allowed", MATCH)
def test_origin_allowed(origin, allowed) -> None:
    assert origin_allowed(origin, ALLOWED) is allowed


def test_the_wildcard_does_not_cover_its_bare_domain_and_null_must_be_listed() -> None:
    only_sub = parse_allowed_origins(["https://*.example.com"])
    assert not origin_allowed("https://example.com", only_sub)
    assert origin_allowed("https://x.example.com", only_sub)
    assert origin_allowed("null", parse_allowed_origins(["null"]))


BAD = ["https://example.com/", "example.com", "https://", "https://exa mple.com",
       "https://example.com/path", "https://a.*.example.com", "*", "https://example.com:99999x"]


@pytest.mark.parametrize("pattern", BAD)
def test_bad_patterns_are_config_errors_naming_the_fix(pattern) -> None:
    with pytest.raises(ConfigError, match="scheme://host"):
        Config(ws_allowed_origins=(pattern,))
    with pytest.raises(ConfigError):
        run_server(lambda e, s: [], port=0, ws_allowed_origins=pattern)


def test_config_takes_a_comma_separated_string() -> None:
    assert Config(ws_allowed_origins="https://a.test, https://*.b.test:8443").ws_allowed_origins \
        == ("https://a.test:443", "https://*.b.test:8443")
    assert Config().ws_allowed_origins == ()


def test_refused_origin_looks_only_at_websocket_handshakes() -> None:
    ws = [(b"Upgrade", b"WebSocket"), (b"Connection", b"Upgrade")]
    assert refused_origin(ws + [(b"Origin", b"https://evil.test")], ALLOWED) == "https://evil.test"
    assert refused_origin(ws + [(b"Origin", b"https://example.com")], ALLOWED) is None
    assert refused_origin(ws, ALLOWED) is None
    assert refused_origin([(b"Origin", b"https://evil.test")], ALLOWED) is None  # plain HTTP
    assert refused_origin(ws + [(b"Origin", b"https://example.com"),
                                (b"Origin", b"https://evil.test")], ALLOWED) is not None
