"""The per-process objects a request needs, kept in ``app.extensions["hub"]``."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from app.config import Settings
from broadcaster.hub import Hub
from storage.store import Store


@dataclass(frozen=True)
class HubContext:
    settings: Settings
    store: Store
    hub: Hub


def current_hub() -> HubContext:
    context = current_app.extensions["hub"]
    assert isinstance(context, HubContext)  # noqa: S101 - create_app always sets it
    return context
