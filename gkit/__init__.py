"""gkit: http-kit for Python, a gevent WSGI server with channels.

Importing gkit never monkey-patches; the ``gkit`` command does.
"""
from .config import Config
from .errors import ChannelClosed, ConfigError, GkitError, HandshakeError, ProtocolError
from .server import Server, run_server

__all__ = ["run_server", "Server", "Config", "ChannelClosed", "ConfigError", "GkitError",
           "HandshakeError", "ProtocolError"]
__version__ = "0.1.0"
