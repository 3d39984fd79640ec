"""Logging set up once, on stderr, where gunicorn's error log also goes.

Every line carries the request id (``app.requestlog``) and passes the
redactor; ``HUB_LOG_FORMAT`` picks plain text or one JSON object per line.
"""

from __future__ import annotations

import logging.config

from app.config import Settings
from app.requestlog import RequestIdFilter, make_formatter


def configure_logging(settings: Settings) -> None:
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"hub": {"()": make_formatter, "settings": settings}},
            "filters": {"request_id": {"()": RequestIdFilter}},
            "handlers": {
                "stderr": {
                    "class": "logging.StreamHandler",
                    "formatter": "hub",
                    "filters": ["request_id"],
                }
            },
            "loggers": {
                "app": {"level": settings.log_level, "handlers": ["stderr"], "propagate": False},
                "broadcaster": {
                    "level": settings.log_level,
                    "handlers": ["stderr"],
                    "propagate": False,
                },
            },
        }
    )
