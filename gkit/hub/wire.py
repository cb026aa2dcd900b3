"""What a hub message looks like outside the process, and hub URLs. Pure: no I/O.

On Redis, topic ``T`` is the pub/sub channel ``gkit:T`` and a message is one
byte of type then the payload: ``t`` + UTF-8 text (a WebSocket text frame)
or ``b`` + raw bytes (a binary frame). Any Redis client can publish to gkit
subscribers: ``PUBLISH gkit:news "thello"``.
"""
from __future__ import annotations

import urllib.parse
from typing import Tuple, Union

from ..errors import ConfigError

Message = Union[str, bytes]
CHANNEL_PREFIX = b"gkit:"
TEXT, BINARY = b"t", b"b"
SCHEMES = ("memory", "redis", "rediss", "unix")


def check_message(message: object) -> Message:
    """``message`` as str or bytes, or a TypeError naming the fix.

    >>> check_message(bytearray(b"x"))
    b'x'
    """
    if isinstance(message, (str, bytes)):
        return message
    if isinstance(message, (bytearray, memoryview)):
        return bytes(message)
    raise TypeError(f"cannot publish {type(message).__name__}: publish str (a text frame) "
                    f"or bytes (a binary frame); json.dumps(obj) for objects")


def check_topic(topic: object) -> str:
    if not isinstance(topic, str) or not topic:
        raise TypeError(f"topic={topic!r}: give a non-empty str")
    return topic


def encode(message: Message) -> bytes:
    """The Redis payload of ``message``.

    >>> encode("hé"), encode(b"\\x00")
    (b'th\\xc3\\xa9', b'b\\x00')
    """
    if isinstance(message, str):
        return TEXT + message.encode("utf-8")
    return BINARY + message


def decode(payload: bytes) -> Message:
    """The message carried by a Redis payload; ValueError if it is not one.

    >>> decode(b"thi"), decode(b"b\\x01")
    ('hi', b'\\x01')
    """
    kind, data = payload[:1], payload[1:]
    if kind == TEXT:
        return data.decode("utf-8")
    if kind == BINARY:
        return bytes(data)
    raise ValueError(f"not a gkit hub payload (first byte {kind!r}, expected b't' or b'b')")


def channel(topic: str) -> bytes:
    """The Redis pub/sub channel of ``topic``.

    >>> channel("news")
    b'gkit:news'
    """
    return CHANNEL_PREFIX + topic.encode("utf-8")


def topic_of(channel_name: bytes) -> str:
    return channel_name[len(CHANNEL_PREFIX):].decode("utf-8")


def check_url(url: str) -> Tuple[str, str]:
    """``(scheme, url)`` for a hub URL, or ConfigError naming the fix.

    >>> check_url("memory://"), check_url("redis://127.0.0.1:6379/0")[0]
    (('memory', 'memory://'), 'redis')
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(f"hub={url!r}: give a URL: memory:// (in-process) or "
                          f"redis://host:port/db (shared through Redis)")
    scheme = url.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        raise ConfigError(f"hub={url!r}: unknown scheme {scheme!r}; use memory://, "
                          f"redis://host:port/db, rediss:// (TLS) or unix:///path/redis.sock")
    return scheme, url


def redact(url: str) -> str:
    """The URL with its password hidden, for logs and errors.

    >>> redact("redis://:secret@db:6379/0")
    'redis://:***@db:6379/0'
    """
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
