"""The per-process objects a request needs, kept in ``app.extensions["hub_context"]``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from flask import current_app

from app.config import Settings
from ledger.events import Event
from storage.store import Store


@dataclass(frozen=True)
class HubContext:
    """What the web app's routes share: settings, the store, and who to tell of a write.

    ``notify`` is given the events each request stored; the fan-out passes its
    hub's ``notify`` here, so the receiver never imports the fan-out.
    """

    settings: Settings
    store: Store
    notify: Callable[[Sequence[Event]], None]


def current_context() -> HubContext:
    context = current_app.extensions["hub_context"]
    assert isinstance(context, HubContext)  # noqa: S101 - create_app always sets it
    return context
