"""Logging set up once, on stderr, where gunicorn's error log also goes."""

from __future__ import annotations

import logging.config

from app.config import Settings


def configure_logging(settings: Settings) -> None:
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
            "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
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
