"""The metrics a pipeline reports (``metrics_update``): the newest report wins.

"Newest" is an order every store applies the same way, whatever order the
reports arrive in: by timestamp, then by content.
"""

from __future__ import annotations

import orjson

from ledger.events import Event
from ledger.fold import content_key


def metrics_key(event: Event) -> bytes:
    """What orders two reports of one deployment: the larger key is the newer one."""
    return event.timestamp.encode() + content_key(event)


def metrics_value(event: Event) -> bytes:
    """The report as kept beside the view: its metrics and when they were taken."""
    return orjson.dumps({**event.payload["metrics"], "_at": event.timestamp})
