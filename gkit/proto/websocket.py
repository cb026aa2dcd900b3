"""WebSocket for gkit, sans-IO: the opening handshake and the framed session after it.

Imports no gevent, socket or time; the I/O side (``gkit.websocket``) drives it.

Interface::

    accept_handshake(method, http_version, headers, *, subprotocol=None,
                     extra_headers=(), deflate=False, max_message=4194304)
        -> tuple[bytes, WsSession]
        # Checks the upgrade request (RFC 6455 §4.2.1); HandshakeError(reason,
        # status_hint=400) if it is not one. Returns the whole 101 response and the
        # session. ValueError for bad extra_headers (CR/LF, handshake headers).

    WsSession(*, max_message=4194304, deflate=None)
        .receive_data(data: bytes | None) -> list[Event]   # None or b"": EOF
        .data_to_send() -> bytes          # pongs, close replies, failure close frames
        .send_message(str | bytes-like) -> bytes           # text for str
        .send_ping(data=b"") -> bytes,  .send_pong(data=b"") -> bytes
        .send_close(code=1000, reason="") -> bytes         # b"" if already closing
        .is_open   # no close frame sent or received: messages may be sent
        .closed    # the Closed event was returned: send data_to_send(), close TCP

    Events (frozen dataclasses): Message(data: str | bytes), Ping(data), Pong(data),
    Closed(code, reason) -- always the last event.
    close_status(code) -> "normal", "going-away", ... as Channel.on_close reports it.

The I/O loop, in outline::

    response, ws = accept_handshake(...)      # HandshakeError -> answer 400
    sock.sendall(response)
    for event in ws.receive_data(rest_of_buffer) + ...:   # then every recv()
        ...                                    # Message -> on_receive, Ping -> on_ping
    sock.sendall(ws.data_to_send())            # after every receive_data
    # Closed(code, _) -> on_close(close_status(code)), then close the socket

Every failure the peer causes ends in ``Closed`` with its code and the matching
close frame in ``data_to_send()``, never in an exception: 1002 for protocol
errors, 1007 for invalid UTF-8 or deflate data, 1009 for a message over
``max_message`` bytes (checked from frame headers, fragments summed, and on
inflated bytes, so nothing past the limit is ever held).

Who does what: wsproto's ``PerMessageDeflate`` formats the permessage-deflate
answer; the frames are parsed and built in ``ws_session`` (see its docstring
for why), which keeps every check wsproto makes and adds what it leaves to its
caller: reassembly, the size limit, fail-fast UTF-8, bounded inflation, pongs,
close replies and close frames on failure. Module map: ``websocket`` (this
handshake, the public names), ``ws_session`` (frames), ``ws_events`` (events,
close codes).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable

from wsproto.extensions import PerMessageDeflate

from ..errors import HandshakeError
from .ws_events import Closed, Event, Message, Ping, Pong, close_status, valid_close_code
from .ws_deflate import WINDOW_BITS, DeflateParams
from .ws_session import WsSession

__all__ = [
    "Closed",
    "DeflateParams",
    "Event",
    "Message",
    "Ping",
    "Pong",
    "WsSession",
    "accept_handshake",
    "accept_key",
    "close_status",
    "valid_close_code",
]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # controls except TAB: CR and LF above all
# Written by the handshake itself; an app sets them through the arguments, not extra_headers.
_OWN_HEADERS = frozenset(("upgrade", "connection", "sec-websocket-accept",
                          "sec-websocket-protocol", "sec-websocket-extensions"))
_HTTP_VERSION = re.compile(r"(?:HTTP/)?([0-9]+)(?:\.([0-9]+))?\Z", re.IGNORECASE)
_BITS_VALUE = re.compile(r"(?:8|9|1[0-5])\Z")  # RFC 7692 §7.1.2: 8-15, no leading zeros
_DEFLATE_PARAMS = frozenset(("server_no_context_takeover", "client_no_context_takeover",
                             "server_max_window_bits", "client_max_window_bits"))


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value for a ``Sec-WebSocket-Key`` (RFC 6455 §4.2.2).

    >>> accept_key("dGhlIHNhbXBsZSBub25jZQ==")
    's3pPLMBiTxaQ9kYGzzhZRbK+xOo='
    """
    digest = hashlib.sha1(key.encode("latin-1") + _GUID).digest()
    return base64.b64encode(digest).decode("ascii")


def accept_handshake(
    method: str,
    http_version: str,
    headers: Iterable[tuple[str, str]],
    *,
    subprotocol: str | None = None,
    extra_headers: Iterable[tuple[str, str]] = (),
    deflate: bool = False,
    max_message: int = 4194304,
) -> tuple[bytes, WsSession]:
    """Accept a WebSocket upgrade request: the ``101`` response bytes and the session.

    ``headers`` are the request's (name, value) pairs in any case, latin-1 str
    as in WSGI. ``subprotocol`` is answered only if the client offered it;
    permessage-deflate only if ``deflate`` and the client offered acceptable
    parameters. Bytes the client sent after the request head go to
    ``session.receive_data``.

    >>> response, ws = accept_handshake("GET", "HTTP/1.1", [
    ...     ("Host", "h"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
    ...     ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")])
    >>> response.splitlines()[0], response.splitlines()[3]
    (b'HTTP/1.1 101 Switching Protocols', b'Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=')
    """
    fields: dict[str, list[str]] = {}
    for name, value in headers:
        fields.setdefault(name.lower(), []).append(value)
    key = _check_request(method, http_version, fields)
    extra = _check_extra_headers(extra_headers)

    lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Accept: {accept_key(key)}"]
    offered = _tokens(fields, "sec-websocket-protocol", lower=False)  # case-sensitive (§4.1)
    if subprotocol is not None and subprotocol in offered:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    params = None
    if deflate:
        agreed = _negotiate_deflate(fields.get("sec-websocket-extensions", []))
        if agreed is not None:
            header, params = agreed
            lines.append(f"Sec-WebSocket-Extensions: {header}")
    lines.extend(f"{name}: {value}" for name, value in extra)
    response = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return response, WsSession(max_message=max_message, deflate=params)


def _tokens(fields: dict[str, list[str]], name: str, *, lower: bool = True) -> list[str]:
    """The comma-separated tokens of every ``name`` header line."""
    values = fields.get(name, [])
    tokens = [token.strip() for value in values for token in value.split(",")]
    return [token.lower() if lower else token for token in tokens if token]


def _check_request(method: str, http_version: str, fields: dict[str, list[str]]) -> str:
    """RFC 6455 §4.2.1; returns the ``Sec-WebSocket-Key``."""
    if method != "GET":
        raise HandshakeError(f"a WebSocket upgrade must use GET, not {method!r}")
    version = _HTTP_VERSION.match(http_version.strip())
    if not version or (int(version[1]), int(version[2] or 0)) < (1, 1):
        raise HandshakeError(f"a WebSocket upgrade needs HTTP/1.1 or later, not {http_version!r}")
    if "websocket" not in _tokens(fields, "upgrade"):
        raise HandshakeError("the Upgrade header must contain 'websocket'")
    if "upgrade" not in _tokens(fields, "connection"):
        raise HandshakeError("the Connection header must contain 'Upgrade'")
    versions = _tokens(fields, "sec-websocket-version")
    if not versions:
        raise HandshakeError("Sec-WebSocket-Version is missing: give 13")
    if versions != ["13"]:
        # RFC 6455 §4.4: a version the server does not speak gets 426 and the one it does.
        raise HandshakeError(f"Sec-WebSocket-Version must be 13, got {', '.join(versions)}", 426)
    keys = fields.get("sec-websocket-key", [])
    if len(keys) != 1:
        raise HandshakeError(f"expected one Sec-WebSocket-Key header, got {len(keys)}")
    key = keys[0].strip()
    try:
        raw = base64.b64decode(key.encode("latin-1"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raw = b""
    if len(raw) != 16:
        raise HandshakeError("Sec-WebSocket-Key must be 16 bytes in base64")
    return key


def _check_extra_headers(extra_headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    checked = []
    for name, value in extra_headers:
        if not _TOKEN.match(name):
            raise ValueError(f"invalid header name {name!r}")
        if name.lower() in _OWN_HEADERS:
            raise ValueError(f"the handshake writes {name} itself; pass subprotocol= for "
                             "Sec-WebSocket-Protocol and leave the others out of the headers")
        if _BAD_VALUE.search(value):
            raise ValueError(f"header {name} contains CR, LF or another control character: "
                             f"{value!r}")
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(f"header {name} is not latin-1 text: {value!r}") from None
        checked.append((name, value))
    return checked


def _negotiate_deflate(values: list[str]) -> tuple[str, DeflateParams] | None:
    """Accept the first permessage-deflate offer with valid parameters (RFC 7692 §7.1).

    Window sizes offered above ``WINDOW_BITS`` are answered with ``WINDOW_BITS``
    (§7.1.2: the server may answer with a smaller value), which keeps the client's
    window, and so our inflate buffer, small too.
    """
    for offer in (item for value in values for item in value.split(",")):
        name, *raw_params = (part.strip() for part in offer.split(";"))
        if name.lower() != "permessage-deflate":
            continue
        params = _deflate_params(raw_params)
        if params is None:
            continue  # §5: decline an offer with unknown, repeated or bad parameters
        # wsproto parses loosely (no quotes, no checks), so it gets the offer in canonical
        # form, with the window sizes we want it to answer.
        canonical = ["permessage-deflate"]
        for key, value in params:
            if key.endswith("window_bits"):
                value = str(min(int(value or 15), WINDOW_BITS))
            canonical.append(key if value is None else f"{key}={value}")
        extension = PerMessageDeflate()
        try:
            answer = extension.accept("; ".join(canonical))
        except ValueError:
            answer = None
        if answer is None:
            continue  # wsproto refuses a window of 8 bits, which zlib cannot compress with
        offered = {key for key, _ in params}
        header = f"permessage-deflate; {answer}" if answer else "permessage-deflate"
        return header, DeflateParams(
            server_no_context_takeover=extension.server_no_context_takeover,
            client_no_context_takeover=extension.client_no_context_takeover,
            server_max_window_bits=extension.server_max_window_bits,
            client_max_window_bits=(extension.client_max_window_bits
                                    if "client_max_window_bits" in offered else 15),
        )
    return None


def _deflate_params(raw_params: list[str]) -> list[tuple[str, str | None]] | None:
    """(name, value or None) pairs, or None if the offer must be declined."""
    params: list[tuple[str, str | None]] = []
    for raw in filter(None, raw_params):
        name, eq, raw_value = (part.strip() for part in raw.partition("="))
        name = name.lower()
        value = raw_value.strip('"') if eq else None
        if name not in _DEFLATE_PARAMS or name in (known for known, _ in params):
            return None
        if name.endswith("context_takeover"):
            if value is not None:
                return None
        elif value is None:
            if name == "server_max_window_bits":  # a value is required; optional for the client's
                return None
        elif not _BITS_VALUE.match(value):
            return None
        params.append((name, value))
    return params
