"""gunicorn settings for the hub: gevent workers, bound from the HUB_* settings."""

import sys

from app.config import ConfigError, Settings

try:
    _settings = Settings.from_env()
except ConfigError as error:  # one clear line instead of a traceback, and no start
    sys.exit(f"hub configuration error: {error}")

worker_class = "gevent"
bind = f"{_settings.host}:{_settings.port}"
workers = _settings.workers
worker_connections = _settings.worker_connections
# WebSocket and SSE connections live for hours; gevent workers heartbeat on their own.
timeout = 30
graceful_timeout = 10
keepalive = 5
accesslog = "-"
errorlog = "-"
loglevel = _settings.log_level.lower()
# One shared control socket path would make two hubs on one host fight over it.
control_socket_disable = True
