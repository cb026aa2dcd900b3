"""gkit: http-kit for Python, a gevent WSGI server with channels.

Importing gkit never monkey-patches; the ``gkit`` command does.
"""
from .clientgone import ClientDisconnected
from .config import Config
from .errors import (ChannelClosed, ConfigError, GkitError, HandshakeError, HubUnavailable,
                     ProtocolError)
from .channel import Channel
from .handover import as_channel, async_response, with_channel
from .server import Server, run_server
from .sse import SseChannel, sse_channel
from .timeouts import RequestTimeout
from .timer import schedule_task

__all__ = ["run_server", "Server", "Config", "Channel", "with_channel", "as_channel",
           "async_response", "sse_channel", "SseChannel", "schedule_task", "ChannelClosed",
           "ConfigError", "GkitError", "HandshakeError", "HubUnavailable", "ProtocolError",
           "ClientDisconnected", "RequestTimeout"]
__version__ = "0.1.0"
