"""Opaque keyset cursors for the newest-first deployments list."""

from __future__ import annotations

import base64
import binascii

import orjson


def encode_cursor(sort_ts: str, deployment_id: str) -> str:
    """The cursor that continues after the row ``(sort_ts, deployment_id)``."""
    return base64.urlsafe_b64encode(orjson.dumps([sort_ts, deployment_id])).decode()


def decode_cursor(cursor: str) -> tuple[str, str]:
    """Raise ``ValueError`` for a cursor the API did not hand out."""
    try:
        sort_ts, deployment_id = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (binascii.Error, orjson.JSONDecodeError, ValueError, TypeError):
        raise ValueError("not a cursor from this API") from None
    if not isinstance(sort_ts, str) or not isinstance(deployment_id, str):
        raise ValueError("not a cursor from this API")
    return sort_ts, deployment_id
